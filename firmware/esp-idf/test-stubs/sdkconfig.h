#pragma once
/* check.sh compiles the port a second time with STUB_ARDUINO (no AegisOTA Kconfig values, as
 * in arduino-esp32's prebuilt sdkconfig) and a third with the optional paths switched on. */
#ifndef STUB_ARDUINO
#define CONFIG_AEGIS_OTA_PORT 80
#define CONFIG_AEGIS_OTA_HOSTNAME ""
#define CONFIG_AEGIS_OTA_TRUSTED_KEY ""
#ifdef STUB_OPTIONS
#define CONFIG_AEGIS_OTA_CONFIRM_AFTER_CONNECTED 1
#define CONFIG_AEGIS_OTA_CONFIRM_AFTER_S 60
#define CONFIG_MBEDTLS_CERTIFICATE_BUNDLE 1
#else
#define CONFIG_AEGIS_OTA_CONFIRM_EXPLICIT 1
#endif
#endif
#define CONFIG_EXAMPLE_WIFI_SSID "ssid"
#define CONFIG_EXAMPLE_WIFI_PASSWORD "password"

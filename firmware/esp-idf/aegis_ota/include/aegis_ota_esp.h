/*
 * aegis_ota_esp.h — AegisOTA on ESP-IDF 5.x: one call starts the whole device side.
 *
 * aegis_ota_start() reads the station MAC (the device id), the station IP, the app's running
 * image and the trusted key, registers GET /aegis/v1/info and POST /aegis/v1/ota on an HTTP
 * server (its own, or one you pass in), announces `_aegis-ota._tcp` by mDNS and starts a task
 * that runs accepted updates. Call it once the station has an IP address. The application then
 * confirms a freshly updated image after its own health check:
 *
 *     ESP_ERROR_CHECK(aegis_ota_start(NULL));        // everything from menuconfig
 *     if (my_health_check()) aegis_ota_confirm(aegis_ota_instance());
 *     else aegis_ota_reject(aegis_ota_instance());   // roll back now
 *
 * A new image that never confirms is rolled back by the bootloader at the next reset
 * (CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE=y).
 */
#ifndef AEGIS_OTA_ESP_H
#define AEGIS_OTA_ESP_H

#include <stdint.h>

#include "esp_err.h"
#include "esp_http_server.h"
#include "esp_netif.h"

#include "aegis_ota.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Start-up options; every member left zero/NULL takes its menuconfig (Kconfig) value. */
typedef struct {
    /** mDNS host and instance name. NULL: CONFIG_AEGIS_OTA_HOSTNAME, or "aegis-" + the last
     *  four hex digits of the station MAC when that is empty. */
    const char *hostname;
    /** Control port = the announced SRV port. 0: CONFIG_AEGIS_OTA_PORT (80). With `server`
     *  set, give that server's port here. */
    uint16_t port;
    /** The server public key, 130 hex digits (`aegis keys export --format hex`). NULL:
     *  CONFIG_AEGIS_OTA_TRUSTED_KEY. An empty key means: accept unsigned triggers. */
    const char *trusted_key_hex;
    /** Seconds after start-up before a pending image confirms itself. 0: the Kconfig confirm
     *  policy (explicit unless AEGIS_OTA_CONFIRM_AFTER_CONNECTED). Negative: explicit. */
    int32_t confirm_after_s;
    /** An HTTP server the application already runs; the two Aegis handlers are registered on
     *  it (set `port` to its port; it needs two free max_uri_handlers slots). NULL: start
     *  our own esp_http_server on `port`. */
    httpd_handle_t server;
    /** The interface whose IPv4 address is announced and followed (IP_EVENT_STA_GOT_IP).
     *  NULL: the default Wi-Fi station ("WIFI_STA_DEF"). */
    esp_netif_t *netif;
    /** The dotted IPv4 address to announce at start, when the interface cannot be looked up
     *  (the Arduino wrapper passes WiFi.localIP()). NULL: read it from `netif`. */
    const char *ip;
} aegis_esp_config_t;

#define AEGIS_ESP_CONFIG_DEFAULT {NULL, 0, NULL, 0, NULL, NULL, NULL}

/**
 * Starts AegisOTA (see the file comment). `cfg` may be NULL (all menuconfig). Requires NVS
 * (nvs_flash_init), the default event loop and a connected interface with an IPv4 address.
 * Returns ESP_OK; ESP_ERR_INVALID_STATE if already started or the interface has no address;
 * ESP_ERR_INVALID_ARG for a malformed trusted key (never silently falls back to unsigned);
 * or the error of the ESP-IDF call that failed.
 */
esp_err_t aegis_ota_start(const aegis_esp_config_t *cfg);

/** The running library instance (for aegis_ota_confirm/reject/state), NULL before start. */
aegis_ota_t *aegis_ota_instance(void);

#ifdef __cplusplus
}
#endif

#endif /* AEGIS_OTA_ESP_H */

/*
 * AegisOTA.cpp — the Arduino wrapper: starts the ESP-IDF port with values from the sketch
 * instead of menuconfig, and takes the confirm decision away from arduino-esp32's start-up.
 */
#include "AegisOTA.h"

#include <WiFi.h>

#include "aegis_ota_esp.h"

/*
 * arduino-esp32's initArduino() (cores/esp32/esp32-hal-misc.c), built with
 * CONFIG_APP_ROLLBACK_ENABLE, runs before setup(): unless the weak hook verifyRollbackLater()
 * returns true, it marks a PENDING_VERIFY image valid at once (when the other weak hook
 * verifyOta() returns true, its default) — so any image that merely boots would be kept.
 * This strong definition, with C linkage because the hooks are declared in a C file, makes
 * initArduino() leave the image pending; AegisOTA::confirm() (or the bootloader's rollback
 * at the next reset) decides. It lives in this file so that it is linked whenever the class is.
 */
extern "C" bool verifyRollbackLater(void)
{
    return true;
}

bool AegisOTA::begin(const char *serverKeyHex, const char *hostname, uint16_t port)
{
    if (WiFi.status() != WL_CONNECTED) {
        log_e("AegisOTA::begin: connect Wi-Fi first");
        return false;
    }
    snprintf(ip_, sizeof ip_, "%s", WiFi.localIP().toString().c_str());
    aegis_esp_config_t cfg = AEGIS_ESP_CONFIG_DEFAULT;
    cfg.hostname = hostname;
    cfg.port = port;
    cfg.trusted_key_hex = serverKeyHex ? serverKeyHex : "";
    cfg.confirm_after_s = confirmAfterS_ > 0 ? (int32_t)confirmAfterS_ : -1;
    cfg.ip = ip_;
    esp_err_t err = aegis_ota_start(&cfg);
    if (err != ESP_OK) {
        log_e("AegisOTA::begin: %s", esp_err_to_name(err));
        return false;
    }
    return true;
}

bool AegisOTA::pendingVerify() const
{
    aegis_ota_t *ota = aegis_ota_instance();
    return ota != nullptr && aegis_ota_state(ota) == AEGIS_STATE_PENDING_VERIFY;
}

bool AegisOTA::confirm()
{
    aegis_ota_t *ota = aegis_ota_instance();
    return ota != nullptr && aegis_ota_confirm(ota) == 1;
}

void AegisOTA::rollback()
{
    aegis_ota_t *ota = aegis_ota_instance();
    if (ota != nullptr) aegis_ota_reject(ota);
}

const char *AegisOTA::runningVersion() const
{
    aegis_ota_t *ota = aegis_ota_instance();
    return ota != nullptr ? aegis_ota_running_version(ota) : "";
}

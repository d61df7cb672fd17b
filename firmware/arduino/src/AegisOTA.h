/*
 * AegisOTA.h — the AegisOTA device library for Arduino-ESP32 3.x: a thin C++ class over the
 * portable core (firmware/core) and the ESP-IDF port (firmware/esp-idf), which arduino-esp32
 * is built on.
 *
 *     AegisOTA ota;
 *     void setup() {
 *       WiFi.begin(SSID, PASSWORD);
 *       while (WiFi.status() != WL_CONNECTED) delay(200);
 *       ota.begin(AEGIS_SERVER_KEY);            // `aegis keys export --format hex`
 *     }
 *     void loop() {
 *       if (ota.pendingVerify() && healthy()) ota.confirm();
 *     }
 *
 * Unlike arduino-esp32's default (which marks every new image valid before setup() runs),
 * an image updated by AegisOTA stays pending until confirm(); a reset before that rolls it
 * back. Including this library is what turns that default off (see AegisOTA.cpp).
 */
#pragma once

#include <Arduino.h>

class AegisOTA {
public:
    /**
     * Starts the library; call once Wi-Fi is connected. `serverKeyHex`: the 130 hex digits of
     * `aegis keys export --format hex`, or nullptr/"" to accept unsigned triggers (development
     * only). `hostname`: mDNS name, nullptr = "aegis-" + last 4 hex digits of the MAC. `port`:
     * the control endpoint (GET /aegis/v1/info, POST /aegis/v1/ota). False on error (logged).
     */
    bool begin(const char *serverKeyHex, const char *hostname = nullptr, uint16_t port = 80);

    /** Confirm a pending image automatically `seconds` after begin() (0: only confirm()).
     *  Call before begin(). */
    void confirmAfter(uint32_t seconds) { confirmAfterS_ = seconds; }

    /** True on the first boot of a new image, until confirm(). */
    bool pendingVerify() const;

    /** The health check passed: keep this image. True when it was pending and is now valid. */
    bool confirm();

    /** The health check failed: roll back to the previous image and restart (no return). */
    void rollback();

    /** The running app version (PROJECT_VER / esp_app_desc_t.version). */
    const char *runningVersion() const;

private:
    uint32_t confirmAfterS_ = 0;
    char ip_[16] = {0};
};

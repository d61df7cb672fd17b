#pragma once
#include "Arduino.h"
typedef enum { WL_IDLE_STATUS = 0, WL_CONNECTED = 3 } wl_status_t;
typedef enum { WIFI_STA = 1 } wifi_mode_arduino_t;
class String {
public:
    const char *c_str() const;
};
class IPAddress {
public:
    String toString() const;
};
class WiFiClass {
public:
    bool mode(wifi_mode_arduino_t m);
    wl_status_t begin(const char *ssid, const char *passphrase);
    wl_status_t status();
    IPAddress localIP();
};
extern WiFiClass WiFi;

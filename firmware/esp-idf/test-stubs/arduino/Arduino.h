#pragma once
/* Minimal arduino-esp32 3.x surface used by AegisOTA.cpp and BasicOTA.ino. */
#include <stdint.h>
#include <stdio.h>
#include "esp_err.h"
#define log_e(fmt, ...) printf("E " fmt "\n", ##__VA_ARGS__)
unsigned long millis(void);
void delay(uint32_t ms);
class HardwareSerial {
public:
    void begin(unsigned long baud);
    size_t println(const char *s);
    size_t printf(const char *fmt, ...) __attribute__((format(printf, 2, 3)));
};
extern HardwareSerial Serial;

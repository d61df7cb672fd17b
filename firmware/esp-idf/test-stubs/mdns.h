#pragma once
#include <stddef.h>
#include <stdint.h>
#include "esp_err.h"
typedef struct {
    const char *key;
    const char *value;
} mdns_txt_item_t;
#ifdef __cplusplus
extern "C" {
#endif
esp_err_t mdns_init(void);
esp_err_t mdns_hostname_set(const char *hostname);
esp_err_t mdns_service_add(const char *instance_name, const char *service_type, const char *proto, uint16_t port,
                           mdns_txt_item_t txt[], size_t num_items);
esp_err_t mdns_service_txt_set(const char *service_type, const char *proto, mdns_txt_item_t txt[], uint8_t num_items);
esp_err_t mdns_service_remove(const char *service_type, const char *proto);
#ifdef __cplusplus
}
#endif

#pragma once
#include <stdint.h>
#include "esp_err.h"
#include "esp_event.h"
typedef struct esp_netif_obj esp_netif_t;
typedef struct { uint32_t addr; } esp_ip4_addr_t;
typedef struct { esp_ip4_addr_t ip, netmask, gw; } esp_netif_ip_info_t;
typedef struct {
    esp_netif_t *esp_netif;
    esp_netif_ip_info_t ip_info;
    int ip_changed;
} ip_event_got_ip_t;
extern const esp_event_base_t IP_EVENT;
typedef enum { IP_EVENT_STA_GOT_IP, IP_EVENT_STA_LOST_IP } ip_event_t;
#define esp_ip4_addr1_16(ipaddr) ((uint16_t)(((ipaddr)->addr) & 0xff))
#define esp_ip4_addr2_16(ipaddr) ((uint16_t)(((ipaddr)->addr >> 8) & 0xff))
#define esp_ip4_addr3_16(ipaddr) ((uint16_t)(((ipaddr)->addr >> 16) & 0xff))
#define esp_ip4_addr4_16(ipaddr) ((uint16_t)(((ipaddr)->addr >> 24) & 0xff))
#define IP2STR(ipaddr) esp_ip4_addr1_16(ipaddr), esp_ip4_addr2_16(ipaddr), esp_ip4_addr3_16(ipaddr), esp_ip4_addr4_16(ipaddr)
#define IPSTR "%d.%d.%d.%d"
#ifdef __cplusplus
extern "C" {
#endif
esp_err_t esp_netif_init(void);
esp_netif_t *esp_netif_get_handle_from_ifkey(const char *if_key);
esp_err_t esp_netif_get_ip_info(esp_netif_t *esp_netif, esp_netif_ip_info_t *ip_info);
esp_netif_t *esp_netif_create_default_wifi_sta(void);
#ifdef __cplusplus
}
#endif

/*
 * AegisOTA basic example: join Wi-Fi, start AegisOTA, and confirm a freshly updated image only
 * after the application's own health check passed. An image that fails the check (or crashes
 * before it) is rolled back to the previous one, which the server then sees as `rolled_back`.
 *
 * Flash once by USB (`idf.py flash`), then update over the air with `aegis deploy`.
 */
#include <string.h>

#include "freertos/FreeRTOS.h"
#include "freertos/event_groups.h"
#include "freertos/task.h"

#include "esp_event.h"
#include "esp_heap_caps.h"
#include "esp_log.h"
#include "esp_netif.h"
#include "esp_wifi.h"
#include "nvs_flash.h"
#include "sdkconfig.h"

#include "aegis_ota_esp.h"

static const char *TAG = "example";
static EventGroupHandle_t s_net;
#define GOT_IP BIT0

static void on_wifi(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    (void)arg;
    (void)data;
    if (base == WIFI_EVENT && (id == WIFI_EVENT_STA_START || id == WIFI_EVENT_STA_DISCONNECTED)) {
        esp_wifi_connect();
    } else if (base == IP_EVENT && id == IP_EVENT_STA_GOT_IP) {
        xEventGroupSetBits(s_net, GOT_IP);
    }
}

static void wifi_start(void)
{
    s_net = xEventGroupCreate();
    ESP_ERROR_CHECK(esp_netif_init());
    ESP_ERROR_CHECK(esp_event_loop_create_default());
    esp_netif_create_default_wifi_sta();
    wifi_init_config_t init = WIFI_INIT_CONFIG_DEFAULT();
    ESP_ERROR_CHECK(esp_wifi_init(&init));
    ESP_ERROR_CHECK(esp_event_handler_instance_register(WIFI_EVENT, ESP_EVENT_ANY_ID, on_wifi, NULL, NULL));
    ESP_ERROR_CHECK(esp_event_handler_instance_register(IP_EVENT, IP_EVENT_STA_GOT_IP, on_wifi, NULL, NULL));
    wifi_config_t wc = {0};
    strncpy((char *)wc.sta.ssid, CONFIG_EXAMPLE_WIFI_SSID, sizeof wc.sta.ssid);
    strncpy((char *)wc.sta.password, CONFIG_EXAMPLE_WIFI_PASSWORD, sizeof wc.sta.password);
    ESP_ERROR_CHECK(esp_wifi_set_mode(WIFI_MODE_STA));
    ESP_ERROR_CHECK(esp_wifi_set_config(WIFI_IF_STA, &wc));
    ESP_ERROR_CHECK(esp_wifi_start());
}

/* Replace with what "this release works" means for your device: sensors answer, the cloud
 * connection comes up, the main loop ran for a while... Here: enough heap after start-up. */
static bool health_check(void)
{
    return heap_caps_get_free_size(MALLOC_CAP_DEFAULT) > 32 * 1024;
}

void app_main(void)
{
    esp_err_t err = nvs_flash_init();
    if (err == ESP_ERR_NVS_NO_FREE_PAGES || err == ESP_ERR_NVS_NEW_VERSION_FOUND) {
        ESP_ERROR_CHECK(nvs_flash_erase());
        err = nvs_flash_init();
    }
    ESP_ERROR_CHECK(err);

    wifi_start();
    xEventGroupWaitBits(s_net, GOT_IP, pdFALSE, pdTRUE, portMAX_DELAY);
    ESP_ERROR_CHECK(aegis_ota_start(NULL)); /* port, hostname, key, policy: menuconfig */

    aegis_ota_t *ota = aegis_ota_instance();
    if (aegis_ota_state(ota) == AEGIS_STATE_PENDING_VERIFY) {
        vTaskDelay(pdMS_TO_TICKS(10 * 1000)); /* let the new release run for a while */
        if (health_check()) {
            ESP_LOGI(TAG, "health check passed: confirming %s", aegis_ota_running_version(ota));
            aegis_ota_confirm(ota);
        } else {
            ESP_LOGE(TAG, "health check failed: rolling back");
            aegis_ota_reject(ota); /* does not return */
        }
    }

    for (;;) {
        vTaskDelay(pdMS_TO_TICKS(1000)); /* the application's work */
    }
}

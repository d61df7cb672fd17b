/*
 * port_esp_idf.c — the AegisOTA port for ESP-IDF 5.x: fills the core's aegis_port_t with
 * esp_ota_ops (slots), esp_http_client (image download, reports), esp_http_server (the control
 * endpoint), the espressif/mdns component (announce, goodbye), NVS (last attempt), esp_random
 * and esp_timer, and runs accepted updates on a task of its own. The protocol logic is all in
 * the core (firmware/core); nothing here decides anything the protocol defines.
 *
 * Also compiled by the Arduino library (firmware/arduino), where no Kconfig values exist:
 * every CONFIG_AEGIS_OTA_* use is guarded and has a default.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "freertos/FreeRTOS.h"
#include "freertos/semphr.h"
#include "freertos/task.h"

#include "esp_app_desc.h"
#include "esp_event.h"
#include "esp_http_client.h"
#include "esp_http_server.h"
#include "esp_log.h"
#include "esp_mac.h"
#include "esp_netif.h"
#include "esp_ota_ops.h"
#include "esp_partition.h"
#include "esp_random.h"
#include "esp_system.h"
#include "esp_timer.h"
#include "mdns.h"
#include "nvs.h"
#include "sdkconfig.h"
#if CONFIG_MBEDTLS_CERTIFICATE_BUNDLE
#include "esp_crt_bundle.h"
#endif

#include "aegis_ota_esp.h"

#ifndef CONFIG_AEGIS_OTA_PORT
#define CONFIG_AEGIS_OTA_PORT 80
#endif
#ifndef CONFIG_AEGIS_OTA_HOSTNAME
#define CONFIG_AEGIS_OTA_HOSTNAME ""
#endif
#ifndef CONFIG_AEGIS_OTA_TRUSTED_KEY
#define CONFIG_AEGIS_OTA_TRUSTED_KEY ""
#endif
#if defined(CONFIG_AEGIS_OTA_CONFIRM_AFTER_CONNECTED) && defined(CONFIG_AEGIS_OTA_CONFIRM_AFTER_S)
#define AEGIS_KCONFIG_CONFIRM_S CONFIG_AEGIS_OTA_CONFIRM_AFTER_S
#else
#define AEGIS_KCONFIG_CONFIRM_S 0
#endif

static const char *TAG = "aegis";

#define MDNS_SERVICE "_aegis-ota"
#define MDNS_PROTO "_tcp"
#define NVS_NAMESPACE "aegis"
#define HTTP_TIMEOUT_MS 10000
#define REPORT_TIMEOUT_MS 3000
#define MAX_TXT_ITEMS 16
#define POLL_PERIOD_MS 100
#define TASK_STACK 8192

/* Everything the port keeps; one instance, statically allocated. */
typedef struct {
    SemaphoreHandle_t mutex;
    StaticSemaphore_t mutex_storage;
    TaskHandle_t task;
    httpd_handle_t server;
    esp_netif_t *netif;
    nvs_handle_t nvs;
    const esp_partition_t *running;
    const esp_partition_t *target;    /* the slot being written (esp_ota_begin) */
    esp_ota_handle_t ota_handle;
    bool ota_open;
    bool announced;
    char mdns_host[AEGIS_HOSTNAME_MAX + 1];
    uint8_t key[AEGIS_PUBKEY_LEN];
    char id[13];
    char hostname[AEGIS_HOSTNAME_MAX + 1];
    char ip[16];
    char body[AEGIS_MAX_TRIGGER_BODY];   /* one trigger at a time: httpd runs one task */
    char rx[2048];                       /* download read buffer (the update task only) */
} esp_port_t;

static esp_port_t s_port;
static aegis_ota_t s_ota;
static bool s_started;

/* ------------------------------------------------------------------------ flash slots ---- */

static int port_running_slot(void *ctx, aegis_running_slot_t *out)
{
    esp_port_t *p = ctx;
    const esp_partition_t *part = p->running;
    if (part == NULL) return AEGIS_PORT_ERR;
    /* The protocol names slots by subtype ("ota_0"), not by label: Arduino's default table
     * labels them "app0"/"app1". */
    if (part->subtype == ESP_PARTITION_SUBTYPE_APP_FACTORY) {
        snprintf(out->label, sizeof out->label, "factory");
    } else if (part->subtype >= ESP_PARTITION_SUBTYPE_APP_OTA_MIN &&
               part->subtype < ESP_PARTITION_SUBTYPE_APP_OTA_MAX) {
        snprintf(out->label, sizeof out->label, "ota_%d", (int)(part->subtype - ESP_PARTITION_SUBTYPE_APP_OTA_MIN));
    } else {
        snprintf(out->label, sizeof out->label, "%s", part->label);
    }
    out->partition_size = part->size;
    out->state = AEGIS_IMG_VALID;
    esp_ota_img_states_t st;
    esp_err_t err = esp_ota_get_state_partition(part, &st);
    if (err == ESP_OK) {
        switch (st) {
        case ESP_OTA_IMG_PENDING_VERIFY: out->state = AEGIS_IMG_PENDING_VERIFY; break;
        case ESP_OTA_IMG_NEW: out->state = AEGIS_IMG_NEW; break;
        case ESP_OTA_IMG_INVALID:
        case ESP_OTA_IMG_ABORTED: out->state = AEGIS_IMG_ABORTED; break;
        case ESP_OTA_IMG_UNDEFINED: out->state = AEGIS_IMG_UNDEFINED; break;
        default: out->state = AEGIS_IMG_VALID; break;
        }
    } else if (err == ESP_ERR_NOT_FOUND) {
        out->state = AEGIS_IMG_UNDEFINED; /* no otadata entry: first USB flash */
    } /* ESP_ERR_NOT_SUPPORTED: factory app, valid */
    return AEGIS_PORT_OK;
}

static int port_running_read(void *ctx, uint32_t offset, void *buf, size_t len)
{
    esp_port_t *p = ctx;
    if (p->running == NULL || (uint64_t)offset + len > p->running->size) return AEGIS_PORT_ERR;
    return esp_partition_read(p->running, offset, buf, len) == ESP_OK ? AEGIS_PORT_OK : AEGIS_PORT_ERR;
}

static uint32_t port_update_slot_size(void *ctx)
{
    (void)ctx;
    const esp_partition_t *next = esp_ota_get_next_update_partition(NULL);
    return next ? (uint32_t)next->size : 0;
}

static void port_update_abort(void *ctx)
{
    esp_port_t *p = ctx;
    if (p->ota_open) {
        (void)esp_ota_abort(p->ota_handle);
        p->ota_open = false;
    }
}

static int port_update_begin(void *ctx, uint32_t image_size)
{
    esp_port_t *p = ctx;
    port_update_abort(p);
    p->target = esp_ota_get_next_update_partition(NULL);
    if (p->target == NULL) {
        ESP_LOGE(TAG, "no inactive OTA slot (the partition table needs otadata, ota_0 and ota_1)");
        return AEGIS_PORT_ERR;
    }
    /* Erases exactly the image's sectors up front (image_size > 0, never OTA_SIZE_UNKNOWN). */
    esp_err_t err = esp_ota_begin(p->target, image_size, &p->ota_handle);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "esp_ota_begin(%s, %" PRIu32 "): %s", p->target->label, image_size, esp_err_to_name(err));
        return AEGIS_PORT_ERR;
    }
    p->ota_open = true;
    return AEGIS_PORT_OK;
}

static int port_update_write(void *ctx, uint32_t offset, const void *data, size_t len)
{
    esp_port_t *p = ctx;
    (void)offset; /* sequential by contract; esp_ota_write appends */
    if (!p->ota_open) return AEGIS_PORT_ERR;
    esp_err_t err = esp_ota_write(p->ota_handle, data, len);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "esp_ota_write at %" PRIu32 ": %s", offset, esp_err_to_name(err));
        return AEGIS_PORT_ERR;
    }
    return AEGIS_PORT_OK;
}

static int port_update_end(void *ctx)
{
    esp_port_t *p = ctx;
    if (!p->ota_open) return AEGIS_PORT_ERR;
    p->ota_open = false; /* esp_ota_end frees the handle whatever it returns */
    esp_err_t err = esp_ota_end(p->ota_handle);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "esp_ota_end: %s", esp_err_to_name(err)); /* ESP_ERR_OTA_VALIDATE_FAILED: bad image */
        return AEGIS_PORT_ERR;
    }
    return AEGIS_PORT_OK;
}

static int port_set_boot(void *ctx)
{
    esp_port_t *p = ctx;
    if (p->target == NULL) return AEGIS_PORT_ERR;
    esp_err_t err = esp_ota_set_boot_partition(p->target);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "esp_ota_set_boot_partition(%s): %s", p->target->label, esp_err_to_name(err));
        return AEGIS_PORT_ERR;
    }
    return AEGIS_PORT_OK;
}

static int port_mark_valid(void *ctx)
{
    (void)ctx;
    esp_err_t err = esp_ota_mark_app_valid_cancel_rollback();
    if (err != ESP_OK) ESP_LOGE(TAG, "esp_ota_mark_app_valid_cancel_rollback: %s", esp_err_to_name(err));
    return err == ESP_OK ? AEGIS_PORT_OK : AEGIS_PORT_ERR;
}

static int port_rollback_and_reboot(void *ctx)
{
    (void)ctx;
    esp_err_t err = esp_ota_mark_app_invalid_rollback_and_reboot(); /* returns only on failure */
    ESP_LOGE(TAG, "esp_ota_mark_app_invalid_rollback_and_reboot: %s", esp_err_to_name(err));
    return AEGIS_PORT_ERR;
}

static void port_reboot(void *ctx)
{
    (void)ctx;
    vTaskDelay(pdMS_TO_TICKS(300)); /* let the mDNS goodbye and the last report leave */
    esp_restart();
}

/* ------------------------------------------------------------------------ HTTP client ---- */

static esp_http_client_handle_t client_for(const char *url, int timeout_ms)
{
    esp_http_client_config_t cfg = {
        .url = url,
        .timeout_ms = timeout_ms,
        .disable_auto_redirect = true,
#if CONFIG_MBEDTLS_CERTIFICATE_BUNDLE
        .crt_bundle_attach = esp_crt_bundle_attach, /* https:// image URLs */
#endif
    };
    return esp_http_client_init(&cfg);
}

static int port_http_get(void *ctx, const char *url, uint64_t range_from, aegis_http_head_cb on_head,
                         aegis_http_data_cb on_data, void *user)
{
    esp_port_t *p = ctx;
    esp_http_client_handle_t c = client_for(url, HTTP_TIMEOUT_MS);
    if (c == NULL) return AEGIS_PORT_ERR;
    int rc = AEGIS_PORT_ERR;
    if (range_from > 0) {
        char range[40];
        snprintf(range, sizeof range, "bytes=%" PRIu64 "-", range_from);
        if (esp_http_client_set_header(c, "Range", range) != ESP_OK) goto out;
    }
    esp_err_t err = esp_http_client_open(c, 0);
    if (err != ESP_OK) {
        ESP_LOGW(TAG, "GET %s: %s", url, esp_err_to_name(err));
        goto out;
    }
    if (esp_http_client_fetch_headers(c) < 0) goto out; /* -1 or -ESP_ERR_HTTP_EAGAIN */
    int64_t length = esp_http_client_is_chunked_response(c) ? -1 : esp_http_client_get_content_length(c);
    if (on_head(user, esp_http_client_get_status_code(c), length) != AEGIS_PORT_OK) {
        rc = AEGIS_PORT_ABORT;
        goto out;
    }
    for (;;) {
        int n = esp_http_client_read(c, p->rx, (int)sizeof p->rx);
        if (n > 0) {
            if (on_data(user, (const uint8_t *)p->rx, (size_t)n) != AEGIS_PORT_OK) {
                rc = AEGIS_PORT_ABORT;
                break;
            }
        } else if (n == 0 && esp_http_client_is_complete_data_received(c)) {
            rc = AEGIS_PORT_OK;
            break;
        } else {
            /* n < 0 (error, -ESP_ERR_HTTP_EAGAIN on timeout) or a close before Content-Length:
             * a transport error, so the core resumes with a Range request. */
            ESP_LOGW(TAG, "GET %s: connection ended early (%d)", url, n);
            break;
        }
    }
out:
    esp_http_client_cleanup(c); /* closes the connection too */
    return rc;
}

static int port_http_post_json(void *ctx, const char *url, const char *body, size_t len)
{
    (void)ctx;
    esp_http_client_handle_t c = client_for(url, REPORT_TIMEOUT_MS);
    if (c == NULL) return AEGIS_PORT_ERR;
    int status = AEGIS_PORT_ERR;
    if (esp_http_client_set_method(c, HTTP_METHOD_POST) == ESP_OK &&
        esp_http_client_set_header(c, "Content-Type", "application/json") == ESP_OK &&
        esp_http_client_set_post_field(c, body, (int)len) == ESP_OK && esp_http_client_perform(c) == ESP_OK) {
        status = esp_http_client_get_status_code(c);
    }
    esp_http_client_cleanup(c);
    return status;
}

/* ------------------------------------------------------------------------------ mDNS ---- */

static int port_mdns_announce(void *ctx, const aegis_announcement_t *a)
{
    esp_port_t *p = ctx;
    mdns_txt_item_t txt[MAX_TXT_ITEMS];
    size_t n = a->txt_count < MAX_TXT_ITEMS ? a->txt_count : MAX_TXT_ITEMS;
    for (size_t i = 0; i < n; i++) {
        txt[i].key = a->txt[i].key;   /* the mdns component copies keys and values */
        txt[i].value = a->txt[i].value;
    }
    esp_err_t err = ESP_OK;
    if (strcmp(p->mdns_host, a->hostname) != 0) {
        err = mdns_hostname_set(a->hostname);
        if (err != ESP_OK) goto fail;
        snprintf(p->mdns_host, sizeof p->mdns_host, "%s", a->hostname);
    }
    if (p->announced) {
        err = mdns_service_txt_set(MDNS_SERVICE, MDNS_PROTO, txt, (uint8_t)n);
    } else {
        err = mdns_service_add(a->instance, MDNS_SERVICE, MDNS_PROTO, a->port, txt, n);
        p->announced = err == ESP_OK;
    }
    if (err == ESP_OK) return AEGIS_PORT_OK;
fail:
    ESP_LOGE(TAG, "mDNS announce: %s", esp_err_to_name(err));
    return AEGIS_PORT_ERR;
}

static void port_mdns_goodbye(void *ctx)
{
    esp_port_t *p = ctx;
    if (!p->announced) return;
    /* Removing the service sends its records with TTL 0 (the goodbye). */
    esp_err_t err = mdns_service_remove(MDNS_SERVICE, MDNS_PROTO);
    if (err != ESP_OK) ESP_LOGW(TAG, "mdns_service_remove: %s", esp_err_to_name(err));
    p->announced = false;
}

/* ------------------------------------------------------------------------------- NVS ---- */

static int port_kv_get(void *ctx, const char *key, void *buf, size_t cap, size_t *len)
{
    esp_port_t *p = ctx;
    size_t size = cap;
    esp_err_t err = nvs_get_blob(p->nvs, key, buf, &size);
    if (err == ESP_ERR_NVS_NOT_FOUND) return AEGIS_PORT_NOT_FOUND;
    if (err != ESP_OK) return AEGIS_PORT_ERR; /* ESP_ERR_NVS_INVALID_LENGTH: does not fit */
    *len = size;
    return AEGIS_PORT_OK;
}

static int port_kv_set(void *ctx, const char *key, const void *value, size_t len)
{
    esp_port_t *p = ctx;
    esp_err_t err = nvs_set_blob(p->nvs, key, value, len);
    if (err == ESP_OK) err = nvs_commit(p->nvs);
    if (err != ESP_OK) ESP_LOGE(TAG, "NVS %s: %s", key, esp_err_to_name(err));
    return err == ESP_OK ? AEGIS_PORT_OK : AEGIS_PORT_ERR;
}

/* ---------------------------------------------------------- randomness, time, log, lock -- */

static void port_random(void *ctx, void *buf, size_t len)
{
    (void)ctx;
    esp_fill_random(buf, len); /* true random once Wi-Fi is up, which aegis_ota_start needs */
}

static uint64_t port_millis(void *ctx)
{
    (void)ctx;
    return (uint64_t)(esp_timer_get_time() / 1000);
}

static void port_delay_ms(void *ctx, uint32_t ms)
{
    (void)ctx;
    TickType_t ticks = pdMS_TO_TICKS(ms);
    vTaskDelay(ticks > 0 ? ticks : 1);
}

static void port_log(void *ctx, aegis_log_level_t level, const char *line)
{
    (void)ctx;
    switch (level) {
    case AEGIS_LOG_ERROR: ESP_LOGE(TAG, "%s", line); break;
    case AEGIS_LOG_WARN: ESP_LOGW(TAG, "%s", line); break;
    case AEGIS_LOG_INFO: ESP_LOGI(TAG, "%s", line); break;
    default: ESP_LOGD(TAG, "%s", line); break;
    }
}

static void port_lock(void *ctx)
{
    esp_port_t *p = ctx;
    xSemaphoreTakeRecursive(p->mutex, portMAX_DELAY);
}

static void port_unlock(void *ctx)
{
    esp_port_t *p = ctx;
    xSemaphoreGiveRecursive(p->mutex);
}

/* ------------------------------------------------------------------------ HTTP server ---- */

static const char *status_line(int status)
{
    switch (status) {
    case 200: return "200 OK";
    case 202: return "202 Accepted";
    case 400: return "400 Bad Request";
    case 401: return "401 Unauthorized";
    case 404: return "404 Not Found";
    case 405: return "405 Method Not Allowed";
    case 409: return "409 Conflict";
    case 412: return "412 Precondition Failed";
    case 413: return "413 Payload Too Large";
    case 422: return "422 Unprocessable Entity";
    default: return "500 Internal Server Error";
    }
}

/* Sends the core's reply. httpd_resp_set_status keeps the pointer: the strings are static. */
static esp_err_t send_reply(httpd_req_t *req, const aegis_response_t *resp)
{
    httpd_resp_set_status(req, status_line(resp->status));
    httpd_resp_set_type(req, resp->content_type);
    return httpd_resp_send(req, resp->body, (ssize_t)resp->body_len);
}

static esp_err_t handle_info(httpd_req_t *req)
{
    aegis_response_t resp;
    aegis_ota_handle_request(&s_ota, "GET", req->uri, NULL, 0, &resp);
    return send_reply(req, &resp);
}

static esp_err_t handle_trigger(httpd_req_t *req)
{
    esp_port_t *p = req->user_ctx;
    aegis_response_t resp;
    if (req->content_len > sizeof p->body) {
        /* The core answers 400 body_too_large from the length alone; close instead of
         * draining a body we will not read. */
        aegis_ota_handle_request(&s_ota, "POST", req->uri, NULL, req->content_len, &resp);
        httpd_resp_set_hdr(req, "Connection", "close");
        send_reply(req, &resp);
        return ESP_FAIL;
    }
    size_t got = 0;
    int timeouts = 0;
    while (got < req->content_len) {
        int n = httpd_req_recv(req, p->body + got, req->content_len - got);
        if (n == HTTPD_SOCK_ERR_TIMEOUT && ++timeouts < 3) continue;
        if (n <= 0) return ESP_FAIL; /* closes the socket */
        got += (size_t)n;
    }
    aegis_ota_handle_request(&s_ota, "POST", req->uri, (const uint8_t *)p->body, got, &resp);
    esp_err_t err = send_reply(req, &resp);
    if (resp.status == 202 && p->task) xTaskNotifyGive(p->task); /* start the download now */
    return err;
}

static esp_err_t register_handlers(esp_port_t *p)
{
    const httpd_uri_t info = {.uri = AEGIS_INFO_PATH, .method = HTTP_GET, .handler = handle_info, .user_ctx = p};
    const httpd_uri_t ota = {.uri = AEGIS_OTA_PATH, .method = HTTP_POST, .handler = handle_trigger, .user_ctx = p};
    esp_err_t err = httpd_register_uri_handler(p->server, &info);
    if (err == ESP_OK) err = httpd_register_uri_handler(p->server, &ota);
    return err;
}

/* ------------------------------------------------------------------- task and events ---- */

static void update_task(void *arg)
{
    (void)arg;
    for (;;) {
        (void)ulTaskNotifyTake(pdTRUE, pdMS_TO_TICKS(POLL_PERIOD_MS));
        aegis_ota_poll(&s_ota); /* runs a whole accepted update; reboots on success */
    }
}

static void on_got_ip(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    esp_port_t *p = arg;
    const ip_event_got_ip_t *ev = data;
    (void)base;
    (void)id;
    if (p->netif != NULL && ev->esp_netif != p->netif) return;
    snprintf(p->ip, sizeof p->ip, IPSTR, IP2STR(&ev->ip_info.ip));
    aegis_ota_set_ip(&s_ota, p->ip);
}

/* ---------------------------------------------------------------------------- start ---- */

static int hex_nibble(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* 130 hex digits -> the 65-byte SEC1 key; false for anything else. */
static bool parse_key(const char *hex, uint8_t out[AEGIS_PUBKEY_LEN])
{
    if (strlen(hex) != 2 * AEGIS_PUBKEY_LEN) return false;
    for (size_t i = 0; i < AEGIS_PUBKEY_LEN; i++) {
        int hi = hex_nibble(hex[2 * i]), lo = hex_nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = (uint8_t)((hi << 4) | lo);
    }
    return out[0] == 0x04;
}

static const aegis_port_t PORT_TABLE = {
    .ctx = &s_port,
    .running_slot = port_running_slot,
    .running_read = port_running_read,
    .update_slot_size = port_update_slot_size,
    .update_begin = port_update_begin,
    .update_write = port_update_write,
    .update_end = port_update_end,
    .update_abort = port_update_abort,
    .set_boot = port_set_boot,
    .mark_valid = port_mark_valid,
    .rollback_and_reboot = port_rollback_and_reboot,
    .reboot = port_reboot,
    .http_get = port_http_get,
    .http_post_json = port_http_post_json,
    .mdns_announce = port_mdns_announce,
    .mdns_goodbye = port_mdns_goodbye,
    .kv_get = port_kv_get,
    .kv_set = port_kv_set,
    .random = port_random,
    .millis = port_millis,
    .delay_ms = port_delay_ms,
    .log = port_log,
    .lock = port_lock,
    .unlock = port_unlock,
};

esp_err_t aegis_ota_start(const aegis_esp_config_t *user_cfg)
{
    static const aegis_esp_config_t defaults = AEGIS_ESP_CONFIG_DEFAULT;
    const aegis_esp_config_t *cfg = user_cfg ? user_cfg : &defaults;
    esp_port_t *p = &s_port;
    if (s_started) return ESP_ERR_INVALID_STATE;

    /* Identity: id from the station MAC, address from the interface. */
    uint8_t mac[6];
    esp_err_t err = esp_read_mac(mac, ESP_MAC_WIFI_STA);
    if (err != ESP_OK) return err;
    snprintf(p->id, sizeof p->id, "%02x%02x%02x%02x%02x%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
    p->netif = cfg->netif ? cfg->netif : esp_netif_get_handle_from_ifkey("WIFI_STA_DEF");
    esp_netif_ip_info_t ip_info;
    if (cfg->ip && cfg->ip[0] != '\0') {
        snprintf(p->ip, sizeof p->ip, "%s", cfg->ip);
    } else if (p->netif && esp_netif_get_ip_info(p->netif, &ip_info) == ESP_OK && ip_info.ip.addr != 0) {
        snprintf(p->ip, sizeof p->ip, IPSTR, IP2STR(&ip_info.ip));
    } else {
        ESP_LOGE(TAG, "start AegisOTA after the interface has an IPv4 address");
        return ESP_ERR_INVALID_STATE;
    }
    const char *host = cfg->hostname ? cfg->hostname : CONFIG_AEGIS_OTA_HOSTNAME;
    if (host[0] != '\0') snprintf(p->hostname, sizeof p->hostname, "%s", host);
    else snprintf(p->hostname, sizeof p->hostname, "aegis-%s", p->id + 8);

    /* Trusted key: a key that is configured but malformed stops start-up. */
    const char *key_hex = cfg->trusted_key_hex ? cfg->trusted_key_hex : CONFIG_AEGIS_OTA_TRUSTED_KEY;
    bool has_key = key_hex[0] != '\0';
    if (has_key && !parse_key(key_hex, p->key)) {
        ESP_LOGE(TAG, "the trusted key must be the 130 hex digits of `aegis keys export --format hex`");
        return ESP_ERR_INVALID_ARG;
    }
    if (!has_key) ESP_LOGW(TAG, "no trusted key configured: accepting UNSIGNED update triggers");

    p->running = esp_ota_get_running_partition();
    p->mutex = xSemaphoreCreateRecursiveMutexStatic(&p->mutex_storage);
    err = nvs_open(NVS_NAMESPACE, NVS_READWRITE, &p->nvs);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "nvs_open: %s (call nvs_flash_init() first)", esp_err_to_name(err));
        return err;
    }
    err = mdns_init();
    if (err != ESP_OK && err != ESP_ERR_INVALID_STATE) return err; /* already running: fine */

    uint16_t port = cfg->port ? cfg->port : CONFIG_AEGIS_OTA_PORT;
    int32_t confirm_s = cfg->confirm_after_s ? cfg->confirm_after_s : AEGIS_KCONFIG_CONFIRM_S;
    aegis_config_t core_cfg = AEGIS_CONFIG_DEFAULT;
    core_cfg.id = p->id;
    core_cfg.hostname = p->hostname;
    core_cfg.ip = p->ip;
    core_cfg.port = port;
    core_cfg.trusted_key = has_key ? p->key : NULL;
    core_cfg.confirm_after_ms = confirm_s > 0 ? (uint32_t)confirm_s * 1000u : 0;
    if (aegis_ota_init(&s_ota, &core_cfg, &PORT_TABLE) != 0) return ESP_FAIL; /* reason logged */

    const esp_app_desc_t *app = esp_app_get_description();
    ESP_LOGI(TAG, "%s %s on %s, id %s, http://%s:%u%s", app->project_name, app->version,
             p->running ? p->running->label : "?", p->id, p->ip, (unsigned)port, AEGIS_INFO_PATH);

    if (cfg->server) {
        p->server = cfg->server;
    } else {
        httpd_config_t hc = HTTPD_DEFAULT_CONFIG();
        hc.server_port = port;
        hc.ctrl_port = (uint16_t)(hc.ctrl_port + 7); /* keep clear of an app's own httpd */
        hc.stack_size = TASK_STACK;                  /* ECDSA verification runs here */
        err = httpd_start(&p->server, &hc);
        if (err != ESP_OK) return err;
    }
    err = register_handlers(p);
    if (err != ESP_OK) return err;
    err = esp_event_handler_instance_register(IP_EVENT, IP_EVENT_STA_GOT_IP, on_got_ip, p, NULL);
    if (err != ESP_OK) return err;
    if (xTaskCreate(update_task, "aegis_ota", TASK_STACK, NULL, tskIDLE_PRIORITY + 2, &p->task) != pdPASS) {
        return ESP_ERR_NO_MEM;
    }
    s_started = true;
    return ESP_OK;
}

aegis_ota_t *aegis_ota_instance(void)
{
    return s_started ? &s_ota : NULL;
}

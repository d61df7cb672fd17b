/*
 * aegis_port.h — what the portable AegisOTA core needs from a platform.
 *
 * The core (firmware/core) never calls an operating system, a network stack or a flash driver
 * directly: it calls the functions in one `aegis_port_t` table that the platform fills in and
 * hands to aegis_ota_init(). Two ports exist: firmware/posix (a Linux process acting as a
 * device, built and tested in CI) and firmware/esp-idf (esp_ota_ops, esp_http_client, the
 * espressif/mdns component, NVS, esp_random).
 *
 * Conventions for every callback:
 *  - the first argument is `port->ctx`, passed through untouched;
 *  - functions returning `int` return 0 (AEGIS_PORT_OK) on success and a negative value on
 *    failure; the core logs the failure and takes the protocol's failure path (for an update:
 *    abort, keep the running slot, report `failed`);
 *  - strings are NUL-terminated UTF-8; buffers passed in are owned by the caller and valid only
 *    for the duration of the call (copy what you keep);
 *  - callbacks may block (the core calls them from the thread that called the core), but none
 *    is called with the core's lock held across network or flash I/O except where noted.
 *
 * Threading: the core may be entered from two threads — the HTTP server's thread
 * (aegis_ota_handle_request) and an application/worker thread (aegis_ota_poll, aegis_ota_confirm,
 * ...). If they can run concurrently, set `lock`/`unlock` to a mutex; the core holds it only for
 * short state updates, never across a download. Leave both NULL on a single-threaded port.
 *
 * Memory: the core allocates nothing; every buffer lives in the caller-provided `aegis_ota_t`.
 * (mbedTLS's bignum code, used for the one ECDSA verification per trigger, allocates
 * internally with its own calloc, as it does everywhere in ESP-IDF.)
 */
#ifndef AEGIS_PORT_H
#define AEGIS_PORT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Success; any negative value is a failure. */
#define AEGIS_PORT_OK 0
/** A generic failure. */
#define AEGIS_PORT_ERR (-1)
/** kv_get(): the key does not exist (not an error for the core). */
#define AEGIS_PORT_NOT_FOUND (-2)
/** http_get() data/response callbacks: return this to stop the transfer early. */
#define AEGIS_PORT_ABORT (-3)

/** Longest partition label, as in ESP-IDF (`esp_partition_t.label` holds 16 + NUL). */
#define AEGIS_LABEL_MAX 16

/**
 * The otadata state of the running image, as ESP-IDF's esp_ota_img_states_t. A factory image
 * (or a build without rollback support) reports AEGIS_IMG_VALID.
 */
typedef enum {
    AEGIS_IMG_VALID = 0,          /**< confirmed (or factory / rollback disabled) */
    AEGIS_IMG_PENDING_VERIFY = 1, /**< first boot after an update, not yet confirmed */
    AEGIS_IMG_NEW = 2,            /**< written, never booted (not seen by a running app) */
    AEGIS_IMG_ABORTED = 3,        /**< rolled back (not seen by a running app) */
    AEGIS_IMG_UNDEFINED = 4       /**< no otadata entry */
} aegis_img_state_t;

/** The running partition, as the core needs to know it. */
typedef struct {
    char label[AEGIS_LABEL_MAX + 1]; /**< "factory", "ota_0", "ota_1", ... */
    aegis_img_state_t state;         /**< esp_ota_get_state_partition() of the running slot */
    uint32_t partition_size;         /**< bytes of the running partition (bounds running_read) */
} aegis_running_slot_t;

/** Log levels for port->log. */
typedef enum {
    AEGIS_LOG_ERROR = 0,
    AEGIS_LOG_WARN = 1,
    AEGIS_LOG_INFO = 2,
    AEGIS_LOG_DEBUG = 3
} aegis_log_level_t;

/** One TXT item of the mDNS announcement (the key is lower case; the value may be empty). */
typedef struct {
    const char *key;
    const char *value;
} aegis_txt_item_t;

/** Everything the platform's mDNS responder announces (section 1 of PROTOCOL.md). */
typedef struct {
    const char *service_type;  /**< always "_aegis-ota._tcp.local." (ESP-IDF: "_aegis-ota", "_tcp") */
    const char *instance;      /**< the instance name = the device hostname */
    const char *hostname;      /**< host name for the SRV/A records (without ".local") */
    const char *ip;            /**< dotted IPv4 of the A record */
    uint16_t port;             /**< SRV port = the control endpoint's port */
    const aegis_txt_item_t *txt; /**< TXT items in protocol order, all within the size limits */
    size_t txt_count;
} aegis_announcement_t;

/**
 * Called by the platform's HTTP client for the response head of http_get(): the status code
 * and the Content-Length (-1 when the server sent none). Return AEGIS_PORT_OK to receive the
 * body, AEGIS_PORT_ABORT to stop.
 */
typedef int (*aegis_http_head_cb)(void *user, int status, int64_t content_length);

/**
 * Called for each piece of the response body, in order, with any length > 0 (the core does
 * its own 4 KiB chunking). Return AEGIS_PORT_OK to continue, AEGIS_PORT_ABORT to stop.
 */
typedef int (*aegis_http_data_cb)(void *user, const uint8_t *data, size_t len);

/**
 * The platform table. Every member marked (required) must be set; (optional) members may be
 * NULL and the core does without them.
 */
typedef struct aegis_port {
    /** Passed as the first argument to every callback. */
    void *ctx;

    /* ---------------------------------------------------------------- flash slots -------- */

    /**
     * (required) Describe the running partition. ESP-IDF: esp_ota_get_running_partition(),
     * esp_ota_get_state_partition().
     */
    int (*running_slot)(void *ctx, aegis_running_slot_t *out);

    /**
     * (required) Read `len` bytes at `offset` of the running partition. The core reads the
     * image header and app descriptor at start-up and hashes the running image file once to
     * learn its SHA-256. ESP-IDF: esp_partition_read() on the running partition.
     */
    int (*running_read)(void *ctx, uint32_t offset, void *buf, size_t len);

    /**
     * (required) Bytes available in the inactive OTA slot (the one the next update is written
     * to), 0 when there is none. ESP-IDF: esp_ota_get_next_update_partition(NULL)->size.
     */
    uint32_t (*update_slot_size)(void *ctx);

    /**
     * (required) Prepare the inactive slot for an image of `image_size` bytes (erase as
     * needed). Called once per attempt, and again after update_abort() if the server ignores a
     * Range request and the core restarts from byte 0. ESP-IDF: esp_ota_begin().
     */
    int (*update_begin)(void *ctx, uint32_t image_size);

    /**
     * (required) Write the next `len` bytes (at most 4096) of the image. `offset` always equals
     * the number of bytes written since update_begin(): writes are sequential, also across a
     * resumed (Range) download. ESP-IDF: esp_ota_write().
     */
    int (*update_write)(void *ctx, uint32_t offset, const void *data, size_t len);

    /**
     * (required) All bytes are written and the core has checked length, SHA-256 and the
     * image's own checks; finish the slot. A port may verify again here (ESP-IDF: esp_ota_end()
     * runs esp_image_verify()); a failure aborts the update.
     */
    int (*update_end)(void *ctx);

    /** (required) Give up on the slot being written (ESP-IDF: esp_ota_abort()). */
    void (*update_abort)(void *ctx);

    /**
     * (required) Make the slot finished by update_end() the next boot (otadata `NEW`).
     * ESP-IDF: esp_ota_set_boot_partition().
     */
    int (*set_boot)(void *ctx);

    /**
     * (required) Mark the running image valid (PENDING_VERIFY -> VALID), cancelling the
     * rollback. ESP-IDF: esp_ota_mark_app_valid_cancel_rollback().
     */
    int (*mark_valid)(void *ctx);

    /**
     * (required) The running image failed its self-test: mark it invalid and reboot into the
     * previous slot. Does not return on success. ESP-IDF:
     * esp_ota_mark_app_invalid_rollback_and_reboot().
     */
    int (*rollback_and_reboot)(void *ctx);

    /**
     * (required) Restart the device. Does not return. The core has already sent the mDNS
     * goodbye and persisted what it needs. ESP-IDF: esp_restart(). POSIX: re-exec.
     */
    void (*reboot)(void *ctx);

    /* ---------------------------------------------------------------- HTTP client -------- */

    /**
     * (required) GET `url` (http:// or https://). When `range_from` > 0 send
     * `Range: bytes=<range_from>-`. Calls `on_head` once, then `on_data` for the body as it
     * arrives. Returns AEGIS_PORT_OK when the body ended normally (Content-Length reached or
     * the connection closed cleanly), AEGIS_PORT_ABORT when a callback stopped it, another
     * negative value on a transport error (connect failure, timeout, connection reset) — the
     * core then resumes with a Range request, a bounded number of times. A read timeout of
     * about 10 s is appropriate. ESP-IDF: esp_http_client_open/fetch_headers/read.
     */
    int (*http_get)(void *ctx, const char *url, uint64_t range_from, aegis_http_head_cb on_head,
                    aegis_http_data_cb on_data, void *user);

    /**
     * (optional) POST `body` (`len` bytes, Content-Type application/json) to `url` and return
     * the HTTP status, or a negative value on a transport error. Used for progress reports,
     * which are best-effort: the core ignores failures. A short timeout (2-5 s) is right.
     * NULL: no reports are sent.
     */
    int (*http_post_json)(void *ctx, const char *url, const char *body, size_t len);

    /* --------------------------------------------------------------------- mDNS -------- */

    /**
     * (required) Announce (or re-announce with new TXT) the device's service. The core calls
     * it at start-up and whenever `ver`, `sha`, `slot`, `state` or the IP changes. Everything
     * in `a` must be copied. ESP-IDF: mdns_hostname_set, mdns_service_add /
     * mdns_service_txt_set.
     */
    int (*mdns_announce)(void *ctx, const aegis_announcement_t *a);

    /**
     * (required) Withdraw the service (records with TTL 0). Called before a deliberate reboot
     * and from aegis_ota_stop(). ESP-IDF: mdns_service_remove (which sends the goodbye).
     */
    void (*mdns_goodbye)(void *ctx);

    /* ------------------------------------------------------ persistent key-value -------- */

    /**
     * (required) Read the value stored under `key` (at most 15 characters, NVS's limit) into
     * `buf` (capacity `cap`), setting `*len`. Returns AEGIS_PORT_NOT_FOUND when absent, an
     * error when the value does not fit. ESP-IDF: nvs_get_blob in the "aegis" namespace.
     */
    int (*kv_get)(void *ctx, const char *key, void *buf, size_t cap, size_t *len);

    /** (required) Store `len` bytes under `key` durably (survives reboot and power loss). */
    int (*kv_set)(void *ctx, const char *key, const void *value, size_t len);

    /* -------------------------------------------------------- randomness, time, log ------ */

    /**
     * (required) Fill `buf` with `len` cryptographically strong random bytes (nonces).
     * ESP-IDF: esp_fill_random() (with Wi-Fi/BT on, or bootloader_random_enable()).
     */
    void (*random)(void *ctx, void *buf, size_t len);

    /** (required) Monotonic milliseconds since an arbitrary origin (esp_timer_get_time()/1000). */
    uint64_t (*millis)(void *ctx);

    /** (optional) Sleep `ms` milliseconds (back-off between download retries; NULL: none). */
    void (*delay_ms)(void *ctx, uint32_t ms);

    /** (optional) Log one line (no trailing newline). NULL: silent. */
    void (*log)(void *ctx, aegis_log_level_t level, const char *line);

    /** (optional) Mutual exclusion between the HTTP server thread and the poll thread. */
    void (*lock)(void *ctx);
    /** (optional) Pairs with lock. */
    void (*unlock)(void *ctx);
} aegis_port_t;

#ifdef __cplusplus
}
#endif

#endif /* AEGIS_PORT_H */

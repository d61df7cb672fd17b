/*
 * aegis_ota.h — the public API of the AegisOTA device library (portable C11 core).
 *
 * A device speaks Aegis protocol version 1 (PROTOCOL.md, docs/protocol.md): it announces
 * itself by mDNS, answers GET /aegis/v1/info and POST /aegis/v1/ota, pulls the image over HTTP
 * (resuming with Range), verifies length, SHA-256 and the image's own checks while writing the
 * inactive slot, reboots into it, and confirms it (or the bootloader rolls back).
 *
 * Life cycle, for a port (see aegis_port.h for the platform table):
 *
 *     static aegis_ota_t ota;                        // ~20 KiB, all buffers inside
 *     aegis_config_t cfg = AEGIS_CONFIG_DEFAULT;
 *     cfg.id = "240ac4123456"; cfg.hostname = "kitchen"; cfg.ip = "10.0.0.7"; cfg.port = 80;
 *     cfg.trusted_key = server_key_sec1;             // 65 bytes, or NULL for unsigned triggers
 *     aegis_ota_init(&ota, &cfg, &port);             // reads the running image, announces
 *     // HTTP server thread, for every request:
 *     aegis_ota_handle_request(&ota, "POST", "/aegis/v1/ota", body, body_len, &resp);
 *     //   ... send resp.status, resp.content_type, resp.body (resp.body_len bytes)
 *     // worker / main loop, every ~100 ms:
 *     aegis_ota_poll(&ota);                          // runs an accepted update to the end
 *     // application, after its own health check on the first boot of a new image:
 *     aegis_ota_confirm(&ota);                       // or aegis_ota_reject(&ota) to roll back
 *
 * Nothing here allocates memory or calls the platform except through the port table.
 * Functions are not re-entrant for the same `aegis_ota_t` unless the port provides lock/unlock.
 */
#ifndef AEGIS_OTA_H
#define AEGIS_OTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mbedtls/sha256.h>

#include "aegis_port.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ protocol constants ---- */

#define AEGIS_PROTOCOL_VERSION 1
#define AEGIS_SERVICE_TYPE "_aegis-ota._tcp.local."
#define AEGIS_INFO_PATH "/aegis/v1/info"
#define AEGIS_OTA_PATH "/aegis/v1/ota"
/** Largest trigger body; a port may stop reading after this many bytes + 1. */
#define AEGIS_MAX_TRIGGER_BODY 4096
#define AEGIS_CHUNK_SIZE 4096
#define AEGIS_MAX_TXT_ITEM 255
#define AEGIS_MAX_TXT_TOTAL 1300
#define AEGIS_MAX_DEPLOYMENT_CHARS 64
/** SEC1 uncompressed P-256 public key length (04 || X || Y). */
#define AEGIS_PUBKEY_LEN 65
/** Longest hostname accepted by aegis_ota_init (one DNS label). */
#define AEGIS_HOSTNAME_MAX 63
/** Longest `report` URL remembered across the reboot (longer: no booted/rolled_back report). */
#define AEGIS_REPORT_URL_MAX 512
/** Size of the response buffer (`aegis_response_t.body` points into it). */
#define AEGIS_RESPONSE_MAX 2048

/* ------------------------------------------------------------------------- types ---------- */

/** The device's OTA state, as in the TXT `state` key and /info. */
typedef enum {
    AEGIS_STATE_IDLE = 0,
    AEGIS_STATE_UPDATING = 1,
    AEGIS_STATE_PENDING_VERIFY = 2
} aegis_state_t;

/** Report phases (PROTOCOL.md section 5); AEGIS_PHASE_NONE = no attempt yet. */
typedef enum {
    AEGIS_PHASE_NONE = 0,
    AEGIS_PHASE_DOWNLOADING,
    AEGIS_PHASE_VERIFYING,
    AEGIS_PHASE_REBOOTING,
    AEGIS_PHASE_BOOTED,
    AEGIS_PHASE_FAILED,
    AEGIS_PHASE_ROLLED_BACK
} aegis_phase_t;

/** Device configuration; strings are copied by aegis_ota_init. */
typedef struct {
    /** Stable device id: 12 lower-case hex digits of the Wi-Fi station MAC (required). */
    const char *id;
    /** mDNS instance and host name, 1-63 characters of a-z A-Z 0-9 - (required). */
    const char *hostname;
    /** Dotted IPv4 address announced in TXT `ip` and the A record (required). */
    const char *ip;
    /** Control endpoint port = SRV port (required, e.g. 80). */
    uint16_t port;
    /** The server public key, 65-byte SEC1 (`aegis keys export`); NULL = accept unsigned. */
    const uint8_t *trusted_key;
    /**
     * Confirm policy. 0 (default): the application calls aegis_ota_confirm() after its own
     * health check; a new image that never confirms is rolled back by the bootloader at the
     * next reset. N > 0: aegis_ota_poll() confirms a pending image N ms after start-up.
     */
    uint32_t confirm_after_ms;
    /** How many times a broken download is resumed (Range) before the update fails. */
    uint32_t download_retries;
} aegis_config_t;

#define AEGIS_CONFIG_DEFAULT {NULL, NULL, NULL, 80, NULL, 0, 5}

/** A reply for the port's HTTP server to send. `body` points into the aegis_ota_t and stays
 *  valid until the next call into the core. */
typedef struct {
    int status;               /**< 200, 202, 400, 401, 404, 405, 409, 412, 413, 422 */
    const char *content_type; /**< always "application/json" */
    const char *body;
    size_t body_len;
} aegis_response_t;

/** The parsed trigger (strings point into `arena`). Internal, exposed for static sizing. */
typedef struct {
    char arena[AEGIS_MAX_TRIGGER_BODY + 16];
    const char *url;
    const char *hash;
    const char *version;
    uint64_t size;
    const char *deployment;
    const char *report; /**< NULL when absent */
    const char *nonce;  /**< NULL when absent */
    bool allow_downgrade;
    const char *sig;    /**< NULL when absent */
} aegis_trigger_t;

/** Streaming check of an ESP app image as the bootloader makes it. Internal. */
typedef struct {
    uint8_t head[32];       /**< header / segment-header collection buffer */
    uint32_t pos;           /**< bytes consumed so far */
    uint32_t head_fill;     /**< bytes in head[] for the current header */
    uint32_t seg_left;      /**< data bytes left in the current segment */
    uint32_t segs_left;     /**< segments still to come */
    uint32_t checksum_at;   /**< file offset of the checksum byte (0 = not known yet) */
    uint8_t xor_acc;
    uint8_t digest[32];
    uint32_t digest_fill;
    int stage;
    bool hash_appended;
    uint16_t chip_id;
    int error;              /**< 0 or an AEGIS_IMG_ERR_* code */
    mbedtls_sha256_context sha; /**< over bytes [0, checksum_at] for the appended digest */
} aegis_image_check_t;

/** The last update attempt, persisted in the port's key-value store. */
typedef struct {
    aegis_phase_t phase;
    char deployment[4 * AEGIS_MAX_DEPLOYMENT_CHARS + 1];
    char hash[65];
    char report[AEGIS_REPORT_URL_MAX + 1];
    char error[200];
} aegis_last_t;

/** The whole device: allocate one statically. Members are private to the core. */
typedef struct {
    aegis_port_t port;
    /* identity */
    char id[13];
    char hostname[AEGIS_HOSTNAME_MAX + 1];
    char ip[16];
    uint16_t http_port;
    bool has_key;
    uint8_t key[AEGIS_PUBKEY_LEN];
    char key_fp16[17];
    uint32_t confirm_after_ms;
    uint32_t download_retries;
    uint64_t started_ms;
    /* running image */
    char slot[AEGIS_LABEL_MAX + 1];
    char version[33];
    char project[33];
    char chip[16];
    uint16_t chip_id;
    uint32_t secure_version;
    char sha256[65];
    /* protocol state */
    aegis_state_t state;
    char nonce[33];
    aegis_last_t last;
    bool have_job;
    aegis_trigger_t job;
    /* download */
    uint64_t received;
    uint64_t flushed;
    uint64_t range_from;
    uint64_t last_report_ms;
    int transfer_error;
    char transfer_msg[160];
    uint8_t chunk[AEGIS_CHUNK_SIZE];
    size_t chunk_fill;
    mbedtls_sha256_context file_sha;
    aegis_image_check_t image;
    /* buffers */
    aegis_trigger_t incoming; /**< parsed by the HTTP thread, copied to `job` on 202 */
    char response[AEGIS_RESPONSE_MAX];
    char report_buf[1536];
    char kv_buf[1280];
} aegis_ota_t;

/* ------------------------------------------------------------------------ the API --------- */

/**
 * Starts the library: validates `cfg`, reads the running image's header and app descriptor
 * (version, project, chip, secure_version) and hashes it, reads the last attempt from the
 * key-value store (sending the `rolled_back` report if the device came back on its old image),
 * draws a fresh nonce and announces the service. Returns 0, or -1 with a logged reason
 * (bad configuration, unreadable running image).
 */
int aegis_ota_init(aegis_ota_t *ota, const aegis_config_t *cfg, const aegis_port_t *port);

/**
 * Handles one HTTP request of the control endpoint. `method` is "GET"/"POST"/...; `path` may
 * carry a query string (ignored). `body`/`body_len` is the request body; when the request's
 * Content-Length exceeds AEGIS_MAX_TRIGGER_BODY the port may pass body=NULL and body_len =
 * that Content-Length (the core answers 400 body_too_large without reading it). Fills `resp`.
 * A 202 reply means an update is pending: send the reply, then let aegis_ota_poll() run it.
 */
void aegis_ota_handle_request(aegis_ota_t *ota, const char *method, const char *path,
                              const uint8_t *body, size_t body_len, aegis_response_t *resp);

/**
 * Does pending work; call it often (every 50-500 ms) from a thread that may block. When a
 * trigger was accepted it runs the whole update here: download (with Range resume), verify,
 * write, set boot, goodbye, reboot — so on success it does not return. It also applies the
 * confirm_after_ms policy. Returns 1 if it did something, 0 otherwise.
 */
int aegis_ota_poll(aegis_ota_t *ota);

/**
 * The application's health check passed: mark the running image valid, report `booted`,
 * re-announce with state idle. A no-op (returning 0) when the image is not pending_verify.
 */
int aegis_ota_confirm(aegis_ota_t *ota);

/** The health check failed: roll back to the previous image and reboot (does not return). */
int aegis_ota_reject(aegis_ota_t *ota);

/** The device's IP address changed (DHCP): re-announce with the new `ip`. */
void aegis_ota_set_ip(aegis_ota_t *ota, const char *ip);

/** Sends the mDNS goodbye (before a deliberate shutdown). */
void aegis_ota_stop(aegis_ota_t *ota);

/** The current state (idle, updating, pending_verify). */
aegis_state_t aegis_ota_state(const aegis_ota_t *ota);

/** The running app version (esp_app_desc_t.version). */
const char *aegis_ota_running_version(const aegis_ota_t *ota);

/** "idle", "updating" or "pending_verify". */
const char *aegis_state_name(aegis_state_t state);

/** "downloading", "verifying", "rebooting", "booted", "failed", "rolled_back" ("" for none). */
const char *aegis_phase_name(aegis_phase_t phase);

#ifdef __cplusplus
}
#endif

#endif /* AEGIS_OTA_H */

/*
 * aegis_internal.h — the core's internal building blocks, shared by its source files and the
 * C unit tests (firmware/posix/test). Not part of the public API.
 */
#ifndef AEGIS_INTERNAL_H
#define AEGIS_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aegis_ota.h"

/* ---------------------------------------------------------------- rejections (replies) -- */

/** A refusal: HTTP status, the protocol's snake_case code, one human sentence. */
typedef struct {
    int status;       /**< 0 = no rejection */
    const char *code; /**< e.g. "bad_hex" */
    char message[240];
} aegis_reject_t;

void aegis_reject(aegis_reject_t *r, int status, const char *code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* ------------------------------------------------------------------------ trigger ------- */

/** Parses and validates a trigger body (step 1, the 400s). Returns true when valid. */
bool aegis_trigger_parse(const uint8_t *body, size_t len, aegis_trigger_t *t, aegis_reject_t *r);

/** What the device knows about itself when a trigger arrives (mirror of Rust's DeviceView). */
typedef struct {
    const char *id;
    const uint8_t *trusted_key; /**< 65 bytes or NULL */
    const char *current_nonce;  /**< NULL when none outstanding */
    const char *running_version;
    aegis_state_t state;
    uint64_t slot_size;
} aegis_device_view_t;

/** Steps 2-6 on a parsed trigger. Returns true when the trigger is accepted. */
bool aegis_trigger_check(const aegis_trigger_t *t, const aegis_device_view_t *d, aegis_reject_t *r);

/** Parse + check, in the documented order (400, 409, 401, 412, 413, 422). */
bool aegis_check_body(const uint8_t *body, size_t len, const aegis_device_view_t *d,
                      aegis_trigger_t *t, aegis_reject_t *r);

/** SHA-256 of the signed message for `device_id` (streamed, no buffer). */
void aegis_signed_message_hash(const aegis_trigger_t *t, const char *device_id, uint8_t out[32]);

/** Writes the signed message into buf (for tests); returns its length or -1 if it does not fit. */
int aegis_signed_message(const aegis_trigger_t *t, const char *device_id, char *buf, size_t cap);

/* ------------------------------------------------------------------------ crypto -------- */

void aegis_sha256_start(mbedtls_sha256_context *c);
void aegis_sha256_update(mbedtls_sha256_context *c, const void *data, size_t len);
void aegis_sha256_finish(mbedtls_sha256_context *c, uint8_t out[32]);
void aegis_sha256(const void *data, size_t len, uint8_t out[32]);

/** Verifies an r||s signature (64 bytes) over a SHA-256 digest with a SEC1 key. */
bool aegis_ecdsa_p256_verify(const uint8_t key[AEGIS_PUBKEY_LEN], const uint8_t digest[32],
                             const uint8_t sig[64]);
/** Whether `key` is a valid uncompressed P-256 point. */
bool aegis_p256_key_valid(const uint8_t key[AEGIS_PUBKEY_LEN]);

/** Lower-case hex of `len` bytes into out (2*len+1 bytes). */
void aegis_hex(const uint8_t *bytes, size_t len, char *out);
/** Exactly 2*len lower-case hex digits -> bytes. */
bool aegis_unhex(const char *hex, uint8_t *out, size_t len);
/** Whether s (slen bytes) is exactly `digits` lower-case hex digits. */
bool aegis_is_lower_hex(const char *s, size_t slen, size_t digits);

/* ------------------------------------------------------------------------ versions ------ */

/** Orders a and b like crates/aegis-protocol/src/version.rs: *out = -1/0/1. False when either
 *  is not comparable. */
bool aegis_version_compare(const char *a, const char *b, int *out);
/** offered strictly older than running (incomparable is never a downgrade). */
bool aegis_is_downgrade(const char *running, const char *offered);

/* ------------------------------------------------------------------------ images -------- */

enum {
    AEGIS_IMG_ERR_NONE = 0,
    AEGIS_IMG_ERR_MAGIC,
    AEGIS_IMG_ERR_HEADER,
    AEGIS_IMG_ERR_CHECKSUM,
    AEGIS_IMG_ERR_DIGEST,
    AEGIS_IMG_ERR_TRUNCATED
};

void aegis_image_check_start(aegis_image_check_t *c);
/** Feeds the next bytes. Returns false once an error is known (c->error). */
bool aegis_image_check_feed(aegis_image_check_t *c, const uint8_t *data, size_t len);
/** Whether the header (and so chip_id) has been read. */
bool aegis_image_check_have_header(const aegis_image_check_t *c);
/** Whether the whole image (through the appended digest) has been seen and checked. */
bool aegis_image_check_done(const aegis_image_check_t *c);
/** The image length (valid once done). */
uint32_t aegis_image_check_length(const aegis_image_check_t *c);
/** A sentence for c->error. */
const char *aegis_image_error_text(int error);
void aegis_image_check_free(aegis_image_check_t *c);

/** Chip name for an image chip id ("esp32s3"), NULL when unknown. */
const char *aegis_chip_name(uint16_t chip_id);

/* ------------------------------------------------------------------------ JSON writing -- */

/** A bounded string builder; overflow sets `overflow` and truncates. */
typedef struct {
    char *buf;
    size_t cap;
    size_t len;
    bool overflow;
} aegis_sb_t;

void aegis_sb_init(aegis_sb_t *sb, char *buf, size_t cap);
void aegis_sb_raw(aegis_sb_t *sb, const char *s);
void aegis_sb_printf(aegis_sb_t *sb, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/** Appends s as a JSON string literal (quotes, escapes; invalid UTF-8 becomes U+FFFD). */
void aegis_sb_json_str(aegis_sb_t *sb, const char *s);
/** Appends a JSON string or null. */
void aegis_sb_json_str_or_null(aegis_sb_t *sb, const char *s);

/** Builds the error body {"error":{"code","message"}}. */
size_t aegis_error_body(char *buf, size_t cap, const char *code, const char *message);

/* ------------------------------------------------------------------------ TXT ----------- */

/** Builds the TXT items (protocol order) for the device; returns the count or -1 if a limit
 *  would be broken. `storage` holds the short values (fingerprint, sha prefix). */
int aegis_txt_build(const aegis_ota_t *ota, aegis_txt_item_t *items, size_t cap, char *storage,
                    size_t storage_cap);
/** Encodes items as DNS TXT RDATA (length-prefixed "key=value"); returns bytes or -1. */
int aegis_txt_encode(const aegis_txt_item_t *items, size_t n, uint8_t *out, size_t cap);

/* ------------------------------------------------------------------------ last attempt -- */

/** Serialises / parses the persisted last-attempt record (a stable text format). */
size_t aegis_last_encode(const aegis_last_t *l, char *buf, size_t cap);
bool aegis_last_decode(aegis_last_t *l, const char *buf, size_t len);

/** Builds a report body. */
size_t aegis_report_json(const aegis_ota_t *ota, aegis_phase_t phase, uint64_t bytes,
                         uint64_t total, bool with_image, const char *error, char *buf,
                         size_t cap);

/** Builds the /info body. */
size_t aegis_info_json(const aegis_ota_t *ota, char *buf, size_t cap);

#endif /* AEGIS_INTERNAL_H */

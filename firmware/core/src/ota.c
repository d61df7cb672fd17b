/*
 * ota.c — the device: start-up (read the running image, settle the last attempt), the
 * control endpoint (GET /aegis/v1/info, POST /aegis/v1/ota), the download-verify-write state
 * machine with Range resume, confirm / roll back, reports, TXT records and /info JSON.
 */
#include <stdio.h>
#include <string.h>

#include "aegis_internal.h"

#define KV_LAST "aegis_last"
#define APP_DESC_OFFSET 0x20
#define APP_DESC_MAGIC 0xABCD5432u
#define REPORT_INTERVAL_MS 1000
#define REPORT_INTERVAL_BYTES (64u * 1024u)

/* ------------------------------------------------------------------ small helpers ------- */

static void logf_(aegis_ota_t *ota, aegis_log_level_t level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void logf_(aegis_ota_t *ota, aegis_log_level_t level, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    if (ota->port.log == NULL) return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    ota->port.log(ota->port.ctx, level, line);
}

static void lock(aegis_ota_t *ota)
{
    if (ota->port.lock) ota->port.lock(ota->port.ctx);
}

static void unlock(aegis_ota_t *ota)
{
    if (ota->port.unlock) ota->port.unlock(ota->port.ctx);
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

const char *aegis_state_name(aegis_state_t s)
{
    switch (s) {
    case AEGIS_STATE_UPDATING: return "updating";
    case AEGIS_STATE_PENDING_VERIFY: return "pending_verify";
    default: return "idle";
    }
}

const char *aegis_phase_name(aegis_phase_t p)
{
    switch (p) {
    case AEGIS_PHASE_DOWNLOADING: return "downloading";
    case AEGIS_PHASE_VERIFYING: return "verifying";
    case AEGIS_PHASE_REBOOTING: return "rebooting";
    case AEGIS_PHASE_BOOTED: return "booted";
    case AEGIS_PHASE_FAILED: return "failed";
    case AEGIS_PHASE_ROLLED_BACK: return "rolled_back";
    default: return "";
    }
}

static aegis_phase_t phase_from_name(const char *s)
{
    for (int p = AEGIS_PHASE_DOWNLOADING; p <= AEGIS_PHASE_ROLLED_BACK; p++)
        if (strcmp(s, aegis_phase_name((aegis_phase_t)p)) == 0) return (aegis_phase_t)p;
    return AEGIS_PHASE_NONE;
}

/* ------------------------------------------------------------------ JSON writing -------- */

void aegis_sb_init(aegis_sb_t *sb, char *buf, size_t cap)
{
    sb->buf = buf;
    sb->cap = cap;
    sb->len = 0;
    sb->overflow = false;
    if (cap > 0) buf[0] = '\0';
}

static void sb_put(aegis_sb_t *sb, const char *s, size_t n)
{
    if (sb->len + n + 1 > sb->cap) {
        sb->overflow = true;
        return;
    }
    memcpy(sb->buf + sb->len, s, n);
    sb->len += n;
    sb->buf[sb->len] = '\0';
}

void aegis_sb_raw(aegis_sb_t *sb, const char *s) { sb_put(sb, s, strlen(s)); }

void aegis_sb_printf(aegis_sb_t *sb, const char *fmt, ...)
{
    char tmp[96];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        sb->overflow = true;
        return;
    }
    sb_put(sb, tmp, (size_t)n);
}

/* Length of a valid UTF-8 sequence at s (NUL-terminated), 0 when invalid. */
static size_t utf8_len(const uint8_t *s)
{
    uint8_t c = s[0];
    size_t n;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) n = 3;
    else if (c >= 0xF0 && c <= 0xF4) n = 4;
    else return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if (n == 3 && c == 0xE0 && s[1] < 0xA0) return 0;
    if (n == 3 && c == 0xED && s[1] >= 0xA0) return 0;
    if (n == 4 && c == 0xF0 && s[1] < 0x90) return 0;
    if (n == 4 && c == 0xF4 && s[1] >= 0x90) return 0;
    return n;
}

void aegis_sb_json_str(aegis_sb_t *sb, const char *str)
{
    const uint8_t *s = (const uint8_t *)str;
    sb_put(sb, "\"", 1);
    while (*s) {
        uint8_t c = *s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sb_put(sb, e, 2);
            s++;
        } else if (c < 0x20 || c == 0x7F) {
            aegis_sb_printf(sb, "\\u%04x", c);
            s++;
        } else {
            size_t n = utf8_len(s);
            if (n == 0) {
                sb_put(sb, "\\ufffd", 6);
                s++;
            } else {
                sb_put(sb, (const char *)s, n);
                s += n;
            }
        }
    }
    sb_put(sb, "\"", 1);
}

void aegis_sb_json_str_or_null(aegis_sb_t *sb, const char *s)
{
    if (s == NULL) aegis_sb_raw(sb, "null");
    else aegis_sb_json_str(sb, s);
}

size_t aegis_error_body(char *buf, size_t cap, const char *code, const char *message)
{
    aegis_sb_t sb;
    aegis_sb_init(&sb, buf, cap);
    aegis_sb_raw(&sb, "{\"error\":{\"code\":");
    aegis_sb_json_str(&sb, code);
    aegis_sb_raw(&sb, ",\"message\":");
    aegis_sb_json_str(&sb, message);
    aegis_sb_raw(&sb, "}}");
    return sb.len;
}

/* ------------------------------------------------------------------ TXT ----------------- */

int aegis_txt_build(const aegis_ota_t *ota, aegis_txt_item_t *items, size_t cap, char *storage, size_t storage_cap)
{
    size_t n = 0, total = 0;
    if (cap < 11 || storage_cap < 24) return -1;
    copy_str(storage, 17, ota->sha256);
#define ITEM(k, v)                                                                                                   \
    do {                                                                                                             \
        items[n].key = (k);                                                                                          \
        items[n].value = (v);                                                                                        \
        n++;                                                                                                         \
    } while (0)
#define OPTIONAL(k, v)                                                                                               \
    do {                                                                                                             \
        if ((v)[0] != '\0') ITEM(k, v);                                                                              \
    } while (0)
    ITEM("id", ota->id);
    ITEM("ver", ota->version);
    ITEM("host", ota->hostname);
    ITEM("ip", ota->ip);
    ITEM("proto", "1");
    OPTIONAL("proj", ota->project);
    OPTIONAL("chip", ota->chip);
    OPTIONAL("sha", storage);
    OPTIONAL("slot", ota->slot);
    ITEM("state", aegis_state_name(ota->state));
    if (ota->has_key) ITEM("key", ota->key_fp16);
#undef ITEM
#undef OPTIONAL
    for (size_t i = 0; i < n; i++) {
        size_t item = strlen(items[i].key) + 1 + strlen(items[i].value);
        if (item > AEGIS_MAX_TXT_ITEM) return -1;
        total += 1 + item;
    }
    return total > AEGIS_MAX_TXT_TOTAL ? -1 : (int)n;
}

int aegis_txt_encode(const aegis_txt_item_t *items, size_t n, uint8_t *out, size_t cap)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = strlen(items[i].key), v = strlen(items[i].value), item = k + 1 + v;
        if (item > AEGIS_MAX_TXT_ITEM || len + 1 + item > cap) return -1;
        out[len++] = (uint8_t)item;
        memcpy(out + len, items[i].key, k);
        len += k;
        out[len++] = '=';
        memcpy(out + len, items[i].value, v);
        len += v;
    }
    return (int)len;
}

static void announce(aegis_ota_t *ota)
{
    aegis_txt_item_t items[12];
    char storage[24];
    aegis_announcement_t a;
    lock(ota);
    int n = aegis_txt_build(ota, items, 12, storage, sizeof storage);
    unlock(ota);
    if (n < 0) {
        logf_(ota, AEGIS_LOG_ERROR, "aegis: the TXT record would break the protocol's size limits; not announcing");
        return;
    }
    a.service_type = AEGIS_SERVICE_TYPE;
    a.instance = ota->hostname;
    a.hostname = ota->hostname;
    a.ip = ota->ip;
    a.port = ota->http_port;
    a.txt = items;
    a.txt_count = (size_t)n;
    if (ota->port.mdns_announce(ota->port.ctx, &a) != AEGIS_PORT_OK)
        logf_(ota, AEGIS_LOG_WARN, "aegis: the mDNS announcement failed");
}

/* ------------------------------------------------------------------ last attempt -------- */

size_t aegis_last_encode(const aegis_last_t *l, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "aegis-last/1\nphase=%s\nhash=%s\ndeployment=%s\nreport=%s\nerror=%s\n",
                     aegis_phase_name(l->phase), l->hash, l->deployment, l->report, l->error);
    return (n < 0 || (size_t)n >= cap) ? 0 : (size_t)n;
}

bool aegis_last_decode(aegis_last_t *l, const char *buf, size_t len)
{
    static const char tag[] = "aegis-last/1\n";
    memset(l, 0, sizeof *l);
    if (len < sizeof tag - 1 || memcmp(buf, tag, sizeof tag - 1) != 0) return false;
    size_t i = sizeof tag - 1;
    while (i < len) {
        size_t e = i;
        while (e < len && buf[e] != '\n') e++;
        const char *line = buf + i;
        size_t n = e - i;
        const char *eq = memchr(line, '=', n);
        if (eq != NULL) {
            size_t k = (size_t)(eq - line), v = n - k - 1;
            char value[AEGIS_REPORT_URL_MAX + 1];
            if (v > AEGIS_REPORT_URL_MAX) v = AEGIS_REPORT_URL_MAX;
            memcpy(value, eq + 1, v);
            value[v] = '\0';
            if (k == 5 && memcmp(line, "phase", 5) == 0) l->phase = phase_from_name(value);
            else if (k == 4 && memcmp(line, "hash", 4) == 0) copy_str(l->hash, sizeof l->hash, value);
            else if (k == 10 && memcmp(line, "deployment", 10) == 0) copy_str(l->deployment, sizeof l->deployment, value);
            else if (k == 6 && memcmp(line, "report", 6) == 0) copy_str(l->report, sizeof l->report, value);
            else if (k == 5 && memcmp(line, "error", 5) == 0) copy_str(l->error, sizeof l->error, value);
        }
        i = e + 1;
    }
    return l->phase != AEGIS_PHASE_NONE;
}

static void persist_last(aegis_ota_t *ota)
{
    size_t n = aegis_last_encode(&ota->last, ota->kv_buf, sizeof ota->kv_buf);
    if (n == 0 || ota->port.kv_set(ota->port.ctx, KV_LAST, ota->kv_buf, n) != AEGIS_PORT_OK)
        logf_(ota, AEGIS_LOG_WARN, "aegis: could not store the last attempt");
}

/* Sets the last attempt's phase and error (under the lock) and persists it. */
static void set_last(aegis_ota_t *ota, aegis_phase_t phase, const char *error)
{
    lock(ota);
    ota->last.phase = phase;
    copy_str(ota->last.error, sizeof ota->last.error, error ? error : "");
    unlock(ota);
    persist_last(ota);
}

/* ------------------------------------------------------------------ reports ------------- */

size_t aegis_report_json(const aegis_ota_t *ota, aegis_phase_t phase, uint64_t bytes, uint64_t total, bool with_image,
                         const char *error, char *buf, size_t cap)
{
    aegis_sb_t sb;
    aegis_sb_init(&sb, buf, cap);
    aegis_sb_raw(&sb, "{\"id\":");
    aegis_sb_json_str(&sb, ota->id);
    aegis_sb_raw(&sb, ",\"deployment\":");
    aegis_sb_json_str(&sb, ota->last.deployment);
    aegis_sb_raw(&sb, ",\"phase\":");
    aegis_sb_json_str(&sb, aegis_phase_name(phase));
    if (total > 0 && bytes > total) bytes = total;
    aegis_sb_printf(&sb, ",\"bytes\":%llu,\"total\":%llu", (unsigned long long)bytes, (unsigned long long)total);
    aegis_sb_raw(&sb, ",\"ver\":");
    aegis_sb_json_str_or_null(&sb, with_image ? ota->version : NULL);
    aegis_sb_raw(&sb, ",\"sha256\":");
    aegis_sb_json_str_or_null(&sb, with_image ? ota->sha256 : NULL);
    aegis_sb_raw(&sb, ",\"error\":");
    aegis_sb_json_str_or_null(&sb, (error && error[0]) ? error : NULL);
    aegis_sb_raw(&sb, "}");
    return sb.overflow ? 0 : sb.len;
}

static void send_report(aegis_ota_t *ota, aegis_phase_t phase, uint64_t bytes, uint64_t total, bool with_image,
                        const char *error)
{
    if (ota->port.http_post_json == NULL || ota->last.report[0] == '\0' || ota->last.deployment[0] == '\0') return;
    size_t n = aegis_report_json(ota, phase, bytes, total, with_image, error, ota->report_buf, sizeof ota->report_buf);
    if (n == 0) return;
    int status = ota->port.http_post_json(ota->port.ctx, ota->last.report, ota->report_buf, n);
    if (status < 200 || status > 299)
        logf_(ota, AEGIS_LOG_DEBUG, "aegis: the %s report was not accepted (%d)", aegis_phase_name(phase), status);
}

/* ------------------------------------------------------------------ /info --------------- */

static void new_nonce(aegis_ota_t *ota)
{
    uint8_t raw[16];
    ota->port.random(ota->port.ctx, raw, sizeof raw);
    aegis_hex(raw, sizeof raw, ota->nonce);
}

size_t aegis_info_json(const aegis_ota_t *ota, char *buf, size_t cap)
{
    aegis_sb_t sb;
    uint32_t slot_size = ota->port.update_slot_size ? ota->port.update_slot_size(ota->port.ctx) : 0;
    aegis_sb_init(&sb, buf, cap);
    aegis_sb_raw(&sb, "{\"id\":");
    aegis_sb_json_str(&sb, ota->id);
    aegis_sb_raw(&sb, ",\"ver\":");
    aegis_sb_json_str(&sb, ota->version);
    aegis_sb_raw(&sb, ",\"proj\":");
    aegis_sb_json_str(&sb, ota->project);
    aegis_sb_raw(&sb, ",\"chip\":");
    aegis_sb_json_str(&sb, ota->chip[0] ? ota->chip : "unknown");
    aegis_sb_raw(&sb, ",\"host\":");
    aegis_sb_json_str(&sb, ota->hostname);
    aegis_sb_raw(&sb, ",\"ip\":");
    aegis_sb_json_str(&sb, ota->ip);
    aegis_sb_raw(&sb, ",\"sha256\":");
    aegis_sb_json_str(&sb, ota->sha256);
    aegis_sb_raw(&sb, ",\"slot\":");
    aegis_sb_json_str(&sb, ota->slot);
    aegis_sb_raw(&sb, ",\"state\":");
    aegis_sb_json_str(&sb, aegis_state_name(ota->state));
    aegis_sb_printf(&sb, ",\"secure_version\":%lu,\"slot_size\":%lu", (unsigned long)ota->secure_version,
                    (unsigned long)slot_size);
    aegis_sb_raw(&sb, ",\"nonce\":");
    aegis_sb_json_str(&sb, ota->nonce);
    aegis_sb_raw(&sb, ",\"last\":");
    if (ota->last.phase == AEGIS_PHASE_NONE) {
        aegis_sb_raw(&sb, "null");
    } else {
        aegis_sb_raw(&sb, "{\"deployment\":");
        aegis_sb_json_str(&sb, ota->last.deployment);
        aegis_sb_raw(&sb, ",\"result\":");
        aegis_sb_json_str(&sb, aegis_phase_name(ota->last.phase));
        aegis_sb_raw(&sb, ",\"error\":");
        aegis_sb_json_str_or_null(&sb, ota->last.error[0] ? ota->last.error : NULL);
        aegis_sb_raw(&sb, "}");
    }
    aegis_sb_raw(&sb, "}");
    return sb.overflow ? 0 : sb.len;
}

/* ------------------------------------------------------------------ start-up ------------ */

static bool valid_hostname(const char *h)
{
    size_t n = strlen(h);
    if (n == 0 || n > AEGIS_HOSTNAME_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-')) return false;
    }
    return true;
}

static bool valid_ipv4(const char *s)
{
    int parts = 0;
    while (parts < 4) {
        int v = 0, digits = 0;
        while (*s >= '0' && *s <= '9' && digits < 4) {
            v = v * 10 + (*s - '0');
            s++;
            digits++;
        }
        if (digits == 0 || digits > 3 || v > 255) return false;
        parts++;
        if (parts < 4) {
            if (*s != '.') return false;
            s++;
        }
    }
    return *s == '\0';
}

/* Copies a fixed-size, NUL-padded descriptor field. */
static void desc_str(char *dst, const uint8_t *src, size_t n)
{
    size_t i = 0;
    while (i < n && src[i] != 0) {
        dst[i] = (char)src[i];
        i++;
    }
    dst[i] = '\0';
}

static int read_running_image(aegis_ota_t *ota, uint32_t partition_size)
{
    uint8_t *buf = ota->chunk;
    mbedtls_sha256_context *file = &ota->file_sha;
    uint8_t digest[32];
    uint32_t off = 0;

    if (ota->port.running_read(ota->port.ctx, 0, buf, APP_DESC_OFFSET + 256) != AEGIS_PORT_OK || buf[0] != 0xE9) {
        logf_(ota, AEGIS_LOG_ERROR, "aegis: the running partition does not hold an ESP app image");
        return -1;
    }
    ota->chip_id = (uint16_t)(buf[12] | buf[13] << 8);
    const char *chip = aegis_chip_name(ota->chip_id);
    copy_str(ota->chip, sizeof ota->chip, chip ? chip : "");
    const uint8_t *d = buf + APP_DESC_OFFSET;
    uint32_t magic = (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
    if (magic == APP_DESC_MAGIC) {
        ota->secure_version = (uint32_t)d[4] | (uint32_t)d[5] << 8 | (uint32_t)d[6] << 16 | (uint32_t)d[7] << 24;
        desc_str(ota->version, d + 16, 32);
        desc_str(ota->project, d + 48, 32);
    } else {
        logf_(ota, AEGIS_LOG_WARN, "aegis: the running image has no app descriptor; version unknown");
    }

    /* Hash the image file: everything through the appended digest. */
    aegis_image_check_start(&ota->image);
    aegis_sha256_start(file);
    while (!aegis_image_check_done(&ota->image) && ota->image.error == 0 && off < partition_size) {
        uint32_t n = AEGIS_CHUNK_SIZE;
        if (n > partition_size - off) n = partition_size - off;
        if (ota->port.running_read(ota->port.ctx, off, buf, n) != AEGIS_PORT_OK) break;
        uint32_t before = ota->image.pos;
        aegis_image_check_feed(&ota->image, buf, n);
        uint32_t used = n;
        if (aegis_image_check_done(&ota->image)) {
            uint32_t end = aegis_image_check_length(&ota->image);
            used = end > before ? end - before : 0;
            if (used > n) used = n;
        }
        aegis_sha256_update(file, buf, used);
        off += n;
    }
    aegis_sha256_finish(file, digest);
    bool ok = aegis_image_check_done(&ota->image);
    int err = ota->image.error;
    aegis_image_check_free(&ota->image);
    if (!ok) {
        logf_(ota, AEGIS_LOG_ERROR, "aegis: the running image cannot be read: %s",
              aegis_image_error_text(err ? err : AEGIS_IMG_ERR_TRUNCATED));
        return -1;
    }
    aegis_hex(digest, 32, ota->sha256);
    return 0;
}

/* The device came back after an attempt: booted, rolled back, or interrupted. */
static void settle_last_attempt(aegis_ota_t *ota, aegis_img_state_t img_state)
{
    size_t len = 0;
    if (ota->port.kv_get(ota->port.ctx, KV_LAST, ota->kv_buf, sizeof ota->kv_buf - 1, &len) != AEGIS_PORT_OK) return;
    ota->kv_buf[len] = '\0';
    if (!aegis_last_decode(&ota->last, ota->kv_buf, len)) return;
    switch (ota->last.phase) {
    case AEGIS_PHASE_REBOOTING:
        if (strcmp(ota->last.hash, ota->sha256) == 0) {
            if (img_state != AEGIS_IMG_PENDING_VERIFY) { /* no rollback support: valid already */
                set_last(ota, AEGIS_PHASE_BOOTED, NULL);
                send_report(ota, AEGIS_PHASE_BOOTED, 0, 0, true, NULL);
            }
            /* else: aegis_ota_confirm() finishes it */
        } else {
            char why[200];
            snprintf(why, sizeof why, "The new image did not confirm itself; the device rolled back to version %.40s.",
                     ota->version);
            set_last(ota, AEGIS_PHASE_ROLLED_BACK, why);
            send_report(ota, AEGIS_PHASE_ROLLED_BACK, 0, 0, true, why);
        }
        break;
    case AEGIS_PHASE_DOWNLOADING:
    case AEGIS_PHASE_VERIFYING: {
        const char *why = "The device restarted before the update finished; it still runs the previous image.";
        set_last(ota, AEGIS_PHASE_FAILED, why);
        send_report(ota, AEGIS_PHASE_FAILED, 0, 0, false, why);
        break;
    }
    default:
        break;
    }
}

int aegis_ota_init(aegis_ota_t *ota, const aegis_config_t *cfg, const aegis_port_t *port)
{
    aegis_running_slot_t running;
    memset(ota, 0, sizeof *ota);
    ota->port = *port;
    if (!port->running_slot || !port->running_read || !port->update_slot_size || !port->update_begin ||
        !port->update_write || !port->update_end || !port->update_abort || !port->set_boot || !port->mark_valid ||
        !port->rollback_and_reboot || !port->reboot || !port->http_get || !port->mdns_announce ||
        !port->mdns_goodbye || !port->kv_get || !port->kv_set || !port->random || !port->millis) {
        logf_(ota, AEGIS_LOG_ERROR, "aegis: the port table misses a required function");
        return -1;
    }
    if (cfg->id == NULL || !aegis_is_lower_hex(cfg->id, strlen(cfg->id), 12)) {
        logf_(ota, AEGIS_LOG_ERROR, "aegis: the device id must be 12 lower-case hex digits");
        return -1;
    }
    if (cfg->hostname == NULL || !valid_hostname(cfg->hostname)) {
        logf_(ota, AEGIS_LOG_ERROR, "aegis: the hostname must be 1-63 letters, digits or '-'");
        return -1;
    }
    if (cfg->ip == NULL || !valid_ipv4(cfg->ip)) {
        logf_(ota, AEGIS_LOG_ERROR, "aegis: the IP address must be dotted IPv4");
        return -1;
    }
    copy_str(ota->id, sizeof ota->id, cfg->id);
    copy_str(ota->hostname, sizeof ota->hostname, cfg->hostname);
    copy_str(ota->ip, sizeof ota->ip, cfg->ip);
    ota->http_port = cfg->port;
    ota->confirm_after_ms = cfg->confirm_after_ms;
    ota->download_retries = cfg->download_retries;
    if (cfg->trusted_key != NULL) {
        uint8_t fp[32];
        char hex[65];
        if (!aegis_p256_key_valid(cfg->trusted_key)) {
            logf_(ota, AEGIS_LOG_ERROR, "aegis: the trusted key is not a valid P-256 public key (65-byte SEC1)");
            return -1;
        }
        memcpy(ota->key, cfg->trusted_key, AEGIS_PUBKEY_LEN);
        ota->has_key = true;
        aegis_sha256(ota->key, AEGIS_PUBKEY_LEN, fp);
        aegis_hex(fp, 32, hex);
        copy_str(ota->key_fp16, sizeof ota->key_fp16, hex);
    }
    if (port->running_slot(port->ctx, &running) != AEGIS_PORT_OK) {
        logf_(ota, AEGIS_LOG_ERROR, "aegis: the running partition is unknown");
        return -1;
    }
    copy_str(ota->slot, sizeof ota->slot, running.label);
    if (read_running_image(ota, running.partition_size) != 0) return -1;
    ota->state = running.state == AEGIS_IMG_PENDING_VERIFY ? AEGIS_STATE_PENDING_VERIFY : AEGIS_STATE_IDLE;
    ota->started_ms = port->millis(port->ctx);
    settle_last_attempt(ota, running.state);
    new_nonce(ota);
    logf_(ota, AEGIS_LOG_INFO, "aegis: %s runs %s %s (%s, %s) from %s, state %s%s", ota->hostname, ota->project,
          ota->version, ota->chip, ota->sha256, ota->slot, aegis_state_name(ota->state),
          ota->has_key ? ", signed triggers only" : "");
    announce(ota);
    return 0;
}

/* ------------------------------------------------------------------ control endpoint ---- */

static void reply(aegis_ota_t *ota, aegis_response_t *resp, int status, size_t len)
{
    resp->status = status;
    resp->content_type = "application/json";
    resp->body = ota->response;
    resp->body_len = len;
}

static void reply_error(aegis_ota_t *ota, aegis_response_t *resp, int status, const char *code, const char *message)
{
    reply(ota, resp, status, aegis_error_body(ota->response, sizeof ota->response, code, message));
}

/* Copies `from` into `to`, moving the string pointers into to's arena. */
static void copy_trigger(aegis_trigger_t *to, const aegis_trigger_t *from)
{
#define REBASE(f) to->f = from->f ? to->arena + (from->f - from->arena) : NULL
    memcpy(to->arena, from->arena, sizeof to->arena);
    REBASE(url);
    REBASE(hash);
    REBASE(version);
    REBASE(deployment);
    REBASE(report);
    REBASE(nonce);
    REBASE(sig);
#undef REBASE
    to->size = from->size;
    to->allow_downgrade = from->allow_downgrade;
}

static void handle_trigger(aegis_ota_t *ota, const uint8_t *body, size_t len, aegis_response_t *resp)
{
    aegis_reject_t r;
    aegis_device_view_t view;
    static const uint8_t empty[1] = {0};
    if (body == NULL && len <= AEGIS_MAX_TRIGGER_BODY) body = empty;
    lock(ota);
    view.id = ota->id;
    view.trusted_key = ota->has_key ? ota->key : NULL;
    view.current_nonce = ota->nonce;
    view.running_version = ota->version;
    view.state = ota->state;
    view.slot_size = ota->port.update_slot_size(ota->port.ctx);
    bool ok = aegis_check_body(body, len, &view, &ota->incoming, &r);
    new_nonce(ota); /* whatever the outcome */
    if (ok) {
        copy_trigger(&ota->job, &ota->incoming);
        ota->have_job = true;
        ota->state = AEGIS_STATE_UPDATING;
    }
    unlock(ota);
    if (ok) {
        logf_(ota, AEGIS_LOG_INFO, "aegis: accepted deployment %s: version %s, %llu bytes", ota->job.deployment,
              ota->job.version, (unsigned long long)ota->job.size);
        memcpy(ota->response, "{\"accepted\":true}", 18);
        reply(ota, resp, 202, 17);
    } else {
        logf_(ota, AEGIS_LOG_INFO, "aegis: refused a trigger: %d %s", r.status, r.code);
        reply_error(ota, resp, r.status, r.code, r.message);
    }
}

void aegis_ota_handle_request(aegis_ota_t *ota, const char *method, const char *path, const uint8_t *body,
                              size_t body_len, aegis_response_t *resp)
{
    size_t plen = strcspn(path, "?#");
    bool is_info = plen == strlen(AEGIS_INFO_PATH) && memcmp(path, AEGIS_INFO_PATH, plen) == 0;
    bool is_ota = plen == strlen(AEGIS_OTA_PATH) && memcmp(path, AEGIS_OTA_PATH, plen) == 0;
    if (is_info && strcmp(method, "GET") == 0) {
        lock(ota);
        size_t n = aegis_info_json(ota, ota->response, sizeof ota->response);
        unlock(ota);
        reply(ota, resp, 200, n);
    } else if (is_ota && strcmp(method, "POST") == 0) {
        handle_trigger(ota, body, body_len, resp);
    } else if (is_info || is_ota) {
        reply_error(ota, resp, 405, "method_not_allowed",
                    "This path does not take this method; use GET " AEGIS_INFO_PATH " or POST " AEGIS_OTA_PATH ".");
    } else {
        reply_error(ota, resp, 404, "not_found",
                    "There is nothing here; the device answers GET " AEGIS_INFO_PATH " and POST " AEGIS_OTA_PATH ".");
    }
}

/* ------------------------------------------------------------------ the update ---------- */

static int transfer_fail(aegis_ota_t *ota, const char *msg)
{
    if (ota->transfer_error == 0) {
        ota->transfer_error = 1;
        copy_str(ota->transfer_msg, sizeof ota->transfer_msg, msg);
    }
    return AEGIS_PORT_ABORT;
}

static void restart_stream(aegis_ota_t *ota)
{
    aegis_image_check_free(&ota->image);
    mbedtls_sha256_free(&ota->file_sha);
    aegis_image_check_start(&ota->image);
    aegis_sha256_start(&ota->file_sha);
    ota->received = 0;
    ota->flushed = 0;
    ota->chunk_fill = 0;
}

static int on_head(void *user, int status, int64_t content_length)
{
    aegis_ota_t *ota = user;
    char msg[160];
    if (ota->range_from > 0 && status == 200) {
        /* The server ignored Range: start again from byte 0. */
        logf_(ota, AEGIS_LOG_WARN, "aegis: the server ignored the Range request; restarting the download");
        ota->port.update_abort(ota->port.ctx);
        restart_stream(ota);
        ota->range_from = 0;
        if (ota->port.update_begin(ota->port.ctx, (uint32_t)ota->job.size) != AEGIS_PORT_OK)
            return transfer_fail(ota, "The inactive slot could not be prepared.");
    } else if ((ota->range_from == 0 && status != 200) || (ota->range_from > 0 && status != 206)) {
        snprintf(msg, sizeof msg, "The server answered HTTP %d for the image.", status);
        return transfer_fail(ota, msg);
    }
    if (content_length >= 0 && (uint64_t)content_length != ota->job.size - ota->received) {
        snprintf(msg, sizeof msg, "The server sends %lld bytes but the trigger says the image is %llu bytes.",
                 (long long)(content_length + (int64_t)ota->received), (unsigned long long)ota->job.size);
        return transfer_fail(ota, msg);
    }
    return AEGIS_PORT_OK;
}

static int flush_chunk(aegis_ota_t *ota)
{
    if (ota->chunk_fill == 0) return AEGIS_PORT_OK;
    if (ota->port.update_write(ota->port.ctx, (uint32_t)ota->flushed, ota->chunk, ota->chunk_fill) != AEGIS_PORT_OK)
        return transfer_fail(ota, "Writing the inactive slot failed.");
    ota->flushed += ota->chunk_fill;
    ota->chunk_fill = 0;
    return AEGIS_PORT_OK;
}

static int on_data(void *user, const uint8_t *data, size_t len)
{
    aegis_ota_t *ota = user;
    if (ota->received + len > ota->job.size) return transfer_fail(ota, "The image is longer than the trigger's size.");
    bool had_header = aegis_image_check_have_header(&ota->image);
    aegis_sha256_update(&ota->file_sha, data, len);
    aegis_image_check_feed(&ota->image, data, len);
    if (!had_header && aegis_image_check_have_header(&ota->image) && ota->image.chip_id != ota->chip_id) {
        char msg[160];
        const char *found = aegis_chip_name(ota->image.chip_id);
        snprintf(msg, sizeof msg, "wrong_chip: The image is built for %s but this device is an %s.",
                 found ? found : "an unknown chip", ota->chip[0] ? ota->chip : "unknown chip");
        return transfer_fail(ota, msg);
    }
    if (ota->image.error != 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "The image is invalid: %s.", aegis_image_error_text(ota->image.error));
        return transfer_fail(ota, msg);
    }
    while (len > 0) {
        size_t take = AEGIS_CHUNK_SIZE - ota->chunk_fill;
        if (take > len) take = len;
        memcpy(ota->chunk + ota->chunk_fill, data, take);
        ota->chunk_fill += take;
        data += take;
        len -= take;
        ota->received += take;
        if (ota->chunk_fill == AEGIS_CHUNK_SIZE && flush_chunk(ota) != AEGIS_PORT_OK) return AEGIS_PORT_ABORT;
    }
    uint64_t now = ota->port.millis(ota->port.ctx);
    if (now - ota->last_report_ms >= REPORT_INTERVAL_MS) {
        ota->last_report_ms = now;
        send_report(ota, AEGIS_PHASE_DOWNLOADING, ota->received, ota->job.size, false, NULL);
    }
    return AEGIS_PORT_OK;
}

static void update_failed(aegis_ota_t *ota, const char *why)
{
    logf_(ota, AEGIS_LOG_WARN, "aegis: update %s failed: %s", ota->last.deployment, why);
    ota->port.update_abort(ota->port.ctx);
    set_last(ota, AEGIS_PHASE_FAILED, why);
    send_report(ota, AEGIS_PHASE_FAILED, ota->received, ota->job.size, false, why);
    lock(ota);
    ota->state = AEGIS_STATE_IDLE;
    ota->have_job = false;
    unlock(ota);
    announce(ota);
}

static void run_update(aegis_ota_t *ota)
{
    const aegis_trigger_t *t = &ota->job;
    uint8_t digest[32], want[32];
    char hex[65];
    uint32_t attempts = 0;

    lock(ota);
    memset(&ota->last, 0, sizeof ota->last);
    copy_str(ota->last.deployment, sizeof ota->last.deployment, t->deployment);
    copy_str(ota->last.hash, sizeof ota->last.hash, t->hash);
    if (t->report && strlen(t->report) <= AEGIS_REPORT_URL_MAX) copy_str(ota->last.report, sizeof ota->last.report, t->report);
    unlock(ota);
    set_last(ota, AEGIS_PHASE_DOWNLOADING, NULL);
    announce(ota); /* state: updating */
    ota->last_report_ms = ota->port.millis(ota->port.ctx);
    send_report(ota, AEGIS_PHASE_DOWNLOADING, 0, t->size, false, NULL);

    if (t->size > UINT32_MAX || ota->port.update_begin(ota->port.ctx, (uint32_t)t->size) != AEGIS_PORT_OK) {
        update_failed(ota, "The inactive slot could not be prepared.");
        return;
    }
    ota->transfer_error = 0;
    ota->transfer_msg[0] = '\0';
    aegis_image_check_start(&ota->image);
    aegis_sha256_start(&ota->file_sha);
    ota->received = ota->flushed = 0;
    ota->chunk_fill = 0;

    while (ota->received < t->size) {
        ota->range_from = ota->received;
        int rc = ota->port.http_get(ota->port.ctx, t->url, ota->range_from, on_head, on_data, ota);
        if (ota->transfer_error) break;
        if (ota->received >= t->size) break;
        attempts++;
        logf_(ota, AEGIS_LOG_WARN, "aegis: the download broke off at %llu of %llu bytes (%d); attempt %lu of %lu",
              (unsigned long long)ota->received, (unsigned long long)t->size, rc, (unsigned long)attempts,
              (unsigned long)ota->download_retries);
        if (attempts > ota->download_retries) {
            snprintf(ota->transfer_msg, sizeof ota->transfer_msg,
                     "The download broke off at %llu of %llu bytes and did not resume after %lu attempts.",
                     (unsigned long long)ota->received, (unsigned long long)t->size, (unsigned long)attempts);
            ota->transfer_error = 1;
            break;
        }
        if (ota->port.delay_ms) ota->port.delay_ms(ota->port.ctx, 250u * attempts);
    }
    if (!ota->transfer_error) flush_chunk(ota);
    aegis_sha256_finish(&ota->file_sha, digest);
    bool image_done = aegis_image_check_done(&ota->image);
    int image_err = ota->image.error;
    aegis_image_check_free(&ota->image);
    if (ota->transfer_error) {
        update_failed(ota, ota->transfer_msg);
        return;
    }

    set_last(ota, AEGIS_PHASE_VERIFYING, NULL);
    send_report(ota, AEGIS_PHASE_VERIFYING, ota->received, t->size, false, NULL);
    aegis_hex(digest, 32, hex);
    if (!aegis_unhex(t->hash, want, 32) || memcmp(digest, want, 32) != 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "The image's SHA-256 is %.16s..., not the expected %.16s....", hex, t->hash);
        update_failed(ota, msg);
        return;
    }
    if (!image_done) {
        char msg[160];
        snprintf(msg, sizeof msg, "The image is invalid: %s.",
                 aegis_image_error_text(image_err ? image_err : AEGIS_IMG_ERR_TRUNCATED));
        update_failed(ota, msg);
        return;
    }
    if (ota->port.update_end(ota->port.ctx) != AEGIS_PORT_OK) {
        update_failed(ota, "The platform rejected the written image.");
        return;
    }
    if (ota->port.set_boot(ota->port.ctx) != AEGIS_PORT_OK) {
        update_failed(ota, "The new image could not be selected for the next boot.");
        return;
    }
    set_last(ota, AEGIS_PHASE_REBOOTING, NULL);
    send_report(ota, AEGIS_PHASE_REBOOTING, ota->received, t->size, false, NULL);
    logf_(ota, AEGIS_LOG_INFO, "aegis: image %s written; rebooting into it", t->hash);
    ota->port.mdns_goodbye(ota->port.ctx);
    ota->port.reboot(ota->port.ctx);
}

int aegis_ota_poll(aegis_ota_t *ota)
{
    lock(ota);
    bool job = ota->have_job && ota->state == AEGIS_STATE_UPDATING;
    bool pending = ota->state == AEGIS_STATE_PENDING_VERIFY;
    unlock(ota);
    if (job) {
        run_update(ota);
        return 1;
    }
    if (pending && ota->confirm_after_ms > 0 &&
        ota->port.millis(ota->port.ctx) - ota->started_ms >= ota->confirm_after_ms) {
        aegis_ota_confirm(ota);
        return 1;
    }
    return 0;
}

int aegis_ota_confirm(aegis_ota_t *ota)
{
    if (ota->state != AEGIS_STATE_PENDING_VERIFY) return 0;
    if (ota->port.mark_valid(ota->port.ctx) != AEGIS_PORT_OK) {
        logf_(ota, AEGIS_LOG_ERROR, "aegis: marking the running image valid failed");
        return -1;
    }
    lock(ota);
    ota->state = AEGIS_STATE_IDLE;
    unlock(ota);
    logf_(ota, AEGIS_LOG_INFO, "aegis: the running image %s confirmed itself valid", ota->version);
    if (ota->last.phase == AEGIS_PHASE_REBOOTING && strcmp(ota->last.hash, ota->sha256) == 0) {
        set_last(ota, AEGIS_PHASE_BOOTED, NULL);
        send_report(ota, AEGIS_PHASE_BOOTED, 0, 0, true, NULL);
    }
    announce(ota);
    return 1;
}

int aegis_ota_reject(aegis_ota_t *ota)
{
    logf_(ota, AEGIS_LOG_WARN, "aegis: the running image failed its self-test; rolling back");
    ota->port.mdns_goodbye(ota->port.ctx);
    return ota->port.rollback_and_reboot(ota->port.ctx);
}

void aegis_ota_set_ip(aegis_ota_t *ota, const char *ip)
{
    if (!valid_ipv4(ip)) return;
    lock(ota);
    copy_str(ota->ip, sizeof ota->ip, ip);
    unlock(ota);
    announce(ota);
}

void aegis_ota_stop(aegis_ota_t *ota) { ota->port.mdns_goodbye(ota->port.ctx); }

aegis_state_t aegis_ota_state(const aegis_ota_t *ota) { return ota->state; }

const char *aegis_ota_running_version(const aegis_ota_t *ota) { return ota->version; }

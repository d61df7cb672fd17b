/*
 * trigger.c — the POST /aegis/v1/ota body: a strict JSON reader for one flat object, the
 * field rules of docs/protocol.md section 3, the signed message (section 4) and the decision
 * in the documented order (section 5). Mirrors crates/aegis-protocol/src/trigger.rs and
 * acceptance.rs, including which code wins when several things are wrong.
 */
#include <stdio.h>
#include <string.h>

#include "aegis_internal.h"

#define JSON_MAX_DEPTH 128

void aegis_reject(aegis_reject_t *r, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    r->status = status;
    r->code = code;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------ JSON reading -------- */

enum { F_ABSENT = 0, F_NULL, F_STRING, F_UINT, F_NUMBER, F_BOOL, F_OTHER };

typedef struct {
    int type;
    const char *str; /* decoded, NUL-terminated, in the arena */
    size_t len;
    uint64_t u;
    bool b;
} field_t;

enum { K_URL, K_HASH, K_VERSION, K_SIZE, K_DEPLOYMENT, K_REPORT, K_NONCE, K_ALLOW, K_SIG, K_COUNT };
static const char *const KEY_NAMES[K_COUNT] = {"url",    "hash",  "version",         "size", "deployment",
                                               "report", "nonce", "allow_downgrade", "sig"};

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
    char *arena;
    size_t arena_len;
    size_t arena_cap;
    const char *err; /* what is wrong, for the message */
} reader_t;

static void skip_ws(reader_t *rd)
{
    while (rd->p < rd->end && (*rd->p == ' ' || *rd->p == '\t' || *rd->p == '\n' || *rd->p == '\r'))
        rd->p++;
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool read_u4(reader_t *rd, uint32_t *out)
{
    uint32_t v = 0;
    if (rd->end - rd->p < 4) return false;
    for (int i = 0; i < 4; i++) {
        int h = hexval(rd->p[i]);
        if (h < 0) return false;
        v = (v << 4) | (uint32_t)h;
    }
    rd->p += 4;
    *out = v;
    return true;
}

/* Appends a code point as UTF-8 to out (if it fits; else counts overflow). */
static void put_cp(char *out, size_t cap, size_t *n, bool *overflow, uint32_t cp)
{
    uint8_t b[4];
    size_t k;
    if (cp < 0x80) {
        b[0] = (uint8_t)cp;
        k = 1;
    } else if (cp < 0x800) {
        b[0] = (uint8_t)(0xC0 | (cp >> 6));
        b[1] = (uint8_t)(0x80 | (cp & 0x3F));
        k = 2;
    } else if (cp < 0x10000) {
        b[0] = (uint8_t)(0xE0 | (cp >> 12));
        b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (uint8_t)(0x80 | (cp & 0x3F));
        k = 3;
    } else {
        b[0] = (uint8_t)(0xF0 | (cp >> 18));
        b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (uint8_t)(0x80 | (cp & 0x3F));
        k = 4;
    }
    if (out == NULL || *n + k + 1 > cap) {
        *overflow = true;
        return;
    }
    memcpy(out + *n, b, k);
    *n += k;
}

/* Length of a valid UTF-8 sequence at p (strict: no overlongs, no surrogates), 0 if invalid. */
static size_t utf8_seq(const uint8_t *p, const uint8_t *end)
{
    uint8_t c = p[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    return n;
}

/* Reads a string (rd->p at the opening quote). Decodes into out (cap bytes incl. NUL) when
 * out != NULL; *overflow is set if it did not fit. Returns false on invalid JSON. */
static bool read_string(reader_t *rd, char *out, size_t cap, size_t *outlen, bool *overflow)
{
    size_t n = 0;
    *overflow = false;
    rd->p++; /* opening quote */
    for (;;) {
        if (rd->p >= rd->end) {
            rd->err = "a string is not terminated";
            return false;
        }
        uint8_t c = *rd->p;
        if (c == '"') {
            rd->p++;
            break;
        }
        if (c < 0x20) {
            rd->err = "a string contains a raw control character";
            return false;
        }
        if (c == '\\') {
            rd->p++;
            if (rd->p >= rd->end) {
                rd->err = "a string is not terminated";
                return false;
            }
            uint8_t e = *rd->p++;
            uint32_t cp;
            switch (e) {
            case '"': cp = '"'; break;
            case '\\': cp = '\\'; break;
            case '/': cp = '/'; break;
            case 'b': cp = 0x08; break;
            case 'f': cp = 0x0C; break;
            case 'n': cp = 0x0A; break;
            case 'r': cp = 0x0D; break;
            case 't': cp = 0x09; break;
            case 'u':
                if (!read_u4(rd, &cp)) {
                    rd->err = "a \\u escape is not four hex digits";
                    return false;
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    uint32_t lo;
                    if (rd->end - rd->p < 2 || rd->p[0] != '\\' || rd->p[1] != 'u') {
                        rd->err = "a \\u escape is a lone surrogate";
                        return false;
                    }
                    rd->p += 2;
                    if (!read_u4(rd, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                        rd->err = "a \\u escape is a lone surrogate";
                        return false;
                    }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    rd->err = "a \\u escape is a lone surrogate";
                    return false;
                }
                break;
            default:
                rd->err = "a string contains an invalid escape";
                return false;
            }
            put_cp(out, cap, &n, overflow, cp);
            continue;
        }
        size_t k = utf8_seq(rd->p, rd->end);
        if (k == 0) {
            rd->err = "the body is not valid UTF-8";
            return false;
        }
        if (out != NULL && n + k + 1 <= cap) {
            memcpy(out + n, rd->p, k);
            n += k;
        } else {
            *overflow = true;
        }
        rd->p += k;
    }
    if (out != NULL && cap > 0) out[n < cap ? n : cap - 1] = '\0';
    *outlen = n;
    return true;
}

/* Reads a number; *is_uint and *u say whether it is a plain non-negative integer fitting u64. */
static bool read_number(reader_t *rd, bool *is_uint, uint64_t *u)
{
    const uint8_t *s = rd->p;
    bool neg = false, frac = false, overflow = false;
    uint64_t v = 0;
    if (rd->p < rd->end && *rd->p == '-') {
        neg = true;
        rd->p++;
    }
    if (rd->p >= rd->end || *rd->p < '0' || *rd->p > '9') goto bad;
    if (*rd->p == '0') {
        rd->p++;
    } else {
        while (rd->p < rd->end && *rd->p >= '0' && *rd->p <= '9') {
            uint64_t d = (uint64_t)(*rd->p - '0');
            if (v > (UINT64_MAX - d) / 10) overflow = true;
            v = v * 10 + d;
            rd->p++;
        }
    }
    if (rd->p < rd->end && *rd->p == '.') {
        frac = true;
        rd->p++;
        if (rd->p >= rd->end || *rd->p < '0' || *rd->p > '9') goto bad;
        while (rd->p < rd->end && *rd->p >= '0' && *rd->p <= '9') rd->p++;
    }
    if (rd->p < rd->end && (*rd->p == 'e' || *rd->p == 'E')) {
        frac = true;
        rd->p++;
        if (rd->p < rd->end && (*rd->p == '+' || *rd->p == '-')) rd->p++;
        if (rd->p >= rd->end || *rd->p < '0' || *rd->p > '9') goto bad;
        while (rd->p < rd->end && *rd->p >= '0' && *rd->p <= '9') rd->p++;
    }
    *is_uint = !neg && !frac && !overflow;
    *u = v;
    (void)s;
    return true;
bad:
    rd->err = "a number is malformed";
    return false;
}

static bool literal(reader_t *rd, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(rd->end - rd->p) < n || memcmp(rd->p, word, n) != 0) {
        rd->err = "it contains an unexpected character";
        return false;
    }
    rd->p += n;
    return true;
}

/* Skips any JSON value, validating it (depth-bounded). */
static bool skip_value(reader_t *rd, int depth)
{
    bool ovf, is_uint;
    size_t len;
    uint64_t u;
    if (depth > JSON_MAX_DEPTH) {
        rd->err = "it nests too deeply";
        return false;
    }
    skip_ws(rd);
    if (rd->p >= rd->end) {
        rd->err = "it ends too early";
        return false;
    }
    switch (*rd->p) {
    case '"': return read_string(rd, NULL, 0, &len, &ovf);
    case 't': return literal(rd, "true");
    case 'f': return literal(rd, "false");
    case 'n': return literal(rd, "null");
    case '{':
    case '[': {
        uint8_t close = *rd->p == '{' ? '}' : ']';
        bool object = close == '}';
        rd->p++;
        skip_ws(rd);
        if (rd->p < rd->end && *rd->p == close) {
            rd->p++;
            return true;
        }
        for (;;) {
            skip_ws(rd);
            if (object) {
                if (rd->p >= rd->end || *rd->p != '"') {
                    rd->err = "an object key is not a string";
                    return false;
                }
                if (!read_string(rd, NULL, 0, &len, &ovf)) return false;
                skip_ws(rd);
                if (rd->p >= rd->end || *rd->p != ':') {
                    rd->err = "a ':' is missing after an object key";
                    return false;
                }
                rd->p++;
            }
            if (!skip_value(rd, depth + 1)) return false;
            skip_ws(rd);
            if (rd->p < rd->end && *rd->p == ',') {
                rd->p++;
                continue;
            }
            if (rd->p < rd->end && *rd->p == close) {
                rd->p++;
                return true;
            }
            rd->err = "a ',' or closing bracket is missing";
            return false;
        }
    }
    default:
        if (*rd->p == '-' || (*rd->p >= '0' && *rd->p <= '9')) return read_number(rd, &is_uint, &u);
        rd->err = "it contains an unexpected character";
        return false;
    }
}

/* Reads a member value for a known key into f (last occurrence wins, as serde_json's map). */
static bool read_field(reader_t *rd, field_t *f)
{
    bool ovf;
    size_t len;
    skip_ws(rd);
    if (rd->p >= rd->end) {
        rd->err = "it ends too early";
        return false;
    }
    memset(f, 0, sizeof *f);
    switch (*rd->p) {
    case '"': {
        char *out = rd->arena + rd->arena_len;
        size_t cap = rd->arena_cap - rd->arena_len;
        if (!read_string(rd, out, cap, &len, &ovf)) return false;
        if (ovf) { /* cannot happen: decoded text is never longer than the body */
            rd->err = "it is too large";
            return false;
        }
        f->type = F_STRING;
        f->str = out;
        f->len = len;
        rd->arena_len += len + 1;
        return true;
    }
    case 'n':
        f->type = F_NULL;
        return literal(rd, "null");
    case 't':
        f->type = F_BOOL;
        f->b = true;
        return literal(rd, "true");
    case 'f':
        f->type = F_BOOL;
        f->b = false;
        return literal(rd, "false");
    default:
        if (*rd->p == '-' || (*rd->p >= '0' && *rd->p <= '9')) {
            bool is_uint;
            if (!read_number(rd, &is_uint, &f->u)) return false;
            f->type = is_uint ? F_UINT : F_NUMBER;
            return true;
        }
        f->type = F_OTHER;
        return skip_value(rd, 2);
    }
}

static bool read_object(reader_t *rd, field_t fields[K_COUNT])
{
    skip_ws(rd);
    if (rd->p >= rd->end) {
        rd->err = "it is empty";
        return false;
    }
    if (*rd->p != '{') {
        /* Valid JSON that is not an object is still "not an object"; invalid JSON likewise. */
        rd->err = "the top level must be an object";
        return false;
    }
    rd->p++;
    skip_ws(rd);
    if (rd->p < rd->end && *rd->p == '}') {
        rd->p++;
    } else {
        for (;;) {
            char key[24];
            size_t klen;
            bool ovf;
            skip_ws(rd);
            if (rd->p >= rd->end || *rd->p != '"') {
                rd->err = "an object key is not a string";
                return false;
            }
            if (!read_string(rd, key, sizeof key, &klen, &ovf)) return false;
            skip_ws(rd);
            if (rd->p >= rd->end || *rd->p != ':') {
                rd->err = "a ':' is missing after an object key";
                return false;
            }
            rd->p++;
            int k = -1;
            if (!ovf) {
                for (int i = 0; i < K_COUNT; i++) {
                    if (strlen(KEY_NAMES[i]) == klen && memcmp(KEY_NAMES[i], key, klen) == 0) k = i;
                }
            }
            if (k >= 0) {
                if (!read_field(rd, &fields[k])) return false;
            } else if (!skip_value(rd, 2)) {
                return false;
            }
            skip_ws(rd);
            if (rd->p < rd->end && *rd->p == ',') {
                rd->p++;
                continue;
            }
            if (rd->p < rd->end && *rd->p == '}') {
                rd->p++;
                break;
            }
            rd->err = "a ',' or '}' is missing";
            return false;
        }
    }
    skip_ws(rd);
    if (rd->p != rd->end) {
        rd->err = "there are trailing characters after the object";
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------ field rules -------- */

static bool present(const field_t *f) { return f->type != F_ABSENT && f->type != F_NULL; }

static bool want_string(const field_t *f, const char *name, bool required, aegis_reject_t *r)
{
    if (!present(f)) {
        if (required) {
            aegis_reject(r, 400, "missing_field", "The required field \"%s\" is missing.", name);
            return false;
        }
        return true;
    }
    if (f->type != F_STRING) {
        aegis_reject(r, 400, "invalid_field", "The field \"%s\" must be a string.", name);
        return false;
    }
    return true;
}

bool aegis_is_lower_hex(const char *s, size_t slen, size_t digits)
{
    if (slen != digits) return false;
    for (size_t i = 0; i < slen; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

/* Counts Unicode scalar values in valid UTF-8. */
static size_t utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (((uint8_t)s[i] & 0xC0) != 0x80) n++;
    }
    return n;
}

static bool hex_field(const field_t *f, const char *name, size_t digits, aegis_reject_t *r)
{
    if (f->len != digits) {
        aegis_reject(r, 400, "bad_hex", "The field \"%s\" is not valid: %s must be %zu hex digits, got %zu characters.",
                     name, name, digits, utf8_chars(f->str, f->len));
        return false;
    }
    if (!aegis_is_lower_hex(f->str, f->len, digits)) {
        aegis_reject(r, 400, "bad_hex",
                     "The field \"%s\" is not valid: %s must contain only lower-case hex digits (0-9, a-f).", name,
                     name);
        return false;
    }
    return true;
}

/* Whether text contains a control character (Unicode Cc: U+0000-001F, U+007F-009F). */
static bool has_control(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)s[i];
        if (c < 0x20 || c == 0x7F) return true;
        if (c == 0xC2 && i + 1 < len && (uint8_t)s[i + 1] >= 0x80 && (uint8_t)s[i + 1] <= 0x9F) return true;
    }
    return false;
}

static bool check_url(const char *name, const char *s, size_t len, aegis_reject_t *r)
{
    const char *rest = NULL;
    if (len >= 7 && memcmp(s, "http://", 7) == 0) rest = s + 7;
    else if (len >= 8 && memcmp(s, "https://", 8) == 0) rest = s + 8;
    if (rest == NULL) {
        aegis_reject(r, 400, "invalid_field", "The field \"%s\" is not valid: it must start with http:// or https://.",
                     name);
        return false;
    }
    if (rest == s + len) {
        aegis_reject(r, 400, "invalid_field", "The field \"%s\" is not valid: it has no host.", name);
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)s[i];
        if (c < 0x21 || c > 0x7E) {
            aegis_reject(r, 400, "invalid_field",
                         "The field \"%s\" is not valid: it may contain only printable ASCII characters and no spaces.",
                         name);
            return false;
        }
    }
    return true;
}

static bool check_text(const char *name, const char *s, size_t len, aegis_reject_t *r)
{
    if (has_control(s, len)) {
        aegis_reject(r, 400, "invalid_field",
                     "The field \"%s\" is not valid: it must not contain control characters such as newlines.", name);
        return false;
    }
    return true;
}

bool aegis_trigger_parse(const uint8_t *body, size_t len, aegis_trigger_t *t, aegis_reject_t *r)
{
    field_t f[K_COUNT];
    reader_t rd;

    memset(t, 0, sizeof *t);
    r->status = 0;
    if (len > AEGIS_MAX_TRIGGER_BODY || body == NULL) {
        aegis_reject(r, 400, "body_too_large", "The request body is %zu bytes; a trigger may be at most 4096 bytes.",
                     len);
        return false;
    }
    memset(f, 0, sizeof f);
    rd.p = body;
    rd.end = body + len;
    rd.arena = t->arena;
    rd.arena_len = 0;
    rd.arena_cap = sizeof t->arena;
    rd.err = NULL;
    if (!read_object(&rd, f)) {
        aegis_reject(r, 400, "malformed_json", "The request body is not a JSON object: %s.", rd.err);
        return false;
    }

    /* Field by field, in the order the reference implementation reads them. */
    if (!want_string(&f[K_URL], "url", true, r)) return false;
    if (!want_string(&f[K_HASH], "hash", true, r)) return false;
    if (!hex_field(&f[K_HASH], "hash", 64, r)) return false;
    if (!want_string(&f[K_VERSION], "version", true, r)) return false;
    if (!present(&f[K_SIZE])) {
        aegis_reject(r, 400, "missing_field", "The required field \"size\" is missing.");
        return false;
    }
    if (f[K_SIZE].type != F_UINT) {
        aegis_reject(r, 400, "invalid_field", "The field \"size\" must be a whole number of bytes.");
        return false;
    }
    if (!want_string(&f[K_DEPLOYMENT], "deployment", true, r)) return false;
    if (!want_string(&f[K_REPORT], "report", false, r)) return false;
    if (!want_string(&f[K_NONCE], "nonce", false, r)) return false;
    if (present(&f[K_NONCE]) && !hex_field(&f[K_NONCE], "nonce", 32, r)) return false;
    if (present(&f[K_ALLOW]) && f[K_ALLOW].type != F_BOOL) {
        aegis_reject(r, 400, "invalid_field", "The field \"allow_downgrade\" must be true or false.");
        return false;
    }
    if (!want_string(&f[K_SIG], "sig", false, r)) return false;
    if (present(&f[K_SIG]) && !hex_field(&f[K_SIG], "sig", 128, r)) return false;

    /* Trigger::validate. */
    if (!check_url("url", f[K_URL].str, f[K_URL].len, r)) return false;
    if (!check_text("version", f[K_VERSION].str, f[K_VERSION].len, r)) return false;
    size_t chars = utf8_chars(f[K_DEPLOYMENT].str, f[K_DEPLOYMENT].len);
    if (chars == 0 || chars > AEGIS_MAX_DEPLOYMENT_CHARS) {
        aegis_reject(r, 400, "invalid_field", "The field \"deployment\" is not valid: it must be 1 to %d characters, not %zu.",
                     AEGIS_MAX_DEPLOYMENT_CHARS, chars);
        return false;
    }
    if (!check_text("deployment", f[K_DEPLOYMENT].str, f[K_DEPLOYMENT].len, r)) return false;
    if (f[K_SIZE].u == 0) {
        aegis_reject(r, 400, "invalid_field", "The field \"size\" is not valid: it must be greater than zero.");
        return false;
    }
    if (present(&f[K_REPORT]) && !check_url("report", f[K_REPORT].str, f[K_REPORT].len, r)) return false;
    if (present(&f[K_SIG]) && !present(&f[K_NONCE])) {
        aegis_reject(r, 400, "missing_field", "The field \"nonce\" is required when the trigger is signed.");
        return false;
    }

    t->url = f[K_URL].str;
    t->hash = f[K_HASH].str;
    t->version = f[K_VERSION].str;
    t->size = f[K_SIZE].u;
    t->deployment = f[K_DEPLOYMENT].str;
    t->report = present(&f[K_REPORT]) ? f[K_REPORT].str : NULL;
    t->nonce = present(&f[K_NONCE]) ? f[K_NONCE].str : NULL;
    t->allow_downgrade = present(&f[K_ALLOW]) && f[K_ALLOW].b;
    t->sig = present(&f[K_SIG]) ? f[K_SIG].str : NULL;
    return true;
}

/* ------------------------------------------------------------------ signed message ------ */

typedef void (*sink_fn)(void *user, const char *s, size_t len);

static void message_lines(const aegis_trigger_t *t, const char *device_id, sink_fn sink, void *user)
{
    char size[24];
    snprintf(size, sizeof size, "%llu", (unsigned long long)t->size);
    const char *lines[9] = {"aegis-ota/1", device_id, t->url, t->hash, size, t->version, t->deployment,
                            t->nonce ? t->nonce : "", t->allow_downgrade ? "1" : "0"};
    for (int i = 0; i < 9; i++) {
        if (i > 0) sink(user, "\n", 1);
        sink(user, lines[i], strlen(lines[i]));
    }
}

static void sha_sink(void *user, const char *s, size_t len) { aegis_sha256_update(user, s, len); }

void aegis_signed_message_hash(const aegis_trigger_t *t, const char *device_id, uint8_t out[32])
{
    mbedtls_sha256_context c;
    aegis_sha256_start(&c);
    message_lines(t, device_id, sha_sink, &c);
    aegis_sha256_finish(&c, out);
}

typedef struct {
    char *buf;
    size_t cap, len;
    bool overflow;
} buf_sink_t;

static void buf_sink(void *user, const char *s, size_t len)
{
    buf_sink_t *b = user;
    if (b->len + len + 1 > b->cap) {
        b->overflow = true;
        return;
    }
    memcpy(b->buf + b->len, s, len);
    b->len += len;
    b->buf[b->len] = '\0';
}

int aegis_signed_message(const aegis_trigger_t *t, const char *device_id, char *buf, size_t cap)
{
    buf_sink_t b = {buf, cap, 0, false};
    if (cap > 0) buf[0] = '\0';
    message_lines(t, device_id, buf_sink, &b);
    return b.overflow ? -1 : (int)b.len;
}

/* ------------------------------------------------------------------ the decision -------- */

bool aegis_trigger_check(const aegis_trigger_t *t, const aegis_device_view_t *d, aegis_reject_t *r)
{
    r->status = 0;
    if (d->state == AEGIS_STATE_UPDATING) {
        aegis_reject(r, 409, "busy", "An update is already in progress; wait for it to finish and try again.");
        return false;
    }
    if (d->state == AEGIS_STATE_PENDING_VERIFY) {
        aegis_reject(r, 409, "pending_verify",
                     "The running image has not yet confirmed itself valid; wait until it does (or rolls back) and try again.");
        return false;
    }
    if (d->trusted_key != NULL) {
        uint8_t digest[32], sig[64];
        if (t->sig == NULL) {
            aegis_reject(r, 401, "signature_missing",
                         "This device only accepts signed triggers; sign the trigger with the server key.");
            return false;
        }
        aegis_signed_message_hash(t, d->id, digest);
        if (!aegis_unhex(t->sig, sig, sizeof sig) || !aegis_ecdsa_p256_verify(d->trusted_key, digest, sig)) {
            aegis_reject(r, 401, "signature_invalid",
                         "The signature does not verify with the key this device trusts; check that the server key matches the device's key.");
            return false;
        }
    }
    if (t->nonce != NULL && (d->current_nonce == NULL || strcmp(t->nonce, d->current_nonce) != 0)) {
        aegis_reject(r, 412, "nonce_unknown",
                     "The nonce is unknown or has already been used; fetch a fresh one from GET /aegis/v1/info and sign again.");
        return false;
    }
    if (t->size > d->slot_size) {
        aegis_reject(r, 413, "too_large", "The image is %llu bytes but the inactive slot holds only %llu bytes.",
                     (unsigned long long)t->size, (unsigned long long)d->slot_size);
        return false;
    }
    if (!t->allow_downgrade && aegis_is_downgrade(d->running_version, t->version)) {
        aegis_reject(r, 422, "downgrade",
                     "Version \"%.64s\" is older than the running version \"%.64s\"; set allow_downgrade to install it anyway.",
                     t->version, d->running_version);
        return false;
    }
    return true;
}

bool aegis_check_body(const uint8_t *body, size_t len, const aegis_device_view_t *d, aegis_trigger_t *t,
                      aegis_reject_t *r)
{
    return aegis_trigger_parse(body, len, t, r) && aegis_trigger_check(t, d, r);
}

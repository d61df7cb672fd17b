/*
 * unit.c — the core's unit tests: every rejection of docs/protocol.md section 3/5 with its
 * code, the test vector of section 9, version ordering (section 6), hashing and image checks
 * across chunk boundaries, the update state machine's Range resume against a fake port, TXT
 * limits, /info and reports. Plain asserts; prints the count.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aegis_internal.h"

static int checks, failures;

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        checks++;                                                                                                      \
        if (!(cond)) {                                                                                                 \
            failures++;                                                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                                   \
        }                                                                                                              \
    } while (0)

/* ------------------------------------------------------------------ test vector --------- */

static const char *PUB =
    "0460fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb67903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5"
    "177a3c294d4462299";
static const char *SIG = "a142c8359dfe5f8ec29767d931aec1a36dac7667fe482aa11601b081b45ea4e552cee6bd7b5e6f81cc61cdbdcffb63c"
                         "6234201f99e5c92c851554a799110c516";
static const char *ID = "240ac4123456";
static const char *NONCE = "000102030405060708090a0b0c0d0e0f";

static char BODY[4200];

static void make_body(const char *sig_field, unsigned long size)
{
    snprintf(BODY, sizeof BODY,
             "{\"url\":\"http://10.0.0.5:3001/fw/94f09ca36ec05416d8c275b3f1053a16ce233dbd7af10c98fda3fc7165fd746e.bin\","
             "\"hash\":\"94f09ca36ec05416d8c275b3f1053a16ce233dbd7af10c98fda3fc7165fd746e\",\"version\":\"2.0.0\","
             "\"size\":%lu,\"deployment\":\"rollout-0001\",\"report\":\"http://10.0.0.5:3001/api/v1/report\","
             "\"nonce\":\"000102030405060708090a0b0c0d0e0f\",\"allow_downgrade\":false%s}",
             size, sig_field);
}

static uint8_t key[65];

static aegis_device_view_t view(const char *running, uint64_t slot)
{
    aegis_device_view_t v = {ID, key, NONCE, running, AEGIS_STATE_IDLE, slot};
    return v;
}

static aegis_trigger_t T;
static aegis_reject_t R;

static int decide(const char *body, aegis_device_view_t v)
{
    return aegis_check_body((const uint8_t *)body, strlen(body), &v, &T, &R) ? 202 : R.status;
}

static void test_vector(void)
{
    char sigf[200], msg[600], hex[65];
    uint8_t d[32];
    CHECK(aegis_unhex(PUB, key, 65));
    CHECK(aegis_p256_key_valid(key));
    aegis_sha256(key, 65, d);
    aegis_hex(d, 32, hex);
    CHECK(strcmp(hex, "b18b86ce1389e46de87aa4a5131ce83c1160fa33c087ab15b863574d31d8ff3c") == 0);
    aegis_sha256("aegis-ota test vector image", 27, d);
    aegis_hex(d, 32, hex);
    CHECK(strcmp(hex, "94f09ca36ec05416d8c275b3f1053a16ce233dbd7af10c98fda3fc7165fd746e") == 0);

    snprintf(sigf, sizeof sigf, ",\"sig\":\"%s\"", SIG);
    make_body(sigf, 1048576);
    CHECK(decide(BODY, view("1.0.0", 1048576)) == 202);
    int n = aegis_signed_message(&T, ID, msg, sizeof msg);
    CHECK(n == 244);
    CHECK(strcmp(msg, "aegis-ota/1\n240ac4123456\nhttp://10.0.0.5:3001/fw/"
                      "94f09ca36ec05416d8c275b3f1053a16ce233dbd7af10c98fda3fc7165fd746e.bin\n"
                      "94f09ca36ec05416d8c275b3f1053a16ce233dbd7af10c98fda3fc7165fd746e\n1048576\n2.0.0\n"
                      "rollout-0001\n000102030405060708090a0b0c0d0e0f\n0") == 0);
    aegis_signed_message_hash(&T, ID, d);
    aegis_hex(d, 32, hex);
    CHECK(strcmp(hex, "99bf0c30208561d563e4139e71df9d6633624fa59e3d381d24429e5af0122494") == 0);

    /* The documented outcomes. */
    aegis_device_view_t v = view("1.0.0", 1048576);
    v.current_nonce = "ffffffffffffffffffffffffffffffff";
    CHECK(decide(BODY, v) == 412 && strcmp(R.code, "nonce_unknown") == 0);
    CHECK(decide(BODY, view("2.1.0", 1048576)) == 422 && strcmp(R.code, "downgrade") == 0);
    CHECK(decide(BODY, view("1.0.0", 1048575)) == 413 && strcmp(R.code, "too_large") == 0);
    make_body(sigf, 1048577);
    CHECK(decide(BODY, view("1.0.0", 2000000)) == 401 && strcmp(R.code, "signature_invalid") == 0);
    make_body("", 1048576);
    CHECK(decide(BODY, view("1.0.0", 1048576)) == 401 && strcmp(R.code, "signature_missing") == 0);
    /* Well-formed hex that is no valid r||s. */
    make_body(",\"sig\":\"00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\"",
              1048576);
    CHECK(decide(BODY, view("1.0.0", 1048576)) == 401 && strcmp(R.code, "signature_invalid") == 0);
    /* The signature of another device id does not verify here. */
    make_body(sigf, 1048576);
    aegis_device_view_t other = view("1.0.0", 1048576);
    other.id = "240ac4123457";
    CHECK(decide(BODY, other) == 401);
}

/* ------------------------------------------------------------------ rejections ---------- */

static void expect(const char *body, int status, const char *code)
{
    aegis_device_view_t v = {ID, NULL, NONCE, "1.0.0", AEGIS_STATE_IDLE, 1 << 20};
    int got = decide(body, v);
    CHECK(got == status);
    if (got != status || (status != 202 && strcmp(R.code, code) != 0))
        fprintf(stderr, "  body %.80s: got %d %s (%s), want %d %s\n", body, got, got == 202 ? "" : R.code,
                got == 202 ? "" : R.message, status, code);
}

#define H64 "94f09ca36ec05416d8c275b3f1053a16ce233dbd7af10c98fda3fc7165fd746e"
#define OK_FIELDS "\"url\":\"http://h/x\",\"hash\":\"" H64 "\",\"version\":\"2.0.0\",\"size\":10,\"deployment\":\"d\""

static void test_rejections(void)
{
    char big[4200];
    expect("{" OK_FIELDS "}", 202, "");
    expect("{" OK_FIELDS ",\"unknown\":[1,{\"a\":null}],\"report\":null,\"nonce\":null,\"sig\":null}", 202, "");
    /* 400 body_too_large */
    memset(big, ' ', sizeof big);
    memcpy(big, "{" OK_FIELDS "}", strlen("{" OK_FIELDS "}"));
    big[4097] = '\0';
    expect(big, 400, "body_too_large");
    big[4096] = '\0'; /* exactly 4096 bytes with trailing whitespace: fine */
    expect(big, 202, "");
    /* 400 malformed_json */
    expect("", 400, "malformed_json");
    expect("[]", 400, "malformed_json");
    expect("\"x\"", 400, "malformed_json");
    expect("{" OK_FIELDS, 400, "malformed_json");
    expect("{" OK_FIELDS "} x", 400, "malformed_json");
    expect("{" OK_FIELDS ",}", 400, "malformed_json");
    expect("{" OK_FIELDS ",\"a\":01}", 400, "malformed_json");
    expect("{" OK_FIELDS ",\"a\":\"\\ud800\"}", 400, "malformed_json");
    expect("{" OK_FIELDS ",\"a\":\"\xff\"}", 400, "malformed_json");
    expect("{" OK_FIELDS ",\"a\":\"\x01\"}", 400, "malformed_json");
    expect("{" OK_FIELDS ",\"a\":tru}", 400, "malformed_json");
    expect("{'url':1}", 400, "malformed_json");
    /* 400 missing_field (and which wins) */
    expect("{}", 400, "missing_field");
    expect("{\"url\":null}", 400, "missing_field");
    expect("{\"url\":\"http://h/x\",\"hash\":\"" H64 "\",\"version\":\"2\",\"size\":1}", 400, "missing_field");
    expect("{" OK_FIELDS ",\"sig\":\"" "a142c8359dfe5f8ec29767d931aec1a36dac7667fe482aa11601b081b45ea4e552cee6bd7b5e6f81cc61cdbdcffb63c6234201f99e5c92c851554a799110c516" "\"}",
           400, "missing_field");
    /* 400 bad_hex */
    expect("{\"url\":\"http://h/x\",\"hash\":\"94F09CA36EC05416D8C275B3F1053A16CE233DBD7AF10C98FDA3FC7165FD746E\",\"version\":\"2\",\"size\":1,\"deployment\":\"d\"}",
           400, "bad_hex");
    expect("{\"url\":\"http://h/x\",\"hash\":\"abc\",\"version\":\"2\",\"size\":1,\"deployment\":\"d\"}", 400, "bad_hex");
    expect("{" OK_FIELDS ",\"nonce\":\"0001\"}", 400, "bad_hex");
    expect("{" OK_FIELDS ",\"nonce\":\"000102030405060708090A0B0C0D0E0F\"}", 400, "bad_hex");
    expect("{" OK_FIELDS ",\"nonce\":\"000102030405060708090a0b0c0d0e0f\",\"sig\":\"00\"}", 400, "bad_hex");
    /* 400 invalid_field */
    expect("{\"url\":5," "\"hash\":\"" H64 "\",\"version\":\"2\",\"size\":1,\"deployment\":\"d\"}", 400, "invalid_field");
    expect("{\"url\":\"ftp://h/x\",\"hash\":\"" H64 "\",\"version\":\"2\",\"size\":1,\"deployment\":\"d\"}", 400, "invalid_field");
    expect("{\"url\":\"http://\",\"hash\":\"" H64 "\",\"version\":\"2\",\"size\":1,\"deployment\":\"d\"}", 400, "invalid_field");
    expect("{\"url\":\"http://h/a b\",\"hash\":\"" H64 "\",\"version\":\"2\",\"size\":1,\"deployment\":\"d\"}", 400, "invalid_field");
    expect("{\"url\":\"http://h\\u00e9\",\"hash\":\"" H64 "\",\"version\":\"2\",\"size\":1,\"deployment\":\"d\"}", 400, "invalid_field");
    expect("{\"url\":\"http://h/x\",\"hash\":\"" H64 "\",\"version\":\"2\\n\",\"size\":1,\"deployment\":\"d\"}", 400, "invalid_field");
    expect("{\"url\":\"http://h/x\",\"hash\":\"" H64 "\",\"version\":\"2\\u0085\",\"size\":1,\"deployment\":\"d\"}", 400, "invalid_field");
    expect("{\"url\":\"http://h/x\",\"hash\":\"" H64 "\",\"version\":\"2\",\"size\":0,\"deployment\":\"d\"}", 400, "invalid_field");
    expect("{\"url\":\"http://h/x\",\"hash\":\"" H64 "\",\"version\":\"2\",\"size\":-1,\"deployment\":\"d\"}", 400, "invalid_field");
    expect("{\"url\":\"http://h/x\",\"hash\":\"" H64 "\",\"version\":\"2\",\"size\":1.5,\"deployment\":\"d\"}", 400, "invalid_field");
    expect("{\"url\":\"http://h/x\",\"hash\":\"" H64 "\",\"version\":\"2\",\"size\":1e3,\"deployment\":\"d\"}", 400, "invalid_field");
    expect("{\"url\":\"http://h/x\",\"hash\":\"" H64 "\",\"version\":\"2\",\"size\":99999999999999999999,\"deployment\":\"d\"}", 400, "invalid_field");
    expect("{\"url\":\"http://h/x\",\"hash\":\"" H64 "\",\"version\":\"2\",\"size\":\"1\",\"deployment\":\"d\"}", 400, "invalid_field");
    expect("{\"url\":\"http://h/x\",\"hash\":\"" H64 "\",\"version\":\"2\",\"size\":1,\"deployment\":\"\"}", 400, "invalid_field");
    expect("{\"url\":\"http://h/x\",\"hash\":\"" H64 "\",\"version\":\"2\",\"size\":1,\"deployment\":\"a\\tb\"}", 400, "invalid_field");
    expect("{" OK_FIELDS ",\"allow_downgrade\":1}", 400, "invalid_field");
    expect("{" OK_FIELDS ",\"report\":\"mailto:x\"}", 400, "invalid_field");
    /* deployment: 64 characters (even multi-byte) are fine, 65 are not */
    {
        char b[1024], dep[600] = "";
        for (int i = 0; i < 64; i++) strcat(dep, "\xc3\xa9");
        snprintf(b, sizeof b, "{\"url\":\"http://h/x\",\"hash\":\"" H64 "\",\"version\":\"2\",\"size\":1,\"deployment\":\"%s\"}", dep);
        expect(b, 202, "");
        strcat(dep, "x");
        snprintf(b, sizeof b, "{\"url\":\"http://h/x\",\"hash\":\"" H64 "\",\"version\":\"2\",\"size\":1,\"deployment\":\"%s\"}", dep);
        expect(b, 400, "invalid_field");
    }
    /* escapes decode before the rules; duplicate keys: the last one counts */
    expect("{\"u\\u0072l\":\"http:\\/\\/h/x\",\"hash\":\"" H64 "\",\"version\":\"2\",\"size\":1,\"deployment\":\"d\"}", 202, "");
    expect("{" OK_FIELDS ",\"size\":0}", 400, "invalid_field");

    /* 409, before the signature */
    aegis_device_view_t v = {ID, key, NONCE, "1.0.0", AEGIS_STATE_UPDATING, 1 << 20};
    CHECK(decide("{" OK_FIELDS "}", v) == 409 && strcmp(R.code, "busy") == 0);
    v.state = AEGIS_STATE_PENDING_VERIFY;
    CHECK(decide("{" OK_FIELDS "}", v) == 409 && strcmp(R.code, "pending_verify") == 0);
    /* 400 before 409 */
    CHECK(decide("{}", v) == 400);
    /* 412 without a key: a wrong nonce is refused, no nonce is fine */
    expect("{" OK_FIELDS ",\"nonce\":\"ffffffffffffffffffffffffffffffff\"}", 412, "nonce_unknown");
    expect("{" OK_FIELDS ",\"nonce\":\"" "000102030405060708090a0b0c0d0e0f" "\"}", 202, "");
    /* 413 before 422 */
    aegis_device_view_t small = {ID, NULL, NONCE, "9.0.0", AEGIS_STATE_IDLE, 5};
    CHECK(decide("{" OK_FIELDS "}", small) == 413);
    small.slot_size = 10;
    CHECK(decide("{" OK_FIELDS "}", small) == 422 && strcmp(R.code, "downgrade") == 0);
    CHECK(decide("{" OK_FIELDS ",\"allow_downgrade\":true}", small) == 202);
    /* the error body */
    char eb[300];
    aegis_error_body(eb, sizeof eb, "bad_hex", "A \"quoted\" sentence.");
    CHECK(strcmp(eb, "{\"error\":{\"code\":\"bad_hex\",\"message\":\"A \\\"quoted\\\" sentence.\"}}") == 0);
}

/* ------------------------------------------------------------------ versions ------------ */

static void order(const char *a, const char *b, int want)
{
    int c = 99, r = 99;
    CHECK(aegis_version_compare(a, b, &c) && c == want);
    CHECK(aegis_version_compare(b, a, &r) && r == -want);
    if (c != want) fprintf(stderr, "  %s vs %s: got %d want %d\n", a, b, c, want);
}

static void test_versions(void)
{
    order("1.2.3", "1.2.4", -1);
    order("1.10.0", "1.9.9", 1);
    order("v2", "2.0.0", 0);
    order("V1.0", "1.0.0+build.7", 0);
    order("1.0.0-rc.1", "1.0.0", -1);
    order("1.0.0-alpha", "1.0.0-alpha.1", -1);
    order("1.0.0-alpha.1", "1.0.0-alpha.beta", -1);
    order("1.0.0-beta.2", "1.0.0-beta.11", -1);
    order("1.0.0-rc.1", "1.0.0-beta", 1);
    order("v1.2.3-4-gabc1234", "v1.2.3", 1);
    order("v1.2.3-4-gabc1234", "v1.2.3-12-g0123abc", -1);
    order("v1.2.3-4-gabc1234", "v1.2.4", -1);
    order("v1.2.3-4-gabc1234-dirty", "v1.2.3-4-gffff", 0);
    order("v1.2.3-dirty", "v1.2.3", 0);
    order("2.0.0-rc.1-3-gdeadbee", "2.0.0-rc.1", 1);
    order("2.0.0-rc.1-3-gdeadbee", "2.0.0", -1);
    order("1.2.3.4", "1.2.3", 1);
    static const char *bad[] = {"", "v", "abc", "1..2", "1.2.", "1.x", "-1", "1.0.0-", "1.0.0-a..b", "1.0 ",
                                "\xef\xbc\x91.0", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int c;
        CHECK(!aegis_version_compare(bad[i], "1.0.0", &c));
        CHECK(!aegis_is_downgrade(bad[i], "1.0.0"));
        CHECK(!aegis_is_downgrade("1.0.0", bad[i]));
    }
    CHECK(aegis_is_downgrade("2.0.0", "1.9.9"));
    CHECK(!aegis_is_downgrade("2.0.0", "2.0.0"));
    CHECK(!aegis_is_downgrade("2.0.0", "2.0.1"));
    CHECK(aegis_is_downgrade("2.0.0", "2.0.0-rc.1"));
}

/* ------------------------------------------------------------------ images -------------- */

static uint8_t IMG[70000];
static size_t IMG_LEN;

/* A valid esp32s3 app image: header, one segment holding an app descriptor, checksum, digest. */
static void build_image(const char *version, uint16_t chip, size_t data_len)
{
    uint8_t *p = IMG;
    memset(IMG, 0, sizeof IMG);
    p[0] = 0xE9;
    p[1] = 1;
    p[12] = (uint8_t)chip;
    p[13] = (uint8_t)(chip >> 8);
    p[23] = 1;
    uint8_t *seg = p + 24;
    seg[0] = 0x20; /* load address, any */
    seg[4] = (uint8_t)data_len;
    seg[5] = (uint8_t)(data_len >> 8);
    seg[6] = (uint8_t)(data_len >> 16);
    uint8_t *d = p + 32;
    d[0] = 0x32, d[1] = 0x54, d[2] = 0xCD, d[3] = 0xAB;
    memcpy(d + 16, version, strlen(version));
    memcpy(d + 48, "demo", 4);
    for (size_t i = 256; i < data_len; i++) d[i] = (uint8_t)(i * 7);
    uint8_t x = 0xEF;
    for (size_t i = 0; i < data_len; i++) x ^= d[i];
    size_t end = 32 + data_len, ck = end - (end % 16) + 15;
    p[ck] = x;
    aegis_sha256(p, ck + 1, p + ck + 1);
    IMG_LEN = ck + 1 + 32;
}

static bool check_in_pieces(size_t piece, int *err)
{
    aegis_image_check_t c;
    aegis_image_check_start(&c);
    for (size_t off = 0; off < IMG_LEN; off += piece) {
        size_t n = IMG_LEN - off < piece ? IMG_LEN - off : piece;
        aegis_image_check_feed(&c, IMG + off, n);
    }
    bool ok = aegis_image_check_done(&c) && aegis_image_check_length(&c) == IMG_LEN;
    *err = c.error;
    aegis_image_check_free(&c);
    return ok;
}

static void test_images_and_hashing(void)
{
    int err;
    build_image("1.0.0", 9, 5000);
    static const size_t pieces[] = {1, 3, 7, 24, 32, 1000, 4096, 100000};
    uint8_t whole[32];
    aegis_sha256(IMG, IMG_LEN, whole);
    for (size_t i = 0; i < sizeof pieces / sizeof *pieces; i++) {
        CHECK(check_in_pieces(pieces[i], &err) && err == 0);
        mbedtls_sha256_context c;
        uint8_t d[32];
        aegis_sha256_start(&c);
        for (size_t off = 0; off < IMG_LEN; off += pieces[i])
            aegis_sha256_update(&c, IMG + off, IMG_LEN - off < pieces[i] ? IMG_LEN - off : pieces[i]);
        aegis_sha256_finish(&c, d);
        CHECK(memcmp(d, whole, 32) == 0);
    }
    IMG[40] ^= 1; /* segment data: checksum and digest break */
    CHECK(!check_in_pieces(13, &err) && err == AEGIS_IMG_ERR_CHECKSUM);
    build_image("1.0.0", 9, 5000);
    IMG[IMG_LEN - 1] ^= 1;
    CHECK(!check_in_pieces(13, &err) && err == AEGIS_IMG_ERR_DIGEST);
    build_image("1.0.0", 9, 5000);
    IMG[0] = 0xEA;
    CHECK(!check_in_pieces(13, &err) && err == AEGIS_IMG_ERR_MAGIC);
    build_image("1.0.0", 9, 5000);
    IMG_LEN -= 10;
    CHECK(!check_in_pieces(13, &err) && err == 0);
    CHECK(strcmp(aegis_chip_name(9), "esp32s3") == 0 && aegis_chip_name(99) == NULL);
}

/* ------------------------------------------------------------------ a fake port --------- */

static struct {
    uint8_t running[70000];
    size_t running_len;
    aegis_img_state_t state;
    const char *label;
    uint8_t slot[70000];
    size_t written;
    int begins, aborts, ends, set_boots, reboots, valid;
    uint64_t ranges[16];
    int gets;
    size_t break_every; /* the fake server drops the connection after this many bytes */
    bool ignore_range;
    char kv[2048];
    size_t kv_len;
    char reports[16][32];
    int report_count;
    int announces, goodbyes;
    uint64_t now;
} F;

static int f_running_slot(void *c, aegis_running_slot_t *o)
{
    (void)c;
    snprintf(o->label, sizeof o->label, "%s", F.label);
    o->state = F.state;
    o->partition_size = 65536;
    return 0;
}
static int f_running_read(void *c, uint32_t off, void *b, size_t n)
{
    (void)c;
    memset(b, 0xFF, n);
    if (off < F.running_len) memcpy(b, F.running + off, F.running_len - off < n ? F.running_len - off : n);
    return 0;
}
static uint32_t f_slot_size(void *c) { (void)c; return 65536; }
static int f_begin(void *c, uint32_t s) { (void)c; (void)s; F.begins++; F.written = 0; return 0; }
static int f_write(void *c, uint32_t off, const void *d, size_t n)
{
    (void)c;
    if (off != F.written || n > AEGIS_CHUNK_SIZE) return -1; /* writes are sequential chunks */
    memcpy(F.slot + off, d, n);
    F.written += n;
    return 0;
}
static int f_end(void *c) { (void)c; F.ends++; return 0; }
static void f_abort(void *c) { (void)c; F.aborts++; }
static int f_set_boot(void *c) { (void)c; F.set_boots++; return 0; }
static int f_mark_valid(void *c) { (void)c; F.valid++; return 0; }
static int f_rollback(void *c) { (void)c; return 0; }
static void f_reboot(void *c) { (void)c; F.reboots++; }
static int f_get(void *c, const char *url, uint64_t from, aegis_http_head_cb h, aegis_http_data_cb d, void *u)
{
    (void)c;
    (void)url;
    F.ranges[F.gets++ & 15] = from;
    if (F.ignore_range) from = 0;
    if (h(u, from ? 206 : 200, (int64_t)(IMG_LEN - from)) != 0) return AEGIS_PORT_ABORT;
    size_t sent = 0;
    for (size_t off = from; off < IMG_LEN;) {
        size_t n = IMG_LEN - off < 1000 ? IMG_LEN - off : 1000; /* odd-sized pieces */
        if (F.break_every && sent + n > F.break_every) n = F.break_every - sent;
        if (n == 0) return AEGIS_PORT_ERR; /* connection reset */
        if (d(u, IMG + off, n) != 0) return AEGIS_PORT_ABORT;
        off += n;
        sent += n;
    }
    return AEGIS_PORT_OK;
}
static int f_post(void *c, const char *url, const char *body, size_t len)
{
    (void)c;
    (void)url;
    (void)len;
    const char *p = strstr(body, "\"phase\":\"");
    if (p && F.report_count < 16) sscanf(p + 9, "%31[a-z_]", F.reports[F.report_count++]);
    return 204;
}
static int f_announce(void *c, const aegis_announcement_t *a) { (void)c; (void)a; F.announces++; return 0; }
static void f_goodbye(void *c) { (void)c; F.goodbyes++; }
static int f_kv_get(void *c, const char *k, void *b, size_t cap, size_t *len)
{
    (void)c;
    (void)k;
    if (F.kv_len == 0) return AEGIS_PORT_NOT_FOUND;
    if (F.kv_len > cap) return -1;
    memcpy(b, F.kv, F.kv_len);
    *len = F.kv_len;
    return 0;
}
static int f_kv_set(void *c, const char *k, const void *v, size_t len)
{
    (void)c;
    (void)k;
    memcpy(F.kv, v, len);
    F.kv_len = len;
    return 0;
}
static void f_random(void *c, void *b, size_t n)
{
    (void)c;
    static uint8_t x = 1;
    for (size_t i = 0; i < n; i++) ((uint8_t *)b)[i] = x++;
}
static uint64_t f_millis(void *c) { (void)c; return F.now += 10; }

static const aegis_port_t FAKE = {NULL,         f_running_slot, f_running_read, f_slot_size, f_begin,   f_write,
                                  f_end,        f_abort,        f_set_boot,     f_mark_valid, f_rollback, f_reboot,
                                  f_get,        f_post,         f_announce,     f_goodbye,    f_kv_get,   f_kv_set,
                                  f_random,     f_millis,       NULL,           NULL,         NULL,       NULL};

static aegis_ota_t ota;

static int post(const char *body)
{
    aegis_response_t r;
    aegis_ota_handle_request(&ota, "POST", "/aegis/v1/ota", (const uint8_t *)body, strlen(body), &r);
    return r.status;
}

static void start_device(void)
{
    aegis_config_t cfg = AEGIS_CONFIG_DEFAULT;
    cfg.id = ID;
    cfg.hostname = "dev";
    cfg.ip = "10.0.0.7";
    cfg.download_retries = 5;
    CHECK(aegis_ota_init(&ota, &cfg, &FAKE) == 0);
}

static void trigger_for_img(char *buf, size_t cap)
{
    uint8_t d[32];
    char hex[65];
    aegis_sha256(IMG, IMG_LEN, d);
    aegis_hex(d, 32, hex);
    snprintf(buf, cap,
             "{\"url\":\"http://s/fw.bin\",\"hash\":\"%s\",\"version\":\"2.0.0\",\"size\":%zu,"
             "\"deployment\":\"dep-1\",\"report\":\"http://s/api/v1/report\"}",
             hex, IMG_LEN);
}

static void test_device(void)
{
    char body[600], info[AEGIS_RESPONSE_MAX];
    aegis_response_t r;
    memset(&F, 0, sizeof F);
    build_image("1.0.0", 9, 3000);
    memcpy(F.running, IMG, IMG_LEN);
    F.running_len = IMG_LEN;
    F.label = "factory";
    F.state = AEGIS_IMG_VALID;
    start_device();
    CHECK(strcmp(ota.version, "1.0.0") == 0 && strcmp(ota.chip, "esp32s3") == 0 && strcmp(ota.project, "demo") == 0);
    uint8_t d[32];
    char hex[65];
    aegis_sha256(F.running, F.running_len, d);
    aegis_hex(d, 32, hex);
    CHECK(strcmp(ota.sha256, hex) == 0); /* the file's hash, not the flash partition's */
    CHECK(F.announces == 1);

    /* /info, the nonce and its rotation */
    aegis_ota_handle_request(&ota, "GET", "/aegis/v1/info?x=1", NULL, 0, &r);
    CHECK(r.status == 200 && strstr(r.body, "\"last\":null") && strstr(r.body, "\"slot_size\":65536"));
    memcpy(info, r.body, r.body_len);
    info[r.body_len] = '\0';
    char nonce[33];
    snprintf(nonce, sizeof nonce, "%s", ota.nonce);
    CHECK(strlen(nonce) == 32 && strstr(info, nonce));
    CHECK(post("{}") == 400);
    CHECK(strcmp(nonce, ota.nonce) != 0);
    aegis_ota_handle_request(&ota, "GET", "/nope", NULL, 0, &r);
    CHECK(r.status == 404);
    aegis_ota_handle_request(&ota, "DELETE", "/aegis/v1/ota", NULL, 0, &r);
    CHECK(r.status == 405);
    aegis_ota_handle_request(&ota, "POST", "/aegis/v1/ota", NULL, 5000, &r);
    CHECK(r.status == 400 && strstr(r.body, "body_too_large"));

    /* A download that breaks every 2500 bytes resumes with the right Range offsets. */
    build_image("2.0.0", 9, 9000);
    trigger_for_img(body, sizeof body);
    F.break_every = 2500;
    CHECK(post(body) == 202);
    CHECK(aegis_ota_state(&ota) == AEGIS_STATE_UPDATING);
    CHECK(post(body) == 409);
    CHECK(aegis_ota_poll(&ota) == 1);
    CHECK(F.gets == 4);
    CHECK(F.ranges[0] == 0 && F.ranges[1] == 2500 && F.ranges[2] == 5000 && F.ranges[3] == 7500);
    CHECK(F.written == IMG_LEN && memcmp(F.slot, IMG, IMG_LEN) == 0);
    CHECK(F.ends == 1 && F.set_boots == 1 && F.reboots == 1 && F.goodbyes == 1);
    CHECK(strcmp(F.reports[0], "downloading") == 0);
    CHECK(strcmp(F.reports[F.report_count - 1], "rebooting") == 0);

    /* "Reboot": the new image runs pending_verify; confirming reports booted. */
    memcpy(F.running, IMG, IMG_LEN);
    F.running_len = IMG_LEN;
    F.label = "ota_0";
    F.state = AEGIS_IMG_PENDING_VERIFY;
    F.report_count = 0;
    start_device();
    CHECK(aegis_ota_state(&ota) == AEGIS_STATE_PENDING_VERIFY);
    CHECK(post(body) == 409);
    CHECK(aegis_ota_confirm(&ota) == 1 && F.valid == 1);
    CHECK(F.report_count == 1 && strcmp(F.reports[0], "booted") == 0);
    aegis_ota_handle_request(&ota, "GET", "/aegis/v1/info", NULL, 0, &r);
    CHECK(strstr(r.body, "\"result\":\"booted\"") != NULL && strstr(r.body, "\"ver\":\"2.0.0\"") != NULL);

    /* A reboot that comes back on the old image is a rollback. */
    aegis_last_t l = {AEGIS_PHASE_REBOOTING, "dep-2", "", "http://s/r", ""};
    memset(l.hash, 'a', 64);
    F.kv_len = aegis_last_encode(&l, F.kv, sizeof F.kv);
    F.state = AEGIS_IMG_VALID;
    F.report_count = 0;
    start_device();
    CHECK(ota.last.phase == AEGIS_PHASE_ROLLED_BACK && F.report_count == 1 &&
          strcmp(F.reports[0], "rolled_back") == 0);

    /* Exhausted retries: failed, slot aborted, idle again. */
    build_image("3.0.0", 9, 9000);
    trigger_for_img(body, sizeof body);
    F.break_every = 100;
    F.gets = 0;
    F.aborts = 0;
    CHECK(post(body) == 202);
    aegis_ota_poll(&ota);
    CHECK(F.gets == 6 && F.aborts == 1 && ota.last.phase == AEGIS_PHASE_FAILED);
    CHECK(aegis_ota_state(&ota) == AEGIS_STATE_IDLE);

    /* A server that ignores Range: the core restarts from byte 0. */
    F.break_every = 4000;
    F.ignore_range = true;
    F.gets = 0;
    F.begins = 0;
    F.reboots = 0;
    /* with ignore_range every attempt starts at 0 and breaks at 4000: never completes */
    CHECK(post(body) == 202);
    aegis_ota_poll(&ota);
    CHECK(F.begins >= 2 && F.reboots == 0 && ota.last.phase == AEGIS_PHASE_FAILED);
    F.ignore_range = false;
    F.break_every = 0;

    /* Wrong chip: aborted after the header, failed report names it. */
    build_image("3.0.0", 5, 9000);
    trigger_for_img(body, sizeof body);
    F.gets = 0;
    CHECK(post(body) == 202);
    aegis_ota_poll(&ota);
    CHECK(ota.last.phase == AEGIS_PHASE_FAILED && strstr(ota.last.error, "wrong_chip") != NULL);
    CHECK(F.gets == 1);

    /* Hash mismatch: failed, never set as boot. */
    build_image("3.0.0", 9, 9000);
    trigger_for_img(body, sizeof body);
    IMG[IMG_LEN - 1] ^= 1; /* served bytes differ from the trigger's hash */
    F.set_boots = 0;
    CHECK(post(body) == 202);
    aegis_ota_poll(&ota);
    CHECK(ota.last.phase == AEGIS_PHASE_FAILED && F.set_boots == 0);
}

/* ------------------------------------------------------------------ TXT, JSON ----------- */

static void test_txt_and_json(void)
{
    aegis_txt_item_t items[12];
    char storage[24];
    uint8_t wire[1400];
    int n = aegis_txt_build(&ota, items, 12, storage, sizeof storage);
    CHECK(n >= 9);
    CHECK(strcmp(items[0].key, "id") == 0 && strcmp(items[1].key, "ver") == 0 && strcmp(items[2].key, "host") == 0 &&
          strcmp(items[3].key, "ip") == 0 && strcmp(items[4].key, "proto") == 0);
    bool has_sha = false;
    for (int i = 0; i < n; i++)
        if (strcmp(items[i].key, "sha") == 0) has_sha = strlen(items[i].value) == 16;
    CHECK(has_sha);
    int w = aegis_txt_encode(items, (size_t)n, wire, sizeof wire);
    CHECK(w > 0 && wire[0] == strlen("id=240ac4123456") && memcmp(wire + 1, "id=240ac4123456", 15) == 0);
    char big[300];
    memset(big, 'x', 299);
    big[299] = '\0';
    aegis_txt_item_t too_long = {"proj", big};
    CHECK(aegis_txt_encode(&too_long, 1, wire, sizeof wire) == -1);

    char s[64];
    aegis_sb_t sb;
    aegis_sb_init(&sb, s, sizeof s);
    aegis_sb_json_str(&sb, "a\"b\\c\n\x01\xff\xc3\xa9");
    CHECK(strcmp(s, "\"a\\\"b\\\\c\\u000a\\u0001\\ufffd\xc3\xa9\"") == 0);

    aegis_last_t l = {AEGIS_PHASE_FAILED, "d\xc3\xa9", "", "http://r", "It broke."}, back;
    char buf[1200];
    size_t len = aegis_last_encode(&l, buf, sizeof buf);
    CHECK(len > 0 && aegis_last_decode(&back, buf, len) && back.phase == AEGIS_PHASE_FAILED &&
          strcmp(back.deployment, l.deployment) == 0 && strcmp(back.error, "It broke.") == 0);

    char rep[600];
    CHECK(aegis_report_json(&ota, AEGIS_PHASE_DOWNLOADING, 10, 5, false, NULL, rep, sizeof rep) > 0);
    CHECK(strstr(rep, "\"bytes\":5,\"total\":5") && strstr(rep, "\"ver\":null") && strstr(rep, "\"error\":null"));
}

int main(void)
{
    test_vector();
    test_rejections();
    test_versions();
    test_images_and_hashing();
    test_device();
    test_txt_and_json();
    printf("%d checks, %d failed\n", checks, failures);
    return failures == 0 ? 0 : 1;
}

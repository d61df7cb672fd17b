/*
 * version.c — the version order of the anti-downgrade rule, exactly as
 * crates/aegis-protocol/src/version.rs (docs/protocol.md section 6): optional v/V, numeric
 * components (missing = 0), `+build` and `-dirty` ignored, a `git describe` suffix `-N-g<hex>`
 * after the tag, a SemVer pre-release before the release. Anything else is incomparable, and
 * an incomparable pair is never a downgrade. Works on slices of the input: no allocation.
 */
#include <string.h>

#include "aegis_internal.h"

typedef struct {
    const char *s;
    size_t n;
} span_t;

typedef struct {
    span_t core;
    span_t pre; /* n == 0: none */
    uint64_t distance;
} version_t;

static bool all_digits(span_t x)
{
    if (x.n == 0) return false;
    for (size_t i = 0; i < x.n; i++)
        if (x.s[i] < '0' || x.s[i] > '9') return false;
    return true;
}

static bool to_u64(span_t x, uint64_t *out)
{
    uint64_t v = 0;
    if (!all_digits(x)) return false;
    for (size_t i = 0; i < x.n; i++) {
        uint64_t d = (uint64_t)(x.s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
static bool is_alnum(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* Index of the last '-' in x, or -1. */
static long rfind_dash(span_t x)
{
    for (size_t i = x.n; i > 0; i--)
        if (x.s[i - 1] == '-') return (long)(i - 1);
    return -1;
}

/* Next '.'-separated part of x starting at *pos; false when x is exhausted. */
static bool next_part(span_t x, size_t *pos, bool *started, span_t *part)
{
    if (*started && *pos > x.n) return false;
    *started = true;
    size_t b = *pos, e = b;
    while (e < x.n && x.s[e] != '.') e++;
    part->s = x.s + b;
    part->n = e - b;
    *pos = e + 1;
    return true;
}

static bool parse(const char *str, version_t *v)
{
    span_t s = {str, strlen(str)};
    if (s.n > 0 && (s.s[0] == 'v' || s.s[0] == 'V')) {
        s.s++;
        s.n--;
    }
    for (size_t i = 0; i < s.n; i++) {
        if (s.s[i] == '+') {
            s.n = i;
            break;
        }
    }
    if (s.n >= 6 && memcmp(s.s + s.n - 6, "-dirty", 6) == 0) s.n -= 6;
    /* git describe: -N-g<hex> */
    v->distance = 0;
    long d1 = rfind_dash(s);
    if (d1 >= 0) {
        span_t hash = {s.s + d1 + 1, s.n - (size_t)d1 - 1};
        bool is_hash = hash.n >= 5 && hash.s[0] == 'g';
        for (size_t i = 1; is_hash && i < hash.n; i++) is_hash = is_hex(hash.s[i]);
        if (is_hash) {
            span_t rest = {s.s, (size_t)d1};
            long d2 = rfind_dash(rest);
            if (d2 >= 0) {
                span_t n = {rest.s + d2 + 1, rest.n - (size_t)d2 - 1};
                uint64_t dist;
                if (to_u64(n, &dist)) {
                    v->distance = dist;
                    s.n = (size_t)d2;
                }
            }
        }
    }
    /* core[-pre] split at the first '-' */
    v->core = s;
    v->pre.s = NULL;
    v->pre.n = 0;
    bool has_pre = false;
    for (size_t i = 0; i < s.n; i++) {
        if (s.s[i] == '-') {
            v->core.n = i;
            v->pre.s = s.s + i + 1;
            v->pre.n = s.n - i - 1;
            has_pre = true;
            break;
        }
    }
    size_t pos = 0;
    bool started = false;
    span_t part;
    while (next_part(v->core, &pos, &started, &part)) {
        uint64_t x;
        if (!to_u64(part, &x)) return false;
    }
    if (has_pre) {
        if (v->pre.n == 0) return false;
        pos = 0;
        started = false;
        while (next_part(v->pre, &pos, &started, &part)) {
            uint64_t x;
            if (all_digits(part)) {
                if (!to_u64(part, &x)) return false;
                continue;
            }
            if (part.n == 0) return false;
            for (size_t i = 0; i < part.n; i++)
                if (!is_alnum(part.s[i]) && part.s[i] != '-') return false;
        }
    }
    return true;
}

static int cmp_u64(uint64_t a, uint64_t b) { return a < b ? -1 : (a > b ? 1 : 0); }

static int cmp_ident(span_t a, span_t b)
{
    bool an = all_digits(a), bn = all_digits(b);
    if (an && bn) {
        uint64_t x = 0, y = 0;
        (void)to_u64(a, &x);
        (void)to_u64(b, &y);
        return cmp_u64(x, y);
    }
    if (an) return -1;
    if (bn) return 1;
    size_t m = a.n < b.n ? a.n : b.n;
    int c = memcmp(a.s, b.s, m);
    if (c != 0) return c < 0 ? -1 : 1;
    return cmp_u64(a.n, b.n);
}

static int cmp(const version_t *a, const version_t *b)
{
    size_t pa = 0, pb = 0;
    bool sa = false, sb = false;
    for (;;) {
        span_t x = {NULL, 0}, y = {NULL, 0};
        bool hx = next_part(a->core, &pa, &sa, &x), hy = next_part(b->core, &pb, &sb, &y);
        if (!hx && !hy) break;
        uint64_t u = 0, w = 0;
        if (hx) (void)to_u64(x, &u);
        if (hy) (void)to_u64(y, &w);
        int c = cmp_u64(u, w);
        if (c != 0) return c;
    }
    bool ea = a->pre.n == 0, eb = b->pre.n == 0;
    if (ea && !eb) return 1;
    if (!ea && eb) return -1;
    if (!ea && !eb) {
        pa = pb = 0;
        sa = sb = false;
        for (;;) {
            span_t x = {NULL, 0}, y = {NULL, 0};
            bool hx = next_part(a->pre, &pa, &sa, &x), hy = next_part(b->pre, &pb, &sb, &y);
            if (!hx && !hy) break;
            if (!hx) return -1;
            if (!hy) return 1;
            int c = cmp_ident(x, y);
            if (c != 0) return c;
        }
    }
    return cmp_u64(a->distance, b->distance);
}

bool aegis_version_compare(const char *a, const char *b, int *out)
{
    version_t va, vb;
    if (!parse(a, &va) || !parse(b, &vb)) return false;
    *out = cmp(&va, &vb);
    return true;
}

bool aegis_is_downgrade(const char *running, const char *offered)
{
    int c;
    return aegis_version_compare(offered, running, &c) && c < 0;
}

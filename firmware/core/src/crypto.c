/*
 * crypto.c — SHA-256 and ECDSA P-256 verification over mbedTLS (2.28 on Debian, 3.x in
 * ESP-IDF 5), and hex helpers.
 */
#include <string.h>

#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/version.h>

#include "aegis_internal.h"

#if MBEDTLS_VERSION_NUMBER < 0x03000000
#define SHA_STARTS(c) mbedtls_sha256_starts_ret((c), 0)
#define SHA_UPDATE(c, d, n) mbedtls_sha256_update_ret((c), (d), (n))
#define SHA_FINISH(c, o) mbedtls_sha256_finish_ret((c), (o))
#else
#define SHA_STARTS(c) mbedtls_sha256_starts((c), 0)
#define SHA_UPDATE(c, d, n) mbedtls_sha256_update((c), (d), (n))
#define SHA_FINISH(c, o) mbedtls_sha256_finish((c), (o))
#endif

void aegis_sha256_start(mbedtls_sha256_context *c)
{
    mbedtls_sha256_init(c);
    (void)SHA_STARTS(c);
}

void aegis_sha256_update(mbedtls_sha256_context *c, const void *data, size_t len)
{
    if (len > 0) (void)SHA_UPDATE(c, (const unsigned char *)data, len);
}

void aegis_sha256_finish(mbedtls_sha256_context *c, uint8_t out[32])
{
    (void)SHA_FINISH(c, out);
    mbedtls_sha256_free(c);
}

void aegis_sha256(const void *data, size_t len, uint8_t out[32])
{
    mbedtls_sha256_context c;
    aegis_sha256_start(&c);
    aegis_sha256_update(&c, data, len);
    aegis_sha256_finish(&c, out);
}

static bool load_key(mbedtls_ecp_group *grp, mbedtls_ecp_point *q, const uint8_t key[AEGIS_PUBKEY_LEN])
{
    if (key[0] != 0x04) return false;
    if (mbedtls_ecp_group_load(grp, MBEDTLS_ECP_DP_SECP256R1) != 0) return false;
    if (mbedtls_ecp_point_read_binary(grp, q, key, AEGIS_PUBKEY_LEN) != 0) return false;
    return mbedtls_ecp_check_pubkey(grp, q) == 0;
}

bool aegis_p256_key_valid(const uint8_t key[AEGIS_PUBKEY_LEN])
{
    mbedtls_ecp_group grp;
    mbedtls_ecp_point q;
    mbedtls_ecp_group_init(&grp);
    mbedtls_ecp_point_init(&q);
    bool ok = load_key(&grp, &q, key);
    mbedtls_ecp_point_free(&q);
    mbedtls_ecp_group_free(&grp);
    return ok;
}

bool aegis_ecdsa_p256_verify(const uint8_t key[AEGIS_PUBKEY_LEN], const uint8_t digest[32], const uint8_t sig[64])
{
    mbedtls_ecp_group grp;
    mbedtls_ecp_point q;
    mbedtls_mpi r, s;
    bool ok = false;
    mbedtls_ecp_group_init(&grp);
    mbedtls_ecp_point_init(&q);
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    if (load_key(&grp, &q, key) && mbedtls_mpi_read_binary(&r, sig, 32) == 0 &&
        mbedtls_mpi_read_binary(&s, sig + 32, 32) == 0) {
        /* Rejects r or s of 0 or >= n, and any signature that does not verify. */
        ok = mbedtls_ecdsa_verify(&grp, digest, 32, &q, &r, &s) == 0;
    }
    mbedtls_mpi_free(&s);
    mbedtls_mpi_free(&r);
    mbedtls_ecp_point_free(&q);
    mbedtls_ecp_group_free(&grp);
    return ok;
}

void aegis_hex(const uint8_t *bytes, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 0xF];
    }
    out[2 * len] = '\0';
}

static int lower_nibble(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

bool aegis_unhex(const char *hex, uint8_t *out, size_t len)
{
    if (strlen(hex) != 2 * len) return false;
    for (size_t i = 0; i < len; i++) {
        int hi = lower_nibble(hex[2 * i]), lo = lower_nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = (uint8_t)((hi << 4) | lo);
    }
    return true;
}

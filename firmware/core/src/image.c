/*
 * image.c — the checks a bootloader makes on an ESP app image, done on the stream as it is
 * downloaded: magic 0xE9, a sane segment table, the XOR checksum (seed 0xEF) in the last byte
 * of the 16-byte block after the last segment, and the appended SHA-256 of everything before
 * it when header byte 23 says so. Trailing bytes after that (a signature block) are ignored.
 */
#include <string.h>

#include "aegis_internal.h"

#define IMAGE_HEADER_LEN 24
#define SEGMENT_HEADER_LEN 8
#define MAX_SEGMENTS 16
#define CHECKSUM_SEED 0xEF

enum { ST_HEADER, ST_SEG_HEADER, ST_SEG_DATA, ST_PAD, ST_CHECKSUM, ST_DIGEST, ST_DONE, ST_ERROR };

void aegis_image_check_start(aegis_image_check_t *c)
{
    memset(c, 0, sizeof *c);
    c->stage = ST_HEADER;
    c->xor_acc = CHECKSUM_SEED;
    aegis_sha256_start(&c->sha);
}

void aegis_image_check_free(aegis_image_check_t *c) { mbedtls_sha256_free(&c->sha); }

static void fail(aegis_image_check_t *c, int err)
{
    c->error = err;
    c->stage = ST_ERROR;
}

static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

static void after_segments(aegis_image_check_t *c)
{
    uint32_t end = c->pos;
    c->checksum_at = end - (end % 16) + 15;
    c->stage = c->pos == c->checksum_at ? ST_CHECKSUM : ST_PAD;
}

bool aegis_image_check_feed(aegis_image_check_t *c, const uint8_t *data, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t take = 1;
        switch (c->stage) {
        case ST_HEADER:
        case ST_SEG_HEADER: {
            uint32_t want = c->stage == ST_HEADER ? IMAGE_HEADER_LEN : SEGMENT_HEADER_LEN;
            take = want - c->head_fill;
            if (take > len - i) take = len - i;
            memcpy(c->head + c->head_fill, data + i, take);
            c->head_fill += (uint32_t)take;
            if (c->head_fill < want) break;
            c->head_fill = 0;
            if (c->stage == ST_HEADER) {
                if (c->head[0] != 0xE9) {
                    fail(c, AEGIS_IMG_ERR_MAGIC);
                    return false;
                }
                c->segs_left = c->head[1];
                c->chip_id = (uint16_t)(c->head[12] | c->head[13] << 8);
                if (c->segs_left == 0 || c->segs_left > MAX_SEGMENTS || c->head[23] > 1) {
                    fail(c, AEGIS_IMG_ERR_HEADER);
                    return false;
                }
                c->hash_appended = c->head[23] == 1;
                c->stage = ST_SEG_HEADER;
            } else {
                c->seg_left = le32(c->head + 4);
                c->segs_left--;
                if (c->seg_left > 0x01000000) { /* 16 MiB: larger than any flash */
                    fail(c, AEGIS_IMG_ERR_HEADER);
                    return false;
                }
                if (c->seg_left > 0) c->stage = ST_SEG_DATA;
                else if (c->segs_left > 0) c->stage = ST_SEG_HEADER;
                else {
                    c->pos += (uint32_t)take;
                    aegis_sha256_update(&c->sha, data + i, take);
                    i += take;
                    after_segments(c);
                    continue;
                }
            }
            break;
        }
        case ST_SEG_DATA:
            take = c->seg_left;
            if (take > len - i) take = len - i;
            for (size_t k = 0; k < take; k++) c->xor_acc ^= data[i + k];
            c->seg_left -= (uint32_t)take;
            if (c->seg_left == 0) {
                if (c->segs_left > 0) c->stage = ST_SEG_HEADER;
                else {
                    c->pos += (uint32_t)take;
                    aegis_sha256_update(&c->sha, data + i, take);
                    i += take;
                    after_segments(c);
                    continue;
                }
            }
            break;
        case ST_PAD:
            take = c->checksum_at - c->pos;
            if (take > len - i) take = len - i;
            if (c->pos + take == c->checksum_at) c->stage = ST_CHECKSUM;
            break;
        case ST_CHECKSUM:
            take = 1;
            if (data[i] != c->xor_acc) {
                fail(c, AEGIS_IMG_ERR_CHECKSUM);
                return false;
            }
            c->stage = c->hash_appended ? ST_DIGEST : ST_DONE;
            break;
        case ST_DIGEST: {
            take = 32 - c->digest_fill;
            if (take > len - i) take = len - i;
            memcpy(c->digest + c->digest_fill, data + i, take);
            c->digest_fill += (uint32_t)take;
            c->pos += (uint32_t)take;
            i += take;
            if (c->digest_fill == 32) {
                uint8_t want[32];
                aegis_sha256_finish(&c->sha, want);
                aegis_sha256_start(&c->sha); /* keep the context valid for free() */
                if (memcmp(want, c->digest, 32) != 0) {
                    fail(c, AEGIS_IMG_ERR_DIGEST);
                    return false;
                }
                c->stage = ST_DONE;
            }
            continue;
        }
        case ST_DONE:
            c->pos += (uint32_t)(len - i);
            return true;
        default:
            return false;
        }
        aegis_sha256_update(&c->sha, data + i, take);
        c->pos += (uint32_t)take;
        i += take;
    }
    return c->stage != ST_ERROR;
}

bool aegis_image_check_have_header(const aegis_image_check_t *c) { return c->pos >= IMAGE_HEADER_LEN; }

bool aegis_image_check_done(const aegis_image_check_t *c) { return c->stage == ST_DONE; }

uint32_t aegis_image_check_length(const aegis_image_check_t *c)
{
    return c->checksum_at + 1 + (c->hash_appended ? 32u : 0u);
}

const char *aegis_image_error_text(int error)
{
    switch (error) {
    case AEGIS_IMG_ERR_NONE: return "the image is valid";
    case AEGIS_IMG_ERR_MAGIC: return "the image does not start with the ESP image magic byte 0xE9";
    case AEGIS_IMG_ERR_HEADER: return "the image header or segment table is invalid";
    case AEGIS_IMG_ERR_CHECKSUM: return "the image's segment checksum does not match";
    case AEGIS_IMG_ERR_DIGEST: return "the image's appended SHA-256 does not match its contents";
    case AEGIS_IMG_ERR_TRUNCATED: return "the image ends before its checksum and digest";
    default: return "the image is invalid";
    }
}

const char *aegis_chip_name(uint16_t id)
{
    switch (id) {
    case 0: return "esp32";
    case 2: return "esp32s2";
    case 5: return "esp32c3";
    case 9: return "esp32s3";
    case 12: return "esp32c2";
    case 13: return "esp32c6";
    case 16: return "esp32h2";
    case 18: return "esp32p4";
    case 20: return "esp32c61";
    case 23: return "esp32c5";
    case 25: return "esp32h21";
    case 28: return "esp32h4";
    case 31: return "esp32e22";
    case 32: return "esp32s31";
    default: return NULL;
    }
}

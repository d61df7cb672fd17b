/*
 * posix_port.h — the POSIX port's modules: file-backed flash (slots.c), a tiny HTTP/1.1
 * server and client (http.c), an mDNS responder (mdns.c). main.c wires them into an
 * aegis_port_t and runs the device.
 */
#ifndef POSIX_PORT_H
#define POSIX_PORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aegis_ota.h"

void plog(aegis_log_level_t level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
extern int plog_level;

/* ------------------------------------------------------------------ slots.c ------------- */

/** Opens (or creates from `factory_image`) the state directory and runs the bootloader step:
 *  NEW -> PENDING_VERIFY, PENDING_VERIFY (never confirmed) -> ABORTED and back to the
 *  previous slot. Returns 0 or -1 with a message printed. */
int slots_boot(const char *dir, const char *factory_image, uint32_t slot_size);
int slots_running(aegis_running_slot_t *out);
int slots_running_read(uint32_t offset, void *buf, size_t len);
uint32_t slots_update_size(void);
int slots_update_begin(uint32_t size);
int slots_update_write(uint32_t offset, const void *data, size_t len);
int slots_update_end(void);
void slots_update_abort(void);
int slots_set_boot(void);
int slots_mark_valid(void);
int slots_mark_invalid(void);
int slots_kv_get(const char *key, void *buf, size_t cap, size_t *len);
int slots_kv_set(const char *key, const void *value, size_t len);

/* ------------------------------------------------------------------ http.c -------------- */

/** Listens on ip:port; returns the socket or -1. */
int http_listen(const char *ip, uint16_t port);
/** Accepts and serves one connection through the core. */
void http_serve_one(int listen_fd, aegis_ota_t *ota);
/** Source address for outgoing connections (the device's own IP). */
void http_set_source(const char *ip);
int http_get(const char *url, uint64_t range_from, aegis_http_head_cb on_head, aegis_http_data_cb on_data,
             void *user);
int http_post_json(const char *url, const char *body, size_t len);

/* ------------------------------------------------------------------ mdns.c -------------- */

/** Opens the mDNS socket for the device at `ip`; returns the fd or -1. */
int mdns_open(const char *ip);
int mdns_announce(const aegis_announcement_t *a);
void mdns_goodbye(void);
/** Reads and answers one packet (the socket is readable). */
void mdns_on_readable(void);
/** Sends the repeated announcement when due; returns ms until the next call is useful. */
int mdns_tick(uint64_t now_ms);

uint64_t now_ms(void);

#endif

/*
 * main.c — aegis-device: the AegisOTA core as a Linux process acting as an ESP32. Runs the
 * bootloader step on the state directory, "crashes" (resets before confirming) when the
 * running image carries the simulator's crashes-at-boot marker, starts the core, serves the
 * control endpoint and mDNS on one network thread, and runs updates on the main thread. A
 * reboot re-executes the process; SIGINT/SIGTERM send the mDNS goodbye and exit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "aegis_internal.h"
#include "posix_port.h"

int plog_level = AEGIS_LOG_INFO;
static char **saved_argv;
static char hostname_s[64];
static pthread_mutex_t core_mu = PTHREAD_MUTEX_INITIALIZER;
static volatile sig_atomic_t stop_requested;
static aegis_ota_t ota;

void plog(aegis_log_level_t level, const char *fmt, ...)
{
    static const char *names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    char line[512];
    va_list ap;
    if ((int)level > plog_level) return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "aegis-device[%s] %s %s\n", hostname_s, names[level], line);
}

uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ------------------------------------------------------------------ the port table ------ */

static int p_running_slot(void *c, aegis_running_slot_t *o) { (void)c; return slots_running(o); }
static int p_running_read(void *c, uint32_t off, void *b, size_t n) { (void)c; return slots_running_read(off, b, n); }
static uint32_t p_update_slot_size(void *c) { (void)c; return slots_update_size(); }
static int p_update_begin(void *c, uint32_t s) { (void)c; return slots_update_begin(s); }
static int p_update_write(void *c, uint32_t off, const void *d, size_t n) { (void)c; return slots_update_write(off, d, n); }
static int p_update_end(void *c) { (void)c; return slots_update_end(); }
static void p_update_abort(void *c) { (void)c; slots_update_abort(); }
static int p_set_boot(void *c) { (void)c; return slots_set_boot(); }
static int p_mark_valid(void *c) { (void)c; return slots_mark_valid(); }

static void reexec(void)
{
    plog(AEGIS_LOG_INFO, "rebooting");
    fflush(NULL);
    execv("/proc/self/exe", saved_argv);
    plog(AEGIS_LOG_ERROR, "re-exec failed: %s", strerror(errno));
    _exit(70);
}

static int p_rollback_and_reboot(void *c)
{
    (void)c;
    if (slots_mark_invalid() != 0) return AEGIS_PORT_ERR;
    reexec();
    return AEGIS_PORT_ERR;
}

static void p_reboot(void *c) { (void)c; reexec(); }

static int p_http_get(void *c, const char *url, uint64_t from, aegis_http_head_cb h, aegis_http_data_cb d, void *u)
{
    (void)c;
    return http_get(url, from, h, d, u);
}

static int p_http_post(void *c, const char *url, const char *body, size_t len)
{
    (void)c;
    return http_post_json(url, body, len);
}

static int p_announce(void *c, const aegis_announcement_t *a) { (void)c; return mdns_announce(a); }
static void p_goodbye(void *c) { (void)c; mdns_goodbye(); }
static int p_kv_get(void *c, const char *k, void *b, size_t cap, size_t *len) { (void)c; return slots_kv_get(k, b, cap, len); }
static int p_kv_set(void *c, const char *k, const void *v, size_t len) { (void)c; return slots_kv_set(k, v, len); }

static void p_random(void *c, void *buf, size_t len)
{
    (void)c;
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) abort(); /* no randomness: a nonce would be predictable */
        p += n;
        len -= (size_t)n;
    }
}

static uint64_t p_millis(void *c) { (void)c; return now_ms(); }

static void p_delay(void *c, uint32_t ms)
{
    (void)c;
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void p_log(void *c, aegis_log_level_t level, const char *line) { (void)c; plog(level, "%s", line); }
static void p_lock(void *c) { (void)c; pthread_mutex_lock(&core_mu); }
static void p_unlock(void *c) { (void)c; pthread_mutex_unlock(&core_mu); }

static const aegis_port_t PORT = {
    .ctx = NULL,
    .running_slot = p_running_slot,
    .running_read = p_running_read,
    .update_slot_size = p_update_slot_size,
    .update_begin = p_update_begin,
    .update_write = p_update_write,
    .update_end = p_update_end,
    .update_abort = p_update_abort,
    .set_boot = p_set_boot,
    .mark_valid = p_mark_valid,
    .rollback_and_reboot = p_rollback_and_reboot,
    .reboot = p_reboot,
    .http_get = p_http_get,
    .http_post_json = p_http_post,
    .mdns_announce = p_announce,
    .mdns_goodbye = p_goodbye,
    .kv_get = p_kv_get,
    .kv_set = p_kv_set,
    .random = p_random,
    .millis = p_millis,
    .delay_ms = p_delay,
    .log = p_log,
    .lock = p_lock,
    .unlock = p_unlock,
};

/* ------------------------------------------------------------------ the network thread -- */

static int listen_fd = -1, mdns_fd = -1;

static void *network_thread(void *arg)
{
    (void)arg;
    for (;;) {
        struct pollfd p[2] = {{listen_fd, POLLIN, 0}, {mdns_fd, POLLIN, 0}};
        int wait = mdns_tick(now_ms());
        int r = poll(p, 2, wait > 0 ? wait : 1);
        if (r < 0 && errno != EINTR) break;
        if (r <= 0) continue;
        if (p[0].revents & POLLIN) http_serve_one(listen_fd, &ota);
        if (p[1].revents & POLLIN) mdns_on_readable();
    }
    return NULL;
}

/* ------------------------------------------------------------------ the app ------------- */

/* The simulator's behaviour marker, right after the app descriptor (aegis-image's sim.rs). */
static void image_behavior(char *out, size_t cap)
{
    static const char prefix[] = "AEGIS-SIM-BEHAVIOR=";
    uint8_t buf[0x20 + 256 + 1024 + 64];
    out[0] = '\0';
    if (slots_running_read(0, buf, sizeof buf) != 0) return;
    for (size_t i = 0x20; i + sizeof prefix < sizeof buf; i++) {
        if (memcmp(buf + i, prefix, sizeof prefix - 1) == 0) {
            size_t j = i + sizeof prefix - 1, n = 0;
            while (j < sizeof buf && buf[j] != 0 && n + 1 < cap) out[n++] = (char)buf[j++];
            out[n] = '\0';
            return;
        }
    }
}

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: aegis-device --state-dir DIR --ip ADDR --port N --hostname NAME [options]\n"
            "\n"
            "A Linux process acting as an ESP32 running the AegisOTA device library (the portable C core\n"
            "with the POSIX port): it announces _aegis-ota._tcp.local. by mDNS, answers GET /aegis/v1/info\n"
            "and POST /aegis/v1/ota on ADDR:N, pulls, verifies and \"flashes\" images into file-backed OTA\n"
            "slots, reboots (re-executes itself) into them, confirms them or rolls back.\n"
            "\n"
            "  --state-dir DIR       flash, otadata and key-value store of this device (created if absent)\n"
            "  --ip ADDR             the device's IPv4 address: control endpoint, mDNS interface, source\n"
            "                        address of its downloads and reports (e.g. 127.0.2.1)\n"
            "  --port N              control endpoint port (the SRV port)\n"
            "  --hostname NAME       mDNS instance and host name (1-63 letters, digits, '-')\n"
            "  --factory-image FILE  the ESP app image the device runs first (copied into the factory slot\n"
            "                        when DIR holds no device yet; ignored afterwards). Version, project\n"
            "                        and chip come from its header and esp_app_desc_t\n"
            "  --trusted-key HEX     the server's P-256 public key, 130 hex digits (65-byte SEC1,\n"
            "                        `aegis keys export`); without it the device accepts unsigned triggers\n"
            "  --id HEX12            device id (default: derived from the hostname)\n"
            "  --slot-size BYTES     size of each OTA slot (default 1572864)\n"
            "  --confirm-after-ms N  confirm a newly booted image N ms after start (default 0 = at once,\n"
            "                        after start-up succeeded). Images built with the simulator's\n"
            "                        crashes-at-boot marker crash (reset) first; never-confirms never do\n"
            "  --retries N           how often a broken download is resumed with Range (default 5)\n"
            "  --verbose             debug logging\n"
            "  --help                this text\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"state-dir", required_argument, 0, 's'}, {"ip", required_argument, 0, 'i'},
        {"port", required_argument, 0, 'p'},      {"hostname", required_argument, 0, 'n'},
        {"factory-image", required_argument, 0, 'f'}, {"trusted-key", required_argument, 0, 'k'},
        {"id", required_argument, 0, 'd'},        {"slot-size", required_argument, 0, 'z'},
        {"confirm-after-ms", required_argument, 0, 'c'}, {"retries", required_argument, 0, 'r'},
        {"verbose", no_argument, 0, 'v'},         {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *dir = NULL, *ip = NULL, *host = NULL, *factory = NULL, *key_hex = NULL, *id = NULL;
    long port = -1;
    unsigned long slot_size = 1572864, confirm_after = 0, retries = 5;
    uint8_t key[AEGIS_PUBKEY_LEN];
    char id_buf[13];
    int c;
    saved_argv = argv;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's': dir = optarg; break;
        case 'i': ip = optarg; break;
        case 'p': port = strtol(optarg, NULL, 10); break;
        case 'n': host = optarg; break;
        case 'f': factory = optarg; break;
        case 'k': key_hex = optarg; break;
        case 'd': id = optarg; break;
        case 'z': slot_size = strtoul(optarg, NULL, 10); break;
        case 'c': confirm_after = strtoul(optarg, NULL, 10); break;
        case 'r': retries = strtoul(optarg, NULL, 10); break;
        case 'v': plog_level = AEGIS_LOG_DEBUG; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!dir || !ip || !host || port <= 0 || port > 65535) {
        fprintf(stderr, "aegis-device: --state-dir, --ip, --port and --hostname are required (see --help)\n");
        return 2;
    }
    snprintf(hostname_s, sizeof hostname_s, "%s", host);
    if (key_hex && !aegis_unhex(key_hex, key, sizeof key)) {
        fprintf(stderr, "aegis-device: --trusted-key must be 130 lower-case hex digits (65-byte SEC1 key)\n");
        return 2;
    }
    if (!id) {
        uint8_t h[32];
        aegis_sha256(host, strlen(host), h);
        aegis_hex(h, 6, id_buf);
        id = id_buf;
    }
    if (slots_boot(dir, factory, (uint32_t)slot_size) != 0) return 1;

    aegis_running_slot_t running;
    char behavior[64];
    slots_running(&running);
    image_behavior(behavior, sizeof behavior);
    if (running.state == AEGIS_IMG_PENDING_VERIFY && strcmp(behavior, "crashes-at-boot") == 0) {
        plog(AEGIS_LOG_WARN, "the new image crashes at boot (simulated); resetting before it confirms");
        reexec();
    }

    http_set_source(ip);
    listen_fd = http_listen(ip, (uint16_t)port);
    if (listen_fd < 0) {
        fprintf(stderr, "aegis-device: cannot listen on %s:%ld: %s\n", ip, port, strerror(errno));
        return 1;
    }
    mdns_fd = mdns_open(ip);
    if (mdns_fd < 0) return 1;

    aegis_config_t cfg = AEGIS_CONFIG_DEFAULT;
    cfg.id = id;
    cfg.hostname = host;
    cfg.ip = ip;
    cfg.port = (uint16_t)port;
    cfg.trusted_key = key_hex ? key : NULL;
    cfg.confirm_after_ms = (uint32_t)confirm_after;
    cfg.download_retries = (uint32_t)retries;
    if (aegis_ota_init(&ota, &cfg, &PORT) != 0) return 1;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old); /* the network thread inherits the block */
    pthread_t net;
    pthread_create(&net, NULL, network_thread, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    if (aegis_ota_state(&ota) == AEGIS_STATE_PENDING_VERIFY && confirm_after == 0) {
        if (strcmp(behavior, "never-confirms") == 0)
            plog(AEGIS_LOG_WARN, "the new image never confirms itself (simulated)");
        else
            aegis_ota_confirm(&ota);
    }
    while (!stop_requested) {
        aegis_ota_poll(&ota);
        p_delay(NULL, 50);
    }
    aegis_ota_stop(&ota);
    plog(AEGIS_LOG_INFO, "stopped");
    return 0;
}

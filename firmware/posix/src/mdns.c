/*
 * mdns.c — a small mDNS responder (RFC 6762/6763) for one device: it announces
 * `<host>._aegis-ota._tcp.local.` with PTR, SRV, TXT and A records on 224.0.0.251:5353 (twice,
 * a second apart, and again after every change), answers queries for those names, and sends
 * the same records with TTL 0 as a goodbye. Multicast leaves through the device's own address
 * (IP_MULTICAST_IF), so a device on 127.0.2.x stays on loopback.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "aegis_internal.h"
#include "posix_port.h"

#define MDNS_PORT 5353
#define TYPE_A 1
#define TYPE_PTR 12
#define TYPE_TXT 16
#define TYPE_SRV 33
#define TYPE_ANY 255
#define CLASS_IN 1
#define CACHE_FLUSH 0x8000
#define TTL_HOST 120
#define TTL_OTHER 4500

static struct {
    pthread_mutex_t mu;
    int fd;
    struct in_addr ifaddr;
    bool active;
    char instance[AEGIS_HOSTNAME_MAX + 1];
    char host[AEGIS_HOSTNAME_MAX + 1];
    struct in_addr ip;
    uint16_t port;
    uint8_t txt[AEGIS_MAX_TXT_TOTAL];
    size_t txt_len;
    int repeats_left;
    uint64_t next_announce;
} M = {.mu = PTHREAD_MUTEX_INITIALIZER, .fd = -1};

static const char SERVICE[] = "_aegis-ota._tcp.local";
static const char SERVICES_META[] = "_services._dns-sd._udp.local";

int mdns_open(const char *ip)
{
    int one = 1;
    unsigned char ttl = 255, loop = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(MDNS_PORT), .sin_addr = {htonl(INADDR_ANY)}};
    struct ip_mreq mreq;
    if (inet_pton(AF_INET, ip, &M.ifaddr) != 1) return -1;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    inet_pton(AF_INET, "224.0.0.251", &mreq.imr_multiaddr);
    mreq.imr_interface = M.ifaddr;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mreq, sizeof mreq) != 0 ||
        setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &M.ifaddr, sizeof M.ifaddr) != 0) {
        plog(AEGIS_LOG_ERROR, "mdns: cannot open 224.0.0.251:5353 on %s: %s", ip, strerror(errno));
        close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof ttl);
    setsockopt(fd, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof loop);
    M.fd = fd;
    return fd;
}

/* ------------------------------------------------------------------ packet writing ------ */

typedef struct {
    uint8_t b[1500];
    size_t n;
    bool overflow;
} pkt_t;

static void put(pkt_t *p, const void *d, size_t n)
{
    if (p->n + n > sizeof p->b) {
        p->overflow = true;
        return;
    }
    memcpy(p->b + p->n, d, n);
    p->n += n;
}

static void put16(pkt_t *p, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    put(p, b, 2);
}

static void put32(pkt_t *p, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(p, b, 4);
}

/* Writes `first` as one label (may be NULL) then the dotted `rest`. */
static void put_name(pkt_t *p, const char *first, const char *rest)
{
    if (first) {
        uint8_t l = (uint8_t)strlen(first);
        put(p, &l, 1);
        put(p, first, l);
    }
    while (*rest) {
        size_t l = strcspn(rest, ".");
        uint8_t lb = (uint8_t)l;
        put(p, &lb, 1);
        put(p, rest, l);
        rest += l;
        if (*rest == '.') rest++;
    }
    uint8_t z = 0;
    put(p, &z, 1);
}

static void rr_head(pkt_t *p, const char *first, const char *rest, uint16_t type, uint16_t cls, uint32_t ttl)
{
    put_name(p, first, rest);
    put16(p, type);
    put16(p, cls);
    put32(p, ttl);
}

/* Reserves the RDLENGTH field; returns its offset. */
static size_t rd_begin(pkt_t *p)
{
    size_t at = p->n;
    put16(p, 0);
    return at;
}

static void rd_end(pkt_t *p, size_t at)
{
    if (p->overflow) return;
    uint16_t len = (uint16_t)(p->n - at - 2);
    p->b[at] = (uint8_t)(len >> 8);
    p->b[at + 1] = (uint8_t)len;
}

enum { R_PTR = 1, R_SRV = 2, R_TXT = 4, R_A = 8, R_META = 16 };

static void put_records(pkt_t *p, int which, bool goodbye)
{
    uint32_t ttl_o = goodbye ? 0 : TTL_OTHER, ttl_h = goodbye ? 0 : TTL_HOST;
    uint16_t flush = goodbye ? 0 : CACHE_FLUSH;
    size_t at;
    char inst_rest[64];
    snprintf(inst_rest, sizeof inst_rest, "%s", SERVICE);
    if (which & R_META) {
        rr_head(p, NULL, SERVICES_META, TYPE_PTR, CLASS_IN, ttl_o);
        at = rd_begin(p);
        put_name(p, NULL, SERVICE);
        rd_end(p, at);
    }
    if (which & R_PTR) {
        rr_head(p, NULL, SERVICE, TYPE_PTR, CLASS_IN, ttl_o);
        at = rd_begin(p);
        put_name(p, M.instance, inst_rest);
        rd_end(p, at);
    }
    if (which & R_SRV) {
        rr_head(p, M.instance, inst_rest, TYPE_SRV, CLASS_IN | flush, ttl_h);
        at = rd_begin(p);
        put16(p, 0);
        put16(p, 0);
        put16(p, M.port);
        put_name(p, M.host, "local");
        rd_end(p, at);
    }
    if (which & R_TXT) {
        rr_head(p, M.instance, inst_rest, TYPE_TXT, CLASS_IN | flush, ttl_o);
        at = rd_begin(p);
        if (M.txt_len == 0) put(p, "", 1);
        else put(p, M.txt, M.txt_len);
        rd_end(p, at);
    }
    if (which & R_A) {
        rr_head(p, M.host, "local", TYPE_A, CLASS_IN | flush, ttl_h);
        at = rd_begin(p);
        put(p, &M.ip.s_addr, 4);
        rd_end(p, at);
    }
}

static int count(int which)
{
    int n = 0;
    for (int b = 1; b <= R_META; b <<= 1)
        if (which & b) n++;
    return n;
}

static void send_records(int answers, int additionals, bool goodbye)
{
    pkt_t p = {.n = 0};
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(MDNS_PORT)};
    inet_pton(AF_INET, "224.0.0.251", &to.sin_addr);
    put16(&p, 0);      /* id */
    put16(&p, 0x8400); /* response, authoritative */
    put16(&p, 0);
    put16(&p, (uint16_t)count(answers));
    put16(&p, 0);
    put16(&p, (uint16_t)count(additionals));
    put_records(&p, answers, goodbye);
    put_records(&p, additionals, goodbye);
    if (p.overflow || M.fd < 0) return;
    if (sendto(M.fd, p.b, p.n, 0, (struct sockaddr *)&to, sizeof to) < 0)
        plog(AEGIS_LOG_DEBUG, "mdns: send failed: %s", strerror(errno));
}

/* ------------------------------------------------------------------ the API ------------- */

int mdns_announce(const aegis_announcement_t *a)
{
    pthread_mutex_lock(&M.mu);
    snprintf(M.instance, sizeof M.instance, "%s", a->instance);
    snprintf(M.host, sizeof M.host, "%s", a->hostname);
    inet_pton(AF_INET, a->ip, &M.ip);
    M.port = a->port;
    int n = aegis_txt_encode(a->txt, a->txt_count, M.txt, sizeof M.txt);
    M.txt_len = n > 0 ? (size_t)n : 0;
    M.active = true;
    send_records(R_PTR | R_SRV | R_TXT | R_A, 0, false);
    M.repeats_left = 2;
    M.next_announce = now_ms() + 1000;
    pthread_mutex_unlock(&M.mu);
    return n < 0 ? AEGIS_PORT_ERR : AEGIS_PORT_OK;
}

void mdns_goodbye(void)
{
    pthread_mutex_lock(&M.mu);
    if (M.active) {
        send_records(R_PTR | R_SRV | R_TXT | R_A, 0, true);
        M.active = false;
    }
    M.repeats_left = 0;
    pthread_mutex_unlock(&M.mu);
}

int mdns_tick(uint64_t now)
{
    int wait = 1000;
    pthread_mutex_lock(&M.mu);
    if (M.active && M.repeats_left > 0) {
        if (now >= M.next_announce) {
            send_records(R_PTR | R_SRV | R_TXT | R_A, 0, false);
            M.repeats_left--;
            M.next_announce = now + 2000;
        }
        wait = (int)(M.next_announce > now ? M.next_announce - now : 0);
    }
    pthread_mutex_unlock(&M.mu);
    return wait;
}

/* Reads a (possibly compressed) name at *off into out as lower-case dotted text. */
static bool read_name(const uint8_t *b, size_t n, size_t *off, char *out, size_t cap)
{
    size_t o = *off, len = 0;
    bool jumped = false;
    int hops = 0;
    for (;;) {
        if (o >= n) return false;
        uint8_t l = b[o];
        if ((l & 0xC0) == 0xC0) {
            if (o + 1 >= n || ++hops > 16) return false;
            if (!jumped) *off = o + 2;
            jumped = true;
            o = (size_t)((l & 0x3F) << 8 | b[o + 1]);
            continue;
        }
        if (l == 0) {
            if (!jumped) *off = o + 1;
            break;
        }
        if (o + 1 + l > n || len + l + 2 > cap) return false;
        if (len > 0) out[len++] = '.';
        for (size_t i = 0; i < l; i++) {
            char c = (char)b[o + 1 + i];
            out[len++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
        }
        o += 1 + l;
    }
    out[len] = '\0';
    return true;
}

void mdns_on_readable(void)
{
    uint8_t b[1500];
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    ssize_t n = recvfrom(M.fd, b, sizeof b, 0, (struct sockaddr *)&from, &fl);
    if (n < 12) return;
    if (b[2] & 0x80) return; /* a response, not a query */
    uint16_t qd = (uint16_t)(b[4] << 8 | b[5]);
    size_t off = 12;
    int answers = 0;
    char name[300], inst[300], host[128];
    pthread_mutex_lock(&M.mu);
    if (!M.active) {
        pthread_mutex_unlock(&M.mu);
        return;
    }
    snprintf(inst, sizeof inst, "%s.%s", M.instance, SERVICE);
    snprintf(host, sizeof host, "%s.local", M.host);
    for (size_t i = 0; i < strlen(inst); i++)
        if (inst[i] >= 'A' && inst[i] <= 'Z') inst[i] = (char)(inst[i] - 'A' + 'a');
    for (size_t i = 0; i < strlen(host); i++)
        if (host[i] >= 'A' && host[i] <= 'Z') host[i] = (char)(host[i] - 'A' + 'a');
    for (uint16_t q = 0; q < qd; q++) {
        if (!read_name(b, (size_t)n, &off, name, sizeof name) || off + 4 > (size_t)n) break;
        uint16_t type = (uint16_t)(b[off] << 8 | b[off + 1]);
        off += 4;
        bool any = type == TYPE_ANY;
        if (strcmp(name, SERVICE) == 0 && (type == TYPE_PTR || any)) answers |= R_PTR;
        else if (strcmp(name, SERVICES_META) == 0 && (type == TYPE_PTR || any)) answers |= R_META;
        else if (strcmp(name, inst) == 0) {
            if (type == TYPE_SRV || any) answers |= R_SRV;
            if (type == TYPE_TXT || any) answers |= R_TXT;
        } else if (strcmp(name, host) == 0 && (type == TYPE_A || any)) {
            answers |= R_A;
        }
    }
    if (answers) {
        int extra = 0;
        if (answers & R_PTR) extra |= R_SRV | R_TXT | R_A;
        if (answers & R_SRV) extra |= R_A;
        extra &= ~answers;
        send_records(answers, extra, false);
    }
    pthread_mutex_unlock(&M.mu);
}

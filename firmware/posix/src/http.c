/*
 * http.c — a tiny blocking HTTP/1.1 server (one request per connection, Content-Length
 * bodies) for the control endpoint, and a client for GET (with Range) and POST. Outgoing
 * connections are bound to the device's own IP, so the server sees each device at its address.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "posix_port.h"

#define HEAD_MAX 8192
#define IO_TIMEOUT_MS 10000

static char source_ip[16];

void http_set_source(const char *ip) { snprintf(source_ip, sizeof source_ip, "%s", ip); }

/* Waits until fd is readable/writable; false on timeout or error. */
static bool wait_fd(int fd, short events, int timeout_ms)
{
    struct pollfd p = {fd, events, 0};
    for (;;) {
        int r = poll(&p, 1, timeout_ms);
        if (r < 0 && errno == EINTR) continue;
        return r > 0;
    }
}

static ssize_t read_some(int fd, void *buf, size_t cap, int timeout_ms)
{
    if (!wait_fd(fd, POLLIN, timeout_ms)) return -2;
    for (;;) {
        ssize_t n = recv(fd, buf, cap, 0);
        if (n < 0 && errno == EINTR) continue;
        return n;
    }
}

static bool write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        if (!wait_fd(fd, POLLOUT, IO_TIMEOUT_MS)) return false;
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* Reads until the end of the head; returns its length (incl. CRLFCRLF), *have = bytes read. */
static int read_head(int fd, char *buf, size_t cap, size_t *have, int timeout_ms)
{
    *have = 0;
    while (*have < cap - 1) {
        ssize_t n = read_some(fd, buf + *have, cap - 1 - *have, timeout_ms);
        if (n <= 0) return -1;
        *have += (size_t)n;
        buf[*have] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end) return (int)(end - buf) + 4;
    }
    return -1;
}

/* Finds header `name` in head (case-insensitive); copies its value. */
static bool header_value(const char *head, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = strstr(head, "\r\n");
    while (p && p[2] != '\r') {
        p += 2;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ' || *v == '\t') v++;
            size_t n = strcspn(v, "\r\n");
            while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
            if (n >= cap) n = cap - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return true;
        }
        p = strstr(p, "\r\n");
    }
    return false;
}

/* ------------------------------------------------------------------ server -------------- */

int http_listen(const char *ip, uint16_t port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    int one = 1;
    if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 16) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    default: return "Error";
    }
}

static void send_response(int fd, int status, const char *body, size_t len)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     status, reason(status), len);
    if (write_all(fd, head, (size_t)n)) write_all(fd, body, len);
}

void http_serve_one(int listen_fd, aegis_ota_t *ota)
{
    static char buf[HEAD_MAX + AEGIS_MAX_TRIGGER_BODY + 1];
    char method[16], path[512], value[32];
    size_t have;
    aegis_response_t resp;
    int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) return;
    int head_len = read_head(fd, buf, HEAD_MAX, &have, 5000);
    if (head_len < 0 || sscanf(buf, "%15s %511s", method, path) != 2) {
        close(fd);
        return;
    }
    size_t content_length = 0;
    if (header_value(buf, "Content-Length", value, sizeof value)) content_length = strtoul(value, NULL, 10);
    if (header_value(buf, "Transfer-Encoding", value, sizeof value)) {
        const char *msg = "{\"error\":{\"code\":\"malformed_json\",\"message\":\"Send the body with Content-Length.\"}}";
        send_response(fd, 400, msg, strlen(msg));
        close(fd);
        return;
    }
    const uint8_t *body = (const uint8_t *)buf + head_len;
    if (content_length > AEGIS_MAX_TRIGGER_BODY) {
        body = NULL; /* the core answers 400 body_too_large without reading it */
    } else {
        size_t got = have - (size_t)head_len;
        while (got < content_length) {
            ssize_t n = read_some(fd, buf + have, content_length - got, 5000);
            if (n <= 0) {
                close(fd);
                return;
            }
            have += (size_t)n;
            got += (size_t)n;
        }
    }
    aegis_ota_handle_request(ota, method, path, body, content_length, &resp);
    send_response(fd, resp.status, resp.body, resp.body_len);
    shutdown(fd, SHUT_WR);
    close(fd);
}

/* ------------------------------------------------------------------ client -------------- */

typedef struct {
    char host[256];
    char port[8];
    const char *path;
} url_t;

static bool parse_url(const char *url, url_t *u)
{
    if (strncmp(url, "http://", 7) != 0) return false; /* no TLS in the POSIX port */
    const char *h = url + 7, *slash = strchr(h, '/');
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    u->path = slash ? slash : "/";
    const char *colon = memchr(h, ':', hl);
    size_t name = colon ? (size_t)(colon - h) : hl;
    if (name == 0 || name >= sizeof u->host) return false;
    memcpy(u->host, h, name);
    u->host[name] = '\0';
    if (colon) {
        size_t pl = hl - name - 1;
        if (pl == 0 || pl >= sizeof u->port) return false;
        memcpy(u->port, colon + 1, pl);
        u->port[pl] = '\0';
    } else {
        strcpy(u->port, "80");
    }
    return true;
}

static int connect_to(const url_t *u, int timeout_ms)
{
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(u->host, u->port, &hints, &res) != 0 || res == NULL) return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd >= 0 && source_ip[0]) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        inet_pton(AF_INET, source_ip, &src.sin_addr);
        bind(fd, (struct sockaddr *)&src, sizeof src);
    }
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) != 0 && errno != EINPROGRESS) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) return -1;
    int err = 0;
    socklen_t el = sizeof err;
    if (!wait_fd(fd, POLLOUT, timeout_ms) || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int http_get(const char *url, uint64_t range_from, aegis_http_head_cb on_head, aegis_http_data_cb on_data, void *user)
{
    static char buf[HEAD_MAX];
    url_t u;
    char req[1024 + 4096], value[32];
    size_t have;
    if (!parse_url(url, &u)) return AEGIS_PORT_ERR;
    int fd = connect_to(&u, IO_TIMEOUT_MS);
    if (fd < 0) return AEGIS_PORT_ERR;
    int n = range_from > 0
                ? snprintf(req, sizeof req,
                           "GET %s HTTP/1.1\r\nHost: %s:%s\r\nRange: bytes=%llu-\r\nUser-Agent: aegis-device\r\n"
                           "Connection: close\r\n\r\n",
                           u.path, u.host, u.port, (unsigned long long)range_from)
                : snprintf(req, sizeof req,
                           "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: aegis-device\r\nConnection: close\r\n\r\n",
                           u.path, u.host, u.port);
    if (n < 0 || (size_t)n >= sizeof req || !write_all(fd, req, (size_t)n)) {
        close(fd);
        return AEGIS_PORT_ERR;
    }
    int head_len = read_head(fd, buf, sizeof buf, &have, IO_TIMEOUT_MS);
    int status = 0;
    if (head_len < 0 || sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
        close(fd);
        return AEGIS_PORT_ERR;
    }
    int64_t content_length = -1;
    if (header_value(buf, "Content-Length", value, sizeof value)) content_length = strtoll(value, NULL, 10);
    if (header_value(buf, "Transfer-Encoding", value, sizeof value) && strcasecmp(value, "identity") != 0) {
        close(fd); /* the protocol forbids chunked image downloads */
        return AEGIS_PORT_ERR;
    }
    if (on_head(user, status, content_length) != AEGIS_PORT_OK) {
        close(fd);
        return AEGIS_PORT_ABORT;
    }
    int64_t got = 0;
    size_t first = have - (size_t)head_len;
    if (first > 0) {
        if (content_length >= 0 && (int64_t)first > content_length) first = (size_t)content_length;
        got = (int64_t)first;
        if (on_data(user, (const uint8_t *)buf + head_len, first) != AEGIS_PORT_OK) {
            close(fd);
            return AEGIS_PORT_ABORT;
        }
    }
    while (content_length < 0 || got < content_length) {
        size_t want = sizeof buf;
        if (content_length >= 0 && (int64_t)want > content_length - got) want = (size_t)(content_length - got);
        ssize_t r = read_some(fd, buf, want, IO_TIMEOUT_MS);
        if (r == 0 && content_length < 0) break; /* clean end without Content-Length */
        if (r <= 0) {
            close(fd);
            return AEGIS_PORT_ERR; /* broken: the core resumes with Range */
        }
        got += r;
        if (on_data(user, (const uint8_t *)buf, (size_t)r) != AEGIS_PORT_OK) {
            close(fd);
            return AEGIS_PORT_ABORT;
        }
    }
    close(fd);
    return AEGIS_PORT_OK;
}

int http_post_json(const char *url, const char *body, size_t len)
{
    char req[1024 + 4096], buf[1024];
    url_t u;
    size_t have;
    int status = 0;
    if (!parse_url(url, &u)) return AEGIS_PORT_ERR;
    int fd = connect_to(&u, 3000);
    if (fd < 0) return AEGIS_PORT_ERR;
    int n = snprintf(req, sizeof req,
                     "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "User-Agent: aegis-device\r\nConnection: close\r\n\r\n",
                     u.path, u.host, u.port, len);
    if (n > 0 && (size_t)n < sizeof req && write_all(fd, req, (size_t)n) && write_all(fd, body, len) &&
        read_head(fd, buf, sizeof buf, &have, 3000) > 0)
        sscanf(buf, "HTTP/1.%*d %d", &status);
    close(fd);
    return status > 0 ? status : AEGIS_PORT_ERR;
}

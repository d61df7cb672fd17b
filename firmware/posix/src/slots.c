/*
 * slots.c — flash as files in the state directory, and the bootloader step.
 *
 *   DIR/factory.bin, DIR/ota_0.bin, DIR/ota_1.bin   image files (length = image length)
 *   DIR/otadata                                      "boot=<label>\nprev=<label>\n
 *                                                     ota_0=<state>\nota_1=<state>\n"
 *   DIR/nvs/<key>                                    the key-value store
 *
 * Slot order as ESP-IDF's esp_ota_get_next_update_partition: factory -> ota_0 -> ota_1 ->
 * ota_0. Every file is replaced by write-to-temp + fsync + rename, so a kill at any moment
 * leaves either the old or the new content.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "posix_port.h"

static const char *STATE_NAMES[] = {"valid", "pending_verify", "new", "aborted", "undefined"};

static struct {
    char dir[512];
    uint32_t slot_size;
    char boot[AEGIS_LABEL_MAX + 1];
    char prev[AEGIS_LABEL_MAX + 1];
    aegis_img_state_t ota[2];
    int running_fd;
    uint32_t running_size;
    int update_fd;
    char update_label[8];
    bool update_done;
} S = {.running_fd = -1, .update_fd = -1};

static void path_of(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", S.dir, name); }

static int ota_index(const char *label)
{
    if (strcmp(label, "ota_0") == 0) return 0;
    if (strcmp(label, "ota_1") == 0) return 1;
    return -1;
}

static aegis_img_state_t state_from(const char *s)
{
    for (int i = 0; i < 5; i++)
        if (strcmp(s, STATE_NAMES[i]) == 0) return (aegis_img_state_t)i;
    return AEGIS_IMG_UNDEFINED;
}

static int write_file_atomic(const char *path, const void *data, size_t len)
{
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            close(fd);
            return -1;
        }
        p += n;
        left -= (size_t)n;
    }
    if (fsync(fd) != 0 || close(fd) != 0) return -1;
    return rename(tmp, path);
}

static int save_otadata(void)
{
    char buf[256], path[600];
    int n = snprintf(buf, sizeof buf, "boot=%s\nprev=%s\nota_0=%s\nota_1=%s\n", S.boot, S.prev, STATE_NAMES[S.ota[0]],
                     STATE_NAMES[S.ota[1]]);
    path_of(path, sizeof path, "otadata");
    return write_file_atomic(path, buf, (size_t)n);
}

static int load_otadata(void)
{
    char path[600], line[128];
    path_of(path, sizeof path, "otadata");
    FILE *f = fopen(path, "re");
    if (f == NULL) return -1;
    strcpy(S.boot, "factory");
    strcpy(S.prev, "factory");
    S.ota[0] = S.ota[1] = AEGIS_IMG_UNDEFINED;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *eq = strchr(line, '=');
        if (!eq) continue;
        *eq = '\0';
        const char *v = eq + 1;
        if (strcmp(line, "boot") == 0) snprintf(S.boot, sizeof S.boot, "%s", v);
        else if (strcmp(line, "prev") == 0) snprintf(S.prev, sizeof S.prev, "%s", v);
        else if (strcmp(line, "ota_0") == 0) S.ota[0] = state_from(v);
        else if (strcmp(line, "ota_1") == 0) S.ota[1] = state_from(v);
    }
    fclose(f);
    return 0;
}

static int copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0) return -1;
    struct stat st;
    if (fstat(in, &st) != 0 || st.st_size <= 0 || st.st_size > 64 * 1024 * 1024) {
        close(in);
        return -1;
    }
    char *buf = malloc((size_t)st.st_size); /* start-up only */
    if (!buf) {
        close(in);
        return -1;
    }
    ssize_t n = read(in, buf, (size_t)st.st_size);
    close(in);
    int rc = n == st.st_size ? write_file_atomic(to, buf, (size_t)n) : -1;
    free(buf);
    return rc;
}

static bool slot_exists(const char *label)
{
    char path[600], name[64];
    snprintf(name, sizeof name, "%s.bin", label);
    path_of(path, sizeof path, name);
    return access(path, R_OK) == 0;
}

int slots_boot(const char *dir, const char *factory_image, uint32_t slot_size)
{
    char path[600];
    snprintf(S.dir, sizeof S.dir, "%s", dir);
    S.slot_size = slot_size;
    mkdir(dir, 0755);
    path_of(path, sizeof path, "nvs");
    mkdir(path, 0755);
    if (load_otadata() != 0) {
        if (factory_image == NULL) {
            fprintf(stderr, "aegis-device: %s holds no device yet; pass --factory-image FILE to start one\n", dir);
            return -1;
        }
        path_of(path, sizeof path, "factory.bin");
        if (copy_file(factory_image, path) != 0) {
            fprintf(stderr, "aegis-device: cannot read the factory image %s: %s\n", factory_image, strerror(errno));
            return -1;
        }
        strcpy(S.boot, "factory");
        strcpy(S.prev, "factory");
        S.ota[0] = S.ota[1] = AEGIS_IMG_UNDEFINED;
        if (save_otadata() != 0) return -1;
    }
    /* The bootloader step. */
    int i = ota_index(S.boot);
    if (i >= 0) {
        if (S.ota[i] == AEGIS_IMG_NEW) {
            S.ota[i] = AEGIS_IMG_PENDING_VERIFY;
            plog(AEGIS_LOG_INFO, "bootloader: %s is new; booting it as pending_verify", S.boot);
        } else if (S.ota[i] == AEGIS_IMG_PENDING_VERIFY || S.ota[i] == AEGIS_IMG_ABORTED ||
                   !slot_exists(S.boot)) {
            S.ota[i] = AEGIS_IMG_ABORTED;
            plog(AEGIS_LOG_WARN, "bootloader: %s never confirmed itself; marking it aborted and booting %s", S.boot,
                 S.prev);
            snprintf(S.boot, sizeof S.boot, "%s", S.prev);
            snprintf(S.prev, sizeof S.prev, "%s", "factory");
        }
    }
    if (save_otadata() != 0) return -1;
    char name[64];
    snprintf(name, sizeof name, "%s.bin", S.boot);
    path_of(path, sizeof path, name);
    S.running_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (S.running_fd < 0) {
        fprintf(stderr, "aegis-device: cannot open the running slot %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct stat st;
    fstat(S.running_fd, &st);
    S.running_size = (uint32_t)st.st_size;
    return 0;
}

int slots_running(aegis_running_slot_t *out)
{
    int i = ota_index(S.boot);
    snprintf(out->label, sizeof out->label, "%s", S.boot);
    out->state = i >= 0 ? S.ota[i] : AEGIS_IMG_VALID;
    if (out->state == AEGIS_IMG_UNDEFINED) out->state = AEGIS_IMG_VALID;
    out->partition_size = S.running_size;
    return 0;
}

int slots_running_read(uint32_t offset, void *buf, size_t len)
{
    memset(buf, 0xFF, len); /* erased flash past the end of the file */
    ssize_t n = pread(S.running_fd, buf, len, offset);
    return n < 0 ? AEGIS_PORT_ERR : AEGIS_PORT_OK;
}

static const char *next_label(void) { return strcmp(S.boot, "ota_0") == 0 ? "ota_1" : "ota_0"; }

uint32_t slots_update_size(void) { return S.slot_size; }

int slots_update_begin(uint32_t size)
{
    char path[600], name[64];
    if (size > S.slot_size) return AEGIS_PORT_ERR;
    if (S.update_fd >= 0) close(S.update_fd);
    snprintf(S.update_label, sizeof S.update_label, "%s", next_label());
    snprintf(name, sizeof name, "%s.bin.part", S.update_label);
    path_of(path, sizeof path, name);
    S.update_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    S.update_done = false;
    return S.update_fd < 0 ? AEGIS_PORT_ERR : AEGIS_PORT_OK;
}

int slots_update_write(uint32_t offset, const void *data, size_t len)
{
    if (S.update_fd < 0) return AEGIS_PORT_ERR;
    const char *p = data;
    while (len > 0) {
        ssize_t n = pwrite(S.update_fd, p, len, offset);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return AEGIS_PORT_ERR;
        p += n;
        len -= (size_t)n;
        offset += (uint32_t)n;
    }
    return AEGIS_PORT_OK;
}

int slots_update_end(void)
{
    char from[600], to[600], name[64];
    if (S.update_fd < 0) return AEGIS_PORT_ERR;
    if (fsync(S.update_fd) != 0) return AEGIS_PORT_ERR;
    close(S.update_fd);
    S.update_fd = -1;
    snprintf(name, sizeof name, "%s.bin.part", S.update_label);
    path_of(from, sizeof from, name);
    snprintf(name, sizeof name, "%s.bin", S.update_label);
    path_of(to, sizeof to, name);
    if (rename(from, to) != 0) return AEGIS_PORT_ERR;
    S.update_done = true;
    return AEGIS_PORT_OK;
}

void slots_update_abort(void)
{
    char path[600], name[64];
    if (S.update_fd >= 0) close(S.update_fd);
    S.update_fd = -1;
    if (S.update_label[0]) {
        snprintf(name, sizeof name, "%s.bin.part", S.update_label);
        path_of(path, sizeof path, name);
        unlink(path);
    }
}

int slots_set_boot(void)
{
    int i = ota_index(S.update_label);
    if (!S.update_done || i < 0) return AEGIS_PORT_ERR;
    S.ota[i] = AEGIS_IMG_NEW;
    snprintf(S.prev, sizeof S.prev, "%s", S.boot);
    snprintf(S.boot, sizeof S.boot, "%s", S.update_label);
    return save_otadata() == 0 ? AEGIS_PORT_OK : AEGIS_PORT_ERR;
}

int slots_mark_valid(void)
{
    int i = ota_index(S.boot);
    if (i >= 0) S.ota[i] = AEGIS_IMG_VALID;
    return save_otadata() == 0 ? AEGIS_PORT_OK : AEGIS_PORT_ERR;
}

int slots_mark_invalid(void)
{
    int i = ota_index(S.boot);
    if (i < 0) return AEGIS_PORT_ERR; /* the factory image cannot roll back */
    S.ota[i] = AEGIS_IMG_ABORTED;
    snprintf(S.boot, sizeof S.boot, "%s", S.prev);
    snprintf(S.prev, sizeof S.prev, "%s", "factory");
    return save_otadata() == 0 ? AEGIS_PORT_OK : AEGIS_PORT_ERR;
}

static bool kv_key_ok(const char *key)
{
    size_t n = strlen(key);
    if (n == 0 || n > 15) return false;
    for (size_t i = 0; i < n; i++)
        if (!((key[i] >= 'a' && key[i] <= 'z') || (key[i] >= '0' && key[i] <= '9') || key[i] == '_')) return false;
    return true;
}

int slots_kv_get(const char *key, void *buf, size_t cap, size_t *len)
{
    char path[600], name[64];
    if (!kv_key_ok(key)) return AEGIS_PORT_ERR;
    snprintf(name, sizeof name, "nvs/%s", key);
    path_of(path, sizeof path, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? AEGIS_PORT_NOT_FOUND : AEGIS_PORT_ERR;
    struct stat st;
    if (fstat(fd, &st) != 0 || (size_t)st.st_size > cap) {
        close(fd);
        return AEGIS_PORT_ERR;
    }
    ssize_t n = read(fd, buf, (size_t)st.st_size);
    close(fd);
    if (n != st.st_size) return AEGIS_PORT_ERR;
    *len = (size_t)n;
    return AEGIS_PORT_OK;
}

int slots_kv_set(const char *key, const void *value, size_t len)
{
    char path[600], name[64];
    if (!kv_key_ok(key)) return AEGIS_PORT_ERR;
    snprintf(name, sizeof name, "nvs/%s", key);
    path_of(path, sizeof path, name);
    return write_file_atomic(path, value, len) == 0 ? AEGIS_PORT_OK : AEGIS_PORT_ERR;
}

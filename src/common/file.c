#include "common/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"

int file_read_all(const char *path, uint8_t **buf, size_t *len, char *errmsg)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int rv = -errno;
        errmsg_printf(errmsg, "%s: open: %s", path, strerror(errno));
        return rv;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int rv = -errno;
        errmsg_printf(errmsg, "%s: stat: %s", path, strerror(errno));
        close(fd);
        return rv;
    }
    size_t n = (size_t)st.st_size;
    uint8_t *b = malloc(n + 1);
    if (b == NULL) {
        close(fd);
        errmsg_printf(errmsg, "%s: out of memory for %zu bytes", path, n);
        return LSKV_ENOMEM;
    }
    size_t off = 0;
    while (off < n) {
        ssize_t r = read(fd, b + off, n - off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int rv = r < 0 ? -errno : -EIO;
            errmsg_printf(errmsg, "%s: read: %s", path, r < 0 ? strerror(errno) : "short");
            free(b);
            close(fd);
            return rv;
        }
        off += (size_t)r;
    }
    close(fd);
    b[n] = '\0';
    *buf = b;
    *len = n;
    return 0;
}

int file_fsync_dir(const char *dir)
{
    int fd = open(dir[0] ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rv = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rv;
}

/* The directory holding path ("." when it has no slash). */
static void parent_dir(const char *path, char *out, size_t cap)
{
    snprintf(out, cap, "%s", path);
    char *slash = strrchr(out, '/');
    if (slash == NULL)
        snprintf(out, cap, ".");
    else
        *slash = '\0';
}

int file_write_durable(const char *path, const void *data, size_t len, unsigned mode,
                       char *errmsg)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) {
        errmsg_printf(errmsg, "%s: path too long", path);
        return -ENAMETOOLONG;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);
    if (fd < 0) {
        int rv = -errno;
        errmsg_printf(errmsg, "%s: create: %s", tmp, strerror(errno));
        return rv;
    }
    const uint8_t *p = data;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, p + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int rv = -errno;
            errmsg_printf(errmsg, "%s: write: %s", tmp, strerror(errno));
            close(fd);
            unlink(tmp);
            return rv;
        }
        off += (size_t)w;
    }
    int rv = fsync(fd) == 0 ? 0 : -errno;
    if (close(fd) != 0 && rv == 0)
        rv = -errno;
    if (rv != 0) {
        errmsg_printf(errmsg, "%s: fsync: %s", tmp, strerror(-rv));
        unlink(tmp);
        return rv;
    }
    if (rename(tmp, path) != 0) {
        rv = -errno;
        errmsg_printf(errmsg, "%s: rename: %s", path, strerror(errno));
        unlink(tmp);
        return rv;
    }
    char dir[4096];
    parent_dir(path, dir, sizeof dir);
    rv = file_fsync_dir(dir);
    if (rv != 0)
        errmsg_printf(errmsg, "%s: fsync directory: %s", dir, strerror(-rv));
    return rv;
}

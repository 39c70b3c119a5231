#include "crypto/keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"

int crypto_random(uint8_t *out, size_t len)
{
    return RAND_bytes(out, (int)len) == 1 ? 0 : LSKV_EIO;
}

static int fsync_parent(const char *path)
{
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return -errno;
    int rv = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rv;
}

static int create_key(const char *path, uint8_t *key, size_t len, char *errmsg)
{
    int rv = crypto_random(key, len);
    if (rv != 0) {
        errmsg_printf(errmsg, "%s: no randomness", path);
        return rv;
    }
    /* Write to a temporary name and rename, so a crash never leaves a short key. */
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rv = -errno;
        errmsg_printf(errmsg, "%s: create: %s", tmp, strerror(errno));
        return rv;
    }
    ssize_t n = write(fd, key, len);
    if (n != (ssize_t)len || fsync(fd) != 0) {
        rv = n < 0 || errno ? -errno : LSKV_EIO;
        errmsg_printf(errmsg, "%s: write: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return rv ? rv : LSKV_EIO;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        rv = -errno;
        errmsg_printf(errmsg, "%s: rename: %s", path, strerror(errno));
        unlink(tmp);
        return rv;
    }
    rv = fsync_parent(path);
    if (rv != 0)
        errmsg_printf(errmsg, "%s: fsync directory: %s", path, strerror(-rv));
    return rv;
}

int keyfile_load_or_create(const char *path, uint8_t *key, size_t len, bool create,
                           bool *created, char *errmsg)
{
    if (created != NULL)
        *created = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT || !create) {
            int rv = -errno;
            errmsg_printf(errmsg, "%s: open: %s", path, strerror(errno));
            return rv;
        }
        int rv = create_key(path, key, len, errmsg);
        if (rv == 0 && created != NULL)
            *created = true;
        return rv;
    }
    struct stat st;
    int rv = 0;
    if (fstat(fd, &st) != 0) {
        rv = -errno;
        errmsg_printf(errmsg, "%s: stat: %s", path, strerror(errno));
    } else if ((st.st_mode & 077) != 0) {
        rv = LSKV_ECORRUPT;
        errmsg_printf(errmsg, "%s: mode %03o is readable by others, want 0600", path,
                      (unsigned)(st.st_mode & 0777));
    } else if ((size_t)st.st_size != len || read(fd, key, len) != (ssize_t)len) {
        rv = LSKV_ECORRUPT;
        errmsg_printf(errmsg, "%s: want exactly %zu bytes, file has %lld", path, len,
                      (long long)st.st_size);
        OPENSSL_cleanse(key, len);
    }
    close(fd);
    return rv;
}

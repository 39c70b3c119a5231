#include "crypto/keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/file.h"

int crypto_random(uint8_t *out, size_t len)
{
    return RAND_bytes(out, (int)len) == 1 ? 0 : LSKV_EIO;
}

static int create_key(const char *path, uint8_t *key, size_t len, char *errmsg)
{
    int rv = crypto_random(key, len);
    if (rv != 0) {
        errmsg_printf(errmsg, "%s: no randomness", path);
        return rv;
    }
    /* A crash leaves no key or the whole key, never a short one. */
    return file_write_durable(path, key, len, 0600, errmsg);
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

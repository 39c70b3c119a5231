#include "config/datadir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/file.h"
#include "common/hex.h"
#include "crypto/keyfile.h"
#include "crypto/mac.h"

#define IDS_KEY_LABEL "lskv-datadir-ids-v1"
#define IDS_BODY_BYTES (11 + 16 + 11 + 16 + 1) /* what the tag covers */

/* Everything bootstrap makes, in the order it makes it (identity/: cert.h). */
static const char *const required[] = {
    "data.key",
    "ids",
    "identity",
    "identity/service.pem",
    "identity/service.key",
    "identity/node.pem",
    "identity/node.key",
    "ledger.secret",
    "ledger",
    "engine",
    "raft",
    /* raft_uv's term and vote: it keeps one or both of metadata1/metadata2
     * and would bootstrap (write term 1) again if neither were there. */
    "raft/metadata1|raft/metadata2",
};

int datadir_path(const struct datadir *d, const char *name, char *out, size_t size,
                 char *errmsg)
{
    int n = snprintf(out, size, "%s/%s", d->path, name);
    if (n < 0 || (size_t)n >= size) {
        errmsg_printf(errmsg, "%s/%s: path too long", d->path, name);
        return LSKV_EINVAL;
    }
    return 0;
}

/* Empty = nothing but ".", ".." and the lock file. */
static int dir_is_empty(const char *path, bool *empty, char *errmsg)
{
    DIR *dir = opendir(path);
    if (dir == NULL) {
        int rv = -errno;
        errmsg_printf(errmsg, "%s: opendir: %s", path, strerror(errno));
        return rv;
    }
    *empty = true;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
            strcmp(e->d_name, DATADIR_LOCK_FILE) != 0 &&
            strcmp(e->d_name, DATADIR_RESTORE_DIR) != 0) {
            *empty = false;
            break;
        }
    }
    closedir(dir);
    return 0;
}

/* fcntl() record locks rather than flock(): F_GETLK names the holder's pid
 * without anything written to the file (a refused start changes no byte).
 * They belong to the process: the lock file is opened nowhere else, since
 * closing any descriptor of it would drop the lock. */
static int lock_dir(struct datadir *d, char *errmsg)
{
    char path[DATADIR_PATH_MAX];
    int rv = datadir_path(d, DATADIR_LOCK_FILE, path, sizeof path, errmsg);
    if (rv != 0)
        return rv;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rv = -errno;
        errmsg_printf(errmsg, "%s: open: %s", path, strerror(errno));
        return rv;
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_SETLK, &fl) == 0) {
        d->lock_fd = fd;
        return 0;
    }
    if (errno != EAGAIN && errno != EACCES) {
        rv = -errno;
        errmsg_printf(errmsg, "%s: lock: %s", path, strerror(errno));
        close(fd);
        return rv;
    }
    struct flock holder = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_GETLK, &holder) == 0 && holder.l_type != F_UNLCK && holder.l_pid > 0)
        errmsg_printf(errmsg, "%s: locked by another lskvd (pid %ld)", d->path,
                      (long)holder.l_pid);
    else /* released meanwhile, or a holder in another pid namespace */
        errmsg_printf(errmsg, "%s: locked by another lskvd (pid unknown)", d->path);
    close(fd);
    return -EAGAIN;
}

int datadir_open(struct datadir *d, const char *path, char *errmsg)
{
    memset(d, 0, sizeof *d);
    d->lock_fd = -1;
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof d->path - 64) {
        errmsg_printf(errmsg, "data dir: path empty or too long");
        return LSKV_EINVAL;
    }
    memcpy(d->path, path, n + 1);
    bool made = mkdir(path, 0700) == 0;
    if (!made && errno != EEXIST) {
        int rv = -errno;
        errmsg_printf(errmsg, "%s: mkdir: %s", path, strerror(errno));
        return rv;
    }
    /* The lock comes before anything else in the dir is looked at. */
    int rv = lock_dir(d, errmsg);
    if (rv != 0)
        return rv;
    if (made)
        d->fresh = true;
    else if ((rv = dir_is_empty(path, &d->fresh, errmsg)) != 0)
        datadir_close(d);
    return rv;
}

void datadir_close(struct datadir *d)
{
    if (d->lock_fd >= 0)
        close(d->lock_fd);
    d->lock_fd = -1;
}

/* Does d/name exist? name may be "a|b": either one. first gets the path of
 * the first alternative (to name it when none exists).
 * Errors: negated errno, LSKV_EINVAL. */
static int exists_any(const struct datadir *d, const char *name, bool *found, char *first,
                      size_t size, char *errmsg)
{
    *found = false;
    bool is_first = true;
    for (const char *p = name; *p != '\0' && !*found; is_first = false) {
        char one[256], here[DATADIR_PATH_MAX];
        size_t n = strcspn(p, "|");
        if (n >= sizeof one)
            return LSKV_EINVAL;
        memcpy(one, p, n);
        one[n] = '\0';
        p += n + (p[n] == '|');
        int rv = datadir_path(d, one, here, sizeof here, errmsg);
        if (rv != 0)
            return rv;
        if (is_first)
            snprintf(first, size, "%s", here);
        struct stat st;
        if (lstat(here, &st) == 0) {
            *found = true;
        } else if (errno != ENOENT) {
            rv = -errno;
            errmsg_printf(errmsg, "%s: stat: %s", here, strerror(errno));
            return rv;
        }
    }
    return 0;
}

int datadir_check_complete(const struct datadir *d, char *errmsg)
{
    if (d->fresh)
        return 0;
    char path[DATADIR_PATH_MAX];
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        bool found;
        int rv = exists_any(d, required[i], &found, path, sizeof path, errmsg);
        if (rv != 0)
            return rv;
        if (!found) {
            errmsg_printf(errmsg, "%s: missing in a non-empty data dir", path);
            return LSKV_ECORRUPT;
        }
    }
    return 0;
}

/* A file a non-fresh dir must already have. */
static int check_present(const struct datadir *d, const char *path, bool *exists,
                         char *errmsg)
{
    struct stat st;
    *exists = lstat(path, &st) == 0;
    if (*exists)
        return 0;
    if (errno != ENOENT) {
        int rv = -errno;
        errmsg_printf(errmsg, "%s: stat: %s", path, strerror(errno));
        return rv;
    }
    if (!d->fresh) {
        errmsg_printf(errmsg, "%s: missing in a non-empty data dir", path);
        return LSKV_ECORRUPT;
    }
    return 0;
}

int datadir_load_secret(const struct datadir *d, const char *name, uint8_t *out,
                        size_t len, bool *created, char *errmsg)
{
    char path[DATADIR_PATH_MAX];
    bool exists;
    int rv = datadir_path(d, name, path, sizeof path, errmsg);
    if (rv == 0)
        rv = check_present(d, path, &exists, errmsg);
    if (rv != 0)
        return rv;
    return keyfile_load_or_create(path, out, len, d->fresh, created, errmsg);
}

/* --- ids ---------------------------------------------------------------- */

static void format_body(const struct datadir_ids *ids, char out[IDS_BODY_BYTES + 1])
{
    snprintf(out, IDS_BODY_BYTES + 1, "cluster_id=%016" PRIx64 "\nmember_id=%016" PRIx64 "\n",
             ids->cluster_id, ids->member_id);
}

int datadir_ids_tag(const uint8_t data_key[DATADIR_KEY_BYTES], const struct datadir_ids *ids,
                    uint8_t tag[DATADIR_TAG_BYTES])
{
    /* A key of its own, so data.key is never used raw outside AES-GCM. */
    uint8_t k[MAC_BYTES];
    char body[IDS_BODY_BYTES + 1];
    int rv = mac_hmac_sha256(data_key, DATADIR_KEY_BYTES, IDS_KEY_LABEL,
                             sizeof IDS_KEY_LABEL - 1, k);
    if (rv == 0) {
        format_body(ids, body);
        rv = mac_hmac_sha256(k, sizeof k, body, IDS_BODY_BYTES, tag);
    }
    memset(k, 0, sizeof k);
    return rv;
}

void datadir_ids_format(const struct datadir_ids *ids, const uint8_t tag[DATADIR_TAG_BYTES],
                        char out[DATADIR_IDS_TEXT_BYTES])
{
    char body[IDS_BODY_BYTES + 1], hex[2 * DATADIR_TAG_BYTES + 1];
    format_body(ids, body);
    hex_encode(tag, DATADIR_TAG_BYTES, hex);
    memcpy(out, body, IDS_BODY_BYTES);
    memcpy(out + IDS_BODY_BYTES, "tag=", 4);
    memcpy(out + IDS_BODY_BYTES + 4, hex, 2 * DATADIR_TAG_BYTES);
    out[DATADIR_IDS_TEXT_BYTES - 1] = '\n';
}

/* Exactly n lower-case hex digits at p. */
static bool lower_hex(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
            return false;
    return true;
}

static bool parse_u64(const char *p, uint64_t *out)
{
    if (!lower_hex(p, 16))
        return false;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++)
        v = v << 4 | (uint64_t)hex_digit(p[i]);
    *out = v;
    return v != 0;
}

int datadir_ids_parse(const char *text, size_t len, struct datadir_ids *ids,
                      uint8_t tag[DATADIR_TAG_BYTES])
{
    char hex[2 * DATADIR_TAG_BYTES + 1];
    if (len != DATADIR_IDS_TEXT_BYTES || memcmp(text, "cluster_id=", 11) != 0 ||
        !parse_u64(text + 11, &ids->cluster_id) || memcmp(text + 27, "\nmember_id=", 11) != 0 ||
        !parse_u64(text + 38, &ids->member_id) || memcmp(text + 54, "\ntag=", 5) != 0 ||
        !lower_hex(text + 59, sizeof hex - 1) || text[len - 1] != '\n')
        return LSKV_ECORRUPT;
    memcpy(hex, text + 59, sizeof hex - 1);
    hex[sizeof hex - 1] = '\0';
    return hex_decode(hex, tag, DATADIR_TAG_BYTES) == 0 ? 0 : LSKV_ECORRUPT;
}

static int make_ids(const char *path, const uint8_t data_key[DATADIR_KEY_BYTES],
                    const struct datadir_ids *fresh_ids, struct datadir_ids *ids, char *errmsg)
{
    if (fresh_ids->cluster_id == 0 || fresh_ids->member_id == 0) {
        errmsg_printf(errmsg, "%s: ids must not be 0", path);
        return LSKV_EINVAL;
    }
    *ids = *fresh_ids;
    uint8_t tag[DATADIR_TAG_BYTES];
    char text[DATADIR_IDS_TEXT_BYTES];
    int rv = datadir_ids_tag(data_key, ids, tag);
    if (rv != 0) {
        errmsg_printf(errmsg, "%s: cannot compute its tag", path);
        return rv;
    }
    datadir_ids_format(ids, tag, text);
    return file_write_durable(path, text, sizeof text, 0644, errmsg);
}

int datadir_load_ids(const struct datadir *d, const uint8_t data_key[DATADIR_KEY_BYTES],
                     const struct datadir_ids *fresh_ids, struct datadir_ids *ids,
                     bool *created, char *errmsg)
{
    char path[DATADIR_PATH_MAX];
    bool exists;
    if (created != NULL)
        *created = false;
    int rv = datadir_path(d, "ids", path, sizeof path, errmsg);
    if (rv == 0)
        rv = check_present(d, path, &exists, errmsg);
    if (rv != 0)
        return rv;
    if (!exists) {
        rv = make_ids(path, data_key, fresh_ids, ids, errmsg);
        if (rv == 0 && created != NULL)
            *created = true;
        return rv;
    }
    uint8_t *text = NULL;
    size_t len = 0;
    if ((rv = file_read_all(path, &text, &len, errmsg)) != 0)
        return rv;
    uint8_t tag[DATADIR_TAG_BYTES], want[DATADIR_TAG_BYTES];
    rv = datadir_ids_parse((const char *)text, len, ids, tag);
    free(text);
    if (rv != 0) {
        errmsg_printf(errmsg, "%s: malformed (want cluster_id=<16 hex> member_id=<16 hex> "
                      "tag=<64 hex>)", path);
        return rv;
    }
    if ((rv = datadir_ids_tag(data_key, ids, want)) != 0) {
        errmsg_printf(errmsg, "%s: cannot compute its tag", path);
        return rv;
    }
    if (!mac_equal(tag, want)) {
        errmsg_printf(errmsg, "%s: does not match this data dir (changed cluster or member "
                      "id, or another data.key)", path);
        return LSKV_ECORRUPT;
    }
    return 0;
}

/* See restore.h. */
#include "statemachine/restore.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/bytes.h"
#include "common/err.h"
#include "statemachine/snapshot.h"

#define COMMIT_EVERY 4096 /* records per engine write while importing */

struct source_visit {
    struct restore_source *s;
    char *errmsg;
    void (*progress)(void *arg, uint64_t done, uint64_t total);
    void *arg;
};

static void source_progress(void *arg, uint64_t done, uint64_t total)
{
    struct source_visit *v = arg;
    if (v->progress != NULL)
        v->progress(v->arg, done, total);
}

static int source_snapshot(void *arg, const uint8_t *buf, size_t len)
{
    struct source_visit *v = arg;
    struct sm_sections sec;
    if (sm_snapshot_decode(buf, len, &sec) != 0 || sec.len[SM_SECTION_POSITION] != 40) {
        errmsg_printf(v->errmsg, "the backup's POSITION section is malformed");
        return LSKV_ECORRUPT;
    }
    v->s->ledger_size = get_u64be(sec.data[SM_SECTION_POSITION]);
    memcpy(v->s->ledger_root, sec.data[SM_SECTION_POSITION] + 8, 32);
    return 0;
}

static int source_header(void *arg, const struct backup_header *h)
{
    struct source_visit *v = arg;
    v->s->header = *h;
    return 0;
}

static int read_backup(const char *path, const uint8_t key[BACKUP_KEY_BYTES],
                       struct backup_visitor *vis, struct backup_summary *sum,
                       uint8_t sha256[32], char *errmsg)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int rv = -errno;
        errmsg_printf(errmsg, "%s: %s", path, strerror(errno));
        return rv;
    }
    struct stat st;
    int rv = 0;
    if (fstat(fileno(f), &st) != 0) {
        rv = -errno;
        errmsg_printf(errmsg, "%s: %s", path, strerror(errno));
    } else if ((rv = backup_read(f, (uint64_t)st.st_size, key, vis, sum, errmsg)) != 0) {
        errmsg_wrapf(errmsg, "%s", path);
    } else if (fseeko(f, st.st_size - 32, SEEK_SET) != 0 || fread(sha256, 1, 32, f) != 32) {
        errmsg_printf(errmsg, "%s: cannot read its trailer", path);
        rv = -EIO;
    }
    fclose(f);
    return rv;
}

int restore_source_open(struct restore_source *s, const char *path,
                        const uint8_t key[BACKUP_KEY_BYTES],
                        void (*progress)(void *arg, uint64_t done, uint64_t total), void *arg,
                        char *errmsg)
{
    memset(s, 0, sizeof *s);
    if (strlen(path) >= sizeof s->path) {
        errmsg_printf(errmsg, "backup path too long");
        return LSKV_EINVAL;
    }
    strcpy(s->path, path);
    memcpy(s->key, key, BACKUP_KEY_BYTES);
    struct source_visit v = {s, errmsg, progress, arg};
    struct backup_visitor vis = {.header = source_header, .snapshot = source_snapshot,
                                 .progress = source_progress, .arg = &v};
    int rv = read_backup(path, key, &vis, &s->summary, s->sha256, errmsg);
    if (rv != 0)
        restore_source_close(s);
    return rv;
}

void restore_source_close(struct restore_source *s)
{
    explicit_bzero(s->key, sizeof s->key);
}

void restore_command(const struct restore_source *s, Lskvcommandpb__Restore *out)
{
    lskvcommandpb__restore__init(out);
    out->backup_sha256 = (ProtobufCBinaryData){.data = (uint8_t *)s->sha256, .len = 32};
    out->source_cluster_id = s->header.cluster_id;
    out->source_member_id = s->header.member_id;
    out->source_ledger_size = s->ledger_size;
    out->source_ledger_root = (ProtobufCBinaryData){.data = (uint8_t *)s->ledger_root,
                                                    .len = 32};
    out->source_revision = s->summary.revision;
}

struct import {
    recstore *rs;
    uint8_t *sm;
    size_t sm_len;
    uint64_t n;
    char *errmsg;
};

static int import_snapshot(void *arg, const uint8_t *buf, size_t len)
{
    struct import *im = arg;
    if ((im->sm = malloc(len)) == NULL)
        return LSKV_ENOMEM;
    memcpy(im->sm, buf, len);
    im->sm_len = len;
    return 0;
}

static int import_record(void *arg, int64_t main, int64_t sub, const struct kv_record *rec)
{
    struct import *im = arg;
    int rv = recstore_put(im->rs, main, sub, rec);
    if (rv == 0 && ++im->n % COMMIT_EVERY == 0)
        rv = recstore_commit(im->rs);
    if (rv != 0)
        errmsg_printf(im->errmsg, "record %" PRId64 ".%" PRId64 ": %s", main, sub,
                      lskv_strerror(rv));
    return rv;
}

static bool same_source(const struct restore_source *s, const Lskvcommandpb__Restore *cmd)
{
    return cmd->backup_sha256.len == 32 && memcmp(cmd->backup_sha256.data, s->sha256, 32) == 0;
}

int restore_import(const struct restore_source *s, const Lskvcommandpb__Restore *cmd,
                   kvstore *kv, recstore *rs, lessor *leases, bool *done, char *errmsg)
{
    if (*done && s != NULL && same_source(s, cmd))
        return 0; /* the same backup again (a second founder's proposal) */
    if (*done || kvstore_revision(kv) != 1 || kvstore_key_count(kv) != 0) {
        errmsg_printf(errmsg, "restore: the store is not empty");
        return LSKV_EINVAL;
    }
    if (s == NULL) {
        errmsg_printf(errmsg, "restore: this member has no copy of the backup (" RESTORE_BACKUP
                      "): restore its data dir from the same file with lskvctl snapshot "
                      "restore");
        return LSKV_EIO;
    }
    if (!same_source(s, cmd)) {
        errmsg_printf(errmsg, "restore: %s is not the backup the cluster restores (its "
                      "SHA-256 differs)", s->path);
        return LSKV_EIO;
    }
    struct import im = {.rs = rs, .errmsg = errmsg};
    struct backup_visitor vis = {.snapshot = import_snapshot, .record = import_record,
                                 .arg = &im};
    struct backup_summary sum;
    uint8_t sha[32];
    int rv = read_backup(s->path, s->key, &vis, &sum, sha, errmsg);
    if (rv == 0 && memcmp(sha, s->sha256, 32) != 0) {
        errmsg_printf(errmsg, "%s changed since it was checked", s->path);
        rv = LSKV_ECORRUPT;
    }
    if (rv == 0 && (rv = recstore_sync(rs)) != 0)
        errmsg_printf(errmsg, "restore: the engine: %s", recstore_errmsg(rs));
    struct sm_sections sec;
    if (rv == 0 && (rv = sm_snapshot_decode(im.sm, im.sm_len, &sec)) == 0) {
        if ((rv = kvstore_restore(kv, sec.data[SM_SECTION_KV], sec.len[SM_SECTION_KV])) != 0)
            errmsg_printf(errmsg, "restore: the key index: %s", lskv_strerror(rv));
        static const uint8_t none[5] = {1, 0, 0, 0, 0}; /* no leases */
        if (rv == 0 && leases != NULL &&
            (rv = lessor_decode(leases, sec.data[SM_SECTION_LEASES] ? sec.data[SM_SECTION_LEASES]
                                                                    : none,
                                sec.data[SM_SECTION_LEASES] ? sec.len[SM_SECTION_LEASES]
                                                            : sizeof none)) != 0)
            errmsg_printf(errmsg, "restore: the lease table: %s", lskv_strerror(rv));
    }
    if (im.sm != NULL)
        explicit_bzero(im.sm, im.sm_len);
    free(im.sm);
    if (rv != 0)
        return rv == LSKV_ENOMEM ? rv : LSKV_EIO;
    *done = true;
    return 0;
}

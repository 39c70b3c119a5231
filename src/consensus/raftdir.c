#include "consensus/raftdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <raft.h>
#include <raft/uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "consensus/entry.h"
#include "crypto/keyring.h"

#define SHADOW_PREFIX ".raft-verify-"

void raftdir_segment_of(const char *dir, uint64_t index, char *out, size_t size)
{
    snprintf(out, size, "%s/open-*", dir);
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned long long first, last;
        int n = 0;
        if (sscanf(e->d_name, "%16llu-%16llu%n", &first, &last, &n) == 2 &&
            e->d_name[n] == '\0' && first <= index && index <= last) {
            snprintf(out, size, "%s/%.40s", dir, e->d_name); /* names are 33 chars */
            break;
        }
    }
    closedir(d);
}

/* ---- the shadow directory ------------------------------------------------ */

static int copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -errno;
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        int rv = -errno;
        close(in);
        return rv;
    }
    /* Sparse: raft_uv preallocates open segments, mostly zeros, and a start
     * on a full disk must not need their size again (storage/diskspace.h). */
    static const uint8_t zero[65536];
    uint8_t buf[65536];
    off_t size = 0;
    int rv = 0;
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rv = n < 0 ? -errno : 0;
            if (rv == 0 && ftruncate(out, size) != 0)
                rv = -errno;
            break;
        }
        size += n;
        if (memcmp(buf, zero, (size_t)n) == 0) {
            if (lseek(out, size, SEEK_SET) < 0) {
                rv = -errno;
                goto done;
            }
            continue;
        }
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                rv = -errno;
                goto done;
            }
            off += w;
        }
    }
done:
    close(in);
    close(out);
    return rv;
}

static bool is_segment_or_snapshot(const char *name)
{
    unsigned long long a, b;
    int n = 0;
    return strncmp(name, "snapshot-", 9) == 0 ||
           (sscanf(name, "%16llu-%16llu%n", &a, &b, &n) == 2 && name[n] == '\0');
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *e;
        char path[4608];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(path, sizeof path, "%s/%.255s", dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* Makes the shadow of dir next to it (same file system, so hard links
 * work): segments and snapshots are linked (libraft only reads them),
 * everything else it may rewrite is copied. *empty: dir holds nothing. */
static int make_shadow(const char *dir, char *shadow, size_t size, bool *empty, char *errmsg)
{
    *empty = true;
    DIR *d = opendir(dir);
    if (d == NULL) {
        if (errno == ENOENT)
            return 0;
        int rv = -errno;
        errmsg_printf(errmsg, "%s: %s", dir, strerror(errno));
        return rv;
    }
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", dir);
    snprintf(shadow, size, "%s/" SHADOW_PREFIX "XXXXXX", dirname(parent));
    int rv = 0;
    struct dirent *e;
    while (rv == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (*empty) {
            *empty = false;
            if (mkdtemp(shadow) == NULL) {
                rv = -errno;
                errmsg_printf(errmsg, "%s: mkdtemp: %s", shadow, strerror(errno));
                break;
            }
        }
        char from[4608], to[4608];
        snprintf(from, sizeof from, "%s/%.255s", dir, e->d_name);
        snprintf(to, sizeof to, "%s/%.255s", shadow, e->d_name);
        if (is_segment_or_snapshot(e->d_name) && link(from, to) == 0)
            continue;
        if ((rv = copy_file(from, to)) != 0)
            errmsg_printf(errmsg, "%s: copying for verification: %s", from, strerror(-rv));
    }
    closedir(d);
    if (rv != 0 && !*empty)
        remove_tree(shadow);
    return rv;
}

/* Our own leftovers of a verification that did not finish (a crash). */
static void remove_stale_shadows(const char *dir)
{
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", dir);
    const char *p = dirname(parent);
    DIR *d = opendir(p);
    if (d == NULL)
        return;
    struct dirent *e;
    char path[4608];
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, SHADOW_PREFIX, strlen(SHADOW_PREFIX)) != 0)
            continue;
        snprintf(path, sizeof path, "%s/%.255s", p, e->d_name);
        remove_tree(path);
    }
    closedir(d);
}

/* ---- the checks ---------------------------------------------------------- */

struct check {
    const struct consensus_config *config;
    const struct raftdir_snapshot_check *snapshot_check;
    keyring *keys;
    struct entry_place place;
    uint8_t *scratch;
    size_t scratch_cap;
    char *errmsg;
};

/* Parses and authenticates one sealed entry (of kind) into c->scratch
 * (*plain_len bytes, which the caller wipes). */
static int open_sealed(struct check *c, uint8_t kind, const struct raft_buffer *b,
                       struct entry_header *h, size_t *plain_len_out, const char **why)
{
    size_t plain_len;
    *plain_len_out = 0;
    int rv = entry_parse(b->base, b->len, h, &plain_len);
    if (rv != 0) {
        *why = rv == LSKV_EFORMAT ? "unknown entry format version" : "does not parse";
        return rv;
    }
    if (plain_len > c->scratch_cap) {
        uint8_t *p = realloc(c->scratch, plain_len);
        if (p == NULL)
            return LSKV_ENOMEM;
        c->scratch = p;
        c->scratch_cap = plain_len;
    }
    aead_key *key = NULL;
    rv = keyring_key(c->keys, h->key_id, &key);
    if (rv == 0)
        rv = entry_open_k(key, c->config->cluster_id, kind, b->base, b->len, h, c->scratch);
    *plain_len_out = plain_len;
    if (rv == LSKV_ECORRUPT)
        *why = "does not authenticate: its bytes were changed, or it was sealed under another "
               "data key or cluster id";
    return rv;
}

static int check_snapshot(struct check *c, const struct raft_snapshot *s)
{
    struct entry_header h;
    const char *why = NULL;
    char file[4300];
    snprintf(file, sizeof file, "%s/snapshot-%" PRIu64 "-%" PRIu64 "-*", c->config->dir,
             (uint64_t)s->term, (uint64_t)s->index);
    size_t plain_len = 0;
    int rv = s->n_bufs == 1
                 ? open_sealed(c, ENTRY_KIND_SNAPSHOT, &s->bufs[0], &h, &plain_len, &why)
                 : LSKV_ECORRUPT;
    if (rv != 0) {
        errmsg_printf(c->errmsg, "raft snapshot %s: %s", file, why ? why : lskv_strerror(rv));
    } else if (h.index != s->index || h.term != s->term) {
        errmsg_printf(c->errmsg,
                      "raft snapshot %s: sealed as the snapshot at index %" PRIu64 " term %" PRIu64
                      " (an older snapshot under a newer name?)",
                      file, h.index, h.term);
        rv = LSKV_ECORRUPT;
    } else if (c->snapshot_check != NULL) {
        c->errmsg[0] = '\0';
        rv = c->snapshot_check->check(c->snapshot_check->arg, c->scratch, plain_len, c->errmsg);
        if (rv != 0)
            errmsg_wrapf(c->errmsg, "raft snapshot %s", file);
    }
    explicit_bzero(c->scratch, plain_len);
    if (rv != 0)
        return rv;
    memcpy(c->place.chain, h.chain, ENTRY_CHAIN_BYTES);
    c->place.term = h.term;
    return 0;
}

static int check_entry(struct check *c, uint64_t index, const struct raft_entry *e)
{
    struct entry_header h;
    const char *why = NULL;
    size_t plain_len;
    int rv = open_sealed(c, ENTRY_KIND_COMMAND, &e->buf, &h, &plain_len, &why);
    explicit_bzero(c->scratch, plain_len);
    bool opened = rv == 0;
    if (rv == 0 && (why = entry_misplaced(&h, index, &c->place)) != NULL)
        rv = LSKV_ECORRUPT;
    if (rv == 0 && h.term != e->term) {
        why = "its sealed term differs from the term raft stored it with";
        rv = LSKV_ECORRUPT;
    }
    if (rv != 0) {
        char file[4200];
        raftdir_segment_of(c->config->dir, index, file, sizeof file);
        errmsg_printf(c->errmsg, "raft entry %" PRIu64 " (in %s): %s", index, file,
                      why ? why : lskv_strerror(rv));
        if (opened && h.index != index)
            snprintf(c->errmsg + strlen(c->errmsg), LSKV_ERRMSG_SIZE - strlen(c->errmsg),
                     "; sealed for index %" PRIu64, h.index);
        return rv;
    }
    entry_place_advance(&c->place, &h, e->buf.base, e->buf.len);
    return 0;
}

static void free_loaded(struct raft_snapshot *snap, struct raft_entry *entries, size_t n)
{
    if (snap != NULL) {
        raft_configuration_close(&snap->configuration);
        for (unsigned i = 0; i < snap->n_bufs; i++)
            raft_free(snap->bufs[i].base);
        raft_free(snap->bufs);
        raft_free(snap);
    }
    void *last_batch = NULL;
    for (size_t i = 0; i < n; i++) {
        if (entries[i].batch == NULL)
            raft_free(entries[i].buf.base);
        else if (entries[i].batch != last_batch)
            raft_free(last_batch = entries[i].batch); /* a batch's entries are adjacent */
    }
    raft_free(entries);
}

static void on_io_closed(struct raft_io *io)
{
    *(bool *)io->data = true;
}

int raftdir_verify(const struct consensus_config *config,
                   const struct raftdir_snapshot_check *snapshot_check,
                   struct raftdir_info *out, char *errmsg)
{
    memset(out, 0, sizeof *out);
    remove_stale_shadows(config->dir);
    char shadow[4200];
    int rv = make_shadow(config->dir, shadow, sizeof shadow, &out->empty, errmsg);
    if (rv != 0 || out->empty)
        return rv;

    struct check c = {.config = config, .snapshot_check = snapshot_check, .errmsg = errmsg};
    uv_loop_t loop;
    struct raft_uv_transport transport = {0};
    struct raft_io io = {0};
    bool closed = false, io_ready = false;
    struct raft_snapshot *snap = NULL;
    struct raft_entry *entries = NULL;
    size_t n = 0;
    raft_term term;
    raft_id voted_for;
    raft_index start = 0;

    if ((rv = keyring_new(config->data_key, "raft",
                          config->key_epoch_size ? config->key_epoch_size
                                                 : KEYRING_DEFAULT_EPOCH_SIZE,
                          &c.keys)) != 0)
        goto out_dir;
    if (uv_loop_init(&loop) != 0) {
        rv = LSKV_EIO;
        goto out_keys;
    }
    if (raft_uv_tcp_init(&transport, &loop) != 0) {
        rv = LSKV_EIO;
        goto out_loop;
    }
    if (raft_uv_init(&io, &loop, shadow, &transport) != 0) {
        errmsg_printf(errmsg, "raft io %s: %s", config->dir, io.errmsg);
        rv = LSKV_EIO;
        goto out_tcp;
    }
    io.data = &closed;
    if (io.init(&io, config->member_id, config->peer_address) != 0) {
        errmsg_printf(errmsg, "raft io %s: %s", config->dir, io.errmsg);
        rv = LSKV_EIO;
        goto out_io;
    }
    io_ready = true;
    if (io.load(&io, &term, &voted_for, &snap, &start, &entries, &n) != 0) {
        errmsg_printf(errmsg, "raft log %s: %s", config->dir, io.errmsg);
        rv = LSKV_ECORRUPT;
        goto out_io;
    }
    uint64_t first = 1; /* entries at or below the snapshot are not applied */
    if (snap != NULL) {
        if ((rv = check_snapshot(&c, snap)) != 0)
            goto out_loaded;
        out->snapshot_index = snap->index;
        first = snap->index + 1;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t index = start + i;
        if (index < first || entries[i].type != RAFT_COMMAND)
            continue;
        if ((rv = check_entry(&c, index, &entries[i])) != 0)
            goto out_loaded;
        out->commands++;
    }
    out->last_index = n ? start + n - 1 : out->snapshot_index;
    out->term = term;
out_loaded:
    free_loaded(snap, entries, n);
out_io:
    if (io_ready) {
        io.close(&io, on_io_closed);
        while (!closed)
            uv_run(&loop, UV_RUN_ONCE);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    raft_uv_close(&io);
out_tcp:
    /* (A failed io.init leaves nothing to close: the transport's handle is
     * made by io.init's last step.) */
    raft_uv_tcp_close(&transport);
out_loop:
    uv_loop_close(&loop);
out_keys:
    keyring_free(c.keys);
    free(c.scratch);
out_dir:
    remove_tree(shadow);
    return rv;
}

/* The offset index (struct lg_point in ledger_impl.h) and segment reads:
 * receipts and tx status of entries in older chunks pread one segment of
 * at most LG_BLOCK_LEAVES entries instead of loading a whole chunk file on
 * the loop. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/bytes.h"
#include "common/err.h"
#include "ledger/ledger_impl.h"

int lg_index_entry(ledger *l, uint64_t leaf, uint64_t off, const struct chunk_entry *e)
{
    size_t k = lg_chunk_of_leaf(l, leaf);
    struct lg_point *last = l->n_points ? &l->points[l->n_points - 1] : NULL;
    if (last == NULL || leaf == l->chunks[k].first || leaf % LG_BLOCK_LEAVES == 0) {
        int rv = lg_grow((void **)&l->points, &l->cap_points, l->n_points + 1,
                         sizeof l->points[0]);
        if (rv != 0)
            return rv;
        last = &l->points[l->n_points++];
        *last = (struct lg_point){.leaf = leaf, .off = off, .first_rev = e->revision,
                                  .sig_leaf = UINT64_MAX, .chunk = k};
    }
    if (e->type == CHUNK_ENTRY_SIGNATURE && last->sig_leaf == UINT64_MAX) {
        last->sig_leaf = leaf;
        last->sig_off = off;
    }
    return 0;
}

void lg_index_verified(void *arg, uint64_t leaf, size_t off, const struct chunk_entry *e)
{
    ledger *l = arg;
    if (lg_index_entry(l, leaf, off, e) != 0)
        l->points_failed = true;
}

size_t lg_point_of_leaf(const ledger *l, uint64_t leaf)
{
    size_t lo = 0, hi = l->n_points; /* first point past leaf */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (l->points[mid].leaf <= leaf)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo ? lo - 1 : 0;
}

/* File offset where point p's segment ends. */
static uint64_t seg_end(const ledger *l, size_t p)
{
    const struct lg_point *pt = &l->points[p];
    if (p + 1 < l->n_points && l->points[p + 1].chunk == pt->chunk)
        return l->points[p + 1].off;
    const struct chunk_info *c = &l->chunks[pt->chunk];
    return c->open ? l->open_bytes : c->bytes;
}

/* Reads [off, off + len) of chunk k into a new *buf (path: s->path). */
static int read_at(ledger *l, size_t k, uint64_t off, size_t len, char *path, size_t path_len,
                   uint8_t **buf, char *errmsg)
{
    int rv = lg_flush_frames(l); /* the open chunk's file must hold every entry */
    if (rv != 0) {
        errmsg_printf(errmsg, "ledger: write: %s", lskv_strerror(rv));
        return rv;
    }
    lg_chunk_path(l, l->chunks[k].name, path, path_len);
    *buf = malloc(len ? len : 1);
    if (*buf == NULL)
        return LSKV_ENOMEM;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t done = 0;
    rv = fd < 0 ? -errno : 0;
    while (rv == 0 && done < len) {
        ssize_t r = pread(fd, *buf + done, len - done, (off_t)(off + done));
        if (r < 0 && errno != EINTR)
            rv = -errno;
        else if (r == 0)
            rv = LSKV_ECORRUPT; /* shorter than when it was verified */
        else if (r > 0)
            done += (size_t)r;
    }
    if (rv != 0) {
        errmsg_printf(errmsg, "%s: read %zu bytes at offset %" PRIu64 ": %s", path, len, off,
                      rv == LSKV_ECORRUPT ? "the file is shorter" : strerror(-rv));
        if (fd >= 0)
            close(fd);
        free(*buf);
        *buf = NULL;
        return rv;
    }
    close(fd);
    l->lookup_bytes += len;
    return 0;
}

int lg_seg_read(ledger *l, size_t p, uint64_t to, struct lg_seg *s, char *errmsg)
{
    memset(s, 0, sizeof *s);
    const struct lg_point *pt = &l->points[p];
    uint64_t end = seg_end(l, p);
    s->whole = to == 0 || to >= end;
    if (s->whole)
        to = end;
    s->point = p;
    s->file_off = pt->off;
    s->leaf = pt->leaf;
    s->len = (size_t)(to - pt->off);
    return read_at(l, pt->chunk, pt->off, s->len, s->path, sizeof s->path, &s->buf, errmsg);
}

int lg_seg_read_sig(ledger *l, size_t p, struct lg_seg *s, char *errmsg)
{
    memset(s, 0, sizeof *s);
    const struct lg_point *pt = &l->points[p];
    uint8_t *b;
    int rv = read_at(l, pt->chunk, pt->sig_off, 4, s->path, sizeof s->path, &b, errmsg);
    if (rv != 0)
        return rv;
    uint32_t fl = get_u32be(b);
    free(b);
    if (fl > CHUNK_MAX_FRAME_BYTES) {
        errmsg_printf(errmsg, "%s: offset %" PRIu64 ": frame of %" PRIu32 " bytes", s->path,
                      pt->sig_off, fl);
        return LSKV_ECORRUPT;
    }
    s->point = p;
    s->file_off = pt->sig_off;
    s->leaf = pt->sig_leaf;
    s->len = 4 + (size_t)fl;
    return read_at(l, pt->chunk, pt->sig_off, s->len, s->path, sizeof s->path, &s->buf, errmsg);
}

int lg_seg_next(const ledger *l, struct lg_seg *s, struct chunk_entry *e, char *errmsg)
{
    if (s->off >= s->len) {
        if (s->whole && s->point + 1 < l->n_points && s->leaf != l->points[s->point + 1].leaf) {
            errmsg_printf(errmsg, "%s: offset %" PRIu64 ": holds leaves up to %" PRIu64
                          ", the index says %" PRIu64, s->path, s->file_off + s->len,
                          s->leaf - 1, l->points[s->point + 1].leaf - 1);
            return LSKV_ECORRUPT;
        }
        return 0;
    }
    bool trunc;
    int rv = chunk_entry_decode(s->buf + s->off, s->len - s->off, e, &trunc, errmsg);
    if (rv != 0) {
        errmsg_wrapf(errmsg, "%s: offset %" PRIu64, s->path, s->file_off + s->off);
        return rv;
    }
    s->off += e->frame_len;
    s->leaf++;
    return 1;
}

void lg_seg_close(struct lg_seg *s)
{
    free(s->buf);
    s->buf = NULL;
}

int lg_point_tree(ledger *l, size_t p, merkle_tree **t, char *errmsg)
{
    const struct lg_point *pt = &l->points[p];
    const struct chunk_info *c = &l->chunks[pt->chunk];
    uint8_t peaks[MERKLE_MAX_DEPTH][MERKLE_HASH_BYTES];
    size_t n;
    *t = NULL;
    if (pt->leaf != c->first) { /* a block boundary */
        if (pt->leaf / LG_BLOCK_LEAVES > l->n_blocks)
            return 0;
        lg_block_peaks(l, pt->leaf, peaks, &n);
        return merkle_open(pt->leaf, (const uint8_t(*)[MERKLE_HASH_BYTES])peaks, n, t);
    }
    char path[4200];
    uint8_t *buf;
    size_t hl = chunk_header_size((size_t)__builtin_popcountll(c->first)), used;
    int rv = read_at(l, pt->chunk, 0, hl, path, sizeof path, &buf, errmsg);
    if (rv != 0)
        return rv;
    struct chunk_header *h = malloc(sizeof *h);
    if (h == NULL) {
        free(buf);
        return LSKV_ENOMEM;
    }
    rv = chunk_header_decode(buf, hl, h, &used, errmsg);
    if (rv == 0 && h->first_leaf != c->first) {
        errmsg_printf(errmsg, "header names first leaf %" PRIu64, h->first_leaf);
        rv = LSKV_ECORRUPT;
    }
    if (rv != 0)
        errmsg_wrapf(errmsg, "%s", path);
    else
        rv = merkle_open(h->first_leaf, (const uint8_t(*)[MERKLE_HASH_BYTES])h->peaks,
                         h->n_peaks, t);
    free(h);
    free(buf);
    return rv;
}

/* Helpers and reading chunk files (see ledger_impl.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/file.h"
#include "ledger/ledger_impl.h"

/* --- Small helpers -------------------------------------------------------- */

int lg_grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 64;
    while (c < need)
        c *= 2;
    void *p = realloc(*arr, c * elem);
    if (p == NULL)
        return LSKV_ENOMEM;
    *arr = p;
    *cap = c;
    return 0;
}

int lg_write_all(int fd, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

void lg_chunk_path(const ledger *l, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", l->dir, name);
}

void lg_clear_window(ledger *l)
{
    for (size_t i = 0; i < l->n_sigs; i++)
        free(l->sigs[i].payload);
    l->n_sigs = 0;
    l->n_win = 0;
}

/* Finds the chunk holding leaf (the open one if leaf is past every sealed one). */
size_t lg_chunk_of_leaf(const ledger *l, uint64_t leaf)
{
    size_t lo = 0, hi = l->n_chunks; /* first chunk with first > leaf */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (l->chunks[mid].first <= leaf)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo ? lo - 1 : 0;
}

/* --- Scanning chunk files --------------------------------------------------- */

static int scan_load(struct lg_scan *s, char *errmsg)
{
    free(s->buf);
    s->buf = NULL;
    lg_chunk_path(s->l, s->l->chunks[s->chunk].name, s->path, sizeof s->path);
    int rv = file_read_all(s->path, &s->buf, &s->len, errmsg);
    if (rv != 0)
        return rv;
    rv = chunk_header_decode(s->buf, s->len, &s->h, &s->off, errmsg);
    if (rv == 0 && s->h.first_leaf != s->l->chunks[s->chunk].first) {
        errmsg_printf(errmsg, "header names first leaf %" PRIu64, s->h.first_leaf);
        rv = LSKV_ECORRUPT;
    }
    if (rv != 0) {
        errmsg_wrapf(errmsg, "%s", s->path);
        return rv;
    }
    s->leaf = s->h.first_leaf;
    return 0;
}

int lg_scan_open(ledger *l, size_t chunk, struct lg_scan *s, char *errmsg)
{
    memset(s, 0, sizeof *s);
    /* The files must hold every entry: write the buffered frames. */
    int rv = lg_flush_frames(l);
    if (rv != 0) {
        errmsg_printf(errmsg, "ledger: write: %s", lskv_strerror(rv));
        return rv;
    }
    s->l = l;
    s->chunk = chunk;
    return scan_load(s, errmsg);
}

void lg_scan_close(struct lg_scan *s)
{
    free(s->buf);
    s->buf = NULL;
}

/* 1: *e is the entry at leaf s->leaf - 1 (borrowing s->buf until the next
 * call); 0: no more entries; < 0: error. Crosses into later chunks. */
int lg_scan_next(struct lg_scan *s, struct chunk_entry *e, char *errmsg)
{
    for (;;) {
        if (s->off < s->len) {
            bool trunc;
            int rv = chunk_entry_decode(s->buf + s->off, s->len - s->off, e, &trunc, errmsg);
            if (rv != 0) {
                errmsg_wrapf(errmsg, "%s: offset %zu", s->path, s->off);
                return rv;
            }
            s->off += e->frame_len;
            s->leaf++;
            return 1;
        }
        const struct chunk_info *c = &s->l->chunks[s->chunk];
        if (!c->open && s->leaf != c->last + 1) {
            errmsg_printf(errmsg, "%s: holds leaves up to %" PRIu64 ", name says %" PRIu64,
                          s->path, s->leaf - 1, c->last);
            return LSKV_ECORRUPT;
        }
        if (s->chunk + 1 >= s->l->n_chunks)
            return 0;
        s->chunk++;
        int rv = scan_load(s, errmsg);
        if (rv != 0)
            return rv;
    }
}

/* MTH of the blocks [j0, j0 + n) (n a power of two). */
static void fold_blocks(const ledger *l, uint64_t j0, uint64_t n, uint8_t out[MERKLE_HASH_BYTES])
{
    if (n == 1) {
        memcpy(out, l->blocks[j0], MERKLE_HASH_BYTES);
        return;
    }
    uint8_t left[MERKLE_HASH_BYTES], right[MERKLE_HASH_BYTES];
    fold_blocks(l, j0, n / 2, left);
    fold_blocks(l, j0 + n / 2, n / 2, right);
    merkle_node_hash(left, right, out);
}

void lg_block_peaks(const ledger *l, uint64_t base, uint8_t (*peaks)[MERKLE_HASH_BYTES],
                    size_t *n)
{
    /* The peaks of base are blocks of at least LG_BLOCK_LEAVES leaves. */
    uint64_t lo = 0;
    *n = 0;
    for (int b = 63; b >= LG_BLOCK_LOG2; b--) {
        uint64_t w = (uint64_t)1 << b;
        if (base & w) {
            fold_blocks(l, lo / LG_BLOCK_LEAVES, w / LG_BLOCK_LEAVES, peaks[(*n)++]);
            lo += w;
        }
    }
}

int lg_scan_tree(const ledger *l, const struct lg_scan *s, uint64_t target, merkle_tree **t)
{
    uint64_t base = target / LG_BLOCK_LEAVES * LG_BLOCK_LEAVES;
    if (base <= s->h.first_leaf || base / LG_BLOCK_LEAVES > l->n_blocks)
        return merkle_open(s->h.first_leaf, (const uint8_t(*)[MERKLE_HASH_BYTES])s->h.peaks,
                           s->h.n_peaks, t);
    uint8_t peaks[MERKLE_MAX_DEPTH][MERKLE_HASH_BYTES];
    size_t n;
    lg_block_peaks(l, base, peaks, &n);
    return merkle_open(base, (const uint8_t(*)[MERKLE_HASH_BYTES])peaks, n, t);
}

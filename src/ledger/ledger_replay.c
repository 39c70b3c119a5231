/* Replay after a restart: entries the ledger already holds are checked,
 * not appended (ledger_has_index, ledger_check_signature). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "ledger/ledger_impl.h"

/* --- Replay: entries the ledger already holds ------------------------------- */

bool ledger_has_index(const ledger *l, uint64_t index)
{
    return merkle_size(l->tree) > 0 && index <= l->last_index;
}

/* Loads raft index -> write set digest of sealed chunk k into l->rc. */
static int cache_chunk(ledger *l, size_t k, char *errmsg)
{
    if (l->rc.valid && l->rc.chunk == k)
        return 0;
    l->rc.valid = false;
    l->rc.n = 0;
    struct lg_scan s;
    int rv = lg_scan_open(l, k, &s, errmsg);
    if (rv != 0)
        return rv;
    while (s.chunk == k && s.off < s.len) {
        struct chunk_entry e;
        if ((rv = lg_scan_next(&s, &e, errmsg)) != 1)
            break;
        rv = 0;
        if (l->rc.n == l->rc.cap) {
            size_t cap = l->rc.cap ? l->rc.cap * 2 : 1024;
            uint64_t *ix = realloc(l->rc.index, cap * sizeof *ix);
            if (ix != NULL)
                l->rc.index = ix;
            uint8_t(*w)[MERKLE_HASH_BYTES] = realloc(l->rc.wsd, cap * sizeof *w);
            if (w != NULL)
                l->rc.wsd = w;
            if (ix == NULL || w == NULL) {
                rv = LSKV_ENOMEM;
                break;
            }
            l->rc.cap = cap;
        }
        l->rc.index[l->rc.n] = e.index;
        chunk_entry_wsd(&e, l->rc.wsd[l->rc.n]);
        l->rc.n++;
    }
    lg_scan_close(&s);
    if (rv < 0)
        return rv;
    l->rc.valid = true;
    l->rc.chunk = k;
    return 0;
}

/* Write set digest of the entry with raft index `index` at revision rev:
 * 0 and *found, or an error. */
static int find_index(ledger *l, uint64_t index, int64_t rev, uint8_t wsd[32], bool *found,
                      char *errmsg)
{
    *found = false;
    if (l->n_win > 0 && index >= l->win[0].index) {
        size_t lo = 0, hi = l->n_win;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (l->win[mid].index < index)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < l->n_win && l->win[lo].index == index) {
            memcpy(wsd, l->win[lo].wsd, 32);
            *found = true;
        }
        return 0;
    }
    /* From the sealed chunks: revisions never decrease, so the entry is at
     * or after the last chunk whose first revision is below rev. */
    size_t k = 0;
    for (size_t i = 0; i < l->n_chunks; i++)
        if (l->chunks[i].first_rev < rev)
            k = i;
    for (; k < l->n_chunks && !l->chunks[k].open; k++) {
        int rv = cache_chunk(l, k, errmsg);
        if (rv != 0)
            return rv;
        size_t n = l->rc.n;
        if (n == 0 || index > l->rc.index[n - 1])
            continue;
        size_t lo = 0, hi = n;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (l->rc.index[mid] < index)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (l->rc.index[lo] == index) {
            memcpy(wsd, l->rc.wsd[lo], 32);
            *found = true;
        }
        return 0;
    }
    return 0;
}

int lg_check_frame(ledger *l, struct chunk_entry *e, const uint8_t *plain, size_t plain_len,
                       bool absent_ok, char *errmsg)
{
    struct chunk_entry d;
    uint8_t wsd[32], leaf[32], have[32];
    bool found;
    size_t flen = lg_frame_prepare(l, e, plain_len);
    uint8_t *frame = malloc(flen);
    if (frame == NULL)
        return LSKV_ENOMEM;
    int rv = lg_build_frame(l, e, plain, plain_len, frame, flen, &d, wsd, leaf, errmsg);
    free(frame);
    if (rv != 0)
        return rv;
    if ((rv = find_index(l, e->index, e->revision, have, &found, errmsg)) != 0)
        return rv;
    if (!found && absent_ok)
        return 0;
    if (!found || memcmp(have, wsd, 32) != 0) {
        errmsg_printf(errmsg, "ledger: replayed entry %" PRIu64 ".%" PRIu64 " %s the ledger's",
                      e->term, e->index, found ? "differs from" : "is missing from");
        return LSKV_ECORRUPT;
    }
    return 0;
}

/* The frame of a signature entry: the payload is its public part. */
struct chunk_entry lg_signature_entry(uint64_t term, uint64_t index, int64_t revision,
                                          const uint8_t *payload, size_t len)
{
    return (struct chunk_entry){.type = CHUNK_ENTRY_SIGNATURE,
                                .term = term,
                                .index = index,
                                .revision = revision,
                                .public_part = payload,
                                .public_len = (uint32_t)len};
}

int ledger_check_signature(ledger *l, uint64_t term, uint64_t index, int64_t revision,
                           const uint8_t *payload, size_t len, char *errmsg)
{
    struct chunk_entry e = lg_signature_entry(term, index, revision, payload, len);
    /* A stale signature was dropped, not appended: absent is fine. */
    return lg_check_frame(l, &e, NULL, 0, true, errmsg);
}

/* The revision log: which records each revision since the compaction point
 * wrote, so that history (watch catch-up) is read in revision order by
 * record id, without scanning keys, and nothing can be left out.
 *
 * For every main revision m from base to the current one, subs[m - base] is
 * how many changes m made: its records are ids (m, 0) .. (m, n - 1), all of
 * which exist (compaction removes only revisions <= its point). At the base
 * itself (the compaction point) compaction may have deleted some records (a
 * tombstone that was a key's last revision there), so the base keeps the
 * list of its surviving subs. Memory: 4 bytes per revision since the last
 * compaction. A record read back goes through recstore_get, which
 * authenticates it against its id: a changed, swapped, replayed or missing
 * record is LSKV_ECORRUPT, and the log says which ids must be there.
 *
 * The log is derived state: a restore rebuilds it from the index (every
 * revision above the compaction point is in the index). */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/err.h"
#include "kv/kvstore_impl.h"

void kv_history_free(struct kv_history *h)
{
    free(h->subs);
    free(h->base_subs);
    memset(h, 0, sizeof *h);
}

static int grow_to(struct kv_history *h, size_t n)
{
    if (n <= h->cap)
        return 0;
    size_t cap = h->cap ? h->cap : 1024;
    while (cap < n)
        cap *= 2;
    uint32_t *p = realloc(h->subs, cap * sizeof *p);
    if (p == NULL)
        return LSKV_ENOMEM;
    h->subs = p;
    h->cap = cap;
    return 0;
}

int kv_history_reserve(struct kv_history *h)
{
    return grow_to(h, h->n + 1);
}

void kv_history_append(struct kv_history *h, int64_t main, size_t n)
{
    if (h->base == 0)
        h->base = main;
    assert((size_t)(main - h->base) == h->n && h->n < h->cap);
    h->subs[h->n++] = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

static int u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int kv_history_compact(struct kv_history *h, int64_t at, const uint32_t *dropped_at,
                       size_t n_dropped)
{
    if (h->base == 0 || at < h->base)
        return 0;
    size_t i = (size_t)(at - h->base);
    if (i >= h->n)
        return LSKV_EINVAL;
    /* The survivors at the new base: its subs minus the dropped ones (or the
     * old base's survivors minus them, when compacting at the same base). */
    uint32_t *surv = NULL;
    size_t n_surv = 0;
    uint32_t *drop = NULL;
    if (n_dropped > 0) {
        drop = malloc(n_dropped * sizeof *drop);
        if (drop == NULL)
            return LSKV_ENOMEM;
        memcpy(drop, dropped_at, n_dropped * sizeof *drop);
        qsort(drop, n_dropped, sizeof *drop, u32_cmp);
    }
    size_t total = i == 0 && h->base_subs != NULL ? h->n_base_subs : h->subs[i];
    surv = malloc((total ? total : 1) * sizeof *surv);
    if (surv == NULL) {
        free(drop);
        return LSKV_ENOMEM;
    }
    for (size_t k = 0; k < total; k++) {
        uint32_t sub = i == 0 && h->base_subs != NULL ? h->base_subs[k] : (uint32_t)k;
        if (drop == NULL || bsearch(&sub, drop, n_dropped, sizeof *drop, u32_cmp) == NULL)
            surv[n_surv++] = sub;
    }
    free(drop);
    free(h->base_subs);
    h->base_subs = surv;
    h->n_base_subs = n_surv;
    memmove(h->subs, h->subs + i, (h->n - i) * sizeof *h->subs);
    h->n -= i;
    h->base = at;
    return 0;
}

struct rebuild {
    struct kv_history *h;
    int rv;
};

static int note_rev(void *arg, const kvindex_entry *e, struct kvindex_rev rev, bool tombstone)
{
    (void)e;
    (void)tombstone;
    struct rebuild *r = arg;
    struct kv_history *h = r->h;
    size_t i = (size_t)(rev.main - h->base);
    if (rev.main < h->base || i >= h->n) {
        r->rv = LSKV_ECORRUPT;
        return 1;
    }
    if (i == 0) {
        if (h->n_base_subs == h->cap_base_subs) {
            size_t cap = h->cap_base_subs ? h->cap_base_subs * 2 : 16;
            uint32_t *p = realloc(h->base_subs, cap * sizeof *p);
            if (p == NULL) {
                r->rv = LSKV_ENOMEM;
                return 1;
            }
            h->base_subs = p;
            h->cap_base_subs = cap;
        }
        h->base_subs[h->n_base_subs++] = (uint32_t)rev.sub;
    } else if ((uint32_t)rev.sub + 1 > h->subs[i]) {
        h->subs[i] = (uint32_t)rev.sub + 1;
    }
    return 0;
}

int kv_history_rebuild(struct kv_history *h, const kvindex *ix, int64_t compact_main,
                       int64_t rev)
{
    kv_history_free(h);
    /* Before any write, revision 1 made no change. */
    h->base = compact_main > 0 ? compact_main : 1;
    /* Every revision above the base made at least one change the index
     * still holds: a longer log would be a snapshot that lies. */
    if (rev < h->base || (uint64_t)(rev - h->base) > (uint64_t)kvindex_revisions(ix))
        return LSKV_ECORRUPT;
    size_t n = (size_t)(rev - h->base + 1);
    int rv = grow_to(h, n);
    if (rv != 0)
        return rv;
    memset(h->subs, 0, n * sizeof *h->subs);
    h->n = n;
    h->base_subs = malloc(sizeof *h->base_subs);
    if (h->base_subs == NULL)
        return LSKV_ENOMEM;
    h->cap_base_subs = 1;
    struct rebuild r = {h, 0};
    for (const kvindex_entry *e = kvindex_seek(ix, NULL, 0); e && r.rv == 0; e = kvindex_next(e))
        kvindex_entry_since(e, h->base, note_rev, &r);
    if (r.rv == 0)
        qsort(h->base_subs, h->n_base_subs, sizeof *h->base_subs, u32_cmp);
    return r.rv;
}

static bool in_range(const struct keyrange *r, const uint8_t *k, size_t klen)
{
    int c = bytes_order(k, klen, r->key, r->key_len);
    if (r->end_len == 0)
        return c == 0;
    return c >= 0 && (r->end_all || bytes_order(k, klen, r->end, r->end_len) < 0);
}

int kvstore_history(kvstore *kv, const ProtobufCBinaryData *key,
                    const ProtobufCBinaryData *range_end, int64_t from_rev, int64_t to_rev,
                    struct arena *a, kvstore_history_fn cb, void *arg, char *errmsg)
{
    const struct kv_history *h = &kv->history;
    if (from_rev < 1)
        from_rev = 1;
    if (kv->compact_main > 0 && from_rev < kv->compact_main)
        return LSKV_ECOMPACTED;
    if (to_rev > kv->rev)
        to_rev = kv->rev;
    if (h->base == 0 || from_rev > to_rev)
        return 0;
    if (from_rev < h->base)
        from_rev = h->base; /* nothing was written before the log began */
    struct keyrange r;
    keyrange_from(&r, key, range_end);
    for (int64_t m = from_rev; m <= to_rev; m++) {
        size_t i = (size_t)(m - h->base);
        bool at_base = i == 0 && h->base_subs != NULL;
        size_t n = at_base ? h->n_base_subs : h->subs[i];
        for (size_t k = 0; k < n; k++) {
            int64_t sub = at_base ? (int64_t)h->base_subs[k] : (int64_t)k;
            struct kv_record rec;
            int rv = recstore_get(kv->rs, m, sub, a, &rec, errmsg);
            if (rv != 0)
                return rv;
            if (!in_range(&r, rec.key, rec.key_len))
                continue;
            if ((rv = cb(arg, &rec, m, sub)) != 0)
                return rv;
        }
    }
    return 0;
}

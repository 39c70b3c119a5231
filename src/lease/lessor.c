/* Leases: two chained hash tables, leases by id and attached keys by bytes;
 * each lease also threads its keys on a list, so a revoke finds them without
 * a scan. Key hashing is seeded at random (keys come from clients), and
 * nothing replicated depends on table order: every output that leaves this
 * module (keys, ids, snapshots) is sorted.
 *
 * Snapshot format, version 1 (big endian):
 *   u8 version (1) | u32 n | n x lease, in id order
 *   lease: i64 id | i64 ttl | u32 k | k x (u32 len | key bytes), in key order */
#include "lease/lessor.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "common/bytes.h"
#include "common/err.h"
#include "common/hash64.h"

#define SNAPSHOT_VERSION 1

struct lkey {
    struct lkey *hnext;        /* hash chain */
    struct lkey *prev, *next;  /* the lease's keys */
    struct lease *lease;
    size_t len;
    uint8_t key[];
};

struct lease {
    struct lease *hnext;
    int64_t id;
    int64_t ttl;               /* seconds, floor applied */
    uint64_t expiry_ms;        /* leader-local; 0: no clock yet */
    uint64_t revoke_retry_ms;  /* leader-local; a revoke is pending until then */
    struct lkey *keys;
    size_t n_keys;
};

struct lessor {
    int64_t min_ttl;
    uint64_t seed;
    struct lease **leases;
    size_t lease_cap, n_leases;
    struct lkey **keys;
    size_t key_cap, n_keys;
    int64_t *unclocked;        /* leases granted since the last clock start */
    size_t n_unclocked, unclocked_cap;
    struct lessor_stats stats;
};

/* ---- hashing ---- */

static uint64_t key_hash(const lessor *l, const uint8_t *key, size_t len)
{
    return hash_bytes64(l->seed, key, len);
}

static size_t id_slot(const lessor *l, int64_t id)
{
    return (size_t)(mix64((uint64_t)id ^ l->seed) & (l->lease_cap - 1));
}

static int grow_leases(lessor *l)
{
    if (l->n_leases < l->lease_cap)
        return 0;
    size_t cap = l->lease_cap * 2;
    struct lease **t = calloc(cap, sizeof *t);
    if (t == NULL)
        return LSKV_ENOMEM;
    struct lease **old = l->leases;
    size_t old_cap = l->lease_cap;
    l->leases = t;
    l->lease_cap = cap;
    for (size_t i = 0; i < old_cap; i++) {
        for (struct lease *x = old[i], *next; x != NULL; x = next) {
            next = x->hnext;
            size_t s = id_slot(l, x->id);
            x->hnext = t[s];
            t[s] = x;
        }
    }
    free(old);
    return 0;
}

static int grow_keys(lessor *l)
{
    if (l->n_keys < l->key_cap)
        return 0;
    size_t cap = l->key_cap * 2;
    struct lkey **t = calloc(cap, sizeof *t);
    if (t == NULL)
        return LSKV_ENOMEM;
    struct lkey **old = l->keys;
    size_t old_cap = l->key_cap;
    l->keys = t;
    l->key_cap = cap;
    for (size_t i = 0; i < old_cap; i++) {
        for (struct lkey *k = old[i], *next; k != NULL; k = next) {
            next = k->hnext;
            size_t s = key_hash(l, k->key, k->len) & (cap - 1);
            k->hnext = t[s];
            t[s] = k;
        }
    }
    free(old);
    return 0;
}

static struct lease *find_lease(const lessor *l, int64_t id)
{
    for (struct lease *x = l->leases[id_slot(l, id)]; x != NULL; x = x->hnext)
        if (x->id == id)
            return x;
    return NULL;
}

static struct lkey **find_key_slot(const lessor *l, const uint8_t *key, size_t len)
{
    struct lkey **p = &l->keys[key_hash(l, key, len) & (l->key_cap - 1)];
    for (; *p != NULL; p = &(*p)->hnext)
        if ((*p)->len == len && (len == 0 || memcmp((*p)->key, key, len) == 0))
            return p;
    return p;
}

/* ---- life cycle ---- */

static void clear(lessor *l)
{
    for (size_t i = 0; i < l->key_cap; i++) {
        for (struct lkey *k = l->keys[i], *next; k != NULL; k = next) {
            next = k->hnext;
            free(k);
        }
        l->keys[i] = NULL;
    }
    for (size_t i = 0; i < l->lease_cap; i++) {
        for (struct lease *x = l->leases[i], *next; x != NULL; x = next) {
            next = x->hnext;
            free(x);
        }
        l->leases[i] = NULL;
    }
    l->n_keys = 0;
    l->n_leases = 0;
    l->n_unclocked = 0;
}

int lessor_new(int64_t min_ttl, lessor **out)
{
    lessor *l = calloc(1, sizeof *l);
    if (l == NULL)
        return LSKV_ENOMEM;
    l->min_ttl = min_ttl;
    l->lease_cap = 16;
    l->key_cap = 16;
    l->leases = calloc(l->lease_cap, sizeof *l->leases);
    l->keys = calloc(l->key_cap, sizeof *l->keys);
    if (l->leases == NULL || l->keys == NULL || RAND_bytes((uint8_t *)&l->seed, 8) != 1) {
        lessor_free(l);
        return LSKV_ENOMEM;
    }
    *out = l;
    return 0;
}

void lessor_free(lessor *l)
{
    if (l == NULL)
        return;
    if (l->leases != NULL && l->keys != NULL)
        clear(l);
    free(l->leases);
    free(l->keys);
    free(l->unclocked);
    free(l);
}

size_t lessor_count(const lessor *l)
{
    return l->n_leases;
}

void lessor_stats(const lessor *l, struct lessor_stats *out)
{
    *out = l->stats;
}

/* ---- replicated state ---- */

static int add_lease(lessor *l, int64_t id, int64_t ttl)
{
    int rv = grow_leases(l);
    if (rv != 0)
        return rv;
    struct lease *x = calloc(1, sizeof *x);
    if (x == NULL)
        return LSKV_ENOMEM;
    x->id = id;
    x->ttl = ttl;
    size_t s = id_slot(l, id);
    x->hnext = l->leases[s];
    l->leases[s] = x;
    l->n_leases++;
    return 0;
}

int lessor_grant(lessor *l, int64_t id, int64_t ttl, int64_t *granted)
{
    if (id == 0)
        return LSKV_ELEASENOTFOUND;
    if (ttl > LEASE_MAX_TTL)
        return LSKV_ELEASETTLTOOLARGE;
    if (find_lease(l, id) != NULL)
        return LSKV_ELEASEEXISTS;
    if (ttl < l->min_ttl)
        ttl = l->min_ttl;
    if (l->n_unclocked == l->unclocked_cap) {
        size_t cap = l->unclocked_cap ? l->unclocked_cap * 2 : 16;
        int64_t *p = realloc(l->unclocked, cap * sizeof *p);
        if (p == NULL)
            return LSKV_ENOMEM;
        l->unclocked = p;
        l->unclocked_cap = cap;
    }
    int rv = add_lease(l, id, ttl);
    if (rv != 0)
        return rv;
    l->unclocked[l->n_unclocked++] = id;
    *granted = ttl;
    l->stats.granted++;
    return 0;
}

bool lessor_exists(const lessor *l, int64_t id)
{
    return find_lease(l, id) != NULL;
}

int64_t lessor_lease_of(const lessor *l, const uint8_t *key, size_t key_len)
{
    struct lkey *k = *find_key_slot(l, key, key_len);
    return k ? k->lease->id : 0;
}

static void unlink_from_lease(struct lkey *k)
{
    struct lease *x = k->lease;
    if (k->prev)
        k->prev->next = k->next;
    else
        x->keys = k->next;
    if (k->next)
        k->next->prev = k->prev;
    x->n_keys--;
}

static void link_to_lease(struct lkey *k, struct lease *x)
{
    k->lease = x;
    k->prev = NULL;
    k->next = x->keys;
    if (x->keys)
        x->keys->prev = k;
    x->keys = k;
    x->n_keys++;
}

int lessor_set_key(lessor *l, const uint8_t *key, size_t key_len, int64_t id)
{
    struct lease *x = NULL;
    if (id != 0 && (x = find_lease(l, id)) == NULL)
        return LSKV_ELEASENOTFOUND;
    struct lkey **slot = find_key_slot(l, key, key_len);
    struct lkey *k = *slot;
    if (k != NULL) {
        if (k->lease == x)
            return 0;
        unlink_from_lease(k);
        if (x != NULL) {
            link_to_lease(k, x);
            return 0;
        }
        *slot = k->hnext;
        free(k);
        l->n_keys--;
        return 0;
    }
    if (x == NULL)
        return 0;
    int rv = grow_keys(l);
    if (rv != 0)
        return rv;
    k = malloc(sizeof *k + key_len);
    if (k == NULL)
        return LSKV_ENOMEM;
    k->len = key_len;
    if (key_len)
        memcpy(k->key, key, key_len);
    size_t s = key_hash(l, key, key_len) & (l->key_cap - 1);
    k->hnext = l->keys[s];
    l->keys[s] = k;
    l->n_keys++;
    link_to_lease(k, x);
    return 0;
}

static int key_cmp(const void *a, const void *b)
{
    const struct lkey *x = *(const struct lkey *const *)a;
    const struct lkey *y = *(const struct lkey *const *)b;
    return bytes_order(x->key, x->len, y->key, y->len);
}

/* The keys of x sorted, as a malloc'ed array. */
static int sorted_keys(const struct lease *x, struct lkey ***out)
{
    struct lkey **v = malloc((x->n_keys ? x->n_keys : 1) * sizeof *v);
    if (v == NULL)
        return LSKV_ENOMEM;
    size_t i = 0;
    for (struct lkey *k = x->keys; k != NULL; k = k->next)
        v[i++] = k;
    qsort(v, x->n_keys, sizeof *v, key_cmp);
    *out = v;
    return 0;
}

int lessor_keys(const lessor *l, int64_t id, struct arena *a, uint8_t ***keys, size_t **lens,
                size_t *n)
{
    const struct lease *x = find_lease(l, id);
    if (x == NULL)
        return LSKV_ELEASENOTFOUND;
    struct lkey **v;
    int rv = sorted_keys(x, &v);
    if (rv != 0)
        return rv;
    size_t m = x->n_keys;
    uint8_t **ks = arena_alloc(a, (m ? m : 1) * sizeof *ks);
    size_t *ls = arena_alloc(a, (m ? m : 1) * sizeof *ls);
    for (size_t i = 0; ks != NULL && ls != NULL && i < m; i++) {
        if ((ks[i] = arena_alloc(a, v[i]->len ? v[i]->len : 1)) == NULL) {
            ks = NULL;
            break;
        }
        if (v[i]->len)
            memcpy(ks[i], v[i]->key, v[i]->len);
        ls[i] = v[i]->len;
    }
    free(v);
    if (ks == NULL || ls == NULL)
        return LSKV_ENOMEM;
    *keys = ks;
    *lens = ls;
    *n = m;
    return 0;
}

int lessor_remove(lessor *l, int64_t id)
{
    struct lease **p = &l->leases[id_slot(l, id)];
    while (*p != NULL && (*p)->id != id)
        p = &(*p)->hnext;
    struct lease *x = *p;
    if (x == NULL)
        return LSKV_ELEASENOTFOUND;
    while (x->keys != NULL) {
        struct lkey *k = x->keys;
        unlink_from_lease(k);
        struct lkey **slot = find_key_slot(l, k->key, k->len);
        *slot = k->hnext;
        free(k);
        l->n_keys--;
    }
    *p = x->hnext;
    free(x);
    l->n_leases--;
    l->stats.revoked++;
    return 0;
}

/* ---- leader-local time ---- */

int lessor_info(const lessor *l, int64_t id, uint64_t now_ms, struct lease_info *out)
{
    const struct lease *x = find_lease(l, id);
    if (x == NULL)
        return LSKV_ELEASENOTFOUND;
    out->id = id;
    out->granted_ttl = x->ttl;
    if (x->expiry_ms == 0)
        out->remaining_ms = x->ttl * 1000;
    else
        out->remaining_ms = x->expiry_ms > now_ms ? (int64_t)(x->expiry_ms - now_ms) : 0;
    out->n_keys = x->n_keys;
    return 0;
}

static int id_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int lessor_ids(const lessor *l, struct arena *a, int64_t **ids, size_t *n)
{
    int64_t *v = arena_alloc(a, (l->n_leases ? l->n_leases : 1) * sizeof *v);
    if (v == NULL)
        return LSKV_ENOMEM;
    size_t m = 0;
    for (size_t i = 0; i < l->lease_cap; i++)
        for (const struct lease *x = l->leases[i]; x != NULL; x = x->hnext)
            v[m++] = x->id;
    qsort(v, m, sizeof *v, id_cmp);
    *ids = v;
    *n = m;
    return 0;
}

void lessor_start_clocks(lessor *l, uint64_t now_ms, uint64_t extend_ms, bool restart)
{
    if (restart) {
        for (size_t i = 0; i < l->lease_cap; i++) {
            for (struct lease *x = l->leases[i]; x != NULL; x = x->hnext) {
                x->expiry_ms = now_ms + (uint64_t)x->ttl * 1000 + extend_ms;
                x->revoke_retry_ms = 0;
            }
        }
    } else {
        /* Only the leases granted since the last call (a revoked one is
         * gone: skipped). */
        for (size_t i = 0; i < l->n_unclocked; i++) {
            struct lease *x = find_lease(l, l->unclocked[i]);
            if (x != NULL && x->expiry_ms == 0)
                x->expiry_ms = now_ms + (uint64_t)x->ttl * 1000 + extend_ms;
        }
    }
    l->n_unclocked = 0;
}

int lessor_renew(lessor *l, int64_t id, uint64_t now_ms, int64_t *ttl)
{
    struct lease *x = find_lease(l, id);
    if (x == NULL || (x->expiry_ms != 0 && x->expiry_ms <= now_ms))
        return LSKV_ELEASENOTFOUND;
    x->expiry_ms = now_ms + (uint64_t)x->ttl * 1000;
    *ttl = x->ttl;
    l->stats.renewed++;
    return 0;
}

struct expired {
    uint64_t expiry;
    int64_t id;
};

static int expired_cmp(const void *a, const void *b)
{
    const struct expired *x = a, *y = b;
    if (x->expiry != y->expiry)
        return x->expiry < y->expiry ? -1 : 1;
    return id_cmp(&x->id, &y->id);
}

size_t lessor_expired(lessor *l, uint64_t now_ms, uint64_t retry_ms, int64_t *ids, size_t max)
{
    size_t n = 0, cap = 0;
    struct expired *v = NULL;
    for (size_t i = 0; i < l->lease_cap; i++) {
        for (struct lease *x = l->leases[i]; x != NULL; x = x->hnext) {
            if (x->expiry_ms == 0 || x->expiry_ms > now_ms || x->revoke_retry_ms > now_ms)
                continue;
            if (n == cap) {
                size_t c = cap ? cap * 2 : 64;
                struct expired *p = realloc(v, c * sizeof *p);
                if (p == NULL)
                    goto done; /* try the rest next time */
                v = p;
                cap = c;
            }
            v[n++] = (struct expired){x->expiry_ms, x->id};
        }
    }
done:
    if (n > 0)
        qsort(v, n, sizeof *v, expired_cmp);
    if (n > max)
        n = max;
    for (size_t i = 0; i < n; i++) {
        ids[i] = v[i].id;
        find_lease(l, v[i].id)->revoke_retry_ms = now_ms + retry_ms;
    }
    free(v);
    return n;
}

/* ---- snapshots ---- */

int lessor_encode(const lessor *l, uint8_t **out, size_t *out_len)
{
    struct arena a;
    arena_init(&a);
    int64_t *ids;
    size_t n;
    int rv = lessor_ids(l, &a, &ids, &n);
    if (rv != 0)
        goto out;
    size_t total = 1 + 4 + n * (8 + 8 + 4);
    for (size_t i = 0; i < l->key_cap; i++)
        for (const struct lkey *k = l->keys[i]; k != NULL; k = k->hnext)
            total += 4 + k->len;
    uint8_t *buf = malloc(total);
    rv = LSKV_ENOMEM;
    if (buf == NULL)
        goto out;
    buf[0] = SNAPSHOT_VERSION;
    put_u32be(buf + 1, (uint32_t)n);
    size_t off = 5;
    for (size_t i = 0; i < n; i++) {
        const struct lease *x = find_lease(l, ids[i]);
        struct lkey **v;
        if (sorted_keys(x, &v) != 0) {
            free(buf);
            goto out;
        }
        put_u64be(buf + off, (uint64_t)x->id);
        put_u64be(buf + off + 8, (uint64_t)x->ttl);
        put_u32be(buf + off + 16, (uint32_t)x->n_keys);
        off += 20;
        for (size_t j = 0; j < x->n_keys; j++) {
            put_u32be(buf + off, (uint32_t)v[j]->len);
            if (v[j]->len)
                memcpy(buf + off + 4, v[j]->key, v[j]->len);
            off += 4 + v[j]->len;
        }
        free(v);
    }
    *out = buf;
    *out_len = off;
    rv = 0;
out:
    arena_close(&a);
    return rv;
}

int lessor_decode(lessor *l, const uint8_t *buf, size_t len)
{
    clear(l);
    if (len < 5)
        return LSKV_ECORRUPT;
    if (buf[0] != SNAPSHOT_VERSION)
        return LSKV_EFORMAT;
    uint32_t n = get_u32be(buf + 1);
    size_t off = 5;
    int rv = 0;
    int64_t prev_id = 0;
    for (uint32_t i = 0; i < n && rv == 0; i++) {
        if (len - off < 20) {
            rv = LSKV_ECORRUPT;
            break;
        }
        int64_t id = (int64_t)get_u64be(buf + off);
        int64_t ttl = (int64_t)get_u64be(buf + off + 8);
        uint32_t k = get_u32be(buf + off + 16);
        off += 20;
        /* Ids strictly increase: a repeat or an unsorted table is not ours. */
        if (id <= prev_id || ttl < 1 || ttl > LEASE_MAX_TTL) {
            rv = LSKV_ECORRUPT;
            break;
        }
        prev_id = id;
        if ((rv = add_lease(l, id, ttl)) != 0)
            break;
        const uint8_t *prev = NULL;
        size_t prev_len = 0;
        for (uint32_t j = 0; j < k && rv == 0; j++) {
            if (len - off < 4 || len - off - 4 < get_u32be(buf + off)) {
                rv = LSKV_ECORRUPT;
                break;
            }
            size_t kl = get_u32be(buf + off);
            const uint8_t *key = buf + off + 4;
            off += 4 + kl;
            /* Keys strictly increase (one encoding per state); a key is in
             * one lease only. */
            if ((prev != NULL && bytes_order(prev, prev_len, key, kl) >= 0) ||
                lessor_lease_of(l, key, kl) != 0)
                rv = LSKV_ECORRUPT;
            else
                rv = lessor_set_key(l, key, kl, id);
            prev = key;
            prev_len = kl;
        }
    }
    if (rv == 0 && off != len)
        rv = LSKV_ECORRUPT;
    if (rv != 0)
        clear(l);
    return rv;
}

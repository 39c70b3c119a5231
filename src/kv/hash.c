/* etcd's HashKV (mvcc/kvstore.go hashByRev), over the trusted state, so that
 * lskvd and etcd (or two members) holding the same history give the same
 * number.
 *
 * etcd hashes its bolt "key" bucket: CRC-32C of "key", then, in revision
 * order, every (revision key, marshalled mvccpb.KeyValue) with main <= rev,
 * where a revision key is main and sub as big-endian u64s around '_', plus
 * 't' for a tombstone (whose KeyValue holds only the key). Revisions at or
 * below the compaction point are the compaction's survivors (each key's
 * newest one, unless a tombstone); of those, only the ones its index "keeps"
 * at rev count (each key's newest revision <= rev, if the key exists then),
 * unless nothing is kept at all, when all of them count.
 *
 * Here the survivors are the index's revisions at or below the compaction
 * point, the later ones come from the revision log (kvstore_history), and
 * every record is read back through the verified path: a hash is never
 * computed over a forged record. Records are read into an arena that is
 * emptied every HASH_WINDOW revisions (or survivors): the memory a hash
 * takes is bounded by a window, not by the store. */
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/crc32c.h"
#include "common/err.h"
#include "kv/kvstore_impl.h"
#include "proto/kv.pb-c.h"

#define HASH_WINDOW 64

struct hash_walk {
    uint32_t crc;
    struct arena *a; /* the window's */
};

static int hash_record(struct hash_walk *w, const struct kv_record *rec, int64_t main, int64_t sub)
{
    uint8_t rk[18];
    put_u64be(rk, (uint64_t)main);
    rk[8] = '_';
    put_u64be(rk + 9, (uint64_t)sub);
    rk[17] = 't';
    Mvccpb__KeyValue kv = MVCCPB__KEY_VALUE__INIT;
    kv.key = (ProtobufCBinaryData){.data = (uint8_t *)rec->key, .len = rec->key_len};
    if (!rec->tombstone) {
        kv.create_revision = rec->create_revision;
        kv.mod_revision = main;
        kv.version = rec->version;
        kv.value = (ProtobufCBinaryData){.data = (uint8_t *)rec->value, .len = rec->value_len};
        kv.lease = rec->lease;
    }
    size_t n = mvccpb__key_value__get_packed_size(&kv);
    uint8_t *buf = arena_alloc(w->a, n ? n : 1);
    if (buf == NULL)
        return LSKV_ENOMEM;
    mvccpb__key_value__pack(&kv, buf);
    w->crc = crc32c_update(w->crc, rk, rec->tombstone ? 18 : 17);
    w->crc = crc32c_update(w->crc, buf, n);
    return 0;
}

static int hash_history(void *arg, const struct kv_record *rec, int64_t main, int64_t sub)
{
    return hash_record(arg, rec, main, sub);
}

/* A compaction survivor, and whether etcd's keep set at rev has it. */
struct survivor {
    struct kvindex_rev rev;
    bool kept;
};

static int survivor_cmp(const void *a, const void *b)
{
    const struct kvindex_rev *x = &((const struct survivor *)a)->rev;
    const struct kvindex_rev *y = &((const struct survivor *)b)->rev;
    if (x->main != y->main)
        return x->main < y->main ? -1 : 1;
    return (x->sub > y->sub) - (x->sub < y->sub);
}

struct survivors {
    int64_t compact;
    struct survivor *all;
    size_t n, cap;
    bool found; /* this key has one */
};

static int take_survivor(void *arg, const kvindex_entry *e, struct kvindex_rev rev, bool tombstone)
{
    (void)e;
    struct survivors *s = arg;
    if (rev.main > s->compact)
        return 1; /* oldest first: the rest are newer */
    if (tombstone)
        return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 256;
        struct survivor *p = realloc(s->all, cap * sizeof *p);
        if (p == NULL)
            return LSKV_ENOMEM;
        s->all = p;
        s->cap = cap;
    }
    s->all[s->n].rev = rev;
    s->found = true;
    return 0;
}

int kvstore_hash_kv(kvstore *kv, int64_t rev, uint32_t *hash, int64_t *compact_rev,
                    char *errmsg)
{
    int64_t compact = kv->compact_main;
    *compact_rev = compact;
    if (rev > 0 && rev <= compact)
        return LSKV_ECOMPACTED;
    if (rev > kv->rev)
        return LSKV_EFUTUREREV;
    if (rev <= 0)
        rev = kv->rev;
    /* The survivors that count, and whether etcd's keep set is empty. */
    struct survivors s = {.compact = compact};
    bool keep_any = false;
    int rv = 0;
    for (const kvindex_entry *e = kvindex_seek(kv->ix, NULL, 0); e && rv == 0;
         e = kvindex_next(e)) {
        struct kvindex_hit hit;
        bool kept = kvindex_entry_get(e, rev, &hit);
        keep_any |= kept;
        s.found = false;
        rv = kvindex_entry_since(e, 0, take_survivor, &s);
        if (rv == 1)
            rv = 0;
        if (rv == 0 && s.found) {
            struct survivor *x = &s.all[s.n++];
            x->kept = kept && hit.mod.main == x->rev.main && hit.mod.sub == x->rev.sub;
        }
    }
    struct arena a;
    arena_init(&a);
    struct hash_walk w = {.crc = crc32c_update(0, (const uint8_t *)"key", 3), .a = &a};
    if (rv == 0 && s.n > 0)
        qsort(s.all, s.n, sizeof *s.all, survivor_cmp);
    size_t read = 0;
    for (size_t i = 0; i < s.n && rv == 0; i++) {
        if (!s.all[i].kept && keep_any)
            continue;
        if (read++ % HASH_WINDOW == 0) {
            arena_close(&a);
            arena_init(&a);
        }
        struct kvindex_rev r = s.all[i].rev;
        struct kv_record rec;
        rv = recstore_get(kv->rs, r.main, r.sub, &a, &rec, errmsg);
        if (rv == 0)
            rv = hash_record(&w, &rec, r.main, r.sub);
    }
    free(s.all);
    static const uint8_t zero = 0;
    ProtobufCBinaryData all = {.data = (uint8_t *)&zero, .len = 1};
    for (int64_t lo = compact > 0 ? compact + 1 : 1; rv == 0 && lo <= rev; lo += HASH_WINDOW) {
        arena_close(&a);
        arena_init(&a);
        int64_t hi = lo + HASH_WINDOW - 1 < rev ? lo + HASH_WINDOW - 1 : rev;
        rv = kvstore_history(kv, &all, &all, lo, hi, &a, hash_history, &w, errmsg);
    }
    arena_close(&a);
    *hash = w.crc;
    return rv;
}

/* The trusted key index: an AVL tree of keys, each with its generations.
 *
 * Why an AVL tree: worst-case O(log n) for every operation whatever keys
 * clients choose (a skip list would need randomness, which kv/ may not use),
 * in-order iteration through parent pointers for range scans, and nodes that
 * never move, so entries can be held by pointer (undo log, iteration during
 * delete-range and compaction).
 *
 * A generation stores its revisions as two parallel arrays in one block:
 * cap int64 mains followed by cap uint32 subs (12 bytes per revision). A
 * request's sub revision is bounded by its change count, far below 2^32
 * (kvstore checks). Revisions are sorted, so a lookup at any revision is a
 * binary search over generations (by first revision) and then over revisions:
 * reading a hot key at the latest revision does not walk its history.
 *
 * Memory (the trusted core holds every key: see docs/ or bench "mem" rows):
 * a key with one put and nothing else, the common case, is one allocation
 * of 40 bytes plus the key, its revision packed inline (main < 2^47, sub <
 * 2^16; the "one-put form"); any other key points to a struct gens. Readers
 * see both forms through entry_gens; writers unpack first (the only step
 * that may fail) and pack again when a key is back to one put. Entries come
 * from slabs by size class, not malloc (its 8-byte header and 16-byte
 * rounding were 10 of the 64 bytes of a 16-byte key's entry). Hash slots
 * are 8 bytes: the entry's address with 16 bits of its hash above it.
 *
 * Exact-key lookups (kvindex_find, and kvindex_put of an existing key) go
 * through a hash table over the entries first: a tree walk costs one cache
 * miss per level (17 levels for 100k keys; kvindex_find was 21 % of a
 * serializable Range and 7 % of a Put in perf). The table is an accelerator,
 * never the only way to a key: open addressing with linear probing, at most
 * three quarters full (HT_FULL), and an entry is placed at most HT_MAX_PROBE slots from its home
 * or not at all (then ix->unhashed counts it and a lookup that misses in the
 * table walks the tree). So colliding keys chosen by a client cost at worst
 * HT_MAX_PROBE probes plus the tree walk, with a fixed, unkeyed hash and no
 * randomness. Removal shifts later slots back (no tombstones), which only
 * brings entries closer to their home. */
#include "kv/index.h"

#include <assert.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/err.h"
#include "common/hash64.h"

struct gen {
    int64_t ver;     /* puts + tombstones ever appended to this generation */
    int64_t created; /* main revision of the generation's first put */
    uint32_t n;      /* revisions held */
    uint32_t cap;    /* capacity of block */
    void *block;     /* int64_t mains[cap], then uint32_t subs[cap] */
};

/* A key's generations, oldest first; the last one is the open generation. */
struct gens {
    uint32_t n, cap;
    struct gen g[];
};

enum {
    E_HASHED = 1, /* in the hash table (else counted in ix->unhashed) */
    E_ONE = 2,    /* the one-put form: u.one */
};
#define ONE_SUB_BITS 16
#define ONE_MAIN_MAX (((int64_t)1 << 47) - 1)

struct kvindex_entry {
    struct kvindex_entry *left, *right, *parent;
    union {
        uint64_t one;      /* E_ONE: main << ONE_SUB_BITS | sub; ver 1, created main */
        struct gens *gens; /* otherwise */
    } u;
    uint32_t key_len;
    uint8_t height; /* AVL height, leaf = 1 (a tree of 2^64 nodes is under 94) */
    uint8_t flags;  /* E_* */
    uint8_t key[];
};

/* A hash slot: 0 empty, else the entry's address (below 2^48; entries above
 * are left unhashed) with the top 16 bits of its key's hash above it. */
typedef uint64_t ht_slot;
#define HT_PTR_BITS 48
#define HT_PTR_MASK (((uint64_t)1 << HT_PTR_BITS) - 1)

enum { HT_MIN_CAP = 64, HT_MAX_PROBE = 32 };
/* Whether count entries overfill a table of cap slots. Three quarters, not
 * one half: the table is 11-21 bytes a key instead of 16-32 (8-byte slots),
 * for about 2.5 slots probed per hit, all in one or two cache lines. */
#define HT_FULL(count, cap) ((count) * 4 > (cap) * 3)

/* Entry slabs: entries of up to SLAB_MAX_ENTRY bytes (rounded up to 8) are
 * cut from SLAB_BYTES blocks, one class per size; a freed entry goes on its
 * class's free list (the link in its first 8 bytes) for the next entry of
 * that size. Blocks are returned with the index. Larger entries use malloc. */
#define SLAB_BYTES ((size_t)64 * 1024)
#define SLAB_MAX_ENTRY 256
struct slab {
    struct slab *next;
    uint64_t mem[]; /* SLAB_BYTES */
};
struct slab_class {
    void *free;        /* freed entries */
    uint8_t *bump;     /* unused tail of the newest block */
    size_t left;
};

struct kvindex {
    kvindex_entry *root;
    struct slab *slabs;
    struct slab_class cls[SLAB_MAX_ENTRY / 8 + 1]; /* by size / 8 */
    size_t size; /* entries */
    size_t live; /* entries whose last generation is non-empty */
    size_t revs; /* revisions over all entries */
    ht_slot *ht;        /* NULL: no table yet (every lookup walks the tree) */
    size_t ht_cap;      /* slots, a power of two */
    size_t ht_count;    /* hashed entries */
    size_t unhashed;    /* entries not in the table (while ht != NULL) */
};

/* ---- generations ---- */

static inline int64_t *gen_mains(const struct gen *g)
{
    return (int64_t *)g->block;
}

static inline uint32_t *gen_subs(const struct gen *g)
{
    return (uint32_t *)((int64_t *)g->block + g->cap);
}

static inline struct kvindex_rev gen_rev(const struct gen *g, uint32_t i)
{
    struct kvindex_rev r = {gen_mains(g)[i], gen_subs(g)[i]};
    return r;
}

/* Resizes g's block to new_cap (>= g->n). */
static int gen_set_cap(struct gen *g, uint32_t new_cap)
{
    if (new_cap == g->cap)
        return 0;
    void *block = malloc((size_t)new_cap * (sizeof(int64_t) + sizeof(uint32_t)));
    if (block == NULL)
        return LSKV_ENOMEM;
    if (g->n > 0) {
        memcpy(block, gen_mains(g), g->n * sizeof(int64_t));
        memcpy((int64_t *)block + new_cap, gen_subs(g), g->n * sizeof(uint32_t));
    }
    free(g->block);
    g->block = block;
    g->cap = new_cap;
    return 0;
}

static int gen_reserve(struct gen *g, uint32_t extra)
{
    if (g->n + extra <= g->cap)
        return 0;
    uint32_t cap = g->cap < 2 ? 2 : g->cap;
    while (cap < g->n + extra)
        cap = cap > UINT32_MAX / 2 ? UINT32_MAX : cap * 2;
    return gen_set_cap(g, cap);
}

static void gen_append(struct gen *g, struct kvindex_rev r)
{
    assert(g->n < g->cap);
    gen_mains(g)[g->n] = r.main;
    gen_subs(g)[g->n] = (uint32_t)r.sub;
    g->n++;
}

/* Drops the first k revisions of g, shrinking the block when mostly unused. */
static void gen_drop_front(struct gen *g, uint32_t k)
{
    if (k == 0)
        return;
    uint32_t rest = g->n - k;
    memmove(gen_mains(g), gen_mains(g) + k, rest * sizeof(int64_t));
    memmove(gen_subs(g), gen_subs(g) + k, rest * sizeof(uint32_t));
    g->n = rest;
    if (g->cap > 8 && g->n < g->cap / 4)
        (void)gen_set_cap(g, g->n < 2 ? 2 : g->n * 2); /* on ENOMEM keep the big block */
}

/* Index of the newest revision of g with main <= at, or -1. */
static int64_t gen_find(const struct gen *g, int64_t at)
{
    const int64_t *m = gen_mains(g);
    uint32_t lo = 0, hi = g->n; /* first index with main > at lies in [lo, hi] */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (m[mid] <= at)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (int64_t)lo - 1;
}

/* ---- the two forms of an entry ---- */

/* Room to expand the one-put form into (entry_gens). The block is laid out
 * as gen_mains/gen_subs expect for cap 1: main at byte 0, sub at byte 8. */
struct gview {
    struct gen g;
    union {
        int64_t m[2];
        uint32_t s[4];
    } blk;
};

static inline bool one_fits(struct kvindex_rev r)
{
    return r.main >= 1 && r.main <= ONE_MAIN_MAX && r.sub >= 0 &&
           r.sub < ((int64_t)1 << ONE_SUB_BITS);
}

static inline struct kvindex_rev one_rev(uint64_t one)
{
    struct kvindex_rev r = {(int64_t)(one >> ONE_SUB_BITS),
                            (int64_t)(one & (((uint64_t)1 << ONE_SUB_BITS) - 1))};
    return r;
}

/* e's generations as an array (*ngens of them), whatever e's form. */
static inline const struct gen *entry_gens(const kvindex_entry *e, struct gview *v,
                                           uint32_t *ngens)
{
    if (!(e->flags & E_ONE)) {
        *ngens = e->u.gens->n;
        return e->u.gens->g;
    }
    struct kvindex_rev r = one_rev(e->u.one);
    v->blk.m[0] = r.main;
    v->blk.m[1] = 0;
    v->blk.s[2] = (uint32_t)r.sub;
    v->g = (struct gen){.ver = 1, .created = r.main, .n = 1, .cap = 1, .block = v->blk.m};
    *ngens = 1;
    return &v->g;
}

/* The open generation of an unpacked entry. */
static inline struct gen *last_gen(const kvindex_entry *e)
{
    assert(!(e->flags & E_ONE));
    return &e->u.gens->g[e->u.gens->n - 1];
}

/* Turns e into the general form. Errors: LSKV_ENOMEM (e unchanged). */
static int entry_unpack(kvindex_entry *e)
{
    if (!(e->flags & E_ONE))
        return 0;
    struct gens *gs = malloc(sizeof(*gs) + sizeof(struct gen));
    if (gs == NULL)
        return LSKV_ENOMEM;
    gs->n = gs->cap = 1;
    struct gen *g = &gs->g[0];
    *g = (struct gen){0};
    struct kvindex_rev r = one_rev(e->u.one);
    if (gen_reserve(g, 1) != 0) { /* room for the write that unpacks */
        free(gs);
        return LSKV_ENOMEM;
    }
    gen_append(g, r);
    g->ver = 1;
    g->created = r.main;
    e->u.gens = gs;
    e->flags &= (uint8_t)~E_ONE;
    return 0;
}

/* Back to the one-put form when e holds just one put that fits. */
static void entry_maybe_pack(kvindex_entry *e)
{
    if (e->flags & E_ONE)
        return;
    struct gens *gs = e->u.gens;
    if (gs->n != 1 || gs->g[0].n != 1 || gs->g[0].ver != 1)
        return;
    struct gen *g = &gs->g[0];
    struct kvindex_rev r = gen_rev(g, 0);
    if (g->created != r.main || !one_fits(r))
        return;
    free(g->block);
    free(gs);
    e->u.one = ((uint64_t)r.main << ONE_SUB_BITS) | (uint64_t)r.sub;
    e->flags |= E_ONE;
}

static inline bool rev_less(struct kvindex_rev a, struct kvindex_rev b)
{
    return a.main < b.main || (a.main == b.main && a.sub < b.sub);
}

/* The newest revision of the key, or {0,0} when it has none. */
static inline struct kvindex_rev entry_latest(const kvindex_entry *e)
{
    struct gview v;
    uint32_t ngens;
    const struct gen *gens = entry_gens(e, &v, &ngens);
    for (uint32_t i = ngens; i-- > 0;) {
        const struct gen *g = &gens[i];
        if (g->n > 0)
            return gen_rev(g, g->n - 1);
    }
    struct kvindex_rev none = {0, 0};
    return none;
}

/* ---- AVL tree ---- */

static inline int32_t height(const kvindex_entry *n)
{
    return n ? n->height : 0;
}

static inline void update_height(kvindex_entry *n)
{
    int32_t l = height(n->left), r = height(n->right);
    n->height = (uint8_t)(1 + (l > r ? l : r));
}

static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0)
        return c;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

/* Makes v take u's place under u's parent. */
static void replace_child(kvindex *ix, kvindex_entry *u, kvindex_entry *v)
{
    if (u->parent == NULL)
        ix->root = v;
    else if (u->parent->left == u)
        u->parent->left = v;
    else
        u->parent->right = v;
    if (v != NULL)
        v->parent = u->parent;
}

static kvindex_entry *rotate_left(kvindex *ix, kvindex_entry *x)
{
    kvindex_entry *y = x->right;
    x->right = y->left;
    if (y->left)
        y->left->parent = x;
    replace_child(ix, x, y);
    y->left = x;
    x->parent = y;
    update_height(x);
    update_height(y);
    return y;
}

static kvindex_entry *rotate_right(kvindex *ix, kvindex_entry *x)
{
    kvindex_entry *y = x->left;
    x->left = y->right;
    if (y->right)
        y->right->parent = x;
    replace_child(ix, x, y);
    y->right = x;
    x->parent = y;
    update_height(x);
    update_height(y);
    return y;
}

/* Restores the AVL property from n up to the root. */
static void rebalance(kvindex *ix, kvindex_entry *n)
{
    while (n != NULL) {
        update_height(n);
        int32_t bf = height(n->left) - height(n->right);
        if (bf > 1) {
            if (height(n->left->left) < height(n->left->right))
                rotate_left(ix, n->left);
            n = rotate_right(ix, n);
        } else if (bf < -1) {
            if (height(n->right->right) < height(n->right->left))
                rotate_right(ix, n->right);
            n = rotate_left(ix, n);
        }
        n = n->parent;
    }
}

static kvindex_entry *leftmost(kvindex_entry *n)
{
    while (n && n->left)
        n = n->left;
    return n;
}

static void tree_remove(kvindex *ix, kvindex_entry *z)
{
    kvindex_entry *fix;
    if (z->left == NULL) {
        fix = z->parent;
        replace_child(ix, z, z->right);
    } else if (z->right == NULL) {
        fix = z->parent;
        replace_child(ix, z, z->left);
    } else {
        kvindex_entry *y = leftmost(z->right);
        if (y->parent != z) {
            fix = y->parent;
            replace_child(ix, y, y->right);
            y->right = z->right;
            y->right->parent = y;
        } else {
            fix = y;
        }
        replace_child(ix, z, y);
        y->left = z->left;
        y->left->parent = y;
        y->height = z->height;
    }
    rebalance(ix, fix);
}

/* ---- entry slabs ---- */

#if defined(__SANITIZE_ADDRESS__)
/* Keep ASan's use-after-free checks on entries cut from slabs (declared
 * without const: gcc would take a const pointer to unwritten memory as a read). */
void __asan_poison_memory_region(void volatile *addr, size_t size);
void __asan_unpoison_memory_region(void volatile *addr, size_t size);
#define POISON(p, n) __asan_poison_memory_region((p), (n))
#define UNPOISON(p, n) __asan_unpoison_memory_region((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

static inline size_t entry_bytes(size_t key_len)
{
    return (offsetof(kvindex_entry, key) + key_len + 7) & ~(size_t)7;
}

/* A zeroed entry with room for key_len key bytes, or NULL. */
static kvindex_entry *entry_alloc(kvindex *ix, size_t key_len)
{
    if (key_len > UINT32_MAX)
        return NULL;
    size_t sz = entry_bytes(key_len);
    void *p;
    if (sz > SLAB_MAX_ENTRY) {
        p = malloc(sz);
        if (p == NULL)
            return NULL;
    } else {
        struct slab_class *c = &ix->cls[sz / 8];
        if (c->free != NULL) {
            p = c->free;
            UNPOISON(p, sz);
            memcpy(&c->free, p, sizeof(void *));
        } else {
            if (c->left < sz) {
                struct slab *b = malloc(sizeof(*b) + SLAB_BYTES);
                if (b == NULL)
                    return NULL;
                b->next = ix->slabs;
                ix->slabs = b;
                c->bump = (uint8_t *)b->mem;
                c->left = SLAB_BYTES;
                POISON(c->bump, c->left);
            }
            p = c->bump;
            c->bump += sz;
            c->left -= sz;
            UNPOISON(p, sz);
        }
    }
    memset(p, 0, sz);
    return p;
}

static void entry_free(kvindex *ix, kvindex_entry *e)
{
    if (!(e->flags & E_ONE) && e->u.gens != NULL) {
        for (uint32_t i = 0; i < e->u.gens->n; i++)
            free(e->u.gens->g[i].block);
        free(e->u.gens);
    }
    size_t sz = entry_bytes(e->key_len);
    if (sz > SLAB_MAX_ENTRY) {
        free(e);
        return;
    }
    struct slab_class *c = &ix->cls[sz / 8];
    memcpy(e, &c->free, sizeof(void *));
    c->free = e;
    POISON(e, sz);
}

static void slabs_free(kvindex *ix)
{
    for (struct slab *b = ix->slabs, *next; b != NULL; b = next) {
        next = b->next;
        UNPOISON(b->mem, SLAB_BYTES);
        free(b);
    }
    ix->slabs = NULL;
}

/* A new entry in the one-put form of rev (which must fit). */
static kvindex_entry *entry_new_one(kvindex *ix, const uint8_t *key, size_t key_len,
                                    struct kvindex_rev rev)
{
    kvindex_entry *e = entry_alloc(ix, key_len);
    if (e == NULL)
        return NULL;
    e->u.one = ((uint64_t)rev.main << ONE_SUB_BITS) | (uint64_t)rev.sub;
    e->flags = E_ONE;
    e->key_len = (uint32_t)key_len;
    if (key_len)
        memcpy(e->key, key, key_len);
    e->height = 1;
    return e;
}

/* A new entry in the general form with one empty generation. */
static kvindex_entry *entry_new(kvindex *ix, const uint8_t *key, size_t key_len)
{
    kvindex_entry *e = entry_alloc(ix, key_len);
    if (e == NULL)
        return NULL;
    e->u.gens = calloc(1, sizeof(struct gens) + sizeof(struct gen));
    if (e->u.gens == NULL) {
        entry_free(ix, e);
        return NULL;
    }
    e->u.gens->n = e->u.gens->cap = 1;
    e->key_len = (uint32_t)key_len;
    if (key_len)
        memcpy(e->key, key, key_len);
    e->height = 1;
    return e;
}

/* ---- hash table (exact-key accelerator) ---- */

uint64_t kvindex_key_hash(const uint8_t *key, size_t len)
{
    return hash_bytes64(0, key, len);
}

static inline kvindex_entry *slot_entry(ht_slot s)
{
    return (kvindex_entry *)(uintptr_t)(s & HT_PTR_MASK);
}

static inline uint64_t slot_tag(uint64_t h)
{
    return h >> HT_PTR_BITS;
}

static inline uint64_t entry_hash(const kvindex_entry *e)
{
    return kvindex_key_hash(e->key, e->key_len);
}

/* Places e within HT_MAX_PROBE slots of its home; false if there is no room
 * (or e's address does not fit in a slot). */
static bool ht_place(ht_slot *ht, size_t cap, uint64_t h, kvindex_entry *e)
{
    if (((uint64_t)(uintptr_t)e & ~HT_PTR_MASK) != 0)
        return false;
    size_t mask = cap - 1;
    for (size_t d = 0, i = h & mask; d < HT_MAX_PROBE; d++, i = (i + 1) & mask) {
        if (ht[i] == 0) {
            ht[i] = slot_tag(h) << HT_PTR_BITS | (uint64_t)(uintptr_t)e;
            return true;
        }
    }
    return false;
}

static inline void set_hashed(kvindex_entry *e, bool on)
{
    e->flags = on ? (uint8_t)(e->flags | E_HASHED) : (uint8_t)(e->flags & ~E_HASHED);
}

/* Replaces the table by one of cap slots holding every entry that fits.
 * On ENOMEM the old table stays (still valid). */
static void ht_rebuild(kvindex *ix, size_t cap)
{
    ht_slot *ht = calloc(cap, sizeof(*ht));
    if (ht == NULL)
        return;
    size_t count = 0, unhashed = 0;
    for (kvindex_entry *e = kvindex_seek(ix, NULL, 0); e; e = kvindex_next(e)) {
        set_hashed(e, ht_place(ht, cap, entry_hash(e), e));
        if (e->flags & E_HASHED)
            count++;
        else
            unhashed++;
    }
    free(ix->ht);
    ix->ht = ht;
    ix->ht_cap = cap;
    ix->ht_count = count;
    ix->unhashed = unhashed;
}

/* Adds e, a new entry already in the tree. */
static void ht_add(kvindex *ix, kvindex_entry *e)
{
    if (HT_FULL(ix->ht_count + 1, ix->ht_cap)) {
        size_t cap = ix->ht_cap ? ix->ht_cap * 2 : HT_MIN_CAP;
        ht_rebuild(ix, cap); /* e is in the tree: placed (or counted) here */
        if (ix->ht_cap == cap)
            return;
    }
    /* Out of memory for a bigger table: never fill the old one past HT_FULL. */
    set_hashed(e, ix->ht != NULL && !HT_FULL(ix->ht_count + 1, ix->ht_cap) &&
                      ht_place(ix->ht, ix->ht_cap, entry_hash(e), e));
    if (e->flags & E_HASHED)
        ix->ht_count++;
    else if (ix->ht != NULL)
        ix->unhashed++;
}

/* Removes e, which is about to leave the tree. */
static void ht_del(kvindex *ix, kvindex_entry *e)
{
    if (ix->ht == NULL)
        return;
    if (!(e->flags & E_HASHED)) {
        ix->unhashed--;
        return;
    }
    size_t mask = ix->ht_cap - 1;
    size_t i = entry_hash(e) & mask;
    while (slot_entry(ix->ht[i]) != e)
        i = (i + 1) & mask;
    /* Backward shift: pull later members of the run into the hole when the
     * hole lies between their home and their slot (homes are rehashed: slots
     * keep only 16 bits of the hash). */
    for (size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
        ht_slot s = ix->ht[j];
        if (s == 0)
            break;
        size_t home = entry_hash(slot_entry(s)) & mask;
        bool movable = ((j - home) & mask) >= ((j - i) & mask);
        if (movable) {
            ix->ht[i] = s;
            i = j;
        }
    }
    ix->ht[i] = 0;
    ix->ht_count--;
    set_hashed(e, false);
}

static kvindex_entry *tree_find(const kvindex *ix, const uint8_t *key, size_t key_len)
{
    kvindex_entry *n = ix->root;
    while (n != NULL) {
        int c = key_cmp(key, key_len, n->key, n->key_len);
        if (c == 0)
            return n;
        n = c < 0 ? n->left : n->right;
    }
    return NULL;
}

/* ---- public: life cycle and lookups ---- */

int kvindex_new(kvindex **out)
{
    kvindex *ix = calloc(1, sizeof(*ix));
    if (ix == NULL)
        return LSKV_ENOMEM;
    *out = ix;
    return 0;
}

static void free_subtree(kvindex *ix, kvindex_entry *n)
{
    /* Iterative post-order through parent pointers: no recursion depth limits. */
    while (n != NULL) {
        if (n->left) {
            n = n->left;
        } else if (n->right) {
            n = n->right;
        } else {
            kvindex_entry *p = n->parent;
            if (p) {
                if (p->left == n)
                    p->left = NULL;
                else
                    p->right = NULL;
            }
            entry_free(ix, n);
            n = p;
        }
    }
}

void kvindex_free(kvindex *ix)
{
    if (ix == NULL)
        return;
    free_subtree(ix, ix->root);
    slabs_free(ix);
    free(ix->ht);
    free(ix);
}

size_t kvindex_size(const kvindex *ix)
{
    return ix->size;
}

size_t kvindex_live(const kvindex *ix)
{
    return ix->live;
}

size_t kvindex_unhashed(const kvindex *ix)
{
    return ix->unhashed;
}

size_t kvindex_revisions(const kvindex *ix)
{
    return ix->revs;
}

kvindex_entry *kvindex_find(const kvindex *ix, const uint8_t *key, size_t key_len)
{
    if (ix->ht != NULL) {
        uint64_t h = kvindex_key_hash(key, key_len), tag = slot_tag(h);
        size_t mask = ix->ht_cap - 1;
        for (size_t d = 0, i = h & mask; d < HT_MAX_PROBE; d++, i = (i + 1) & mask) {
            ht_slot s = ix->ht[i];
            if (s == 0)
                break;
            kvindex_entry *e = slot_entry(s);
            if (s >> HT_PTR_BITS == tag && e->key_len == key_len &&
                (key_len == 0 || memcmp(e->key, key, key_len) == 0))
                return e;
        }
        if (ix->unhashed == 0)
            return NULL;
    }
    return tree_find(ix, key, key_len);
}

kvindex_entry *kvindex_seek(const kvindex *ix, const uint8_t *key, size_t key_len)
{
    kvindex_entry *n = ix->root, *best = NULL;
    while (n != NULL) {
        int c = key_cmp(key, key_len, n->key, n->key_len);
        if (c == 0)
            return n;
        if (c < 0) {
            best = n;
            n = n->left;
        } else {
            n = n->right;
        }
    }
    return best;
}

kvindex_entry *kvindex_next(const kvindex_entry *e)
{
    if (e->right)
        return leftmost(e->right);
    const kvindex_entry *n = e;
    while (n->parent && n->parent->right == n)
        n = n->parent;
    return n->parent;
}

const uint8_t *kvindex_entry_key(const kvindex_entry *e, size_t *key_len)
{
    *key_len = e->key_len;
    return e->key;
}

bool kvindex_entry_live(const kvindex_entry *e)
{
    return (e->flags & E_ONE) || last_gen(e)->n > 0;
}

bool kvindex_entry_get(const kvindex_entry *e, int64_t at_rev, struct kvindex_hit *out)
{
    /* The generation that may hold at_rev is the last one whose first
     * revision is <= at_rev (etcd's findGeneration, by binary search). Only
     * the last generation may be empty. */
    struct gview v;
    uint32_t ngens;
    const struct gen *gens = entry_gens(e, &v, &ngens);
    uint32_t ng = ngens;
    if (gens[ngens - 1].n == 0)
        ng--;
    uint32_t lo = 0, hi = ng;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (gen_mains(&gens[mid])[0] <= at_rev)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return false;
    const struct gen *g = &gens[lo - 1];
    if (lo - 1 != ngens - 1 && gen_mains(g)[g->n - 1] <= at_rev)
        return false; /* deleted at or before at_rev */
    int64_t i = gen_find(g, at_rev);
    if (i < 0)
        return false;
    out->mod = gen_rev(g, (uint32_t)i);
    out->create_revision = g->created;
    out->version = g->ver - ((int64_t)g->n - 1 - i);
    return true;
}

bool kvindex_get(const kvindex *ix, const uint8_t *key, size_t key_len, int64_t at_rev,
                 struct kvindex_hit *out)
{
    const kvindex_entry *e = kvindex_find(ix, key, key_len);
    return e != NULL && kvindex_entry_get(e, at_rev, out);
}

int kvindex_entry_since(const kvindex_entry *e, int64_t since_main, kvindex_rev_cb cb,
                        void *arg)
{
    /* Collapse revisions sharing a main into the last one, as etcd does. */
    struct gview v;
    uint32_t ngens;
    const struct gen *gens = entry_gens(e, &v, &ngens);
    for (uint32_t gi = 0; gi < ngens; gi++) {
        const struct gen *g = &gens[gi];
        if (g->n == 0 || gen_mains(g)[g->n - 1] < since_main)
            continue;
        int64_t start = gen_find(g, since_main - 1) + 1;
        for (uint32_t i = (uint32_t)start; i < g->n; i++) {
            struct kvindex_rev r = gen_rev(g, i);
            bool more_same = false;
            if (i + 1 < g->n)
                more_same = gen_mains(g)[i + 1] == r.main;
            else if (gi + 1 < ngens && gens[gi + 1].n > 0)
                more_same = gen_mains(&gens[gi + 1])[0] == r.main;
            if (more_same)
                continue;
            bool tomb = i == g->n - 1 && gi != ngens - 1;
            int rv = cb(arg, e, r, tomb);
            if (rv != 0)
                return rv;
        }
    }
    return 0;
}

/* ---- writes ---- */

int kvindex_put(kvindex *ix, const uint8_t *key, size_t key_len, struct kvindex_rev rev,
                kvindex_entry **entry)
{
    kvindex_entry *n = kvindex_find(ix, key, key_len), *parent = NULL;
    int c = 0;
    if (n == NULL) { /* a new key: find its place in the tree */
        n = ix->root;
        while (n != NULL) {
            c = key_cmp(key, key_len, n->key, n->key_len);
            parent = n;
            n = c < 0 ? n->left : n->right;
        }
    }
    if (n != NULL) {
        assert(rev_less(entry_latest(n), rev));
        int rv = entry_unpack(n);
        if (rv != 0)
            return rv;
        struct gen *g = last_gen(n);
        rv = gen_reserve(g, 1);
        if (rv != 0)
            return rv;
        if (g->n == 0) {
            g->created = rev.main;
            ix->live++;
        }
        gen_append(g, rev);
        g->ver++;
        ix->revs++;
        if (entry)
            *entry = n;
        return 0;
    }
    if (one_fits(rev)) {
        n = entry_new_one(ix, key, key_len, rev);
        if (n == NULL)
            return LSKV_ENOMEM;
    } else {
        n = entry_new(ix, key, key_len);
        if (n == NULL || gen_reserve(&n->u.gens->g[0], 1) != 0) {
            if (n)
                entry_free(ix, n);
            return LSKV_ENOMEM;
        }
        gen_append(&n->u.gens->g[0], rev);
        n->u.gens->g[0].ver = 1;
        n->u.gens->g[0].created = rev.main;
    }
    n->parent = parent;
    if (parent == NULL)
        ix->root = n;
    else if (c < 0)
        parent->left = n;
    else
        parent->right = n;
    rebalance(ix, parent);
    ht_add(ix, n);
    ix->size++;
    ix->live++;
    ix->revs++;
    if (entry)
        *entry = n;
    return 0;
}

int kvindex_tombstone(kvindex *ix, kvindex_entry *e, struct kvindex_rev rev)
{
    if (!kvindex_entry_live(e))
        return LSKV_ENOTFOUND;
    assert(rev_less(entry_latest(e), rev));
    if (entry_unpack(e) != 0)
        return LSKV_ENOMEM;
    struct gen *g = last_gen(e);
    if (gen_reserve(g, 1) != 0)
        return LSKV_ENOMEM;
    struct gens *gs = e->u.gens;
    if (gs->n == gs->cap) {
        uint32_t cap = gs->cap * 2;
        gs = realloc(gs, sizeof(*gs) + cap * sizeof(struct gen));
        if (gs == NULL)
            return LSKV_ENOMEM; /* the reserved slot in g is harmless */
        e->u.gens = gs;
        gs->cap = cap;
        g = last_gen(e);
    }
    gen_append(g, rev);
    g->ver++;
    memset(&gs->g[gs->n], 0, sizeof(struct gen));
    gs->n++;
    ix->live--;
    ix->revs++;
    return 0;
}

static void entry_remove(kvindex *ix, kvindex_entry *e)
{
    ht_del(ix, e);
    tree_remove(ix, e);
    ix->size--;
    entry_free(ix, e);
}

void kvindex_undo(kvindex *ix, kvindex_entry *e)
{
    if (e->flags & E_ONE) { /* undo the put that created the key */
        ix->live--;
        ix->revs--;
        entry_remove(ix, e);
        return;
    }
    struct gen *g = last_gen(e);
    if (g->n == 0) {
        /* Undo a tombstone: close the empty generation, reopen the previous. */
        assert(e->u.gens->n > 1);
        free(g->block);
        e->u.gens->n--;
        g = last_gen(e);
        g->n--;
        g->ver--;
        ix->live++;
        ix->revs--;
        entry_maybe_pack(e);
        return;
    }
    g->n--;
    g->ver--;
    ix->revs--;
    if (g->n == 0) {
        ix->live--;
        g->created = 0;
        if (e->u.gens->n == 1) {
            entry_remove(ix, e);
            return;
        }
    }
    entry_maybe_pack(e);
}

/* ---- compaction ---- */

/* Compacts one key; returns true if the entry became empty and must go. */
static bool entry_compact(kvindex *ix, kvindex_entry *e, int64_t at_rev,
                          void (*drop)(void *arg, struct kvindex_rev rev), void *arg)
{
    /* One put, the newest revision and no tombstone: compaction keeps it. */
    if (e->flags & E_ONE)
        return false;
    struct gens *gs = e->u.gens;
    /* The first generation that is open or deleted after at_rev survives;
     * every generation before it was deleted at or before at_rev. */
    uint32_t gi = 0;
    while (gi < gs->n - 1) {
        const struct gen *g = &gs->g[gi];
        if (gen_mains(g)[g->n - 1] > at_rev)
            break;
        gi++;
    }
    for (uint32_t i = 0; i < gi; i++) {
        struct gen *g = &gs->g[i];
        for (uint32_t j = 0; j < g->n; j++)
            drop(arg, gen_rev(g, j));
        ix->revs -= g->n;
        free(g->block);
    }
    if (gi > 0) {
        memmove(gs->g, gs->g + gi, (gs->n - gi) * sizeof(struct gen));
        gs->n -= gi;
    }
    struct gen *g = &gs->g[0];
    int64_t keep = gen_find(g, at_rev);
    if (keep > 0) {
        for (uint32_t j = 0; j < (uint32_t)keep; j++)
            drop(arg, gen_rev(g, j));
        ix->revs -= (size_t)keep;
        gen_drop_front(g, (uint32_t)keep);
    }
    if (gs->n > 1 && gs->n < gs->cap / 4) {
        uint32_t cap = gs->n * 2;
        struct gens *smaller = realloc(gs, sizeof(*gs) + cap * sizeof(struct gen));
        if (smaller != NULL) {
            e->u.gens = gs = smaller;
            gs->cap = cap;
        }
    }
    if (gs->n == 1 && gs->g[0].n == 0)
        return true;
    entry_maybe_pack(e);
    return false;
}

void kvindex_compact(kvindex *ix, int64_t at_rev,
                     void (*drop)(void *arg, struct kvindex_rev rev), void *arg)
{
    kvindex_entry *e = kvindex_seek(ix, NULL, 0);
    while (e != NULL) {
        kvindex_entry *next = kvindex_next(e);
        if (entry_compact(ix, e, at_rev, drop, arg))
            entry_remove(ix, e);
        e = next;
    }
}

/* ---- serialisation ----
 *
 * entry_count u64
 * per entry, in key order:
 *   key_len u32 | key | gen_count u32
 *   per generation: created i64 | ver i64 | rev_count u32 | rev_count x (main i64 | sub u32)
 */

size_t kvindex_encoded_size(const kvindex *ix)
{
    size_t n = 8;
    for (kvindex_entry *e = kvindex_seek(ix, NULL, 0); e; e = kvindex_next(e)) {
        struct gview v;
        uint32_t ngens;
        const struct gen *gens = entry_gens(e, &v, &ngens);
        n += 4 + e->key_len + 4;
        for (uint32_t i = 0; i < ngens; i++)
            n += 20 + (size_t)gens[i].n * 12;
    }
    return n;
}

void kvindex_encode(const kvindex *ix, uint8_t *p)
{
    put_u64be(p, ix->size);
    p += 8;
    for (kvindex_entry *e = kvindex_seek(ix, NULL, 0); e; e = kvindex_next(e)) {
        put_u32be(p, e->key_len);
        memcpy(p + 4, e->key, e->key_len);
        p += 4 + e->key_len;
        struct gview v;
        uint32_t ngens;
        const struct gen *gens = entry_gens(e, &v, &ngens);
        put_u32be(p, ngens);
        p += 4;
        for (uint32_t i = 0; i < ngens; i++) {
            const struct gen *g = &gens[i];
            put_u64be(p, (uint64_t)g->created);
            put_u64be(p + 8, (uint64_t)g->ver);
            put_u32be(p + 16, g->n);
            p += 20;
            for (uint32_t j = 0; j < g->n; j++) {
                put_u64be(p, (uint64_t)gen_mains(g)[j]);
                put_u32be(p + 8, gen_subs(g)[j]);
                p += 12;
            }
        }
    }
}

struct reader {
    const uint8_t *p;
    size_t left;
};

static bool rd_u32(struct reader *r, uint32_t *v)
{
    if (r->left < 4)
        return false;
    *v = get_u32be(r->p);
    r->p += 4;
    r->left -= 4;
    return true;
}

static bool rd_i64(struct reader *r, int64_t *v)
{
    if (r->left < 8)
        return false;
    *v = (int64_t)get_u64be(r->p);
    r->p += 8;
    r->left -= 8;
    return true;
}

/* Decodes and checks one entry. Returns 0, LSKV_ECORRUPT or LSKV_ENOMEM. */
static int decode_entry(kvindex *ix, struct reader *r, int64_t max_rev, kvindex_entry **out)
{
    uint32_t key_len, ngens;
    if (!rd_u32(r, &key_len) || key_len == 0 || key_len > r->left)
        return LSKV_ECORRUPT;
    const uint8_t *key = r->p;
    r->p += key_len;
    r->left -= key_len;
    /* Each generation takes at least 20 bytes: bound counts before allocating. */
    if (!rd_u32(r, &ngens) || ngens == 0 || ngens > r->left / 20)
        return LSKV_ECORRUPT;
    kvindex_entry *e = entry_new(ix, key, key_len);
    if (e == NULL)
        return LSKV_ENOMEM;
    int rv = LSKV_ECORRUPT;
    if (ngens > 1) {
        struct gens *gs = calloc(1, sizeof(*gs) + ngens * sizeof(struct gen));
        if (gs == NULL) {
            rv = LSKV_ENOMEM;
            goto err;
        }
        free(e->u.gens);
        e->u.gens = gs;
        gs->n = gs->cap = ngens;
    }
    struct kvindex_rev prev = {0, 0};
    for (uint32_t i = 0; i < ngens; i++) {
        struct gen *g = &e->u.gens->g[i];
        uint32_t n;
        if (!rd_i64(r, &g->created) || !rd_i64(r, &g->ver) || !rd_u32(r, &n) ||
            n > r->left / 12)
            goto err;
        bool last = i == ngens - 1;
        /* (2) closed generations hold at least a put and the tombstone;
         * (3) a key is never only an empty generation. */
        if ((!last && n < 2) || (ngens == 1 && n == 0))
            goto err;
        if (n == 0) {
            if (g->created != 0 || g->ver != 0)
                goto err;
            continue;
        }
        if (gen_set_cap(g, n) != 0) {
            rv = LSKV_ENOMEM;
            goto err;
        }
        for (uint32_t j = 0; j < n; j++) {
            int64_t main;
            uint32_t sub;
            if (!rd_i64(r, &main) || !rd_u32(r, &sub))
                goto err;
            struct kvindex_rev rev = {main, sub};
            /* (1) strictly increasing, within [1, max_rev]. */
            if (main < 1 || main > max_rev || !rev_less(prev, rev))
                goto err;
            gen_append(g, rev);
            prev = rev;
        }
        /* (4) versions >= 1; created no later than the first revision held. */
        /* A generation gets at most two revisions per main revision (a put
         * and a tombstone in one txn), so ver <= 2 * max_rev. */
        if (g->ver < (int64_t)n || (g->ver > max_rev && g->ver - max_rev > max_rev) ||
            g->created < 1 || g->created > gen_mains(g)[0])
            goto err;
    }
    entry_maybe_pack(e);
    *out = e;
    return 0;
err:
    entry_free(ix, e);
    return rv;
}

/* Links sorted entries v[lo..hi) into a perfectly balanced subtree. */
static kvindex_entry *build_balanced(kvindex_entry **v, size_t lo, size_t hi,
                                     kvindex_entry *parent)
{
    if (lo >= hi)
        return NULL;
    size_t mid = lo + (hi - lo) / 2;
    kvindex_entry *n = v[mid];
    n->parent = parent;
    n->left = build_balanced(v, lo, mid, n);
    n->right = build_balanced(v, mid + 1, hi, n);
    update_height(n);
    return n;
}

int kvindex_decode(const uint8_t *buf, size_t len, int64_t max_rev, kvindex **out,
                   size_t *used)
{
    struct reader r = {buf, len};
    int64_t count;
    /* An entry takes at least 4 + 1 + 4 + 20 + 12 bytes. */
    if (!rd_i64(&r, &count) || count < 0 || (uint64_t)count > r.left / 41)
        return LSKV_ECORRUPT;
    kvindex_entry **v = count ? malloc((size_t)count * sizeof(*v)) : NULL;
    if (count && v == NULL)
        return LSKV_ENOMEM;
    kvindex *ix = calloc(1, sizeof(*ix));
    int rv = ix ? 0 : LSKV_ENOMEM;
    size_t got = 0;
    for (; rv == 0 && got < (size_t)count; got++) {
        rv = decode_entry(ix, &r, max_rev, &v[got]);
        if (rv != 0)
            break;
        kvindex_entry *e = v[got];
        if (got > 0 && key_cmp(v[got - 1]->key, v[got - 1]->key_len, e->key, e->key_len) >= 0) {
            entry_free(ix, e);
            rv = LSKV_ECORRUPT;
            break;
        }
        struct gview gv;
        uint32_t ngens;
        const struct gen *gens = entry_gens(e, &gv, &ngens);
        if (gens[ngens - 1].n > 0)
            ix->live++;
        for (uint32_t i = 0; i < ngens; i++)
            ix->revs += gens[i].n;
    }
    if (rv != 0) {
        for (size_t i = 0; i < got && ix != NULL; i++)
            entry_free(ix, v[i]);
        free(v);
        if (ix != NULL)
            slabs_free(ix);
        free(ix);
        return rv;
    }
    ix->root = build_balanced(v, 0, (size_t)count, NULL);
    ix->size = (size_t)count;
    free(v);
    size_t cap = HT_MIN_CAP;
    while (cap < ix->size * 2)
        cap *= 2;
    ht_rebuild(ix, cap); /* on ENOMEM: no table, lookups walk the tree */
    *out = ix;
    *used = len - r.left;
    return 0;
}

/* ---- checking ---- */

static int check_entry(const kvindex_entry *e)
{
    struct gview v;
    uint32_t ngens;
    if ((e->flags & E_ONE) && !one_fits(one_rev(e->u.one)))
        return LSKV_ECORRUPT;
    const struct gen *gens = entry_gens(e, &v, &ngens);
    if (ngens == 0 || (ngens == 1 && gens[0].n == 0))
        return LSKV_ECORRUPT;
    struct kvindex_rev prev = {0, 0};
    for (uint32_t i = 0; i < ngens; i++) {
        const struct gen *g = &gens[i];
        if (i + 1 < ngens && g->n < 2)
            return LSKV_ECORRUPT;
        if (g->n > 0 && (g->ver < (int64_t)g->n || g->created > gen_mains(g)[0]))
            return LSKV_ECORRUPT;
        for (uint32_t j = 0; j < g->n; j++) {
            struct kvindex_rev r = gen_rev(g, j);
            if (!rev_less(prev, r))
                return LSKV_ECORRUPT;
            prev = r;
        }
    }
    return 0;
}

/* The table holds exactly the hashed entries, each within HT_MAX_PROBE of
 * its home with no empty slot between, and every entry is found. */
static int check_hash(const kvindex *ix)
{
    if (ix->ht == NULL)
        return ix->ht_count == 0 && ix->unhashed == 0 ? 0 : LSKV_ECORRUPT;
    size_t mask = ix->ht_cap - 1, used = 0;
    for (size_t i = 0; i < ix->ht_cap; i++) {
        ht_slot s = ix->ht[i];
        if (s == 0)
            continue;
        used++;
        const kvindex_entry *e = slot_entry(s);
        uint64_t h = entry_hash(e);
        size_t home = h & mask;
        if (!(e->flags & E_HASHED) || s >> HT_PTR_BITS != slot_tag(h) ||
            ((i - home) & mask) >= HT_MAX_PROBE)
            return LSKV_ECORRUPT;
        for (size_t j = home; j != i; j = (j + 1) & mask)
            if (ix->ht[j] == 0)
                return LSKV_ECORRUPT;
    }
    size_t hashed = 0, unhashed = 0;
    for (kvindex_entry *e = kvindex_seek(ix, NULL, 0); e; e = kvindex_next(e)) {
        if (e->flags & E_HASHED)
            hashed++;
        else
            unhashed++;
        if (kvindex_find(ix, e->key, e->key_len) != e)
            return LSKV_ECORRUPT;
    }
    if (used != ix->ht_count || hashed != used || unhashed != ix->unhashed ||
        HT_FULL(ix->ht_count, ix->ht_cap))
        return LSKV_ECORRUPT;
    return 0;
}

int kvindex_check(const kvindex *ix)
{
    size_t size = 0, live = 0, revs = 0;
    const kvindex_entry *prev = NULL;
    for (kvindex_entry *e = kvindex_seek(ix, NULL, 0); e; e = kvindex_next(e)) {
        if (prev && key_cmp(prev->key, prev->key_len, e->key, e->key_len) >= 0)
            return LSKV_ECORRUPT;
        int32_t l = height(e->left), r = height(e->right);
        if (e->height != 1 + (l > r ? l : r) || l - r > 1 || r - l > 1)
            return LSKV_ECORRUPT;
        if ((e->left && e->left->parent != e) || (e->right && e->right->parent != e))
            return LSKV_ECORRUPT;
        if (check_entry(e) != 0)
            return LSKV_ECORRUPT;
        size++;
        if (kvindex_entry_live(e))
            live++;
        struct gview v;
        uint32_t ngens;
        const struct gen *gens = entry_gens(e, &v, &ngens);
        for (uint32_t i = 0; i < ngens; i++)
            revs += gens[i].n;
        prev = e;
    }
    if (size != ix->size || live != ix->live || revs != ix->revs)
        return LSKV_ECORRUPT;
    return check_hash(ix);
}

/* Merkle tree (see merkle.h for the shape).
 *
 * Design notes.
 *
 * Terms. A "block" [lo, lo + 2^k) with lo a multiple of 2^k is a perfect,
 * aligned subtree. The peaks of a size s are the blocks that [0, s)
 * decomposes into, one per set bit of s, largest first.
 *
 * Invariants.
 *  (1) held = leaves [base, size); peaks_base = peaks of base.
 *  (2) cur = peaks of size, maintained on append (push, then merge equal
 *      levels), so the current root is a right-to-left fold of cur.
 *  (3) Every node of the tree of any size s >= base is either a peak of base,
 *      a held leaf, or a parent of two such nodes. (Aligned blocks nest or
 *      are disjoint: a block below base that is a child of a node reaching
 *      past base cannot sit strictly inside a peak of base, since that peak
 *      would then contain the parent.) range_hash relies on it.
 *  (4) lv[k] caches the hashes of the aligned blocks of 2^k leaves (k >= 1)
 *      inside [base, size), in order: lv[k].h[j] is the block starting at
 *      leaf (lv[k].first + j) << k. merkle_append fills it as it merges
 *      peaks, so a root or proof at an older size costs O(log n) lookups
 *      instead of rehashing the window. Unless lv_off (an allocation
 *      failed): then range_hash recomputes.
 */
#include "ledger/merkle.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "crypto/hash.h"

struct peak {
    uint64_t lo;    /* first leaf */
    unsigned level; /* covers 2^level leaves */
    uint8_t hash[MERKLE_HASH_BYTES];
};

struct merkle_tree {
    uint64_t base;
    struct peak peaks_base[MERKLE_MAX_DEPTH];
    size_t n_peaks_base;
    struct peak cur[MERKLE_MAX_DEPTH + 1];
    size_t n_cur;
    uint8_t (*leaves)[MERKLE_HASH_BYTES]; /* leaves[i - base] */
    size_t n_leaves;
    size_t cap;
    struct {
        uint8_t (*h)[MERKLE_HASH_BYTES];
        uint64_t first; /* block index (lo >> k) of h[0] */
        size_t n, cap;
    } lv[MERKLE_MAX_DEPTH];              /* invariant 4 */
    bool lv_off;
};

/* Caches the block of 2^k leaves at lo (invariant 4). */
static void lv_store(merkle_tree *t, uint64_t lo, unsigned k, const uint8_t h[MERKLE_HASH_BYTES])
{
    if (t->lv_off || lo < t->base || k == 0 || k >= MERKLE_MAX_DEPTH)
        return;
    if (t->lv[k].n == 0)
        t->lv[k].first = lo >> k;
    if ((lo >> k) != t->lv[k].first + t->lv[k].n) {
        t->lv_off = true; /* not in order: cannot happen, but stay correct */
        return;
    }
    if (t->lv[k].n == t->lv[k].cap) {
        size_t cap = t->lv[k].cap ? t->lv[k].cap * 2 : 64;
        void *p = realloc(t->lv[k].h, cap * MERKLE_HASH_BYTES);
        if (p == NULL) {
            t->lv_off = true;
            return;
        }
        t->lv[k].h = p;
        t->lv[k].cap = cap;
    }
    memcpy(t->lv[k].h[t->lv[k].n++], h, MERKLE_HASH_BYTES);
}

/* The cached block [lo, lo + 2^k), if any. */
static bool lv_find(const merkle_tree *t, uint64_t lo, unsigned k, uint8_t out[MERKLE_HASH_BYTES])
{
    if (t->lv_off || lo < t->base || k == 0 || k >= MERKLE_MAX_DEPTH ||
        (lo & (((uint64_t)1 << k) - 1)) != 0)
        return false;
    uint64_t j = lo >> k;
    if (t->lv[k].n == 0 || j < t->lv[k].first || j - t->lv[k].first >= t->lv[k].n)
        return false;
    memcpy(out, t->lv[k].h[j - t->lv[k].first], MERKLE_HASH_BYTES);
    return true;
}

void merkle_node_hash(const uint8_t left[MERKLE_HASH_BYTES],
                      const uint8_t right[MERKLE_HASH_BYTES], uint8_t out[MERKLE_HASH_BYTES])
{
    uint8_t buf[2 * MERKLE_HASH_BYTES];
    memcpy(buf, left, MERKLE_HASH_BYTES);
    memcpy(buf + MERKLE_HASH_BYTES, right, MERKLE_HASH_BYTES);
    hash_sha256(buf, sizeof buf, out);
}

void merkle_leaf_hash_ced(const uint8_t write_set_digest[MERKLE_HASH_BYTES],
                          const uint8_t commit_evidence_digest[MERKLE_HASH_BYTES],
                          const uint8_t claims_digest[MERKLE_HASH_BYTES],
                          uint8_t out[MERKLE_HASH_BYTES])
{
    uint8_t buf[3 * MERKLE_HASH_BYTES];
    memcpy(buf, write_set_digest, MERKLE_HASH_BYTES);
    memcpy(buf + MERKLE_HASH_BYTES, commit_evidence_digest, MERKLE_HASH_BYTES);
    memcpy(buf + 2 * MERKLE_HASH_BYTES, claims_digest, MERKLE_HASH_BYTES);
    hash_sha256(buf, sizeof buf, out);
}

void merkle_leaf_hash(const uint8_t write_set_digest[MERKLE_HASH_BYTES],
                      const char *commit_evidence, size_t commit_evidence_len,
                      const uint8_t claims_digest[MERKLE_HASH_BYTES],
                      uint8_t out[MERKLE_HASH_BYTES])
{
    uint8_t ced[MERKLE_HASH_BYTES];
    hash_sha256(commit_evidence, commit_evidence_len, ced);
    merkle_leaf_hash_ced(write_set_digest, ced, claims_digest, out);
}

void merkle_fold(const uint8_t leaf[MERKLE_HASH_BYTES], const struct merkle_step *steps,
                 size_t n_steps, uint8_t out[MERKLE_HASH_BYTES])
{
    uint8_t h[MERKLE_HASH_BYTES];
    memcpy(h, leaf, MERKLE_HASH_BYTES);
    for (size_t i = 0; i < n_steps; i++) {
        if (steps[i].left)
            merkle_node_hash(steps[i].hash, h, h);
        else
            merkle_node_hash(h, steps[i].hash, h);
    }
    memcpy(out, h, MERKLE_HASH_BYTES);
}

/* Largest power of two strictly below n (n >= 2). */
static uint64_t split_point(uint64_t n)
{
    uint64_t k = 1;
    while (k < n - k)
        k <<= 1;
    return k;
}

int merkle_shape(uint64_t i, uint64_t size, bool *dirs)
{
    if (i >= size)
        return -1;
    /* Walk root to leaf, recording the sibling side, then reverse. */
    bool down[MERKLE_MAX_DEPTH];
    int n = 0;
    uint64_t lo = 0, hi = size;
    while (hi - lo > 1) {
        uint64_t k = split_point(hi - lo);
        if (i < lo + k) {
            down[n++] = false; /* sibling on the right */
            hi = lo + k;
        } else {
            down[n++] = true;
            lo = lo + k;
        }
    }
    for (int j = 0; j < n; j++)
        dirs[j] = down[n - 1 - j];
    return n;
}

static void peaks_of(uint64_t size, struct peak *out, size_t *n)
{
    uint64_t lo = 0;
    *n = 0;
    for (int b = 63; b >= 0; b--) {
        if (size & ((uint64_t)1 << b)) {
            out[*n].lo = lo;
            out[*n].level = (unsigned)b;
            (*n)++;
            lo += (uint64_t)1 << b;
        }
    }
}

int merkle_open(uint64_t base, const uint8_t (*peaks)[MERKLE_HASH_BYTES], size_t n_peaks,
                merkle_tree **out)
{
    if ((size_t)__builtin_popcountll(base) != n_peaks || (n_peaks && peaks == NULL))
        return LSKV_EINVAL;
    merkle_tree *t = calloc(1, sizeof *t);
    if (t == NULL)
        return LSKV_ENOMEM;
    t->base = base;
    peaks_of(base, t->peaks_base, &t->n_peaks_base);
    for (size_t i = 0; i < n_peaks; i++)
        memcpy(t->peaks_base[i].hash, peaks[i], MERKLE_HASH_BYTES);
    memcpy(t->cur, t->peaks_base, n_peaks * sizeof t->cur[0]);
    t->n_cur = n_peaks;
    *out = t;
    return 0;
}

void merkle_close(merkle_tree *t)
{
    if (t == NULL)
        return;
    free(t->leaves);
    for (size_t k = 0; k < MERKLE_MAX_DEPTH; k++)
        free(t->lv[k].h);
    free(t);
}

uint64_t merkle_size(const merkle_tree *t)
{
    return t->base + t->n_leaves;
}

uint64_t merkle_base(const merkle_tree *t)
{
    return t->base;
}

int merkle_append(merkle_tree *t, const uint8_t leaf[MERKLE_HASH_BYTES])
{
    if (t->n_leaves == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        void *p = realloc(t->leaves, cap * MERKLE_HASH_BYTES);
        if (p == NULL)
            return LSKV_ENOMEM;
        t->leaves = p;
        t->cap = cap;
    }
    uint64_t pos = merkle_size(t);
    memcpy(t->leaves[t->n_leaves++], leaf, MERKLE_HASH_BYTES);
    struct peak *p = &t->cur[t->n_cur++];
    p->lo = pos;
    p->level = 0;
    memcpy(p->hash, leaf, MERKLE_HASH_BYTES);
    while (t->n_cur >= 2 && t->cur[t->n_cur - 1].level == t->cur[t->n_cur - 2].level) {
        struct peak *l = &t->cur[t->n_cur - 2], *r = &t->cur[t->n_cur - 1];
        merkle_node_hash(l->hash, r->hash, l->hash);
        l->level++;
        t->n_cur--;
        lv_store(t, l->lo, l->level, l->hash);
    }
    return 0;
}

int merkle_leaf(const merkle_tree *t, uint64_t i, uint8_t out[MERKLE_HASH_BYTES])
{
    if (i < t->base || i >= merkle_size(t))
        return LSKV_EINVAL;
    memcpy(out, t->leaves[i - t->base], MERKLE_HASH_BYTES);
    return 0;
}

/* Hash of the tree node over [lo, hi) (a node of some tree of size >= base,
 * see invariant 3). */
static int range_hash(const merkle_tree *t, uint64_t lo, uint64_t hi,
                      uint8_t out[MERKLE_HASH_BYTES])
{
    if (hi <= t->base) {
        for (size_t i = 0; i < t->n_peaks_base; i++) {
            const struct peak *p = &t->peaks_base[i];
            if (p->lo == lo && hi - lo == (uint64_t)1 << p->level) {
                memcpy(out, p->hash, MERKLE_HASH_BYTES);
                return 0;
            }
        }
        /* A perfect block below base that is not a peak lies inside one:
         * flushed. A right-edge node of size base splits into peaks. */
        uint64_t w = hi - lo;
        if ((w & (w - 1)) == 0)
            return LSKV_EINVAL;
    } else if (hi - lo == 1) {
        memcpy(out, t->leaves[lo - t->base], MERKLE_HASH_BYTES);
        return 0;
    } else if (((hi - lo) & (hi - lo - 1)) == 0 &&
               lv_find(t, lo, (unsigned)__builtin_ctzll(hi - lo), out)) {
        return 0;
    }
    uint64_t k = split_point(hi - lo);
    uint8_t l[MERKLE_HASH_BYTES], r[MERKLE_HASH_BYTES];
    int rv = range_hash(t, lo, lo + k, l);
    if (rv == 0)
        rv = range_hash(t, lo + k, hi, r);
    if (rv == 0)
        merkle_node_hash(l, r, out);
    return rv;
}

int merkle_root(const merkle_tree *t, uint64_t size, uint8_t out[MERKLE_HASH_BYTES])
{
    if (size == 0 || size < t->base || size > merkle_size(t))
        return LSKV_EINVAL;
    if (size == merkle_size(t)) {
        uint8_t h[MERKLE_HASH_BYTES];
        memcpy(h, t->cur[t->n_cur - 1].hash, MERKLE_HASH_BYTES);
        for (size_t i = t->n_cur - 1; i-- > 0;)
            merkle_node_hash(t->cur[i].hash, h, h);
        memcpy(out, h, MERKLE_HASH_BYTES);
        return 0;
    }
    return range_hash(t, 0, size, out);
}

int merkle_peaks(const merkle_tree *t, uint64_t size, uint8_t (*out)[MERKLE_HASH_BYTES],
                 size_t *n)
{
    if (size < t->base || size > merkle_size(t))
        return LSKV_EINVAL;
    struct peak p[MERKLE_MAX_DEPTH];
    size_t np;
    peaks_of(size, p, &np);
    for (size_t i = 0; i < np; i++) {
        int rv = range_hash(t, p[i].lo, p[i].lo + ((uint64_t)1 << p[i].level), out[i]);
        if (rv != 0)
            return rv;
    }
    *n = np;
    return 0;
}

int merkle_proof(const merkle_tree *t, uint64_t i, uint64_t size, struct merkle_step *steps,
                 size_t *n_steps)
{
    if (i < t->base || i >= size || size > merkle_size(t))
        return LSKV_EINVAL;
    struct merkle_step down[MERKLE_MAX_DEPTH];
    size_t n = 0;
    uint64_t lo = 0, hi = size;
    while (hi - lo > 1) {
        uint64_t k = split_point(hi - lo);
        int rv;
        if (i < lo + k) {
            down[n].left = false;
            rv = range_hash(t, lo + k, hi, down[n].hash);
            hi = lo + k;
        } else {
            down[n].left = true;
            rv = range_hash(t, lo, lo + k, down[n].hash);
            lo = lo + k;
        }
        if (rv != 0)
            return rv;
        n++;
    }
    for (size_t j = 0; j < n; j++)
        steps[j] = down[n - 1 - j];
    *n_steps = n;
    return 0;
}

int merkle_node(const merkle_tree *t, uint64_t lo, uint64_t hi, uint8_t out[MERKLE_HASH_BYTES])
{
    if (lo >= hi || hi > merkle_size(t))
        return LSKV_EINVAL;
    return range_hash(t, lo, hi, out);
}

static int tree_node(void *arg, uint64_t lo, uint64_t hi, uint8_t out[MERKLE_HASH_BYTES])
{
    return range_hash(arg, lo, hi, out);
}

int merkle_consistency(const merkle_tree *t, uint64_t m, uint64_t n,
                       uint8_t (*out)[MERKLE_HASH_BYTES], size_t *n_out)
{
    if (m < t->base || n > merkle_size(t))
        return LSKV_EINVAL;
    /* Every node named is a node of the tree of n >= base leaves
     * (invariant 3), so range_hash finds it. */
    return merkle_consistency_with(tree_node, (void *)t, m, n, out, n_out);
}

int merkle_consistency_with(merkle_node_fn node, void *arg, uint64_t m, uint64_t n,
                            uint8_t (*out)[MERKLE_HASH_BYTES], size_t *n_out)
{
    if (m == 0 || m > n)
        return LSKV_EINVAL;
    /* SUBPROOF(m, D[lo:hi], b) walked from the root: each level adds its
     * hash after the deeper ones, so collect top-down and reverse. */
    uint8_t down[MERKLE_MAX_CONSISTENCY][MERKLE_HASH_BYTES];
    size_t k_out = 0;
    uint64_t lo = 0, hi = n, mm = m;
    bool whole = true; /* b: the node at hand is a subtree of the old tree's root path */
    int rv = 0;
    while (rv == 0 && mm != hi - lo) {
        uint64_t k = split_point(hi - lo);
        if (mm <= k) {
            rv = node(arg, lo + k, hi, down[k_out++]);
            hi = lo + k;
        } else {
            rv = node(arg, lo, lo + k, down[k_out++]);
            lo += k;
            mm -= k;
            whole = false;
        }
    }
    if (rv == 0 && !whole)
        rv = node(arg, lo, hi, down[k_out++]);
    if (rv != 0)
        return rv;
    for (size_t j = 0; j < k_out; j++)
        memcpy(out[j], down[k_out - 1 - j], MERKLE_HASH_BYTES);
    *n_out = k_out;
    return 0;
}

bool merkle_consistency_verify(uint64_t m, uint64_t n, const uint8_t root_m[MERKLE_HASH_BYTES],
                               const uint8_t root_n[MERKLE_HASH_BYTES],
                               const uint8_t (*proof)[MERKLE_HASH_BYTES], size_t n_proof)
{
    if (m == 0 || m > n)
        return false;
    if (m == n)
        return n_proof == 0 && memcmp(root_m, root_n, MERKLE_HASH_BYTES) == 0;
    if (n_proof == 0 || n_proof > MERKLE_MAX_CONSISTENCY)
        return false;
    /* The steps of RFC 9162 section 2.1.4.2. A power-of-two m is a node of
     * the new tree: the path then starts with root_m itself. */
    bool pow2 = (m & (m - 1)) == 0;
    size_t len = n_proof + (pow2 ? 1 : 0);
    uint64_t fn = m - 1, sn = n - 1;
    while (fn & 1) {
        fn >>= 1;
        sn >>= 1;
    }
    uint8_t fr[MERKLE_HASH_BYTES], sr[MERKLE_HASH_BYTES];
    memcpy(fr, pow2 ? root_m : proof[0], MERKLE_HASH_BYTES);
    memcpy(sr, fr, MERKLE_HASH_BYTES);
    for (size_t i = 1; i < len; i++) {
        const uint8_t *c = proof[pow2 ? i - 1 : i];
        if (sn == 0)
            return false;
        if ((fn & 1) || fn == sn) {
            merkle_node_hash(c, fr, fr);
            merkle_node_hash(c, sr, sr);
            while (!(fn & 1) && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            merkle_node_hash(sr, c, sr);
        }
        fn >>= 1;
        sn >>= 1;
    }
    return sn == 0 && memcmp(fr, root_m, MERKLE_HASH_BYTES) == 0 &&
           memcmp(sr, root_n, MERKLE_HASH_BYTES) == 0;
}

int merkle_flush_to(merkle_tree *t, uint64_t new_base)
{
    if (new_base < t->base || new_base > merkle_size(t))
        return LSKV_EINVAL;
    if (new_base == t->base)
        return 0;
    struct peak p[MERKLE_MAX_DEPTH];
    size_t np;
    peaks_of(new_base, p, &np);
    for (size_t i = 0; i < np; i++) {
        int rv = range_hash(t, p[i].lo, p[i].lo + ((uint64_t)1 << p[i].level), p[i].hash);
        if (rv != 0)
            return rv;
    }
    size_t drop = (size_t)(new_base - t->base);
    memmove(t->leaves, t->leaves + drop, (t->n_leaves - drop) * MERKLE_HASH_BYTES);
    t->n_leaves -= drop;
    memcpy(t->peaks_base, p, np * sizeof p[0]);
    t->n_peaks_base = np;
    t->base = new_base;
    /* Drop cached blocks that start below the new base (invariant 4). */
    for (unsigned k = 1; k < MERKLE_MAX_DEPTH; k++) {
        uint64_t first = (new_base + ((uint64_t)1 << k) - 1) >> k; /* first block >= base */
        if (t->lv[k].n == 0 || first <= t->lv[k].first)
            continue;
        uint64_t d = first - t->lv[k].first;
        size_t keep = d >= t->lv[k].n ? 0 : t->lv[k].n - (size_t)d;
        if (keep)
            memmove(t->lv[k].h, t->lv[k].h + d, keep * MERKLE_HASH_BYTES);
        t->lv[k].n = keep;
        t->lv[k].first = first;
    }
    if (t->cap > 1024 && t->n_leaves < t->cap / 4) {
        size_t cap = t->cap / 2;
        void *q = realloc(t->leaves, cap * MERKLE_HASH_BYTES);
        if (q != NULL) {
            t->leaves = q;
            t->cap = cap;
        }
    }
    return 0;
}

/* Tests for src/ledger/merkle.c against a naive recursive MTH (RFC 6962
 * shape), with hand-built vectors for the smallest non-power-of-two trees. */
#include <openssl/sha.h>
#include <string.h>

#include "common/err.h"
#include "ledger/merkle.h"
#include "runner.h"

#define H MERKLE_HASH_BYTES

static void make_leaf(uint64_t i, uint8_t out[H])
{
    uint8_t buf[8];
    for (int b = 0; b < 8; b++)
        buf[b] = (uint8_t)(i >> (8 * b));
    SHA256(buf, sizeof buf, out);
}

static void naive_mth(const uint8_t (*leaves)[H], uint64_t lo, uint64_t hi, uint8_t out[H])
{
    if (hi - lo == 1) {
        memcpy(out, leaves[lo], H);
        return;
    }
    uint64_t k = 1;
    while (k * 2 < hi - lo)
        k *= 2;
    uint8_t l[H], r[H], buf[2 * H];
    naive_mth(leaves, lo, lo + k, l);
    naive_mth(leaves, lo + k, hi, r);
    memcpy(buf, l, H);
    memcpy(buf + H, r, H);
    SHA256(buf, sizeof buf, out);
}

static void node(const uint8_t *l, const uint8_t *r, uint8_t *out)
{
    uint8_t buf[2 * H];
    memcpy(buf, l, H);
    memcpy(buf + H, r, H);
    SHA256(buf, sizeof buf, out);
}

TEST(merkle, hand_vectors_small_trees)
{
    uint8_t lv[7][H];
    merkle_tree *t;
    ASSERT_EQ(merkle_open(0, NULL, 0, &t), 0);
    for (int i = 0; i < 7; i++) {
        make_leaf((uint64_t)i, lv[i]);
        ASSERT_EQ(merkle_append(t, lv[i]), 0);
    }
    uint8_t a[H], b[H], c[H], d[H], want[H], got[H];
    /* size 3: H(H(0,1), 2) -- the odd leaf is promoted, never duplicated */
    node(lv[0], lv[1], a);
    node(a, lv[2], want);
    ASSERT_EQ(merkle_root(t, 3, got), 0);
    ASSERT_MEM_EQ(got, want, H);
    /* size 5: H(H(H(0,1),H(2,3)), 4) */
    node(lv[2], lv[3], b);
    node(a, b, c);
    node(c, lv[4], want);
    ASSERT_EQ(merkle_root(t, 5, got), 0);
    ASSERT_MEM_EQ(got, want, H);
    /* size 7: H(H(H(0,1),H(2,3)), H(H(4,5), 6)) */
    node(lv[4], lv[5], d);
    node(d, lv[6], a);
    node(c, a, want);
    ASSERT_EQ(merkle_root(t, 7, got), 0);
    ASSERT_MEM_EQ(got, want, H);
    /* proof of leaf 4 in size 7: right 5, right 6, left H(0..3) */
    struct merkle_step s[MERKLE_MAX_DEPTH];
    size_t n;
    ASSERT_EQ(merkle_proof(t, 4, 7, s, &n), 0);
    ASSERT_EQ(n, 3);
    ASSERT(!s[0].left);
    ASSERT_MEM_EQ(s[0].hash, lv[5], H);
    ASSERT(!s[1].left);
    ASSERT_MEM_EQ(s[1].hash, lv[6], H);
    ASSERT(s[2].left);
    ASSERT_MEM_EQ(s[2].hash, c, H);
    /* proof of leaf 6 in size 7: left H(4,5), left H(0..3) */
    ASSERT_EQ(merkle_proof(t, 6, 7, s, &n), 0);
    ASSERT_EQ(n, 2);
    ASSERT(s[0].left);
    ASSERT_MEM_EQ(s[0].hash, d, H);
    merkle_close(t);
}

TEST(merkle, all_sizes_roots_proofs_shapes)
{
    enum { N = 70 };
    static uint8_t lv[N][H];
    merkle_tree *t;
    ASSERT_EQ(merkle_open(0, NULL, 0, &t), 0);
    for (uint64_t i = 0; i < N; i++) {
        make_leaf(i, lv[i]);
        ASSERT_EQ(merkle_append(t, lv[i]), 0);
        uint8_t want[H], got[H];
        naive_mth(lv, 0, i + 1, want);
        ASSERT_EQ(merkle_root(t, i + 1, got), 0); /* current-size path */
        ASSERT_MEM_EQ(got, want, H);
    }
    for (uint64_t size = 1; size <= N; size++) {
        uint8_t want[H], got[H];
        naive_mth(lv, 0, size, want);
        ASSERT_EQ(merkle_root(t, size, got), 0); /* past-size path */
        ASSERT_MEM_EQ(got, want, H);
        for (uint64_t i = 0; i < size; i++) {
            struct merkle_step s[MERKLE_MAX_DEPTH];
            bool dirs[MERKLE_MAX_DEPTH];
            size_t n;
            ASSERT_EQ(merkle_proof(t, i, size, s, &n), 0);
            merkle_fold(lv[i], s, n, got);
            ASSERT_MEM_EQ(got, want, H);
            ASSERT_EQ(merkle_shape(i, size, dirs), (int)n);
            for (size_t j = 0; j < n; j++)
                ASSERT_EQ(dirs[j], s[j].left);
            /* a proof for a neighbour's position must not fold to the root */
            if (size > 1) {
                merkle_fold(lv[(i + 1) % size], s, n, got);
                ASSERT(memcmp(got, want, H) != 0);
            }
        }
    }
    ASSERT_EQ(merkle_shape(5, 5, (bool[MERKLE_MAX_DEPTH]){0}), -1);
    merkle_close(t);
}

TEST(merkle, flush_keeps_roots_and_proofs_above_base)
{
    enum { N = 100 };
    static uint8_t lv[N][H];
    for (uint64_t i = 0; i < N; i++)
        make_leaf(i, lv[i]);
    for (uint64_t base = 0; base <= 64; base += 7) {
        merkle_tree *t;
        ASSERT_EQ(merkle_open(0, NULL, 0, &t), 0);
        for (uint64_t i = 0; i < 80; i++)
            ASSERT_EQ(merkle_append(t, lv[i]), 0);
        ASSERT_EQ(merkle_flush_to(t, base), 0);
        ASSERT_EQ(merkle_base(t), base);
        for (uint64_t i = 80; i < N; i++)
            ASSERT_EQ(merkle_append(t, lv[i]), 0);
        /* re-open from the peaks at base (as a chunk header gives them) */
        uint8_t pk[MERKLE_MAX_DEPTH][H];
        size_t np;
        ASSERT_EQ(merkle_peaks(t, base, pk, &np), 0);
        ASSERT_EQ(np, (size_t)__builtin_popcountll(base));
        merkle_tree *t2;
        ASSERT_EQ(merkle_open(base, pk, np, &t2), 0);
        for (uint64_t i = base; i < N; i++)
            ASSERT_EQ(merkle_append(t2, lv[i]), 0);
        for (uint64_t size = base ? base : 1; size <= N; size++) {
            uint8_t want[H], got[H], got2[H];
            naive_mth(lv, 0, size, want);
            ASSERT_EQ(merkle_root(t, size, got), 0);
            ASSERT_MEM_EQ(got, want, H);
            ASSERT_EQ(merkle_root(t2, size, got2), 0);
            ASSERT_MEM_EQ(got2, want, H);
            for (uint64_t i = base; i < size; i += 3) {
                struct merkle_step s[MERKLE_MAX_DEPTH];
                size_t n;
                ASSERT_EQ(merkle_proof(t2, i, size, s, &n), 0);
                merkle_fold(lv[i], s, n, got);
                ASSERT_MEM_EQ(got, want, H);
                /* t's cached blocks were re-based by the flush */
                ASSERT_EQ(merkle_proof(t, i, size, s, &n), 0);
                merkle_fold(lv[i], s, n, got);
                ASSERT_MEM_EQ(got, want, H);
            }
        }
        if (base > 0) {
            uint8_t got[H];
            struct merkle_step s[MERKLE_MAX_DEPTH];
            size_t n;
            ASSERT_EQ(merkle_leaf(t, base - 1, got), LSKV_EINVAL);
            ASSERT_EQ(merkle_proof(t, base - 1, N, s, &n), LSKV_EINVAL);
            if (base > 1)
                ASSERT_EQ(merkle_root(t, base - 1, got), LSKV_EINVAL);
        }
        merkle_close(t);
        merkle_close(t2);
    }
}

TEST(merkle, bad_arguments)
{
    merkle_tree *t;
    uint8_t pk[1][H] = {{0}};
    ASSERT_EQ(merkle_open(3, pk, 1, &t), LSKV_EINVAL); /* popcount(3) = 2 */
    ASSERT_EQ(merkle_open(0, NULL, 0, &t), 0);
    uint8_t got[H];
    ASSERT_EQ(merkle_root(t, 0, got), LSKV_EINVAL);
    ASSERT_EQ(merkle_root(t, 1, got), LSKV_EINVAL);
    ASSERT_EQ(merkle_flush_to(t, 1), LSKV_EINVAL);
    merkle_close(t);
}

TEST(merkle, leaf_hash_matches_definition)
{
    uint8_t wsd[H], cd[H], got[H], want[H], buf[3 * H];
    memset(wsd, 0xaa, H);
    memset(cd, 0xbb, H);
    const char *ce = "ce:2.17:00ff";
    merkle_leaf_hash(wsd, ce, strlen(ce), cd, got);
    memcpy(buf, wsd, H);
    SHA256((const unsigned char *)ce, strlen(ce), buf + H);
    memcpy(buf + 2 * H, cd, H);
    SHA256(buf, sizeof buf, want);
    ASSERT_MEM_EQ(got, want, H);
}

/* RFC 9162 section 2.1.4.1 SUBPROOF, written from the RFC on the naive MTH. */
static void naive_subproof(const uint8_t (*leaves)[H], uint64_t m, uint64_t lo, uint64_t hi,
                           bool b, uint8_t (*out)[H], size_t *n)
{
    if (m == hi - lo) {
        if (!b)
            naive_mth(leaves, lo, hi, out[(*n)++]);
        return;
    }
    uint64_t k = 1;
    while (k * 2 < hi - lo)
        k *= 2;
    if (m <= k) {
        naive_subproof(leaves, m, lo, lo + k, b, out, n);
        naive_mth(leaves, lo + k, hi, out[(*n)++]);
    } else {
        naive_subproof(leaves, m - k, lo + k, hi, false, out, n);
        naive_mth(leaves, lo, lo + k, out[(*n)++]);
    }
}

TEST(merkle, consistency_proofs_between_every_pair_of_sizes)
{
    enum { N = 70 };
    static uint8_t leaves[N][H], other[N][H];
    merkle_tree *t;
    ASSERT_EQ(merkle_open(0, NULL, 0, &t), 0);
    for (uint64_t i = 0; i < N; i++) {
        make_leaf(i, leaves[i]);
        ASSERT_EQ(merkle_append(t, leaves[i]), 0);
    }
    uint8_t proof[MERKLE_MAX_CONSISTENCY][H], want[MERKLE_MAX_CONSISTENCY][H];
    for (uint64_t n = 1; n <= N; n++) {
        uint8_t rn[H];
        naive_mth(leaves, 0, n, rn);
        for (uint64_t m = 1; m <= n; m++) {
            uint8_t rm[H];
            naive_mth(leaves, 0, m, rm);
            size_t k, kw = 0;
            ASSERT_EQ(merkle_consistency(t, m, n, proof, &k), 0);
            naive_subproof(leaves, m, 0, n, true, want, &kw);
            ASSERT_EQ(k, kw);
            ASSERT_MEM_EQ(proof, want, k * H);
            if (!merkle_consistency_verify(m, n, rm, rn, (const uint8_t(*)[H])proof, k))
                TEST_FAIL("consistency %" PRIu64 " -> %" PRIu64 " does not verify", m, n);
            if (m == n)
                continue;
            /* any flipped proof byte, swapped roots or a short proof fail
             * (the sizes are bound by the signed statements, as for
             * inclusion proofs: 2 -> 3 and 2 -> 4 have the same shape) */
            for (size_t j = 0; j < k; j++) {
                proof[j][j % H] ^= 1;
                ASSERT(!merkle_consistency_verify(m, n, rm, rn, (const uint8_t(*)[H])proof, k));
                proof[j][j % H] ^= 1;
            }
            ASSERT(!merkle_consistency_verify(m, n, rn, rm, (const uint8_t(*)[H])proof, k));
            ASSERT(!merkle_consistency_verify(m, n, rm, rn, (const uint8_t(*)[H])proof, k - 1));
        }
    }
    /* a tree whose leaf j differs: no proof from the first tree's root at m
     * to the other's at n verifies when j < m (a fork), and the other's own
     * proof does not verify against the first root */
    for (uint64_t j = 0; j < N; j += 7) {
        memcpy(other, leaves, sizeof other);
        other[j][0] ^= 0x80;
        merkle_tree *u;
        ASSERT_EQ(merkle_open(0, NULL, 0, &u), 0);
        for (uint64_t i = 0; i < N; i++)
            ASSERT_EQ(merkle_append(u, other[i]), 0);
        for (uint64_t m = j + 1; m < N; m += 3) {
            for (uint64_t n = m + 1; n <= N; n += 5) {
                uint8_t rm[H], rn2[H];
                size_t k;
                naive_mth(leaves, 0, m, rm);
                naive_mth(other, 0, n, rn2);
                ASSERT_EQ(merkle_consistency(u, m, n, proof, &k), 0);
                ASSERT(!merkle_consistency_verify(m, n, rm, rn2, (const uint8_t(*)[H])proof, k));
                ASSERT_EQ(merkle_consistency(t, m, n, proof, &k), 0);
                ASSERT(!merkle_consistency_verify(m, n, rm, rn2, (const uint8_t(*)[H])proof, k));
            }
        }
        merkle_close(u);
    }
    merkle_close(t);
}

TEST(merkle, consistency_proofs_from_a_tree_with_a_base)
{
    enum { N = 300 };
    static uint8_t leaves[N][H];
    merkle_tree *full, *t;
    ASSERT_EQ(merkle_open(0, NULL, 0, &full), 0);
    for (uint64_t i = 0; i < N; i++) {
        make_leaf(i, leaves[i]);
        ASSERT_EQ(merkle_append(full, leaves[i]), 0);
    }
    uint64_t bases[] = {1, 5, 64, 100, 127, 200};
    for (size_t b = 0; b < sizeof bases / sizeof bases[0]; b++) {
        uint8_t peaks[MERKLE_MAX_DEPTH][H];
        size_t np;
        ASSERT_EQ(merkle_peaks(full, bases[b], peaks, &np), 0);
        ASSERT_EQ(merkle_open(bases[b], (const uint8_t(*)[H])peaks, np, &t), 0);
        for (uint64_t i = bases[b]; i < N; i++)
            ASSERT_EQ(merkle_append(t, leaves[i]), 0);
        for (uint64_t m = bases[b]; m <= N; m += 11) {
            for (uint64_t n = m; n <= N; n += 13) {
                uint8_t p1[MERKLE_MAX_CONSISTENCY][H], p2[MERKLE_MAX_CONSISTENCY][H];
                size_t k1, k2;
                ASSERT_EQ(merkle_consistency(t, m, n, p1, &k1), 0);
                ASSERT_EQ(merkle_consistency(full, m, n, p2, &k2), 0);
                ASSERT_EQ(k1, k2);
                ASSERT_MEM_EQ(p1, p2, k1 * H);
            }
        }
        uint8_t p[MERKLE_MAX_CONSISTENCY][H];
        size_t k;
        if (bases[b] > 1)
            ASSERT_EQ(merkle_consistency(t, bases[b] - 1, N, p, &k), LSKV_EINVAL);
        ASSERT_EQ(merkle_consistency(t, 0, N, p, &k), LSKV_EINVAL);
        ASSERT_EQ(merkle_consistency(t, N, N + 1, p, &k), LSKV_EINVAL);
        merkle_close(t);
    }
    merkle_close(full);
}

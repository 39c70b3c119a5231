/* The ledger's Merkle tree: one leaf per ledger entry, as CCF (merklecpp).
 *
 * Shape (docs/ledger-format.md section 5): the tree over n leaves is the
 * RFC 6962 tree. MTH of one leaf is the leaf; MTH of n > 1 leaves splits at
 * k = the largest power of two below n: node = SHA-256(MTH(D[0:k]) ||
 * MTH(D[k:n])). This is exactly what merklecpp builds by inserting each leaf
 * at the right edge (a full subtree gets a new parent; otherwise descend
 * right), and no leaf is ever duplicated or padded.
 *
 * Memory: a tree holds the "peaks" of its first `base` leaves (the hashes of
 * the perfect, aligned subtrees that [0, base) decomposes into, one per set
 * bit of base, largest first) and every leaf hash from base on. Roots, peaks
 * and proofs are available for every size in [base, size]; merkle_flush_to
 * moves base forward and frees the leaves before it. Callers re-derive older
 * parts from the ledger (whose chunk headers store the peaks).
 *
 * No clock, no randomness: deterministic. */
#ifndef LSKV_LEDGER_MERKLE_H
#define LSKV_LEDGER_MERKLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MERKLE_HASH_BYTES 32
/* A tree of at most 2^64-1 leaves has at most 64 peaks and proofs of at most
 * 64 steps. */
#define MERKLE_MAX_DEPTH 64

typedef struct merkle_tree merkle_tree;

/* One proof step: h = SHA-256(hash || h) when left, SHA-256(h || hash) when not. */
struct merkle_step {
    bool left;                         /* the sibling joins on the left */
    uint8_t hash[MERKLE_HASH_BYTES];   /* sibling subtree hash */
};

/* Opens an empty tree whose first `base` leaves are summarised by `peaks`
 * (popcount(base) hashes, largest subtree first; copied). base 0, peaks NULL
 * gives a plain empty tree.
 * Errors: LSKV_EINVAL (n_peaks != popcount(base)), LSKV_ENOMEM. */
int merkle_open(uint64_t base, const uint8_t (*peaks)[MERKLE_HASH_BYTES],
                size_t n_peaks, merkle_tree **out);
void merkle_close(merkle_tree *t);

/* Appends one leaf (copied). Errors: LSKV_ENOMEM (tree unchanged). */
int merkle_append(merkle_tree *t, const uint8_t leaf[MERKLE_HASH_BYTES]);

/* Number of leaves (including the summarised ones below base). */
uint64_t merkle_size(const merkle_tree *t);
/* First leaf whose hash is held. */
uint64_t merkle_base(const merkle_tree *t);

/* Copies leaf i (base <= i < size). Errors: LSKV_EINVAL. */
int merkle_leaf(const merkle_tree *t, uint64_t i, uint8_t out[MERKLE_HASH_BYTES]);

/* Root of the tree over the first `size` leaves, base <= size <= merkle_size,
 * size >= 1. O(log n) for the current size, O(size - base) otherwise.
 * Errors: LSKV_EINVAL (size out of range). */
int merkle_root(const merkle_tree *t, uint64_t size, uint8_t out[MERKLE_HASH_BYTES]);

/* Peaks of the first `size` leaves (base <= size <= merkle_size) into out
 * (room for MERKLE_MAX_DEPTH); *n = popcount(size). Errors: LSKV_EINVAL. */
int merkle_peaks(const merkle_tree *t, uint64_t size,
                 uint8_t (*out)[MERKLE_HASH_BYTES], size_t *n);

/* Inclusion proof of leaf i in the tree of the first `size` leaves
 * (base <= i < size <= merkle_size), steps ordered leaf to root, into steps
 * (room for MERKLE_MAX_DEPTH). Errors: LSKV_EINVAL. */
int merkle_proof(const merkle_tree *t, uint64_t i, uint64_t size,
                 struct merkle_step *steps, size_t *n_steps);

/* RFC 9162 section 2.1.4 consistency proof that the tree of the first m
 * leaves is a prefix of the tree of the first n (base <= m <= n <=
 * merkle_size, m >= 1): the subtree hashes SUBPROOF(m, D[0:n], true) lists,
 * in its order, into out (room for MERKLE_MAX_CONSISTENCY); *n_out may be 0
 * (m == n). Errors: LSKV_EINVAL. */
#define MERKLE_MAX_CONSISTENCY (2 * MERKLE_MAX_DEPTH)
int merkle_consistency(const merkle_tree *t, uint64_t m, uint64_t n,
                       uint8_t (*out)[MERKLE_HASH_BYTES], size_t *n_out);
/* The same walk with the subtree hashes MTH(D[lo:hi]) taken from node()
 * (0 or an error, which is returned). For callers whose leaves live in
 * several places. Errors: LSKV_EINVAL (sizes), node()'s. */
typedef int (*merkle_node_fn)(void *arg, uint64_t lo, uint64_t hi,
                              uint8_t out[MERKLE_HASH_BYTES]);
int merkle_consistency_with(merkle_node_fn node, void *arg, uint64_t m, uint64_t n,
                            uint8_t (*out)[MERKLE_HASH_BYTES], size_t *n_out);
/* MTH(D[lo:hi]) (lo < hi <= merkle_size) when t can derive it: from held
 * leaves, cached blocks and the peaks of base. Errors: LSKV_EINVAL (out of
 * range, or it needs leaves below base that no peak of base summarises). */
int merkle_node(const merkle_tree *t, uint64_t lo, uint64_t hi, uint8_t out[MERKLE_HASH_BYTES]);

/* Forgets the leaves below new_base (base <= new_base <= size), keeping the
 * peaks of [0, new_base). Errors: LSKV_EINVAL, LSKV_ENOMEM (tree unchanged). */
int merkle_flush_to(merkle_tree *t, uint64_t new_base);

/* --- Pure functions, shared with verifiers ------------------------------ */

/* node = SHA-256(left || right). */
void merkle_node_hash(const uint8_t left[MERKLE_HASH_BYTES],
                      const uint8_t right[MERKLE_HASH_BYTES], uint8_t out[MERKLE_HASH_BYTES]);

/* leaf = SHA-256(write_set_digest || SHA-256(commit_evidence) || claims_digest),
 * commit_evidence taken as its bytes (no terminator). */
void merkle_leaf_hash(const uint8_t write_set_digest[MERKLE_HASH_BYTES],
                      const char *commit_evidence, size_t commit_evidence_len,
                      const uint8_t claims_digest[MERKLE_HASH_BYTES],
                      uint8_t out[MERKLE_HASH_BYTES]);
/* As merkle_leaf_hash with SHA-256(commit_evidence) already computed. */
void merkle_leaf_hash_ced(const uint8_t write_set_digest[MERKLE_HASH_BYTES],
                          const uint8_t commit_evidence_digest[MERKLE_HASH_BYTES],
                          const uint8_t claims_digest[MERKLE_HASH_BYTES],
                          uint8_t out[MERKLE_HASH_BYTES]);

/* Folds steps onto leaf, giving the root they imply. */
void merkle_fold(const uint8_t leaf[MERKLE_HASH_BYTES], const struct merkle_step *steps,
                 size_t n_steps, uint8_t out[MERKLE_HASH_BYTES]);

/* RFC 9162 section 2.1.4.2: true when proof (n_proof hashes) shows that
 * root_m, the root of a tree of m leaves, and root_n, of n leaves, are the
 * same tree's (the first m leaves of the tree of n). m == n needs an empty
 * proof and equal roots; m == 0 or m > n is false. */
bool merkle_consistency_verify(uint64_t m, uint64_t n, const uint8_t root_m[MERKLE_HASH_BYTES],
                               const uint8_t root_n[MERKLE_HASH_BYTES],
                               const uint8_t (*proof)[MERKLE_HASH_BYTES], size_t n_proof);

/* The left/right pattern a proof of leaf i in a tree of `size` leaves must
 * have (leaf to root; true = sibling on the left). Returns the number of
 * steps, or -1 if i >= size. dirs has room for MERKLE_MAX_DEPTH. */
int merkle_shape(uint64_t i, uint64_t size, bool *dirs);

#endif

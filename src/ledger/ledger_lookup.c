/* Look-ups: receipts, tx status and consistency proofs, from the window
 * or re-derived from chunk files. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/hex.h"
#include "ledger/anchor.h"
#include "ledger/keys.h"
#include "ledger/ledger_impl.h"
#include "ledger/receipt.h"

/* --- Receipts and status ----------------------------------------------------- */

/* Where proofs over old leaves find subtree hashes: the trees rebuilt
 * around two sizes or leaves (tm, tn; may be NULL), the window's tree, and
 * the block hashes in between. */
struct sources {
    const ledger *l;
    const merkle_tree *tm, *tn;
};

/* MTH(D[lo:hi]) from the sources; LSKV_ENOTFOUND when a leaf it needs is in
 * none of them (the caller then reads the chunk files on). */
static int source_node(void *arg, uint64_t lo, uint64_t hi, uint8_t out[MERKLE_HASH_BYTES])
{
    const struct sources *s = arg;
    const ledger *l = s->l;
    if (s->tm != NULL && hi <= merkle_size(s->tm) && merkle_node(s->tm, lo, hi, out) == 0)
        return 0;
    if (s->tn != NULL && hi <= merkle_size(s->tn) && merkle_node(s->tn, lo, hi, out) == 0)
        return 0;
    if (hi <= merkle_size(l->tree) && merkle_node(l->tree, lo, hi, out) == 0)
        return 0;
    uint64_t w = hi - lo;
    if (w == LG_BLOCK_LEAVES && lo % LG_BLOCK_LEAVES == 0 && hi / LG_BLOCK_LEAVES <= l->n_blocks) {
        memcpy(out, l->blocks[lo / LG_BLOCK_LEAVES], MERKLE_HASH_BYTES);
        return 0;
    }
    if (w == 1)
        return LSKV_ENOTFOUND;
    uint64_t k = 1; /* RFC 9162 split: the largest power of two below w */
    while (k < w - k)
        k <<= 1;
    uint8_t left[MERKLE_HASH_BYTES], right[MERKLE_HASH_BYTES];
    int rv = source_node(arg, lo, lo + k, left);
    if (rv == 0)
        rv = source_node(arg, lo + k, hi, right);
    if (rv == 0)
        merkle_node_hash(left, right, out);
    return rv;
}

/* The inclusion proof of leaf i in the tree of size n (merkle_proof's
 * steps, leaf to root) with the sibling hashes from the sources. */
static int proof_from_sources(struct sources *src, uint64_t i, uint64_t n,
                              struct merkle_step *steps, size_t *n_steps)
{
    struct merkle_step down[MERKLE_MAX_DEPTH];
    size_t d = 0;
    uint64_t lo = 0, hi = n;
    while (hi - lo > 1) {
        uint64_t w = hi - lo, k = 1; /* split as source_node */
        while (k < w - k)
            k <<= 1;
        int rv;
        if (i < lo + k) {
            down[d].left = false;
            rv = source_node(src, lo + k, hi, down[d].hash);
            hi = lo + k;
        } else {
            down[d].left = true;
            rv = source_node(src, lo, lo + k, down[d].hash);
            lo += k;
        }
        if (rv != 0)
            return rv;
        d++;
    }
    for (size_t j = 0; j < d; j++)
        steps[j] = down[d - 1 - j];
    *n_steps = d;
    return 0;
}

struct found {
    uint64_t leaf, term, index;
    int64_t revision;
    uint8_t type;
    uint8_t wsd[32], claims_digest[32];
};

/* The receipt of f under signature sp with the proof steps (leaf to root);
 * LSKV_ECORRUPT if they do not reach the signed root. */
static int make_receipt(ledger *l, const struct found *f, const struct sig_payload *sp,
                        const struct merkle_step *steps, size_t n, struct arena *a,
                        Lskvserverpb__Receipt **out, char *errmsg)
{
    uint8_t leaf[32], root[32], ced[32];
    char ce[LEDGER_CE_MAX];
    keys_ce_format(&l->ce_key, f->term, f->index, ce);
    hash_sha256(ce, strlen(ce), ced);
    merkle_leaf_hash_ced(f->wsd, ced, f->claims_digest, leaf);
    merkle_fold(leaf, steps, n, root);
    if (memcmp(root, sp->root, 32) != 0) {
        errmsg_printf(errmsg, "ledger: proof of leaf %" PRIu64 " does not reach the signed root",
                      f->leaf);
        return LSKV_ECORRUPT;
    }
    char id[CERT_NODE_ID_HEX];
    if (cert_node_id_of_pem(sp->cert_pem, sp->cert_len, id) != 0)
        return LSKV_ECORRUPT;
    struct receipt_parts rp = {.cert_pem = sp->cert_pem,
                               .cert_len = sp->cert_len,
                               .sig = sp->sig,
                               .sig_len = sp->sig_len,
                               .node_id = id,
                               .commit_evidence = ce,
                               .steps = steps,
                               .n_steps = n,
                               .leaf_index = f->leaf,
                               .tree_size = sp->tree_size};
    memcpy(rp.service_digest, sp->service_digest, 32);
    memcpy(rp.write_set_digest, f->wsd, 32);
    memcpy(rp.claims_digest, f->claims_digest, 32);
    return receipt_build(&rp, a, out);
}

static int make_receipt_tree(ledger *l, const struct found *f, const struct sig_payload *sp,
                             const merkle_tree *t, struct arena *a,
                             Lskvserverpb__Receipt **out, char *errmsg)
{
    struct merkle_step steps[MERKLE_MAX_DEPTH];
    size_t n;
    int rv = merkle_proof(t, f->leaf, sp->tree_size, steps, &n);
    return rv ? rv : make_receipt(l, f, sp, steps, n, a, out, errmsg);
}

/* A tree at point *p, or at the nearest earlier one where a tree can start
 * (a chunk's first leaf, or where block hashes reach); *p: that point. */
static int tree_at(ledger *l, size_t *p, merkle_tree **t, char *errmsg)
{
    for (;; (*p)--) {
        int rv = lg_point_tree(l, *p, t, errmsg);
        if (rv != 0 || *t != NULL || *p == 0) /* point 0 starts chunk 0: always a tree */
            return rv;
    }
}

/* The last point whose first revision is below rev (entries with rev may
 * begin at the end of its segment), or 0. */
static size_t point_before_rev(const ledger *l, int64_t rev)
{
    size_t lo = 0, hi = l->n_points; /* first point with first_rev >= rev */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (l->points[mid].first_rev < rev)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo ? lo - 1 : 0;
}

static void leaf_of(const struct chunk_entry *e, uint8_t wsd[32], uint8_t lh[32])
{
    chunk_entry_wsd(e, wsd);
    merkle_leaf_hash_ced(wsd, e->commit_evidence_digest, e->claims_digest, lh);
}

/* The receipt of f (leaf in an old chunk; tm holds the leaves up to the end
 * of its block) without reading the blocks between it and its signature:
 * the first signature entry after point q0 (found in the index and read
 * alone), the leaves of the block that its signed size ends in, the rest
 * from block hashes. LSKV_ENOTFOUND: that signature does not cover the
 * leaf, or a hash is missing; read on instead. */
static int receipt_skipping(ledger *l, const struct found *f, size_t q0, const merkle_tree *tm,
                            struct arena *a, Lskvserverpb__Receipt **out, char *errmsg)
{
    size_t qs = q0;
    while (qs < l->n_points && l->points[qs].sig_leaf == UINT64_MAX)
        qs++;
    if (qs == l->n_points) {
        errmsg_printf(errmsg, "ledger: leaf %" PRIu64 " is not signed yet", f->leaf);
        return LSKV_ENOTREADY;
    }
    struct lg_seg ss;
    struct chunk_entry se;
    struct sig_payload sp;
    int rv = lg_seg_read_sig(l, qs, &ss, errmsg);
    if (rv == 0 && (rv = lg_seg_next(l, &ss, &se, errmsg)) == 1) {
        rv = se.type == CHUNK_ENTRY_SIGNATURE ? 0 : LSKV_ECORRUPT;
        if (rv != 0)
            errmsg_printf(errmsg, "%s: offset %" PRIu64 ": not the signature entry the index "
                          "says", ss.path, ss.file_off);
    } else if (rv == 0) {
        errmsg_printf(errmsg, "%s: offset %" PRIu64 ": no entry where the index says",
                      ss.path, ss.file_off);
        rv = LSKV_ECORRUPT;
    }
    if (rv == 0)
        rv = sig_payload_decode(se.public_part, se.public_len, &sp, errmsg);
    if (rv == 0 && sp.tree_size <= f->leaf)
        rv = LSKV_ENOTFOUND; /* in flight: a later signature covers it */
    merkle_tree *tn = NULL;
    uint64_t n = rv == 0 ? sp.tree_size : 0;
    if (rv == 0 && n > merkle_size(tm) && n - 1 < merkle_base(l->tree)) {
        /* The leaves of the block (or chunk part) that n ends in. */
        size_t q = lg_point_of_leaf(l, n - 1);
        rv = tree_at(l, &q, &tn, errmsg);
        for (; rv == 0 && merkle_size(tn) < n && q <= qs; q++) {
            struct lg_seg s;
            struct chunk_entry e;
            if ((rv = lg_seg_read(l, q, q == qs ? l->points[qs].sig_off : 0, &s, errmsg)) != 0)
                break;
            while (rv == 0 && merkle_size(tn) < n && (rv = lg_seg_next(l, &s, &e, errmsg)) == 1) {
                uint8_t wsd[32], lh[32];
                leaf_of(&e, wsd, lh);
                rv = merkle_append(tn, lh);
            }
            lg_seg_close(&s);
        }
    }
    struct merkle_step steps[MERKLE_MAX_DEPTH];
    size_t n_steps;
    if (rv == 0) {
        struct sources src = {.l = l, .tm = tm, .tn = tn};
        rv = proof_from_sources(&src, f->leaf, n, steps, &n_steps);
    }
    if (rv == 0) {
        rv = make_receipt(l, f, &sp, steps, n_steps, a, out, errmsg);
        if (rv == LSKV_ECORRUPT) /* a wrong block hash is never served: read on */
            rv = LSKV_ENOTFOUND;
    }
    merkle_close(tn);
    lg_seg_close(&ss);
    return rv;
}

/* What receipt_from_disk looks for: the entry at leaf, or (rev > 0) the
 * first KV entry that made rev, in term `term` unless 0. */
struct want {
    uint64_t leaf;
    int64_t rev;
    uint64_t term;
    const uint8_t *claims; /* with rev: the entry with these claims, else the KV entry */
};

/* The entry asked for by revision: the KV entry that made rev, or with a
 * claims digest, the entry at rev that claims it (any type: a lease
 * command's revision is shared). */
static bool entry_is_wanted(int64_t rev, const uint8_t *claims, int64_t e_rev, uint8_t e_type,
                            const uint8_t e_claims[MERKLE_HASH_BYTES])
{
    if (e_rev != rev)
        return false;
    if (claims != NULL)
        return memcmp(claims, e_claims, MERKLE_HASH_BYTES) == 0;
    return e_type == CHUNK_ENTRY_KV;
}

/* Receipt of an entry below the window: the tree from the point (block or
 * chunk start) at or below it, the leaves of its block from the file, then
 * receipt_skipping; only if that cannot answer, the entries on to the
 * first signature that covers it, segment by segment. A revision is looked
 * for in the same read. An entry found in the window is served from there. */
static int receipt_from_disk(ledger *l, struct want w, struct arena *a,
                             Lskvserverpb__Receipt **out, char *errmsg)
{
    size_t q = w.rev > 0 ? point_before_rev(l, w.rev) : lg_point_of_leaf(l, w.leaf);
    merkle_tree *t = NULL;
    int rv = tree_at(l, &q, &t, errmsg);
    uint64_t block_end = 0;
    struct found f = {0};
    bool have = false, tried = false, done = false;
    for (; rv == 0 && !done; q++) {
        if (q == l->n_points || (!have && w.rev > 0 && l->points[q].first_rev > w.rev)) {
            rv = have ? LSKV_ENOTREADY : LSKV_ENOTFOUND;
            break;
        }
        if (have && !tried && l->points[q].leaf >= block_end) {
            tried = true;
            rv = receipt_skipping(l, &f, q, t, a, out, errmsg);
            if (rv != LSKV_ENOTFOUND)
                break;
            rv = 0;
        }
        struct lg_seg s;
        struct chunk_entry e;
        if ((rv = lg_seg_read(l, q, 0, &s, errmsg)) != 0)
            break;
        while (!done && (rv = lg_seg_next(l, &s, &e, errmsg)) == 1) {
            uint64_t i = s.leaf - 1;
            uint8_t wsd[32], lh[32];
            leaf_of(&e, wsd, lh);
            if ((rv = merkle_append(t, lh)) != 0)
                break;
            if (!have && w.rev > 0 && e.revision > w.rev) {
                rv = LSKV_ENOTFOUND;
                done = true;
            } else if (!have && (w.rev > 0 ? entry_is_wanted(w.rev, w.claims, e.revision, e.type,
                                                             e.claims_digest)
                                          : i == w.leaf)) {
                have = true;
                f = (struct found){.leaf = i, .term = e.term, .index = e.index,
                                   .revision = e.revision, .type = e.type};
                memcpy(f.wsd, wsd, 32);
                memcpy(f.claims_digest, e.claims_digest, 32);
                block_end = (i / LG_BLOCK_LEAVES + 1) * LG_BLOCK_LEAVES;
                if (w.term != 0 && e.term != w.term) {
                    rv = LSKV_ENOTFOUND;
                    done = true;
                } else if (i >= merkle_base(l->tree)) {
                    rv = 1; /* in the window */
                    done = true;
                }
            } else if (have && e.type == CHUNK_ENTRY_SIGNATURE) {
                struct sig_payload sp;
                if ((rv = sig_payload_decode(e.public_part, e.public_len, &sp, errmsg)) != 0)
                    break;
                if (sp.tree_size > f.leaf) {
                    rv = make_receipt_tree(l, &f, &sp, t, a, out, errmsg);
                    done = true;
                }
            }
        }
        lg_seg_close(&s);
    }
    merkle_close(t);
    if (rv == 1)
        return ledger_receipt_at(l, f.leaf, a, out, errmsg);
    if (rv == LSKV_ENOTFOUND || rv == LSKV_ENOTREADY)
        errmsg_printf(errmsg, "ledger: leaf %" PRIu64 " %s", f.leaf,
                      rv == LSKV_ENOTREADY ? "is not signed yet" : "does not exist");
    return rv;
}

int ledger_receipt_at(ledger *l, uint64_t leaf, struct arena *a, Lskvserverpb__Receipt **out,
                      char *errmsg)
{
    uint64_t base = merkle_base(l->tree);
    if (leaf >= merkle_size(l->tree)) {
        errmsg_printf(errmsg, "ledger: leaf %" PRIu64 " does not exist", leaf);
        return LSKV_ENOTFOUND;
    }
    if (leaf < base)
        return receipt_from_disk(l, (struct want){.leaf = leaf}, a, out, errmsg);
    for (size_t i = 0; i < l->n_sigs; i++) {
        const struct win_sig *ws = &l->sigs[i];
        if (ws->leaf > leaf && ws->p.tree_size > leaf) {
            const struct win_entry *w = &l->win[leaf - base];
            struct found f = {.leaf = leaf, .term = w->term, .index = w->index,
                              .revision = w->revision, .type = w->type};
            memcpy(f.wsd, w->wsd, 32);
            memcpy(f.claims_digest, w->claims_digest, 32);
            return make_receipt_tree(l, &f, &ws->p, l->tree, a, out, errmsg);
        }
    }
    errmsg_printf(errmsg, "ledger: leaf %" PRIu64 " is not signed yet", leaf);
    return LSKV_ENOTREADY;
}

/* The first entry with revision rev that entry_is_wanted: 0 and *f,
 * LSKV_ENOTFOUND, or an error; 1 with files (may the files hold it) when it
 * is not in the window. Revisions never decrease along the ledger
 * (invariant 4). */
static int find_revision(ledger *l, int64_t rev, const uint8_t *claims, bool files,
                         struct found *f, char *errmsg)
{
    uint64_t base = merkle_base(l->tree);
    const struct chunk_info *open = &l->chunks[l->n_chunks - 1];
    if (rev > l->last_rev || rev <= 0)
        return LSKV_ENOTFOUND;
    if (l->n_win > 0 && rev > open->first_rev) {
        /* Only in the window: binary search for the first entry >= rev. */
        size_t lo = 0, hi = l->n_win;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (l->win[mid].revision < rev)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (size_t i = lo; i < l->n_win && l->win[i].revision == rev; i++) {
            if (entry_is_wanted(rev, claims, l->win[i].revision, l->win[i].type,
                                l->win[i].claims_digest)) {
                f->leaf = base + i;
                f->term = l->win[i].term;
                return 0;
            }
        }
        return LSKV_ENOTFOUND;
    }
    if (files)
        return 1;
    /* From the files: the index narrows it to a segment or two; the read
     * runs on while segments may hold rev. */
    int rv = 0;
    bool found = false, past = false;
    for (size_t q = point_before_rev(l, rev); q < l->n_points && !found && !past; q++) {
        if (l->points[q].first_rev > rev)
            break;
        struct lg_seg s;
        struct chunk_entry e;
        if ((rv = lg_seg_read(l, q, 0, &s, errmsg)) != 0)
            break;
        while ((rv = lg_seg_next(l, &s, &e, errmsg)) == 1) {
            if (e.revision > rev) {
                past = true;
                break;
            }
            if (entry_is_wanted(rev, claims, e.revision, e.type, e.claims_digest)) {
                f->leaf = s.leaf - 1;
                f->term = e.term;
                found = true;
                break;
            }
        }
        lg_seg_close(&s);
        if (rv < 0)
            break;
    }
    if (rv < 0)
        return rv;
    return found ? 0 : LSKV_ENOTFOUND;
}

int ledger_receipt(ledger *l, int64_t revision, uint64_t raft_term, struct arena *a,
                   Lskvserverpb__Receipt **out, char *errmsg)
{
    return ledger_receipt_claimed(l, revision, raft_term, NULL, a, out, errmsg);
}

int ledger_receipt_claimed(ledger *l, int64_t revision, uint64_t raft_term,
                           const uint8_t *claims_digest, struct arena *a,
                           Lskvserverpb__Receipt **out, char *errmsg)
{
    struct found f = {0};
    int rv = find_revision(l, revision, claims_digest, true, &f, errmsg);
    if (rv == 1) /* found and proved in one read of the files */
        rv = receipt_from_disk(
            l, (struct want){.rev = revision, .term = raft_term, .claims = claims_digest}, a, out,
            errmsg);
    else if (rv == 0 && raft_term != 0 && f.term != raft_term)
        rv = LSKV_ENOTFOUND;
    else if (rv == 0)
        return ledger_receipt_at(l, f.leaf, a, out, errmsg);
    if (rv == LSKV_ENOTFOUND)
        errmsg_printf(errmsg, "ledger: no entry made revision %" PRId64 " in term %" PRIu64,
                      revision, raft_term);
    return rv;
}

int ledger_tx_status(ledger *l, int64_t revision, uint64_t raft_term,
                     enum ledger_tx_status *out, char *errmsg)
{
    struct found f = {0};
    int rv = find_revision(l, revision, NULL, false, &f, errmsg);
    if (rv == LSKV_ENOTFOUND) {
        *out = LEDGER_TX_UNKNOWN;
        return 0;
    }
    if (rv != 0)
        return rv;
    *out = raft_term == 0 || f.term == raft_term ? LEDGER_TX_COMMITTED : LEDGER_TX_INVALID;
    return 0;
}

/* --- Consistency proofs ------------------------------------------------------ */

static int hex_proof(struct arena *a, const uint8_t (*proof)[MERKLE_HASH_BYTES], size_t n,
                     Lskvserverpb__GetConsistencyProofResponse *r)
{
    r->proof = arena_calloc(a, n ? n : 1, sizeof *r->proof);
    if (r->proof == NULL)
        return LSKV_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        r->proof[i] = arena_alloc(a, 2 * MERKLE_HASH_BYTES + 1);
        if (r->proof[i] == NULL)
            return LSKV_ENOMEM;
        hex_encode(proof[i], MERKLE_HASH_BYTES, r->proof[i]);
    }
    r->n_proof = n;
    return 0;
}

/* The signed root at exactly `size` and a tree around it: from the chunk
 * holding leaf size - 1 (its tree from the block boundary below, or the
 * chunk header), up to that signature (the first whose size is not below
 * size: it follows leaf size - 1) and on to leaf `upto`.
 * Errors: LSKV_ENOTFOUND (no signature at exactly size), as the scan. */
static int signed_root_at(ledger *l, uint64_t size, uint64_t upto, struct arena *a,
                          merkle_tree **t, Lskvserverpb__SignedRoot **sr, char *errmsg)
{
    struct lg_scan s;
    *t = NULL;
    *sr = NULL;
    int rv = lg_scan_open(l, lg_chunk_of_leaf(l, size - 1), &s, errmsg);
    if (rv != 0)
        return rv;
    rv = lg_scan_tree(l, &s, size - 1, t);
    struct chunk_entry e;
    while (rv == 0 && (*sr == NULL || merkle_size(*t) < upto)) {
        if ((rv = lg_scan_next(&s, &e, errmsg)) != 1) {
            rv = rv == 0 && *sr == NULL ? LSKV_ENOTFOUND : rv;
            break;
        }
        rv = 0;
        if (s.leaf - 1 < merkle_size(*t))
            continue; /* summarised by the tree's peaks */
        uint8_t leaf[MERKLE_HASH_BYTES];
        chunk_entry_leaf(&e, leaf);
        if ((rv = merkle_append(*t, leaf)) != 0 || e.type != CHUNK_ENTRY_SIGNATURE ||
            *sr != NULL)
            continue;
        struct sig_payload p;
        if ((rv = sig_payload_decode(e.public_part, e.public_len, &p, errmsg)) != 0)
            break;
        if (p.tree_size == size)
            rv = anchor_from_sig(&p, a, sr);
        else if (p.tree_size > size)
            rv = LSKV_ENOTFOUND;
    }
    lg_scan_close(&s);
    if (rv == LSKV_ENOTFOUND)
        errmsg_printf(errmsg, "ledger: no signature covers exactly %" PRIu64 " leaves", size);
    if (rv != 0) {
        merkle_close(*t);
        *t = NULL;
    }
    return rv;
}

/* Reads only the chunks around from_size and to_size (the latest signed
 * root is kept in memory); the leaves in between come from block hashes.
 * *fallback: the blocks could not give every hash, scan instead. */
static int consistency_fast(ledger *l, uint64_t from_size, uint64_t to_size, struct arena *a,
                            Lskvserverpb__GetConsistencyProofResponse **out, bool *fallback,
                            char *errmsg)
{
    *fallback = false;
    const struct win_sig *last = l->last_sig.payload ? &l->last_sig : NULL;
    if (from_size == 0 && (last == NULL || last->p.tree_size != to_size)) {
        *fallback = true;
        return LSKV_ENOTFOUND;
    }
    Lskvserverpb__GetConsistencyProofResponse *r = arena_alloc(a, sizeof *r);
    if (r == NULL)
        return LSKV_ENOMEM;
    lskvserverpb__get_consistency_proof_response__init(r);
    if (from_size == 0) { /* just the latest signed root: an anchor to save */
        int rv = anchor_from_sig(&last->p, a, &r->to);
        if (rv == 0)
            *out = r;
        return rv;
    }
    merkle_tree *tm = NULL, *tn = NULL;
    int rv = 0;
    if (last != NULL && last->p.tree_size == to_size)
        rv = anchor_from_sig(&last->p, a, &r->to);
    else
        rv = signed_root_at(l, to_size, 0, a, &tn, &r->to, errmsg);
    if (rv == 0 && from_size > merkle_base(l->tree)) {
        /* Its signature follows leaf from_size - 1: in the window. */
        for (size_t i = 0; i < l->n_sigs && r->from == NULL && rv == 0; i++)
            if (l->sigs[i].p.tree_size == from_size)
                rv = anchor_from_sig(&l->sigs[i].p, a, &r->from);
        if (rv == 0 && r->from == NULL) {
            rv = LSKV_ENOTFOUND;
            errmsg_printf(errmsg, "ledger: no signature covers exactly %" PRIu64 " leaves",
                          from_size);
        }
    } else if (rv == 0) {
        /* On to the next block boundary, where block hashes take over. */
        uint64_t upto = (from_size + LG_BLOCK_LEAVES - 1) / LG_BLOCK_LEAVES * LG_BLOCK_LEAVES;
        rv = signed_root_at(l, from_size, upto, a, &tm, &r->from, errmsg);
    }
    uint8_t proof[MERKLE_MAX_CONSISTENCY][MERKLE_HASH_BYTES];
    size_t n = 0;
    if (rv == 0) {
        struct sources src = {.l = l, .tm = tm, .tn = tn};
        rv = merkle_consistency_with(source_node, &src, from_size, to_size, proof, &n);
        if (rv == LSKV_ENOTFOUND)
            *fallback = true;
    }
    if (rv == 0) {
        /* Cheap, and it keeps a wrong block from ever being served. */
        uint8_t rf[MERKLE_HASH_BYTES], rt[MERKLE_HASH_BYTES];
        if (hex_decode(r->from->root, rf, sizeof rf) != 0 ||
            hex_decode(r->to->root, rt, sizeof rt) != 0 ||
            !merkle_consistency_verify(from_size, to_size, rf, rt,
                                       (const uint8_t(*)[MERKLE_HASH_BYTES])proof, n)) {
            rv = LSKV_ENOTFOUND;
            *fallback = true;
        }
    }
    if (rv == 0)
        rv = hex_proof(a, (const uint8_t(*)[MERKLE_HASH_BYTES])proof, n, r);
    merkle_close(tm);
    merkle_close(tn);
    if (rv == 0)
        *out = r;
    return rv;
}

int ledger_consistency(ledger *l, uint64_t from_size, uint64_t to_size, struct arena *a,
                       Lskvserverpb__GetConsistencyProofResponse **out, char *errmsg)
{
    if (to_size == 0)
        to_size = l->signed_size;
    if (to_size == 0) {
        errmsg_printf(errmsg, "ledger: nothing is signed yet");
        return LSKV_ENOTREADY;
    }
    if (from_size > to_size || to_size > l->signed_size) {
        errmsg_printf(errmsg, "ledger: no consistency proof from %" PRIu64 " to %" PRIu64
                      " leaves (signed: %" PRIu64 ")", from_size, to_size, l->signed_size);
        return from_size > to_size ? LSKV_EINVAL : LSKV_ENOTFOUND;
    }
    bool fallback;
    int frv = consistency_fast(l, from_size, to_size, a, out, &fallback, errmsg);
    if (!fallback)
        return frv;
    l->slow_proofs++;
    /* The slow path: one pass from the chunk holding leaf from_size - 1: the tree from its
     * header, and the signature entries for both sizes (each comes after
     * the last leaf it covers). */
    uint64_t start = from_size ? from_size - 1 : to_size - 1;
    struct lg_scan s;
    int rv = lg_scan_open(l, lg_chunk_of_leaf(l, start), &s, errmsg);
    if (rv != 0)
        return rv;
    merkle_tree *t = NULL;
    rv = merkle_open(s.h.first_leaf, (const uint8_t(*)[MERKLE_HASH_BYTES])s.h.peaks, s.h.n_peaks,
                     &t);
    Lskvserverpb__SignedRoot *from = NULL, *to = NULL;
    struct chunk_entry e;
    while (rv == 0 && (to == NULL || (from_size && from == NULL))) {
        rv = lg_scan_next(&s, &e, errmsg);
        if (rv == 0) {
            rv = LSKV_ENOTFOUND;
            errmsg_printf(errmsg, "ledger: no signature covers exactly %" PRIu64 " leaves",
                          from_size && from == NULL ? from_size : to_size);
        }
        if (rv != 1)
            break;
        uint8_t leaf[32];
        chunk_entry_leaf(&e, leaf);
        if ((rv = merkle_append(t, leaf)) != 0 || e.type != CHUNK_ENTRY_SIGNATURE)
            continue;
        struct sig_payload p;
        if ((rv = sig_payload_decode(e.public_part, e.public_len, &p, errmsg)) != 0)
            break;
        if (from_size && from == NULL && p.tree_size == from_size)
            rv = anchor_from_sig(&p, a, &from);
        if (rv == 0 && to == NULL && p.tree_size == to_size)
            rv = anchor_from_sig(&p, a, &to);
        if (rv == 0 && from_size && from == NULL && p.tree_size > from_size) {
            rv = LSKV_ENOTFOUND;
            errmsg_printf(errmsg, "ledger: no signature covers exactly %" PRIu64 " leaves",
                          from_size);
        }
    }
    Lskvserverpb__GetConsistencyProofResponse *r = NULL;
    if (rv == 0) {
        r = arena_alloc(a, sizeof *r);
        rv = r ? 0 : LSKV_ENOMEM;
    }
    if (rv == 0) {
        lskvserverpb__get_consistency_proof_response__init(r);
        r->from = from;
        r->to = to;
    }
    if (rv == 0 && from_size) {
        uint8_t proof[MERKLE_MAX_CONSISTENCY][MERKLE_HASH_BYTES];
        size_t n;
        rv = merkle_consistency(t, from_size, to_size, proof, &n);
        r->proof = arena_calloc(a, n ? n : 1, sizeof *r->proof);
        if (rv == 0 && r->proof == NULL)
            rv = LSKV_ENOMEM;
        for (size_t i = 0; rv == 0 && i < n; i++) {
            r->proof[i] = arena_alloc(a, 2 * MERKLE_HASH_BYTES + 1);
            if (r->proof[i] == NULL)
                rv = LSKV_ENOMEM;
            else
                hex_encode(proof[i], MERKLE_HASH_BYTES, r->proof[i]);
        }
        r->n_proof = n;
    }
    merkle_close(t);
    lg_scan_close(&s);
    if (rv == 0)
        *out = r;
    return rv;
}

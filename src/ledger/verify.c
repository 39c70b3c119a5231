/* See verify.h. The checks follow docs/ledger-format.md section 7 in
 * order; each failure names what was expected. */
#include "ledger/verify.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/err.h"
#include "crypto/aead.h"
#include "ledger/keys.h"
#include "ledger/merkle.h"
#include "ledger/sig.h"

struct verifier {
    const cert_service *service;
    void (*on_block)(void *arg, uint64_t block, const uint8_t hash[MERKLE_HASH_BYTES]);
    void *block_arg;
    unsigned block_log2;
    void (*on_entry)(void *arg, uint64_t leaf, size_t offset, const struct chunk_entry *e);
    void *entry_arg;
    uint8_t service_digest[32];
    bool have_secret;
    aead_key *open_key;
    struct hash_hmac ce_key;
    merkle_tree *tree;
    struct verify_state st;
    bool any, last_was_sig;
    char *endorsed;            /* the last certificate found endorsed (PEM) */
    size_t endorsed_len;
    uint8_t *plain;            /* scratch for opened private parts */
    size_t plain_cap;
    uint8_t *last_sig;         /* copy of the last signature payload */
    size_t last_sig_len, last_sig_cap;
    uint64_t anchor_size;      /* 0: none */
    uint8_t anchor_root[MERKLE_HASH_BYTES];
    bool anchor_reached;
};

void verify_set_anchor(verifier *v, uint64_t size, const uint8_t root[MERKLE_HASH_BYTES])
{
    v->anchor_size = size;
    memcpy(v->anchor_root, root, MERKLE_HASH_BYTES);
    v->anchor_reached = false;
}

int verify_anchor_reached(const verifier *v, char *errmsg)
{
    if (v->anchor_size != 0 && !v->anchor_reached) {
        errmsg_printf(errmsg, "the ledger ends at %" PRIu64 " leaves, before the anchor's signed "
                      "root over %" PRIu64 " (rolled back)", merkle_size(v->tree), v->anchor_size);
        return LSKV_ECORRUPT;
    }
    return 0;
}

int verify_open(const struct verify_config *c, verifier **out)
{
    verifier *v = calloc(1, sizeof *v);
    if (v == NULL)
        return LSKV_ENOMEM;
    v->service = c->service;
    v->on_block = c->on_block;
    v->block_arg = c->block_arg;
    v->block_log2 = c->block_log2;
    v->on_entry = c->on_entry;
    v->entry_arg = c->entry_arg;
    v->st.last_nonsig_leaf = -1;
    int rv = c->service ? cert_service_digest(c->service, v->service_digest) : 0;
    if (rv == 0)
        rv = merkle_open(0, NULL, 0, &v->tree);
    if (rv == 0 && c->secret != NULL) {
        uint8_t k[AEAD_KEY_BYTES];
        ledger_private_key(c->secret, k);
        rv = aead_key_new(k, &v->open_key);
        OPENSSL_cleanse(k, sizeof k);
        keys_ce_init(&v->ce_key, c->secret);
        v->have_secret = true;
    }
    if (rv != 0) {
        verify_close(v);
        return rv;
    }
    *out = v;
    return 0;
}

void verify_close(verifier *v)
{
    if (v == NULL)
        return;
    merkle_close(v->tree);
    aead_key_free(v->open_key);
    hash_hmac_wipe(&v->ce_key);
    free(v->endorsed);
    free(v->last_sig);
    if (v->plain != NULL)
        OPENSSL_cleanse(v->plain, v->plain_cap);
    free(v->plain);
    free(v);
}

int verify_chunk_begin(verifier *v, uint64_t name_first, const struct chunk_header *h,
                       char *errmsg)
{
    uint8_t peaks[MERKLE_MAX_DEPTH][MERKLE_HASH_BYTES];
    size_t n;
    uint64_t size = merkle_size(v->tree);
    if (h->first_leaf != name_first || h->first_leaf != size) {
        errmsg_printf(errmsg, "chunk header names first leaf %" PRIu64 ", want %" PRIu64,
                      h->first_leaf, size);
        return LSKV_ECORRUPT;
    }
    if (merkle_peaks(v->tree, size, peaks, &n) != 0 || n != h->n_peaks ||
        memcmp(peaks, h->peaks, n * MERKLE_HASH_BYTES) != 0) {
        errmsg_printf(errmsg, "chunk header (first leaf %" PRIu64 ") does not match the tree "
                      "of the preceding chunks", h->first_leaf);
        return LSKV_ECORRUPT;
    }
    return 0;
}

/* Signature entry rules (section 4). leaf: the entry's own leaf index. */
static int check_signature(verifier *v, const struct chunk_entry *e, uint64_t leaf,
                           char *errmsg)
{
    struct sig_payload p;
    char why[LSKV_ERRMSG_SIZE];
    int rv = sig_payload_decode(e->public_part, e->public_len, &p, why);
    if (rv != 0) {
        errmsg_printf(errmsg, "signature payload: %s", why);
        return rv == LSKV_EFORMAT ? rv : LSKV_ECORRUPT;
    }
    if (e->sealed_len != 0) {
        errmsg_printf(errmsg, "signature entry has a private part");
        return LSKV_ECORRUPT;
    }
    if (p.tree_size == 0 || p.tree_size > leaf || p.tree_size < v->st.signed_size) {
        errmsg_printf(errmsg, "signature covers %" PRIu64 " leaves at leaf %" PRIu64
                      " (previous signature covered %" PRIu64 ")",
                      p.tree_size, leaf, v->st.signed_size);
        return LSKV_ECORRUPT;
    }
    uint8_t root[MERKLE_HASH_BYTES];
    if (merkle_root(v->tree, p.tree_size, root) != 0 || memcmp(root, p.root, 32) != 0) {
        errmsg_printf(errmsg, "signed root over %" PRIu64 " leaves does not match the entries "
                      "(an entry before it was changed, moved or removed)", p.tree_size);
        return LSKV_ECORRUPT;
    }
    if ((rv = sig_check(&p, why)) != 0) {
        errmsg_printf(errmsg, "signature: %s", why);
        return LSKV_ECORRUPT;
    }
    if (v->service != NULL && memcmp(p.service_digest, v->service_digest, 32) != 0) {
        errmsg_printf(errmsg, "signature: signed by another service identity (the statement "
                      "names another service certificate)");
        return LSKV_ECORRUPT;
    }
    if (v->service != NULL &&
        (v->endorsed == NULL || v->endorsed_len != p.cert_len ||
         memcmp(v->endorsed, p.cert_pem, p.cert_len) != 0)) {
        if ((rv = sig_check_service(&p, v->service, why)) != 0) {
            /* e.g. identity/ replaced by another cluster's */
            errmsg_printf(errmsg, "signature: signed by another service identity (%s)", why);
            return LSKV_ECORRUPT;
        }
        char *c = malloc(p.cert_len);
        if (c == NULL)
            return LSKV_ENOMEM;
        memcpy(c, p.cert_pem, p.cert_len);
        free(v->endorsed);
        v->endorsed = c;
        v->endorsed_len = p.cert_len;
    }
    if (e->public_len > v->last_sig_cap) {
        uint8_t *b = realloc(v->last_sig, e->public_len);
        if (b == NULL)
            return LSKV_ENOMEM;
        v->last_sig = b;
        v->last_sig_cap = e->public_len;
    }
    memcpy(v->last_sig, e->public_part, e->public_len);
    v->last_sig_len = e->public_len;
    v->st.signed_size = p.tree_size;
    v->st.signatures++;
    return 0;
}

/* With the secret (sections 3.1, 3.2). */
static int check_private(verifier *v, const struct chunk_entry *e, char *errmsg)
{
    uint8_t ced[HASH_BYTES];
    keys_ce_digest(&v->ce_key, e->term, e->index, ced);
    if (memcmp(ced, e->commit_evidence_digest, HASH_BYTES) != 0) {
        errmsg_printf(errmsg, "commit evidence digest does not match the ledger secret");
        return LSKV_ECORRUPT;
    }
    if (e->sealed_len == 0)
        return 0;
    uint8_t nonce[AEAD_NONCE_BYTES];
    ledger_nonce(e->term, e->index, nonce);
    if (memcmp(nonce, e->sealed, AEAD_NONCE_BYTES) != 0) {
        errmsg_printf(errmsg, "private part nonce is not derived from the txid");
        return LSKV_ECORRUPT;
    }
    size_t pl = e->sealed_len - AEAD_OVERHEAD;
    if (pl > v->plain_cap) {
        uint8_t *p = malloc(pl);
        if (p == NULL)
            return LSKV_ENOMEM;
        if (v->plain != NULL)
            OPENSSL_cleanse(v->plain, v->plain_cap);
        free(v->plain);
        v->plain = p;
        v->plain_cap = pl;
    }
    if (aead_key_open(v->open_key, e->body, e->aad_len, e->sealed, e->sealed_len, v->plain) !=
        0) {
        errmsg_printf(errmsg, "private part does not decrypt/authenticate with the ledger "
                      "secret");
        return LSKV_ECORRUPT;
    }
    const uint8_t *ws;
    size_t wl;
    char why[LSKV_ERRMSG_SIZE];
    int rv = chunk_private_decode(v->plain, pl, &ws, &wl, why);
    if (rv != 0)
        errmsg_printf(errmsg, "%s", why);
    OPENSSL_cleanse(v->plain, pl);
    return rv;
}

int verify_entry(verifier *v, const struct chunk_entry *e, char *errmsg)
{
    struct verify_state *st = &v->st;
    if (v->any && (e->index <= st->last_index || e->term < st->last_term ||
                   e->revision < st->last_rev)) {
        errmsg_printf(errmsg, "entry out of order: txid %" PRIu64 ".%" PRIu64 " rev %" PRId64
                      " after txid %" PRIu64 ".%" PRIu64 " rev %" PRId64,
                      e->term, e->index, e->revision, st->last_term, st->last_index,
                      st->last_rev);
        return LSKV_ECORRUPT;
    }
    uint64_t leaf = merkle_size(v->tree);
    int rv;
    if (v->have_secret && (rv = check_private(v, e, errmsg)) != 0)
        return rv;
    if (e->type == CHUNK_ENTRY_SIGNATURE && (rv = check_signature(v, e, leaf, errmsg)) != 0)
        return rv;
    uint8_t lh[MERKLE_HASH_BYTES];
    chunk_entry_leaf(e, lh);
    if ((rv = merkle_append(v->tree, lh)) != 0)
        return rv;
    uint64_t bsz = (uint64_t)1 << v->block_log2;
    if (v->on_block != NULL && ((leaf + 1) & (bsz - 1)) == 0) {
        uint8_t bh[MERKLE_HASH_BYTES];
        /* a node of the tree of leaf + 1 >= base leaves: derivable */
        if ((rv = merkle_node(v->tree, leaf + 1 - bsz, leaf + 1, bh)) != 0)
            return rv;
        v->on_block(v->block_arg, (leaf + 1) / bsz - 1, bh);
    }
    if (leaf + 1 == v->anchor_size) {
        uint8_t root[MERKLE_HASH_BYTES];
        if ((rv = merkle_root(v->tree, leaf + 1, root)) != 0)
            return rv;
        if (memcmp(root, v->anchor_root, MERKLE_HASH_BYTES) != 0) {
            errmsg_printf(errmsg, "the root over %" PRIu64 " leaves differs from the anchor's "
                          "signed root (forked or rewritten)", v->anchor_size);
            return LSKV_ECORRUPT;
        }
        v->anchor_reached = true;
    }
    /* Memory stays bounded: later signatures cover at least signed_size. */
    if (e->type == CHUNK_ENTRY_SIGNATURE && (rv = merkle_flush_to(v->tree, st->signed_size)) != 0)
        return rv;
    if (e->type != CHUNK_ENTRY_SIGNATURE)
        st->last_nonsig_leaf = (int64_t)leaf;
    v->last_was_sig = e->type == CHUNK_ENTRY_SIGNATURE;
    v->any = true;
    st->size = leaf + 1;
    st->last_term = e->term;
    st->last_index = e->index;
    st->last_rev = e->revision;
    return 0;
}

int verify_chunk_end(verifier *v, uint64_t name_last, char *errmsg)
{
    uint64_t size = merkle_size(v->tree);
    if (size != name_last + 1) {
        errmsg_printf(errmsg, "chunk holds leaves up to %" PRId64 ", its name says %" PRIu64,
                      (int64_t)size - 1, name_last);
        return LSKV_ECORRUPT;
    }
    if (!v->last_was_sig) {
        errmsg_printf(errmsg, "sealed chunk does not end with a signature");
        return LSKV_ECORRUPT;
    }
    return 0;
}

int verify_chunk(verifier *v, const uint8_t *buf, size_t len, uint64_t first, uint64_t last,
                 bool sealed, bool torn_ok, struct verify_chunk_result *r, char *errmsg)
{
    memset(r, 0, sizeof *r);
    r->first_rev = INT64_MAX;
    r->valid_len = len;
    struct chunk_header h;
    size_t off;
    int rv = chunk_header_decode(buf, len, &h, &off, errmsg);
    if (rv == 0)
        rv = verify_chunk_begin(v, first, &h, errmsg);
    if (rv != 0)
        return rv;
    while (off < len) {
        struct chunk_entry e;
        bool trunc;
        r->offset = off;
        rv = chunk_entry_decode(buf + off, len - off, &e, &trunc, errmsg);
        if (rv == LSKV_ECORRUPT && torn_ok &&
            (trunc || off + 4 + (size_t)get_u32be(buf + off) == len)) {
            r->valid_len = off;
            return 0;
        }
        if (rv != 0)
            return rv;
        r->have_txid = true;
        r->term = e.term;
        r->index = e.index;
        if ((rv = verify_entry(v, &e, errmsg)) != 0)
            return rv;
        if (v->on_entry != NULL)
            v->on_entry(v->entry_arg, v->st.size - 1, off, &e);
        if (r->first_rev == INT64_MAX)
            r->first_rev = e.revision;
        off += e.frame_len;
    }
    r->offset = len;
    return sealed ? verify_chunk_end(v, last, errmsg) : 0;
}

void verify_get_state(const verifier *v, struct verify_state *out)
{
    *out = v->st;
}

void verify_last_signature(const verifier *v, const uint8_t **payload, size_t *len)
{
    *payload = v->last_sig_len ? v->last_sig : NULL;
    *len = v->last_sig_len;
}

void verify_peaks(const verifier *v, uint8_t (*out)[MERKLE_HASH_BYTES], size_t *n)
{
    merkle_peaks(v->tree, merkle_size(v->tree), out, n);
}

int verify_names(const struct verify_name *names, size_t n, bool unsynced_ok, size_t *bad,
                 char *errmsg)
{
    uint64_t next = 0;
    bool open_seen = false;
    for (size_t i = 0; i < n; i++) {
        *bad = i;
        if (names[i].sealed && open_seen) {
            errmsg_printf(errmsg, "sealed chunk after an open chunk");
            return LSKV_ECORRUPT;
        }
        if (open_seen && !unsynced_ok) {
            errmsg_printf(errmsg, "open chunk is not the last");
            return LSKV_ECORRUPT;
        }
        if (open_seen)
            continue; /* later open-named chunks: repaired by their loader */
        if (names[i].first != next) {
            errmsg_printf(errmsg, "chunk starts at leaf %" PRIu64 ", want %" PRIu64
                          " (missing or overlapping chunk)", names[i].first, next);
            return LSKV_ECORRUPT;
        }
        if (!names[i].sealed)
            open_seen = true;
        else
            next = names[i].last + 1;
    }
    return 0;
}

/* Framing, sealing and appending entries (ledger_append, ledger_check). */
#include <openssl/crypto.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/bytes.h"
#include "ledger/keys.h"
#include "ledger/ledger_impl.h"

void lg_add_block(void *arg, uint64_t block, const uint8_t hash[MERKLE_HASH_BYTES])
{
    ledger *l = arg;
    if (block != l->n_blocks) /* already known (verified, then recorded) */
        return;
    if (lg_grow((void **)&l->blocks, &l->cap_blocks, l->n_blocks + 1, sizeof l->blocks[0]) != 0)
        return; /* without it, proofs take the slow path */
    memcpy(l->blocks[l->n_blocks++], hash, MERKLE_HASH_BYTES);
}

int lg_set_last_sig(ledger *l, const uint8_t *payload, size_t len, char *errmsg)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL)
        return LSKV_ENOMEM;
    memcpy(copy, payload, len);
    struct sig_payload p;
    int rv = sig_payload_decode(copy, len, &p, errmsg);
    if (rv != 0) {
        free(copy);
        return rv;
    }
    free(l->last_sig.payload);
    l->last_sig = (struct win_sig){.payload = copy, .len = len, .p = p};
    return 0;
}

/* Records an entry already in the open chunk's file in memory. */
int lg_record_entry(ledger *l, const struct chunk_entry *e, uint64_t off, const uint8_t wsd[32],
                    const uint8_t leaf[32], const uint8_t *sig_payload, size_t sig_len,
                    char *errmsg)
{
    int rv = lg_grow((void **)&l->win, &l->cap_win, l->n_win + 1, sizeof l->win[0]);
    if (rv == 0)
        rv = lg_index_entry(l, merkle_size(l->tree), off, e);
    if (rv == 0 && e->type == CHUNK_ENTRY_SIGNATURE)
        rv = lg_grow((void **)&l->sigs, &l->cap_sigs, l->n_sigs + 1, sizeof l->sigs[0]);
    if (rv != 0)
        return rv;
    uint64_t leaf_index = merkle_size(l->tree);
    if (e->type == CHUNK_ENTRY_SIGNATURE) {
        struct win_sig *ws = &l->sigs[l->n_sigs];
        ws->payload = malloc(sig_len);
        if (ws->payload == NULL)
            return LSKV_ENOMEM;
        memcpy(ws->payload, sig_payload, sig_len);
        ws->len = sig_len;
        ws->leaf = leaf_index;
        if ((rv = sig_payload_decode(ws->payload, sig_len, &ws->p, errmsg)) != 0) {
            free(ws->payload);
            return rv;
        }
    }
    if ((rv = merkle_append(l->tree, leaf)) != 0) {
        if (e->type == CHUNK_ENTRY_SIGNATURE)
            free(l->sigs[l->n_sigs].payload);
        return rv;
    }
    if (((leaf_index + 1) & (LG_BLOCK_LEAVES - 1)) == 0) {
        uint8_t bh[MERKLE_HASH_BYTES];
        /* a node of the window's tree (base <= its start or a peak) */
        if (merkle_node(l->tree, leaf_index + 1 - LG_BLOCK_LEAVES, leaf_index + 1, bh) == 0)
            lg_add_block(l, (leaf_index + 1) / LG_BLOCK_LEAVES - 1, bh);
    }
    if (e->type == CHUNK_ENTRY_SIGNATURE) {
        if (l->sigs[l->n_sigs].p.tree_size > l->signed_size)
            l->signed_size = l->sigs[l->n_sigs].p.tree_size;
        /* best effort: without it, proofs take the slow path */
        (void)lg_set_last_sig(l, sig_payload, sig_len, errmsg);
        l->n_sigs++;
    } else {
        l->last_nonsig_leaf = (int64_t)leaf_index;
    }
    struct win_entry *w = &l->win[l->n_win++];
    w->term = e->term;
    w->index = e->index;
    w->revision = e->revision;
    w->type = e->type;
    memcpy(w->wsd, wsd, 32);
    memcpy(w->claims_digest, e->claims_digest, 32);
    struct chunk_info *c = &l->chunks[l->n_chunks - 1];
    if (c->first_rev == INT64_MAX)
        c->first_rev = e->revision;
    l->last_term = e->term;
    l->last_index = e->index;
    l->last_rev = e->revision;
    return 0;
}

/* Prepares e for framing (commit evidence digest, sealed length) and
 * returns the frame's size. */
size_t lg_frame_prepare(ledger *l, struct chunk_entry *e, size_t plain_len)
{
    char ce[LEDGER_CE_MAX];
    keys_ce_format(&l->ce_key, e->term, e->index, ce);
    hash_sha256(ce, strlen(ce), e->commit_evidence_digest);
    e->sealed = NULL;
    e->sealed_len = plain_len ? (uint32_t)(plain_len + AEAD_OVERHEAD) : 0;
    return chunk_entry_size(e->public_len, e->sealed_len);
}

/* Seals e (prepared by lg_frame_prepare) into frame (flen bytes) as
 * lg_append_frame writes it; *d decodes it (borrowing frame), wsd and leaf are
 * its write set digest and Merkle leaf. plain may be NULL. */
int lg_build_frame(ledger *l, struct chunk_entry *e, const uint8_t *plain, size_t plain_len,
                       uint8_t *frame, size_t flen, struct chunk_entry *d, uint8_t wsd[32],
                       uint8_t leaf[32], char *errmsg)
{
    size_t aad_off, aad_len, sealed_off;
    chunk_entry_begin(e, frame, &aad_off, &aad_len, &sealed_off);
    int rv = 0;
    if (plain_len) {
        uint8_t nonce[AEAD_NONCE_BYTES];
        ledger_nonce(e->term, e->index, nonce);
        rv = aead_key_seal_with_nonce(l->seal, nonce, frame + aad_off, aad_len, plain,
                                      plain_len, frame + sealed_off);
        if (rv != 0) {
            errmsg_printf(errmsg, "ledger: seal failed");
            return rv;
        }
    }
    chunk_entry_finish(frame, flen);
    bool trunc;
    if ((rv = chunk_entry_decode(frame, flen, d, &trunc, errmsg)) != 0)
        return rv;
    chunk_entry_wsd(d, wsd);
    merkle_leaf_hash_ced(wsd, d->commit_evidence_digest, d->claims_digest, leaf);
    return 0;
}

/* Writes the buffered frames to the open chunk. A failed write is sticky
 * (the partial tail is cut if possible; reopening repairs it otherwise). */
int lg_flush_frames(ledger *l)
{
    if (l->sticky != 0)
        return l->sticky;
    if (l->wlen == 0)
        return 0;
    int rv = lg_write_all(l->fd, l->wbuf, l->wlen);
    if (rv == 0 && l->fsync_each && fdatasync(l->fd) != 0)
        rv = -errno;
    if (rv != 0) {
        if (ftruncate(l->fd, (off_t)(l->open_bytes - l->wlen)) != 0) {
            /* nothing more to do: reopen repairs a torn tail */
        }
        l->sticky = rv;
    }
    l->wlen = 0;
    return rv;
}

int ledger_flush(ledger *l)
{
    return lg_flush_frames(l);
}

/* Seals and writes one entry, then records it. plain may be NULL. */
int lg_append_frame(ledger *l, struct chunk_entry *e, const uint8_t *plain,
                        size_t plain_len, char *errmsg)
{
    if (l->sticky != 0) {
        errmsg_printf(errmsg, "ledger: failed earlier (%s); reopen it", lskv_strerror(l->sticky));
        return l->sticky;
    }
    bool empty = merkle_size(l->tree) == 0;
    const char *why = NULL;
    int rv = LSKV_EINVAL;
    if (!empty && e->index <= l->last_index)
        why = "raft index is not above the last entry's";
    else if (e->term > UINT32_MAX)
        why = "term does not fit the 32-bit nonce field";
    else if (l->fd < 0)
        why = "no open chunk (ledger_begin_writes was not called)";
    else if (!empty && e->term < l->last_term)
        why = "term is below the last entry's";
    else if (!empty && e->revision < l->last_rev)
        why = "revision is below the last entry's";
    else if (plain_len > CHUNK_MAX_FRAME_BYTES / 2)
        why = "private part exceeds the frame limit", rv = LSKV_ETOOLARGE;
    else if (e->public_len > CHUNK_MAX_FRAME_BYTES / 2)
        why = "public part exceeds the frame limit", rv = LSKV_ETOOLARGE;
    if (why != NULL) {
        errmsg_printf(errmsg, "ledger: entry %" PRIu64 ".%" PRIu64 " rev %" PRId64 ": %s (last %"
                      PRIu64 ".%" PRIu64 " rev %" PRId64 ")", e->term, e->index, e->revision,
                      why, l->last_term, l->last_index, l->last_rev);
        return rv;
    }
    size_t flen = lg_frame_prepare(l, e, plain_len);
    rv = lg_grow((void **)&l->wbuf, &l->wcap, l->wlen + flen, 1);
    if (rv != 0)
        return rv;
    uint8_t *frame = l->wbuf + l->wlen;
    struct chunk_entry d;
    uint8_t wsd[32], leaf[32];
    if ((rv = lg_build_frame(l, e, plain, plain_len, frame, flen, &d, wsd, leaf, errmsg)) != 0)
        return rv;
    /* Buffered until ledger_flush (once per loop turn) unless the buffer is
     * big or every append must be synced. */
    l->wlen += flen;
    l->open_bytes += flen;
    rv = lg_record_entry(l, &d, l->open_bytes - flen, wsd, leaf, d.public_part, d.public_len,
                         errmsg);
    if (rv != 0) {
        l->sticky = rv; /* in the chunk but not in memory */
        return rv;
    }
    if (l->fsync_each || l->wlen >= WBUF_FLUSH_BYTES) {
        if ((rv = lg_flush_frames(l)) != 0) {
            errmsg_printf(errmsg, "ledger: write %s: %s", l->chunks[l->n_chunks - 1].name,
                          lskv_strerror(rv));
            return rv;
        }
    }
    if (e->type == CHUNK_ENTRY_SIGNATURE && l->open_bytes >= l->chunk_bytes) {
        rv = lg_rotate(l, errmsg);
        if (rv != 0)
            l->sticky = rv;
    }
    return rv;
}

/* Appends entry in, or (check) checks it against the one the ledger holds:
 * both build the same frame from the same private part. */
static int append_or_check(ledger *l, const struct ledger_entry *in, bool check, char *errmsg)
{
    if (in->type < LEDGER_ENTRY_KV || in->type > LEDGER_ENTRY_OTHER ||
        in->type == LEDGER_ENTRY_SIGNATURE) {
        errmsg_printf(errmsg, "ledger: entry %" PRIu64 ".%" PRIu64 ": bad entry type %u",
                      in->term, in->index, in->type);
        return LSKV_EINVAL;
    }
    if ((in->write_set_len && in->write_set == NULL) || (in->claims_len && in->claims == NULL)) {
        errmsg_printf(errmsg, "ledger: entry %" PRIu64 ".%" PRIu64 ": NULL write set or claims "
                      "with a length", in->term, in->index);
        return LSKV_EINVAL;
    }
    struct chunk_entry e = {.type = (uint8_t)in->type,
                            .term = in->term,
                            .index = in->index,
                            .revision = in->revision};
    if (in->claims != NULL)
        hash_sha256(in->claims, in->claims_len, e.claims_digest);
    if (in->write_set_len > LEDGER_MAX_WRITE_SET_BYTES) {
        errmsg_printf(errmsg, "ledger: entry %" PRIu64 ".%" PRIu64 ": write set of %zu bytes "
                      "exceeds the ledger's limit of %u", in->term, in->index,
                      in->write_set_len, LEDGER_MAX_WRITE_SET_BYTES);
        return LSKV_ETOOLARGE;
    }
    /* Only the claims' digest is kept (it is what receipts need): the
     * client holds its own request and response. */
    size_t plen = chunk_private_size(in->write_set_len);
    uint8_t *plain = malloc(plen);
    if (plain == NULL)
        return LSKV_ENOMEM;
    chunk_private_encode(in->write_set, in->write_set_len, plain);
    int rv = check ? lg_check_frame(l, &e, plain, plen, false, errmsg)
                   : lg_append_frame(l, &e, plain, plen, errmsg);
    OPENSSL_cleanse(plain, plen);
    free(plain);
    return rv;
}

int ledger_check(ledger *l, const struct ledger_entry *in, char *errmsg)
{
    return append_or_check(l, in, true, errmsg);
}

int ledger_append(ledger *l, const struct ledger_entry *in, char *errmsg)
{
    return append_or_check(l, in, false, errmsg);
}

/* Copying entries between members (ledger_read_frames, ledger_append_copy):
 * a member that installed a raft snapshot lacks the ledger entries the
 * snapshot covers, and takes them from another member as the frames are on
 * disk. A copied frame is appended only if it is exactly the frame this
 * member would have written for the same entry: its private part opens with
 * the ledger secret, and sealing that again at the same txid gives the same
 * bytes; a signature entry is checked as an applied one is (endorsed
 * signer, root over this ledger's leaves). What no signature covers yet is
 * checked by the caller against the snapshot's root. */
#include <openssl/crypto.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "ledger/ledger_impl.h"

int ledger_read_frames(ledger *l, uint64_t from, uint64_t to, size_t max_bytes, uint8_t **out,
                       size_t *out_len, uint64_t *n, char *errmsg)
{
    *out = NULL;
    *out_len = 0;
    *n = 0;
    uint64_t size = merkle_size(l->tree);
    if (to > size)
        to = size;
    if (from >= to || l->n_points == 0)
        return 0;
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    int rv = 0;
    bool full = false;
    for (size_t p = lg_point_of_leaf(l, from); p < l->n_points && !full && rv == 0; p++) {
        struct lg_seg s;
        if ((rv = lg_seg_read(l, p, 0, &s, errmsg)) != 0)
            break;
        for (;;) {
            size_t at = s.off;
            struct chunk_entry e;
            int r = lg_seg_next(l, &s, &e, errmsg);
            if (r <= 0) {
                rv = r;
                break;
            }
            uint64_t leaf = s.leaf - 1;
            if (leaf < from)
                continue;
            if (leaf >= to || (*n > 0 && len + e.frame_len > max_bytes)) {
                full = true;
                break;
            }
            if ((rv = lg_grow((void **)&buf, &cap, len + e.frame_len, 1)) != 0)
                break;
            memcpy(buf + len, s.buf + at, e.frame_len);
            len += e.frame_len;
            (*n)++;
        }
        lg_seg_close(&s);
    }
    if (rv != 0) {
        free(buf);
        *n = 0;
        return rv;
    }
    *out = buf;
    *out_len = len;
    return 0;
}

static int copy_refused(char *errmsg, const struct chunk_entry *e, const char *why)
{
    errmsg_printf(errmsg, "ledger: copied entry %" PRIu64 ".%" PRIu64 ": %s", e->term, e->index,
                  why);
    return LSKV_ECORRUPT;
}

int ledger_append_copy(ledger *l, const uint8_t *frame, size_t len, char *errmsg)
{
    struct chunk_entry e;
    bool trunc;
    int rv = chunk_entry_decode(frame, len, &e, &trunc, errmsg);
    if (rv != 0)
        return rv == LSKV_EFORMAT ? rv : LSKV_ECORRUPT;
    if (e.frame_len != len)
        return copy_refused(errmsg, &e, "bytes follow the frame");
    if (e.type == CHUNK_ENTRY_SIGNATURE) {
        bool appended = false;
        rv = ledger_apply_signature(l, e.term, e.index, e.revision, e.public_part, e.public_len,
                                    &appended, errmsg);
        if (rv == 0 && !appended) /* a stale signature is never appended (invariant 5) */
            return copy_refused(errmsg, &e, "a signature older than this ledger's last");
        return rv;
    }
    if (e.type < CHUNK_ENTRY_KV || e.type > CHUNK_ENTRY_OTHER || e.public_len != 0 ||
        e.sealed_len <= AEAD_OVERHEAD)
        return copy_refused(errmsg, &e, "not the shape of an entry this ledger writes");
    size_t plain_len = e.sealed_len - AEAD_OVERHEAD;
    uint8_t *plain = malloc(plain_len);
    uint8_t *again = malloc(len);
    if (plain == NULL || again == NULL) {
        free(plain);
        free(again);
        return LSKV_ENOMEM;
    }
    struct chunk_entry c = {.type = e.type, .term = e.term, .index = e.index,
                            .revision = e.revision};
    memcpy(c.claims_digest, e.claims_digest, sizeof c.claims_digest);
    if (aead_key_open(l->seal, e.body, e.aad_len, e.sealed, e.sealed_len, plain) != 0) {
        rv = copy_refused(errmsg, &e, "its private part does not open with the ledger secret");
    } else if (lg_frame_prepare(l, &c, plain_len) != len) {
        rv = copy_refused(errmsg, &e, "its length differs from the frame this member writes");
    } else {
        struct chunk_entry d;
        uint8_t wsd[32], leaf[32];
        rv = lg_build_frame(l, &c, plain, plain_len, again, len, &d, wsd, leaf, errmsg);
        if (rv == 0 && memcmp(again, frame, len) != 0)
            rv = copy_refused(errmsg, &e, "differs from the frame this member writes for it");
        if (rv == 0)
            rv = lg_append_frame(l, &c, plain, plain_len, errmsg);
    }
    OPENSSL_cleanse(plain, plain_len);
    free(plain);
    free(again);
    return rv;
}

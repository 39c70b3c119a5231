/* Signature entries: when one is due, making one, applying one. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "ledger/ledger_impl.h"

/* --- Signatures ------------------------------------------------------------ */

bool ledger_signature_due(const ledger *l, uint64_t now_ms)
{
    if (l->last_nonsig_leaf < 0 || (uint64_t)l->last_nonsig_leaf < l->signed_size)
        return false;
    uint64_t unsigned_n = merkle_size(l->tree) - l->signed_size;
    return unsigned_n >= l->sig_tx_interval || now_ms - l->last_sig_ms >= l->sig_ms_interval ||
           now_ms < l->last_sig_ms;
}

int ledger_make_signature(ledger *l, const cert_node *node, uint64_t now_ms,
                          uint8_t **payload, size_t *len)
{
    if (l->sticky)
        return l->sticky;
    uint64_t n = merkle_size(l->tree);
    if (n == 0 || l->service == NULL) /* a signature names the service */
        return LSKV_EINVAL;
    uint8_t root[32];
    int rv = merkle_root(l->tree, n, root);
    if (rv == 0)
        rv = sig_make(node, l->service_digest, n, root, payload, len);
    if (rv == 0)
        l->last_sig_ms = now_ms;
    return rv;
}

/* Root over the first n leaves from chunk files (n below the window). */
static int disk_root(ledger *l, uint64_t n, uint8_t out[32], char *errmsg)
{
    struct lg_scan s;
    int rv = lg_scan_open(l, lg_chunk_of_leaf(l, n - 1), &s, errmsg);
    if (rv != 0)
        return rv;
    merkle_tree *t = NULL;
    rv = lg_scan_tree(l, &s, n, &t);
    struct chunk_entry e;
    while (rv == 0 && merkle_size(t) < n) {
        rv = lg_scan_next(&s, &e, errmsg);
        if (rv == 0) {
            rv = LSKV_ECORRUPT;
            errmsg_printf(errmsg, "ledger: chunk files end before leaf %" PRIu64, n);
        }
        if (rv != 1)
            break;
        rv = 0;
        if (s.leaf - 1 < merkle_size(t))
            continue; /* summarised by the tree's peaks */
        uint8_t leaf[32];
        chunk_entry_leaf(&e, leaf);
        rv = merkle_append(t, leaf);
    }
    if (rv == 0)
        rv = merkle_root(t, n, out);
    if (t != NULL)
        merkle_close(t);
    lg_scan_close(&s);
    return rv;
}

int ledger_root_at(ledger *l, uint64_t size, uint8_t out[32], char *errmsg)
{
    if (size == 0 || size > merkle_size(l->tree)) {
        errmsg_printf(errmsg, "ledger has %" PRIu64 " entries, not %" PRIu64,
                      merkle_size(l->tree), size);
        return LSKV_ENOTFOUND;
    }
    if (size >= merkle_base(l->tree))
        return merkle_root(l->tree, size, out);
    return disk_root(l, size, out, errmsg);
}

int ledger_apply_signature(ledger *l, uint64_t term, uint64_t index, int64_t revision,
                           const uint8_t *payload, size_t len, bool *appended, char *errmsg)
{
    if (appended != NULL)
        *appended = false;
    struct sig_payload p;
    int rv = sig_payload_decode(payload, len, &p, errmsg);
    if (rv != 0)
        return rv == LSKV_EFORMAT ? rv : LSKV_ECORRUPT;
    uint64_t n = merkle_size(l->tree);
    if (p.tree_size == 0 || p.tree_size > n) {
        errmsg_printf(errmsg, "signature covers %" PRIu64 " leaves, this node has %" PRIu64,
                      p.tree_size, n);
        return LSKV_ECORRUPT;
    }
    if ((rv = sig_verify(&p, l->service, errmsg)) != 0)
        return LSKV_ECORRUPT;
    uint8_t root[32];
    if (p.tree_size >= merkle_base(l->tree))
        rv = merkle_root(l->tree, p.tree_size, root);
    else
        rv = disk_root(l, p.tree_size, root, errmsg);
    if (rv != 0)
        return rv;
    if (memcmp(root, p.root, 32) != 0) {
        errmsg_printf(errmsg, "signature root over %" PRIu64 " leaves differs from this node's",
                      p.tree_size);
        return LSKV_ECORRUPT;
    }
    if (p.tree_size < l->signed_size)
        return 0; /* stale: invariant 5 */
    struct chunk_entry e = lg_signature_entry(term, index, revision, payload, len);
    rv = lg_append_frame(l, &e, NULL, 0, errmsg);
    if (rv == 0 && appended != NULL)
        *appended = true;
    return rv;
}

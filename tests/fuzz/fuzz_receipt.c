/* Fuzzes what `lskvctl receipt verify [--anchor A]` reads from files:
 * receipt JSON -> Lskvserverpb.Receipt -> verification (PEM node
 * certificate, DER signature, hex proof and leaf components), the anchor
 * JSON -> SignedRoot -> verification, and the consistency proof a receipt
 * carries against that anchor. Bad bytes must give an error, never a
 * crash. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/arena.h"
#include "common/err.h"
#include "ledger/anchor.h"
#include "ledger/receipt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct arena a;
    arena_init(&a);
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    Lskvserverpb__Receipt *r = NULL;
    uint8_t root[MERKLE_HASH_BYTES], aroot[MERKLE_HASH_BYTES];
    bool have_root = false;
    if (receipt_from_json((const char *)data, size, &a, &r, errmsg) == 0 && r != NULL)
        have_root = receipt_verify(r, NULL, NULL, root, errmsg) == 0;
    Lskvserverpb__SignedRoot *s = NULL;
    if (anchor_from_json((const char *)data, size, &a, &s, errmsg) == 0 &&
        anchor_verify(s, NULL, aroot, errmsg) == 0 && have_root)
        (void)anchor_check_receipt(r, root, s, aroot, errmsg);
    /* the receipt's own proof against a made-up anchor of its own size */
    if (have_root && r->n_anchor_proof > 0 && r->tx_receipt != NULL)
        (void)anchor_check_proof(r->anchor_size ? r->anchor_size : 1, root,
                                 r->tx_receipt->tree_size, root, r->anchor_proof,
                                 r->n_anchor_proof, errmsg);
    arena_close(&a);
    return 0;
}

/* Fuzzes what `lskvctl receipt verify` reads from a file: receipt JSON ->
 * Lskvserverpb.Receipt -> verification (PEM node certificate, DER signature,
 * hex proof and leaf components). Bad bytes must give an error, never a
 * crash, and never a verified receipt. */
#include <stdint.h>
#include <stdio.h>

#include "common/arena.h"
#include "common/err.h"
#include "ledger/receipt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct arena a;
    arena_init(&a);
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    Lskvserverpb__Receipt *r = NULL;
    if (receipt_from_json((const char *)data, size, &a, &r, errmsg) == 0 && r != NULL) {
        uint8_t root[MERKLE_HASH_BYTES];
        (void)receipt_verify(r, NULL, NULL, root, errmsg);
    }
    arena_close(&a);
    return 0;
}

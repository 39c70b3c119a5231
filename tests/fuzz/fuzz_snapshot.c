/* Fuzzes kvstore_restore (docs/snapshot-format.md): any bytes must give 0,
 * LSKV_ECORRUPT or LSKV_EFORMAT without crashing, leaking or reading out of
 * bounds, and a snapshot that is accepted must re-encode to the same bytes
 * (the encoding is canonical), with the store left usable. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "kv/kvstore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kvstore *kv;
    /* Restore and snapshot never touch the record store. */
    if (kvstore_open(NULL, &kv) != 0)
        return 0;
    int rv = kvstore_restore(kv, data, size);
    if (rv == 0) {
        uint8_t *buf;
        size_t len;
        if (kvstore_snapshot(kv, &buf, &len) == 0) {
            if (len != size || memcmp(buf, data, size) != 0)
                abort();
            free(buf);
        }
        if (kvstore_revision(kv) < 1 || kvstore_compact_revision(kv) > kvstore_revision(kv))
            abort();
    } else if (rv != LSKV_ECORRUPT && rv != LSKV_EFORMAT && rv != LSKV_ENOMEM) {
        abort();
    } else if (kvstore_revision(kv) != 1) {
        abort(); /* state unchanged on error */
    }
    kvstore_close(kv);
    return 0;
}

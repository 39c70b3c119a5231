/* Fuzzes the auth snapshot section parser (auth/authstore.c): any bytes
 * give 0, LSKV_ECORRUPT or LSKV_ENOMEM, never a crash or an overread; a
 * refused input leaves the store empty; what parses encodes and parses
 * again to the same encoding. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/authstore.h"
#include "common/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1); /* exact size: ASan sees overreads */
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    struct authstore as;
    authstore_init(&as);
    int rv = authstore_decode(&as, copy, size);
    if (rv != 0 && rv != LSKV_ECORRUPT && rv != LSKV_ENOMEM)
        abort();
    if (rv != 0 && (as.n_users != 0 || as.n_roles != 0 || as.enabled))
        abort();
    if (rv == 0) {
        uint8_t *a, *b;
        size_t alen, blen;
        struct authstore again;
        authstore_init(&again);
        if (authstore_encode(&as, &a, &alen) == 0) {
            if (authstore_decode(&again, a, alen) != 0)
                abort();
            if (authstore_encode(&again, &b, &blen) == 0) {
                if (alen != blen || memcmp(a, b, alen) != 0)
                    abort();
                free(b);
            }
            free(a);
        }
        authstore_clear(&again);
    }
    authstore_clear(&as);
    free(copy);
    return 0;
}

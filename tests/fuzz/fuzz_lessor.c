/* Fuzzes the lease snapshot section parser (lease/lessor.c): any bytes give
 * 0, LSKV_ECORRUPT or LSKV_EFORMAT, never a crash or an overread; what
 * parses encodes back to the same bytes (one encoding per state), and a
 * refused input leaves the lessor empty. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "lease/lessor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1); /* exact size: ASan sees overreads */
    lessor *l;
    if (copy == NULL || lessor_new(2, &l) != 0) {
        free(copy);
        return 0;
    }
    memcpy(copy, data, size);
    int rv = lessor_decode(l, copy, size);
    if (rv != 0 && rv != LSKV_ECORRUPT && rv != LSKV_EFORMAT && rv != LSKV_ENOMEM)
        abort();
    if (rv != 0 && lessor_count(l) != 0)
        abort();
    if (rv == 0) {
        uint8_t *back;
        size_t len;
        if (lessor_encode(l, &back, &len) == 0) {
            if (len != size || memcmp(back, copy, size) != 0)
                abort();
            free(back);
        }
    }
    lessor_free(l);
    free(copy);
    return 0;
}

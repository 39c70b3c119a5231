/* Fuzzes the forwarding message parser (consensus/forward.c): any bytes must
 * give 0 or LSKV_ECORRUPT, never a crash or an overread, and a parsed
 * message must be one of its shapes with a known status. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "consensus/forward.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1); /* exact size: ASan sees overreads */
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    struct fwd_msg m;
    int rv = fwd_parse(copy, size, &m);
    if (rv != 0 && rv != LSKV_ECORRUPT)
        abort();
    if (rv == 0) {
        if (m.type == FWD_PROPOSE && (m.cmd != copy + 9 || m.cmd_len != size - 9 || m.cmd_len == 0))
            abort();
        if ((m.type == FWD_PROPOSE_FAILED || m.type == FWD_PROPOSE_REFUSED) &&
            (size != 13 || m.status == 0))
            abort();
        if (m.type == FWD_CALL && (size < 10 || m.cmd != copy + 10))
            abort();
        if (m.type == FWD_CALL_REPLY && (size < 13 || m.cmd != copy + 13))
            abort();
        if (m.type == FWD_READ_INDEX && size != 9)
            abort();
        if (m.type == FWD_READ_REPLY && size != 21)
            abort();
    }
    free(copy);
    return 0;
}

/* Fuzzes the rollback probe messages (consensus/probe.c), which come from
 * peers: any bytes must give an answer, never a crash or an overread; a
 * decoded reply must encode back to the same bytes, and judging it against
 * any data dir must give 0 or LSKV_ECORRUPT with a message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "fuzz_copy.h"
#include "consensus/probe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = fuzz_copy(data, size);
    if (copy == NULL)
        return 0;
    int rq = probe_request_decode(copy, size);
    if (rq != 0 && rq != LSKV_ECORRUPT)
        abort();
    if (rq == 0) {
        uint8_t enc[PROBE_REQUEST_BYTES];
        probe_request_encode(enc);
        if (size != sizeof enc || memcmp(enc, copy, size) != 0)
            abort();
    }
    struct probe_reply r;
    int rv = probe_reply_decode(copy, size, &r);
    if (rv != 0 && rv != LSKV_ECORRUPT)
        abort();
    if (rv == 0) {
        uint8_t enc[PROBE_REPLY_BYTES];
        probe_reply_encode(&r, enc);
        if (size != sizeof enc || memcmp(enc, copy, size) != 0)
            abort();
        for (uint64_t last = 0; last < 3; last++) {
            struct probe_self self = {.last_index = last * (r.match_index / 2 + 1),
                                      .term = last * (r.term / 2 + 1)};
            char errmsg[LSKV_ERRMSG_SIZE] = "";
            int j = probe_judge(&self, 1, &r, errmsg);
            if ((j != 0 && j != LSKV_ECORRUPT) || (j != 0 && errmsg[0] == '\0'))
                abort();
        }
    }
    free(copy);
    return 0;
}

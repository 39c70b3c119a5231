/* Fuzzes the grpc-timeout header parser (net/grpc_frame.c), which reads a
 * client's bytes: any input must give an answer, never a crash or an
 * overread, and an accepted value must be what grpc-go's decodeTimeout
 * makes of it (an optional sign, 1 to 8 digits, a unit; hours clamped). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "fuzz_copy.h"
#include "net/grpc_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *v = fuzz_copy(data, size);
    if (v == NULL)
        return 0;
    int64_t ns = 0;
    int rv = grpc_timeout_parse(v, size, &ns);
    if (rv != 0 && rv != LSKV_EINVAL)
        abort();
    if (rv == 0) {
        if (size < 2 || size > 9)
            abort();
        const char *units = "HMSmun";
        const int64_t per[] = {3600000000000LL, 60000000000LL, 1000000000LL, 1000000LL, 1000LL,
                               1LL};
        const char *u = memchr(units, v[size - 1], 6);
        if (u == NULL)
            abort();
        size_t i = (v[0] == '+' || v[0] == '-') ? 1 : 0;
        if (i == size - 1)
            abort();
        int64_t n = 0;
        for (; i < size - 1; i++) {
            if (v[i] < '0' || v[i] > '9')
                abort();
            n = n * 10 + (v[i] - '0');
        }
        int64_t unit = per[u - units];
        int64_t want = n > INT64_MAX / unit ? INT64_MAX : n * unit;
        if (v[0] == '-')
            want = n > INT64_MAX / unit ? INT64_MIN : -want;
        if (ns != want)
            abort();
    }
    free(v);
    return 0;
}

/* For fuzz harnesses: the input copied into a buffer of exactly its size,
 * so that AddressSanitizer sees any read past its end (libFuzzer's own
 * buffer may be larger). NULL only when out of memory: skip the input. */
#ifndef LSKV_TESTS_FUZZ_COPY_H
#define LSKV_TESTS_FUZZ_COPY_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline uint8_t *fuzz_copy(const uint8_t *data, size_t size)
{
    uint8_t *p = malloc(size ? size : 1);
    if (p != NULL && size > 0)
        memcpy(p, data, size);
    return p;
}

#endif

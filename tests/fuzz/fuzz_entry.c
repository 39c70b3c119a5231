/* Fuzzes the raft entry / snapshot decoder (consensus/entry.c): any bytes
 * must give 0 or LSKV_ECORRUPT/LSKV_EFORMAT, never a crash or an overread.
 * The first input byte picks the expected kind; the rest is the entry. Valid
 * seeds are sealed under fuzz_key below. Every input is also sealed as a
 * payload and must open back to itself. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "consensus/entry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t fuzz_key[AEAD_KEY_BYTES] = {'l', 's', 'k', 'v', '-', 'f', 'u', 'z', 'z'};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t kind = (data[0] & 1) ? ENTRY_KIND_SNAPSHOT : ENTRY_KIND_COMMAND;
    const uint8_t *buf = data + 1;
    size_t len = size - 1;

    /* exact-size copy so ASan sees any read past the end */
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL)
        return 0;
    memcpy(copy, buf, len);

    struct entry_header h;
    size_t plain_len = 0;
    int rv = entry_parse(copy, len, &h, &plain_len);
    if (rv == 0) {
        if (plain_len + ENTRY_OVERHEAD > len)
            abort();
        uint8_t *out = malloc(plain_len ? plain_len : 1);
        if (out != NULL) {
            rv = entry_open(fuzz_key, 7, kind, copy, len, &h, out);
            if (rv != 0 && rv != LSKV_ECORRUPT && rv != LSKV_EIO)
                abort();
            free(out);
        }
    } else if (rv != LSKV_ECORRUPT && rv != LSKV_EFORMAT) {
        abort();
    }

    /* seal/open round trip of the input as a payload */
    struct entry_header sh = {.kind = kind, .term = len, .index = size * 3, .stamp = size};
    memcpy(sh.chain, data, size < sizeof sh.chain ? size : sizeof sh.chain);
    size_t sealed_len = entry_sealed_len(len);
    uint8_t *sealed = malloc(sealed_len);
    uint8_t *plain = malloc(len ? len : 1);
    if (sealed != NULL && plain != NULL && entry_seal(fuzz_key, 7, &sh, copy, len, sealed) == 0) {
        if (sealed_len % 8 != 0)
            abort();
        struct entry_header oh;
        if (entry_open(fuzz_key, 7, kind, sealed, sealed_len, &oh, plain) != 0)
            abort();
        if (memcmp(plain, copy, len) != 0 || oh.term != len || oh.stamp != size || oh.index != size * 3 ||
            memcmp(oh.chain, sh.chain, sizeof sh.chain) != 0 ||
            oh.kind != kind)
            abort();
    }
    free(sealed);
    free(plain);
    free(copy);
    return 0;
}

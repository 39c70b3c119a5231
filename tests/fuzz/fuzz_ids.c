/* Fuzzes the data dir's ids file parser (config/datadir.c): any bytes must
 * give 0 or LSKV_ECORRUPT, never a crash or an overread. What parses must
 * format back to the same bytes (one text per value), and the tag check must
 * accept exactly the tag datadir_ids_tag computes under fuzz_key (the seeds
 * "valid*" carry it). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "config/datadir.h"
#include "crypto/mac.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t fuzz_key[DATADIR_KEY_BYTES] = {'l', 's', 'k', 'v', '-', 'f', 'u', 'z', 'z'};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* exact-size copy so ASan sees any read past the end */
    char *copy = malloc(size ? size : 1);
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    struct datadir_ids ids;
    uint8_t tag[DATADIR_TAG_BYTES], want[DATADIR_TAG_BYTES];
    int rv = datadir_ids_parse(copy, size, &ids, tag);
    if (rv != 0 && rv != LSKV_ECORRUPT)
        abort();
    if (rv == 0) {
        char text[DATADIR_IDS_TEXT_BYTES];
        if (ids.cluster_id == 0 || ids.member_id == 0 || size != sizeof text)
            abort();
        datadir_ids_format(&ids, tag, text);
        if (memcmp(text, copy, size) != 0)
            abort();
        if (datadir_ids_tag(fuzz_key, &ids, want) != 0)
            abort();
        /* The right tag round-trips, and is the only one that matches. */
        struct datadir_ids back;
        uint8_t tag2[DATADIR_TAG_BYTES];
        char text2[DATADIR_IDS_TEXT_BYTES];
        datadir_ids_format(&ids, want, text2);
        if (datadir_ids_parse(text2, sizeof text2, &back, tag2) != 0 || !mac_equal(tag2, want) ||
            back.cluster_id != ids.cluster_id || back.member_id != ids.member_id)
            abort();
        if (mac_equal(tag, want) != (memcmp(text, text2, sizeof text) == 0))
            abort();
    }
    free(copy);
    return 0;
}

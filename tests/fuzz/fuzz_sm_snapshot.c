/* Fuzzes the state machine's snapshot container (statemachine/snapshot.h,
 * docs/snapshot-format.md): any bytes must give 0, LSKV_ECORRUPT or
 * LSKV_EFORMAT without crashing or reading out of bounds; a container that
 * is accepted re-encodes to the same bytes (the encoding is canonical), and
 * its KV section goes on to kvstore_restore and its MEMBERS section to
 * member_table_decode (0 or LSKV_ECORRUPT; what decodes encodes again and
 * decodes to the same table). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "kv/kvstore.h"
#include "statemachine/member_table.h"
#include "statemachine/snapshot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1); /* exact size: ASan sees overreads */
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    struct sm_sections s;
    int rv = sm_snapshot_decode(copy, size, &s);
    if (rv != 0 && rv != LSKV_ECORRUPT && rv != LSKV_EFORMAT)
        abort();
    if (rv == 0) {
        uint8_t *again = NULL;
        size_t len = 0;
        if (sm_snapshot_encode(&s, &again, &len) == 0) {
            if (len != size || memcmp(again, copy, size) != 0)
                abort();
            free(again);
        }
        kvstore *kv;
        if (s.data[SM_SECTION_KV] != NULL && kvstore_open(NULL, &kv) == 0) {
            (void)kvstore_restore(kv, s.data[SM_SECTION_KV], s.len[SM_SECTION_KV]);
            kvstore_close(kv);
        }
        if (s.data[SM_SECTION_MEMBERS] != NULL) {
            struct member_table t = {0}, t2 = {0};
            int mv = member_table_decode(&t, s.data[SM_SECTION_MEMBERS], s.len[SM_SECTION_MEMBERS]);
            if (mv != 0 && mv != LSKV_ECORRUPT && mv != LSKV_ENOMEM)
                abort();
            uint8_t *enc = NULL;
            size_t enc_len = 0;
            if (mv == 0 && member_table_encode(&t, &enc, &enc_len) == 0) {
                if (member_table_decode(&t2, enc, enc_len) != 0 || t2.n != t.n)
                    abort();
                free(enc);
            }
            member_table_clear(&t);
            member_table_clear(&t2);
        }
    }
    free(copy);
    return 0;
}

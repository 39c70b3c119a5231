#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/pbdepth.h"
#include "proto/rpc.pb-c.h"
#include "runner.h"

/* A TxnRequest nested depth deep through success[0].request_txn; *len set. */
static uint8_t *nested(unsigned depth, size_t *len)
{
    size_t cap = 16 * (size_t)depth + 16, n = 0;
    uint8_t *tmp = malloc(cap), *out = malloc(cap);
    ASSERT(tmp != NULL && out != NULL);
    /* Prefixes from the inside out, written backwards into tmp. */
    size_t inner = 0, w = cap;
    for (unsigned i = 1; i < depth; i++) {
        for (int k = 0; k < 2; k++) {
            uint8_t v[10];
            size_t vn = 0;
            for (size_t x = inner; ; x >>= 7) {
                v[vn++] = (uint8_t)((x & 0x7f) | (x >= 0x80 ? 0x80 : 0));
                if (x < 0x80)
                    break;
            }
            w -= vn;
            memcpy(tmp + w, v, vn);
            tmp[--w] = k == 0 ? 0x22 : 0x12;
            inner = cap - w;
        }
    }
    n = cap - w;
    memcpy(out, tmp + w, n);
    free(tmp);
    *len = n;
    return out;
}

TEST(pbdepth, counts_nested_messages_without_recursion)
{
    const ProtobufCMessageDescriptor *d = &etcdserverpb__txn_request__descriptor;
    size_t len;
    uint8_t *b = nested(3, &len); /* Txn > Op > Txn > Op > Txn: 5 messages */
    Etcdserverpb__TxnRequest *t = etcdserverpb__txn_request__unpack(NULL, len, b);
    ASSERT(t != NULL && t->n_success == 1 && t->success[0]->request_txn != NULL);
    etcdserverpb__txn_request__free_unpacked(t, NULL);
    ASSERT_EQ(pbdepth_check(d, b, len, 5), 0);
    ASSERT_EQ(pbdepth_check(d, b, len, 4), LSKV_ETOODEEP);
    free(b);
    b = nested(1000000, &len); /* far deeper than any stack would take */
    ASSERT_EQ(pbdepth_check(d, b, len, PBDEPTH_MAX), LSKV_ETOODEEP);
    free(b);
    /* Bytes fields and unknown fields are skipped, not entered. */
    uint8_t put[] = {0x0a, 0x03, 0x0a, 0x01, 0x0a, 0x12, 0x00, 0xfa, 0x01, 0x02, 0x0a, 0x00};
    ASSERT_EQ(pbdepth_check(&etcdserverpb__put_request__descriptor, put, sizeof put, 1), 0);
    /* Malformed bytes pass (unpack refuses them). */
    uint8_t cut[] = {0x12, 0x05, 0x22};
    ASSERT_EQ(pbdepth_check(d, cut, sizeof cut, 300), 0);
}

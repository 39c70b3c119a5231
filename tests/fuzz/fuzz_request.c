/* Fuzzes the client request path below the network: the first byte picks the
 * etcd message type, the rest is decoded with protobuf-c and, when it decodes,
 * run through etcd's request checks and the command encoder/decoder. Nothing
 * here may crash, leak or read out of bounds, whatever the bytes. */
#include <stdint.h>
#include <stdlib.h>

#include "common/arena.h"
#include "statemachine/fsm.h"
#include "kv/kvstore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct arena a;
    arena_init(&a);
    const uint8_t *body = data + 1;
    size_t len = size - 1;
    ProtobufCMessage *msg = NULL;
    enum command_op type = COMMAND_PUT;
    switch (data[0] % 5) {
    case 0: {
        Etcdserverpb__PutRequest *p = etcdserverpb__put_request__unpack(&a.pb, len, body);
        if (p)
            (void)kvstore_validate_put(p);
        msg = (ProtobufCMessage *)p;
        type = COMMAND_PUT;
        break;
    }
    case 1: {
        Etcdserverpb__DeleteRangeRequest *d =
            etcdserverpb__delete_range_request__unpack(&a.pb, len, body);
        if (d)
            (void)kvstore_validate_delete_range(d);
        msg = (ProtobufCMessage *)d;
        type = COMMAND_DELETE_RANGE;
        break;
    }
    case 2: {
        Etcdserverpb__TxnRequest *t = etcdserverpb__txn_request__unpack(&a.pb, len, body);
        if (t)
            (void)kvstore_validate_txn(t);
        msg = (ProtobufCMessage *)t;
        type = COMMAND_TXN;
        break;
    }
    case 3:
        msg = (ProtobufCMessage *)etcdserverpb__compaction_request__unpack(&a.pb, len, body);
        type = COMMAND_COMPACTION;
        break;
    default:
        (void)etcdserverpb__range_request__unpack(&a.pb, len, body);
        break;
    }
    if (msg != NULL) {
        uint8_t *cmd = NULL;
        size_t cmd_len = 0;
        if (command_encode(type, NULL, msg, &cmd, &cmd_len) == 0) {
            /* the envelope decodes back to the same op */
            struct arena b;
            arena_init(&b);
            Lskvcommandpb__Command *c = NULL;
            if (command_decode(cmd, cmd_len, &b, &c) != 0 || (unsigned)c->op_case != type)
                abort();
            arena_close(&b);
            free(cmd);
        }
    }
    arena_close(&a);
    return 0;
}

/* Fuzzes the client request path below the network: the first byte picks the
 * etcd message type (or a command envelope), the rest is decoded with
 * protobuf-c and, when it decodes, run through etcd's request checks and the
 * command encoder/decoder. Nothing
 * here may crash, leak or read out of bounds, whatever the bytes. */
#include <stdint.h>
#include <stdlib.h>

#include "common/arena.h"
#include "common/pbdepth.h"
#include "statemachine/fsm.h"
#include "kv/kvstore.h"
#include "proto/v3election.pb-c.h"
#include "proto/v3lock.pb-c.h"

/* The requests of v3lockpb.Lock and v3electionpb.Election (first byte
 * 0xf9..0xff), decoded as api_decode does: depth check, then protobuf-c. */
static const ProtobufCMessageDescriptor *const concurrency_requests[] = {
    &v3lockpb__lock_request__descriptor,         &v3lockpb__unlock_request__descriptor,
    &v3electionpb__campaign_request__descriptor, &v3electionpb__proclaim_request__descriptor,
    &v3electionpb__leader_request__descriptor,   &v3electionpb__resign_request__descriptor,
    &v3electionpb__leader_key__descriptor,
};

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
    if (data[0] >= 0xf9) {
        const ProtobufCMessageDescriptor *d = concurrency_requests[data[0] - 0xf9];
        if (pbdepth_check(d, body, len, PBDEPTH_MAX) == 0) {
            ProtobufCMessage *m = protobuf_c_message_unpack(d, &a.pb, len, body);
            if (m != NULL && protobuf_c_message_get_packed_size(m) > len + 16)
                abort(); /* a decoded message never grows much on re-encoding */
        }
        arena_close(&a);
        return 0;
    }
    switch (data[0] % 6) {
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
        /* As api_decode: the depth on the bytes before protobuf-c recurses. */
        if (pbdepth_check(&etcdserverpb__txn_request__descriptor, body, len, PBDEPTH_MAX) != 0)
            break;
        Etcdserverpb__TxnRequest *t = etcdserverpb__txn_request__unpack(&a.pb, len, body);
        if (t)
            (void)kvstore_validate_txn(t, 1 + (long)(len % KV_TXN_OPS_LIMIT));
        msg = (ProtobufCMessage *)t;
        type = COMMAND_TXN;
        break;
    }
    case 3:
        msg = (ProtobufCMessage *)etcdserverpb__compaction_request__unpack(&a.pb, len, body);
        type = COMMAND_COMPACTION;
        break;
    case 4: {
        /* A command envelope as the raft log holds it (opened from a sealed
         * entry): decode, find the op's row, run its pre-proposal checks. */
        Lskvcommandpb__Command *c = NULL;
        if (command_decode(body, len, &a, &c) == 0) {
            const struct command_kind *k = command_kind_of(c->op_case);
            const ProtobufCMessage *req = command_request(c);
            if (k == NULL || (k->request != NULL) != (req != NULL))
                abort();
            struct command_limits lim = {KV_TXN_OPS_DEFAULT};
            if (k->validate != NULL && req != NULL)
                (void)k->validate(req, &lim);
        }
        break;
    }
    default:
        (void)etcdserverpb__range_request__unpack(&a.pb, len, body);
        break;
    }
    if (msg != NULL) {
        uint8_t *cmd = NULL;
        size_t cmd_len = 0;
        /* What the request path does: the client's bytes, as accepted, go
         * into the envelope unchanged, and the envelope must decode back to
         * the same op (apply parses them with the same parser). */
        if (command_wrap(type, NULL, body, len, &cmd, &cmd_len) == 0) {
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

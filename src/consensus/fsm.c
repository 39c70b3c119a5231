#include "consensus/fsm.h"

#include <stdlib.h>
#include <string.h>

#include "common/arena.h"

void fsm_init(struct fsm *f, kvstore *kv, recstore *records, uint64_t cluster_id,
              uint64_t member_id)
{
    f->kv = kv;
    f->records = records;
    f->cluster_id = cluster_id;
    f->member_id = member_id;
    f->last_term = 0;
    /* Applied entries share one engine write per loop turn (fsm_flush). */
    kvstore_set_deferred_commit(kv, true);
}

int fsm_command_encode(enum fsm_command_type type, const ProtobufCMessage *msg,
                       uint8_t **out, size_t *out_len)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n + 2);
    if (buf == NULL)
        return LSKV_ENOMEM;
    buf[0] = FSM_COMMAND_VERSION;
    buf[1] = (uint8_t)type;
    protobuf_c_message_pack(msg, buf + 2);
    *out = buf;
    *out_len = n + 2;
    return 0;
}

void fsm_result_free(struct fsm_result *r)
{
    if (r == NULL)
        return;
    free(r->response);
    free(r);
}

static void fill_header(struct fsm *f, Etcdserverpb__ResponseHeader *h)
{
    if (h == NULL)
        return;
    h->cluster_id = f->cluster_id;
    h->member_id = f->member_id;
    h->raft_term = f->last_term;
    h->revision = kvstore_revision(f->kv);
}

static int pack_response(const ProtobufCMessage *msg, struct fsm_result *r)
{
    r->response_len = protobuf_c_message_get_packed_size(msg);
    r->response = malloc(r->response_len ? r->response_len : 1);
    if (r->response == NULL)
        return LSKV_ENOMEM;
    protobuf_c_message_pack(msg, r->response);
    return 0;
}

/* Decodes and applies one command; the outcome (including etcd errors, which
 * are deterministic results, not failures) lands in r. */
static void apply_command(struct fsm *f, const uint8_t *cmd, size_t len, struct arena *a,
                          struct fsm_result *r)
{
    if (len < 2 || cmd[0] != FSM_COMMAND_VERSION) {
        r->rv = LSKV_ECORRUPT;
        errmsg_printf(r->errmsg, "command: bad version or length %zu", len);
        return;
    }
    const uint8_t *body = cmd + 2;
    size_t body_len = len - 2;
    ProtobufCMessage *resp = NULL;
    Etcdserverpb__ResponseHeader **header = NULL;

    switch ((enum fsm_command_type)cmd[1]) {
    case FSM_CMD_PUT: {
        Etcdserverpb__PutRequest *req = etcdserverpb__put_request__unpack(&a->pb, body_len, body);
        Etcdserverpb__PutResponse *out = NULL;
        r->rv = req ? kvstore_put(f->kv, req, a, &out, r->errmsg) : LSKV_ECORRUPT;
        resp = (ProtobufCMessage *)out;
        header = out ? &out->header : NULL;
        break;
    }
    case FSM_CMD_DELETE_RANGE: {
        Etcdserverpb__DeleteRangeRequest *req =
            etcdserverpb__delete_range_request__unpack(&a->pb, body_len, body);
        Etcdserverpb__DeleteRangeResponse *out = NULL;
        r->rv = req ? kvstore_delete_range(f->kv, req, a, &out, r->errmsg) : LSKV_ECORRUPT;
        resp = (ProtobufCMessage *)out;
        header = out ? &out->header : NULL;
        break;
    }
    case FSM_CMD_TXN: {
        Etcdserverpb__TxnRequest *req = etcdserverpb__txn_request__unpack(&a->pb, body_len, body);
        Etcdserverpb__TxnResponse *out = NULL;
        r->rv = req ? kvstore_txn(f->kv, req, a, &out, r->errmsg) : LSKV_ECORRUPT;
        resp = (ProtobufCMessage *)out;
        header = out ? &out->header : NULL;
        break;
    }
    case FSM_CMD_COMPACT: {
        Etcdserverpb__CompactionRequest *req =
            etcdserverpb__compaction_request__unpack(&a->pb, body_len, body);
        Etcdserverpb__CompactionResponse *out = NULL;
        r->rv = req ? kvstore_compact(f->kv, req, a, &out, r->errmsg) : LSKV_ECORRUPT;
        resp = (ProtobufCMessage *)out;
        header = out ? &out->header : NULL;
        break;
    }
    default:
        r->rv = LSKV_ECORRUPT;
        errmsg_printf(r->errmsg, "command: unknown type %u", cmd[1]);
        return;
    }
    if (r->rv != 0 || resp == NULL) {
        if (r->rv == 0)
            r->rv = LSKV_ENOMEM;
        return;
    }
    if (*header == NULL) {
        *header = arena_calloc(a, 1, sizeof **header);
        if (*header == NULL) {
            r->rv = LSKV_ENOMEM;
            return;
        }
        etcdserverpb__response_header__init(*header);
    }
    fill_header(f, *header);
    r->rv = pack_response(resp, r);
}

static int fsm_apply(void *data, const struct consensus_entry_info *info, const uint8_t *cmd,
                     size_t len, void **result)
{
    struct fsm *f = data;
    f->last_term = info->term;
    struct fsm_result *r = calloc(1, sizeof *r);
    if (r == NULL)
        return LSKV_ENOMEM;
    struct arena a;
    arena_init(&a);
    apply_command(f, cmd, len, &a, r);
    arena_close(&a);
    /* Storage failures are not deterministic results: stop this node. */
    if (r->rv == LSKV_EIO || r->rv == LSKV_ENOMEM) {
        int rv = r->rv;
        fsm_result_free(r);
        return rv;
    }
    *result = r;
    return 0;
}

static void fsm_free_result(void *data, void *result)
{
    (void)data;
    fsm_result_free(result);
}

static int fsm_snapshot(void *data, uint8_t **buf, size_t *len)
{
    struct fsm *f = data;
    /* The snapshot names records by id; they must be durable before raft
     * may drop the log entries that wrote them. */
    int rv = recstore_sync(f->records);
    if (rv != 0)
        return rv;
    return kvstore_snapshot(f->kv, buf, len);
}

static int fsm_flush(void *data)
{
    struct fsm *f = data;
    return recstore_commit(f->records);
}

static int fsm_restore(void *data, const uint8_t *buf, size_t len)
{
    struct fsm *f = data;
    return kvstore_restore(f->kv, buf, len);
}

struct consensus_fsm fsm_vtable(struct fsm *f)
{
    return (struct consensus_fsm){
        .data = f,
        .apply = fsm_apply,
        .free_result = fsm_free_result,
        .snapshot = fsm_snapshot,
        .restore = fsm_restore,
        .flush = fsm_flush,
    };
}

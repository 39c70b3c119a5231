/* etcdserverpb.Maintenance: Status, Alarm (list/deactivate), Defragment,
 * HashKV, Hash, MoveLeader and Snapshot (api/maint_snapshot.c). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "api/api.h"
#include "api/etcd_errors.h"
#include "common/arena.h"
#include "common/crc32c.h"
#include "common/err.h"
#include "common/log.h"

static void maint_status(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct api *api = ctx;
    struct arena a;
    arena_init(&a);
    if (api_decode(call, &etcdserverpb__status_request__descriptor, msg, len, &a) == NULL) {
        arena_close(&a);
        return;
    }
    struct consensus_status st;
    consensus_get_status(api->node, &st);
    Etcdserverpb__ResponseHeader header = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    api_fill_header(api, &header);
    Etcdserverpb__StatusResponse resp = ETCDSERVERPB__STATUS_RESPONSE__INIT;
    resp.header = &header;
    resp.version = (char *)API_VERSION;
    resp.dbsize = recstore_disk_bytes(api->records);
    resp.dbsizeinuse = resp.dbsize;
    resp.leader = st.leader_id;
    resp.raftindex = st.commit_index;
    resp.raftterm = st.term;
    resp.raftappliedindex = st.applied_index;
    char *errors[2];
    char nospace[64];
    if (api->corrupt_alarm)
        errors[resp.n_errors++] = (char *)"etcdserver: corrupt cluster";
    if (api->space != NULL && api->space->alarm) {
        /* etcd: the alarm member in gogoproto's compact text */
        snprintf(nospace, sizeof nospace, "memberID:%" PRIu64 " alarm:NOSPACE ", api->member_id);
        errors[resp.n_errors++] = nospace;
    }
    resp.errors = errors;
    api_reply(call, &resp.base);
    arena_close(&a);
}

static void maint_alarm(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct api *api = ctx;
    struct arena a;
    arena_init(&a);
    Etcdserverpb__AlarmRequest *req =
        api_decode(call, &etcdserverpb__alarm_request__descriptor, msg, len, &a);
    if (req == NULL) {
        arena_close(&a);
        return;
    }
    /* Both alarms are local to this node. CORRUPT is cleared only by a
     * restart, which re-verifies from durable state; NOSPACE by disarm
     * (storage/diskspace.h), and a restart re-checks the disk. */
    /* etcd answers alarms from its applier with no header at all. */
    Etcdserverpb__AlarmResponse resp = ETCDSERVERPB__ALARM_RESPONSE__INIT;
    Etcdserverpb__AlarmMember member[2] = {ETCDSERVERPB__ALARM_MEMBER__INIT,
                                           ETCDSERVERPB__ALARM_MEMBER__INIT};
    Etcdserverpb__AlarmMember *members[2] = {&member[0], &member[1]};
    bool nospace = api->space != NULL && api->space->alarm;
    bool mine = req->memberid == api->member_id;
    bool want_nospace = req->alarm == ETCDSERVERPB__ALARM_TYPE__NOSPACE;
    switch (req->action) {
    case ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET: /* NONE: all types */
        if (api->corrupt_alarm && (req->alarm == ETCDSERVERPB__ALARM_TYPE__NONE ||
                                   req->alarm == ETCDSERVERPB__ALARM_TYPE__CORRUPT))
            member[resp.n_alarms++].alarm = ETCDSERVERPB__ALARM_TYPE__CORRUPT;
        if (nospace && (req->alarm == ETCDSERVERPB__ALARM_TYPE__NONE || want_nospace))
            member[resp.n_alarms++].alarm = ETCDSERVERPB__ALARM_TYPE__NOSPACE;
        break;
    case ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__DEACTIVATE:
        if (nospace && mine && want_nospace) {
            diskspace_disarm(api->space);
            LOG_INFO("api", "NOSPACE alarm disarmed");
            member[resp.n_alarms++].alarm = ETCDSERVERPB__ALARM_TYPE__NOSPACE;
        }
        break;
    case ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE:
        if (api->space != NULL && mine && want_nospace) {
            if (!nospace)
                LOG_WARN("api", "NOSPACE alarm raised by a client");
            api->space->alarm = true;
            member[resp.n_alarms++].alarm = ETCDSERVERPB__ALARM_TYPE__NOSPACE;
        }
        break;
    default:
        break;
    }
    for (size_t i = 0; i < resp.n_alarms; i++)
        member[i].memberid = api->member_id;
    if (resp.n_alarms > 0)
        resp.alarms = members;
    api_reply(call, &resp.base);
    arena_close(&a);
}

/* Defragment: the engine rewrites its files on a worker thread (the loop
 * serves on meanwhile, unlike etcd, which blocks its backend), then the
 * call is answered. The call stays valid until finished, even if the
 * client goes (grpc_server.h). */
struct defrag {
    uv_work_t work;
    struct api *api;
    grpc_call *call;
    int64_t before;
    uint64_t start_ms;
    int rv;
    char errmsg[LSKV_ERRMSG_SIZE];
};

static void defrag_work(uv_work_t *w)
{
    struct defrag *d = w->data;
    d->rv = recstore_compact_engine(d->api->records, d->errmsg);
}

static void defrag_done(uv_work_t *w, int status)
{
    struct defrag *d = w->data;
    if (status != 0 && d->rv == 0) {
        d->rv = LSKV_EIO;
        snprintf(d->errmsg, sizeof d->errmsg, "defragment: %s", uv_strerror(status));
    }
    if (d->rv != 0) {
        LOG_WARN("api", "failed to defragment: %s", d->errmsg);
        api_fail(d->api, d->call, d->rv, d->errmsg);
    } else {
        LOG_INFO("api", "finished defragmenting: db size %" PRId64 " -> %" PRId64
                 " bytes, took %" PRIu64 " ms", d->before,
                 recstore_disk_bytes_now(d->api->records),
                 uv_now(d->api->loop) - d->start_ms);
        /* etcd answers with no header at all */
        Etcdserverpb__DefragmentResponse resp = ETCDSERVERPB__DEFRAGMENT_RESPONSE__INIT;
        api_reply(d->call, &resp.base);
    }
    free(d);
}

static void maint_defragment(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct api *api = ctx;
    struct arena a;
    arena_init(&a);
    void *req = maint_admin_request(api, call, &etcdserverpb__defragment_request__descriptor,
                                    msg, len, &a);
    arena_close(&a);
    if (req == NULL)
        return;
    struct defrag *d = calloc(1, sizeof *d);
    if (d == NULL) {
        api_fail(api, call, LSKV_ENOMEM, "defragment: out of memory");
        return;
    }
    *d = (struct defrag){.api = api, .call = call, .before = recstore_disk_bytes(api->records),
                         .start_ms = uv_now(api->loop)};
    d->work.data = d;
    LOG_INFO("api", "defragmenting the engine (db size %" PRId64 " bytes)", d->before);
    int rv = uv_queue_work(api->loop, &d->work, defrag_work, defrag_done);
    if (rv != 0) {
        free(d);
        char m[96];
        snprintf(m, sizeof m, "defragment: %s", uv_strerror(rv));
        api_fail(api, call, LSKV_EIO, m);
    }
}

void *maint_admin_request(struct api *api, grpc_call *call, const ProtobufCMessageDescriptor *d,
                          const uint8_t *msg, size_t len, struct arena *a)
{
    void *req = api_decode(call, d, msg, len, a);
    if (req == NULL)
        return NULL;
    int rv = api_authorize_admin(api, call);
    if (rv != 0) {
        struct etcd_error e = etcd_error_raw_auth(rv);
        grpc_call_finish(call, e.status, e.message);
        return NULL;
    }
    return req;
}

/* HashKV over the trusted state (kv/hash.c), on the loop: a full read of
 * the store, as etcd's (which holds its backend's read transaction). */
static void maint_hash_kv(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct api *api = ctx;
    struct arena a;
    arena_init(&a);
    Etcdserverpb__HashKVRequest *req =
        maint_admin_request(api, call, &etcdserverpb__hash_kvrequest__descriptor, msg, len, &a);
    if (req == NULL) {
        arena_close(&a);
        return;
    }
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    uint32_t hash = 0;
    int64_t compact_rev = 0;
    int rv = kvstore_hash_kv(api->kv, req->revision, &hash, &compact_rev, errmsg);
    if (rv != 0) { /* LSKV_ECORRUPT raises the alarm there */
        api_fail(api, call, rv, errmsg);
    } else {
        Etcdserverpb__ResponseHeader header = ETCDSERVERPB__RESPONSE_HEADER__INIT;
        api_fill_header(api, &header);
        Etcdserverpb__HashKVResponse resp = ETCDSERVERPB__HASH_KVRESPONSE__INIT;
        resp.header = &header;
        resp.hash = hash;
        resp.compact_revision = compact_rev;
        api_reply(call, &resp.base);
    }
    arena_close(&a);
}

/* etcd's Hash is CRC-32C of its whole bolt file; lskv's is CRC-32C of the
 * trusted state it replicates in its place: the key index snapshot
 * (revision, compaction point, every key's revisions; kvstore_snapshot).
 * Members that applied the same entries answer the same number. */
static void maint_hash(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct api *api = ctx;
    struct arena a;
    arena_init(&a);
    if (maint_admin_request(api, call, &etcdserverpb__hash_request__descriptor, msg, len, &a) ==
        NULL) {
        arena_close(&a);
        return;
    }
    uint8_t *snap = NULL;
    size_t snap_len = 0;
    int rv = kvstore_snapshot(api->kv, &snap, &snap_len);
    if (rv != 0) {
        api_fail(api, call, rv, "Hash: key index snapshot");
    } else {
        Etcdserverpb__ResponseHeader header = ETCDSERVERPB__RESPONSE_HEADER__INIT;
        api_fill_header(api, &header);
        Etcdserverpb__HashResponse resp = ETCDSERVERPB__HASH_RESPONSE__INIT;
        resp.header = &header;
        resp.hash = crc32c_update(0, snap, snap_len);
        api_reply(call, &resp.base);
    }
    free(snap);
    arena_close(&a);
}

struct move_leader {
    struct api *api;
    grpc_call *call;
};

static void move_leader_reply(struct api *api, grpc_call *call)
{
    Etcdserverpb__ResponseHeader header = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    api_fill_header(api, &header);
    Etcdserverpb__MoveLeaderResponse resp = ETCDSERVERPB__MOVE_LEADER_RESPONSE__INIT;
    resp.header = &header;
    api_reply(call, &resp.base);
}

static void moved(void *arg, int status, void *result)
{
    (void)result;
    struct move_leader *m = arg;
    if (status != 0)
        api_fail(m->api, m->call, status, NULL);
    else
        move_leader_reply(m->api, m->call);
    free(m);
}

/* etcd's MoveLeader: only the leader moves itself; the transferee must be a
 * voting member; done once it leads. */
static void maint_move_leader(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct api *api = ctx;
    struct arena a;
    arena_init(&a);
    Etcdserverpb__MoveLeaderRequest *req =
        api_decode(call, &etcdserverpb__move_leader_request__descriptor, msg, len, &a);
    if (req == NULL)
        goto out;
    struct consensus_status st;
    consensus_get_status(api->node, &st);
    if (!st.is_leader) {
        api_fail(api, call, LSKV_ELEADERONLY, NULL);
    } else if (req->targetid == api->member_id) {
        move_leader_reply(api, call); /* it leads already, as etcd answers */
    } else {
        struct move_leader *m = malloc(sizeof *m);
        int rv = m == NULL ? LSKV_ENOMEM : consensus_transfer(api->node, req->targetid, moved, m);
        if (rv != 0) {
            free(m);
            api_fail(api, call, rv, NULL);
        } else {
            *m = (struct move_leader){.api = api, .call = call};
            LOG_INFO("maint", "leadership transfer starting from %016" PRIx64 " to %016" PRIx64,
                     api->member_id, req->targetid);
        }
    }
out:
    arena_close(&a);
}

size_t maint_service_methods(struct api *api, struct grpc_method *m)
{
    m[0] = (struct grpc_method){.path = "/etcdserverpb.Maintenance/Status",
                                .on_message = maint_status, .ctx = api};
    m[1] = (struct grpc_method){.path = "/etcdserverpb.Maintenance/Alarm",
                                .on_message = maint_alarm, .ctx = api};
    m[2] = (struct grpc_method){.path = "/etcdserverpb.Maintenance/Defragment",
                                .on_message = maint_defragment, .ctx = api};
    m[3] = (struct grpc_method){.path = "/etcdserverpb.Maintenance/HashKV",
                                .on_message = maint_hash_kv, .ctx = api};
    m[4] = (struct grpc_method){.path = "/etcdserverpb.Maintenance/MoveLeader",
                                .on_message = maint_move_leader, .ctx = api};
    m[5] = (struct grpc_method){.path = "/etcdserverpb.Maintenance/Snapshot",
                                .server_streaming = true, .on_message = maint_snapshot,
                                .ctx = api};
    m[6] = (struct grpc_method){.path = "/etcdserverpb.Maintenance/Hash",
                                .on_message = maint_hash, .ctx = api};
    return 7;
}

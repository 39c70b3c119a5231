/* etcdserverpb.Maintenance: Status and Alarm (list/deactivate). */
#include <stdlib.h>

#include "api/api.h"
#include "common/arena.h"
#include "common/err.h"

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
    char *errors[1] = {(char *)"etcdserver: corrupt cluster"};
    if (api->corrupt_alarm) {
        resp.errors = errors;
        resp.n_errors = 1;
    }
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
    /* The CORRUPT alarm is local to this node's trusted core; it is cleared
     * only by a restart, which re-verifies from durable state. */
    /* etcd answers alarms from its applier with no header at all. */
    Etcdserverpb__AlarmResponse resp = ETCDSERVERPB__ALARM_RESPONSE__INIT;
    Etcdserverpb__AlarmMember member = ETCDSERVERPB__ALARM_MEMBER__INIT;
    Etcdserverpb__AlarmMember *members[1] = {&member};
    if (api->corrupt_alarm &&
        req->action == ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET) {
        member.memberid = api->member_id;
        member.alarm = ETCDSERVERPB__ALARM_TYPE__CORRUPT;
        resp.alarms = members;
        resp.n_alarms = 1;
    }
    api_reply(call, &resp.base);
    arena_close(&a);
}

size_t maint_service_methods(struct api *api, struct grpc_method *m)
{
    m[0] = (struct grpc_method){.path = "/etcdserverpb.Maintenance/Status",
                                .on_message = maint_status, .ctx = api};
    m[1] = (struct grpc_method){.path = "/etcdserverpb.Maintenance/Alarm",
                                .on_message = maint_alarm, .ctx = api};
    return 2;
}

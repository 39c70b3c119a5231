/* etcdserverpb.Lease, until leases exist: every lease id is unknown, and the
 * answers are etcd's for an unknown lease (Revoke: NOT_FOUND; TimeToLive:
 * TTL -1; Leases: none). LeaseGrant and KeepAlive answer UNIMPLEMENTED. */
#include "api/api.h"
#include "common/arena.h"
#include "common/err.h"

static void lease_revoke(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct api *api = ctx;
    struct arena a;
    arena_init(&a);
    if (api_decode(call, &etcdserverpb__lease_revoke_request__descriptor, msg, len, &a) != NULL)
        api_fail(api, call, LSKV_ELEASENOTFOUND, NULL);
    arena_close(&a);
}

static void lease_time_to_live(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct api *api = ctx;
    struct arena a;
    arena_init(&a);
    Etcdserverpb__LeaseTimeToLiveRequest *req =
        api_decode(call, &etcdserverpb__lease_time_to_live_request__descriptor, msg, len, &a);
    if (req != NULL) {
        Etcdserverpb__ResponseHeader header = ETCDSERVERPB__RESPONSE_HEADER__INIT;
        api_fill_header(api, &header);
        Etcdserverpb__LeaseTimeToLiveResponse resp =
            ETCDSERVERPB__LEASE_TIME_TO_LIVE_RESPONSE__INIT;
        resp.header = &header;
        resp.id = req->id;
        resp.ttl = -1;
        api_reply(call, &resp.base);
    }
    arena_close(&a);
}

static void lease_leases(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct api *api = ctx;
    struct arena a;
    arena_init(&a);
    if (api_decode(call, &etcdserverpb__lease_leases_request__descriptor, msg, len, &a) !=
        NULL) {
        Etcdserverpb__ResponseHeader header = ETCDSERVERPB__RESPONSE_HEADER__INIT;
        api_fill_header(api, &header);
        Etcdserverpb__LeaseLeasesResponse resp = ETCDSERVERPB__LEASE_LEASES_RESPONSE__INIT;
        resp.header = &header;
        api_reply(call, &resp.base);
    }
    arena_close(&a);
}

size_t lease_service_methods(struct api *api, struct grpc_method *m)
{
    m[0] = (struct grpc_method){.path = "/etcdserverpb.Lease/LeaseRevoke",
                                .on_message = lease_revoke, .ctx = api};
    m[1] = (struct grpc_method){.path = "/etcdserverpb.Lease/LeaseTimeToLive",
                                .on_message = lease_time_to_live, .ctx = api};
    m[2] = (struct grpc_method){.path = "/etcdserverpb.Lease/LeaseLeases",
                                .on_message = lease_leases, .ctx = api};
    return 3;
}

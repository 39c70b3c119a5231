/* etcdserverpb.Lease, as etcd 3.4's v3rpc/lease.go over its lessor.
 *
 * Grant and Revoke go through consensus (lease grant / revoke commands; the
 * proposer picks the id of a grant that names none, a positive random
 * int63 as etcd's leader does). TimeToLive, Leases and KeepAlive answer
 * from the leader's lease table at once, as etcd's leader does (its renewals
 * do not go through raft either). The expiry timer is the leader's: it
 * starts the clock of every new lease and proposes a revoke for every
 * expired one; apply itself never reads a clock (lease/lessor.h). */
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "api/api.h"
#include "common/arena.h"
#include "common/err.h"
#include "common/log.h"
#include "statemachine/fsm.h"

#define MODULE "lease"
#define EXPIRY_TICK_MS 500
#define REVOKES_PER_TICK 500    /* etcd's leaseRevokeRate: 1000 per second */
#define REVOKE_RETRY_MS 3000    /* a revoke proposal that did not apply is retried */

struct lease_expiry {
    uv_timer_t timer;
    struct api *api;
    uint64_t expired; /* revokes proposed for expired leases */
};

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

int lease_service_new_id(int64_t *id)
{
    *id = 0;
    while (*id == 0) {
        uint64_t r;
        if (RAND_bytes((uint8_t *)&r, sizeof r) != 1)
            return LSKV_EIO;
        *id = (int64_t)(r & INT64_MAX);
    }
    return 0;
}

static void lease_grant(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct api *api = ctx;
    struct arena a;
    arena_init(&a);
    Etcdserverpb__LeaseGrantRequest *req =
        api_decode(call, &etcdserverpb__lease_grant_request__descriptor, msg, len, &a);
    if (req == NULL)
        goto out;
    const struct command_kind *kind = command_kind_of(COMMAND_LEASE_GRANT);
    /* etcd checks its quota first (v3rpc/quota.go quotaLeaseServer) */
    uint64_t cost = 0;
    int rv = api_admit_write(api, COMMAND_LEASE_GRANT, &req->base, len, &cost);
    if (rv == 0)
        rv = kind->validate(&req->base, &api->limits);
    if (rv != 0) {
        api_write_done(api, cost);
        api_fail(api, call, rv, NULL);
        goto out;
    }
    if (req->id == 0 && (rv = lease_service_new_id(&req->id)) != 0) {
        api_write_done(api, cost);
        api_fail(api, call, rv, "no randomness for a lease id");
        goto out;
    }
    /* The id is part of the command: the request is packed again. */
    size_t n = etcdserverpb__lease_grant_request__get_packed_size(req);
    uint8_t *body = arena_alloc(&a, n ? n : 1);
    if (body == NULL) {
        api_write_done(api, cost);
        api_fail(api, call, LSKV_ENOMEM, NULL);
        goto out;
    }
    etcdserverpb__lease_grant_request__pack(req, body);
    api_propose_cost(api, call, COMMAND_LEASE_GRANT, body, n, cost);
out:
    arena_close(&a);
}

static void lease_revoke(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct api *api = ctx;
    struct arena a;
    arena_init(&a);
    Etcdserverpb__LeaseRevokeRequest *req =
        api_decode(call, &etcdserverpb__lease_revoke_request__descriptor, msg, len, &a);
    if (req != NULL) {
        /* etcd answers an unknown lease before proposing anything. */
        uint64_t cost = 0;
        int rv;
        if (!lessor_exists(api->leases, req->id))
            api_fail(api, call, LSKV_ELEASENOTFOUND, NULL);
        else if ((rv = api_admit_write(api, COMMAND_LEASE_REVOKE, &req->base, len, &cost)) != 0)
            api_fail(api, call, rv, NULL);
        else
            api_propose_cost(api, call, COMMAND_LEASE_REVOKE, msg, len, cost);
    }
    arena_close(&a);
}

static void lease_time_to_live(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct api *api = ctx;
    struct arena a;
    arena_init(&a);
    Etcdserverpb__LeaseTimeToLiveRequest *req =
        api_decode(call, &etcdserverpb__lease_time_to_live_request__descriptor, msg, len, &a);
    if (req == NULL)
        goto out;
    Etcdserverpb__ResponseHeader header = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    api_fill_header(api, &header);
    Etcdserverpb__LeaseTimeToLiveResponse resp = ETCDSERVERPB__LEASE_TIME_TO_LIVE_RESPONSE__INIT;
    resp.header = &header;
    resp.id = req->id;
    struct lease_info info;
    if (lessor_info(api->leases, req->id, now_ms(), &info) != 0) {
        resp.ttl = -1; /* etcd: an unknown lease is not an error here */
    } else {
        resp.ttl = info.remaining_ms / 1000; /* Go's int64(Remaining().Seconds()) */
        resp.grantedttl = info.granted_ttl;
        if (req->keys) {
            uint8_t **keys;
            size_t *lens, nk;
            int rv = lessor_keys(api->leases, req->id, &a, &keys, &lens, &nk);
            ProtobufCBinaryData *v = arena_alloc(&a, (nk ? nk : 1) * sizeof *v);
            if (rv != 0 || v == NULL) {
                api_fail(api, call, rv ? rv : LSKV_ENOMEM, NULL);
                goto out;
            }
            for (size_t i = 0; i < nk; i++)
                v[i] = (ProtobufCBinaryData){.data = keys[i], .len = lens[i]};
            resp.keys = v;
            resp.n_keys = nk;
        }
    }
    api_reply(call, &resp.base);
out:
    arena_close(&a);
}

static void lease_leases(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct api *api = ctx;
    struct arena a;
    arena_init(&a);
    if (api_decode(call, &etcdserverpb__lease_leases_request__descriptor, msg, len, &a) ==
        NULL)
        goto out;
    int64_t *ids;
    size_t n;
    int rv = lessor_ids(api->leases, &a, &ids, &n);
    Etcdserverpb__LeaseStatus *st = arena_alloc(&a, (n ? n : 1) * sizeof *st);
    Etcdserverpb__LeaseStatus **sp = arena_alloc(&a, (n ? n : 1) * sizeof *sp);
    if (rv != 0 || st == NULL || sp == NULL) {
        api_fail(api, call, rv ? rv : LSKV_ENOMEM, NULL);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        etcdserverpb__lease_status__init(&st[i]);
        st[i].id = ids[i];
        sp[i] = &st[i];
    }
    Etcdserverpb__ResponseHeader header = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    api_fill_header(api, &header);
    Etcdserverpb__LeaseLeasesResponse resp = ETCDSERVERPB__LEASE_LEASES_RESPONSE__INIT;
    resp.header = &header;
    resp.leases = sp;
    resp.n_leases = n;
    api_reply(call, &resp.base);
out:
    arena_close(&a);
}

/* One message of a LeaseKeepAlive stream: renew and answer on the stream.
 * An unknown or expired lease gets TTL 0, as etcd answers. */
static void lease_keep_alive(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct api *api = ctx;
    struct arena a;
    arena_init(&a);
    Etcdserverpb__LeaseKeepAliveRequest *req =
        api_decode(call, &etcdserverpb__lease_keep_alive_request__descriptor, msg, len, &a);
    if (req == NULL)
        goto out; /* answered: the stream ends */
    /* The header is taken before the renewal, as etcd does: a lease revoked
     * at revision r is never seen renewed at a later one. */
    Etcdserverpb__ResponseHeader header = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    api_fill_header(api, &header);
    Etcdserverpb__LeaseKeepAliveResponse resp = ETCDSERVERPB__LEASE_KEEP_ALIVE_RESPONSE__INIT;
    resp.header = &header;
    resp.id = req->id;
    int64_t ttl = 0;
    if (lessor_renew(api->leases, req->id, now_ms(), &ttl) != 0)
        ttl = 0;
    resp.ttl = ttl;
    size_t n = etcdserverpb__lease_keep_alive_response__get_packed_size(&resp);
    uint8_t *buf = arena_alloc(&a, n ? n : 1);
    if (buf == NULL) {
        grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "lskv: out of memory");
        goto out;
    }
    etcdserverpb__lease_keep_alive_response__pack(&resp, buf);
    (void)grpc_call_send(call, buf, n); /* a cancelled stream drops it */
out:
    arena_close(&a);
}

/* The client half-closed, or the stream went away: nothing is pending. */
static void lease_keep_alive_end(grpc_call *call, void *ctx)
{
    (void)ctx;
    grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

/* ---- expiry (leader) ---- */

static void revoke_done(void *arg, int status, void *result)
{
    (void)arg;
    (void)status;
    fsm_result_free(result); /* a lease revoked meanwhile answers not found */
}

void lease_service_applied(struct api *api)
{
    if (api->leases != NULL)
        lessor_start_clocks(api->leases, now_ms(), 0, false);
}

static void on_expiry_tick(uv_timer_t *t)
{
    struct lease_expiry *e = t->data;
    struct api *api = e->api;
    uint64_t now = now_ms();
    lessor_start_clocks(api->leases, now, 0, false);
    int64_t ids[REVOKES_PER_TICK];
    size_t n = lessor_expired(api->leases, now, REVOKE_RETRY_MS, ids, REVOKES_PER_TICK);
    for (size_t i = 0; i < n; i++) {
        Etcdserverpb__LeaseRevokeRequest req = ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
        req.id = ids[i];
        uint8_t *cmd;
        size_t len;
        struct command_meta meta = {.origin_member = api->member_id};
        int rv = command_encode(COMMAND_LEASE_REVOKE, &meta, &req.base, &cmd, &len);
        if (rv == 0) {
            rv = consensus_propose(api->node, 0, cmd, len, revoke_done, NULL); /* leader only */
            free(cmd);
        }
        if (rv == 0)
            e->expired++;
        /* Not the leader, or too many proposals in flight: retried after
         * REVOKE_RETRY_MS, quietly. */
        if (rv != 0 && rv != LSKV_ENOTLEADER && rv != LSKV_ETOOMANYREQUESTS)
            LOG_WARN(MODULE, "cannot propose the revoke of expired lease %016llx: %s",
                     (unsigned long long)ids[i], lskv_strerror(rv));
    }
}

int lease_service_start(struct api *api, uint64_t extend_ms)
{
    struct lease_expiry *e = calloc(1, sizeof *e);
    if (e == NULL)
        return LSKV_ENOMEM;
    e->api = api;
    lessor_start_clocks(api->leases, now_ms(), extend_ms, true);
    uv_timer_init(api->loop, &e->timer);
    e->timer.data = e;
    uv_timer_start(&e->timer, on_expiry_tick, EXPIRY_TICK_MS, EXPIRY_TICK_MS);
    api->lease_expiry = e;
    return 0;
}

static void on_expiry_closed(uv_handle_t *h)
{
    free(h->data);
}

uint64_t lease_service_expired(const struct api *api)
{
    return api->lease_expiry ? api->lease_expiry->expired : 0;
}

void lease_service_stop(struct api *api)
{
    if (api->lease_expiry == NULL)
        return;
    uv_close((uv_handle_t *)&api->lease_expiry->timer, on_expiry_closed);
    api->lease_expiry = NULL;
}

size_t lease_service_methods(struct api *api, struct grpc_method *m)
{
    m[0] = (struct grpc_method){.path = "/etcdserverpb.Lease/LeaseGrant",
                                .on_message = lease_grant, .ctx = api};
    m[1] = (struct grpc_method){.path = "/etcdserverpb.Lease/LeaseRevoke",
                                .on_message = lease_revoke, .ctx = api};
    m[2] = (struct grpc_method){.path = "/etcdserverpb.Lease/LeaseTimeToLive",
                                .on_message = lease_time_to_live, .ctx = api};
    m[3] = (struct grpc_method){.path = "/etcdserverpb.Lease/LeaseLeases",
                                .on_message = lease_leases, .ctx = api};
    m[4] = (struct grpc_method){.path = "/etcdserverpb.Lease/LeaseKeepAlive",
                                .streaming = true,
                                .on_message = lease_keep_alive,
                                .on_half_close = lease_keep_alive_end,
                                .on_cancel = lease_keep_alive_end,
                                .ctx = api};
    return 5;
}

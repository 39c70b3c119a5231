/* etcdserverpb.Lease, as etcd 3.4's v3rpc/lease.go over its lessor.
 *
 * Grant and Revoke go through consensus (lease grant / revoke commands; the
 * proposer picks the id of a grant that names none, a positive random
 * int63 as etcd's leader does). TimeToLive, Leases and KeepAlive answer
 * from the leader's lease table at once, as etcd's leader does (its renewals
 * do not go through raft either): a follower asks the leader
 * (consensus_call_leader, answered by lease_service_serve_call) and answers
 * with its own header. The expiry timer is the leader's: it starts the clock
 * of every new lease and proposes a revoke for every expired one, and a
 * member that becomes leader gives every lease its whole TTL again plus an
 * election timeout (etcd's Promote); apply itself never reads a clock
 * (lease/lessor.h). */
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "api/api.h"
#include "api/etcd_errors.h"
#include "common/arena.h"
#include "common/bytes.h"
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
    uint64_t extend_ms; /* etcd's Promote extension: an election timeout */
    bool leading;       /* this member led at the last tick */
};

/* Calls a follower makes to the leader (api.h api_call_kind). */
#define LEASE_CALL_KEEPALIVE API_CALL_LEASE_KEEPALIVE
#define LEASE_CALL_TIME_TO_LIVE API_CALL_LEASE_TIME_TO_LIVE

/* Flat messages a member sent (a lease call and its answer). */
static void *unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                    struct arena *a)
{
    return protobuf_c_message_unpack(desc, &a->pb, len, buf);
}

/* Whether this member answers lease calls itself. */
static bool leading(struct api *api)
{
    struct consensus_status st;
    consensus_get_status(api->node, &st);
    return st.is_leader;
}

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
        else if ((rv = api_authorize(api, call, COMMAND_LEASE_REVOKE, &req->base)) != 0)
            api_fail(api, call, rv, NULL); /* etcd's checkLeasePuts */
        else if ((rv = api_admit_write(api, COMMAND_LEASE_REVOKE, &req->base, len, &cost)) != 0)
            api_fail(api, call, rv, NULL);
        else
            api_propose_cost(api, call, COMMAND_LEASE_REVOKE, msg, len, cost);
    }
    arena_close(&a);
}

/* The leader's answer to a TimeToLive request, into a (no header). */
static int time_to_live_answer(struct api *api, const Etcdserverpb__LeaseTimeToLiveRequest *req,
                               struct arena *a, Etcdserverpb__LeaseTimeToLiveResponse *resp)
{
    resp->id = req->id;
    struct lease_info info;
    if (lessor_info(api->leases, req->id, now_ms(), &info) != 0) {
        resp->ttl = -1; /* etcd: an unknown lease is not an error here */
        return 0;
    }
    resp->ttl = info.remaining_ms / 1000; /* Go's int64(Remaining().Seconds()) */
    resp->grantedttl = info.granted_ttl;
    if (req->keys) {
        uint8_t **keys;
        size_t *lens, nk;
        int rv = lessor_keys(api->leases, req->id, a, &keys, &lens, &nk);
        ProtobufCBinaryData *v = arena_alloc(a, (nk ? nk : 1) * sizeof *v);
        if (rv != 0 || v == NULL)
            return rv ? rv : LSKV_ENOMEM;
        for (size_t i = 0; i < nk; i++)
            v[i] = (ProtobufCBinaryData){.data = keys[i], .len = lens[i]};
        resp->keys = v;
        resp->n_keys = nk;
    }
    return 0;
}

static void time_to_live_reply(struct api *api, grpc_call *call,
                               Etcdserverpb__LeaseTimeToLiveResponse *resp)
{
    Etcdserverpb__ResponseHeader header = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    api_fill_header(api, &header);
    resp->header = &header;
    api_reply(call, &resp->base);
}

struct ttl_wait {
    struct api *api;
    grpc_call *call;
};

static void ttl_from_leader(void *arg, int status, const uint8_t *reply, size_t len)
{
    struct ttl_wait *w = arg;
    struct arena a;
    arena_init(&a);
    Etcdserverpb__LeaseTimeToLiveResponse *resp = NULL;
    if (status == 0 &&
        (resp = unpack(&etcdserverpb__lease_time_to_live_response__descriptor, reply, len,
                           &a)) == NULL)
        status = LSKV_EIO;
    if (status != 0)
        api_fail(w->api, w->call, status, NULL);
    else
        time_to_live_reply(w->api, w->call, resp);
    arena_close(&a);
    free(w);
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
    if (!leading(api)) {
        struct ttl_wait *w = malloc(sizeof *w);
        int rv = w == NULL ? LSKV_ENOMEM
                           : consensus_call_leader(api->node, LEASE_CALL_TIME_TO_LIVE, msg, len,
                                                   ttl_from_leader, w);
        if (w != NULL)
            *w = (struct ttl_wait){.api = api, .call = call};
        if (rv != 0) {
            free(w);
            api_fail(api, call, rv, NULL);
        }
        goto out;
    }
    Etcdserverpb__LeaseTimeToLiveResponse resp = ETCDSERVERPB__LEASE_TIME_TO_LIVE_RESPONSE__INIT;
    int rv = time_to_live_answer(api, req, &a, &resp);
    if (rv != 0)
        api_fail(api, call, rv, NULL);
    else
        time_to_live_reply(api, call, &resp);
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

/* A LeaseKeepAlive stream whose renewals a follower asks the leader for:
 * the stream ends only once every answer is sent. */
struct keepalive_stream {
    unsigned pending;    /* renewals asked of the leader, not yet answered */
    bool end_requested;  /* half-closed or cancelled while some were pending */
    bool finished;       /* grpc_call_finish was called */
};

struct keepalive_wait {
    struct api *api;
    grpc_call *call;
    struct keepalive_stream *st;
    int64_t id;
};

/* Sends one answer on the stream. */
static void keep_alive_answer(struct api *api, grpc_call *call, int64_t id, int64_t ttl)
{
    /* The header is taken before the renewal's answer, as etcd does: a
     * lease revoked at revision r is never seen renewed at a later one. */
    Etcdserverpb__ResponseHeader header = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    api_fill_header(api, &header);
    Etcdserverpb__LeaseKeepAliveResponse resp = ETCDSERVERPB__LEASE_KEEP_ALIVE_RESPONSE__INIT;
    resp.header = &header;
    resp.id = id;
    resp.ttl = ttl;
    uint8_t buf[128]; /* header (4 varints) + 2 varints */
    size_t n = etcdserverpb__lease_keep_alive_response__pack(&resp, buf);
    (void)grpc_call_send(call, buf, n); /* a cancelled stream drops it */
}

static void keep_alive_finish(grpc_call *call, struct keepalive_stream *st,
                              enum grpc_status status, const char *message)
{
    st->finished = true;
    grpc_call_set_data(call, NULL);
    grpc_call_finish(call, status, message);
    if (st->pending == 0)
        free(st);
}

static void keep_alive_from_leader(void *arg, int status, const uint8_t *reply, size_t len)
{
    struct keepalive_wait *w = arg;
    struct keepalive_stream *st = w->st;
    st->pending--;
    if (!st->finished) {
        if (status == 0 && len != 8)
            status = LSKV_EIO;
        if (status == 0) {
            keep_alive_answer(w->api, w->call, w->id, (int64_t)get_u64be(reply));
            if (st->end_requested && st->pending == 0)
                keep_alive_finish(w->call, st, GRPC_STATUS_OK, NULL);
        } else {
            struct etcd_error e = etcd_error_from(status);
            keep_alive_finish(w->call, st, e.status, e.message);
        }
    } else if (st->pending == 0) {
        free(st);
    }
    free(w);
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
    struct keepalive_stream *st = grpc_call_get_data(call);
    if (!leading(api) || (st != NULL && st->pending > 0)) { /* in order after those */
        struct keepalive_wait *w = malloc(sizeof *w);
        if (st == NULL && (st = calloc(1, sizeof *st)) != NULL)
            grpc_call_set_data(call, st);
        uint8_t id[8];
        put_u64be(id, (uint64_t)req->id);
        int rv = w == NULL || st == NULL
                     ? LSKV_ENOMEM
                     : consensus_call_leader(api->node, LEASE_CALL_KEEPALIVE, id, sizeof id,
                                             keep_alive_from_leader, w);
        if (rv != 0) {
            free(w);
            struct etcd_error e = etcd_error_from(rv);
            if (st != NULL)
                keep_alive_finish(call, st, e.status, e.message);
            else
                grpc_call_finish(call, e.status, e.message);
            goto out;
        }
        *w = (struct keepalive_wait){.api = api, .call = call, .st = st, .id = req->id};
        st->pending++;
        goto out;
    }
    int64_t ttl = 0;
    if (lessor_renew(api->leases, req->id, now_ms(), &ttl) != 0)
        ttl = 0;
    keep_alive_answer(api, call, req->id, ttl);
out:
    arena_close(&a);
}

/* The client half-closed, or the stream went away: the stream ends once
 * nothing is pending. */
static void lease_keep_alive_end(grpc_call *call, void *ctx)
{
    (void)ctx;
    struct keepalive_stream *st = grpc_call_get_data(call);
    if (st == NULL) {
        grpc_call_finish(call, GRPC_STATUS_OK, NULL);
    } else if (!st->finished && !st->end_requested) {
        st->end_requested = true;
        if (st->pending == 0)
            keep_alive_finish(call, st, GRPC_STATUS_OK, NULL);
    }
}

int lease_service_serve_call(void *arg, uint8_t kind, const uint8_t *req, size_t len,
                             uint8_t **reply, size_t *reply_len)
{
    struct api *api = arg;
    if (api->leases == NULL || api->node == NULL)
        return LSKV_ENOTLEADER; /* not serving yet */
    if (kind == LEASE_CALL_KEEPALIVE && len == 8) {
        int64_t ttl = 0;
        if (lessor_renew(api->leases, (int64_t)get_u64be(req), now_ms(), &ttl) != 0)
            ttl = 0;
        if ((*reply = malloc(8)) == NULL)
            return LSKV_ENOMEM;
        put_u64be(*reply, (uint64_t)ttl);
        *reply_len = 8;
        return 0;
    }
    if (kind != LEASE_CALL_TIME_TO_LIVE)
        return LSKV_EINVAL;
    struct arena a;
    arena_init(&a);
    Etcdserverpb__LeaseTimeToLiveRequest *r =
        unpack(&etcdserverpb__lease_time_to_live_request__descriptor, req, len, &a);
    Etcdserverpb__LeaseTimeToLiveResponse resp = ETCDSERVERPB__LEASE_TIME_TO_LIVE_RESPONSE__INIT;
    int rv = r == NULL ? LSKV_EINVAL : time_to_live_answer(api, r, &a, &resp);
    if (rv == 0) {
        *reply_len = etcdserverpb__lease_time_to_live_response__get_packed_size(&resp);
        if ((*reply = malloc(*reply_len ? *reply_len : 1)) == NULL)
            rv = LSKV_ENOMEM;
        else
            etcdserverpb__lease_time_to_live_response__pack(&resp, *reply);
    }
    arena_close(&a);
    return rv;
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
    bool lead = leading(api);
    /* A new leader's clocks did not see the old leader's renewals: every
     * lease gets its TTL again plus an election timeout (etcd's Promote). */
    lessor_start_clocks(api->leases, now, e->extend_ms, lead && !e->leading);
    e->leading = lead;
    if (!lead)
        return;
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
    e->extend_ms = extend_ms;
    e->leading = leading(api);
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

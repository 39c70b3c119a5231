/* etcd's --experimental-corrupt-check-time: every interval a follower
 * compares its HashKV with the leader's at its own current revision (etcd's
 * leader asks its followers; here each follower asks the leader through the
 * forwarding link, API_CALL_HASH_KV). Computing a HashKV reads every record
 * through the verified path, so a record the host deleted or altered on
 * either member raises that member's CORRUPT alarm; a hash that differs at
 * one revision with one compaction point raises the follower's, naming the
 * leader. Nothing is checked while a restore is held or the revision is
 * compacted on either side. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "api/api.h"
#include "common/bytes.h"
#include "common/err.h"
#include "common/log.h"

#define MODULE "corrupt"

struct corrupt_check {
    uv_timer_t timer;
    struct api *api;
    bool in_flight, stopped, closed;
    int64_t asked_rev;
    uint64_t checks, mismatches;
};

static void maybe_free(struct corrupt_check *cc)
{
    if (cc->stopped && cc->closed && !cc->in_flight)
        free(cc);
}

static void answered(void *arg, int status, const uint8_t *reply, size_t len)
{
    struct corrupt_check *cc = arg;
    cc->in_flight = false;
    if (cc->stopped || status != 0 || len != 12) {
        maybe_free(cc);
        return; /* no leader, compacted or future there: next time */
    }
    struct api *api = cc->api;
    int64_t leader_compact = (int64_t)get_u64be(reply);
    uint32_t leader_hash = get_u32be(reply + 8);
    uint32_t hash = 0;
    int64_t compact = 0;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    int rv = kvstore_hash_kv(api->kv, cc->asked_rev, &hash, &compact, errmsg);
    if (rv == LSKV_ECORRUPT) {
        api_raise_corrupt(api, errmsg);
        return;
    }
    if (rv != 0 || compact != leader_compact)
        return; /* compacted here since, or a compaction in between */
    cc->checks++;
    if (hash != leader_hash) {
        cc->mismatches++;
        char why[LSKV_ERRMSG_SIZE];
        struct consensus_status st;
        consensus_get_status(api->node, &st);
        snprintf(why, sizeof why, "HashKV at revision %" PRId64 " is %08" PRIx32 " here and %08"
                 PRIx32 " on the leader %016" PRIx64 " (compaction point %" PRId64 ")",
                 cc->asked_rev, hash, leader_hash, st.leader_id, compact);
        api_raise_corrupt(api, why);
    }
}

static void tick(uv_timer_t *t)
{
    struct corrupt_check *cc = t->data;
    struct api *api = cc->api;
    if (cc->in_flight || api->node == NULL || consensus_restore_held(api->node))
        return;
    struct consensus_status st;
    consensus_get_status(api->node, &st);
    if (st.is_leader || st.leader_id == 0)
        return;
    uint8_t req[8];
    cc->asked_rev = kvstore_revision(api->kv);
    put_u64be(req, (uint64_t)cc->asked_rev);
    if (consensus_call_leader(api->node, API_CALL_HASH_KV, req, sizeof req, answered, cc) == 0)
        cc->in_flight = true;
}

int corrupt_check_serve_call(struct api *api, const uint8_t *req, size_t len, uint8_t **reply,
                             size_t *reply_len)
{
    if (len != 8)
        return LSKV_EINVAL;
    uint32_t hash = 0;
    int64_t compact = 0;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    int rv = kvstore_hash_kv(api->kv, (int64_t)get_u64be(req), &hash, &compact, errmsg);
    if (rv == LSKV_ECORRUPT)
        api_raise_corrupt(api, errmsg);
    if (rv != 0)
        return rv;
    if ((*reply = malloc(12)) == NULL)
        return LSKV_ENOMEM;
    put_u64be(*reply, (uint64_t)compact);
    put_u32be(*reply + 8, hash);
    *reply_len = 12;
    return 0;
}

int corrupt_check_start(struct api *api, uint64_t interval_ms, struct corrupt_check **out)
{
    *out = NULL;
    if (interval_ms == 0)
        return 0;
    struct corrupt_check *cc = calloc(1, sizeof *cc);
    if (cc == NULL)
        return LSKV_ENOMEM;
    cc->api = api;
    uv_timer_init(api->loop, &cc->timer);
    cc->timer.data = cc;
    uv_timer_start(&cc->timer, tick, interval_ms, interval_ms);
    *out = cc;
    return 0;
}

static void timer_closed(uv_handle_t *h)
{
    struct corrupt_check *cc = h->data;
    cc->closed = true;
    maybe_free(cc);
}

void corrupt_check_stop(struct corrupt_check *cc)
{
    if (cc == NULL)
        return;
    cc->stopped = true;
    uv_close((uv_handle_t *)&cc->timer, timer_closed);
}

/* Raft's configuration toward the committed membership: see reconfig.h. */
#include "consensus/reconfig.h"

#include <raft.h>
#include <stdlib.h>

#include "common/err.h"
#include "common/log.h"

#define MODULE "reconfig"

/* A change request; it lives until libraft's callback (which libraft
 * also calls, with an error, when leadership is lost or raft closes). */
struct change {
    struct raft_change req;
    uint64_t id;
    const char *what;
};

static void change_cb(struct raft_change *req, int status)
{
    struct change *c = req->data;
    if (status != 0)
        LOG_WARN(MODULE, "%s of member %016llx did not complete: %s (tried again later)",
                 c->what, (unsigned long long)c->id, raft_strerror(status));
    else
        LOG_INFO(MODULE, "raft configuration: %s of member %016llx committed", c->what,
                 (unsigned long long)c->id);
    free(c);
}

static const struct consensus_want *wanted(const struct consensus_want *want, size_t n,
                                           uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (want[i].id == id)
            return &want[i];
    return NULL;
}

static int start(struct raft *r, int kind, uint64_t id, const char *address, int role)
{
    struct change *c = calloc(1, sizeof *c);
    if (c == NULL)
        return LSKV_ENOMEM;
    c->req.data = c;
    c->id = id;
    int rv;
    switch (kind) {
    case 0:
        c->what = "add";
        rv = raft_add(r, &c->req, id, address, change_cb);
        break;
    case 1:
        c->what = role == RAFT_VOTER ? "promotion to voter" : "promotion to standby";
        rv = raft_assign(r, &c->req, id, role, change_cb);
        break;
    default:
        c->what = "removal";
        rv = raft_remove(r, &c->req, id, change_cb);
        break;
    }
    if (rv != 0) {
        free(c);
        /* Another change is not committed yet, or leadership just moved. */
        return rv == RAFT_NOMEM ? LSKV_ENOMEM : 1;
    }
    LOG_INFO(MODULE, "raft configuration: %s of member %016llx%s%s", c->what,
             (unsigned long long)id, address ? " at " : "", address ? address : "");
    return 1;
}

/* id's log reached 90% of the leader's (etcd's readyPercent). */
static bool caught_up(struct raft *r, uint64_t id)
{
    const struct raft_configuration *cfg = &r->configuration;
    for (unsigned i = 0; i < cfg->n; i++)
        if (cfg->servers[i].id == id)
            return (double)r->leader_state.progress[i].match_index >=
                   (double)raft_last_index(r) * 0.9;
    return false;
}

int consensus_reconcile(consensus_node *node, const struct consensus_want *want, size_t n)
{
    struct raft *r = consensus_leader_raft(node);
    if (r == NULL || n == 0)
        return 0;
    if (r->leader_state.change != NULL) /* libraft allows one at a time */
        return 1;
    const struct raft_configuration *cfg = &r->configuration;
    for (unsigned i = 0; i < cfg->n; i++) {
        const struct raft_server *s = &cfg->servers[i];
        if (wanted(want, n, s->id) == NULL && s->id != r->id)
            return start(r, 2, s->id, NULL, 0);
    }
    for (size_t i = 0; i < n; i++) {
        const struct raft_server *s = NULL;
        for (unsigned j = 0; j < cfg->n; j++)
            if (cfg->servers[j].id == want[i].id)
                s = &cfg->servers[j];
        if (s == NULL)
            return start(r, 0, want[i].id, want[i].address, 0);
        if (s->role == RAFT_SPARE)
            return start(r, 1, s->id, NULL, RAFT_STANDBY);
        /* libraft's catch-up rounds hold the one change slot for up to
         * max_catch_up_round_duration each: start them only for a standby
         * that is nearly there (etcd's readyPercent). */
        if (s->role == RAFT_STANDBY && want[i].voter && caught_up(r, s->id))
            return start(r, 1, s->id, NULL, RAFT_VOTER);
        /* A voter the table made a learner does not happen (etcd has no
         * demotion). */
    }
    return 0;
}

void consensus_seen_update(consensus_node *node, struct consensus_seen *s, uint64_t now_ms)
{
    struct raft *r = consensus_leader_raft(node);
    if (r == NULL) {
        s->n = 0;
        return;
    }
    const struct raft_configuration *cfg = &r->configuration;
    uint64_t gap = 2 * (uint64_t)r->election_timeout;
    for (unsigned i = 0; i < cfg->n; i++) {
        if (!r->leader_state.progress[i].recent_recv || cfg->servers[i].id == r->id)
            continue;
        size_t j = 0;
        while (j < s->n && s->id[j] != cfg->servers[i].id)
            j++;
        if (j == s->n) {
            if (s->n == CONSENSUS_SEEN_MAX)
                continue;
            s->id[s->n++] = cfg->servers[i].id;
            s->last[j] = 0;
        }
        if (s->last[j] == 0 || now_ms - s->last[j] > gap)
            s->since[j] = now_ms; /* a new streak */
        s->last[j] = now_ms;
    }
}

/* Connected now (heard without a gap); *since: from when. */
static bool connected(const struct raft *r, const struct consensus_seen *s, uint64_t id,
                      uint64_t now_ms, uint64_t *since)
{
    for (size_t j = 0; j < s->n; j++)
        if (s->id[j] == id && now_ms - s->last[j] <= 2 * (uint64_t)r->election_timeout) {
            *since = s->since[j];
            return true;
        }
    return false;
}

/* etcd's isConnectedSince(now - HealthInterval); the leader itself is. */
static bool is_up(const struct raft *r, const struct consensus_seen *s, uint64_t id,
                  uint64_t now_ms)
{
    uint64_t since;
    if (id == r->id)
        return true;
    return connected(r, s, id, now_ms, &since) && now_ms - since >= CONSENSUS_HEALTH_MS;
}

int consensus_check_change(consensus_node *node, enum consensus_change_op op, uint64_t id,
                           bool strict, const struct consensus_want *members, size_t n,
                           const struct consensus_seen *s, uint64_t now_ms)
{
    struct raft *r = consensus_leader_raft(node);
    if (r == NULL)
        return LSKV_ENOTLEADER;
    size_t up = 0, n_voters = 0, started = 0, started_others = 0;
    bool voter = false, known = false;
    for (size_t i = 0; i < n; i++) {
        known |= members[i].id == id;
        if (!members[i].voter)
            continue;
        n_voters++;
        up += is_up(r, s, members[i].id, now_ms);
        voter |= members[i].id == id;
        started += members[i].started;
        started_others += members[i].started && members[i].id != id;
    }
    switch (op) {
    case CONSENSUS_CHECK_PROMOTE: {
        if (!known || id == r->id)
            return 0; /* apply answers it */
        /* etcd's isLearnerReady: its match against the leader's (a member
         * raft has not taken yet has matched nothing). */
        if (!caught_up(r, id))
            return LSKV_ELEARNERNOTREADY;
        /* IsReadyToPromoteMember: the learner counts, as started. */
        return strict && started + 1 < (n_voters + 1) / 2 + 1 ? LSKV_ENOTENOUGHSTARTED : 0;
    }
    case CONSENSUS_CHECK_ADD_VOTER:
        if (!strict)
            return 0;
        /* IsReadyToAddVotingMember; one started voter may add a second
         * (etcd's restore of a cluster from one member). */
        if (started < (n_voters + 1) / 2 + 1 && !(started == 1 && n_voters == 1))
            return LSKV_ENOTENOUGHSTARTED;
        return up < n_voters ? LSKV_EUNHEALTHY : 0;
    case CONSENSUS_CHECK_ADD_LEARNER:
        return strict && up < n_voters ? LSKV_EUNHEALTHY : 0;
    case CONSENSUS_CHECK_REMOVE:
        if (!strict || !voter)
            return 0;
        /* IsReadyToRemoveVotingMember: the others. */
        if (started_others < (n_voters - 1) / 2 + 1)
            return LSKV_ENOTENOUGHSTARTED;
        /* A member that is down is safe to remove (etcd: it is not in the
         * active quorum). */
        uint64_t since;
        if (id != r->id && !connected(r, s, id, now_ms, &since))
            return 0;
        return up - 1 < 1 + (n_voters - 1) / 2 ? LSKV_EUNHEALTHY : 0;
    }
    return LSKV_EINVAL;
}

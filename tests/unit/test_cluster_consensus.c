/* Three consensus nodes in one loop (libraft's TCP transport on 127.0.0.1,
 * forwarding messages carried by a queue delivered on the next loop turn):
 * writes and linearizable reads at a follower go through the leader
 * (consensus/forward.h). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <raft.h>
#include <uv.h>

#include "common/bytes.h"
#include "common/err.h"
#include "consensus/forward.h"
#include "consensus/node.h"
#include "consensus/reconfig.h"
#include "crypto/aead.h"
#include "runner.h"

#define N 3
#define MAX_APPLIED 256
#define CMD_BYTES 20 /* "FWD!" | origin u64 | request id u64 */

struct member;

struct msg {
    uint64_t from, to;
    uint8_t *buf;
    size_t len;
    struct msg *next;
};

struct cluster {
    uv_loop_t loop;
    uv_idle_t pump;
    struct member *m[N];
    struct msg *head, **tail;
    bool cut[N + 1]; /* member id i: its messages are dropped both ways */
    struct consensus_member conf[N];
};

struct member {
    struct cluster *c;
    uint64_t id;
    char dir[512], addr[64];
    consensus_node *node;
    uint64_t applied_req[MAX_APPLIED]; /* request ids in apply order */
    unsigned n_applied;
    bool closed;
};

static int c_apply(void *data, struct consensus_entry_info *info, const uint8_t *cmd, size_t len,
                   void **result)
{
    struct member *m = data;
    ASSERT_EQ(len, CMD_BYTES);
    ASSERT(memcmp(cmd, "FWD!", 4) == 0);
    info->origin_member = get_u64be(cmd + 4);
    info->request_id = get_u64be(cmd + 12);
    ASSERT_LT(m->n_applied, MAX_APPLIED);
    m->applied_req[m->n_applied++] = info->request_id;
    uint64_t *r = malloc(2 * sizeof *r);
    r[0] = m->id; /* which member's apply made the result */
    r[1] = info->request_id;
    *result = r;
    return 0;
}

static void c_free_result(void *data, void *result)
{
    (void)data;
    free(result);
}

static int c_snapshot(void *data, uint8_t **buf, size_t *len)
{
    (void)data;
    *buf = malloc(1);
    **buf = 0;
    *len = 1;
    return 0;
}

static int c_restore(void *data, const uint8_t *buf, size_t len)
{
    (void)data;
    (void)buf;
    (void)len;
    return 0;
}

static int c_send(void *arg, uint64_t to, const uint8_t *buf, size_t len)
{
    struct member *m = arg;
    struct cluster *c = m->c;
    if (c->cut[m->id] || c->cut[to])
        return 0; /* lost on the way, as on a partitioned network */
    struct msg *g = calloc(1, sizeof *g);
    g->from = m->id;
    g->to = to;
    g->buf = malloc(len);
    memcpy(g->buf, buf, len);
    g->len = len;
    *c->tail = g;
    c->tail = &g->next;
    return 0;
}

static void on_pump(uv_idle_t *h)
{
    struct cluster *c = h->data;
    struct msg *g = c->head;
    c->head = NULL;
    c->tail = &c->head;
    while (g != NULL) {
        struct msg *next = g->next;
        struct member *to = c->m[g->to - 1];
        if (to->node != NULL)
            consensus_receive(to->node, g->from, g->buf, g->len);
        free(g->buf);
        free(g);
        g = next;
    }
}

static const uint8_t key[AEAD_KEY_BYTES] = {7, 7, 7};

static void run_until(struct cluster *c, bool (*cond)(struct cluster *, void *), void *arg,
                      unsigned ms)
{
    uv_update_time(&c->loop);
    uint64_t deadline = uv_now(&c->loop) + ms;
    while (!cond(c, arg)) {
        uv_run(&c->loop, UV_RUN_ONCE);
        uv_update_time(&c->loop);
        if (uv_now(&c->loop) > deadline)
            TEST_FAIL("timed out waiting for the cluster");
    }
}

static void cluster_open(struct cluster *c, unsigned timeout_ms)
{
    memset(c, 0, sizeof *c);
    ASSERT_EQ(uv_loop_init(&c->loop), 0);
    c->tail = &c->head;
    uv_idle_init(&c->loop, &c->pump);
    c->pump.data = c;
    uv_idle_start(&c->pump, on_pump);
    for (int i = 0; i < N; i++) {
        struct member *m = calloc(1, sizeof *m);
        m->c = c;
        m->id = (uint64_t)i + 1;
        snprintf(m->dir, sizeof m->dir, "%s/raft%d", test_tmpdir(), i + 1);
        snprintf(m->addr, sizeof m->addr, "127.0.0.1:%d", test_free_port());
        c->m[i] = m;
        c->conf[i] = (struct consensus_member){.id = m->id, .address = m->addr};
    }
    for (int i = 0; i < N; i++) {
        struct member *m = c->m[i];
        struct consensus_config cfg = {
            .dir = m->dir,
            .data_key = key,
            .cluster_id = 42,
            .member_id = m->id,
            .peer_address = m->addr,
            .members = c->conf,
            .n_members = N,
            .send = c_send,
            .send_arg = m,
            .request_timeout_ms = timeout_ms,
        };
        struct consensus_fsm fsm = {.data = m,
                                    .apply = c_apply,
                                    .free_result = c_free_result,
                                    .snapshot = c_snapshot,
                                    .restore = c_restore};
        char errmsg[LSKV_ERRMSG_SIZE] = "";
        int rv = consensus_open(&c->loop, &cfg, &fsm, &m->node, errmsg);
        if (rv != 0)
            TEST_FAIL("consensus_open: %s", errmsg);
    }
}

static void on_member_closed(void *arg)
{
    ((struct member *)arg)->closed = true;
}

static bool all_closed(struct cluster *c, void *arg)
{
    (void)arg;
    for (int i = 0; i < N; i++)
        if (c->m[i]->node != NULL && !c->m[i]->closed)
            return false;
    return true;
}

static void cluster_close(struct cluster *c)
{
    for (int i = 0; i < N; i++)
        if (c->m[i]->node != NULL)
            consensus_close(c->m[i]->node, on_member_closed, c->m[i]);
    run_until(c, all_closed, NULL, 15000);
    uv_close((uv_handle_t *)&c->pump, NULL);
    ASSERT_EQ(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
    ASSERT_EQ(uv_loop_close(&c->loop), 0);
    on_pump(&c->pump); /* frees what is left queued (nodes are gone) */
    for (int i = 0; i < N; i++)
        free(c->m[i]);
}

static struct member *leader(struct cluster *c)
{
    for (int i = 0; i < N; i++) {
        struct consensus_status st;
        if (c->m[i]->node == NULL)
            continue;
        consensus_get_status(c->m[i]->node, &st);
        if (st.is_leader)
            return c->m[i];
    }
    return NULL;
}

/* A leader, known to every member, ready to take proposals (its barrier
 * went through). */
static bool have_leader(struct cluster *c, void *arg)
{
    (void)arg;
    struct member *l = leader(c);
    if (l == NULL)
        return false;
    for (int i = 0; i < N; i++) {
        struct consensus_status st;
        consensus_get_status(c->m[i]->node, &st);
        if (st.leader_id != l->id)
            return false;
    }
    return true;
}

struct answer {
    bool done;
    int status;
    uint64_t made_by, request_id;
};

static void on_answer(void *arg, int status, void *result)
{
    struct answer *a = arg;
    a->done = true;
    a->status = status;
    if (result != NULL) {
        uint64_t *r = result;
        a->made_by = r[0];
        a->request_id = r[1];
        free(r);
    }
}

static bool answered(struct cluster *c, void *arg)
{
    (void)c;
    return ((struct answer *)arg)->done;
}

static void make_cmd(uint64_t origin, uint64_t request_id, uint8_t out[CMD_BYTES])
{
    memcpy(out, "FWD!", 4);
    put_u64be(out + 4, origin);
    put_u64be(out + 12, request_id);
}

static struct member *a_follower(struct cluster *c)
{
    struct member *l = leader(c);
    return c->m[0] == l ? c->m[1] : c->m[0];
}

/* Proposes at the leader until it takes one (a new leader first applies
 * its predecessors' entries: node.c invariant 8). */
static void settle(struct cluster *c)
{
    run_until(c, have_leader, NULL, 15000);
    for (uint64_t i = 1;; i++) {
        struct answer a = {0};
        uint8_t cmd[CMD_BYTES];
        make_cmd(0, 0, cmd);
        if (consensus_propose(leader(c)->node, 0, cmd, sizeof cmd, on_answer, &a) == 0) {
            run_until(c, answered, &a, 15000);
            if (a.status == 0)
                return;
        }
        ASSERT_LT(i, 200u);
        uv_sleep(20);
    }
}

TEST(cluster_consensus, follower_write_answered_by_its_own_apply)
{
    struct cluster c;
    cluster_open(&c, 5000);
    settle(&c);
    struct member *f = a_follower(&c);
    struct answer a = {0};
    uint8_t cmd[CMD_BYTES];
    make_cmd(f->id, 77, cmd);
    ASSERT_EQ(consensus_propose(f->node, 77, cmd, sizeof cmd, on_answer, &a), 0);
    ASSERT(!a.done); /* never inside the call */
    run_until(&c, answered, &a, 10000);
    ASSERT_EQ(a.status, 0);
    ASSERT_EQ(a.made_by, f->id); /* the follower's apply, not the leader's */
    ASSERT_EQ(a.request_id, 77u);
    /* Without a request id a follower does not forward. */
    ASSERT_EQ(consensus_propose(f->node, 0, cmd, sizeof cmd, on_answer, &a), LSKV_ENOTLEADER);
    cluster_close(&c);
}

struct read_check {
    struct member *f;
    unsigned leader_applied; /* what the leader had applied when the read began */
    struct answer a;
    unsigned applied_at_answer;
};

static void on_read(void *arg, int status, void *result)
{
    struct read_check *r = arg;
    on_answer(&r->a, status, result);
    r->applied_at_answer = r->f->n_applied;
}

static bool read_answered(struct cluster *c, void *arg)
{
    (void)c;
    return ((struct read_check *)arg)->a.done;
}

static bool match_reaches(struct cluster *c, void *arg)
{
    struct member *f = arg;
    struct consensus_status st;
    consensus_get_status(leader(c)->node, &st);
    return consensus_match_index(leader(c)->node, f->id) == st.commit_index;
}

/* The leader's match index for each follower (consensus/probe.h): what the
 * follower acknowledged in this term; 0 on a follower, for itself and for
 * a member outside the configuration. */
TEST(cluster_consensus, leader_knows_what_each_follower_acknowledged)
{
    struct cluster c;
    cluster_open(&c, 5000);
    settle(&c);
    struct member *l = leader(&c), *f = a_follower(&c);
    run_until(&c, match_reaches, f, 10000);
    struct consensus_status st;
    consensus_get_status(l->node, &st);
    ASSERT_GT(consensus_match_index(l->node, f->id), 0u);
    ASSERT_EQ(consensus_match_index(l->node, f->id), st.commit_index);
    ASSERT_EQ(consensus_match_index(l->node, l->id), 0u);
    ASSERT_EQ(consensus_match_index(l->node, 999), 0u);
    ASSERT_EQ(consensus_match_index(f->node, l->id), 0u);
    cluster_close(&c);
}

TEST(cluster_consensus, follower_read_waits_for_the_leaders_index)
{
    struct cluster c;
    cluster_open(&c, 5000);
    settle(&c);
    struct member *l = leader(&c);
    struct member *f = a_follower(&c);
    /* Writes the leader has applied; the read at f must see all of them. */
    for (uint64_t i = 1; i <= 20; i++) {
        struct answer a = {0};
        uint8_t cmd[CMD_BYTES];
        make_cmd(l->id, 1000 + i, cmd);
        ASSERT_EQ(consensus_propose(l->node, 0, cmd, sizeof cmd, on_answer, &a), 0);
        run_until(&c, answered, &a, 10000);
        ASSERT_EQ(a.status, 0);
    }
    struct read_check r = {.f = f, .leader_applied = l->n_applied};
    ASSERT_EQ(consensus_barrier(f->node, on_read, &r), 0);
    run_until(&c, read_answered, &r, 10000);
    ASSERT_EQ(r.a.status, 0);
    ASSERT_GE(r.applied_at_answer, r.leader_applied);
    ASSERT_EQ(f->applied_req[r.leader_applied - 1], 1020u);
    cluster_close(&c);
}

TEST(cluster_consensus, forwarded_requests_time_out_when_the_leader_is_cut_off)
{
    struct cluster c;
    cluster_open(&c, 600);
    settle(&c);
    struct member *l = leader(&c);
    struct member *f = a_follower(&c);
    c.cut[l->id] = true; /* forwarding messages to and from the leader are lost */
    struct answer a = {0};
    uint8_t cmd[CMD_BYTES];
    make_cmd(f->id, 5, cmd);
    ASSERT_EQ(consensus_propose(f->node, 5, cmd, sizeof cmd, on_answer, &a), 0);
    struct read_check r = {.f = f};
    ASSERT_EQ(consensus_barrier(f->node, on_read, &r), 0);
    run_until(&c, answered, &a, 5000);
    run_until(&c, read_answered, &r, 5000);
    ASSERT_EQ(a.status, LSKV_ETIMEOUT);
    ASSERT_EQ(r.a.status, LSKV_ETIMEOUT);
    cluster_close(&c);
}

TEST(cluster_consensus, a_proposal_the_leader_refused_unappended_is_sent_again)
{
    struct cluster c;
    cluster_open(&c, 5000);
    settle(&c);
    struct member *l = leader(&c);
    struct member *f = a_follower(&c);
    c.cut[l->id] = true; /* the first send is lost */
    struct answer a = {0};
    uint8_t cmd[CMD_BYTES];
    make_cmd(f->id, 31, cmd);
    ASSERT_EQ(consensus_propose(f->node, 31, cmd, sizeof cmd, on_answer, &a), 0);
    for (int i = 0; i < 5; i++)
        uv_run(&c.loop, UV_RUN_NOWAIT);
    c.cut[l->id] = false;
    /* The leader says it never appended it (not ready to lead): the
     * follower sends it again and answers from its own apply. */
    uint8_t refused[13] = {FWD_PROPOSE_REFUSED};
    put_u64be(refused + 1, 31);
    put_u32be(refused + 9, (uint32_t)LSKV_ENOTLEADER);
    consensus_receive(f->node, l->id, refused, sizeof refused);
    run_until(&c, answered, &a, 5000);
    ASSERT_EQ(a.status, 0);
    ASSERT_EQ(a.made_by, f->id);
    unsigned applied = 0;
    for (unsigned i = 0; i < l->n_applied; i++)
        applied += l->applied_req[i] == 31;
    ASSERT_EQ(applied, 1u); /* once: the lost first send never reached it */
    /* Any other refusal is the caller's answer. */
    struct answer b = {0};
    make_cmd(f->id, 32, cmd);
    c.cut[l->id] = true;
    ASSERT_EQ(consensus_propose(f->node, 32, cmd, sizeof cmd, on_answer, &b), 0);
    put_u64be(refused + 1, 32);
    put_u32be(refused + 9, (uint32_t)LSKV_ETOOMANYREQUESTS);
    consensus_receive(f->node, l->id, refused, sizeof refused);
    run_until(&c, answered, &b, 5000);
    ASSERT_EQ(b.status, LSKV_ETOOMANYREQUESTS);
    c.cut[l->id] = false;
    cluster_close(&c);
}

TEST(cluster_consensus, close_answers_waiting_forwarded_callers)
{
    struct cluster c;
    cluster_open(&c, 60000);
    settle(&c);
    struct member *l = leader(&c);
    struct member *f = a_follower(&c);
    c.cut[l->id] = true;
    struct answer a = {0};
    uint8_t cmd[CMD_BYTES];
    make_cmd(f->id, 9, cmd);
    ASSERT_EQ(consensus_propose(f->node, 9, cmd, sizeof cmd, on_answer, &a), 0);
    cluster_close(&c);
    ASSERT(a.done);
    ASSERT_EQ(a.status, LSKV_ESHUTDOWN);
}

TEST(cluster_consensus, forwarding_messages_parse_strictly)
{
    struct fwd_msg m;
    uint8_t ok_read[9] = {FWD_READ_INDEX, 0, 0, 0, 0, 0, 0, 0, 5};
    ASSERT_EQ(fwd_parse(ok_read, sizeof ok_read, &m), 0);
    ASSERT_EQ(m.id, 5u);
    ASSERT_EQ(fwd_parse(ok_read, 8, &m), LSKV_ECORRUPT);
    uint8_t propose_empty[9] = {FWD_PROPOSE};
    ASSERT_EQ(fwd_parse(propose_empty, sizeof propose_empty, &m), LSKV_ECORRUPT);
    uint8_t reply[21] = {FWD_READ_REPLY, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0,
                         0, 0, 0, 0, 0, 0, 0, 42};
    ASSERT_EQ(fwd_parse(reply, sizeof reply, &m), 0);
    ASSERT_EQ(m.index, 42u);
    ASSERT_EQ(fwd_parse(reply, 20, &m), LSKV_ECORRUPT);
    reply[12] = 0x7f; /* an unknown status */
    ASSERT_EQ(fwd_parse(reply, sizeof reply, &m), LSKV_ECORRUPT);
    uint8_t failed_ok[13] = {FWD_PROPOSE_FAILED, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0};
    ASSERT_EQ(fwd_parse(failed_ok, sizeof failed_ok, &m), LSKV_ECORRUPT); /* status 0 */
    uint8_t refused[13] = {FWD_PROPOSE_REFUSED, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xd8, 0xe4};
    ASSERT_EQ(fwd_parse(refused, sizeof refused, &m), 0); /* LSKV_ENOTLEADER */
    ASSERT_EQ(m.status, LSKV_ENOTLEADER);
    refused[12] = 0; /* status 0: never a refusal */
    ASSERT_EQ(fwd_parse(refused, sizeof refused, &m), LSKV_ECORRUPT);
    uint8_t unknown[9] = {9};
    ASSERT_EQ(fwd_parse(unknown, sizeof unknown, &m), LSKV_ECORRUPT);
}

/* ---- raft's configuration toward a membership (consensus/reconfig.h) ---- */

/* The role of server id in the leader's configuration, -1 when absent. */
static int role_of(struct cluster *c, uint64_t id)
{
    struct raft *r = consensus_leader_raft(leader(c)->node);
    for (unsigned i = 0; r != NULL && i < r->configuration.n; i++)
        if (r->configuration.servers[i].id == id)
            return r->configuration.servers[i].role;
    return -1;
}

struct want_list {
    const struct consensus_want *w;
    size_t n;
};

/* Reconciles on the leader until nothing is left to do. */
static bool reconciled(struct cluster *c, void *arg)
{
    struct want_list *l = arg;
    struct member *lead = leader(c);
    return lead != NULL && consensus_reconcile(lead->node, l->w, l->n) == 0;
}

/* A follower passes the promote check (w: the membership, 4 members). */
static bool follower_ready(struct cluster *c, void *arg)
{
    struct consensus_seen seen = {0};
    return consensus_check_change(leader(c)->node, CONSENSUS_CHECK_PROMOTE, a_follower(c)->id,
                                  true, arg, 4, &seen, 1000) == 0;
}

TEST(cluster_consensus, raft_configuration_follows_the_membership)
{
    struct cluster c;
    cluster_open(&c, 0);
    settle(&c);
    struct member *lead = leader(&c);
    char far[64];
    snprintf(far, sizeof far, "127.0.0.1:%d", test_free_port()); /* nobody listens */
    struct consensus_want w[4];
    for (int i = 0; i < N; i++)
        w[i] = (struct consensus_want){.id = c.m[i]->id, .address = c.m[i]->addr,
                                       .voter = true, .started = true};
    /* Already as wanted: nothing to do. */
    ASSERT_EQ(consensus_reconcile(lead->node, w, N), 0);
    /* A learner: added (spare), then standby; never started, so it stays. */
    w[3] = (struct consensus_want){.id = 9, .address = far, .voter = false};
    struct want_list l = {w, 4};
    run_until(&c, reconciled, &l, 15000);
    ASSERT_EQ(role_of(&c, 9), RAFT_STANDBY);
    /* Wanted as a voter, but it has not caught up: no promotion starts,
     * and etcd's check says not ready. */
    w[3].voter = true;
    ASSERT_EQ(consensus_reconcile(lead->node, w, 4), 0);
    ASSERT_EQ(role_of(&c, 9), RAFT_STANDBY);
    struct consensus_seen seen = {0};
    w[3].voter = false;
    ASSERT_EQ(consensus_check_change(lead->node, CONSENSUS_CHECK_PROMOTE, 9, true, w, 4, &seen,
                                     1000),
              LSKV_ELEARNERNOTREADY);
    /* A voter once caught up (its acks may lag a moment) and an unknown
     * id pass: apply answers them. */
    run_until(&c, follower_ready, w, 15000);
    ASSERT_EQ(consensus_check_change(lead->node, CONSENSUS_CHECK_PROMOTE, 77, true, w, 4, &seen,
                                     1000),
              0);
    /* No follower heard for 5 s: a voter add is unhealthy when strict; a
     * follower not connected is safe to remove. */
    ASSERT_EQ(consensus_check_change(lead->node, CONSENSUS_CHECK_ADD_VOTER, 77, true, w, 4,
                                     &seen, 1000),
              LSKV_EUNHEALTHY);
    ASSERT_EQ(consensus_check_change(lead->node, CONSENSUS_CHECK_ADD_VOTER, 77, false, w, 4,
                                     &seen, 1000),
              0);
    ASSERT_EQ(consensus_check_change(lead->node, CONSENSUS_CHECK_ADD_LEARNER, 77, true, w, 4,
                                     &seen, 1000),
              LSKV_EUNHEALTHY);
    /* etcd's started-member checks come first: with two of three voters
     * not started, adding a voter (quorum of 4: 3), removing a started one
     * (2 of 2 others needed) and promoting (3 of 4 with the learner) are
     * refused; a learner may still be added (then: unhealthy). */
    struct consensus_want ns[4];
    memcpy(ns, w, sizeof ns);
    ns[1].started = ns[2].started = false;
    ASSERT_EQ(consensus_check_change(lead->node, CONSENSUS_CHECK_ADD_VOTER, 77, true, ns, 4,
                                     &seen, 1000),
              LSKV_ENOTENOUGHSTARTED);
    ASSERT_EQ(consensus_check_change(lead->node, CONSENSUS_CHECK_REMOVE, ns[0].id, true, ns, 4,
                                     &seen, 1000),
              LSKV_ENOTENOUGHSTARTED);
    /* Promoting a caught-up follower listed as a learner, with neither
     * voter started: the learner alone is 1 of the 2 needed of 3. */
    struct member *fl = a_follower(&c);
    struct consensus_want pl[3];
    for (int i = 0; i < N; i++)
        pl[i] = (struct consensus_want){.id = c.m[i]->id, .voter = c.m[i] != fl};
    ASSERT_EQ(consensus_check_change(lead->node, CONSENSUS_CHECK_PROMOTE, fl->id, true, pl, N,
                                     &seen, 1000),
              LSKV_ENOTENOUGHSTARTED);
    for (int i = 0; i < N; i++)
        pl[i].started = c.m[i] == lead;
    ASSERT_EQ(consensus_check_change(lead->node, CONSENSUS_CHECK_PROMOTE, fl->id, true, pl, N,
                                     &seen, 1000),
              0);
    ASSERT_EQ(consensus_check_change(lead->node, CONSENSUS_CHECK_ADD_LEARNER, 77, true, ns, 4,
                                     &seen, 1000),
              LSKV_EUNHEALTHY);
    /* ... and allowed without --strict-reconfig-check. */
    ASSERT_EQ(consensus_check_change(lead->node, CONSENSUS_CHECK_ADD_VOTER, 77, false, ns, 4,
                                     &seen, 1000),
              0);
    struct member *f = a_follower(&c);
    ASSERT_EQ(consensus_check_change(lead->node, CONSENSUS_CHECK_REMOVE, f->id, true, w, 4,
                                     &seen, 1000),
              0);
    /* The leader itself is connected: removing it would leave no voter
     * counted as up (none heard for 5 s) for a quorum of two. */
    ASSERT_EQ(consensus_check_change(lead->node, CONSENSUS_CHECK_REMOVE, lead->id, true, w, 4,
                                     &seen, 1000),
              LSKV_EUNHEALTHY);
    /* Not wanted any more: removed. The leader is never removed by itself. */
    struct consensus_want two[2];
    size_t n = 0;
    two[n++] = (struct consensus_want){.id = f->id, .address = f->addr, .voter = true};
    for (int i = 0; i < N; i++)
        if (c.m[i] != lead && c.m[i] != f)
            two[n++] = (struct consensus_want){.id = c.m[i]->id, .address = c.m[i]->addr,
                                               .voter = true};
    l = (struct want_list){two, 2};
    run_until(&c, reconciled, &l, 15000);
    ASSERT_EQ(role_of(&c, 9), -1);
    ASSERT_EQ(role_of(&c, lead->id), RAFT_VOTER);
    ASSERT_EQ(role_of(&c, f->id), RAFT_VOTER);
    ASSERT_EQ(consensus_check_change(f->node, CONSENSUS_CHECK_REMOVE, 1, true, w, 4, &seen,
                                     1000),
              LSKV_ENOTLEADER);
    /* Writes still commit. */
    settle(&c);
    cluster_close(&c);
}

/* The rollback and fork probe on the peer network: see probe_links.h. */
#include "net/probe_links.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"

#define MODULE "probe"

struct asked {
    probe_links *p;
    uint64_t id;
    char *address;
    peer_link *link;
    bool answered;
    struct probe_reply reply;
    uint64_t fork_since; /* uv_now of the first fork refusal in a row; 0: none */
    uint64_t next_try;   /* uv_now */
    int last_error;
};

struct probe_links {
    uv_loop_t *loop;
    peer_net *net;
    consensus_node *node;
    bool (*listed)(void *arg, uint64_t id);
    void *listed_arg;
    struct asked *peers;
    size_t n;
    unsigned election_ms;
    uv_timer_t tick;
    bool asking, done_called, closing;
    int open; /* links (ours and served) not yet closed, + the timer */
    uint64_t started, last_log;
    struct probe_self self;
    probe_done_cb done;
    void *done_arg;
};

static void maybe_free(probe_links *p)
{
    if (!p->closing || p->open > 0)
        return;
    for (size_t i = 0; i < p->n; i++)
        free(p->peers[i].address);
    free(p->peers);
    free(p);
}

int probe_links_new(uv_loop_t *loop, peer_net *net, const struct probe_peer *peers, size_t n,
                    unsigned election_ms, probe_links **out)
{
    probe_links *p = calloc(1, sizeof *p);
    if (p == NULL || (n > 0 && (p->peers = calloc(n, sizeof *p->peers)) == NULL)) {
        free(p);
        return LSKV_ENOMEM;
    }
    p->loop = loop;
    p->net = net;
    p->election_ms = election_ms ? election_ms : CONSENSUS_ELECTION_TIMEOUT_MS;
    for (size_t i = 0; i < n; i++) {
        p->peers[i] = (struct asked){.p = p, .id = peers[i].id,
                                     .address = strdup(peers[i].address)};
        p->n++;
        if (p->peers[i].address == NULL) {
            p->closing = true;
            maybe_free(p);
            return LSKV_ENOMEM;
        }
    }
    uv_timer_init(loop, &p->tick);
    p->tick.data = p;
    p->open = 1;
    *out = p;
    return 0;
}

void probe_links_set_node(probe_links *p, consensus_node *node)
{
    p->node = node;
}

void probe_links_set_member_check(probe_links *p, bool (*listed)(void *arg, uint64_t id),
                                  void *arg)
{
    p->listed = listed;
    p->listed_arg = arg;
}

/* ---- serving -------------------------------------------------------------- */

static void serve_in(void *arg, peer_link *l, const uint8_t *msg, size_t len)
{
    probe_links *p = arg;
    if (probe_request_decode(msg, len) != 0) {
        LOG_WARN(MODULE, "malformed probe from %s; closed", peer_link_address(l));
        peer_link_close(l);
        return;
    }
    struct probe_reply r = {0};
    if (p->node != NULL) {
        struct consensus_status st;
        consensus_get_status(p->node, &st);
        r.running = true;
        r.leader = st.is_leader;
        r.leader_id = st.leader_id;
        r.term = st.term;
        r.match_index = consensus_match_index(p->node, peer_link_member(l));
        /* While a restore is held, raft's applied index is ahead of the
         * state: say nothing about membership then. */
        if (!consensus_restore_held(p->node)) {
            r.applied_index = st.applied_index;
            r.removed = p->listed != NULL && !p->listed(p->listed_arg, peer_link_member(l));
        }
    }
    uint8_t buf[PROBE_REPLY_BYTES];
    probe_reply_encode(&r, buf);
    if (peer_link_send(l, buf, sizeof buf) != 0)
        peer_link_close(l);
}

static void link_closed(void *arg, peer_link *l, int status);

void probe_links_accept(probe_links *p, peer_link *l)
{
    static const struct peer_link_callbacks cbs = {.on_message = serve_in,
                                                   .on_close = link_closed};
    peer_link_set(l, &cbs, p);
    p->open++;
}

static void link_closed(void *arg, peer_link *l, int status)
{
    (void)l;
    (void)status;
    probe_links *p = arg;
    p->open--;
    maybe_free(p);
}

/* ---- asking --------------------------------------------------------------- */

static void finish(probe_links *p, int status, const char *errmsg)
{
    if (p->done_called)
        return;
    p->done_called = true;
    uv_timer_stop(&p->tick);
    for (size_t i = 0; i < p->n; i++)
        if (p->peers[i].link != NULL)
            peer_link_close(p->peers[i].link);
    p->done(p->done_arg, status, errmsg);
}

/* Decides whether enough is known to start (see probe_links.h). */
static void evaluate(probe_links *p)
{
    if (p->done_called || p->closing)
        return;
    uint64_t now = uv_now(p->loop);
    size_t answered = 0;
    bool leader = false, fork = false;
    for (size_t i = 0; i < p->n; i++) {
        struct asked *a = &p->peers[i];
        if (a->fork_since != 0) {
            fork = true;
            if (now - a->fork_since >= (uint64_t)PROBE_FORK_ROUNDS * p->election_ms) {
                char errmsg[LSKV_ERRMSG_SIZE];
                errmsg_printf(errmsg, "member %016" PRIx64 " at %s refuses this process for %"
                              PRIu64 " ms: another process of this member is live (was this "
                              "data dir copied from a running member?)", a->id, a->address,
                              now - a->fork_since);
                finish(p, -EEXIST, errmsg);
                return;
            }
        }
        if (a->answered) {
            answered++;
            leader = leader || a->reply.leader;
        }
    }
    bool bound = now - p->started >= (uint64_t)PROBE_BOUND_ROUNDS * p->election_ms;
    if (!fork && probe_enough(p->n + 1, answered, leader, bound)) {
        LOG_INFO(MODULE, "%zu of %zu other members answered the rollback probe%s: raft log "
                 "to index %" PRIu64 ", term %" PRIu64 " is not behind what they know",
                 answered, p->n, leader ? " (the leader among them)" : "",
                 p->self.last_index, p->self.term);
        finish(p, 0, "");
        return;
    }
    if (now - p->last_log >= PROBE_LOG_EVERY_MS) {
        p->last_log = now;
        LOG_INFO(MODULE, "waiting before starting raft: %zu of %zu other members answered the "
                 "rollback probe%s", answered, p->n,
                 fork ? "; a member reports another live process of this member" : "");
    }
}

static void ask_in(void *arg, peer_link *l, const uint8_t *msg, size_t len)
{
    struct asked *a = arg;
    probe_links *p = a->p;
    if (p->done_called || l != a->link)
        return;
    struct probe_reply r;
    if (probe_reply_decode(msg, len, &r) != 0) {
        LOG_WARN(MODULE, "malformed probe reply from member %016" PRIx64 " at %s", a->id,
                 a->address);
        peer_link_close(l);
        return;
    }
    a->answered = true;
    a->reply = r;
    a->fork_since = 0;
    char errmsg[LSKV_ERRMSG_SIZE];
    int judged = probe_judge(&p->self, a->id, &r, errmsg);
    if (judged != 0) {
        finish(p, judged, errmsg);
        return;
    }
    peer_link_close(l);
    evaluate(p);
}

static void ask_open(void *arg, peer_link *l, int status)
{
    struct asked *a = arg;
    if (l != a->link || status == 0)
        return;
    a->last_error = status;
    if (status == -EEXIST && a->fork_since == 0 && !a->answered)
        a->fork_since = uv_now(a->p->loop);
}

static void ask_closed(void *arg, peer_link *l, int status)
{
    (void)status;
    struct asked *a = arg;
    probe_links *p = a->p;
    if (l == a->link) {
        a->link = NULL;
        a->next_try = uv_now(p->loop) + PROBE_RETRY_MS;
    }
    p->open--;
    maybe_free(p);
}

static void ask(struct asked *a)
{
    static const struct peer_link_callbacks cbs = {
        .on_open = ask_open,
        .on_message = ask_in,
        .on_close = ask_closed,
    };
    probe_links *p = a->p;
    int rv = peer_link_connect(p->net, a->address, PEER_PROBE, &cbs, a, &a->link);
    if (rv != 0) {
        a->link = NULL;
        a->next_try = uv_now(p->loop) + PROBE_RETRY_MS;
        return;
    }
    p->open++;
    uint8_t req[PROBE_REQUEST_BYTES];
    probe_request_encode(req);
    if (peer_link_send(a->link, req, sizeof req) != 0)
        peer_link_close(a->link); /* ask_closed retries */
}

static void on_tick(uv_timer_t *t)
{
    probe_links *p = t->data;
    uint64_t now = uv_now(p->loop);
    for (size_t i = 0; i < p->n && !p->done_called; i++) {
        struct asked *a = &p->peers[i];
        if (!a->answered && a->link == NULL && now >= a->next_try)
            ask(a);
    }
    evaluate(p);
}

int probe_links_ask(probe_links *p, const struct probe_self *self, probe_done_cb done,
                    void *arg)
{
    if (p->asking || p->closing)
        return LSKV_EINVAL;
    p->asking = true;
    p->self = *self;
    p->done = done;
    p->done_arg = arg;
    p->started = p->last_log = uv_now(p->loop);
    uv_timer_start(&p->tick, on_tick, 0, 100);
    return 0;
}

static void tick_closed(uv_handle_t *h)
{
    probe_links *p = h->data;
    p->open--;
    maybe_free(p);
}

void probe_links_close(probe_links *p)
{
    if (p->closing)
        return;
    p->closing = true;
    p->done_called = true; /* nobody is told any more */
    for (size_t i = 0; i < p->n; i++)
        if (p->peers[i].link != NULL)
            peer_link_close(p->peers[i].link);
    uv_close((uv_handle_t *)&p->tick, tick_closed);
}

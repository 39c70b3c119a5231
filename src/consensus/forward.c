/* Forwarding of writes and read indexes to the leader: see forward.h. */
#include "consensus/forward.h"

#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/err.h"
#include "common/hash64.h"

#define BUCKETS 8192u              /* a power of two; waiting proposals <= max_inflight */
#define MAX_WAITING 5000u          /* etcd's maxGapBetweenApplyAndCommitIndex */
#define TICK_MS 100u
#define HEADER_BYTES 9u            /* type + id */
#define MAX_RETAINED (64u << 20)   /* command bytes kept for sending again */

struct fwd_proposal {
    uint64_t request_id;
    uint64_t deadline;
    uint8_t *msg;          /* the FWD_PROPOSE message, kept until answered */
    size_t msg_len;
    bool sent;             /* to a leader that has not refused it */
    consensus_done_cb cb;
    void *arg;
    struct fwd_proposal *chain;          /* bucket chain */
    struct fwd_proposal *older, *newer;  /* in deadline order */
};

struct fwd_call {
    uint64_t call_id;
    uint64_t deadline;
    consensus_call_cb cb;
    void *arg;
    struct fwd_call *older, *newer; /* in deadline order */
};

struct reader {
    consensus_done_cb cb;
    void *arg;
    struct reader *next;
};

/* One read index: asked (index 0 until the reply) or known and waiting for
 * the local apply to reach it. */
struct read_round {
    uint64_t read_id;
    uint64_t index;
    uint64_t deadline;
    struct reader *readers;
    struct read_round *next;
};

struct forwarder {
    struct forwarder_config cfg;
    uv_loop_t *loop;
    uv_timer_t timer;
    bool closed;
    struct fwd_proposal *buckets[BUCKETS];
    struct fwd_proposal *oldest, *newest;
    uint64_t waiting;
    uint64_t retained;            /* bytes of the waiting proposals' messages */
    struct read_round *asked;     /* in flight to the leader, or NULL */
    struct reader *next_readers;  /* arrived while asked was in flight */
    uint64_t next_leader;         /* where next_readers' round goes */
    struct read_round *known;     /* replies, in increasing index order */
    uint64_t last_read_id;
    uint64_t applied;             /* last index forwarder_progress saw */
    struct fwd_call *oldest_call, *newest_call;
    uint64_t calls, last_call_id;
};

/* A forwarded request the leader serves. */
struct serve {
    forwarder *f;
    uint64_t from, id;
};

/* ---- messages ------------------------------------------------------------ */

static bool known_status(int32_t s)
{
    switch (s) {
    case 0:
    case LSKV_ENOTLEADER:
    case LSKV_ESHUTDOWN:
    case LSKV_ENOSPACE:
    case LSKV_EIO:
    case LSKV_ETOOLARGE:
    case LSKV_ETOOMANYREQUESTS:
    case LSKV_ENOMEM:
    case LSKV_ETIMEOUT:
        return true;
    default:
        return false;
    }
}

int fwd_parse(const uint8_t *buf, size_t len, struct fwd_msg *out)
{
    memset(out, 0, sizeof *out);
    if (len < HEADER_BYTES)
        return LSKV_ECORRUPT;
    out->type = buf[0];
    out->id = get_u64be(buf + 1);
    switch (out->type) {
    case FWD_PROPOSE:
        if (len == HEADER_BYTES)
            return LSKV_ECORRUPT;
        out->cmd = buf + HEADER_BYTES;
        out->cmd_len = len - HEADER_BYTES;
        return 0;
    case FWD_READ_INDEX:
        return len == HEADER_BYTES ? 0 : LSKV_ECORRUPT;
    case FWD_CALL:
        if (len < HEADER_BYTES + 1)
            return LSKV_ECORRUPT;
        out->kind = buf[HEADER_BYTES];
        out->cmd = buf + HEADER_BYTES + 1;
        out->cmd_len = len - HEADER_BYTES - 1;
        return 0;
    case FWD_CALL_REPLY:
        if (len < HEADER_BYTES + 4)
            return LSKV_ECORRUPT;
        out->status = (int32_t)get_u32be(buf + HEADER_BYTES);
        /* ...and what a call's answer may be (lease and membership checks) */
        if (!known_status(out->status) && out->status != LSKV_EINVAL &&
            out->status != LSKV_ELEASENOTFOUND && out->status != LSKV_EUNHEALTHY &&
            out->status != LSKV_ELEARNERNOTREADY)
            return LSKV_ECORRUPT;
        out->cmd = buf + HEADER_BYTES + 4;
        out->cmd_len = len - HEADER_BYTES - 4;
        return 0;
    case FWD_PROPOSE_FAILED:
    case FWD_PROPOSE_REFUSED:
    case FWD_READ_REPLY: {
        size_t want = HEADER_BYTES + 4 + (out->type == FWD_READ_REPLY ? 8 : 0);
        if (len != want)
            return LSKV_ECORRUPT;
        out->status = (int32_t)get_u32be(buf + HEADER_BYTES);
        if (!known_status(out->status) || (out->type != FWD_READ_REPLY && out->status == 0))
            return LSKV_ECORRUPT;
        if (out->type == FWD_READ_REPLY)
            out->index = get_u64be(buf + HEADER_BYTES + 4);
        return 0;
    }
    default:
        return LSKV_ECORRUPT;
    }
}

/* Sends a fixed-size message: type, id, then status and index when given. */
static int send_small(forwarder *f, uint64_t to, uint8_t type, uint64_t id, int32_t status,
                      uint64_t index)
{
    uint8_t m[HEADER_BYTES + 12];
    size_t n = HEADER_BYTES;
    m[0] = type;
    put_u64be(m + 1, id);
    if (type != FWD_READ_INDEX) {
        put_u32be(m + n, (uint32_t)status);
        n += 4;
    }
    if (type == FWD_READ_REPLY) {
        put_u64be(m + n, index);
        n += 8;
    }
    return f->cfg.send(f->cfg.send_arg, to, m, n);
}

/* ---- follower: waiting proposals ------------------------------------------- */

static struct fwd_proposal **bucket_of(forwarder *f, uint64_t request_id)
{
    return &f->buckets[mix64(request_id) & (BUCKETS - 1)];
}

/* Unlinks p from its bucket and the deadline list. */
static void proposal_remove(forwarder *f, struct fwd_proposal *p)
{
    struct fwd_proposal **pp = bucket_of(f, p->request_id);
    while (*pp != p)
        pp = &(*pp)->chain;
    *pp = p->chain;
    if (p->older != NULL)
        p->older->newer = p->newer;
    else
        f->oldest = p->newer;
    if (p->newer != NULL)
        p->newer->older = p->older;
    else
        f->newest = p->older;
    f->waiting--;
}

static void proposal_free(forwarder *f, struct fwd_proposal *p)
{
    f->retained -= p->msg_len;
    free(p->msg);
    free(p);
}

static void finish_proposal(forwarder *f, struct fwd_proposal *p, int status, void *result)
{
    proposal_remove(f, p);
    consensus_done_cb cb = p->cb;
    void *arg = p->arg;
    proposal_free(f, p);
    cb(arg, status, result);
}

/* Sends p to the leader, or (this member leads now) proposes it here, where
 * the raft request itself then answers the caller. Not sent: tried again
 * on the next tick, until the deadline. */
static void try_send(forwarder *f, struct fwd_proposal *p)
{
    struct consensus_status st;
    consensus_get_status(f->cfg.node, &st);
    if (st.is_leader) {
        int rv = consensus_propose(f->cfg.node, 0, p->msg + HEADER_BYTES,
                                   p->msg_len - HEADER_BYTES, p->cb, p->arg);
        if (rv == 0) {
            proposal_remove(f, p);
            proposal_free(f, p);
        } else if (rv != LSKV_ENOTLEADER) { /* not ready to lead yet: next tick */
            finish_proposal(f, p, rv, NULL);
        }
        return;
    }
    if (st.leader_id != 0 && f->cfg.send(f->cfg.send_arg, st.leader_id, p->msg, p->msg_len) == 0)
        p->sent = true;
}

static void on_tick(uv_timer_t *t);

static void start_ticking(forwarder *f)
{
    if (!uv_is_active((uv_handle_t *)&f->timer))
        uv_timer_start(&f->timer, on_tick, TICK_MS, TICK_MS);
}

int forwarder_propose(forwarder *f, uint64_t request_id, const uint8_t *cmd, size_t len,
                      consensus_done_cb cb, void *arg)
{
    if (f->closed)
        return LSKV_ESHUTDOWN;
    if (request_id == 0)
        return LSKV_ENOTLEADER;
    /* One alone always passes the bytes bound (max-request-bytes rules). */
    if (f->waiting >= MAX_WAITING || (f->waiting > 0 && f->retained + len > MAX_RETAINED))
        return LSKV_ETOOMANYREQUESTS;
    for (struct fwd_proposal *q = *bucket_of(f, request_id); q != NULL; q = q->chain)
        if (q->request_id == request_id)
            return LSKV_EINVAL; /* the caller reused an id */
    struct fwd_proposal *p = calloc(1, sizeof *p);
    uint8_t *m = malloc(HEADER_BYTES + len);
    if (p == NULL || m == NULL) {
        free(p);
        free(m);
        return LSKV_ENOMEM;
    }
    m[0] = FWD_PROPOSE;
    put_u64be(m + 1, request_id);
    memcpy(m + HEADER_BYTES, cmd, len);
    p->msg = m;
    p->msg_len = HEADER_BYTES + len;
    f->retained += p->msg_len;
    p->request_id = request_id;
    p->deadline = uv_now(f->loop) + f->cfg.timeout_ms;
    p->cb = cb;
    p->arg = arg;
    struct fwd_proposal **b = bucket_of(f, request_id);
    p->chain = *b;
    *b = p;
    p->older = f->newest;
    if (f->newest != NULL)
        f->newest->newer = p;
    else
        f->oldest = p;
    f->newest = p;
    f->waiting++;
    start_ticking(f);
    /* No leader yet (an election): it waits, as etcd's proposals do. */
    try_send(f, p);
    return 0;
}

bool forwarder_applied(forwarder *f, uint64_t origin, uint64_t request_id, void *result)
{
    if (origin != f->cfg.member_id || request_id == 0 || f->waiting == 0)
        return false;
    for (struct fwd_proposal *p = *bucket_of(f, request_id); p != NULL; p = p->chain) {
        if (p->request_id == request_id) {
            finish_proposal(f, p, 0, result);
            return true;
        }
    }
    return false;
}

uint64_t forwarder_waiting(const forwarder *f)
{
    return f->waiting;
}

/* ---- follower: calls to the leader ---------------------------------------- */

static void call_unlink(forwarder *f, struct fwd_call *c)
{
    if (c->older != NULL)
        c->older->newer = c->newer;
    else
        f->oldest_call = c->newer;
    if (c->newer != NULL)
        c->newer->older = c->older;
    else
        f->newest_call = c->older;
    f->calls--;
}

static void finish_call(forwarder *f, struct fwd_call *c, int status, const uint8_t *reply,
                        size_t len)
{
    call_unlink(f, c);
    consensus_call_cb cb = c->cb;
    void *arg = c->arg;
    free(c);
    cb(arg, status, reply, len);
}

int forwarder_call(forwarder *f, uint64_t leader, uint8_t kind, const uint8_t *req, size_t len,
                   consensus_call_cb cb, void *arg)
{
    if (f->closed)
        return LSKV_ESHUTDOWN;
    if (leader == 0 || leader == f->cfg.member_id)
        return LSKV_ENOTLEADER;
    if (f->calls >= MAX_WAITING)
        return LSKV_ETOOMANYREQUESTS;
    struct fwd_call *c = calloc(1, sizeof *c);
    uint8_t *m = malloc(HEADER_BYTES + 1 + len);
    if (c == NULL || m == NULL) {
        free(c);
        free(m);
        return LSKV_ENOMEM;
    }
    c->call_id = ++f->last_call_id;
    m[0] = FWD_CALL;
    put_u64be(m + 1, c->call_id);
    m[HEADER_BYTES] = kind;
    if (len > 0)
        memcpy(m + HEADER_BYTES + 1, req, len);
    int rv = f->cfg.send(f->cfg.send_arg, leader, m, HEADER_BYTES + 1 + len);
    free(m);
    if (rv != 0) {
        free(c);
        return LSKV_ENOTLEADER;
    }
    c->deadline = uv_now(f->loop) + f->cfg.timeout_ms;
    c->cb = cb;
    c->arg = arg;
    c->older = f->newest_call;
    if (f->newest_call != NULL)
        f->newest_call->newer = c;
    else
        f->oldest_call = c;
    f->newest_call = c;
    f->calls++;
    start_ticking(f);
    return 0;
}

static void on_call_reply(forwarder *f, const struct fwd_msg *m)
{
    for (struct fwd_call *c = f->oldest_call; c != NULL; c = c->newer) {
        if (c->call_id == m->id) {
            finish_call(f, c, m->status, m->cmd, m->cmd_len);
            return;
        }
    }
}

/* Leader side: answers at once. */
static void serve_call(forwarder *f, uint64_t from, const struct fwd_msg *m)
{
    uint8_t *reply = NULL;
    size_t reply_len = 0;
    int rv = f->cfg.serve_call != NULL
                 ? f->cfg.serve_call(f->cfg.serve_arg, m->kind, m->cmd, m->cmd_len, &reply,
                                     &reply_len)
                 : LSKV_EINVAL;
    if (rv != 0)
        reply_len = 0;
    uint8_t *out = malloc(HEADER_BYTES + 4 + reply_len);
    if (out != NULL) {
        out[0] = FWD_CALL_REPLY;
        put_u64be(out + 1, m->id);
        put_u32be(out + HEADER_BYTES, (uint32_t)rv);
        if (reply_len > 0)
            memcpy(out + HEADER_BYTES + 4, reply, reply_len);
        f->cfg.send(f->cfg.send_arg, from, out, HEADER_BYTES + 4 + reply_len);
        free(out);
    }
    free(reply);
}

/* ---- follower: read indexes ---------------------------------------------- */

static void fire_readers(struct reader *r, int status)
{
    while (r != NULL) {
        struct reader *next = r->next;
        consensus_done_cb cb = r->cb;
        void *arg = r->arg;
        free(r);
        cb(arg, status, NULL);
        r = next;
    }
}

/* Sends a read-index request for readers (the round in flight from now).
 * Errors: LSKV_ENOMEM, LSKV_ENOTLEADER (the link refused it). */
static int send_round(forwarder *f, uint64_t leader, struct reader *readers)
{
    struct read_round *rr = calloc(1, sizeof *rr);
    if (rr == NULL)
        return LSKV_ENOMEM;
    rr->read_id = ++f->last_read_id;
    rr->deadline = uv_now(f->loop) + f->cfg.timeout_ms;
    rr->readers = readers;
    if (send_small(f, leader, FWD_READ_INDEX, rr->read_id, 0, 0) != 0) {
        free(rr);
        return LSKV_ENOTLEADER;
    }
    f->asked = rr;
    start_ticking(f);
    return 0;
}

int forwarder_read(forwarder *f, uint64_t leader, consensus_done_cb cb, void *arg)
{
    if (f->closed)
        return LSKV_ESHUTDOWN;
    if (leader == 0 || leader == f->cfg.member_id)
        return LSKV_ENOTLEADER;
    struct reader *r = malloc(sizeof *r);
    if (r == NULL)
        return LSKV_ENOMEM;
    r->cb = cb;
    r->arg = arg;
    if (f->asked != NULL) { /* share the next round, never the one in flight */
        r->next = f->next_readers;
        f->next_readers = r;
        f->next_leader = leader;
        return 0;
    }
    r->next = NULL;
    int rv = send_round(f, leader, r);
    if (rv != 0)
        free(r);
    return rv;
}

/* The round in flight is over: the next one (if callers wait) goes out. */
static void ask_next(forwarder *f)
{
    f->asked = NULL;
    if (f->next_readers != NULL && !f->closed) {
        struct reader *r = f->next_readers;
        f->next_readers = NULL;
        int rv = send_round(f, f->next_leader, r);
        if (rv != 0)
            fire_readers(r, rv);
    }
}

static void on_read_reply(forwarder *f, const struct fwd_msg *m)
{
    struct read_round *rr = f->asked;
    if (rr == NULL || rr->read_id != m->id)
        return; /* late reply of a round that timed out */
    ask_next(f);
    if (m->status != 0) {
        fire_readers(rr->readers, m->status);
        free(rr);
        return;
    }
    rr->index = m->index;
    rr->next = NULL;
    struct read_round **pp = &f->known;
    while (*pp != NULL && (*pp)->index <= rr->index)
        pp = &(*pp)->next;
    rr->next = *pp;
    *pp = rr;
    forwarder_progress(f, f->applied);
}

void forwarder_progress(forwarder *f, uint64_t applied_index)
{
    f->applied = applied_index;
    while (f->known != NULL && f->known->index <= applied_index) {
        struct read_round *rr = f->known;
        f->known = rr->next;
        fire_readers(rr->readers, 0);
        free(rr);
    }
}

/* ---- timeouts ---------------------------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
    forwarder *f = t->data;
    uint64_t now = uv_now(f->loop);
    while (f->oldest != NULL && f->oldest->deadline <= now)
        finish_proposal(f, f->oldest, LSKV_ETIMEOUT, NULL);
    for (struct fwd_proposal *p = f->oldest, *next; p != NULL; p = next) {
        next = p->newer; /* try_send may take p off the list */
        if (!p->sent)
            try_send(f, p);
    }
    if (f->asked != NULL && f->asked->deadline <= now) {
        struct read_round *rr = f->asked;
        ask_next(f);
        fire_readers(rr->readers, LSKV_ETIMEOUT);
        free(rr);
    }
    /* A known index the local apply does not reach in time: the member
     * lags (or is cut off from the leader's commits). */
    while (f->known != NULL && f->known->deadline <= now) {
        struct read_round *rr = f->known;
        f->known = rr->next;
        fire_readers(rr->readers, LSKV_ETIMEOUT);
        free(rr);
    }
    while (f->oldest_call != NULL && f->oldest_call->deadline <= now)
        finish_call(f, f->oldest_call, LSKV_ETIMEOUT, NULL, 0);
    if (f->oldest == NULL && f->asked == NULL && f->known == NULL && f->oldest_call == NULL)
        uv_timer_stop(t);
}

/* ---- leader: serving forwarded requests --------------------------------- */

static void served_proposal(void *arg, int status, void *result)
{
    struct serve *s = arg;
    forwarder *f = s->f;
    if (result != NULL) /* the origin member answers its client from its own apply */
        consensus_free_result(f->cfg.node, result);
    if (status != 0 && !f->closed)
        send_small(f, s->from, FWD_PROPOSE_FAILED, s->id, status, 0);
    free(s);
}

static void served_read(void *arg, int status, void *result)
{
    (void)result;
    struct serve *s = arg;
    forwarder *f = s->f;
    if (!f->closed) {
        struct consensus_status st;
        consensus_get_status(f->cfg.node, &st);
        send_small(f, s->from, FWD_READ_REPLY, s->id, status,
                   status == 0 ? st.applied_index : 0);
    }
    free(s);
}

void forwarder_receive(forwarder *f, uint64_t from, const uint8_t *msg, size_t len)
{
    struct fwd_msg m;
    if (f->closed || from == 0 || fwd_parse(msg, len, &m) != 0)
        return;
    switch (m.type) {
    case FWD_PROPOSE:
    case FWD_READ_INDEX: {
        struct serve *s = malloc(sizeof *s);
        if (s == NULL) {
            send_small(f, from, m.type == FWD_PROPOSE ? FWD_PROPOSE_FAILED : FWD_READ_REPLY, m.id,
                       LSKV_ENOMEM, 0);
            return;
        }
        *s = (struct serve){.f = f, .from = from, .id = m.id};
        int rv = m.type == FWD_PROPOSE
                     ? consensus_propose(f->cfg.node, 0, m.cmd, m.cmd_len, served_proposal, s)
                     : consensus_barrier_local(f->cfg.node, served_read, s);
        if (rv != 0) {
            free(s);
            /* Not appended: the follower may send it again. */
            send_small(f, from, m.type == FWD_PROPOSE ? FWD_PROPOSE_REFUSED : FWD_READ_REPLY,
                       m.id, rv, 0);
        }
        return;
    }
    case FWD_PROPOSE_REFUSED:
        for (struct fwd_proposal *p = *bucket_of(f, m.id); p != NULL; p = p->chain) {
            if (p->request_id != m.id)
                continue;
            if (m.status == LSKV_ENOTLEADER) /* a new leader not ready yet, or none */
                p->sent = false;
            else
                finish_proposal(f, p, m.status, NULL);
            return;
        }
        return;
    case FWD_PROPOSE_FAILED:
        for (struct fwd_proposal *p = *bucket_of(f, m.id); p != NULL; p = p->chain) {
            if (p->request_id == m.id) {
                finish_proposal(f, p, m.status, NULL);
                return;
            }
        }
        return;
    case FWD_READ_REPLY:
        on_read_reply(f, &m);
        return;
    case FWD_CALL:
        serve_call(f, from, &m);
        return;
    case FWD_CALL_REPLY:
        on_call_reply(f, &m);
        return;
    }
}

/* ---- life cycle ---------------------------------------------------------- */

int forwarder_new(uv_loop_t *loop, const struct forwarder_config *cfg, forwarder **out)
{
    forwarder *f = calloc(1, sizeof *f);
    if (f == NULL)
        return LSKV_ENOMEM;
    f->cfg = *cfg;
    f->loop = loop;
    uv_timer_init(loop, &f->timer);
    f->timer.data = f;
    uv_unref((uv_handle_t *)&f->timer);
    *out = f;
    return 0;
}

static void timer_closed(uv_handle_t *h)
{
    free(h->data);
}

void forwarder_close(forwarder *f, int status)
{
    if (f->closed)
        return;
    f->closed = true;
    while (f->oldest != NULL)
        finish_proposal(f, f->oldest, status, NULL);
    if (f->asked != NULL) {
        fire_readers(f->asked->readers, status);
        free(f->asked);
        f->asked = NULL;
    }
    fire_readers(f->next_readers, status);
    f->next_readers = NULL;
    while (f->oldest_call != NULL)
        finish_call(f, f->oldest_call, status, NULL, 0);
    while (f->known != NULL) {
        struct read_round *rr = f->known;
        f->known = rr->next;
        fire_readers(rr->readers, status);
        free(rr);
    }
    uv_close((uv_handle_t *)&f->timer, timer_closed);
}

/* Round-trip times to the other members: see peer_rtt.h. */
#include "net/peer_rtt.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

struct timed {
    peer_rtt *r;
    uint64_t id;
    char *address;
    peer_link *link;       /* NULL: not connected */
    uint64_t sent_ns;      /* uv_hrtime of the request in flight; 0: none */
    bool observed;         /* at least one answer */
    struct metrics_histogram hist;
};

struct peer_rtt {
    uv_loop_t *loop;
    peer_net *net;
    struct timed *peers[PEER_RTT_MAX_PEERS];
    size_t n;
    uv_timer_t tick;
    int open; /* links not yet closed, + the timer */
    bool closing;
    peer_rtt_reply_fn on_reply;
    void *reply_arg;
};

static void maybe_free(peer_rtt *r)
{
    if (!r->closing || r->open > 0)
        return;
    free(r);
}

/* An entry nobody lists and no link holds. */
static void timed_free(struct timed *t)
{
    free(t->address);
    free(t);
}

static void on_answer(void *arg, peer_link *l, const uint8_t *msg, size_t len)
{
    struct timed *t = arg;
    struct probe_reply reply;
    if (t->link != l || t->sent_ns == 0 || probe_reply_decode(msg, len, &reply) != 0)
        return;
    metrics_histogram_observe(&t->hist, (double)(uv_hrtime() - t->sent_ns) / 1e9);
    t->sent_ns = 0;
    t->observed = true;
    if (t->r->on_reply != NULL)
        t->r->on_reply(t->r->reply_arg, t->id, &reply);
}

static void on_closed(void *arg, peer_link *l, int status)
{
    (void)status;
    struct timed *t = arg;
    peer_rtt *r = t->r;
    if (t->link == l) {
        t->link = NULL;
        t->sent_ns = 0;
    }
    /* Dropped by peer_rtt_set_peers or peer_rtt_close: its link held it. */
    bool listed = false;
    for (size_t i = 0; i < r->n; i++)
        listed |= r->peers[i] == t;
    if (!listed)
        timed_free(t);
    r->open--;
    maybe_free(r);
}

static void ping(struct timed *t)
{
    static const struct peer_link_callbacks cbs = {
        .on_message = on_answer,
        .on_close = on_closed,
    };
    peer_rtt *r = t->r;
    if (t->sent_ns != 0 && t->link != NULL) {
        peer_link_close(t->link); /* no answer within the interval: again */
        return;
    }
    if (t->link == NULL) {
        if (peer_link_connect(r->net, t->address, PEER_PROBE, &cbs, t, &t->link) != 0)
            return;
        r->open++;
    }
    uint8_t req[PROBE_REQUEST_BYTES];
    probe_request_encode(req);
    /* Queued until the handshake is done: the first sample of a new link
     * includes it, as etcd's first probe includes its connection. */
    if (peer_link_send(t->link, req, sizeof req) == 0)
        t->sent_ns = uv_hrtime();
}

static void on_tick(uv_timer_t *h)
{
    peer_rtt *r = h->data;
    for (size_t i = 0; i < r->n; i++)
        ping(r->peers[i]);
}

int peer_rtt_new(uv_loop_t *loop, peer_net *net, peer_rtt **out)
{
    peer_rtt *r = calloc(1, sizeof *r);
    if (r == NULL)
        return LSKV_ENOMEM;
    r->loop = loop;
    r->net = net;
    uv_timer_init(loop, &r->tick);
    r->tick.data = r;
    r->open = 1;
    uv_timer_start(&r->tick, on_tick, PEER_RTT_INTERVAL_MS, PEER_RTT_INTERVAL_MS);
    *out = r;
    return 0;
}

void peer_rtt_set_reply_cb(peer_rtt *r, peer_rtt_reply_fn fn, void *arg)
{
    r->on_reply = fn;
    r->reply_arg = arg;
}

/* Drops t: closes its link (on_closed frees it then) or frees it now. */
static void drop(struct timed *t)
{
    if (t->link != NULL)
        peer_link_close(t->link);
    else
        timed_free(t);
}

int peer_rtt_set_peers(peer_rtt *r, const struct peer_rtt_peer *peers, size_t n)
{
    if (n > PEER_RTT_MAX_PEERS)
        n = PEER_RTT_MAX_PEERS;
    struct timed *next[PEER_RTT_MAX_PEERS] = {0};
    bool kept[PEER_RTT_MAX_PEERS] = {false}, made[PEER_RTT_MAX_PEERS] = {false};
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < r->n && next[i] == NULL; j++)
            if (!kept[j] && r->peers[j]->id == peers[i].id &&
                strcmp(r->peers[j]->address, peers[i].address) == 0) {
                next[i] = r->peers[j];
                kept[j] = true;
            }
        if (next[i] != NULL)
            continue;
        struct timed *t = calloc(1, sizeof *t);
        if (t == NULL || (t->address = strdup(peers[i].address)) == NULL) {
            free(t);
            for (size_t k = 0; k < i; k++)
                if (made[k])
                    timed_free(next[k]);
            return LSKV_ENOMEM;
        }
        t->r = r;
        t->id = peers[i].id;
        metrics_histogram_init(&t->hist, 0.0001, 2, 16); /* etcd's buckets */
        next[i] = t;
        made[i] = true;
    }
    size_t old_n = r->n;
    struct timed *old[PEER_RTT_MAX_PEERS];
    memcpy(old, r->peers, old_n * sizeof *old);
    memcpy(r->peers, next, n * sizeof *next);
    r->n = n;
    for (size_t j = 0; j < old_n; j++)
        if (!kept[j])
            drop(old[j]);
    return 0;
}

const struct metrics_histogram *peer_rtt_series(void *arg, size_t i, char *value, size_t size)
{
    peer_rtt *r = arg;
    size_t seen = 0;
    for (size_t k = 0; k < r->n; k++) {
        if (!r->peers[k]->observed)
            continue;
        if (seen++ == i) {
            snprintf(value, size, "%" PRIx64, r->peers[k]->id);
            return &r->peers[k]->hist;
        }
    }
    return NULL;
}

static void tick_closed(uv_handle_t *h)
{
    peer_rtt *r = h->data;
    r->open--;
    maybe_free(r);
}

void peer_rtt_close(peer_rtt *r)
{
    if (r == NULL || r->closing)
        return;
    r->closing = true;
    size_t n = r->n;
    struct timed *all[PEER_RTT_MAX_PEERS];
    memcpy(all, r->peers, n * sizeof *all);
    r->n = 0;
    for (size_t i = 0; i < n; i++)
        drop(all[i]);
    uv_close((uv_handle_t *)&r->tick, tick_closed);
}

/* The catch-up driver (catchup_driver.h). */
#include <inttypes.h>
#include <stdlib.h>

#include "api/catchup_driver.h"
#include "common/err.h"
#include "common/log.h"
#include "statemachine/catchup.h"

#define MODULE "catchup"
#define TICK_MS 100
#define RETRY_MS 500
#define PROGRESS_MS 2000

struct catchup_driver {
    uv_timer_t timer;
    consensus_node *node;
    struct fsm *f;
    catchup *c;               /* while a restore is held */
    void (*fatal_cb)(void *arg, int code, const char *errmsg);
    void *fatal_arg;
    bool in_flight;           /* a call to the leader has not answered */
    bool stopped;
    bool timer_closed;
    bool handing_over;        /* a leadership transfer is in flight */
    uint64_t others[CATCHUP_DRIVER_MAX_MEMBERS]; /* who may take over leading */
    size_t n_others;
    size_t next_other;
    uint64_t retry_at;        /* loop time before which nothing is asked */
    uint64_t logged_at;
};

static void maybe_free(struct catchup_driver *d)
{
    if (d->stopped && d->timer_closed && !d->in_flight) {
        catchup_free(d->c);
        free(d);
    }
}

static void fail(struct catchup_driver *d, int code, const char *errmsg)
{
    d->stopped = true;
    uv_timer_stop(&d->timer);
    d->fatal_cb(d->fatal_arg, code, errmsg);
}

static void log_progress(struct catchup_driver *d, bool force)
{
    uint64_t now = uv_now(d->timer.loop);
    if (!force && now - d->logged_at < PROGRESS_MS)
        return;
    d->logged_at = now;
    struct catchup_stats st;
    catchup_progress(d->c, &st);
    LOG_INFO(MODULE, "catching up: ledger entries %" PRIu64 " copied, %" PRIu64 " to go; "
             "records %" PRIu64 " fetched, %" PRIu64 " to go", st.ledger_copied,
             st.ledger_missing, st.records_fetched, st.records_missing);
}

static void step(struct catchup_driver *d);

static void answered(void *arg, int status, const uint8_t *reply, size_t len)
{
    struct catchup_driver *d = arg;
    d->in_flight = false;
    if (d->stopped) {
        maybe_free(d);
        return;
    }
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    int rv = status == 0 ? catchup_take(d->c, reply, len, errmsg) : status;
    if (rv == LSKV_ECORRUPT || rv == LSKV_EFORMAT) {
        fail(d, rv, errmsg);
        return;
    }
    if (rv != 0) {
        if (status != 0 || rv != LSKV_ENOTREADY || errmsg[0] != '\0')
            LOG_INFO(MODULE, "catch-up: asking again shortly (%s%s%s)", lskv_strerror(rv),
                     errmsg[0] ? ": " : "", errmsg);
        d->retry_at = uv_now(d->timer.loop) + RETRY_MS;
        return;
    }
    log_progress(d, false);
    step(d);
}

static void handed_over(void *arg, int status, void *result)
{
    (void)status;
    (void)result;
    struct catchup_driver *d = arg;
    d->handing_over = false;
}

/* A held leader cannot ask anyone: it lets another member lead. */
static void hand_over(struct catchup_driver *d)
{
    if (d->handing_over || d->n_others == 0)
        return;
    uint64_t to = d->others[d->next_other++ % d->n_others];
    if (consensus_transfer(d->node, to, handed_over, d) == 0) {
        d->handing_over = true;
        LOG_INFO(MODULE, "catch-up: this member leads but holds a snapshot back; moving "
                 "leadership to %016" PRIx64, to);
    }
}

static void step(struct catchup_driver *d)
{
    if (d->stopped || d->in_flight || !consensus_restore_held(d->node))
        return;
    bool first = d->c == NULL;
    if (first && catchup_new(d->f, &d->c) != 0)
        return; /* tried again next tick */
    uint8_t kind = 0, *req = NULL;
    size_t len = 0;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    int rv = catchup_next(d->c, &kind, &req, &len, errmsg);
    if (rv == 1) {
        log_progress(d, true);
        LOG_INFO(MODULE, "caught up: the held snapshot is restored");
        catchup_free(d->c);
        d->c = NULL;
        consensus_restore_done(d->node);
        return;
    }
    if (first && rv == 0)
        log_progress(d, true);
    if (rv != 0) {
        if (rv == LSKV_ENOMEM) {
            d->retry_at = uv_now(d->timer.loop) + RETRY_MS;
            return;
        }
        fail(d, rv, errmsg);
        return;
    }
    rv = consensus_call_leader(d->node, kind, req, len, answered, d);
    free(req);
    if (rv == 0) {
        d->in_flight = true;
        return;
    }
    struct consensus_status st;
    consensus_get_status(d->node, &st);
    if (st.is_leader)
        hand_over(d);
    d->retry_at = uv_now(d->timer.loop) + RETRY_MS;
}

static void tick(uv_timer_t *t)
{
    struct catchup_driver *d = t->data;
    if (!consensus_restore_held(d->node) && d->c != NULL) {
        catchup_free(d->c);
        d->c = NULL;
    }
    if (uv_now(t->loop) >= d->retry_at)
        step(d);
}

int catchup_driver_start(uv_loop_t *loop, consensus_node *node, struct fsm *f,
                         const uint64_t *members, size_t n_members,
                         void (*fatal_cb)(void *arg, int code, const char *errmsg),
                         void *fatal_arg, struct catchup_driver **out)
{
    struct catchup_driver *d = calloc(1, sizeof *d);
    if (d == NULL)
        return LSKV_ENOMEM;
    for (size_t i = 0; i < n_members && d->n_others < CATCHUP_DRIVER_MAX_MEMBERS; i++)
        if (members[i] != f->member_id)
            d->others[d->n_others++] = members[i];
    d->node = node;
    d->f = f;
    d->fatal_cb = fatal_cb;
    d->fatal_arg = fatal_arg;
    int rv = uv_timer_init(loop, &d->timer);
    if (rv != 0) {
        free(d);
        return rv;
    }
    d->timer.data = d;
    if ((rv = uv_timer_start(&d->timer, tick, 0, TICK_MS)) != 0) {
        d->stopped = true;
        uv_close((uv_handle_t *)&d->timer, NULL); /* freed below once closed */
        return rv;
    }
    *out = d;
    return 0;
}

static void timer_closed(uv_handle_t *h)
{
    struct catchup_driver *d = h->data;
    d->timer_closed = true;
    maybe_free(d);
}

void catchup_driver_stop(struct catchup_driver *d)
{
    if (d == NULL)
        return;
    d->stopped = true;
    uv_close((uv_handle_t *)&d->timer, timer_closed);
}

bool catchup_driver_owns(uint8_t kind)
{
    return kind == CATCHUP_CALL_LEDGER || kind == CATCHUP_CALL_RECORDS;
}

int catchup_driver_serve(void *arg, uint8_t kind, const uint8_t *req, size_t len,
                         uint8_t **reply, size_t *reply_len)
{
    return catchup_serve(arg, kind, req, len, reply, reply_len);
}

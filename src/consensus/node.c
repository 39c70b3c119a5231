/* The consensus node: libraft 0.15 + raft_uv glue.
 *
 * NOTES ON THE DESIGN
 *
 * Terms. A "proposal" is one consensus_propose call (one raft_apply request);
 * a "round" is one raft_barrier shared by many consensus_barrier callers.
 *
 * Invariants.
 * (1) Every COMMAND entry this node writes is an entry.h sealed entry; the
 *     wrapper FSM opens it before the state machine sees it, so raft log
 *     segments and snapshot files only ever hold ciphertext.
 * (2) The index of the command being applied is raft->last_applied + 1.
 *     libraft 0.15 applies entries strictly in order (replicationApply loops
 *     index = last_applied + 1 .. commit_index and sets last_applied = index
 *     after each one, barriers and configuration entries included), and
 *     snapshot restore sets last_applied to the snapshot's index (at start,
 *     last_applied = 1 when there is no snapshot: entry 1 is the bootstrap
 *     configuration). tests/unit/test_consensus.c checks the derived indexes
 *     across snapshots and restarts.
 * (3) node->head..tail lists the proposals raft holds, in increasing index
 *     order (raft_apply gives each the next log index). When the wrapper
 *     applies index i and the head's index is i, raft will hand the result to
 *     that proposal's callback; otherwise nobody here waits for it and the
 *     wrapper frees it with fsm->free_result.
 * (4) Exactly-once: a proposal leaves its list, or is orphaned (cb = NULL),
 *     right before its callback runs; a barrier waiter is freed right before.
 *     consensus_close answers every caller with LSKV_ESHUTDOWN at once and
 *     leaves the orphaned requests to raft, whose later answers (0.15 answers
 *     every outstanding request with RAFT_LEADERSHIPLOST in raft_close) only
 *     release memory; release_all sweeps what is left once raft has closed.
 * (5) Fatal divergence is sticky: once an entry fails to open or the state
 *     machine fails to apply it, every later apply fails the same way (raft
 *     0.15 retries the same index on each commit), nothing more is applied,
 *     proposals and barriers fail with LSKV_EIO, and fatal_cb tells the daemon
 *     once, from a zero timer so it never runs inside raft's apply loop.
 * (7) Place binding (entry.h): every command entry carries its raft index,
 *     term and the chain value of the command entry before it. wrap_apply
 *     checks (entry_misplaced) index == last_applied + 1, chain == the chain
 *     after the last applied command (node->applied) and a term that does
 *     not go back, before it authenticates; a sealed snapshot carries
 *     the index, term and chain it covers, checked against what libraft
 *     loaded it as (check_restored) before the next entry is applied and
 *     before consensus_open returns. Any mismatch is a fatal divergence.
 * (8) Proposals chain from propose_chain, valid in chain_term only. It is
 *     taken from node->applied when no entry beyond last_applied can be a
 *     command: everything in the log applied, or a barrier of this term
 *     applied before this leader proposed anything (later entries are its
 *     own barriers). Until then proposals answer LSKV_ENOTLEADER.
 * (9) A stalled apply is not a divergence: once consensus_open has returned,
 *     wrap_apply asks fsm.can_apply first and, on no, returns before it
 *     changes anything (no place advanced, nothing opened); libraft keeps
 *     last_applied and retries the same index on its next apply loop, which
 *     maybe_resume starts with a barrier of its own once can_apply says yes
 *     (asked from the prepare handle, each loop turn while stalled).
 * (6) Durability: the leader counts its own vote for an entry only when its
 *     own raft_uv append completes, and raft_uv completes an append only
 *     after the write is durable (O_DIRECT + RWF_DSYNC/O_DSYNC writes to the
 *     open segment, or fdatasync where direct I/O is unavailable). So on a
 *     single node commit => on disk, and an acknowledged entry survives
 *     kill -9 (test consensus.kill9_keeps_acknowledged).
 * (10) No caller's callback runs inside raft's own failure callbacks. libraft
 *     0.15 fails a leader's requests (RAFT_LEADERSHIPLOST) from inside its
 *     conversion to follower, while raft_state still says leader and the
 *     leader state is half torn down: a raft_apply or raft_barrier from
 *     there (a caller retrying, or the next barrier round) crashed in
 *     libraft (fault rounds, tests/e2e/test_cluster_faults.py). So apply_cb
 *     and barrier_cb queue failures on node->deferred, and prepare_cb
 *     answers them on the next loop turn, when raft is a follower; a failed
 *     round fails the callers waiting for the next one too.
 * (11) A follower never fails an apply. libraft 0.15 turns a follower whose
 *     apply fails inside a heartbeat's commit (replicationAppend, no
 *     entries) into RAFT_UNAVAILABLE for good. So where a leader stalls
 *     (invariant 9), a follower opens the entry, advances the place and
 *     keeps the command on node->waiting_head; prepare_cb applies the queue
 *     in order once the fsm can (restore done, room on disk). While it is
 *     not empty every later command joins it, no snapshot is taken and no
 *     reader is let through (raft's last_applied is ahead of the state);
 *     beyond max_inflight_bytes of it the member stops (fatal). A leader
 *     with a queue stalls until it is empty.
 * (9) Proposals on the list are bounded by count (max_inflight, etcd's 5000)
 *     and by sealed bytes (max_inflight_bytes): beyond either,
 *     consensus_propose answers LSKV_ETOOMANYREQUESTS at once, so a flood of
 *     writes costs refusals, not memory (issue 8 point 6). A lone proposal
 *     passes the bytes bound whatever its size.
 */
#include "consensus/node.h"

#include <errno.h>
#include <inttypes.h>
#include <raft.h>
#include <raft/uv.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/err.h"
#include "common/log.h"
#include "consensus/entry.h"
#include "consensus/forward.h"
#include "consensus/reconfig.h"
#include "consensus/raftdir.h"
#include "crypto/keyring.h"

#define MODULE "raft"
#define DEFAULT_SNAPSHOT_THRESHOLD 100000 /* etcd's --snapshot-count */
#define DEFAULT_SNAPSHOT_TRAILING 1000
#define SEGMENT_BYTES (64u << 20)
#define DEFAULT_MAX_INFLIGHT_BYTES (256u << 20)

struct proposal {
    struct raft_apply req; /* req.data = this; req.index set by raft_apply */
    consensus_node *node;
    size_t bytes;          /* sealed length, counted in node->inflight_bytes */
    consensus_done_cb cb;
    void *arg;
    struct proposal *prev, *next;
};

struct waiter {
    consensus_done_cb cb;
    void *arg;
    int status; /* node->deferred only: what cb gets */
    struct waiter *next;
};

struct waiter_list {
    struct waiter *head;
    struct waiter **tail;
};

struct round {
    struct raft_barrier req; /* req.data = this */
    consensus_node *node;
    uint64_t term;           /* term it was appended in */
    struct waiter_list waiters;
};

struct consensus_node {
    uv_loop_t *loop;
    struct raft raft;
    struct raft_io io;
    struct raft_uv_transport tcp;        /* used when the config gives no transport */
    struct raft_uv_transport *transport; /* &tcp or the config's */
    forwarder *fwd;                      /* writes and reads of a follower */
    struct raft_fsm raft_fsm;
    struct consensus_fsm fsm;
    keyring *keys; /* entry and snapshot keys by epoch = raft index / epoch size */
    uint64_t member_id;
    uint64_t cluster_id; /* authenticated in every entry */
    char dir[4096];      /* for messages */

    /* Invariants (7) and (8). */
    struct entry_place applied;               /* after the last applied command */
    uint8_t propose_chain[ENTRY_CHAIN_BYTES]; /* after the last proposed command */
    uint64_t chain_term;                      /* term propose_chain is valid in; 0: none */
    bool restored;                            /* snapshot restored, not yet checked */
    uint64_t restored_index, restored_term;

    struct proposal *head, *tail; /* invariant (3) */
    /* Proposals on the list and their sealed bytes, bounded by max_inflight
     * and max_inflight_bytes (etcd: ErrTooManyRequests when apply lags
     * commit by 5000): a flood of writes is refused, not queued in memory. */
    uint64_t inflight, inflight_bytes;
    uint64_t max_inflight, max_inflight_bytes;
    uint64_t proposals_failed; /* consensus_status */
    /* raft_uv's append, wrapped to time it (append_observer). */
    int (*uv_append_fn)(struct raft_io *io, struct raft_io_append *req,
                        const struct raft_entry entries[], unsigned n, raft_io_append_cb cb);
    void (*append_observer)(void *arg, uint64_t nsec);
    void *append_observer_arg;
    struct round *round;          /* barrier in flight, or NULL */
    /* Failures raft reported while it was leaving the leader state
     * (invariant 10), answered from the prepare handle. */
    struct waiter_list deferred;
    /* consensus_transfer: raft holds transfer_req until transfer_cb. */
    struct raft_transfer transfer_req;
    bool transferring;
    uint64_t transfer_target;
    consensus_done_cb transfer_cb; /* NULL once answered */
    void *transfer_arg;
    struct waiter_list next;      /* callers waiting for the round after it */

    uint8_t *scratch; /* opened commands, wiped after each apply */
    size_t scratch_cap;

    int fatal; /* invariant (5) */
    char fatal_msg[LSKV_ERRMSG_SIZE];
    void (*fatal_cb)(void *arg, int code, const char *errmsg);
    void *fatal_arg;
    uv_timer_t timer; /* defers fatal_cb; the last handle closed */
    uv_prepare_t prepare; /* calls fsm.flush after a loop turn that applied */
    bool unflushed;       /* entries applied since the last fsm.flush */
    bool opened;          /* consensus_open returned: fsm.can_apply is asked */
    bool stalled;         /* fsm.can_apply said no for an entry of stalled_len */
    /* fsm.restore held the last snapshot (LSKV_ENOTREADY) until
     * consensus_restore_done: raft's last_applied is ahead of the state, so
     * nothing is applied, no snapshot taken and no reader let through. */
    bool held;
    /* Invariant (11): committed commands a follower could not apply yet
     * (held restore, or can_apply said no), oldest first, opened. */
    struct waiting_apply *waiting_head, *waiting_tail;
    uint64_t waiting_bytes;
    size_t stalled_len;
    bool resuming;        /* resume_req, the barrier that restarts applying, is in flight */
    struct raft_barrier resume_req;
    uint64_t snapshot_bytes;  /* node.h; 0: snapshots by entry count only */
    uint64_t applied_bytes;   /* command bytes applied since the last snapshot */
    unsigned snapshot_threshold; /* the configured entry count */

    int fsm_err; /* detail of the last wrapper failure, for errmsg */
    char fsm_msg[LSKV_ERRMSG_SIZE];

    bool closing;
    bool raft_closed; /* raft's close callback ran */
    /* raft_uv's close, wrapped so that raft's callback runs once (see
     * io_close_once). */
    void (*uv_close_fn)(struct raft_io *io, raft_io_close_cb cb);
    raft_io_close_cb raft_close_cb;
    bool io_closed;
    bool open_failed;
    uint64_t drain_deadline; /* loop time (ms) after which close stops waiting */
    void (*close_cb)(void *arg);
    void *close_arg;
};

static void waiter_list_init(struct waiter_list *l)
{
    l->head = NULL;
    l->tail = &l->head;
}

static void waiter_list_push(struct waiter_list *l, struct waiter *w)
{
    w->next = NULL;
    *l->tail = w;
    l->tail = &w->next;
}

/* Fires and frees every waiter of l (detached first: callbacks may add new
 * waiters to node->next). */
static void waiter_list_fire(struct waiter_list *l, int status)
{
    struct waiter *w = l->head;
    waiter_list_init(l);
    while (w != NULL) {
        struct waiter *next = w->next;
        consensus_done_cb cb = w->cb;
        void *arg = w->arg;
        free(w);
        cb(arg, status, NULL);
        w = next;
    }
}

/* Invariant (10): cb gets status on the next loop turn. Returns 0, or
 * LSKV_ENOMEM (then the caller answers at once: rare, and better than never). */
static int defer_answer(consensus_node *node, consensus_done_cb cb, void *arg, int status)
{
    struct waiter *w = malloc(sizeof *w);
    if (w == NULL)
        return LSKV_ENOMEM;
    w->cb = cb;
    w->arg = arg;
    w->status = status;
    waiter_list_push(&node->deferred, w);
    return 0;
}

/* Moves every waiter of l to the deferred answers, with status. */
static void defer_list(consensus_node *node, struct waiter_list *l, int status)
{
    for (struct waiter *w = l->head; w != NULL; w = w->next)
        w->status = status;
    if (l->head != NULL) {
        *node->deferred.tail = l->head;
        node->deferred.tail = l->tail;
    }
    waiter_list_init(l);
}

static void fire_deferred(consensus_node *node)
{
    struct waiter *w = node->deferred.head;
    waiter_list_init(&node->deferred);
    while (w != NULL) {
        struct waiter *next = w->next;
        consensus_done_cb cb = w->cb;
        void *arg = w->arg;
        int status = w->status;
        free(w);
        cb(arg, status, NULL);
        w = next;
    }
}

static uint64_t wall_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Maps a libraft code from a request callback or a request call. */
static int map_raft_err(const consensus_node *node, int rv)
{
    if (node->closing)
        return LSKV_ESHUTDOWN;
    switch (rv) {
    case 0:
        return 0;
    case RAFT_NOTLEADER:
    case RAFT_LEADERSHIPLOST:
        return LSKV_ENOTLEADER;
    case RAFT_SHUTDOWN:
        return LSKV_ESHUTDOWN;
    case RAFT_NOMEM:
        return LSKV_ENOMEM;
    case RAFT_NOSPACE: /* a segment could not be preallocated */
        return LSKV_ENOSPACE;
    default:
        return LSKV_EIO;
    }
}

static void proposal_unlink(consensus_node *node, struct proposal *p)
{
    node->inflight--;
    node->inflight_bytes -= p->bytes;
    if (p->prev != NULL)
        p->prev->next = p->next;
    else
        node->head = p->next;
    if (p->next != NULL)
        p->next->prev = p->prev;
    else
        node->tail = p->prev;
    p->prev = p->next = NULL;
}

/* ---- fatal divergence (invariant 5) ------------------------------------- */

static void fatal_timer_cb(uv_timer_t *timer)
{
    consensus_node *node = timer->data;
    if (node->fatal_cb != NULL && !node->closing)
        node->fatal_cb(node->fatal_arg, node->fatal, node->fatal_msg);
}

static void set_fatal(consensus_node *node, int code, const char *msg)
{
    if (node->fatal != 0)
        return;
    /* raft_start replays the log: an entry failing there fails the open. */
    node->fsm_err = code;
    snprintf(node->fsm_msg, sizeof node->fsm_msg, "%s", msg);
    node->fatal = code;
    snprintf(node->fatal_msg, sizeof node->fatal_msg, "%s", msg);
    uv_timer_start(&node->timer, fatal_timer_cb, 0, 0);
}

/* fsm.flush after applies (node.h); a failure is fatal like a failed apply. */
static void flush_fsm(consensus_node *node)
{
    if (!node->unflushed || node->fsm.flush == NULL || node->fatal != 0)
        return;
    node->unflushed = false;
    int rv = node->fsm.flush(node->fsm.data);
    if (rv != 0) {
        char msg[LSKV_ERRMSG_SIZE];
        snprintf(msg, sizeof msg, "state machine flush after index %" PRIu64 ": %s",
                 (uint64_t)node->raft.last_applied, lskv_strerror(rv));
        set_fatal(node, rv, msg);
    }
}

static void resumed_cb(struct raft_barrier *req, int status)
{
    (void)status;
    consensus_node *node = req->data;
    node->resuming = false;
}

/* A stalled apply (fsm.can_apply) resumes once the fsm says yes: libraft
 * retries the entry on its next apply loop, which only an append starts, so
 * a barrier of its own (the callers' round may be committed already,
 * waiting behind the stalled entry). */
static uint64_t leader_of(consensus_node *node);

static void drain_waiting(consensus_node *node);

static void resumed_read_cb(void *arg, int status, void *result)
{
    (void)status;
    (void)result;
    consensus_node *node = arg;
    node->resuming = false;
}

/* A follower's apply loop runs when the leader's commit index grows: a read
 * index makes the leader commit a barrier. */
static void maybe_resume(consensus_node *node)
{
    if (!node->stalled || node->resuming || node->closing || node->fatal != 0 || node->held ||
        !node->fsm.can_apply(node->fsm.data, node->stalled_len))
        return;
    if (raft_state(&node->raft) == RAFT_LEADER) {
        node->stalled = false;
        node->resume_req.data = node;
        if (raft_barrier(&node->raft, &node->resume_req, resumed_cb) == 0)
            node->resuming = true;
        else
            node->stalled = true;
    } else if (raft_state(&node->raft) == RAFT_FOLLOWER && node->fwd != NULL &&
               leader_of(node) != 0) {
        node->stalled = false;
        if (forwarder_read(node->fwd, leader_of(node), resumed_read_cb, node) == 0)
            node->resuming = true;
        else
            node->stalled = true;
    }
}

static void prepare_cb(uv_prepare_t *handle)
{
    consensus_node *node = handle->data;
    fire_deferred(node);
    drain_waiting(node);
    flush_fsm(node);
    maybe_resume(node);
    if (node->fwd != NULL && !node->held && node->waiting_head == NULL)
        forwarder_progress(node->fwd, raft_last_applied(&node->raft));
}

bool consensus_restore_held(const consensus_node *node)
{
    return node->held;
}

void consensus_restore_done(consensus_node *node)
{
    node->held = false;
}

void consensus_free_result(consensus_node *node, void *result)
{
    if (result != NULL && node->fsm.free_result != NULL)
        node->fsm.free_result(node->fsm.data, result);
}

/* ---- the raft FSM wrapper ----------------------------------------------- */

/* The key a seal at raft index uses: the epoch of index (crypto/keyring.h),
 * counted against that key's budget. */
static int seal_key(consensus_node *node, uint64_t index, uint32_t *key_id, aead_key **key)
{
    *key_id = keyring_epoch_of(node->keys, index);
    int rv = keyring_count_seal(node->keys, *key_id);
    return rv != 0 ? rv : keyring_key(node->keys, *key_id, key);
}

/* Term of the entry at index in libraft's in-memory log (struct raft_log is
 * public in 0.15's raft.h), or 0 if the log does not hold it. */
static uint64_t log_term_at(const struct raft *r, raft_index index)
{
    const struct raft_log *l = &r->log;
    if (index == l->snapshot.last_index)
        return l->snapshot.last_term;
    if (index <= l->offset || l->size == 0)
        return 0;
    size_t n = l->back >= l->front ? l->back - l->front : l->size - l->front + l->back;
    size_t i = (size_t)(index - l->offset - 1);
    return i < n ? l->entries[(l->front + i) % l->size].term : 0;
}

/* Invariant (7) for a parsed command entry about to be applied at index. */
static int check_place(consensus_node *node, uint64_t index, const struct entry_header *h,
                       char *msg)
{
    const char *why = entry_misplaced(h, index, &node->applied);
    if (why == NULL)
        return 0;
    char file[4200];
    raftdir_segment_of(node->dir, index, file, sizeof file);
    errmsg_printf(msg, "raft entry %" PRIu64 " (in %s): %s", index, file, why);
    if (h->index != index)
        snprintf(msg + strlen(msg), LSKV_ERRMSG_SIZE - strlen(msg), "; sealed for index %" PRIu64,
                 h->index);
    return LSKV_ECORRUPT;
}

/* Invariant (7) for a restored snapshot: libraft loaded it as the snapshot
 * of log.snapshot (last_index, last_term: set right after the restore, and
 * changed only by the next snapshot, which wrap_snapshot checks first); it
 * must have been sealed as that one. */
static int check_restored(consensus_node *node)
{
    if (!node->restored)
        return 0;
    node->restored = false;
    uint64_t index = node->raft.log.snapshot.last_index;
    uint64_t term = node->raft.log.snapshot.last_term;
    if (node->restored_index == index && node->restored_term == term)
        return 0;
    char msg[LSKV_ERRMSG_SIZE];
    errmsg_printf(msg,
             "raft snapshot %s/snapshot-%" PRIu64 "-%" PRIu64 "-*: sealed as the snapshot at "
             "index %" PRIu64 " term %" PRIu64 " (an older snapshot under a newer name?)",
             node->dir, term, index, node->restored_index, node->restored_term);
    set_fatal(node, LSKV_ECORRUPT, msg);
    return LSKV_ECORRUPT;
}

struct waiting_apply {
    struct waiting_apply *next;
    struct consensus_entry_info info;
    size_t len, entry_len;
    uint8_t plain[]; /* the opened command */
};

/* Applies an opened command; the result goes to the proposer (*result,
 * when raft holds its request) or to a forwarded caller. */
static int apply_opened(consensus_node *node, struct consensus_entry_info *info,
                        const uint8_t *plain, size_t plain_len, size_t entry_len, void **result)
{
    char msg[LSKV_ERRMSG_SIZE];
    void *res = NULL;
    int rv = node->fsm.apply(node->fsm.data, info, plain, plain_len, &res);
    if (rv != 0) {
        errmsg_printf(msg, "raft entry %" PRIu64 ": state machine apply: %s", info->index,
                 lskv_strerror(rv));
        set_fatal(node, rv, msg);
        return RAFT_IOERR;
    }
    node->unflushed = true;
    /* Enough bytes since the last snapshot: libraft takes one after this
     * apply loop (its threshold counts entries), and wrap_snapshot puts the
     * count back. Not inside consensus_open: a start on a full disk must
     * not depend on writing a snapshot. */
    node->applied_bytes += entry_len;
    if (node->opened && node->snapshot_bytes != 0 &&
        node->applied_bytes >= node->snapshot_bytes)
        raft_set_snapshot_threshold(&node->raft, 1);
    /* Invariant (3): raft passes *result to the proposer's callback only if it
     * holds a request for this index. */
    if (result != NULL && node->head != NULL && node->head->req.index == info->index) {
        *result = res;
    } else if (node->fwd == NULL ||
               !forwarder_applied(node->fwd, info->origin_member, info->request_id, res)) {
        consensus_free_result(node, res);
    }
    return 0;
}

static void waiting_free(struct waiting_apply *w)
{
    explicit_bzero(w->plain, w->len);
    free(w);
}

/* Invariant (11): applies what waits, in order, while the fsm can. */
static void drain_waiting(consensus_node *node)
{
    while (node->waiting_head != NULL && !node->held && node->fatal == 0 &&
           (node->fsm.can_apply == NULL ||
            node->fsm.can_apply(node->fsm.data, node->waiting_head->entry_len))) {
        struct waiting_apply *w = node->waiting_head;
        node->waiting_head = w->next;
        if (node->waiting_head == NULL)
            node->waiting_tail = NULL;
        node->waiting_bytes -= w->len;
        (void)apply_opened(node, &w->info, w->plain, w->len, w->entry_len, NULL);
        waiting_free(w);
    }
}

static void waiting_clear(consensus_node *node)
{
    while (node->waiting_head != NULL) {
        struct waiting_apply *w = node->waiting_head;
        node->waiting_head = w->next;
        waiting_free(w);
    }
    node->waiting_tail = NULL;
    node->waiting_bytes = 0;
}

/* Whether applying must wait: held, queued commands first, or no room. */
static bool must_wait(consensus_node *node, size_t len)
{
    return node->held || node->waiting_head != NULL ||
           (node->opened && node->fsm.can_apply != NULL &&
            !node->fsm.can_apply(node->fsm.data, len));
}

static int wrap_apply(struct raft_fsm *rfsm, const struct raft_buffer *buf, void **result)
{
    consensus_node *node = rfsm->data;
    struct entry_header h;
    size_t plain_len;
    int rv;

    *result = NULL;
    if (node->fatal != 0)
        return RAFT_CORRUPT;
    bool wait = must_wait(node, buf->len);
    if (wait && raft_state(&node->raft) == RAFT_LEADER) {
        /* Not a divergence: libraft keeps last_applied and retries. */
        node->stalled = true;
        node->stalled_len = buf->len;
        return RAFT_NOSPACE;
    }

    uint64_t index = (uint64_t)node->raft.last_applied + 1; /* invariant (2) */
    char msg[LSKV_ERRMSG_SIZE] = "";
    if (check_restored(node) != 0)
        return RAFT_CORRUPT;
    rv = entry_parse(buf->base, buf->len, &h, &plain_len);
    if (rv == 0)
        rv = check_place(node, index, &h, msg);
    if (rv != 0) {
        if (rv != LSKV_ECORRUPT || msg[0] == '\0')
            errmsg_printf(msg, "raft entry %" PRIu64 " (in %s/): %s", index, node->dir,
                     lskv_strerror(rv));
        set_fatal(node, rv, msg);
        return RAFT_CORRUPT;
    }
    struct waiting_apply *w = NULL;
    if (wait) { /* invariant (11): opened into its own copy, applied later */
        if (node->waiting_bytes + plain_len > node->max_inflight_bytes) {
            errmsg_printf(msg, "raft entry %" PRIu64 ": %" PRIu64 " bytes of committed commands "
                          "wait to be applied (%s): over the bound of %" PRIu64, index,
                          node->waiting_bytes + plain_len,
                          node->held ? "the held snapshot is still being fetched"
                                     : "the disk has no room",
                          node->max_inflight_bytes);
            set_fatal(node, LSKV_ENOSPACE, msg);
            return RAFT_CORRUPT;
        }
        if ((w = malloc(sizeof *w + (plain_len ? plain_len : 1))) == NULL)
            return RAFT_NOMEM;
    } else if (plain_len > node->scratch_cap || node->scratch == NULL) {
        size_t cap = plain_len < 4096 ? 4096 : plain_len;
        uint8_t *p = malloc(cap);
        if (p == NULL)
            return RAFT_NOMEM; /* transient: raft retries this index later */
        if (node->scratch != NULL) {
            explicit_bzero(node->scratch, node->scratch_cap);
            free(node->scratch);
        }
        node->scratch = p;
        node->scratch_cap = cap;
    }
    aead_key *key = NULL;
    rv = keyring_key(node->keys, h.key_id, &key);
    if (rv == 0)
        rv = entry_open_k(key, node->cluster_id, ENTRY_KIND_COMMAND, buf->base, buf->len, &h,
                          w != NULL ? w->plain : node->scratch);
    if (rv != 0) {
        free(w);
        char file[4200];
        raftdir_segment_of(node->dir, index, file, sizeof file);
        errmsg_printf(msg,
                 "raft entry %" PRIu64 " (in %s): does not authenticate: its bytes were changed, "
                 "or it was sealed under another data key or cluster id (%s)",
                 index, file, lskv_strerror(rv));
        set_fatal(node, rv, msg);
        return RAFT_CORRUPT;
    }
    entry_place_advance(&node->applied, &h, buf->base, buf->len);

    struct consensus_entry_info info = {
        .index = index,
        .term = h.term,
        .proposed_ms = h.stamp,
    };
    if (w != NULL) {
        w->next = NULL;
        w->info = info;
        w->len = plain_len;
        w->entry_len = buf->len;
        if (node->waiting_tail != NULL)
            node->waiting_tail->next = w;
        else
            node->waiting_head = w;
        node->waiting_tail = w;
        node->waiting_bytes += plain_len;
        return 0;
    }
    rv = apply_opened(node, &info, node->scratch, plain_len, buf->len, result);
    explicit_bzero(node->scratch, plain_len);
    return rv;
}

/* Snapshot = one sealed entry of kind SNAPSHOT around the fsm's buffer. With
 * raft_fsm version 1 libraft takes the bufs array and each base (raft_free). */
static int wrap_snapshot(struct raft_fsm *rfsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    consensus_node *node = rfsm->data;
    uint8_t *plain = NULL;
    size_t plain_len = 0;
    int rv;

    if (node->fatal != 0 || check_restored(node) != 0)
        return RAFT_CORRUPT;
    if (node->held || node->waiting_head != NULL)
        return RAFT_BUSY; /* libraft tries again at a later apply */
    rv = node->fsm.snapshot(node->fsm.data, &plain, &plain_len);
    if (rv == 0 && node->snapshot_bytes != 0) {
        node->applied_bytes = 0;
        raft_set_snapshot_threshold(&node->raft, node->snapshot_threshold);
    }
    if (rv != 0) {
        node->fsm_err = rv;
        snprintf(node->fsm_msg, sizeof node->fsm_msg, "state machine snapshot: %s",
                 lskv_strerror(rv));
        return RAFT_IOERR;
    }
    size_t sealed_len = entry_sealed_len(plain_len);
    struct raft_buffer *b = raft_malloc(sizeof *b);
    uint8_t *sealed = sealed_len ? raft_malloc(sealed_len) : NULL;
    if (b == NULL || sealed == NULL) {
        rv = RAFT_NOMEM;
        goto err;
    }
    struct entry_header h = {
        .kind = ENTRY_KIND_SNAPSHOT,
        .term = log_term_at(&node->raft, node->raft.last_applied),
        .index = node->raft.last_applied,
    };
    memcpy(h.chain, node->applied.chain, ENTRY_CHAIN_BYTES);
    aead_key *key = NULL;
    if (seal_key(node, h.index, &h.key_id, &key) != 0 ||
        entry_seal_k(key, node->cluster_id, &h, plain, plain_len, sealed) != 0) {
        rv = RAFT_IOERR;
        goto err;
    }
    explicit_bzero(plain, plain_len);
    free(plain);
    b->base = sealed;
    b->len = sealed_len;
    *bufs = b;
    *n_bufs = 1;
    return 0;
err:
    explicit_bzero(plain, plain_len);
    free(plain);
    raft_free(b);
    raft_free(sealed);
    return rv;
}

/* On success libraft 0.15 hands buf->base to the FSM (we raft_free it); on
 * failure it frees it itself. */
static int wrap_restore(struct raft_fsm *rfsm, struct raft_buffer *buf)
{
    consensus_node *node = rfsm->data;
    struct entry_header h;
    size_t plain_len;
    int rv;

    rv = entry_parse(buf->base, buf->len, &h, &plain_len);
    if (rv != 0)
        goto err_open;
    uint8_t *plain = malloc(plain_len ? plain_len : 1);
    if (plain == NULL)
        return RAFT_NOMEM;
    aead_key *key = NULL;
    rv = keyring_key(node->keys, h.key_id, &key);
    if (rv == 0)
        rv = entry_open_k(key, node->cluster_id, ENTRY_KIND_SNAPSHOT, buf->base, buf->len, &h,
                          plain);
    if (rv != 0) {
        free(plain);
        goto err_open;
    }
    rv = node->fsm.restore(node->fsm.data, plain, plain_len);
    explicit_bzero(plain, plain_len);
    free(plain);
    node->held = rv == LSKV_ENOTREADY;
    if (node->held) {
        LOG_WARN(MODULE, "raft snapshot at index %" PRIu64 " held until this member has the "
                 "ledger entries and records it covers (catch-up)", h.index);
        rv = 0;
    }
    if (rv != 0) {
        node->fsm_err = rv;
        errmsg_printf(node->fsm_msg,
                 "raft snapshot at index %" PRIu64 " (in %s): state machine restore: %s",
                 h.index, node->dir, lskv_strerror(rv));
        return RAFT_CORRUPT;
    }
    /* Checked against libraft's metadata once libraft has set it. */
    node->restored = true;
    node->restored_index = h.index;
    node->restored_term = h.term;
    memcpy(node->applied.chain, h.chain, ENTRY_CHAIN_BYTES);
    node->applied.term = h.term;
    node->chain_term = 0;
    raft_free(buf->base);
    buf->base = NULL;
    return 0;
err_open:
    node->fsm_err = rv;
    errmsg_printf(node->fsm_msg,
             "raft snapshot (in %s): does not open: its bytes were changed, or it was sealed "
             "under another data key or cluster id (%s)",
             node->dir, lskv_strerror(rv));
    return RAFT_CORRUPT;
}

/* ---- life cycle ---------------------------------------------------------- */

static int mkdir_p(const char *dir, char *errmsg)
{
    char path[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof path) {
        errmsg_printf(errmsg, "raft dir: bad path length");
        return LSKV_EINVAL;
    }
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char c = path[i];
        path[i] = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            int e = errno;
            errmsg_printf(errmsg, "mkdir %s: %s", path, strerror(e));
            return -e;
        }
        path[i] = c;
    }
    return 0;
}

/* Answers every caller still waiting with status. Requests raft still holds
 * stay in their lists, orphaned (no callback), until raft answers them. */
static void fail_all(consensus_node *node, int status)
{
    for (struct proposal *p = node->head; p != NULL; p = p->next) {
        if (p->cb == NULL)
            continue;
        consensus_done_cb cb = p->cb;
        p->cb = NULL;
        node->proposals_failed++;
        cb(p->arg, status, NULL);
    }
    if (node->round != NULL)
        waiter_list_fire(&node->round->waiters, status);
    waiter_list_fire(&node->next, status);
    fire_deferred(node); /* raft's failures first reported */
    if (node->transfer_cb != NULL) {
        consensus_done_cb cb = node->transfer_cb;
        node->transfer_cb = NULL;
        cb(node->transfer_arg, status, NULL);
    }
}

/* raft has closed: it answered every request it held (0.15 fails them all
 * with RAFT_LEADERSHIPLOST in raft_close), so what is left here was never
 * handed to raft or is a leftover to release. */
static void release_all(consensus_node *node)
{
    fail_all(node, LSKV_ESHUTDOWN);
    while (node->head != NULL) {
        struct proposal *p = node->head;
        proposal_unlink(node, p);
        free(p);
    }
    free(node->round);
    node->round = NULL;
}

static void timer_close_cb(uv_handle_t *handle)
{
    consensus_node *node = handle->data;
    void (*cb)(void *) = node->close_cb;
    void *arg = node->close_arg;
    if (node->scratch != NULL) {
        explicit_bzero(node->scratch, node->scratch_cap);
        free(node->scratch);
    }
    waiting_clear(node);
    raft_uv_close(&node->io);
    if (node->transport == &node->tcp)
        raft_uv_tcp_close(&node->tcp);
    keyring_free(node->keys);
    free(node);
    if (cb != NULL)
        cb(arg);
}

/* The prepare handle closes first, then the timer, whose callback frees the
 * node (libuv finishes closing handles in no promised order). */
static void prepare_close_cb(uv_handle_t *handle)
{
    consensus_node *node = handle->data;
    uv_close((uv_handle_t *)&node->timer, timer_close_cb);
}

/* libraft 0.15's raft_uv fires its close callback from every completion that
 * finds nothing left pending (uvMaybeFireCloseCb keeps no "fired" flag), so
 * it can fire twice; raft's callback (ioCloseCb) then frees raft's memory a
 * second time (ASan: double free, after a SIGTERM). The node wraps
 * io->close to pass the first call on only. */
/* A timed append: raft's request data is kept aside while raft_uv holds
 * the request (raft_uv leaves req->data to its caller). */
struct timed_append {
    consensus_node *node;
    void *data;
    raft_io_append_cb cb;
    uint64_t start_ns;
};

static void append_timed_cb(struct raft_io_append *req, int status)
{
    struct timed_append *t = req->data;
    consensus_node *node = t->node;
    raft_io_append_cb cb = t->cb;
    req->data = t->data;
    node->append_observer(node->append_observer_arg, uv_hrtime() - t->start_ns);
    free(t);
    cb(req, status);
}

static int io_append_timed(struct raft_io *io, struct raft_io_append *req,
                           const struct raft_entry entries[], unsigned n, raft_io_append_cb cb)
{
    consensus_node *node = (consensus_node *)(void *)((char *)io - offsetof(consensus_node, io));
    struct timed_append *t = malloc(sizeof *t);
    if (t == NULL)
        return node->uv_append_fn(io, req, entries, n, cb); /* untimed */
    *t = (struct timed_append){node, req->data, cb, uv_hrtime()};
    req->data = t;
    int rv = node->uv_append_fn(io, req, entries, n, append_timed_cb);
    if (rv != 0) {
        req->data = t->data;
        free(t);
    }
    return rv;
}

static void io_close_once(struct raft_io *io)
{
    consensus_node *node = (consensus_node *)(void *)((char *)io - offsetof(consensus_node, io));
    if (node->io_closed)
        return;
    node->io_closed = true;
    node->raft_close_cb(io);
}

static void io_close_guarded(struct raft_io *io, raft_io_close_cb cb)
{
    consensus_node *node = (consensus_node *)(void *)((char *)io - offsetof(consensus_node, io));
    node->raft_close_cb = cb;
    node->uv_close_fn(io, io_close_once);
}

/* raft_uv and its TCP transport are released later, in timer_close_cb, not
 * here: libraft 0.15 still reads them after this callback returns (freeing
 * them here crashed one close in about 30 shortly after a start, when the
 * first append had prepared a new open segment; reproduced by restarting
 * and stopping in a loop). io_close_once makes sure this runs once; the
 * flag below is a second guard. */
static void on_raft_closed(struct raft *raft)
{
    consensus_node *node = raft->data;
    if (node->raft_closed)
        return;
    node->raft_closed = true;
    flush_fsm(node);
    release_all(node);
    uv_close((uv_handle_t *)&node->prepare, prepare_close_cb);
}

int consensus_open(uv_loop_t *loop, const struct consensus_config *config,
                   const struct consensus_fsm *fsm, consensus_node **out, char *errmsg)
{
    consensus_node *node;
    int rv;

    if (config->dir == NULL || config->data_key == NULL || config->member_id == 0 ||
        config->peer_address == NULL || fsm->apply == NULL || fsm->snapshot == NULL ||
        fsm->restore == NULL) {
        errmsg_printf(errmsg, "consensus: incomplete configuration");
        if (config->released_cb != NULL)
            config->released_cb(config->released_arg);
        return LSKV_EINVAL;
    }
    node = calloc(1, sizeof *node);
    if (node == NULL) {
        errmsg_printf(errmsg, "consensus: out of memory");
        if (config->released_cb != NULL)
            config->released_cb(config->released_arg);
        return LSKV_ENOMEM;
    }
    node->loop = loop;
    node->fsm = *fsm;
    rv = keyring_new(config->data_key, "raft",
                     config->key_epoch_size ? config->key_epoch_size
                                            : KEYRING_DEFAULT_EPOCH_SIZE,
                     &node->keys);
    if (rv != 0) {
        errmsg_printf(errmsg, "consensus: entry key: %s", lskv_strerror(rv));
        goto err;
    }
    node->member_id = config->member_id;
    node->cluster_id = config->cluster_id;
    snprintf(node->dir, sizeof node->dir, "%s", config->dir);
    node->fatal_cb = config->fatal_cb;
    node->fatal_arg = config->fatal_arg;
    node->append_observer = config->append_observer;
    node->append_observer_arg = config->append_observer_arg;
    waiter_list_init(&node->next);
    waiter_list_init(&node->deferred);

    rv = mkdir_p(config->dir, errmsg);
    if (rv != 0)
        goto err;
    struct forwarder_config fc = {
        .node = node,
        .member_id = config->member_id,
        .send = config->send,
        .send_arg = config->send_arg,
        .serve_call = config->serve_call,
        .serve_arg = config->serve_arg,
        /* etcd's ReqTimeout: 5 s + 2 election timeouts */
        .timeout_ms = config->request_timeout_ms
                          ? config->request_timeout_ms
                          : 5000 + 2 * (config->election_ms ? config->election_ms
                                                            : CONSENSUS_ELECTION_TIMEOUT_MS),
    };
    if ((rv = forwarder_new(loop, &fc, &node->fwd)) != 0) {
        errmsg_printf(errmsg, "consensus: out of memory");
        goto err;
    }
    node->transport = config->transport;
    if (node->transport == NULL) {
        rv = raft_uv_tcp_init(&node->tcp, loop);
        if (rv != 0) {
            errmsg_printf(errmsg, "raft tcp transport: %s", raft_strerror(rv));
            rv = rv == RAFT_NOMEM ? LSKV_ENOMEM : LSKV_EIO;
            goto err;
        }
        node->transport = &node->tcp;
    }
    rv = raft_uv_init(&node->io, loop, config->dir, node->transport);
    if (rv != 0) {
        errmsg_printf(errmsg, "raft io %s: %s", config->dir,
                      node->io.errmsg[0] ? node->io.errmsg : raft_strerror(rv));
        rv = rv == RAFT_NOMEM ? LSKV_ENOMEM : LSKV_EIO;
        goto err_after_tcp_init;
    }
    node->uv_close_fn = node->io.close;
    node->io.close = io_close_guarded;
    if (node->append_observer != NULL) {
        node->uv_append_fn = node->io.append;
        node->io.append = io_append_timed;
    }
    /* Sealed bytes do not compress. */
    raft_uv_set_snapshot_compression(&node->io, false);
    /* etcd's WAL segment size. Each full segment's close runs io_destroy on
     * the loop thread, which waits for an RCU grace period (30-40 ms
     * measured here): with raft_uv's 8 MiB default that stalled every
     * request in flight about every 20k Puts of 256 B (p99 of put-16x16). */
    /* Smaller on a small filesystem (node.h: segment_bytes). */
    raft_uv_set_segment_size(&node->io, config->segment_bytes ? config->segment_bytes
                                                              : SEGMENT_BYTES);

    node->raft_fsm.version = 1;
    node->raft_fsm.data = node;
    node->raft_fsm.apply = wrap_apply;
    node->raft_fsm.snapshot = wrap_snapshot;
    node->raft_fsm.restore = wrap_restore;
    rv = raft_init(&node->raft, &node->io, &node->raft_fsm, config->member_id,
                   config->peer_address);
    if (rv != 0) {
        errmsg_printf(errmsg, "raft init: %s",
                      node->raft.errmsg[0] ? node->raft.errmsg : raft_strerror(rv));
        rv = rv == RAFT_NOMEM ? LSKV_ENOMEM : LSKV_EIO;
        goto err_after_uv_init;
    }
    node->raft.data = node;
    uv_timer_init(loop, &node->timer);
    node->timer.data = node;
    uv_prepare_init(loop, &node->prepare);
    node->prepare.data = node;
    uv_prepare_start(&node->prepare, prepare_cb);
    uv_unref((uv_handle_t *)&node->prepare); /* never keeps the loop alive */

    raft_set_heartbeat_timeout(&node->raft, config->heartbeat_ms ? config->heartbeat_ms
                                                                 : CONSENSUS_HEARTBEAT_MS);
    raft_set_election_timeout(&node->raft, config->election_ms ? config->election_ms
                                                               : CONSENSUS_ELECTION_TIMEOUT_MS);
    node->snapshot_threshold = config->snapshot_threshold ? config->snapshot_threshold
                                                          : DEFAULT_SNAPSHOT_THRESHOLD;
    node->snapshot_bytes = config->snapshot_bytes;
    raft_set_snapshot_threshold(&node->raft, node->snapshot_threshold);
    raft_set_snapshot_trailing(&node->raft, config->snapshot_trailing
                                                ? config->snapshot_trailing
                                                : DEFAULT_SNAPSHOT_TRAILING);
    node->max_inflight = config->max_inflight ? config->max_inflight : CONSENSUS_MAX_INFLIGHT;
    node->max_inflight_bytes = config->max_inflight_bytes ? config->max_inflight_bytes
                                                          : DEFAULT_MAX_INFLIGHT_BYTES;

    /* First start: the configured members (or this one alone). Later
     * starts: raft_uv finds state in the directory and answers
     * RAFT_CANTBOOTSTRAP. A joiner of an existing cluster never
     * bootstraps: it would start a log of its own. */
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    if (config->members == NULL) {
        rv = raft_configuration_add(&conf, config->member_id, config->peer_address, RAFT_VOTER);
    } else {
        rv = 0;
        for (size_t i = 0; i < config->n_members && rv == 0; i++)
            rv = raft_configuration_add(&conf, config->members[i].id, config->members[i].address,
                                        RAFT_VOTER);
    }
    if (rv == 0 && !config->joins_existing)
        rv = raft_bootstrap(&node->raft, &conf);
    raft_configuration_close(&conf);
    if (rv != 0 && rv != RAFT_CANTBOOTSTRAP) {
        errmsg_printf(errmsg, "raft bootstrap %s: %s", config->dir,
                      node->raft.errmsg[0] ? node->raft.errmsg : raft_strerror(rv));
        rv = rv == RAFT_NOMEM ? LSKV_ENOMEM : LSKV_EIO;
        goto err_after_raft_init;
    }

    /* Loads snapshot (wrap_restore) and log; a single voter elects itself
     * during raft_start. Committed entries are re-applied once an entry of the
     * new term commits: see consensus_barrier in node.h. */
    rv = raft_start(&node->raft);
    if (rv != 0) {
        if (node->fsm_err != 0) {
            errmsg_printf(errmsg, "%s", node->fsm_msg);
            rv = node->fsm_err;
        } else {
            errmsg_printf(errmsg, "raft start %s: %s", config->dir,
                          node->raft.errmsg[0] ? node->raft.errmsg : raft_strerror(rv));
            rv = rv == RAFT_NOMEM      ? LSKV_ENOMEM
                 : rv == RAFT_CORRUPT  ? LSKV_ECORRUPT
                 : rv == RAFT_NOSPACE  ? LSKV_ENOSPACE
                                       : LSKV_EIO;
        }
        goto err_after_raft_init;
    }
    /* A snapshot with no entries after it is checked here; a fatal
     * divergence met while replaying fails the open. */
    check_restored(node);
    if (node->fatal != 0) {
        errmsg_printf(errmsg, "%s", node->fatal_msg);
        rv = node->fatal;
        goto err_after_raft_init;
    }
    node->opened = true;
    *out = node;
    return 0;

err_after_raft_init:
    /* raft_init succeeded: only raft_close releases it, asynchronously. The
     * node frees itself once the loop has run the close callbacks. */
    node->open_failed = true;
    node->closing = true;
    node->close_cb = config->released_cb; /* timer_close_cb calls it */
    node->close_arg = config->released_arg;
    forwarder_close(node->fwd, LSKV_ESHUTDOWN);
    node->fwd = NULL;
    raft_close(&node->raft, on_raft_closed);
    return rv;
err_after_uv_init:
    raft_uv_close(&node->io);
err_after_tcp_init:
    if (node->transport == &node->tcp)
        raft_uv_tcp_close(&node->tcp);
err:
    if (node->fwd != NULL)
        forwarder_close(node->fwd, LSKV_ESHUTDOWN);
    keyring_free(node->keys);
    free(node);
    if (config->released_cb != NULL)
        config->released_cb(config->released_arg);
    return rv;
}

/* Waits until raft_uv holds no append or snapshot write (or 5 s passed),
 * then closes raft. libraft 0.15 crashes when raft_close cancels two or more
 * queued appends of a leader (appendLeaderCb truncates the log once per
 * cancelled request, and the second finds nothing to truncate: fixed upstream
 * in canonical/raft#352, after 0.15), so the node never closes with appends
 * in flight. */
static void drain_cb(uv_timer_t *timer)
{
    consensus_node *node = timer->data;
    struct raft *r = &node->raft;
    bool idle = r->last_stored >= raft_last_index(r) && r->snapshot.pending.term == 0 &&
                r->snapshot.put.data == NULL;
    if (!idle && uv_now(node->loop) < node->drain_deadline)
        return;
    uv_timer_stop(timer);
    raft_close(r, on_raft_closed);
}

void consensus_close(consensus_node *node, void (*cb)(void *arg), void *arg)
{
    if (node->closing)
        return;
    node->closing = true;
    node->close_cb = cb;
    node->close_arg = arg;
    /* Invariant (4): every caller hears ESHUTDOWN now; raft's later answers
     * to the orphaned requests only release memory. */
    fail_all(node, LSKV_ESHUTDOWN);
    forwarder_close(node->fwd, LSKV_ESHUTDOWN);
    node->fwd = NULL;
    uv_timer_stop(&node->timer);
    node->drain_deadline = uv_now(node->loop) + 5000;
    uv_timer_start(&node->timer, drain_cb, 0, 1);
}

/* ---- requests ------------------------------------------------------------ */

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    struct proposal *p = req->data;
    consensus_node *node = p->node;
    proposal_unlink(node, p);
    if (p->cb == NULL) { /* orphaned by consensus_close */
        if (result != NULL && node->fsm.free_result != NULL)
            node->fsm.free_result(node->fsm.data, result);
        free(p);
        return;
    }
    int rv = map_raft_err(node, status);
    if (rv != 0)
        node->proposals_failed++;
    if (rv != 0 && result != NULL && node->fsm.free_result != NULL) {
        node->fsm.free_result(node->fsm.data, result);
        result = NULL;
    }
    consensus_done_cb cb = p->cb;
    void *arg = p->arg;
    free(p);
    if (rv != 0 && !node->closing && defer_answer(node, cb, arg, rv) == 0)
        return; /* invariant (10) */
    cb(arg, rv, rv == 0 ? result : NULL);
}

static int check_usable(consensus_node *node)
{
    if (node->closing)
        return LSKV_ESHUTDOWN;
    if (node->fatal != 0)
        return LSKV_EIO;
    if (raft_state(&node->raft) != RAFT_LEADER)
        return LSKV_ENOTLEADER;
    return 0;
}

/* The leader a follower forwards to (0: none known, or this node). */
static uint64_t leader_of(consensus_node *node)
{
    raft_id id = 0;
    const char *address = NULL;
    raft_leader(&node->raft, &id, &address);
    return id == node->member_id ? 0 : id;
}

/* Invariant (8): takes propose_chain from the applied place when that is safe. */
static void chain_from_applied(consensus_node *node)
{
    memcpy(node->propose_chain, node->applied.chain, ENTRY_CHAIN_BYTES);
    node->chain_term = node->raft.current_term;
}

int consensus_propose(consensus_node *node, uint64_t request_id, const uint8_t *cmd,
                      size_t len, consensus_done_cb cb, void *arg)
{
    int rv = check_usable(node);
    if (rv == LSKV_ENOTLEADER && request_id != 0 && node->fwd != NULL)
        return forwarder_propose(node->fwd, request_id, cmd, len, cb, arg);
    if (rv != 0)
        return rv;
    if (node->chain_term != node->raft.current_term) {
        if (raft_last_applied(&node->raft) != raft_last_index(&node->raft))
            return LSKV_ENOTLEADER; /* not ready to lead: invariant (8) */
        chain_from_applied(node);
    }
    size_t sealed_len = entry_sealed_len(len);
    if (sealed_len == 0 || sealed_len > UINT32_MAX)
        return LSKV_ETOOLARGE;
    /* One proposal alone is always let through: the bytes bound must not
     * refuse a request that max-request-bytes allows. */
    if (node->inflight >= node->max_inflight ||
        (node->inflight > 0 && node->inflight_bytes + sealed_len > node->max_inflight_bytes))
        return LSKV_ETOOMANYREQUESTS;
    struct proposal *p = calloc(1, sizeof *p);
    uint8_t *sealed = raft_malloc(sealed_len);
    if (p == NULL || sealed == NULL) {
        rv = LSKV_ENOMEM;
        goto err;
    }
    struct entry_header h = {
        .kind = ENTRY_KIND_COMMAND,
        .term = node->raft.current_term,
        .index = raft_last_index(&node->raft) + 1, /* raft_apply appends there */
        .stamp = wall_clock_ms(),
    };
    memcpy(h.chain, node->propose_chain, ENTRY_CHAIN_BYTES);
    aead_key *key = NULL;
    rv = seal_key(node, h.index, &h.key_id, &key);
    if (rv == 0)
        rv = entry_seal_k(key, node->cluster_id, &h, cmd, len, sealed);
    if (rv != 0)
        goto err;
    p->req.data = p;
    p->node = node;
    p->cb = cb;
    p->arg = arg;
    struct raft_buffer buf = {.base = sealed, .len = sealed_len};
    rv = raft_apply(&node->raft, &p->req, &buf, 1, apply_cb);
    if (rv != 0) {
        /* Not appended: the buffer is still ours (raft 0.15 logDiscard keeps
         * the memory on its error path). */
        rv = map_raft_err(node, rv);
        goto err;
    }
    /* Invariant (3): raft_apply assigned the next log index (h.index). */
    entry_chain_next(node->propose_chain, sealed, sealed_len, node->propose_chain);
    p->bytes = sealed_len;
    node->inflight++;
    node->inflight_bytes += sealed_len;
    p->prev = node->tail;
    if (node->tail != NULL)
        node->tail->next = p;
    else
        node->head = p;
    node->tail = p;
    return 0;
err:
    raft_free(sealed);
    free(p);
    return rv;
}

static void barrier_cb(struct raft_barrier *req, int status);

/* Starts a round for the waiters in *waiters (moved into the round). */
static int round_start(consensus_node *node, struct waiter_list *waiters)
{
    struct round *r = calloc(1, sizeof *r);
    if (r == NULL)
        return LSKV_ENOMEM;
    r->req.data = r;
    r->node = node;
    r->term = node->raft.current_term;
    int rv = raft_barrier(&node->raft, &r->req, barrier_cb);
    if (rv != 0) {
        free(r);
        return map_raft_err(node, rv);
    }
    r->waiters = *waiters;
    if (r->waiters.head == NULL)
        waiter_list_init(&r->waiters);
    waiter_list_init(waiters);
    node->round = r;
    return 0;
}

static void barrier_cb(struct raft_barrier *req, int status)
{
    struct round *r = req->data;
    consensus_node *node = r->node;
    int rv = map_raft_err(node, status);
    if (rv == 0 && node->fatal != 0)
        rv = LSKV_EIO;
    if (rv == 0 && r->term == node->raft.current_term && node->chain_term != r->term &&
        raft_state(&node->raft) == RAFT_LEADER)
        chain_from_applied(node); /* invariant (8) */
    node->round = NULL;
    if (rv != 0 && !node->closing) { /* invariant (10): no new round from here */
        defer_list(node, &r->waiters, rv);
        defer_list(node, &node->next, rv);
        free(r);
        return;
    }
    /* Callers that arrived while r was in flight get the next round, started
     * before r's callbacks run so that callers arriving from inside them join
     * the round after that one. */
    if (node->next.head != NULL) {
        int rv2 = node->closing ? LSKV_ESHUTDOWN : round_start(node, &node->next);
        if (rv2 != 0)
            waiter_list_fire(&node->next, rv2);
    }
    waiter_list_fire(&r->waiters, rv);
    free(r);
}

int consensus_barrier(consensus_node *node, consensus_done_cb cb, void *arg)
{
    int rv = check_usable(node);
    if (rv == LSKV_ENOTLEADER)
        return forwarder_read(node->fwd, leader_of(node), cb, arg);
    return rv != 0 ? rv : consensus_barrier_local(node, cb, arg);
}

int consensus_barrier_local(consensus_node *node, consensus_done_cb cb, void *arg)
{
    int rv = check_usable(node);
    if (rv != 0)
        return rv;
    struct waiter *w = malloc(sizeof *w);
    if (w == NULL)
        return LSKV_ENOMEM;
    w->cb = cb;
    w->arg = arg;
    if (node->round != NULL) {
        waiter_list_push(&node->next, w);
        return 0;
    }
    struct waiter_list l;
    waiter_list_init(&l);
    waiter_list_push(&l, w);
    rv = round_start(node, &l);
    if (rv != 0)
        free(w);
    return rv;
}

int consensus_call_leader(consensus_node *node, uint8_t kind, const uint8_t *req, size_t len,
                          consensus_call_cb cb, void *arg)
{
    int rv = check_usable(node);
    if (rv == 0)
        return LSKV_ENOTLEADER; /* the leader answers its own callers */
    if (rv != LSKV_ENOTLEADER)
        return rv;
    return forwarder_call(node->fwd, leader_of(node), kind, req, len, cb, arg);
}

static void transfer_cb(struct raft_transfer *req)
{
    consensus_node *node = req->data;
    node->transferring = false;
    raft_id leader = 0;
    const char *address = NULL;
    if (!node->closing)
        raft_leader(&node->raft, &leader, &address);
    consensus_done_cb cb = node->transfer_cb;
    node->transfer_cb = NULL;
    if (cb != NULL)
        cb(node->transfer_arg, node->closing ? LSKV_ESHUTDOWN
                               : leader == node->transfer_target ? 0
                                                                 : LSKV_ETRANSFERTIMEOUT,
           NULL);
}

int consensus_transfer(consensus_node *node, uint64_t target, consensus_done_cb cb, void *arg)
{
    int rv = check_usable(node);
    if (rv == LSKV_ENOTLEADER)
        return LSKV_ELEADERONLY;
    if (rv != 0)
        return rv;
    if (node->transferring)
        return LSKV_ETOOMANYREQUESTS;
    node->transfer_req.data = node;
    rv = raft_transfer(&node->raft, &node->transfer_req, target, transfer_cb);
    if (rv != 0)
        return rv == RAFT_BADID || rv == RAFT_NOTFOUND ? LSKV_EBADTRANSFEREE
                                                       : map_raft_err(node, rv);
    node->transferring = true;
    node->transfer_target = target;
    node->transfer_cb = cb;
    node->transfer_arg = arg;
    return 0;
}

void consensus_receive(consensus_node *node, uint64_t from, const uint8_t *msg, size_t len)
{
    if (node->fwd != NULL)
        forwarder_receive(node->fwd, from, msg, len);
}

struct raft *consensus_leader_raft(consensus_node *node)
{
    return !node->closing && node->fatal == 0 && raft_state(&node->raft) == RAFT_LEADER
               ? &node->raft
               : NULL;
}

void consensus_get_status(consensus_node *node, struct consensus_status *out)
{
    raft_id leader_id = 0;
    const char *leader_address = NULL;
    memset(out, 0, sizeof *out);
    out->member_id = node->member_id;
    if (!node->closing)
        raft_leader(&node->raft, &leader_id, &leader_address);
    out->leader_id = leader_id;
    out->term = node->raft.current_term;
    out->commit_index = node->raft.commit_index;
    out->applied_index = raft_last_applied(&node->raft);
    out->is_leader = !node->closing && raft_state(&node->raft) == RAFT_LEADER;
    out->fatal = node->fatal;
    out->stalled = node->stalled || node->waiting_head != NULL;
    out->inflight = node->inflight;
    out->inflight_bytes = node->inflight_bytes;
    out->proposals_failed = node->proposals_failed;
}

uint64_t consensus_match_index(consensus_node *node, uint64_t member)
{
    if (node->closing || raft_state(&node->raft) != RAFT_LEADER || member == node->member_id)
        return 0;
    /* libraft keeps one progress per server of the configuration, same order. */
    const struct raft_configuration *c = &node->raft.configuration;
    for (unsigned i = 0; i < c->n; i++)
        if (c->servers[i].id == member)
            return node->raft.leader_state.progress[i].match_index;
    return 0;
}

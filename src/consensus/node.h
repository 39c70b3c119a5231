/* The consensus node: canonical libraft (0.15) with its libuv I/O backend.
 *
 * Every mutating request is one log entry. An entry on disk and on the wire is
 * a small plain header and the command sealed with the service data key
 * (consensus/entry.c, docs/entry-format.md), so raft log segments and
 * snapshots never hold keys or values in the clear. Snapshots are sealed the
 * same way.
 *
 * A single node is a one-member cluster bootstrapped on first start; there is
 * one code path. Writes are acknowledged when committed and applied. */
#ifndef LSKV_CONSENSUS_NODE_H
#define LSKV_CONSENSUS_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct consensus_node consensus_node;

/* What an applied entry carries besides the command. time and randomness, if
 * the state machine needs them, arrive here from the proposing leader. */
struct consensus_entry_info {
    uint64_t index;        /* raft index of the entry */
    uint64_t term;         /* raft term the entry was proposed in */
    uint64_t proposed_ms;  /* leader's wall clock at proposal (unix ms) */
};

/* The deterministic state machine the node drives. */
struct consensus_fsm {
    void *data;
    /* Applies one committed command (plaintext, borrowed for the call). The
     * result (may be NULL) goes to the proposer's callback on this node, or
     * to free_result when nobody here waits for it. A non-zero return is a
     * fatal divergence. */
    int (*apply)(void *data, const struct consensus_entry_info *info,
                 const uint8_t *cmd, size_t len, void **result);
    void (*free_result)(void *data, void *result);
    /* Produces a snapshot (malloc'ed; the node frees it) covering all
     * applied entries; must make durable whatever the snapshot refers to. */
    int (*snapshot)(void *data, uint8_t **buf, size_t *len);
    /* Replaces the state with a snapshot's (plaintext, borrowed). */
    int (*restore)(void *data, const uint8_t *buf, size_t len);
};

struct consensus_config {
    const char *dir;           /* raft log and snapshots; created if missing */
    const uint8_t *data_key;   /* AEAD_KEY_BYTES, copied; seals entries/snapshots */
    uint64_t member_id;        /* raft server id (non-zero) */
    const char *peer_address;  /* "127.0.0.1:2380" */
    unsigned snapshot_threshold; /* entries between snapshots; 0 = default 10000 */
    unsigned snapshot_trailing;  /* entries kept after a snapshot; 0 = default 1000 */
    /* Optional (may be NULL). Called once, from the loop and never from
     * inside apply, when the node hits a fatal divergence: a committed entry
     * that does not open under data_key (LSKV_ECORRUPT/LSKV_EFORMAT) or an
     * fsm->apply that returned non-zero (its code). From then on the node
     * applies nothing, proposals and barriers fail with LSKV_EIO and
     * consensus_get_status reports the code in .fatal; the daemon logs errmsg
     * and closes the node. */
    void (*fatal_cb)(void *arg, int code, const char *errmsg);
    void *fatal_arg;
};

struct consensus_status {
    uint64_t member_id;
    uint64_t leader_id;     /* 0 when unknown */
    uint64_t term;
    uint64_t commit_index;
    uint64_t applied_index;
    bool is_leader;
    int fatal;              /* 0, or the code of a fatal divergence (see fatal_cb) */
};

typedef void (*consensus_done_cb)(void *arg, int status, void *result);

/* Opens the raft directory, bootstraps a one-member configuration on first
 * start, loads snapshot + log (restore and replay happen as raft starts).
 * fsm is copied; fsm->data is borrowed. Errors: LSKV_EIO, LSKV_ENOMEM. */
int consensus_open(uv_loop_t *loop, const struct consensus_config *config,
                   const struct consensus_fsm *fsm, consensus_node **out,
                   char *errmsg);

/* Proposes cmd (copied). If this returns 0, cb fires exactly once: status 0
 * with the fsm's result (ownership passes to cb) once applied here, or
 * status < 0 (LSKV_ENOTLEADER, LSKV_ESHUTDOWN, LSKV_EIO). If it fails, cb is
 * never called. */
int consensus_propose(consensus_node *node, const uint8_t *cmd, size_t len,
                      consensus_done_cb cb, void *arg);

/* Linearizable-read point: cb(arg, 0, NULL) once every entry committed before
 * the call has been applied locally and leadership is confirmed. Same error
 * contract as consensus_propose. Many concurrent callers may share one raft
 * barrier. */
int consensus_barrier(consensus_node *node, consensus_done_cb cb, void *arg);

void consensus_get_status(consensus_node *node, struct consensus_status *out);

/* Closes raft; pending callbacks fire with LSKV_ESHUTDOWN first; cb fires when
 * everything is closed and node is freed. */
void consensus_close(consensus_node *node, void (*cb)(void *arg), void *arg);

#endif

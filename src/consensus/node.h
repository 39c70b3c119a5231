/* The consensus node: canonical libraft (0.15) with its libuv I/O backend.
 *
 * Every mutating request is one log entry. An entry on disk and on the wire is
 * a small plain header and the command sealed with the service data key
 * (consensus/entry.c, docs/entry-format.md), so raft log segments and
 * snapshots never hold keys or values in the clear. Snapshots are sealed the
 * same way.
 *
 * A single node is a one-member cluster bootstrapped on first start; there is
 * one code path. Writes are acknowledged when committed and applied; on a
 * single node commit means the entry is on disk (raft_uv writes open segments
 * through O_DSYNC / RWF_DSYNC and the leader counts itself only when its
 * write completed), so an acknowledged write survives kill -9.
 *
 * READY. After consensus_open the daemon calls consensus_barrier once and
 * serves nothing until it completes with status 0: by then every entry
 * committed before the restart has been re-applied (snapshot restore, then
 * log replay) and leadership is confirmed. With libraft 0.15 a single voter
 * already re-applies its whole log inside raft_start (it elects itself and
 * commits up to its last stored entry); the barrier makes this hold also for
 * a leader of a larger cluster, whose old-term entries commit only with an
 * entry of its own term. Both facts are checked in tests/unit/test_consensus.c.
 *
 * All functions run on the loop's thread. Callbacks may call consensus_*
 * (including consensus_close). */
#ifndef LSKV_CONSENSUS_NODE_H
#define LSKV_CONSENSUS_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct consensus_node consensus_node;

/* Raft's default election timeout and heartbeat (etcd's; --election-timeout
 * and --heartbeat-interval change them). etcd's lease TTL floor and its
 * lease extension after a restart or an election derive from the election
 * timeout in use. */
#define CONSENSUS_ELECTION_TIMEOUT_MS 1000
#define CONSENSUS_HEARTBEAT_MS 100

/* What an applied entry carries besides the command. time and randomness, if
 * the state machine needs them, arrive here from the proposing leader. */
struct consensus_entry_info {
    uint64_t index;        /* raft index of the entry */
    uint64_t term;         /* raft term the entry was proposed in */
    uint64_t proposed_ms;  /* leader's wall clock at proposal (unix ms) */
    /* Set by apply from the command's envelope (0 when it has none): a
     * command a follower forwarded finds its waiting caller by them. */
    uint64_t origin_member;
    uint64_t request_id;
};

/* The answer to a call to the leader (consensus_call_leader): status 0 and
 * the reply bytes (borrowed for the callback), or an error. */
typedef void (*consensus_call_cb)(void *arg, int status, const uint8_t *reply, size_t len);
/* The leader's side of a call: answers req of kind at once into *reply
 * (malloc'ed; the node frees it). Returns 0 or an LSKV_E* sent back as the
 * status. */
typedef int (*consensus_serve_call_fn)(void *arg, uint8_t kind, const uint8_t *req, size_t len,
                                       uint8_t **reply, size_t *reply_len);

/* A member of the configuration a new cluster bootstraps with. */
struct consensus_member {
    uint64_t id;
    const char *address; /* peer "host:port" */
};

/* The deterministic state machine the node drives. */
struct consensus_fsm {
    void *data;
    /* Applies one committed command (plaintext, borrowed for the call). The
     * result (may be NULL) goes to the proposer's callback on this node, or
     * to free_result when nobody here waits for it. A non-zero return is a
     * fatal divergence. */
    int (*apply)(void *data, struct consensus_entry_info *info,
                 const uint8_t *cmd, size_t len, void **result);
    void (*free_result)(void *data, void *result);
    /* Produces a snapshot (malloc'ed; the node frees it) covering all
     * applied entries; must make durable whatever the snapshot refers to. */
    int (*snapshot)(void *data, uint8_t **buf, size_t *len);
    /* Replaces the state with a snapshot's (plaintext, borrowed). */
    int (*restore)(void *data, const uint8_t *buf, size_t len);
    /* Optional (may be NULL). Called on the loop, never inside apply, once
     * per loop turn in which entries were applied (before the loop next
     * waits for I/O), and before the node closes: the state machine writes
     * out what those applies buffered, so many entries share one storage
     * write. A non-zero return is a fatal divergence, as for apply. */
    int (*flush)(void *data);
    /* Optional (may be NULL). Asked, once consensus_open has returned,
     * before each committed command is applied: false = not now (the disk
     * cannot take what apply would write). The node then applies nothing
     * more, which is no divergence (libraft keeps the entry and retries it),
     * and asks again with the same length each loop turn; once it says yes,
     * a barrier makes libraft apply from that entry on. Proposals and
     * barriers wait meanwhile. The replay inside consensus_open is not
     * asked: the start needs it applied. */
    bool (*can_apply)(void *data, size_t len);
};

struct consensus_config {
    const char *dir;           /* raft log and snapshots; created (0700) if missing */
    const uint8_t *data_key;   /* AEAD_KEY_BYTES, copied; seals entries/snapshots */
    uint64_t cluster_id;       /* bound into every sealed entry and snapshot */
    uint64_t key_epoch_size;   /* raft indexes per data key epoch (crypto/keyring.h);
                                  0 = KEYRING_DEFAULT_EPOCH_SIZE */
    uint64_t member_id;        /* raft server id (non-zero) */
    unsigned heartbeat_ms;     /* 0 = CONSENSUS_HEARTBEAT_MS */
    unsigned election_ms;      /* 0 = CONSENSUS_ELECTION_TIMEOUT_MS */
    const char *peer_address;  /* "127.0.0.1:2380" */
    /* The voters a fresh raft directory is bootstrapped with (every member
     * of a new cluster bootstraps the same list); NULL: this member alone. */
    const struct consensus_member *members;
    size_t n_members;
    /* A member that MemberAdd added: a fresh raft directory is not
     * bootstrapped; the leader's log (its first entry the cluster's
     * bootstrap configuration) or snapshot fills it. */
    bool joins_existing;
    /* raft's transport (net/peer.h: mutual TLS between members); NULL:
     * libraft's plain TCP transport (unit tests). Borrowed until the close
     * callback. */
    struct raft_uv_transport *transport;
    /* Sends a forwarding message (consensus/forward.h) to member `to`;
     * 0 = queued. NULL: a follower refuses writes (LSKV_ENOTLEADER). */
    int (*send)(void *arg, uint64_t to, const uint8_t *msg, size_t len);
    void *send_arg;
    consensus_serve_call_fn serve_call; /* may be NULL: calls are refused */
    void *serve_arg;
    unsigned request_timeout_ms; /* forwarded requests; 0 = etcd's 5 s + 2 election timeouts */
    /* Optional. When consensus_open fails, called exactly once when the
     * transport is no longer used: inside consensus_open when raft never
     * started, else once raft's asynchronous close has finished (close
     * the transport only then). */
    void (*released_cb)(void *arg);
    void *released_arg;
    /* A snapshot is taken (fsm->snapshot, synchronously on the loop) every
     * snapshot_threshold applied entries; the log then keeps the last
     * snapshot_trailing entries before it, so a follower that lags less than
     * that catches up from the log instead of a snapshot. */
    unsigned snapshot_threshold; /* 0 = default 100000 (etcd's) */
    /* Bytes of each raft log segment; raft_uv preallocates up to three (one
     * open, two ready). 0 = 64 MiB (etcd's WAL segment); the daemon passes
     * less on a small filesystem (storage/diskspace.h). */
    size_t segment_bytes;
    unsigned snapshot_trailing;  /* 0 = default 1000 */
    /* Also take a snapshot once the entries applied since the last one hold
     * this many bytes (0 = by count only): bounds the log a restart
     * replays, and so what the replay writes again (storage/diskspace.h). */
    uint64_t snapshot_bytes;
    /* Proposals not yet applied (etcd's maxGapBetweenApplyAndCommitIndex)
     * and their sealed bytes: beyond either bound consensus_propose answers
     * LSKV_ETOOMANYREQUESTS, so a flood of writes is refused instead of
     * growing memory. 0 = defaults CONSENSUS_MAX_INFLIGHT and 256 MiB. */
    unsigned max_inflight;
    uint64_t max_inflight_bytes;
    /* Optional (may be NULL). Called once, from the loop and never from
     * inside apply, when the node hits a fatal divergence: a committed entry
     * that does not open under data_key (LSKV_ECORRUPT/LSKV_EFORMAT) or an
     * fsm->apply that returned non-zero (its code). From then on the node
     * applies nothing, proposals and barriers fail with LSKV_EIO and
     * consensus_get_status reports the code in .fatal; the daemon logs errmsg
     * and closes the node. */
    void (*fatal_cb)(void *arg, int code, const char *errmsg);
    void *fatal_arg;
    /* Optional (may be NULL): the nanoseconds each raft log append took,
     * write and fsync (etcd_disk_wal_fsync_duration_seconds). */
    void (*append_observer)(void *arg, uint64_t nsec);
    void *append_observer_arg;
};

struct consensus_status {
    uint64_t member_id;
    uint64_t leader_id;     /* 0 when unknown */
    uint64_t term;
    uint64_t commit_index;
    uint64_t applied_index;
    bool is_leader;
    int fatal;              /* 0, or the code of a fatal divergence (see fatal_cb) */
    bool stalled;           /* fsm.can_apply said no; applying waits */
    uint64_t inflight;      /* proposals not yet applied (max_inflight) */
    uint64_t inflight_bytes; /* their sealed bytes (max_inflight_bytes) */
    uint64_t proposals_failed; /* proposals raft dropped (leader lost, closed) */
};

#define CONSENSUS_MAX_INFLIGHT 5000u /* etcd 3.4 v3_server.go */

typedef void (*consensus_done_cb)(void *arg, int status, void *result);

/* Opens the raft directory, bootstraps a one-member configuration (member_id,
 * peer_address, voter) on first start, loads snapshot + log (restore and, on
 * a single node, replay happen inside this call) and starts raft; the peer
 * address is listened on. config and its strings are copied; fsm is copied;
 * fsm->data is borrowed until the close callback. errmsg (LSKV_ERRMSG_SIZE)
 * gets libraft's or the decoder's message on failure.
 * On failure nothing is returned, but if raft had been initialised it is
 * closed asynchronously: run the loop to release it (no callback).
 * Errors: LSKV_EINVAL (config incomplete: dir, data_key, member_id,
 *         peer_address, fsm->apply/snapshot/restore are required),
 *         LSKV_EIO (raft I/O: directory, segments, port in use, ...),
 *         LSKV_ENOMEM,
 *         LSKV_ECORRUPT / LSKV_EFORMAT (a snapshot or a committed entry does
 *         not open under data_key, or raft's own files are damaged),
 *         a negated errno (cannot create dir),
 *         the code fsm->restore or fsm->apply returned during replay. */
int consensus_open(uv_loop_t *loop, const struct consensus_config *config,
                   const struct consensus_fsm *fsm, consensus_node **out,
                   char *errmsg);

/* Proposes cmd (copied and sealed with a fresh nonce; the entry carries the
 * current term and this node's wall clock as proposed_ms). On a follower,
 * a command with a request_id (non-zero, unique among this member's
 * commands; the id its envelope carries) goes to the leader, and cb gets
 * the result of this member's own apply of it (consensus/forward.h); with
 * request_id 0 a follower answers LSKV_ENOTLEADER. If this returns 0,
 * cb fires exactly once, never from inside this call: status 0 with the fsm's
 * result (ownership passes to cb) once applied here, or status < 0:
 *   LSKV_ENOTLEADER  leadership lost before commit (outcome unknown: another
 *                    leader may still commit it),
 *   LSKV_ESHUTDOWN   consensus_close was called (outcome unknown),
 *   LSKV_ENOSPACE    no space for a new log segment,
 *   LSKV_EIO         a disk write failed,
 *   LSKV_ETIMEOUT    forwarded, and no outcome within the request timeout
 *                    (outcome unknown).
 * If it fails, cb is never called.
 * Errors: LSKV_ENOTLEADER (not the leader, or a new leader that has not yet
 *         applied the entries of earlier terms: node.c invariant 8),
 *         LSKV_ESHUTDOWN (closing),
 *         LSKV_EIO (fatal divergence, or raft I/O), LSKV_ETOOLARGE (entry
 *         above 4 GiB), LSKV_ETOOMANYREQUESTS (max_inflight proposals or
 *         max_inflight_bytes not yet applied), LSKV_ENOMEM. */
int consensus_propose(consensus_node *node, uint64_t request_id, const uint8_t *cmd,
                      size_t len, consensus_done_cb cb, void *arg);

/* Linearizable-read point: cb(arg, 0, NULL) once every entry committed before
 * the call has been applied locally and leadership is confirmed (on a
 * follower: the leader's read index, applied here). Callers are
 * batched: one raft_barrier is in flight at a time, and every caller that
 * arrives while it is in flight shares the NEXT one (so a caller never relies
 * on a barrier appended before it arrived). Same callback and error contract
 * as consensus_propose. */
int consensus_barrier(consensus_node *node, consensus_done_cb cb, void *arg);

void consensus_get_status(consensus_node *node, struct consensus_status *out);

/* Whether the state machine holds the last raft snapshot back
 * (consensus_fsm.restore answered LSKV_ENOTREADY: it lacks what the
 * snapshot covers and fetches it, statemachine/catchup.h). Meanwhile raft's
 * applied index is ahead of the state: nothing is applied, no snapshot is
 * taken and no reader waiting for an applied index is let through.
 * consensus_restore_done: the state machine has restored it; applying goes
 * on (a follower asks the leader for a read index to restart it). */
bool consensus_restore_held(const consensus_node *node);
void consensus_restore_done(consensus_node *node);
/* While this node leads: the highest index member has acknowledged in this
 * term (libraft's match index; consensus/probe.h uses it to tell a member
 * restarted from an old copy of its data dir). 0 otherwise, or when the
 * member has acknowledged nothing yet in this term. */
uint64_t consensus_match_index(consensus_node *node, uint64_t member);

/* Asks the leader (this node must not be it: callers serve themselves
 * when consensus_get_status says is_leader) to answer req of kind with
 * its serve_call. cb fires exactly once, never inside this call, when it
 * returns 0: the reply, or LSKV_ETIMEOUT / the leader's error / LSKV_ESHUTDOWN.
 * Errors: LSKV_ENOTLEADER (no leader known, or this node leads),
 * LSKV_ETOOMANYREQUESTS, LSKV_ESHUTDOWN, LSKV_ENOMEM. */
int consensus_call_leader(consensus_node *node, uint8_t kind, const uint8_t *req, size_t len,
                          consensus_call_cb cb, void *arg);

/* Moves leadership to member target (etcd's MoveLeader). cb(arg, 0, NULL)
 * once target leads, or an error: LSKV_ETRANSFERTIMEOUT (it did not within
 * an election timeout), LSKV_ESHUTDOWN. Never inside this call when it
 * returns 0. Errors: LSKV_ELEADERONLY (this node does not lead),
 * LSKV_EBADTRANSFEREE (target is not a voter of the configuration),
 * LSKV_ETOOMANYREQUESTS (a transfer is in flight). Moving to this node
 * itself is LSKV_EBADTRANSFEREE here (the caller answers it). */
int consensus_transfer(consensus_node *node, uint64_t target, consensus_done_cb cb, void *arg);

/* A forwarding message from member `from`, as its authenticated link
 * proved it (msg borrowed). Ignored while closing. */
void consensus_receive(consensus_node *node, uint64_t from, const uint8_t *msg, size_t len);

/* Closes the node. Every pending proposal and barrier callback fires with
 * LSKV_ESHUTDOWN inside this call (whether or not the entry still gets
 * applied; fsm results of such entries go to free_result). Then it waits for
 * raft_uv's in-flight writes to finish (at most 5 s: libraft 0.15 cannot
 * cancel several queued appends safely), closes raft, raft_uv and the TCP
 * transport, frees node and calls cb (may be NULL). A second call is a no-op. */
void consensus_close(consensus_node *node, void (*cb)(void *arg), void *arg);

#endif

/* Any member serves writes and linearizable reads (consensus module
 * internal; node.c is its only user).
 *
 * Only the raft leader may append. A follower sends a client's command to
 * the leader (FWD_PROPOSE) and answers the client when the entry is applied
 * here: the applied command names its origin member and request id
 * (statemachine/command.h envelope), and that pair, not a match with a local
 * raft request, finds the waiting caller. The leader only reports a refusal
 * (FWD_PROPOSE_FAILED: not leader, too many requests, ...); a command that
 * committed needs no answer. A follower's linearizable read asks the leader
 * for a read index (FWD_READ_INDEX): the leader runs a barrier (leadership
 * confirmed, everything committed before the request applied) and replies
 * with its applied index; the follower's callers go on once they have
 * applied that far themselves. One read-index request is in flight at a
 * time; callers arriving meanwhile share the next one, as barrier rounds do.
 *
 * Messages (what consensus_config.send carries; big endian):
 *   FWD_PROPOSE         1 | request_id u64 | command bytes
 *   FWD_PROPOSE_FAILED  2 | request_id u64 | status i32   (appended, then lost:
 *                                                          outcome unknown)
 *   FWD_PROPOSE_REFUSED 7 | request_id u64 | status i32   (never appended)
 *   FWD_READ_INDEX      3 | read_id u64
 *   FWD_READ_REPLY      4 | read_id u64 | status i32 | index u64
 *   FWD_CALL            5 | call_id u64 | kind u8 | request bytes
 *   FWD_CALL_REPLY      6 | call_id u64 | status i32 | reply bytes
 * A call is what the leader answers at once from its own state, not
 * through the log (lease keep-alives and time-to-live: only the leader's
 * lease clocks count); consensus_config.serve_call answers it there.
 * A status is one of the consensus_propose error codes; anything else reads
 * as LSKV_EIO. Members are attested cores on authenticated links, but a
 * message is still parsed with bounds (fuzz: tests/fuzz/fuzz_forward.c).
 *
 * A forwarded proposal or read that gets no outcome within the request
 * timeout (etcd's 5 s + 2 election timeouts) fails with LSKV_ETIMEOUT
 * (etcd: "request timed out"); its outcome is then unknown, as etcd's. */
#ifndef LSKV_CONSENSUS_FORWARD_H
#define LSKV_CONSENSUS_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "consensus/node.h"

enum fwd_type {
    FWD_PROPOSE = 1,
    FWD_PROPOSE_FAILED = 2,
    FWD_READ_INDEX = 3,
    FWD_READ_REPLY = 4,
    FWD_CALL = 5,
    FWD_CALL_REPLY = 6,
    FWD_PROPOSE_REFUSED = 7,
};

struct fwd_msg {
    uint8_t type;
    uint64_t id;         /* request id or read id */
    int32_t status;      /* PROPOSE_FAILED, READ_REPLY */
    uint64_t index;      /* READ_REPLY */
    uint8_t kind;        /* CALL */
    const uint8_t *cmd;  /* PROPOSE, CALL, CALL_REPLY: the bytes after the fixed
                            fields, borrowed from the parsed buffer */
    size_t cmd_len;
};

/* Parses buf. Errors: LSKV_ECORRUPT (unknown type, wrong length, empty
 * command, unknown status). */
int fwd_parse(const uint8_t *buf, size_t len, struct fwd_msg *out);

typedef struct forwarder forwarder;

struct forwarder_config {
    consensus_node *node;
    uint64_t member_id;
    int (*send)(void *arg, uint64_t to, const uint8_t *msg, size_t len);
    void *send_arg;
    consensus_serve_call_fn serve_call; /* may be NULL: calls answer LSKV_EINVAL */
    void *serve_arg;
    unsigned timeout_ms;
};

int forwarder_new(uv_loop_t *loop, const struct forwarder_config *cfg, forwarder **out);
/* Answers every waiting caller with status, then frees (handles closed
 * asynchronously; f is unusable at once). */
void forwarder_close(forwarder *f, int status);

/* Follower side. Both answer through cb exactly once, never inside the call
 * when they return 0. A proposal waits while no leader is known or the
 * leader refused it before appending (a new leader not ready yet): it is
 * sent again each tick until the request timeout, and proposed here if
 * this member becomes leader meanwhile. The waiting proposals' bytes are
 * bounded. Errors: LSKV_ENOTLEADER (forwarder_read: no leader known, or
 * the link refused the message; forwarder_propose: request_id 0),
 * LSKV_ETOOMANYREQUESTS (max waiting), LSKV_ENOMEM. */
int forwarder_propose(forwarder *f, uint64_t request_id, const uint8_t *cmd, size_t len,
                      consensus_done_cb cb, void *arg);
int forwarder_read(forwarder *f, uint64_t leader, consensus_done_cb cb, void *arg);
/* A call to the leader (FWD_CALL); same contract. */
int forwarder_call(forwarder *f, uint64_t leader, uint8_t kind, const uint8_t *req, size_t len,
                   consensus_call_cb cb, void *arg);

/* An entry was applied here with this origin and request id: if a caller
 * waits for it, it gets result (returns true: result taken). */
bool forwarder_applied(forwarder *f, uint64_t origin, uint64_t request_id, void *result);
/* Called after applies: readers whose read index is applied go on. */
void forwarder_progress(forwarder *f, uint64_t applied_index);

/* A message from member `from` (proven by its link). */
void forwarder_receive(forwarder *f, uint64_t from, const uint8_t *msg, size_t len);

/* Forwarded proposals waiting here (status). */
uint64_t forwarder_waiting(const forwarder *f);

/* From node.c: a barrier on this node only (never forwarded); the leader
 * serves a read index with it. Same contract as consensus_barrier. */
int consensus_barrier_local(consensus_node *node, consensus_done_cb cb, void *arg);
/* From node.c: releases an fsm result nobody waits for. */
void consensus_free_result(consensus_node *node, void *result);

#endif

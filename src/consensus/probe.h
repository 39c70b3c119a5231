/* What a member that restarts from its data dir asks the other members about
 * itself before it starts raft (so before it can vote or serve), and how it
 * judges the answers (DESIGN.md section 5; docs/design-changes.md, rollback).
 *
 * A member restarted from an old copy of its data dir would vote and serve
 * with a log shorter than what it promised: raft's safety rests on a member
 * never forgetting what it acknowledged or the term it reached. What the
 * others can prove about it:
 * - the leader's match index for it (libraft's progress, kept in memory by
 *   the leader of the current term from the member's first acknowledgement
 *   on): the member acknowledged, so had on disk, every entry up to it. A log
 *   that ends before it was rolled back (or lost writes).
 * - a leader holding a non-zero match index for it in term T knows it stored
 *   term T: a data dir whose stored term is below T was rolled back.
 * Nothing else can be told from a lag: a member down for a while is behind
 * the commit index and term in the same way an old copy is.
 *
 * Wire (on channel PEER_PROBE, net/peer.h; the asking member is the one its
 * certificate proves, never a field):
 *   request: "LSKQ" version (1 byte, 1)
 *   reply:   "LSKA" version (1 byte, 1) flags (1 byte: bit 0 raft runs,
 *            bit 1 leads, bit 2 its committed membership does not list the
 *            asker) leader id, term, applied index, match index (8
 *            bytes each, big-endian).
 * The removed flag is judged on the membership at the applied index: a
 * member whose own membership lists itself at an applied index no later
 * than that was removed since, by a committed entry (probe_says_removed).
 * That is how a running member learns its removal when it never applied
 * it: removed while it could not hear the leader, which then no longer
 * replicates to it (etcd's peers answer a removed member's messages
 * "removed" likewise).
 * A member that is itself starting answers with no flags and zeros: it
 * knows nothing yet. */
#ifndef LSKV_CONSENSUS_PROBE_H
#define LSKV_CONSENSUS_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROBE_REQUEST_BYTES 5
#define PROBE_REPLY_BYTES 38

struct probe_reply {
    bool running;         /* the answering member's raft runs */
    bool leader;          /* it leads term `term` */
    uint64_t leader_id;   /* the leader it knows, 0 if none */
    uint64_t term;        /* its current term */
    uint64_t applied_index; /* its committed membership is the one at this
                               index (0: it says nothing about membership) */
    uint64_t match_index; /* leader only: the asking member acknowledged up
                             to here in this term; 0 when unknown */
    bool removed;         /* its committed membership does not list the asker */
};

/* What the asking member's data dir holds. */
struct probe_self {
    uint64_t last_index; /* last entry of the raft log (or its snapshot) */
    uint64_t term;       /* raft's stored current term */
};

void probe_request_encode(uint8_t out[PROBE_REQUEST_BYTES]);
/* 0, or LSKV_ECORRUPT (anything but a request). */
int probe_request_decode(const uint8_t *buf, size_t len);
void probe_reply_encode(const struct probe_reply *r, uint8_t out[PROBE_REPLY_BYTES]);
/* 0, or LSKV_ECORRUPT (wrong length, magic or version; unknown flags; a
 * leader flag without running, or a match index from a non-leader). */
int probe_reply_decode(const uint8_t *buf, size_t len, struct probe_reply *out);

/* Judges one reply from member `from`: 0 (nothing against starting),
 * LSKV_EREMOVED when the leader says its membership no longer lists this
 * member (a follower's word is not taken: it may not have applied a recent
 * MemberAdd yet), or LSKV_ECORRUPT with errmsg (LSKV_ERRMSG_SIZE) giving
 * the numbers: the data dir was rolled back. */
int probe_judge(const struct probe_self *self, uint64_t from, const struct probe_reply *r,
                char *errmsg);

/* For a running member whose membership at applied index `applied` lists
 * it: whether reply says it was removed since (whoever answers: the answer
 * is about committed entries). */
bool probe_says_removed(const struct probe_reply *r, uint64_t applied);

/* Whether the answers so far are enough to start: a leader answered (only
 * a leader can know), or every other member did, or members that make a
 * majority of n_members with this one did and bound_passed (the leader
 * may be slow or gone). Fewer than a majority: wait (with no majority this
 * member could not be elected or commit anyway, and the members that start
 * together answer each other before their own start). */
bool probe_enough(size_t n_members, size_t answered, bool leader_answered, bool bound_passed);

#endif

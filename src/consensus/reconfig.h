/* Raft's configuration follows the committed membership (statemachine/
 * member_table.h), driven by the leader: the table changes only through
 * log entries every member applies; the leader then moves libraft's
 * configuration toward it one change at a time (libraft 0.15 allows one in
 * flight), and a new leader resumes where the old one stopped. A member the
 * table lists is added (raft_add: RAFT_SPARE), made RAFT_STANDBY (it
 * replicates the log but does not vote: etcd's learner) and, unless it is a
 * learner, RAFT_VOTER (libraft catches it up first and fails the change if
 * it does not catch up: it is tried again later). A server the table no
 * longer lists is removed (raft_remove), except the leader itself: a
 * removed member stops once it applied its removal, and the next leader
 * removes it.
 *
 * Also the leader's checks before a change is proposed (etcd's
 * mayAddMember, mayRemoveMember, mayPromoteMember), which need the
 * replication progress only the leader has. */
#ifndef LSKV_CONSENSUS_RECONFIG_H
#define LSKV_CONSENSUS_RECONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "consensus/node.h"

struct consensus_want {
    uint64_t id;
    const char *address; /* peer "host:port" raft connects to */
    bool voter;          /* false: a learner */
    bool started;        /* it published its name (etcd's IsStarted) */
};

/* On the leader, starts the next change toward want (n members). Returns 1
 * when a change was started or is in flight, 0 when raft's configuration
 * matches want (or this node does not lead, or closes), or an error of
 * libraft's mapped: LSKV_ENOMEM, LSKV_EINVAL. */
int consensus_reconcile(consensus_node *node, const struct consensus_want *want, size_t n);

/* Since when the leader has heard from each member without a gap (raft's
 * recent_recv, sampled: libraft clears it every election timeout, so a gap
 * is two election timeouts without it). etcd counts a peer as connected
 * once its stream has been up for HealthInterval. Owned by the caller,
 * zeroed at first. */
#define CONSENSUS_SEEN_MAX 64
#define CONSENSUS_HEALTH_MS 5000 /* etcd's HealthInterval */
struct consensus_seen {
    uint64_t id[CONSENSUS_SEEN_MAX];
    uint64_t since[CONSENSUS_SEEN_MAX]; /* start of the current streak */
    uint64_t last[CONSENSUS_SEEN_MAX];  /* last sample that heard it */
    size_t n;
};
/* Samples raft's progress on the leader (call at least every 200 ms);
 * forgets everything on a member that does not lead. */
void consensus_seen_update(consensus_node *node, struct consensus_seen *s, uint64_t now_ms);

enum consensus_change_op {
    CONSENSUS_CHECK_ADD_VOTER = 1,
    CONSENSUS_CHECK_REMOVE = 2,
    CONSENSUS_CHECK_PROMOTE = 3,
    CONSENSUS_CHECK_ADD_LEARNER = 4,
};

/* On the leader: may change op on member id go ahead now? members are the
 * committed membership (the table's, not raft's: a voter added but not
 * started yet counts, as in etcd; addresses unused). A member is connected
 * while the leader hears from it without a gap, and up once connected for
 * CONSENSUS_HEALTH_MS (etcd's isConnectedSince).
 * promote: id's log must have reached 90% of the leader's (etcd's
 *   readyPercent), else LSKV_ELEARNERNOTREADY; checked before whether id is
 *   a learner, as etcd (an unknown id passes: apply answers it).
 * With strict (--strict-reconfig-check), etcd's checks in etcd's order:
 * started members (etcd's IsReadyTo{Add,Remove,Promote}Member: a quorum of
 * the voters after the change must have started; else
 * LSKV_ENOTENOUGHSTARTED) first, for adding a voter, removing a voter and
 * promoting; then adding a member (learner too) needs every voter up;
 * removal of a connected voter must leave a quorum of the remaining voters
 * up (a member that is down may go); else LSKV_EUNHEALTHY.
 * Errors: LSKV_ENOTLEADER (this node does not lead), LSKV_EINVAL (op). */
int consensus_check_change(consensus_node *node, enum consensus_change_op op, uint64_t id,
                           bool strict, const struct consensus_want *members, size_t n,
                           const struct consensus_seen *s, uint64_t now_ms);

/* From node.c: the node's raft while it leads and is open, else NULL. */
struct raft *consensus_leader_raft(consensus_node *node);

#endif

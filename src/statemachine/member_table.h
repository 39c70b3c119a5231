/* The cluster's membership as committed log entries made it: every member's
 * id, peer URLs and learner flag (etcd's raft attributes: the bootstrap list,
 * then MemberAdd / MemberRemove / MemberUpdate / MemberPromote), and what
 * each member published (etcd's publish at start: name and client URLs).
 * Every member applies the same entries, so every member lists the same
 * members, admits the same joiners and its leader drives raft's
 * configuration toward the same list (DESIGN.md section 5). Replicated
 * state: part of the state machine's snapshot (section MEMBERS: a packed
 * etcdserverpb.MemberListResponse).
 *
 * A table is "initialized" once it holds the bootstrap list (the first
 * MEMBERS_INIT entry; later ones change nothing): then some member has peer
 * URLs (etcd refuses a member without one). Before that it holds only what
 * members published, and the daemon lists the --initial-cluster membership. */
#ifndef LSKV_STATEMACHINE_MEMBER_TABLE_H
#define LSKV_STATEMACHINE_MEMBER_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/rpc.pb-c.h"

#define MEMBER_TABLE_MAX 64       /* members; more is refused */
#define MEMBER_TABLE_MAX_LEARNERS 1 /* etcd 3.4's maxLearners */

struct member_table {
    Etcdserverpb__Member *m[MEMBER_TABLE_MAX]; /* owned copies, in insertion order */
    size_t n;
};

bool member_table_initialized(const struct member_table *t);

/* The bootstrap list (ids and peer URLs; names and client URLs ignored):
 * on a table not yet initialized, gives each listed member its peer URLs
 * (adding it when it had not published yet). A no-op once initialized.
 * Errors: LSKV_EINVAL (a member with id 0 or no peer URL, too many),
 * LSKV_ENOMEM. */
int member_table_init(struct member_table *t, const Etcdserverpb__Member *const *list,
                      size_t n);

/* Records what member m->id published (its name and client URLs; its peer
 * URLs and learner flag stay). Once initialized, a member not in the table
 * (removed) changes nothing. Errors: LSKV_EINVAL (id 0, table full),
 * LSKV_ENOMEM. */
int member_table_set(struct member_table *t, const Etcdserverpb__Member *m);

/* etcd's membership changes, with etcd's checks (membership/cluster.go
 * ValidateConfigurationChange). All need an initialized table
 * (LSKV_ENOTREADY otherwise).
 * add: m's id, peer URLs, learner flag. Errors: LSKV_EINVAL (id 0, no peer
 *   URL, table full), LSKV_EMEMBEREXIST, LSKV_EPEERURLEXIST (a URL another
 *   member has), LSKV_ETOOMANYLEARNERS (a learner while
 *   MEMBER_TABLE_MAX_LEARNERS are), LSKV_ENOMEM.
 * remove: LSKV_EMEMBERNOTFOUND.
 * update: the peer URLs of id (name, client URLs and learner flag stay).
 *   Errors: LSKV_EMEMBERNOTFOUND, LSKV_EPEERURLEXIST, LSKV_EINVAL (no URL),
 *   LSKV_ENOMEM.
 * promote: a learner becomes a voter. Errors: LSKV_EMEMBERNOTFOUND,
 *   LSKV_EMEMBERNOTLEARNER. */
int member_table_add(struct member_table *t, const Etcdserverpb__Member *m);
int member_table_remove(struct member_table *t, uint64_t id);
int member_table_update(struct member_table *t, uint64_t id, char *const *peer_urls,
                        size_t n_peer_urls);
int member_table_promote(struct member_table *t, uint64_t id);

/* Member id, or NULL. */
const Etcdserverpb__Member *member_table_get(const struct member_table *t, uint64_t id);
/* The member whose peer URLs include url, or NULL. */
const Etcdserverpb__Member *member_table_find_url(const struct member_table *t,
                                                  const char *url);
/* The members sorted by id (as etcd lists them) into out (MEMBER_TABLE_MAX
 * slots, borrowed pointers); returns how many. */
size_t member_table_sorted(const struct member_table *t, const Etcdserverpb__Member **out);

/* Snapshot section. Errors: LSKV_ENOMEM; decode: LSKV_ECORRUPT. */
int member_table_encode(const struct member_table *t, uint8_t **out, size_t *len);
int member_table_decode(struct member_table *t, const uint8_t *buf, size_t len);

void member_table_clear(struct member_table *t);

#endif

/* What members publish through the log: each member's name and client URLs
 * (etcd's publish of its member attributes at start), so that every member
 * answers MemberList with the client URLs of all (etcdctl endpoint status
 * --cluster, clients that sync their endpoints). Replicated state: part of
 * the state machine's snapshot (section MEMBERS: a packed
 * etcdserverpb.MemberListResponse holding the published members). */
#ifndef LSKV_STATEMACHINE_MEMBER_TABLE_H
#define LSKV_STATEMACHINE_MEMBER_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "proto/rpc.pb-c.h"

#define MEMBER_TABLE_MAX 64 /* members published; more is refused */

struct member_table {
    Etcdserverpb__Member *m[MEMBER_TABLE_MAX]; /* owned copies, in publish order */
    size_t n;
};

/* Records (or replaces) what member m->id published: its name and client
 * URLs. Errors: LSKV_EINVAL (id 0, or the table is full), LSKV_ENOMEM. */
int member_table_set(struct member_table *t, const Etcdserverpb__Member *m);
/* What member id published, or NULL. */
const Etcdserverpb__Member *member_table_get(const struct member_table *t, uint64_t id);

/* Snapshot section. Errors: LSKV_ENOMEM; decode: LSKV_ECORRUPT. */
int member_table_encode(const struct member_table *t, uint8_t **out, size_t *len);
int member_table_decode(struct member_table *t, const uint8_t *buf, size_t len);

void member_table_clear(struct member_table *t);

#endif

/* Leases, as etcd 3.4's lessor (lease/lessor.go): which leases exist, the
 * TTL each was granted, and which keys each one holds.
 *
 * Two kinds of state live here, and the split is the point of the module:
 * - Replicated: the leases, their granted TTLs and their keys. Changed only
 *   by apply (grant, attach/detach through the store's writes, remove after
 *   a revoke), the same on every member, and written to snapshots
 *   (lessor_encode). Apply never reads a clock.
 * - Leader-local: when each lease expires (monotonic milliseconds). A lease
 *   is granted with no expiry; the leader starts its clock
 *   (lessor_start_clocks) at grant, at start-up and on becoming leader
 *   (etcd's Promote: the whole TTL again plus an extension, so no lease
 *   expires early because of a restart or an election). Keep-alives renew
 *   it; the leader proposes a revoke for each expired lease (etcd: a lease
 *   past its expiry is not renewed, its revoke is on its way).
 *
 * A key belongs to at most one lease. Memory: a lease is ~64 bytes, each
 * attached key ~48 bytes plus the key. Not thread safe. */
#ifndef LSKV_LEASE_LESSOR_H
#define LSKV_LEASE_LESSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"

typedef struct lessor lessor;

#define LEASE_MAX_TTL 9000000000LL /* etcd's MaxLeaseTTL, seconds */

/* min_ttl: the TTL floor in seconds (etcd: ceil(1.5 x election timeout)).
 * Errors: LSKV_ENOMEM. */
int lessor_new(int64_t min_ttl, lessor **out);
void lessor_free(lessor *l);

size_t lessor_count(const lessor *l);

/* Counts for /metrics (etcd's etcd_debugging_lease_*_total). */
struct lessor_stats {
    uint64_t granted, revoked, renewed;
};
void lessor_stats(const lessor *l, struct lessor_stats *out);

/* ---- apply (replicated state) ---- */

/* Grants lease id (> 0) with ttl seconds (below the floor: the floor); the
 * lease has no expiry until lessor_start_clocks. *granted is the TTL kept.
 * Errors: LSKV_ELEASEEXISTS, LSKV_ELEASETTLTOOLARGE (ttl > LEASE_MAX_TTL),
 * LSKV_ELEASENOTFOUND (id 0, as etcd), LSKV_ENOMEM. */
int lessor_grant(lessor *l, int64_t id, int64_t ttl, int64_t *granted);
bool lessor_exists(const lessor *l, int64_t id);
/* The lease key is attached to, or 0. */
int64_t lessor_lease_of(const lessor *l, const uint8_t *key, size_t key_len);
/* Attaches key to lease id (which must exist), moving it from the lease it
 * had; id 0 detaches it. Errors: LSKV_ELEASENOTFOUND, LSKV_ENOMEM. */
int lessor_set_key(lessor *l, const uint8_t *key, size_t key_len, int64_t id);
/* The keys of lease id in key order, copied into a (etcd's Revoke deletes
 * them sorted). Errors: LSKV_ELEASENOTFOUND, LSKV_ENOMEM. */
int lessor_keys(const lessor *l, int64_t id, struct arena *a, uint8_t ***keys,
                size_t **lens, size_t *n);
/* Removes lease id and detaches its keys (the store has deleted them).
 * Errors: LSKV_ELEASENOTFOUND. */
int lessor_remove(lessor *l, int64_t id);

/* ---- leader-local time ---- */

struct lease_info {
    int64_t id;
    int64_t granted_ttl;   /* seconds */
    int64_t remaining_ms;  /* until expiry; granted TTL in ms when no clock yet */
    size_t n_keys;
};

/* Errors: LSKV_ELEASENOTFOUND. */
int lessor_info(const lessor *l, int64_t id, uint64_t now_ms, struct lease_info *out);
/* Ids of every lease, in id order, into a. Errors: LSKV_ENOMEM. */
int lessor_ids(const lessor *l, struct arena *a, int64_t **ids, size_t *n);
/* Gives every lease granted since the last call an expiry: now + TTL +
 * extend_ms (O(new leases): call it after every apply). With restart set,
 * every lease gets one (etcd's Promote). */
void lessor_start_clocks(lessor *l, uint64_t now_ms, uint64_t extend_ms, bool restart);
/* Renews lease id: expiry = now + TTL; *ttl is its granted TTL.
 * Errors: LSKV_ELEASENOTFOUND (no such lease, or it already expired). */
int lessor_renew(lessor *l, int64_t id, uint64_t now_ms, int64_t *ttl);
/* Up to max ids of expired leases (expiry <= now) whose revoke is not yet
 * pending, oldest expiry first; marks them pending until now + retry_ms
 * (a lost proposal is retried then). Returns how many. */
size_t lessor_expired(lessor *l, uint64_t now_ms, uint64_t retry_ms, int64_t *ids, size_t max);

/* ---- snapshots ---- */

/* The replicated state, in id order (format in lessor.c).
 * Errors: LSKV_ENOMEM. */
int lessor_encode(const lessor *l, uint8_t **out, size_t *out_len);
/* Replaces the replicated state with buf's; clocks are cleared.
 * Errors: LSKV_ECORRUPT (malformed), LSKV_EFORMAT (unknown version),
 * LSKV_ENOMEM. On error l is empty. */
int lessor_decode(lessor *l, const uint8_t *buf, size_t len);

#endif

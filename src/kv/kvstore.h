/* The MVCC key-value store with etcd 3.4 semantics, over the trusted key index
 * (kv/index.c) and sealed records (storage/recstore.h).
 *
 * Deterministic: the write functions are called only from Raft apply, in log
 * order, on every node, and depend on nothing but the store and the request.
 * Revisions, create/mod revisions and versions follow etcd exactly: a fresh
 * store is at revision 1; every write request that changes something bumps
 * the revision once, its n-th change gets sub revision n-1; a request that
 * changes nothing leaves the revision alone.
 *
 * Responses are protobuf-c structs allocated from the caller's arena; kv fills
 * header->revision only (the API layer fills cluster_id, member_id and
 * raft_term). Request validation that etcd does before proposing (empty key,
 * too many txn ops, duplicate keys in a txn) is kvstore_validate_*; apply
 * repeats what it needs to stay safe on bad input. */
#ifndef LSKV_KV_KVSTORE_H
#define LSKV_KV_KVSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "proto/rpc.pb-c.h"
#include "storage/recstore.h"

typedef struct kvstore kvstore;

#define KV_TXN_OPS_DEFAULT 128 /* etcd's --max-txn-ops default */
/* The largest --max-txn-ops: validation compares each put of a txn with the
 * others and with its deletes (quadratic, a few ms at this bound); etcd sets
 * no bound. */
#define KV_TXN_OPS_LIMIT 4096
/* Txns nest at most this many levels below the top whatever --max-txn-ops
 * allows (apply recurses per level); deeper nesting gets etcd's "too many
 * operations" answer, the one it gives at its default budget. */
#define KV_TXN_MAX_DEPTH 128

/* rs is borrowed and must outlive the store. Errors: LSKV_ENOMEM. */
int kvstore_open(recstore *rs, kvstore **out);
void kvstore_close(kvstore *kv);

int64_t kvstore_revision(const kvstore *kv);         /* current revision (>= 1) */
int64_t kvstore_compact_revision(const kvstore *kv); /* 0 if never compacted */
size_t kvstore_key_count(const kvstore *kv);         /* live keys */

/* etcd's mvcc counters (etcd_mvcc_{range,put,delete,txn}_total): range
 * calls served, puts and delete-range calls applied (a call, not a key,
 * as etcd counts them; txn compares are ranges), and writes of more than
 * one of them. This member's, since it started. */
struct kvstore_counts {
    uint64_t ranges, puts, deletes, txns;
};
struct kvstore_counts kvstore_counts(const kvstore *kv);

/* Deferred commits. Off (the default): every write that changes something
 * ends with recstore_commit, one engine write per request. On: a write only
 * stages its records in the record store's pending batch (visible to every
 * read at once, recstore.h invariant 5) and the owner calls recstore_commit
 * later, e.g. once per event loop turn, so that many applied entries share one
 * engine write. An engine failure then surfaces from that recstore_commit
 * instead of failing the write (the record store is sticky-failed and every
 * later write fails with LSKV_EIO). Safe because the engine is not the source
 * of truth: the Raft log is, and it holds every applied entry. */
void kvstore_set_deferred_commit(kvstore *kv, bool on);

/* Lease existence, asked by put (lease != 0) before it writes. Until one is
 * set, no lease exists (LSKV_ELEASENOTFOUND). fn must be deterministic. */
typedef bool (*kvstore_lease_fn)(void *arg, int64_t lease);
void kvstore_set_lease_lookup(kvstore *kv, kvstore_lease_fn fn, void *arg);

/* The changes made by the last successful write (put, delete_range, txn), in
 * order: change i has revision (kvstore_revision, i); a tombstone is a
 * deletion. For watch fan-out and lease attachment. Borrowed: valid until the
 * next write, and no longer than the request and arena passed to that write.
 * Zero after a write that changed nothing or failed, and after compaction. */
const struct kv_record *kvstore_changes(const kvstore *kv, size_t *n);
/* Forgets the last write's changes (kvstore_changes gives none): the state
 * machine calls it before each command, so a command that is not a store
 * write (a lease grant, a signature) is not taken for the write before it,
 * whose changes point into freed request memory. */
void kvstore_forget_changes(kvstore *kv);

/* History, for watch catch-up: every change with main revision in
 * [from_rev, to_rev] (to_rev above the current revision: up to it) whose
 * key is in [key, range_end) (etcd's range rules), in revision order, read
 * and verified by record id from the revision log (kv/history.c): no key
 * scan, and no record can be left out. rec (in a) is valid during cb; cb's
 * non-zero return stops the walk and is returned. Errors: LSKV_ECOMPACTED
 * (from_rev below the compaction point), LSKV_ECORRUPT (a record missing or
 * failing verification; errmsg says which), LSKV_EIO, LSKV_ENOMEM. */
/* etcd's HashKV at rev (0: the current revision): CRC-32C over the records
 * etcd's bolt bucket would hold and hash (kv/hash.c), read and verified by
 * record id. *compact_rev gets etcd's compactMainRev (-1: never compacted).
 * Errors: LSKV_ECOMPACTED (0 < rev <= the compaction point), LSKV_EFUTUREREV,
 * LSKV_ECORRUPT (a record missing or failing verification), LSKV_EIO,
 * LSKV_ENOMEM. Memory: a window of records at a time, not the store. */
int kvstore_hash_kv(kvstore *kv, int64_t rev, uint32_t *hash, int64_t *compact_rev,
                    char *errmsg);

typedef int (*kvstore_history_fn)(void *arg, const struct kv_record *rec, int64_t main,
                                  int64_t sub);
int kvstore_history(kvstore *kv, const ProtobufCBinaryData *key,
                    const ProtobufCBinaryData *range_end, int64_t from_rev, int64_t to_rev,
                    struct arena *a, kvstore_history_fn cb, void *arg, char *errmsg);

/* Reads. Errors: LSKV_ECOMPACTED, LSKV_EFUTUREREV, LSKV_ECORRUPT (a record
 * failed verification; errmsg says which), LSKV_ENOMEM. */
int kvstore_range(kvstore *kv, const Etcdserverpb__RangeRequest *req, struct arena *a,
                  Etcdserverpb__RangeResponse **resp, char *errmsg);
/* The same for the server's own reads (a watch's previous values): etcd's
 * mvcc makes them without its range counter. */
int kvstore_range_uncounted(kvstore *kv, const Etcdserverpb__RangeRequest *req,
                            struct arena *a, Etcdserverpb__RangeResponse **resp, char *errmsg);

/* Checks etcd applies before proposing. Errors: LSKV_EEMPTYKEY,
 * LSKV_ETOOMANYOPS, LSKV_EDUPKEY, LSKV_EKEYNOTFOUND (empty txn request op). */
int kvstore_validate_range(const Etcdserverpb__RangeRequest *req);
/* Errors: LSKV_EEMPTYKEY, LSKV_EVALUEPROVIDED (ignore_value with a value),
 * LSKV_ELEASEPROVIDED (ignore_lease with a lease). */
int kvstore_validate_put(const Etcdserverpb__PutRequest *req);
int kvstore_validate_delete_range(const Etcdserverpb__DeleteRangeRequest *req);
/* max_ops is --max-txn-ops (1..KV_TXN_OPS_LIMIT; out of range counts as
 * the default): per branch and per compare list, nested txns sharing the
 * budget as in etcd's checkTxnRequest, and nesting at most KV_TXN_MAX_DEPTH
 * deep. */
int kvstore_validate_txn(const Etcdserverpb__TxnRequest *req, long max_ops);

/* Writes, from apply only. On error nothing changed. Errors as etcd's apply:
 * LSKV_EKEYNOTFOUND (ignore_value/ignore_lease on a missing key),
 * LSKV_ELEASENOTFOUND (lease != 0 while no leases exist), LSKV_ECOMPACTED,
 * LSKV_EFUTUREREV (ranges inside a txn; compaction), LSKV_ECORRUPT, LSKV_EIO,
 * LSKV_ENOMEM. */
int kvstore_put(kvstore *kv, const Etcdserverpb__PutRequest *req, struct arena *a,
                Etcdserverpb__PutResponse **resp, char *errmsg);
int kvstore_delete_range(kvstore *kv, const Etcdserverpb__DeleteRangeRequest *req,
                         struct arena *a, Etcdserverpb__DeleteRangeResponse **resp,
                         char *errmsg);
int kvstore_txn(kvstore *kv, const Etcdserverpb__TxnRequest *req, struct arena *a,
                Etcdserverpb__TxnResponse **resp, char *errmsg);
/* Physical compaction: drops index generations and records below revision.
 * Errors: LSKV_ECOMPACTED (revision <= compacted), LSKV_EFUTUREREV. */
int kvstore_compact(kvstore *kv, const Etcdserverpb__CompactionRequest *req,
                    struct arena *a, Etcdserverpb__CompactionResponse **resp,
                    char *errmsg);

/* Snapshot of the trusted state (revision, compaction point, the whole key
 * index) as one malloc'ed buffer the caller frees; the records themselves stay
 * in the engine, which the caller syncs first. Plaintext: the consensus layer
 * seals it. Format: docs/snapshot-format.md. */
int kvstore_snapshot(kvstore *kv, uint8_t **buf, size_t *len);
/* Replaces the state with a snapshot. Errors: LSKV_ECORRUPT, LSKV_EFORMAT,
 * LSKV_ENOMEM (state unchanged on error). */
int kvstore_restore(kvstore *kv, const uint8_t *buf, size_t len);
/* Every record a snapshot's index needs (each key's revisions, as
 * kvindex_entry_since reports them), in key order, through cb: the key,
 * the revision, whether it is a tombstone, and for a put its
 * create_revision and version. Stops and returns cb's value when non-zero.
 * Used by a member that installed a snapshot and must fetch the records
 * it lacks. Errors: LSKV_ECORRUPT, LSKV_EFORMAT, LSKV_ENOMEM. */
struct kvstore_needed {
    const uint8_t *key;
    size_t key_len;
    int64_t main, sub;
    bool tombstone;
    int64_t create_revision, version; /* 0 for a tombstone */
};
int kvstore_snapshot_records(const uint8_t *buf, size_t len,
                             int (*cb)(void *arg, const struct kvstore_needed *n), void *arg);
/* Decodes a snapshot's key index on its own (a backup walks the revisions
 * it names): *out (free with kvindex_free) and the snapshot's revision.
 * Errors: those of kvstore_restore. */
struct kvindex;
int kvstore_snapshot_index(const uint8_t *buf, size_t len, struct kvindex **out,
                           int64_t *revision);

#endif

/* Internals shared by kv/kvstore.c (store, range, put, delete, compaction,
 * snapshot) and kv/txn.c (compares, txn validation and execution). Not part
 * of the module API. */
#ifndef LSKV_KV_KVSTORE_IMPL_H
#define LSKV_KV_KVSTORE_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv/index.h"
#include "kv/kvstore.h"

/* The revision log (kv/history.c). */
struct kv_history {
    int64_t base;            /* first main revision logged; 0: none yet */
    uint32_t *subs;          /* changes per main revision from base */
    size_t n, cap;
    uint32_t *base_subs;     /* NULL, or the subs surviving at base (sorted) */
    size_t n_base_subs, cap_base_subs;
};

struct kvstore {
    recstore *rs;            /* borrowed */
    kvindex *ix;             /* owned */
    int64_t rev;             /* current revision */
    int64_t compact_main;    /* etcd's compactMainRev: -1 until the first compaction */
    kvstore_lease_fn lease_exists; /* NULL: no lease exists */
    void *lease_arg;
    bool defer_commit;       /* kvstore_set_deferred_commit */
    struct kvstore_counts counts;

    /* The write in progress: its changes (records of revision rev + 1, the
     * n-th with sub revision n) and, in step, the index entries to undo. */
    bool writing;
    struct kv_record *changes;
    kvindex_entry **undo;
    size_t n_changes, cap_changes;
    struct kv_history history;
};

/* A range of keys: end_len 0 is the single key; end_all means every key >=
 * key (etcd's range_end "\0"). */
struct keyrange {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *end;
    size_t end_len;
    bool end_all;
};

void keyrange_from(struct keyrange *r, const ProtobufCBinaryData *key,
                   const ProtobufCBinaryData *range_end);

/* Calls cb for every key in r that exists at at_rev, in key order; stops and
 * returns cb's value when it is non-zero. */
typedef int (*kv_visit_fn)(void *arg, const kvindex_entry *e, const struct kvindex_hit *hit);
int kv_visit(kvstore *kv, const struct keyrange *r, int64_t at_rev, kv_visit_fn cb, void *arg);

/* Reads and checks the record of e at hit into a KeyValue allocated from a.
 * Errors: LSKV_ECORRUPT, LSKV_EIO, LSKV_ENOMEM. */
int kv_read(kvstore *kv, const kvindex_entry *e, const struct kvindex_hit *hit,
            struct arena *a, Mvccpb__KeyValue **out, char *errmsg);

/* The revision reads inside the current write see (etcd's storeTxnWrite.Range). */
static inline int64_t kv_read_rev(const kvstore *kv)
{
    return kv->rev + (kv->writing && kv->n_changes > 0 ? 1 : 0);
}

Etcdserverpb__ResponseHeader *kv_header(struct arena *a, int64_t revision);

/* Write steps, used alone and inside txns. in_txn: the lease check was done
 * by the txn's pre-checks (etcd's checkRequestPut). */
int kv_exec_range(kvstore *kv, const Etcdserverpb__RangeRequest *req, int64_t cur_rev,
                  struct arena *a, Etcdserverpb__RangeResponse **resp, char *errmsg);
int kv_exec_put(kvstore *kv, const Etcdserverpb__PutRequest *req, bool in_txn,
                struct arena *a, Etcdserverpb__PutResponse **resp, char *errmsg);
int kv_exec_delete(kvstore *kv, const Etcdserverpb__DeleteRangeRequest *req,
                   struct arena *a, Etcdserverpb__DeleteRangeResponse **resp, char *errmsg);

/* Starts a write; kv_write_end stages the changes and commits them (rv == 0)
 * or undoes them (rv != 0), and returns the final status. */
void kv_write_begin(kvstore *kv);
int kv_write_end(kvstore *kv, int rv, char *errmsg);

int kv_lease_check(kvstore *kv, int64_t lease);

/* The revision log. reserve makes room for one more revision (the only step
 * that can fail: LSKV_ENOMEM); append logs revision main's n changes.
 * compact moves the base to at, dropping the subs compaction deleted there;
 * rebuild makes the log from the index (after a restore). Errors:
 * LSKV_ENOMEM, LSKV_ECORRUPT (an index revision outside [base, rev]). */
int kv_history_reserve(struct kv_history *h);
void kv_history_append(struct kv_history *h, int64_t main, size_t n);
int kv_history_compact(struct kv_history *h, int64_t at, const uint32_t *dropped_at,
                       size_t n_dropped);
int kv_history_rebuild(struct kv_history *h, const kvindex *ix, int64_t compact_main,
                       int64_t rev);
void kv_history_free(struct kv_history *h);

#endif

/* Watch, as etcd 3.4's watchable store and v3rpc watch stream
 * (mvcc/watchable_store.go, etcdserver/api/v3rpc/watch.go): many watchers
 * per stream, each on a key or range from a start revision, told every
 * change in revision order, the changes of one revision together.
 *
 * A watcher is synced when it has been sent everything up to the current
 * revision: then each applied write is routed to it at once
 * (watch_hub_notify). Otherwise it is unsynced and catches up from history
 * (watch_hub_sync), read by record id in revision order through the
 * verified record path (kvstore_history): a record that fails verification
 * cancels that watcher with etcd's "corrupt cluster" and raises the alarm;
 * a forged event is never sent. A watcher starting below the compaction
 * point is cancelled with compact_revision, as etcd does.
 *
 * Slow readers: a stream whose client has not read more than
 * max_queued_bytes stops getting events; its watchers become unsynced at the
 * revision they reached and catch up from history once the client reads
 * again, so a stalled client costs bounded memory, never a lost event. The
 * same happens to every stream holding WATCH_STREAM_SHARE_BYTES or more
 * while all output together exceeds max_total_queued_bytes: many slow
 * streams stay within one server-wide budget.
 *
 * Everything runs on the loop thread. */
#ifndef LSKV_WATCH_WATCH_H
#define LSKV_WATCH_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv/kvstore.h"
#include "proto/rpc.pb-c.h"

/* What a stream may hold while the server is over its output budget. */
#define WATCH_STREAM_SHARE_BYTES (64u << 10)

typedef struct watch_hub watch_hub;
typedef struct watch_stream watch_stream;

/* Where a stream's responses go. */
struct watch_sink {
    /* Sends one packed WatchResponse; non-zero: the stream is gone. */
    int (*send)(void *arg, const uint8_t *msg, size_t len);
    /* Bytes sent on the stream that the client has not read yet. */
    size_t (*queued)(void *arg);
    void *arg;
};

struct watch_hub_config {
    kvstore *kv;                        /* borrowed */
    /* cluster id, member id, raft term (the revision is set here). */
    void (*fill_header)(void *arg, Etcdserverpb__ResponseHeader *h);
    /* An integrity fault while reading history (errmsg says which). */
    void (*on_corrupt)(void *arg, const char *errmsg);
    void *arg;
    size_t max_queued_bytes;            /* per stream; 0: 4 MiB */
    /* Server-wide: bytes queued for clients on all streams (and other
     * calls); NULL or max 0: no server-wide bound. */
    size_t (*total_queued)(void *arg);
    size_t max_total_queued_bytes;
    size_t fragment_bytes;              /* a watcher created with fragment gets
                                           responses cut below this (etcd:
                                           --max-request-bytes + 512 KiB) */
};

/* Errors: LSKV_ENOMEM. */
int watch_hub_new(const struct watch_hub_config *config, watch_hub **out);
/* Closes every stream still open. NULL is a no-op. */
void watch_hub_free(watch_hub *h);

/* A new stream; NULL when out of memory. sink is copied. */
watch_stream *watch_stream_open(watch_hub *h, const struct watch_sink *sink);
/* Cancels its watchers silently and frees it. */
void watch_stream_close(watch_stream *s);
/* One WatchRequest of the stream's client (create, cancel, progress), as
 * etcd answers it. Errors: LSKV_ENOMEM (the stream should end). */
int watch_stream_request(watch_stream *s, const Etcdserverpb__WatchRequest *req);

/* After every applied write that changed something: its changes
 * (kvstore_changes) go to the synced watchers they match. */
void watch_hub_notify(watch_hub *h);
/* Catch-up work for unsynced watchers, at most budget revisions read.
 * Returns true while some unsynced watcher could make progress. */
bool watch_hub_sync(watch_hub *h, size_t budget);
/* etcd's progress notification: an empty response with the current
 * revision to every synced watcher that asked for them (progress_notify)
 * and got no event since the last call. */
void watch_hub_progress(watch_hub *h);

struct watch_stats {
    size_t watchers, unsynced, streams;
    uint64_t events_sent;
};
void watch_hub_stats(const watch_hub *h, struct watch_stats *out);

#endif

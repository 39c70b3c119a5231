/* Maintenance.Snapshot: streams a backup (statemachine/backup.h,
 * docs/backup-format.md) that `etcdctl snapshot save` accepts.
 *
 * The state machine snapshot is taken once, at the call (the store is
 * consistent between loop callbacks); the records it names are then read
 * and sealed a few at a time on later loop turns, paced by HTTP/2 flow
 * control, so neither the values of the whole store nor the whole file are
 * ever held. Records are immutable, so later writes do not disturb the
 * backup; a compaction that removes a record still to be sent ends the call
 * with etcd's "required revision has been compacted". */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "common/arena.h"
#include "common/err.h"
#include "common/log.h"
#include "crypto/keyfile.h"
#include "kv/index.h"
#include "statemachine/backup.h"

#define BLOB_BYTES (32u << 10)     /* etcd's snapshotSendBufferSize */
#define MAX_PENDING (1u << 20)     /* queued response bytes before we wait */
#define RECORDS_PER_TURN 256       /* keep the loop responsive */
#define WAIT_MS 2                  /* poll interval while the client is slow */

struct snap_stream {
    struct api *api;
    grpc_call *call;
    uv_timer_t timer;
    backup_writer *w;
    struct bolt_rev *revs; /* the bbolt face's revisions (backup_bolt.h) */
    struct backup_bolt bolt;
    struct backup_cursor cur;
    uint64_t left;      /* revisions still to send */
    bool ended;         /* the writer has produced its last byte */
    uint64_t start_ms;
};

static void on_timer_closed(uv_handle_t *h)
{
    struct snap_stream *s = h->data;
    backup_writer_free(s->w);
    backup_cursor_close(&s->cur);
    free(s->revs);
    free(s);
}

static void stream_end(struct snap_stream *s, int code, const char *errmsg)
{
    if (code == 0) {
        LOG_INFO("maint", "sent a backup of %" PRIu64 " bytes to %s in %" PRIu64 " ms",
                 backup_writer_total(s->w), grpc_call_peer(s->call),
                 uv_now(s->api->loop) - s->start_ms);
        grpc_call_finish(s->call, GRPC_STATUS_OK, NULL);
    } else if (code == LSKV_ESHUTDOWN) {
        grpc_call_finish(s->call, GRPC_STATUS_CANCELLED, "the client went away");
    } else {
        LOG_WARN("maint", "backup to %s failed: %s", grpc_call_peer(s->call), errmsg);
        api_fail(s->api, s->call, code, errmsg);
    }
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

static int send_blob(struct snap_stream *s, const uint8_t *p, size_t n, uint64_t remaining)
{
    Etcdserverpb__SnapshotResponse resp = ETCDSERVERPB__SNAPSHOT_RESPONSE__INIT;
    resp.remaining_bytes = remaining;
    resp.blob.data = (uint8_t *)p;
    resp.blob.len = n;
    size_t len = protobuf_c_message_get_packed_size(&resp.base);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL)
        return LSKV_ENOMEM;
    protobuf_c_message_pack(&resp.base, buf);
    int rv = grpc_call_send(s->call, buf, len);
    free(buf);
    return rv;
}

/* Sends what the writer has produced, in etcd's 32 KiB blobs; the 32-byte
 * trailer goes alone in the last message (remaining_bytes 0), as etcd's. */
static int flush(struct snap_stream *s)
{
    size_t n;
    const uint8_t *p = backup_writer_output(s->w, &n);
    size_t hold = s->ended ? BACKUP_TRAILER_BYTES : 0;
    /* remaining_bytes: exact once the writer has ended, else a lower bound
     * (what is queued plus the fixed part of each record still to come). */
    while (n > hold && (s->ended || n >= BLOB_BYTES || backup_writer_in_bolt(s->w))) {
        size_t k = n - hold < BLOB_BYTES ? n - hold : BLOB_BYTES;
        uint64_t remaining = (n - k - hold) + (s->ended ? 0 : s->left * 64);
        int rv = send_blob(s, p, k, remaining);
        if (rv != 0)
            return rv;
        backup_writer_consume(s->w, k);
        p = backup_writer_output(s->w, &n);
    }
    if (s->ended && n == BACKUP_TRAILER_BYTES) {
        int rv = send_blob(s, p, n, 0);
        if (rv != 0)
            return rv;
        backup_writer_consume(s->w, n);
    }
    return 0;
}

static void pump(uv_timer_t *t)
{
    struct snap_stream *s = t->data;
    struct api *api = s->api;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    int rv = 0;
    if (grpc_call_cancelled(s->call)) {
        stream_end(s, LSKV_ESHUTDOWN, NULL);
        return;
    }
    if (grpc_call_pending_bytes(s->call) > MAX_PENDING) {
        uv_timer_start(&s->timer, pump, WAIT_MS, 0);
        return;
    }
    struct arena a;
    arena_init(&a);
    for (int i = 0; i < RECORDS_PER_TURN && !s->ended && rv == 0; i++) {
        struct backup_rev rev;
        const uint8_t *key;
        size_t key_len;
        if (!backup_cursor_next(&s->cur, &rev, &key, &key_len, &rv)) {
            if (rv == 0 && (rv = backup_writer_end(s->w, s->cur.revision)) == 0)
                s->ended = true;
            break;
        }
        if (s->left > 0)
            s->left--;
        struct kv_record rec;
        rv = recstore_get(api->records, rev.main, rev.sub, &a, &rec, errmsg);
        if (rv == LSKV_ECORRUPT && kvstore_compact_revision(api->kv) >= rev.main) {
            rv = LSKV_ECOMPACTED; /* compacted away while we streamed */
            errmsg_printf(errmsg, "revision %" PRId64 " was compacted during the backup",
                          rev.main);
        } else if (rv == 0 && (rec.key_len != key_len || memcmp(rec.key, key, key_len) != 0)) {
            rv = LSKV_ECORRUPT;
            errmsg_printf(errmsg, "record %" PRId64 ".%" PRId64 " holds another key", rev.main,
                          rev.sub);
        }
        if (rv == 0 && (rv = backup_writer_record(s->w, rev.main, rev.sub, &rec)) != 0)
            errmsg_printf(errmsg, "record %" PRId64 ".%" PRId64 ": %s", rev.main, rev.sub,
                          lskv_strerror(rv));
        arena_close(&a); /* per record: at most one value held */
        arena_init(&a);
    }
    arena_close(&a);
    if (rv == 0)
        rv = flush(s);
    size_t n;
    backup_writer_output(s->w, &n);
    if (rv != 0)
        stream_end(s, rv, errmsg[0] ? errmsg : lskv_strerror(rv));
    else if (s->ended && n == 0)
        stream_end(s, 0, NULL);
    else
        uv_timer_start(&s->timer, pump, 0, 0);
}

static int by_revision(const void *a, const void *b)
{
    const struct bolt_rev *x = a, *y = b;
    if (x->main != y->main)
        return x->main < y->main ? -1 : 1;
    return (x->sub > y->sub) - (x->sub < y->sub);
}

/* The revisions the backup will hold, in revision order, laid out as the
 * bbolt face (16 bytes of memory a revision, freed with the stream). */
static int bolt_face(struct snap_stream *s, const uint8_t *sm, size_t sm_len, char *errmsg)
{
    struct backup_cursor c;
    int rv = backup_cursor_open(&c, sm, sm_len, errmsg);
    if (rv != 0)
        return rv;
    size_t n = 0, cap = 0;
    struct backup_rev rev;
    const uint8_t *key;
    size_t key_len;
    while (rv == 0 && backup_cursor_next(&c, &rev, &key, &key_len, &rv)) {
        if (n == cap) {
            size_t more = cap ? cap * 2 : (size_t)kvindex_revisions(c.ix) + 16;
            struct bolt_rev *p = realloc(s->revs, more * sizeof *p);
            if (p == NULL) {
                rv = LSKV_ENOMEM;
                break;
            }
            s->revs = p;
            cap = more;
        }
        s->revs[n++] = (struct bolt_rev){rev.main, rev.sub, rev.tombstone};
    }
    backup_cursor_close(&c);
    if (rv != 0)
        return rv;
    if (n > 1) /* none: s->revs is NULL, which qsort must not get */
        qsort(s->revs, n, sizeof *s->revs, by_revision);
    return backup_bolt_layout(&s->bolt, s->revs, n);
}

void maint_snapshot(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct api *api = ctx;
    struct arena a;
    arena_init(&a);
    void *req = maint_admin_request(api, call, &etcdserverpb__snapshot_request__descriptor, msg,
                                    len, &a);
    arena_close(&a);
    if (req == NULL)
        return;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    if (api->sm.snapshot == NULL || api->data_key == NULL) {
        api_fail(api, call, LSKV_EUNIMPLEMENTED, "no state machine to back up");
        return;
    }
    struct snap_stream *s = calloc(1, sizeof *s);
    if (s == NULL) {
        api_fail(api, call, LSKV_ENOMEM, "backup: out of memory");
        return;
    }
    s->api = api;
    s->call = call;
    s->start_ms = uv_now(api->loop);
    uint8_t salt[BACKUP_SALT_BYTES];
    uint8_t *sm = NULL;
    size_t sm_len = 0;
    int rv = crypto_random(salt, sizeof salt);
    if (rv == 0 && (rv = api->sm.snapshot(api->sm.data, &sm, &sm_len)) != 0)
        errmsg_printf(errmsg, "state machine snapshot: %s", lskv_strerror(rv));
    if (rv == 0 && (rv = bolt_face(s, sm, sm_len, errmsg)) == 0 &&
        (rv = backup_cursor_open(&s->cur, sm, sm_len, errmsg)) == 0 &&
        (rv = backup_writer_new(api->data_key, salt, api->cluster_id, api->member_id, &s->bolt,
                                &s->w)) == 0)
        rv = backup_writer_sm(s->w, sm, sm_len);
    if (sm != NULL)
        explicit_bzero(sm, sm_len);
    free(sm);
    if (rv != 0) {
        backup_writer_free(s->w);
        if (s->cur.ix != NULL)
            backup_cursor_close(&s->cur);
        free(s->revs);
        free(s);
        api_fail(api, call, rv, errmsg[0] ? errmsg : lskv_strerror(rv));
        return;
    }
    s->left = kvindex_revisions(s->cur.ix);
    LOG_INFO("maint", "sending a backup at revision %" PRId64 " to %s", s->cur.revision,
             grpc_call_peer(call));
    uv_timer_init(api->loop, &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, pump, 0, 0);
}

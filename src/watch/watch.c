/* Watchers on one list per hub; a stream holds the ones it created. An
 * applied write reaches the watchers of its keys through a hash table of
 * single-key watchers (seeded at random: keys come from clients) and every
 * range watcher through a list of them (etcd keeps an interval tree for
 * ranges; a list is simpler and fine for the range watcher counts
 * measured, see bench/), so a write costs nothing per watcher of other
 * keys. */
#include "watch/watch.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/arena.h"
#include "common/bytes.h"
#include "common/err.h"
#include "common/hash64.h"

#define DEFAULT_MAX_QUEUED (4u << 20)
/* etcd's cancel reasons (mvcc/watcher.go) and its invalid watch id. */
#define ERR_EMPTY_RANGE "mvcc: watcher range is empty"
#define ERR_DUPLICATE_ID "mvcc: duplicate watch ID provided on the WatchStream"
#define ERR_CORRUPT "etcdserver: corrupt cluster"
#define INVALID_WATCH_ID (-1)

struct watcher {
    struct watcher *prev, *next; /* the hub's list */
    struct watcher *hnext;       /* single key: its bucket's chain */
    struct watcher *rprev, *rnext; /* range: the hub's range list */
    uint64_t mark;               /* the notify round that took it */
    watch_stream *stream;
    int64_t id;
    uint8_t *key;
    size_t key_len;
    uint8_t *end;                /* single key: NULL; every key >= key: end_len 0 */
    size_t end_len;
    int64_t next_rev;            /* the next revision it is owed */
    bool synced;
    bool prev_kv, progress, noput, nodelete, fragment;
    bool had_event;              /* since the last progress notification */
};

struct watch_stream {
    watch_hub *hub;
    struct watch_sink sink;
    int64_t next_id;
    struct watcher **w;
    size_t n, cap;
    watch_stream *prev, *next;
};

struct watch_hub {
    struct watch_hub_config c;
    struct watcher *head;
    watch_stream *streams;
    struct watch_stats stats;
    /* Single-key watchers by key: power-of-two buckets, grown at load 1. */
    struct watcher **buckets;
    size_t n_buckets, n_keyed;
    uint64_t seed;
    struct watcher *ranges;
    /* notify: the watchers one write reaches, and the round's mark. */
    struct watcher **reached;
    size_t reached_cap;
    uint64_t round;
};

enum { INITIAL_BUCKETS = 64 };

int watch_hub_new(const struct watch_hub_config *config, watch_hub **out)
{
    watch_hub *h = calloc(1, sizeof *h);
    if (h == NULL)
        return LSKV_ENOMEM;
    h->buckets = calloc(INITIAL_BUCKETS, sizeof *h->buckets);
    if (h->buckets == NULL || getrandom(&h->seed, sizeof h->seed, 0) != sizeof h->seed) {
        free(h->buckets);
        free(h);
        return LSKV_ENOMEM;
    }
    h->n_buckets = INITIAL_BUCKETS;
    h->c = *config;
    if (h->c.max_queued_bytes == 0)
        h->c.max_queued_bytes = DEFAULT_MAX_QUEUED;
    *out = h;
    return 0;
}

void watch_hub_free(watch_hub *h)
{
    if (h == NULL)
        return;
    while (h->streams != NULL)
        watch_stream_close(h->streams);
    free(h->buckets);
    free(h->reached);
    free(h);
}

/* ---- watchers ---- */

static struct watcher **bucket_of(const watch_hub *h, const uint8_t *key, size_t len)
{
    return &h->buckets[hash_bytes64(h->seed, key, len) & (h->n_buckets - 1)];
}

/* Doubles the table; on ENOMEM it stays as it is (chains grow longer). */
static void grow_buckets(watch_hub *h)
{
    size_t n = h->n_buckets * 2;
    struct watcher **old = h->buckets, **nb = calloc(n, sizeof *nb);
    if (nb == NULL)
        return;
    size_t old_n = h->n_buckets;
    h->buckets = nb;
    h->n_buckets = n;
    for (size_t i = 0; i < old_n; i++) {
        for (struct watcher *w = old[i], *next; w != NULL; w = next) {
            next = w->hnext;
            struct watcher **b = bucket_of(h, w->key, w->key_len);
            w->hnext = *b;
            *b = w;
        }
    }
    free(old);
}

/* Makes w reachable by notify: by its key, or on the range list. */
static void index_add(watch_hub *h, struct watcher *w)
{
    if (w->end != NULL) {
        w->rnext = h->ranges;
        if (h->ranges)
            h->ranges->rprev = w;
        h->ranges = w;
        return;
    }
    if (h->n_keyed >= h->n_buckets)
        grow_buckets(h);
    struct watcher **b = bucket_of(h, w->key, w->key_len);
    w->hnext = *b;
    *b = w;
    h->n_keyed++;
}

static void index_remove(watch_hub *h, struct watcher *w)
{
    if (w->end != NULL) {
        if (w->rprev)
            w->rprev->rnext = w->rnext;
        else
            h->ranges = w->rnext;
        if (w->rnext)
            w->rnext->rprev = w->rprev;
        return;
    }
    for (struct watcher **p = bucket_of(h, w->key, w->key_len); *p != NULL; p = &(*p)->hnext) {
        if (*p == w) {
            *p = w->hnext;
            h->n_keyed--;
            return;
        }
    }
}

static void watcher_free(struct watcher *w)
{
    watch_hub *h = w->stream->hub;
    index_remove(h, w);
    if (w->prev)
        w->prev->next = w->next;
    else
        h->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    watch_stream *s = w->stream;
    for (size_t i = 0; i < s->n; i++) {
        if (s->w[i] == w) {
            s->w[i] = s->w[--s->n];
            break;
        }
    }
    h->stats.watchers--;
    if (!w->synced)
        h->stats.unsynced--;
    free(w->key);
    free(w->end);
    free(w);
}

static struct watcher *find(const watch_stream *s, int64_t id)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->w[i]->id == id)
            return s->w[i];
    return NULL;
}

static bool matches(const struct watcher *w, const uint8_t *k, size_t klen)
{
    int c = bytes_order(k, klen, w->key, w->key_len);
    if (w->end == NULL)
        return c == 0;
    if (c < 0)
        return false;
    return w->end_len == 0 || bytes_order(k, klen, w->end, w->end_len) < 0;
}

static void set_synced(struct watcher *w, bool synced)
{
    if (w->synced == synced)
        return;
    w->synced = synced;
    if (synced)
        w->stream->hub->stats.unsynced--;
    else
        w->stream->hub->stats.unsynced++;
}

/* ---- responses ---- */

static int send_response(watch_stream *s, Etcdserverpb__WatchResponse *r, int64_t revision)
{
    Etcdserverpb__ResponseHeader header = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    watch_hub *h = s->hub;
    if (h->c.fill_header)
        h->c.fill_header(h->c.arg, &header);
    header.revision = revision;
    r->header = &header;
    size_t n = etcdserverpb__watch_response__get_packed_size(r);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL)
        return LSKV_ENOMEM;
    etcdserverpb__watch_response__pack(r, buf);
    int rv = s->sink.send(s->sink.arg, buf, n);
    free(buf);
    r->header = NULL;
    return rv;
}

static void send_control(watch_stream *s, int64_t id, bool created, bool canceled,
                         const char *reason, int64_t compact_revision)
{
    Etcdserverpb__WatchResponse r = ETCDSERVERPB__WATCH_RESPONSE__INIT;
    r.watch_id = id;
    r.created = created;
    r.canceled = canceled;
    r.cancel_reason = (char *)(reason ? reason : "");
    r.compact_revision = compact_revision;
    (void)send_response(s, &r, kvstore_revision(s->hub->c.kv));
}

/* Events being gathered for one watcher's response. */
struct batch {
    struct watcher *w;
    struct arena *a;
    Mvccpb__Event **ev;
    size_t n, cap;
    int rv;
};

static Mvccpb__KeyValue *kv_of(struct arena *a, const struct kv_record *rec, int64_t main)
{
    Mvccpb__KeyValue *kv = arena_alloc(a, sizeof *kv);
    uint8_t *key = arena_alloc(a, rec->key_len ? rec->key_len : 1);
    if (kv == NULL || key == NULL)
        return NULL;
    mvccpb__key_value__init(kv);
    memcpy(key, rec->key, rec->key_len);
    kv->key = (ProtobufCBinaryData){.data = key, .len = rec->key_len};
    kv->mod_revision = main;
    if (!rec->tombstone) {
        uint8_t *value = arena_alloc(a, rec->value_len ? rec->value_len : 1);
        if (value == NULL)
            return NULL;
        if (rec->value_len)
            memcpy(value, rec->value, rec->value_len);
        kv->value = (ProtobufCBinaryData){.data = value, .len = rec->value_len};
        kv->create_revision = rec->create_revision;
        kv->version = rec->version;
        kv->lease = rec->lease;
    }
    return kv;
}

/* The key's value before revision main (etcd reads it at main - 1), or NULL. */
static Mvccpb__KeyValue *prev_of(watch_hub *h, struct arena *a, const struct kv_record *rec,
                                 int64_t main)
{
    Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
    rr.key = (ProtobufCBinaryData){.data = (uint8_t *)rec->key, .len = rec->key_len};
    rr.revision = main - 1;
    Etcdserverpb__RangeResponse *resp = NULL;
    if (main - 1 < 1 || kvstore_range_uncounted(h->c.kv, &rr, a, &resp, NULL) != 0 ||
        resp->n_kvs == 0)
        return NULL;
    return resp->kvs[0];
}

static int batch_add(struct batch *b, const struct kv_record *rec, int64_t main)
{
    struct watcher *w = b->w;
    if (!matches(w, rec->key, rec->key_len))
        return 0;
    if ((rec->tombstone && w->nodelete) || (!rec->tombstone && w->noput))
        return 0;
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 8;
        Mvccpb__Event **p = arena_alloc(b->a, cap * sizeof *p);
        if (p == NULL)
            return LSKV_ENOMEM;
        if (b->n)
            memcpy(p, b->ev, b->n * sizeof *p);
        b->ev = p;
        b->cap = cap;
    }
    Mvccpb__Event *e = arena_alloc(b->a, sizeof *e);
    if (e == NULL)
        return LSKV_ENOMEM;
    mvccpb__event__init(e);
    e->type = rec->tombstone ? MVCCPB__EVENT__EVENT_TYPE__DELETE : MVCCPB__EVENT__EVENT_TYPE__PUT;
    if ((e->kv = kv_of(b->a, rec, main)) == NULL)
        return LSKV_ENOMEM;
    /* etcd reads no previous value for a create (a put of version 1). */
    if (w->prev_kv && !(!rec->tombstone && rec->version == 1))
        e->prev_kv = prev_of(w->stream->hub, b->a, rec, main);
    b->ev[b->n++] = e;
    return 0;
}

/* etcd's sendFragments: a response of fragment_bytes or more, with two
 * events or more, goes as several, each with the events that keep it below
 * the limit (at least one), fragment set on all but the last. Sizes are
 * exact: r carries the header it will be sent with. */
static int send_fragments(watch_stream *s, Etcdserverpb__WatchResponse *r, int64_t revision,
                          size_t limit)
{
    Mvccpb__Event **all = r->events;
    size_t n = r->n_events;
    r->n_events = 0;
    r->fragment = true;
    size_t base = etcdserverpb__watch_response__get_packed_size(r);
    r->header = NULL;
    size_t i = 0;
    int rv = 0;
    while (rv == 0 && i < n) {
        size_t size = base, first = i;
        for (; i < n; i++) {
            size_t e = mvccpb__event__get_packed_size(all[i]);
            size += 1 + varint_len(e) + e;
            if (i > first && size >= limit)
                break;
        }
        r->events = all + first;
        r->n_events = i - first;
        r->fragment = i < n;
        rv = send_response(s, r, revision);
    }
    return rv;
}

static int batch_send(struct batch *b, int64_t revision)
{
    if (b->n == 0)
        return 0; /* all filtered out: etcd sends nothing */
    Etcdserverpb__WatchResponse r = ETCDSERVERPB__WATCH_RESPONSE__INIT;
    r.watch_id = b->w->id;
    r.events = b->ev;
    r.n_events = b->n;
    b->w->had_event = true;
    watch_hub *h = b->w->stream->hub;
    h->stats.events_sent += b->n;
    if (b->w->fragment && b->n >= 2 && h->c.fragment_bytes > 0) {
        Etcdserverpb__ResponseHeader header = ETCDSERVERPB__RESPONSE_HEADER__INIT;
        if (h->c.fill_header)
            h->c.fill_header(h->c.arg, &header);
        header.revision = revision;
        r.header = &header;
        if (etcdserverpb__watch_response__get_packed_size(&r) >= h->c.fragment_bytes)
            return send_fragments(b->w->stream, &r, revision, h->c.fragment_bytes);
        r.header = NULL;
    }
    return send_response(b->w->stream, &r, revision);
}

static bool stream_full(const watch_stream *s)
{
    const struct watch_hub_config *c = &s->hub->c;
    size_t queued = s->sink.queued(s->sink.arg);
    if (queued > c->max_queued_bytes)
        return true;
    return queued >= WATCH_STREAM_SHARE_BYTES && c->total_queued != NULL &&
           c->max_total_queued_bytes > 0 && c->total_queued(c->arg) > c->max_total_queued_bytes;
}

/* ---- stream requests ---- */

static int create(watch_stream *s, const Etcdserverpb__WatchCreateRequest *c)
{
    watch_hub *h = s->hub;
    static const uint8_t zero = 0;
    const uint8_t *key = c->key.len ? c->key.data : &zero; /* etcd: "\0" is the smallest key */
    size_t key_len = c->key.len ? c->key.len : 1;
    bool single = c->range_end.len == 0;
    bool from_key = c->range_end.len == 1 && c->range_end.data[0] == 0;
    if (!single && !from_key && bytes_order(key, key_len, c->range_end.data, c->range_end.len) >= 0) {
        send_control(s, INVALID_WATCH_ID, true, true, ERR_EMPTY_RANGE, 0);
        return 0;
    }
    int64_t id = c->watch_id;
    if (id == 0) { /* etcd's AutoWatchID */
        while (find(s, s->next_id) != NULL)
            s->next_id++;
        id = s->next_id++;
    } else if (find(s, id) != NULL) {
        send_control(s, INVALID_WATCH_ID, true, true, ERR_DUPLICATE_ID, 0);
        return 0;
    }
    struct watcher *w = calloc(1, sizeof *w);
    if (w == NULL)
        return LSKV_ENOMEM;
    w->key = malloc(key_len);
    if (!single && !from_key)
        w->end = malloc(c->range_end.len);
    else if (from_key)
        w->end = malloc(1);
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4;
        struct watcher **p = realloc(s->w, cap * sizeof *p);
        if (p != NULL) {
            s->w = p;
            s->cap = cap;
        }
    }
    if (w->key == NULL || (!single && w->end == NULL) || s->n == s->cap) {
        free(w->key);
        free(w->end);
        free(w);
        return LSKV_ENOMEM;
    }
    memcpy(w->key, key, key_len);
    w->key_len = key_len;
    if (!single && !from_key) {
        memcpy(w->end, c->range_end.data, c->range_end.len);
        w->end_len = c->range_end.len;
    }
    w->stream = s;
    w->id = id;
    w->prev_kv = c->prev_kv;
    w->progress = c->progress_notify;
    w->fragment = c->fragment;
    for (size_t i = 0; i < c->n_filters; i++) {
        if (c->filters[i] == ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT)
            w->noput = true;
        else if (c->filters[i] == ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NODELETE)
            w->nodelete = true;
    }
    int64_t cur = kvstore_revision(h->c.kv);
    w->next_rev = c->start_revision > 0 ? c->start_revision : cur + 1;
    /* etcd: synced when it starts in the future; else history first. */
    w->synced = w->next_rev > cur;
    s->w[s->n++] = w;
    w->next = h->head;
    if (h->head)
        h->head->prev = w;
    h->head = w;
    index_add(h, w);
    h->stats.watchers++;
    if (!w->synced)
        h->stats.unsynced++;
    send_control(s, id, true, false, NULL, 0);
    return 0;
}

int watch_stream_request(watch_stream *s, const Etcdserverpb__WatchRequest *req)
{
    switch (req->request_union_case) {
    case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST:
        return req->create_request ? create(s, req->create_request) : 0;
    case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST: {
        if (req->cancel_request == NULL)
            return 0;
        struct watcher *w = find(s, req->cancel_request->watch_id);
        if (w != NULL) { /* etcd answers nothing for an unknown id */
            watcher_free(w);
            send_control(s, req->cancel_request->watch_id, false, true, NULL, 0);
        }
        return 0;
    }
    case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST:
        if (req->progress_request != NULL)
            send_control(s, INVALID_WATCH_ID, false, false, NULL, 0);
        return 0;
    default:
        return 0; /* etcd ignores what it does not know */
    }
}

watch_stream *watch_stream_open(watch_hub *h, const struct watch_sink *sink)
{
    watch_stream *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->hub = h;
    s->sink = *sink;
    s->next = h->streams;
    if (h->streams)
        h->streams->prev = s;
    h->streams = s;
    h->stats.streams++;
    return s;
}

void watch_stream_close(watch_stream *s)
{
    if (s == NULL)
        return;
    while (s->n > 0)
        watcher_free(s->w[s->n - 1]);
    watch_hub *h = s->hub;
    if (s->prev)
        s->prev->next = s->next;
    else
        h->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    h->stats.streams--;
    free(s->w);
    free(s);
}

/* ---- events ---- */

/* Adds w to this round's reached list once. Errors: LSKV_ENOMEM. */
static int reach(watch_hub *h, struct watcher *w, size_t *n)
{
    if (w->mark == h->round || !w->synced)
        return 0;
    if (*n == h->reached_cap) {
        size_t cap = h->reached_cap ? 2 * h->reached_cap : 64;
        struct watcher **p = realloc(h->reached, cap * sizeof *p);
        if (p == NULL)
            return LSKV_ENOMEM;
        h->reached = p;
        h->reached_cap = cap;
    }
    w->mark = h->round;
    h->reached[(*n)++] = w;
    return 0;
}

/* The synced watchers the changes (of revision rev) may concern: those of
 * their keys and every range watcher. On ENOMEM every synced watcher, and
 * one that does not fit catches up from history instead. */
static size_t reached_by(watch_hub *h, const struct kv_record *ch, size_t n_changes,
                         int64_t rev)
{
    size_t n = 0;
    int rv = 0;
    h->round++;
    for (size_t i = 0; i < n_changes && rv == 0; i++)
        for (struct watcher *w = *bucket_of(h, ch[i].key, ch[i].key_len); w && rv == 0;
             w = w->hnext)
            if (w->key_len == ch[i].key_len && memcmp(w->key, ch[i].key, w->key_len) == 0)
                rv = reach(h, w, &n);
    for (struct watcher *w = h->ranges; w != NULL && rv == 0; w = w->rnext)
        rv = reach(h, w, &n);
    if (rv != 0) {
        n = 0;
        h->round++;
        for (struct watcher *w = h->head; w != NULL; w = w->next) {
            if (reach(h, w, &n) != 0 && w->next_rev <= rev) {
                set_synced(w, false);
                w->next_rev = rev;
            }
        }
    }
    return n;
}

void watch_hub_notify(watch_hub *h)
{
    size_t n = 0;
    const struct kv_record *ch = kvstore_changes(h->c.kv, &n);
    if (n == 0 || h->head == NULL)
        return;
    int64_t rev = kvstore_revision(h->c.kv);
    size_t n_reached = reached_by(h, ch, n, rev);
    struct arena a;
    arena_init(&a);
    for (size_t r = 0; r < n_reached; r++) {
        struct watcher *w = h->reached[r];
        if (!w->synced || w->next_rev > rev)
            continue;
        struct batch b = {.w = w, .a = &a};
        for (size_t i = 0; i < n && b.rv == 0; i++)
            b.rv = batch_add(&b, &ch[i], rev);
        if (b.rv != 0 || (b.n > 0 && stream_full(w->stream))) {
            /* Not sent: caught up from history later (no event is lost). */
            set_synced(w, false);
            w->next_rev = rev;
        } else {
            w->next_rev = rev + 1;
            (void)batch_send(&b, rev);
        }
        arena_close(&a);
        arena_init(&a);
    }
    arena_close(&a);
}

/* History read into one catch-up response, about (whole revisions: the
 * one that crosses it is finished). Bounds what a catch-up holds in memory
 * and queues on a stream at once, whatever the revision budget. */
#define CATCH_UP_BYTES (1u << 20)
#define WALK_FULL 1 /* add_history's stop: not an error */

struct history_walk {
    struct batch *b;
    size_t bytes;
    int64_t last_main; /* of the last record taken */
};

static int add_history(void *arg, const struct kv_record *rec, int64_t main, int64_t sub)
{
    (void)sub;
    struct history_walk *hw = arg;
    if (hw->bytes >= CATCH_UP_BYTES && main != hw->last_main)
        return WALK_FULL;
    hw->bytes += rec->key_len + rec->value_len;
    hw->last_main = main;
    return batch_add(hw->b, rec, main);
}

/* Sends w what it is owed from history, up to *budget revisions; false when
 * w was cancelled. */
static bool catch_up(watch_hub *h, struct watcher *w, size_t *budget, struct arena *a)
{
    int64_t cur = kvstore_revision(h->c.kv);
    int64_t compacted = kvstore_compact_revision(h->c.kv);
    if (w->next_rev > cur) {
        set_synced(w, true);
        return true;
    }
    if (compacted > 0 && w->next_rev < compacted) {
        watch_stream *s = w->stream;
        int64_t id = w->id;
        watcher_free(w);
        /* etcd's compaction response carries revision 0 in its header. */
        Etcdserverpb__WatchResponse r = ETCDSERVERPB__WATCH_RESPONSE__INIT;
        r.watch_id = id;
        r.canceled = true;
        r.compact_revision = compacted;
        (void)send_response(s, &r, 0);
        return false;
    }
    int64_t to = w->next_rev + (int64_t)*budget - 1;
    if (to > cur)
        to = cur;
    struct batch b = {.w = w, .a = a};
    struct history_walk hw = {.b = &b};
    ProtobufCBinaryData key = {.data = w->key, .len = w->key_len};
    static uint8_t zero = 0;
    ProtobufCBinaryData end = {0};
    if (w->end != NULL)
        end = w->end_len ? (ProtobufCBinaryData){.data = w->end, .len = w->end_len}
                         : (ProtobufCBinaryData){.data = &zero, .len = 1};
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    int rv = kvstore_history(h->c.kv, &key, &end, w->next_rev, to, a, add_history, &hw,
                             errmsg);
    if (rv == WALK_FULL) { /* everything up to last_main was taken */
        to = hw.last_main;
        rv = 0;
    }
    if (rv == 0)
        rv = b.rv;
    if (rv == LSKV_ECORRUPT) {
        if (h->c.on_corrupt)
            h->c.on_corrupt(h->c.arg, errmsg);
        watch_stream *s = w->stream;
        int64_t id = w->id;
        watcher_free(w);
        send_control(s, id, false, true, ERR_CORRUPT, 0);
        return false;
    }
    if (rv != 0)
        return true; /* out of memory: try again later */
    *budget -= (size_t)(to - w->next_rev + 1);
    (void)batch_send(&b, cur); /* etcd: the catch-up response has the current revision */
    w->next_rev = to + 1;
    if (w->next_rev > cur)
        set_synced(w, true);
    return true;
}

bool watch_hub_sync(watch_hub *h, size_t budget)
{
    bool more = false;
    struct arena a;
    arena_init(&a);
    for (struct watcher *w = h->head, *next; w != NULL; w = next) {
        next = w->next;
        if (w->synced)
            continue;
        if (budget == 0 || stream_full(w->stream)) {
            more = more || budget == 0;
            continue;
        }
        /* A cancelled watcher may have been next's predecessor only. */
        if (catch_up(h, w, &budget, &a) && !w->synced)
            more = true;
        arena_close(&a);
        arena_init(&a);
    }
    arena_close(&a);
    return more;
}

void watch_hub_progress(watch_hub *h)
{
    int64_t cur = kvstore_revision(h->c.kv);
    for (struct watcher *w = h->head; w != NULL; w = w->next) {
        if (!w->progress || !w->synced)
            continue;
        if (!w->had_event) {
            Etcdserverpb__WatchResponse r = ETCDSERVERPB__WATCH_RESPONSE__INIT;
            r.watch_id = w->id;
            (void)send_response(w->stream, &r, cur);
        }
        w->had_event = false;
    }
}

void watch_hub_stats(const watch_hub *h, struct watch_stats *out)
{
    *out = h->stats;
}

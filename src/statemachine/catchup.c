/* Catching up after a held raft snapshot (catchup.h). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/bytes.h"
#include "common/err.h"
#include "crypto/hash.h"
#include "statemachine/catchup.h"
#include "statemachine/snapshot.h"
#include "storage/recstore.h"

#define LEDGER_BYTES_PER_CALL (1u << 20)

/* A record the held snapshot's index names and this member lacks. */
struct wanted {
    int64_t main, sub;
    int64_t create_revision, version;
    bool tombstone;
    uint8_t *key;
    size_t key_len;
};

enum phase { PHASE_START, PHASE_LEDGER, PHASE_RECORDS, PHASE_DONE };

struct catchup {
    struct fsm *f;
    uint64_t gen;             /* of the held snapshot being fetched for */
    enum phase phase;
    uint64_t ledger_size;     /* the snapshot's position */
    uint8_t root[HASH_BYTES];
    struct wanted *want;
    size_t n_want, cap_want;
    size_t next;              /* first record not fetched yet */
    size_t asked;             /* records in the outstanding request */
    uint64_t copied;          /* ledger entries copied */
    uint64_t fetched;         /* records fetched (c->next counts this round's) */
};

int catchup_new(struct fsm *f, catchup **out)
{
    catchup *c = calloc(1, sizeof *c);
    if (c == NULL)
        return LSKV_ENOMEM;
    c->f = f;
    *out = c;
    return 0;
}

static void clear_wanted(catchup *c)
{
    for (size_t i = 0; i < c->n_want; i++)
        free(c->want[i].key);
    free(c->want);
    c->want = NULL;
    c->n_want = c->cap_want = c->next = c->asked = 0;
}

void catchup_free(catchup *c)
{
    if (c == NULL)
        return;
    clear_wanted(c);
    free(c);
}

void catchup_progress(const catchup *c, struct catchup_stats *out)
{
    struct ledger_position pos = {0};
    if (c->f->ledger != NULL)
        ledger_position(c->f->ledger, &pos);
    out->ledger_copied = c->copied;
    out->ledger_missing = pos.size < c->ledger_size ? c->ledger_size - pos.size : 0;
    out->records_fetched = c->fetched;
    out->records_missing = c->n_want - c->next;
}

static int take_wanted(void *arg, const struct kvstore_needed *n)
{
    catchup *c = arg;
    if (recstore_contains(c->f->records, n->main, n->sub))
        return 0;
    if (c->n_want == c->cap_want) {
        size_t cap = c->cap_want ? 2 * c->cap_want : 256;
        struct wanted *w = realloc(c->want, cap * sizeof *w);
        if (w == NULL)
            return LSKV_ENOMEM;
        c->want = w;
        c->cap_want = cap;
    }
    struct wanted *w = &c->want[c->n_want];
    *w = (struct wanted){.main = n->main, .sub = n->sub, .tombstone = n->tombstone,
                         .create_revision = n->create_revision, .version = n->version,
                         .key_len = n->key_len};
    if ((w->key = malloc(n->key_len ? n->key_len : 1)) == NULL)
        return LSKV_ENOMEM;
    memcpy(w->key, n->key, n->key_len);
    c->n_want++;
    return 0;
}

/* Reads the held snapshot's position and lists the records to fetch. */
static int start(catchup *c, char *errmsg)
{
    clear_wanted(c);
    c->gen = c->f->pending_gen;
    struct sm_sections s;
    int rv = sm_snapshot_decode(c->f->pending, c->f->pending_len, &s);
    if (rv == 0 && (s.data[SM_SECTION_POSITION] == NULL ||
                    s.len[SM_SECTION_POSITION] != 8 + HASH_BYTES || s.data[SM_SECTION_KV] == NULL))
        rv = LSKV_ECORRUPT;
    if (rv != 0) {
        errmsg_printf(errmsg, "catch-up: the held snapshot does not decode: %s",
                      lskv_strerror(rv));
        return rv;
    }
    c->ledger_size = get_u64be(s.data[SM_SECTION_POSITION]);
    memcpy(c->root, s.data[SM_SECTION_POSITION] + 8, HASH_BYTES);
    rv = kvstore_snapshot_records(s.data[SM_SECTION_KV], s.len[SM_SECTION_KV], take_wanted, c);
    if (rv != 0) {
        errmsg_printf(errmsg, "catch-up: the held snapshot's index: %s", lskv_strerror(rv));
        return rv;
    }
    c->phase = PHASE_LEDGER;
    return 0;
}

static int ledger_request(catchup *c, uint64_t from, uint8_t **req, size_t *req_len)
{
    uint8_t *r = malloc(20);
    if (r == NULL)
        return LSKV_ENOMEM;
    put_u64be(r, from);
    put_u64be(r + 8, c->ledger_size);
    put_u32be(r + 16, LEDGER_BYTES_PER_CALL);
    *req = r;
    *req_len = 20;
    return 0;
}

static int records_request(catchup *c, uint8_t **req, size_t *req_len)
{
    size_t n = c->n_want - c->next;
    if (n > CATCHUP_RECORDS_PER_CALL)
        n = CATCHUP_RECORDS_PER_CALL;
    uint8_t *r = malloc(4 + 16 * n);
    if (r == NULL)
        return LSKV_ENOMEM;
    put_u32be(r, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        put_u64be(r + 4 + 16 * i, (uint64_t)c->want[c->next + i].main);
        put_u64be(r + 12 + 16 * i, (uint64_t)c->want[c->next + i].sub);
    }
    c->asked = n;
    *req = r;
    *req_len = 4 + 16 * n;
    return 0;
}

/* Every ledger entry is there: the leaves must reach the snapshot's root. */
static int check_root(catchup *c, char *errmsg)
{
    if (c->ledger_size == 0)
        return 0;
    uint8_t root[HASH_BYTES];
    int rv = ledger_root_at(c->f->ledger, c->ledger_size, root, errmsg);
    if (rv == 0 && memcmp(root, c->root, HASH_BYTES) != 0) {
        errmsg_printf(errmsg, "catch-up: the ledger's root over its first %" PRIu64 " entries "
                      "differs from the held snapshot's: the copied entries are another "
                      "history", c->ledger_size);
        rv = LSKV_ECORRUPT;
    }
    return rv;
}

int catchup_next(catchup *c, uint8_t *kind, uint8_t **req, size_t *req_len, char *errmsg)
{
    int rv;
    if (c->f->pending == NULL)
        return 1; /* nothing held (a complete snapshot replaced it) */
    if (c->phase == PHASE_START || c->gen != c->f->pending_gen) {
        if ((rv = start(c, errmsg)) != 0)
            return rv;
    }
    if (c->phase == PHASE_LEDGER) {
        struct ledger_position pos;
        ledger_position(c->f->ledger, &pos);
        if (pos.size < c->ledger_size) {
            *kind = CATCHUP_CALL_LEDGER;
            return ledger_request(c, pos.size, req, req_len);
        }
        if ((rv = check_root(c, errmsg)) != 0)
            return rv;
        c->phase = PHASE_RECORDS;
    }
    if (c->phase == PHASE_RECORDS && c->next < c->n_want) {
        *kind = CATCHUP_CALL_RECORDS;
        return records_request(c, req, req_len);
    }
    /* Durable before the state that names them replaces the old one. */
    if ((rv = recstore_sync(c->f->records)) != 0 || (rv = ledger_sync(c->f->ledger)) != 0) {
        errmsg_printf(errmsg, "catch-up: sync: %s", lskv_strerror(rv));
        return rv;
    }
    if ((rv = fsm_finish_restore(c->f)) != 0) {
        errmsg_printf(errmsg, "catch-up: restore: %s", c->f->errmsg);
        return rv;
    }
    c->phase = PHASE_DONE;
    clear_wanted(c);
    return 1;
}

static int take_ledger(catchup *c, const uint8_t *p, size_t len, char *errmsg)
{
    if (len == 0)
        return LSKV_ENOTREADY;
    size_t off = 0;
    int rv = 0;
    while (off < len && rv == 0) {
        if (len - off < 4 || get_u32be(p + off) > len - off - 4) {
            errmsg_printf(errmsg, "catch-up: a ledger reply ends inside a frame");
            return LSKV_ECORRUPT;
        }
        size_t flen = 4 + (size_t)get_u32be(p + off);
        rv = ledger_append_copy(c->f->ledger, p + off, flen, errmsg);
        off += flen;
        c->copied += rv == 0;
    }
    if (rv == 0)
        rv = ledger_flush(c->f->ledger);
    return rv == LSKV_EINVAL ? LSKV_ECORRUPT : rv;
}

static bool get_bytes(const uint8_t **p, size_t *left, size_t n, const uint8_t **out)
{
    if (*left < n)
        return false;
    *out = *p;
    *p += n;
    *left -= n;
    return true;
}

static bool get_i64(const uint8_t **p, size_t *left, int64_t *v)
{
    const uint8_t *b;
    if (!get_bytes(p, left, 8, &b))
        return false;
    *v = (int64_t)get_u64be(b);
    return true;
}

static bool get_len_bytes(const uint8_t **p, size_t *left, const uint8_t **out, size_t *n)
{
    const uint8_t *b;
    if (!get_bytes(p, left, 4, &b))
        return false;
    *n = get_u32be(b);
    return get_bytes(p, left, *n, out);
}

/* One answered record: it must be the one the index names. */
static int take_record(catchup *c, const struct wanted *w, const uint8_t **p, size_t *left,
                       char *errmsg)
{
    const uint8_t *b;
    int64_t create, version, lease;
    struct kv_record r = {0};
    if (!get_bytes(p, left, 1, &b) || *b > 1 || !get_i64(p, left, &create) ||
        !get_i64(p, left, &version) || !get_i64(p, left, &lease) ||
        !get_len_bytes(p, left, &r.key, &r.key_len) ||
        !get_len_bytes(p, left, &r.value, &r.value_len)) {
        errmsg_printf(errmsg, "catch-up: a records reply is malformed");
        return LSKV_ECORRUPT;
    }
    r.tombstone = *b == 1;
    r.create_revision = create;
    r.version = version;
    r.lease = lease;
    r.mod_revision = w->main;
    if (r.tombstone != w->tombstone || r.key_len != w->key_len ||
        memcmp(r.key, w->key, w->key_len) != 0 ||
        (!w->tombstone && (create != w->create_revision || version != w->version))) {
        errmsg_printf(errmsg, "catch-up: record %" PRId64 ".%" PRId64 " as sent is not the one "
                      "the snapshot's index names", w->main, w->sub);
        return LSKV_ECORRUPT;
    }
    int rv = recstore_put(c->f->records, w->main, w->sub, &r);
    if (rv == LSKV_EINVAL) {
        errmsg_printf(errmsg, "catch-up: record %" PRId64 ".%" PRId64 " as sent is malformed",
                      w->main, w->sub);
        rv = LSKV_ECORRUPT;
    }
    return rv;
}

static int take_records(catchup *c, const uint8_t *p, size_t len, char *errmsg)
{
    const uint8_t *b;
    if (!get_bytes(&p, &len, 4, &b) || get_u32be(b) > c->asked) {
        errmsg_printf(errmsg, "catch-up: a records reply is malformed");
        return LSKV_ECORRUPT;
    }
    uint32_t m = get_u32be(b);
    c->asked = 0; /* one answer per request */
    int rv = 0;
    size_t i = 0;
    for (; i < m && rv == 0; i++) {
        if (!get_bytes(&p, &len, 1, &b) || *b > 1) {
            errmsg_printf(errmsg, "catch-up: a records reply is malformed");
            return LSKV_ECORRUPT;
        }
        if (*b == 0)
            break; /* the member asked lacks it (behind, or compacted since) */
        rv = take_record(c, &c->want[c->next + i], &p, &len, errmsg);
    }
    if (rv == 0 && i == m && len != 0) {
        errmsg_printf(errmsg, "catch-up: a records reply has trailing bytes");
        rv = LSKV_ECORRUPT;
    }
    if (rv == 0)
        rv = recstore_commit(c->f->records);
    if (rv == 0) {
        c->next += i;
        c->fetched += i;
    }
    if (rv == 0 && (i < m || m == 0))
        rv = LSKV_ENOTREADY;
    return rv;
}

int catchup_take(catchup *c, const uint8_t *reply, size_t len, char *errmsg)
{
    if (c->phase == PHASE_LEDGER)
        return take_ledger(c, reply, len, errmsg);
    if (c->phase == PHASE_RECORDS)
        return take_records(c, reply, len, errmsg);
    return 0;
}

/* ---- the member asked ---------------------------------------------------- */

static int serve_ledger(struct fsm *f, const uint8_t *req, size_t len, uint8_t **reply,
                        size_t *reply_len)
{
    if (len != 20 || f->ledger == NULL)
        return LSKV_EINVAL;
    uint32_t max = get_u32be(req + 16);
    if (max > CATCHUP_CALL_MAX_BYTES)
        max = CATCHUP_CALL_MAX_BYTES;
    uint64_t n;
    char errmsg[LSKV_ERRMSG_SIZE];
    int rv = ledger_read_frames(f->ledger, get_u64be(req), get_u64be(req + 8), max, reply,
                                reply_len, &n, errmsg);
    if (rv == 0 && *reply == NULL && (*reply = malloc(1)) == NULL)
        rv = LSKV_ENOMEM;
    return rv;
}

struct out {
    uint8_t *buf;
    size_t len, cap;
};

static int out_put(struct out *o, const void *p, size_t n)
{
    if (o->len + n > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        while (cap < o->len + n)
            cap *= 2;
        uint8_t *b = realloc(o->buf, cap);
        if (b == NULL)
            return LSKV_ENOMEM;
        o->buf = b;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, p, n);
    o->len += n;
    return 0;
}

static int out_u32(struct out *o, uint32_t v)
{
    uint8_t b[4];
    put_u32be(b, v);
    return out_put(o, b, 4);
}

static int out_u64(struct out *o, uint64_t v)
{
    uint8_t b[8];
    put_u64be(b, v);
    return out_put(o, b, 8);
}

static int serve_record(struct fsm *f, int64_t main, int64_t sub, struct out *o, bool *found)
{
    struct arena a;
    arena_init(&a);
    struct kv_record r;
    int rv = recstore_get(f->records, main, sub, &a, &r, NULL);
    *found = rv == 0;
    uint8_t flag = rv == 0 ? 1 : 0;
    if (rv == LSKV_ECORRUPT)
        rv = 0; /* missing or failing here: "not found"; the asker tries later */
    if (rv == 0)
        rv = out_put(o, &flag, 1);
    if (rv == 0 && *found) {
        uint8_t t = r.tombstone ? 1 : 0;
        if ((rv = out_put(o, &t, 1)) == 0 && (rv = out_u64(o, (uint64_t)r.create_revision)) == 0 &&
            (rv = out_u64(o, (uint64_t)r.version)) == 0 &&
            (rv = out_u64(o, (uint64_t)r.lease)) == 0 &&
            (rv = out_u32(o, (uint32_t)r.key_len)) == 0 &&
            (rv = out_put(o, r.key, r.key_len)) == 0 &&
            (rv = out_u32(o, (uint32_t)r.value_len)) == 0)
            rv = out_put(o, r.value, r.value_len);
        explicit_bzero((void *)r.value, r.value_len);
    }
    arena_close(&a);
    return rv;
}

static int serve_records(struct fsm *f, const uint8_t *req, size_t len, uint8_t **reply,
                         size_t *reply_len)
{
    if (len < 4 || get_u32be(req) > CATCHUP_RECORDS_PER_CALL || len != 4 + 16 * get_u32be(req))
        return LSKV_EINVAL;
    uint32_t n = get_u32be(req);
    struct out o = {0};
    int rv = out_u32(&o, 0);
    uint32_t m = 0;
    for (; m < n && rv == 0 && o.len < CATCHUP_CALL_MAX_BYTES; m++) {
        bool found;
        rv = serve_record(f, (int64_t)get_u64be(req + 4 + 16 * m),
                          (int64_t)get_u64be(req + 12 + 16 * m), &o, &found);
        if (!found) {
            m++;
            break;
        }
    }
    if (rv != 0) {
        if (o.buf != NULL)
            explicit_bzero(o.buf, o.len);
        free(o.buf);
        return rv;
    }
    put_u32be(o.buf, m);
    *reply = o.buf;
    *reply_len = o.len;
    return 0;
}

int catchup_serve(struct fsm *f, uint8_t kind, const uint8_t *req, size_t len,
                  uint8_t **reply, size_t *reply_len)
{
    if (f->pending != NULL)
        return LSKV_ENOTREADY;
    if (kind == CATCHUP_CALL_LEDGER)
        return serve_ledger(f, req, len, reply, reply_len);
    if (kind == CATCHUP_CALL_RECORDS)
        return serve_records(f, req, len, reply, reply_len);
    return LSKV_EINVAL;
}

/* Sealed MVCC records over an untrusted engine.
 *
 * NOTES ON THE DESIGN
 *
 * Terms. An id is (main, sub), a revision; the engine key is its 16 bytes
 * main||sub big endian. A body is the plaintext of one record
 * (docs/record-format.md); the engine value is version byte || AEAD(body).
 * The index (kv/) is trusted and knows every id that must exist.
 *
 * Invariants.
 *  (1) The engine only ever receives sealed bodies and ids: no key, value or
 *      other plaintext leaves trusted memory.
 *  (2) An id is written once, and only for a committed revision, so an id has
 *      exactly one plaintext; its AAD (version || id || cluster id) therefore
 *      pins a sealed value to its id: a value moved to another id (swap,
 *      replay) fails authentication. The raft term is deliberately not bound:
 *      it would add nothing given (2) and cost trusted memory per revision.
 *  (3) recstore_get returns data only if it authenticated under the data key
 *      and the id's AAD, decoded exactly (no trailing bytes) and its
 *      mod_revision equals the id's main; or if it came from the cache or the
 *      pending batch, both trusted memory holding bodies that passed (3) or
 *      were built here. Everything else is LSKV_ECORRUPT naming the id.
 *  (4) A record the index asks for that the engine does not have is
 *      LSKV_ECORRUPT ("missing"): omission is detected because the caller
 *      only asks for ids that must exist.
 *  (5) Pending puts and deletes are visible to recstore_get before commit.
 *  (6) After an engine write failure the store is sticky-failed: no further
 *      write reaches the engine until reopen (what was written may be partial;
 *      the Raft log, not the engine, is the source of truth to rebuild from).
 *
 * State: healthy --engine write error--> failed (every write: LSKV_EIO).
 * Transitions: recstore_commit and recstore_sync (via write_pending()).
 *
 * Memory. Puts encode the body straight into the pending buffer (reused
 * across batches), seal from there into a reused seal buffer and hand the
 * engine batch a copy; the pending table maps ids to offsets in the pending
 * buffer. A get decrypts straight into the caller's arena and decodes in
 * place, so a read costs the engine's value allocation and one arena
 * allocation. */
#include "storage/recstore.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/bytes.h"
#include "common/err.h"
#include "crypto/keyring.h"
#include "storage/cache.h"
#include "storage/engine.h"

enum {
    FLAG_TOMBSTONE = 0x01,
    FLAGS_KNOWN = FLAG_TOMBSTONE,
    MAX_RECORD_BYTES = 1 << 30,
    PENDING_INITIAL_SLOTS = 64,
    /* Buffers grown past these by one large batch (a compaction, a 1 MiB
     * value) are freed after it rather than kept (and cleared) forever. */
    PENDING_KEEP_SLOTS = 4096,
    BUFFER_KEEP_BYTES = 4 << 20,
};

enum pending_kind { PENDING_EMPTY = 0, PENDING_PUT, PENDING_DELETE };

struct pending_slot {
    int64_t main;
    int64_t sub;
    size_t off; /* of the body in pending_buf (PENDING_PUT) */
    size_t len;
    enum pending_kind kind;
};

struct recstore {
    struct engine *engine;
    bool engine_owned;
    keyring *keys; /* record keys by epoch (crypto/keyring.h) */
    uint64_t cluster_id;
    cache *cache;

    /* The pending batch: engine batch, bodies, and an open-addressing table
     * (linear probing, power-of-two size, at most half full) over ids. */
    struct engine_batch *batch;
    uint8_t *pending_buf;
    size_t pending_len;
    size_t pending_cap;
    struct pending_slot *slots;
    size_t nslots;
    size_t npending;

    uint8_t *seal_buf; /* reused: engine value being built */
    size_t seal_cap;

    bool failed;
    char failed_msg[LSKV_ERRMSG_SIZE];
    uint64_t cache_hits;
    uint64_t engine_reads;

    int64_t disk_bytes;        /* recstore_disk_bytes, measured at disk_bytes_ms */
    uint64_t disk_bytes_ms;
};

void recstore_make_id(int64_t main, int64_t sub, uint8_t id[RECSTORE_ID_BYTES])
{
    put_u64be(id, (uint64_t)main);
    put_u64be(id + 8, (uint64_t)sub);
}

void recstore_make_aad(uint8_t version, uint32_t key_id, int64_t main, int64_t sub,
                       uint64_t cluster_id, uint8_t aad[RECSTORE_AAD_BYTES])
{
    aad[0] = version;
    put_u32be(aad + 1, key_id);
    recstore_make_id(main, sub, aad + 5);
    put_u64be(aad + 5 + RECSTORE_ID_BYTES, cluster_id);
}

void recstore_key_stats(const recstore *rs, uint32_t *epoch, uint64_t *seals)
{
    *epoch = keyring_last_epoch(rs->keys);
    *seals = keyring_seals(rs->keys, *epoch);
}

static uint64_t hash_id(int64_t main, int64_t sub)
{
    uint64_t x = (uint64_t)main * 0x9e3779b97f4a7c15ULL ^ (uint64_t)sub;
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 29;
    return x;
}

/* ---- body codec ------------------------------------------------------------
 *
 * Body v1 (all integers big endian):
 *   0  u8   format version (1)
 *   1  u8   flags: bit 0 tombstone; other bits zero
 *   2  i64  create_revision
 *  10  i64  mod_revision
 *  18  i64  version
 *  26  i64  lease
 *  34  u32  key_len
 *  38  u32  value_len
 *  42  key[key_len] value[value_len]      (nothing after)
 */

static int check_record(const struct kv_record *r, int64_t main, char *errmsg)
{
    if (r->mod_revision != main) {
        errmsg_printf(errmsg, "mod_revision %" PRId64 " is not the id's revision",
                      r->mod_revision);
        return LSKV_ECORRUPT;
    }
    if (r->key_len == 0) {
        errmsg_printf(errmsg, "empty key");
        return LSKV_ECORRUPT;
    }
    if (r->lease < 0) {
        errmsg_printf(errmsg, "negative lease %" PRId64, r->lease);
        return LSKV_ECORRUPT;
    }
    if (r->tombstone) {
        if (r->create_revision != 0 || r->version != 0 || r->value_len != 0) {
            errmsg_printf(errmsg,
                          "tombstone with create_revision %" PRId64 ", version %" PRId64
                          ", %zu value bytes",
                          r->create_revision, r->version, r->value_len);
            return LSKV_ECORRUPT;
        }
    } else {
        if (r->create_revision < 1 || r->create_revision > main) {
            errmsg_printf(errmsg, "create_revision %" PRId64 " outside 1..%" PRId64,
                          r->create_revision, main);
            return LSKV_ECORRUPT;
        }
        if (r->version < 1) {
            errmsg_printf(errmsg, "version %" PRId64 " of a live key", r->version);
            return LSKV_ECORRUPT;
        }
    }
    return 0;
}

static size_t body_len(const struct kv_record *r)
{
    return RECSTORE_BODY_HEADER_BYTES + r->key_len + r->value_len;
}

static void encode_body(const struct kv_record *r, uint8_t *p)
{
    p[0] = RECSTORE_BODY_VERSION;
    p[1] = r->tombstone ? FLAG_TOMBSTONE : 0;
    put_u64be(p + 2, (uint64_t)r->create_revision);
    put_u64be(p + 10, (uint64_t)r->mod_revision);
    put_u64be(p + 18, (uint64_t)r->version);
    put_u64be(p + 26, (uint64_t)r->lease);
    put_u32be(p + 34, (uint32_t)r->key_len);
    put_u32be(p + 38, (uint32_t)r->value_len);
    if (r->key_len)
        memcpy(p + RECSTORE_BODY_HEADER_BYTES, r->key, r->key_len);
    if (r->value_len)
        memcpy(p + RECSTORE_BODY_HEADER_BYTES + r->key_len, r->value, r->value_len);
}

int recstore_decode_body(const uint8_t *body, size_t len, int64_t main,
                         struct kv_record *out, char *errmsg)
{
    if (len < RECSTORE_BODY_HEADER_BYTES) {
        errmsg_printf(errmsg, "body of %zu bytes is shorter than its %d byte header",
                      len, RECSTORE_BODY_HEADER_BYTES);
        return LSKV_ECORRUPT;
    }
    if (body[0] != RECSTORE_BODY_VERSION) {
        errmsg_printf(errmsg, "body format version %u, expected %u", body[0],
                      RECSTORE_BODY_VERSION);
        return LSKV_ECORRUPT;
    }
    if (body[1] & ~FLAGS_KNOWN) {
        errmsg_printf(errmsg, "unknown flags 0x%02x", body[1]);
        return LSKV_ECORRUPT;
    }
    uint64_t key_len = get_u32be(body + 34);
    uint64_t value_len = get_u32be(body + 38);
    uint64_t want = RECSTORE_BODY_HEADER_BYTES + key_len + value_len;
    if (want != len) {
        errmsg_printf(errmsg, "%s: lengths say %" PRIu64 " bytes, body has %zu",
                      want < len ? "trailing bytes" : "truncated body", want, len);
        return LSKV_ECORRUPT;
    }
    struct kv_record r = {
        .key = body + RECSTORE_BODY_HEADER_BYTES,
        .key_len = (size_t)key_len,
        .value = body + RECSTORE_BODY_HEADER_BYTES + key_len,
        .value_len = (size_t)value_len,
        .create_revision = (int64_t)get_u64be(body + 2),
        .mod_revision = (int64_t)get_u64be(body + 10),
        .version = (int64_t)get_u64be(body + 18),
        .lease = (int64_t)get_u64be(body + 26),
        .tombstone = (body[1] & FLAG_TOMBSTONE) != 0,
    };
    int rv = check_record(&r, main, errmsg);
    if (rv != 0)
        return rv;
    *out = r;
    return 0;
}

/* ---- open / close ---------------------------------------------------------- */

int recstore_open(const struct recstore_config *config, recstore **out, char *errmsg)
{
    char scratch[LSKV_ERRMSG_SIZE];
    int rv;
    if (errmsg == NULL)
        errmsg = scratch;
    recstore *rs = calloc(1, sizeof *rs);
    if (rs == NULL) {
        errmsg_printf(errmsg, "recstore: out of memory");
        return LSKV_ENOMEM;
    }
    rs->cluster_id = config->cluster_id;
    rv = keyring_new(config->data_key, RECSTORE_KEY_PURPOSE,
                     config->key_epoch_size ? config->key_epoch_size
                                            : KEYRING_DEFAULT_EPOCH_SIZE,
                     &rs->keys);
    if (rv != 0) {
        errmsg_printf(errmsg, "recstore: cannot set up the data key");
        goto err;
    }
    rv = cache_open(config->cache_bytes, &rs->cache);
    if (rv != 0) {
        errmsg_printf(errmsg, "recstore: out of memory");
        goto err_after_key;
    }
    if (config->engine != NULL) {
        rs->engine = config->engine;
    } else {
        rv = engine_leveldb_open(config->path, &rs->engine, errmsg);
        if (rv != 0)
            goto err_after_cache;
        rs->engine_owned = true;
    }
    *out = rs;
    return 0;

err_after_cache:
    cache_close(rs->cache);
err_after_key:
    keyring_free(rs->keys);
err:
    free(rs);
    return rv;
}

static void drop_pending(recstore *rs)
{
    if (rs->batch != NULL) {
        rs->engine->batch_free(rs->batch);
        rs->batch = NULL;
    }
    if (rs->pending_len)
        explicit_bzero(rs->pending_buf, rs->pending_len);
    rs->pending_len = 0;
    if (rs->nslots > PENDING_KEEP_SLOTS) {
        free(rs->slots);
        rs->slots = NULL;
        rs->nslots = 0;
    } else if (rs->npending) {
        memset(rs->slots, 0, rs->nslots * sizeof *rs->slots);
    }
    rs->npending = 0;
    if (rs->pending_cap > BUFFER_KEEP_BYTES) {
        free(rs->pending_buf);
        rs->pending_buf = NULL;
        rs->pending_cap = 0;
    }
    if (rs->seal_cap > BUFFER_KEEP_BYTES) {
        free(rs->seal_buf);
        rs->seal_buf = NULL;
        rs->seal_cap = 0;
    }
}

void recstore_close(recstore *rs)
{
    if (rs == NULL)
        return;
    drop_pending(rs);
    if (rs->engine_owned)
        rs->engine->close(rs->engine);
    cache_close(rs->cache);
    keyring_free(rs->keys);
    free(rs->pending_buf);
    free(rs->slots);
    free(rs->seal_buf);
    free(rs);
}

/* ---- pending batch ----------------------------------------------------------- */

static struct pending_slot *pending_find(const recstore *rs, int64_t main, int64_t sub)
{
    if (rs->nslots == 0)
        return NULL;
    size_t mask = rs->nslots - 1;
    for (size_t i = hash_id(main, sub) & mask;; i = (i + 1) & mask) {
        struct pending_slot *s = &rs->slots[i];
        if (s->kind == PENDING_EMPTY)
            return NULL;
        if (s->main == main && s->sub == sub)
            return s;
    }
}

static int pending_grow(recstore *rs)
{
    size_t n = rs->nslots ? rs->nslots * 2 : PENDING_INITIAL_SLOTS;
    struct pending_slot *slots = calloc(n, sizeof *slots);
    if (slots == NULL)
        return LSKV_ENOMEM;
    for (size_t i = 0; i < rs->nslots; i++) {
        struct pending_slot *s = &rs->slots[i];
        if (s->kind == PENDING_EMPTY)
            continue;
        size_t j = hash_id(s->main, s->sub) & (n - 1);
        while (slots[j].kind != PENDING_EMPTY)
            j = (j + 1) & (n - 1);
        slots[j] = *s;
    }
    free(rs->slots);
    rs->slots = slots;
    rs->nslots = n;
    return 0;
}

/* Returns the slot for (main, sub), claiming an empty one if needed. */
static struct pending_slot *pending_slot(recstore *rs, int64_t main, int64_t sub)
{
    struct pending_slot *s = pending_find(rs, main, sub);
    if (s != NULL)
        return s;
    if ((rs->npending + 1) * 2 > rs->nslots && pending_grow(rs) != 0)
        return NULL;
    size_t mask = rs->nslots - 1;
    size_t i = hash_id(main, sub) & mask;
    while (rs->slots[i].kind != PENDING_EMPTY)
        i = (i + 1) & mask;
    s = &rs->slots[i];
    s->main = main;
    s->sub = sub;
    rs->npending++;
    return s;
}

static int reserve(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 4096;
    while (n < need)
        n *= 2;
    uint8_t *p = realloc(*buf, n);
    if (p == NULL)
        return LSKV_ENOMEM;
    *buf = p;
    *cap = n;
    return 0;
}

static int ensure_batch(recstore *rs)
{
    if (rs->batch == NULL)
        rs->batch = rs->engine->batch_new(rs->engine);
    return rs->batch != NULL ? 0 : LSKV_ENOMEM;
}

int recstore_put(recstore *rs, int64_t main, int64_t sub, const struct kv_record *rec)
{
    char why[LSKV_ERRMSG_SIZE];
    int rv;
    if (rs->failed)
        return LSKV_EIO;
    if (main < 1 || sub < 0 || check_record(rec, main, why) != 0)
        return LSKV_EINVAL;
    if (rec->key_len > MAX_RECORD_BYTES || rec->value_len > MAX_RECORD_BYTES ||
        rec->key_len + rec->value_len > MAX_RECORD_BYTES)
        return LSKV_ETOOLARGE;
    size_t len = body_len(rec);
    if (reserve(&rs->pending_buf, &rs->pending_cap, rs->pending_len + len) != 0 ||
        reserve(&rs->seal_buf, &rs->seal_cap, len + RECSTORE_VALUE_OVERHEAD) != 0 ||
        ensure_batch(rs) != 0)
        return LSKV_ENOMEM;
    /* Encode at the tail of the pending buffer (claimed only on success),
     * seal, and only then touch the pending table and the batch, so a
     * failure leaves the pending batch as it was. */
    uint8_t *body = rs->pending_buf + rs->pending_len;
    encode_body(rec, body);
    uint8_t aad[RECSTORE_AAD_BYTES];
    uint32_t epoch = keyring_epoch_of(rs->keys, (uint64_t)main);
    aead_key *key = NULL;
    recstore_make_aad(RECSTORE_FORMAT_VERSION, epoch, main, sub, rs->cluster_id, aad);
    rs->seal_buf[0] = RECSTORE_FORMAT_VERSION;
    put_u32be(rs->seal_buf + 1, epoch);
    if ((rv = keyring_count_seal(rs->keys, epoch)) == 0 &&
        (rv = keyring_key(rs->keys, epoch, &key)) == 0)
        rv = aead_key_seal(key, aad, sizeof aad, body, len,
                           rs->seal_buf + RECSTORE_VALUE_HEADER_BYTES);
    struct pending_slot *slot = rv == 0 ? pending_slot(rs, main, sub) : NULL;
    if (slot == NULL) {
        explicit_bzero(body, len);
        return rv == 0 || rv == LSKV_ENOMEM ? LSKV_ENOMEM : LSKV_EIO;
    }
    uint8_t id[RECSTORE_ID_BYTES];
    recstore_make_id(main, sub, id);
    rs->engine->batch_put(rs->batch, id, sizeof id, rs->seal_buf,
                          len + RECSTORE_VALUE_OVERHEAD);
    slot->kind = PENDING_PUT;
    slot->off = rs->pending_len;
    slot->len = len;
    rs->pending_len += len;
    return 0;
}

int recstore_delete(recstore *rs, int64_t main, int64_t sub)
{
    if (rs->failed)
        return LSKV_EIO;
    if (ensure_batch(rs) != 0)
        return LSKV_ENOMEM;
    struct pending_slot *slot = pending_slot(rs, main, sub);
    if (slot == NULL)
        return LSKV_ENOMEM;
    uint8_t id[RECSTORE_ID_BYTES];
    recstore_make_id(main, sub, id);
    rs->engine->batch_delete(rs->batch, id, sizeof id);
    slot->kind = PENDING_DELETE;
    cache_remove(rs->cache, main, sub);
    return 0;
}

static void enter_failed(recstore *rs, const char *what, const char *why)
{
    rs->failed = true;
    errmsg_printf(rs->failed_msg, "%s: %s", what, why);
}

/* Writes the pending batch (or, for a sync with nothing pending, an empty
 * one: a synced LevelDB write syncs its log whatever the batch holds), then
 * moves the committed bodies into the cache. */
static int write_pending(recstore *rs, bool sync)
{
    char why[LSKV_ERRMSG_SIZE] = "";
    if (rs->failed)
        return LSKV_EIO;
    if (rs->batch == NULL) {
        if (!sync)
            return 0;
        if (ensure_batch(rs) != 0) {
            enter_failed(rs, "sync", "out of memory");
            return LSKV_EIO;
        }
    }
    struct engine_batch *b = rs->batch;
    rs->batch = NULL; /* batch_write frees it, whatever happens */
    int rv = rs->engine->batch_write(rs->engine, b, sync, why);
    if (rv != 0) {
        enter_failed(rs, sync ? "synced engine write" : "engine write", why);
        drop_pending(rs);
        return LSKV_EIO;
    }
    for (size_t i = 0; rs->npending > 0 && i < rs->nslots; i++) {
        struct pending_slot *s = &rs->slots[i];
        if (s->kind == PENDING_PUT)
            /* The cache is an accelerator: if it cannot take a body now, the
             * engine still has the record. */
            (void)cache_put(rs->cache, s->main, s->sub, rs->pending_buf + s->off, s->len);
    }
    drop_pending(rs);
    return 0;
}

int recstore_commit(recstore *rs)
{
    return write_pending(rs, false);
}

int recstore_sync(recstore *rs)
{
    return write_pending(rs, true);
}

const char *recstore_errmsg(const recstore *rs)
{
    return rs->failed ? rs->failed_msg : "";
}

/* ---- reads -------------------------------------------------------------------- */

static int corrupt(char *errmsg, int64_t main, int64_t sub, const char *why)
{
    errmsg_printf(errmsg, "record %" PRId64 ".%" PRId64 ": %s", main, sub, why);
    return LSKV_ECORRUPT;
}

/* Copies a trusted body (pending or cached) into the arena and decodes it. */
static int from_trusted(const uint8_t *body, size_t len, int64_t main, int64_t sub,
                        struct arena *a, struct kv_record *out, char *errmsg)
{
    char why[LSKV_ERRMSG_SIZE];
    uint8_t *copy = arena_memdup(a, body, len);
    if (copy == NULL) {
        errmsg_printf(errmsg, "record %" PRId64 ".%" PRId64 ": out of memory", main, sub);
        return LSKV_ENOMEM;
    }
    int rv = recstore_decode_body(copy, len, main, out, why);
    if (rv != 0)
        return corrupt(errmsg, main, sub, why); /* a bug: trusted bodies are valid */
    return 0;
}

int recstore_get(recstore *rs, int64_t main, int64_t sub, struct arena *a,
                 struct kv_record *out, char *errmsg)
{
    char scratch[LSKV_ERRMSG_SIZE];
    char why[LSKV_ERRMSG_SIZE];
    if (errmsg == NULL)
        errmsg = scratch;

    struct pending_slot *slot = pending_find(rs, main, sub);
    if (slot != NULL) {
        if (slot->kind == PENDING_DELETE)
            return corrupt(errmsg, main, sub, "missing (deleted in the pending batch)");
        return from_trusted(rs->pending_buf + slot->off, slot->len, main, sub, a, out,
                            errmsg);
    }
    size_t len;
    const uint8_t *cached = cache_get(rs->cache, main, sub, &len);
    if (cached != NULL) {
        rs->cache_hits++;
        return from_trusted(cached, len, main, sub, a, out, errmsg);
    }

    rs->engine_reads++;
    uint8_t id[RECSTORE_ID_BYTES];
    recstore_make_id(main, sub, id);
    uint8_t *val = NULL;
    size_t val_len = 0;
    int rv = rs->engine->get(rs->engine, id, sizeof id, &val, &val_len, why);
    if (rv == LSKV_ENOTFOUND)
        return corrupt(errmsg, main, sub, "missing from engine");
    if (rv != 0) {
        /* The engine could not produce the bytes (its own checksum failed, or
         * I/O): nothing trustworthy to serve. */
        errmsg_printf(errmsg, "record %" PRId64 ".%" PRId64 ": engine: %s", main, sub, why);
        return rv == LSKV_ECORRUPT ? LSKV_ECORRUPT : LSKV_EIO;
    }
    if (val_len < RECSTORE_VALUE_OVERHEAD) {
        errmsg_printf(why, "engine value of %zu bytes is too short", val_len);
        rv = corrupt(errmsg, main, sub, why);
        goto out;
    }
    if (val[0] != RECSTORE_FORMAT_VERSION) {
        errmsg_printf(why, "unsupported record format version %u", val[0]);
        rv = corrupt(errmsg, main, sub, why);
        goto out;
    }
    len = val_len - RECSTORE_VALUE_OVERHEAD;
    uint8_t *body = arena_alloc(a, len ? len : 1);
    if (body == NULL) {
        errmsg_printf(errmsg, "record %" PRId64 ".%" PRId64 ": out of memory", main, sub);
        rv = LSKV_ENOMEM;
        goto out;
    }
    uint8_t aad[RECSTORE_AAD_BYTES];
    uint32_t key_id = get_u32be(val + 1);
    recstore_make_aad(val[0], key_id, main, sub, rs->cluster_id, aad);
    aead_key *key = NULL;
    rv = keyring_key(rs->keys, key_id, &key);
    if (rv == 0)
        rv = aead_key_open(key, aad, sizeof aad, val + RECSTORE_VALUE_HEADER_BYTES,
                           val_len - RECSTORE_VALUE_HEADER_BYTES, body);
    if (rv == LSKV_ECORRUPT) {
        rv = corrupt(errmsg, main, sub, "authentication failed");
        goto out;
    }
    if (rv != 0) {
        errmsg_printf(errmsg, "record %" PRId64 ".%" PRId64 ": decryption error", main, sub);
        rv = rv == LSKV_ENOMEM ? rv : LSKV_EIO;
        goto out;
    }
    rv = recstore_decode_body(body, len, main, out, why);
    if (rv != 0) {
        explicit_bzero(body, len);
        rv = corrupt(errmsg, main, sub, why);
        goto out;
    }
    (void)cache_put(rs->cache, main, sub, body, len);
out:
    free(val);
    return rv;
}

/* The engine walks its directory to answer (a stat per file): every write's
 * quota check asks, so one answer serves DISK_BYTES_MS. */
#define DISK_BYTES_MS 100

bool recstore_contains(recstore *rs, int64_t main, int64_t sub)
{
    struct pending_slot *slot = pending_find(rs, main, sub);
    if (slot != NULL)
        return slot->kind != PENDING_DELETE;
    size_t len;
    if (cache_get(rs->cache, main, sub, &len) != NULL)
        return true;
    uint8_t id[RECSTORE_ID_BYTES];
    recstore_make_id(main, sub, id);
    uint8_t *val = NULL;
    size_t val_len = 0;
    char why[LSKV_ERRMSG_SIZE];
    int rv = rs->engine->get(rs->engine, id, sizeof id, &val, &val_len, why);
    free(val);
    return rv == 0;
}

int64_t recstore_disk_bytes(recstore *rs)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 + 1;
    if (rs->disk_bytes_ms == 0 || now - rs->disk_bytes_ms >= DISK_BYTES_MS) {
        rs->disk_bytes = rs->engine->disk_bytes(rs->engine);
        rs->disk_bytes_ms = now;
    }
    return rs->disk_bytes;
}

int64_t recstore_disk_bytes_now(recstore *rs)
{
    rs->disk_bytes_ms = 0;
    return recstore_disk_bytes(rs);
}

int recstore_compact_engine(recstore *rs, char *errmsg)
{
    struct engine *e = rs->engine; /* set at open, never changed */
    return e->compact ? e->compact(e, errmsg) : 0;
}

int64_t recstore_engine_mem_bytes(recstore *rs)
{
    return rs->engine->mem_bytes ? rs->engine->mem_bytes(rs->engine) : 0;
}

void recstore_stats(const recstore *rs, struct recstore_stats *out)
{
    *out = (struct recstore_stats){
        .cache_bytes = cache_bytes(rs->cache),
        .cache_entries = cache_count(rs->cache),
        .cache_hits = rs->cache_hits,
        .engine_reads = rs->engine_reads,
        .pending_records = rs->npending,
    };
}

/* Fuzzes the sealed record read path of storage/recstore.c.
 *
 * Input byte 0 picks a mode, the rest is the payload:
 *   0: the payload is the raw engine value of record 5.0 (the host's view:
 *      almost everything must fail authentication);
 *   1: the payload is a body plaintext, sealed here with the right key and
 *      AAD (docs/record-format.md), so the body decoder sees arbitrary bytes;
 *   2: the payload goes to recstore_decode_body directly.
 * Whatever is accepted must be accepted by the writer too and survive a
 * put/commit/get round trip unchanged. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/bytes.h"
#include "common/err.h"
#include "crypto/aead.h"
#include "crypto/keyring.h"
#include "storage/engine.h"
#include "storage/recstore.h"

/* An engine holding one value, returned for every id. */
static uint8_t *mem_val;
static size_t mem_len;
static bool mem_present;

static int mem_get(struct engine *e, const uint8_t *id, size_t id_len, uint8_t **val,
                   size_t *val_len, char *errmsg)
{
    (void)e, (void)id, (void)id_len, (void)errmsg;
    if (!mem_present)
        return LSKV_ENOTFOUND;
    *val = malloc(mem_len ? mem_len : 1);
    if (*val == NULL)
        return LSKV_EIO;
    if (mem_len)
        memcpy(*val, mem_val, mem_len);
    *val_len = mem_len;
    return 0;
}

static uint8_t batch_token;

static struct engine_batch *mem_batch_new(struct engine *e)
{
    (void)e;
    return (struct engine_batch *)&batch_token;
}

static void mem_set(const uint8_t *val, size_t len)
{
    free(mem_val);
    mem_val = malloc(len ? len : 1);
    if (len)
        memcpy(mem_val, val, len);
    mem_len = len;
    mem_present = true;
}

static void mem_batch_put(struct engine_batch *b, const uint8_t *id, size_t id_len,
                          const uint8_t *val, size_t val_len)
{
    (void)b, (void)id, (void)id_len;
    mem_set(val, val_len);
}

static void mem_batch_delete(struct engine_batch *b, const uint8_t *id, size_t id_len)
{
    (void)b, (void)id, (void)id_len;
    mem_present = false;
}

static int mem_batch_write(struct engine *e, struct engine_batch *b, bool sync,
                           char *errmsg)
{
    (void)e, (void)b, (void)sync, (void)errmsg;
    return 0;
}

static void mem_batch_free(struct engine_batch *b)
{
    (void)b;
}

static int64_t mem_disk_bytes(struct engine *e)
{
    (void)e;
    return (int64_t)mem_len;
}

static void mem_close(struct engine *e)
{
    (void)e;
}

static struct engine mem_engine = {
    .get = mem_get,
    .batch_new = mem_batch_new,
    .batch_put = mem_batch_put,
    .batch_delete = mem_batch_delete,
    .batch_write = mem_batch_write,
    .batch_free = mem_batch_free,
    .disk_bytes = mem_disk_bytes,
    .close = mem_close,
};

static const uint8_t KEY[AEAD_KEY_BYTES] = {7, 7, 7};
enum { CLUSTER_ID = 99, MAIN = 5, SUB = 0 };

static void check_roundtrip(recstore *rs, const struct kv_record *r)
{
    if (r->mod_revision != MAIN || (r->tombstone && r->value_len != 0))
        abort();
    if (recstore_put(rs, MAIN, SUB, r) != 0)
        abort(); /* the reader accepted what the writer would refuse */
    if (recstore_commit(rs) != 0)
        abort();
    struct arena a;
    struct kv_record back;
    char errmsg[LSKV_ERRMSG_SIZE];
    arena_init(&a);
    if (recstore_get(rs, MAIN, SUB, &a, &back, errmsg) != 0)
        abort();
    if (back.key_len != r->key_len || memcmp(back.key, r->key, r->key_len) != 0 ||
        back.value_len != r->value_len ||
        (r->value_len && memcmp(back.value, r->value, r->value_len) != 0) ||
        back.create_revision != r->create_revision ||
        back.mod_revision != r->mod_revision || back.version != r->version ||
        back.lease != r->lease || back.tombstone != r->tombstone)
        abort();
    arena_close(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int mode = data[0] % 3;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    char errmsg[LSKV_ERRMSG_SIZE];
    struct kv_record r;

    if (mode == 2) {
        /* Decode from an exact-size copy so ASan sees any overread. */
        uint8_t *body = malloc(n ? n : 1);
        if (n)
            memcpy(body, p, n);
        if (recstore_decode_body(body, n, MAIN, &r, errmsg) == 0) {
            if (r.mod_revision != MAIN ||
                42 + r.key_len + r.value_len != n)
                abort();
        }
        free(body);
        return 0;
    }

    if (mode == 0) {
        mem_set(p, n);
    } else {
        uint8_t aad[RECSTORE_AAD_BYTES], key[AEAD_KEY_BYTES];
        uint8_t nonce[AEAD_NONCE_BYTES] = {0};
        recstore_make_aad(RECSTORE_FORMAT_VERSION, 0, MAIN, SUB, CLUSTER_ID, aad);
        if (keyring_derive(KEY, RECSTORE_KEY_PURPOSE, 0, key) != 0)
            abort();
        uint8_t *val = malloc(n + RECSTORE_VALUE_OVERHEAD);
        val[0] = RECSTORE_FORMAT_VERSION;
        put_u32be(val + 1, 0);
        if (aead_seal_with_nonce(key, nonce, aad, sizeof aad, p, n,
                                 val + RECSTORE_VALUE_HEADER_BYTES) != 0)
            abort();
        mem_set(val, n + RECSTORE_VALUE_OVERHEAD);
        free(val);
    }

    struct recstore_config cfg = {
        .data_key = KEY,
        .cluster_id = CLUSTER_ID,
        .cache_bytes = 0,
        .engine = &mem_engine,
    };
    recstore *rs;
    if (recstore_open(&cfg, &rs, errmsg) != 0)
        abort();
    struct arena a;
    arena_init(&a);
    int rv = recstore_get(rs, MAIN, SUB, &a, &r, errmsg);
    if (rv == 0)
        check_roundtrip(rs, &r);
    else if (rv != LSKV_ECORRUPT || strncmp(errmsg, "record 5.0: ", 12) != 0)
        abort();
    arena_close(&a);
    recstore_close(rs);
    free(mem_val);
    mem_val = NULL;
    mem_len = 0;
    mem_present = false;
    return 0;
}

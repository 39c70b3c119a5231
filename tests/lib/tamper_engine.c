#include "tamper_engine.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "storage/recstore.h"

enum { MAX_HIDDEN = 64 };

struct tamper {
    struct engine base; /* first */
    struct engine *inner;
    struct {
        int64_t main, sub;
    } hidden[MAX_HIDDEN];
    size_t nhidden;
    bool fail_writes;
    int fail_reads;
    uint64_t gets;
};

static struct tamper *T(struct engine *e)
{
    return e->impl;
}

static bool is_hidden(struct tamper *t, const uint8_t *id, size_t id_len)
{
    for (size_t i = 0; i < t->nhidden; i++) {
        uint8_t h[RECSTORE_ID_BYTES];
        recstore_make_id(t->hidden[i].main, t->hidden[i].sub, h);
        if (id_len == sizeof h && memcmp(h, id, sizeof h) == 0)
            return true;
    }
    return false;
}

static int t_get(struct engine *e, const uint8_t *id, size_t id_len, uint8_t **val,
                 size_t *val_len, char *errmsg)
{
    struct tamper *t = T(e);
    t->gets++;
    if (t->fail_reads != 0) {
        errmsg_printf(errmsg, "tamper: injected read failure");
        return t->fail_reads;
    }
    if (is_hidden(t, id, id_len))
        return LSKV_ENOTFOUND;
    return t->inner->get(t->inner, id, id_len, val, val_len, errmsg);
}

/* A tamper batch wraps the inner engine's batch and remembers that engine. */
struct tbatch {
    struct engine *inner;
    struct engine_batch *b;
};

static struct engine_batch *t_batch_new(struct engine *e)
{
    struct tbatch *tb = malloc(sizeof *tb);
    if (tb == NULL)
        return NULL;
    tb->inner = T(e)->inner;
    tb->b = tb->inner->batch_new(tb->inner);
    if (tb->b == NULL) {
        free(tb);
        return NULL;
    }
    return (struct engine_batch *)tb;
}

static void t_batch_put(struct engine_batch *b, const uint8_t *id, size_t id_len,
                        const uint8_t *val, size_t val_len)
{
    struct tbatch *tb = (struct tbatch *)b;
    tb->inner->batch_put(tb->b, id, id_len, val, val_len);
}

static void t_batch_delete(struct engine_batch *b, const uint8_t *id, size_t id_len)
{
    struct tbatch *tb = (struct tbatch *)b;
    tb->inner->batch_delete(tb->b, id, id_len);
}

static void t_batch_free(struct engine_batch *b)
{
    struct tbatch *tb = (struct tbatch *)b;
    tb->inner->batch_free(tb->b);
    free(tb);
}

static int t_batch_write(struct engine *e, struct engine_batch *b, bool sync, char *errmsg)
{
    struct tamper *t = T(e);
    struct tbatch *tb = (struct tbatch *)b;
    if (t->fail_writes) {
        t_batch_free(b);
        errmsg_printf(errmsg, "tamper: injected write failure");
        return LSKV_EIO;
    }
    int rv = t->inner->batch_write(t->inner, tb->b, sync, errmsg);
    free(tb);
    return rv;
}

static int64_t t_disk_bytes(struct engine *e)
{
    return T(e)->inner->disk_bytes(T(e)->inner);
}

static void t_close(struct engine *e)
{
    struct tamper *t = T(e);
    t->inner->close(t->inner);
    free(t);
}

int tamper_engine_open(struct engine *inner, struct engine **out)
{
    struct tamper *t = calloc(1, sizeof *t);
    if (t == NULL)
        return LSKV_ENOMEM;
    t->inner = inner;
    t->base = (struct engine){
        .impl = t,
        .get = t_get,
        .batch_new = t_batch_new,
        .batch_put = t_batch_put,
        .batch_delete = t_batch_delete,
        .batch_write = t_batch_write,
        .batch_free = t_batch_free,
        .disk_bytes = t_disk_bytes,
        .close = t_close,
    };
    *out = &t->base;
    return 0;
}

int tamper_read_raw(struct engine *te, int64_t main, int64_t sub, uint8_t **val,
                    size_t *len)
{
    struct engine *in = T(te)->inner;
    uint8_t id[RECSTORE_ID_BYTES];
    char errmsg[LSKV_ERRMSG_SIZE];
    recstore_make_id(main, sub, id);
    return in->get(in, id, sizeof id, val, len, errmsg);
}

int tamper_write_raw(struct engine *te, int64_t main, int64_t sub, const uint8_t *val,
                     size_t len)
{
    struct engine *in = T(te)->inner;
    uint8_t id[RECSTORE_ID_BYTES];
    char errmsg[LSKV_ERRMSG_SIZE];
    recstore_make_id(main, sub, id);
    struct engine_batch *b = in->batch_new(in);
    if (b == NULL)
        return LSKV_ENOMEM;
    in->batch_put(b, id, sizeof id, val, len);
    return in->batch_write(in, b, false, errmsg);
}

int tamper_flip_bit(struct engine *te, int64_t main, int64_t sub, size_t bit)
{
    uint8_t *v;
    size_t len;
    int rv = tamper_read_raw(te, main, sub, &v, &len);
    if (rv != 0)
        return rv;
    if (bit / 8 >= len) {
        free(v);
        return LSKV_EINVAL;
    }
    v[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    rv = tamper_write_raw(te, main, sub, v, len);
    free(v);
    return rv;
}

int tamper_swap(struct engine *te, int64_t a_main, int64_t a_sub, int64_t b_main,
                int64_t b_sub)
{
    uint8_t *a = NULL, *b = NULL;
    size_t alen, blen;
    int rv = tamper_read_raw(te, a_main, a_sub, &a, &alen);
    if (rv == 0)
        rv = tamper_read_raw(te, b_main, b_sub, &b, &blen);
    if (rv == 0)
        rv = tamper_write_raw(te, a_main, a_sub, b, blen);
    if (rv == 0)
        rv = tamper_write_raw(te, b_main, b_sub, a, alen);
    free(a);
    free(b);
    return rv;
}

int tamper_copy(struct engine *te, int64_t from_main, int64_t from_sub, int64_t to_main,
                int64_t to_sub)
{
    uint8_t *v;
    size_t len;
    int rv = tamper_read_raw(te, from_main, from_sub, &v, &len);
    if (rv != 0)
        return rv;
    rv = tamper_write_raw(te, to_main, to_sub, v, len);
    free(v);
    return rv;
}

void tamper_hide(struct engine *te, int64_t main, int64_t sub, bool hidden)
{
    struct tamper *t = T(te);
    for (size_t i = 0; i < t->nhidden; i++) {
        if (t->hidden[i].main == main && t->hidden[i].sub == sub) {
            if (!hidden)
                t->hidden[i] = t->hidden[--t->nhidden];
            return;
        }
    }
    if (hidden && t->nhidden < MAX_HIDDEN) {
        t->hidden[t->nhidden].main = main;
        t->hidden[t->nhidden].sub = sub;
        t->nhidden++;
    }
}

void tamper_fail_writes(struct engine *te, bool on)
{
    T(te)->fail_writes = on;
}

void tamper_fail_reads(struct engine *te, int code)
{
    T(te)->fail_reads = code;
}

uint64_t tamper_gets(struct engine *te)
{
    return T(te)->gets;
}

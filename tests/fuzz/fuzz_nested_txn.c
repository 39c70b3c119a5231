/* Fuzzes the whole write path of a Txn on nested shapes: the input is a
 * TxnRequest (byte 0 even) or, byte 0 odd, the rest wrapped in N more levels
 * of success/failure[0].request_txn (N from bytes 1-2, up to 65535 * 16; the
 * branch of each level from byte 0's bits). Then as lskvd: the depth check on
 * the bytes and protobuf-c unpack (api_decode), etcd's checks with a
 * --max-txn-ops from the input, the command envelope written and read back
 * (command_decode, as apply gets it from the log), and apply into a kvstore
 * on LevelDB. Nothing may crash, overflow the stack or leak; a request that
 * passes the checks must apply without error other than etcd's own. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/err.h"
#include "common/pbdepth.h"
#include "crypto/aead.h"
#include "kv/kvstore.h"
#include "statemachine/command.h"
#include "storage/engine.h"
#include "storage/recstore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static recstore *rs;
static kvstore *kv;
static char dir[] = "/tmp/fuzz_nested_txn.XXXXXX";

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void close_store(void)
{
    kvstore_close(kv);
    recstore_close(rs);
    nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

static int open_store(void)
{
    static const uint8_t key[AEAD_KEY_BYTES] = {9, 9, 9};
    char path[64], errmsg[LSKV_ERRMSG_SIZE];
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(path, sizeof path, "%s/db", dir);
    struct recstore_config c = {.path = path, .data_key = key, .cluster_id = 5,
                                .cache_bytes = 1 << 20};
    if (recstore_open(&c, &rs, errmsg) != 0 || kvstore_open(rs, &kv) != 0)
        abort();
    atexit(close_store);
    return 0;
}

static size_t put_varint(uint8_t *p, size_t v)
{
    size_t n = 0;
    for (; v >= 0x80; v >>= 7)
        p[n++] = (uint8_t)(v | 0x80);
    p[n++] = (uint8_t)v;
    return n;
}

/* body wrapped in levels Txn > RequestOp > Txn ...; malloc'ed. */
static uint8_t *wrap(const uint8_t *body, size_t len, size_t levels, uint8_t bits, size_t *out)
{
    size_t cap = len + levels * 24;
    uint8_t *buf = malloc(cap ? cap : 1);
    if (buf == NULL)
        return NULL;
    size_t w = cap - len, inner = len;
    memcpy(buf + w, body, len);
    for (size_t i = 0; i < 2 * levels; i++) {
        uint8_t v[10];
        size_t n = put_varint(v, inner);
        w -= n;
        memcpy(buf + w, v, n);
        buf[--w] = i % 2 == 0 ? 0x22 : (bits >> (i / 2 % 8) & 1) ? 0x1a : 0x12;
        inner = cap - w;
    }
    memmove(buf, buf + w, cap - w);
    *out = cap - w;
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3 || (kv == NULL && open_store() != 0))
        return 0;
    size_t len = size - 3, levels = 0;
    if (data[0] & 1)
        levels = (size_t)(data[1] << 8 | data[2]) * 16;
    uint8_t *msg = wrap(data + 3, len, levels, data[0], &len);
    if (msg == NULL)
        return 0;
    struct arena a;
    arena_init(&a);
    const ProtobufCMessageDescriptor *d = &etcdserverpb__txn_request__descriptor;
    if (pbdepth_check(d, msg, len, PBDEPTH_MAX) != 0)
        goto out;
    ProtobufCMessage *req = protobuf_c_message_unpack(d, &a.pb, len, msg);
    if (req == NULL)
        goto out;
    const struct command_kind *k = command_kind_of(COMMAND_TXN);
    struct command_limits lim = {(data[0] & 2) ? 1 + data[2] * 16 : KV_TXN_OPS_DEFAULT};
    if (k->validate(req, &lim) != 0)
        goto out;
    uint8_t *cmd;
    size_t cmd_len;
    if (command_wrap(COMMAND_TXN, NULL, msg, len, &cmd, &cmd_len) != 0)
        goto out;
    Lskvcommandpb__Command *c = NULL;
    int rv = command_decode(cmd, cmd_len, &a, &c);
    free(cmd);
    if (rv != 0)
        abort(); /* a request that passed the checks must decode from the log */
    ProtobufCMessage *resp = NULL;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    struct command_target target = {.kv = kv};
    rv = k->apply(&target, command_request(c), &a, &resp, errmsg);
    if (rv == LSKV_EIO || rv == LSKV_ECORRUPT)
        abort();
    if (rv == 0 && resp != NULL) {
        /* The response packs (as the answer is sent). */
        size_t n = protobuf_c_message_get_packed_size(resp);
        uint8_t *p = malloc(n ? n : 1);
        if (p != NULL) {
            protobuf_c_message_pack(resp, p);
            free(p);
        }
    }
out:
    arena_close(&a);
    free(msg);
    return 0;
}

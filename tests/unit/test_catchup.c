/* Tests for statemachine/catchup.c: a member holds a snapshot whose ledger
 * entries and records it lacks, fetches them from another member's state
 * machine (catchup_serve), checks each, then restores; forged answers are
 * refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/bytes.h"
#include "common/err.h"
#include "identity/cert.h"
#include "kv/kvstore.h"
#include "ledger/ledger.h"
#include "catchup_exchange.h"
#include "runner.h"
#include "statemachine/catchup.h"
#include "statemachine/fsm.h"
#include "storage/recstore.h"

static const uint8_t KEY[32] = {7, 1, 7};

struct member {
    ledger *l;
    recstore *rs;
    kvstore *kv;
    struct fsm fsm;
    struct consensus_fsm vt;
};

struct cfx {
    cert_service *svc;
    cert_node *node;
    uint8_t secret[LEDGER_SECRET_BYTES];
    struct member src, dst;
};

static void member_open(struct cfx *f, struct member *m, const char *name)
{
    char path[4096], errmsg[LSKV_ERRMSG_SIZE] = "";
    snprintf(path, sizeof path, "%s/%s-ledger", test_tmpdir(), name);
    struct ledger_config lc = {.dir = path, .secret = f->secret, .service = f->svc,
                               .chunk_bytes = 4096};
    if (ledger_open(&lc, &m->l, errmsg) != 0)
        TEST_FAIL("ledger_open: %s", errmsg);
    snprintf(path, sizeof path, "%s/%s-engine", test_tmpdir(), name);
    struct recstore_config rc = {.path = path, .data_key = KEY, .cluster_id = 5};
    if (recstore_open(&rc, &m->rs, errmsg) != 0)
        TEST_FAIL("recstore_open: %s", errmsg);
    ASSERT_EQ(kvstore_open(m->rs, &m->kv), 0);
    fsm_init(&m->fsm, m->kv, m->rs, 5, 6);
    fsm_set_ledger(&m->fsm, m->l);
    m->vt = fsm_vtable(&m->fsm);
}

static void member_close(struct member *m)
{
    fsm_close(&m->fsm);
    kvstore_close(m->kv);
    recstore_close(m->rs);
    ledger_close(m->l);
}

static void fx_open(struct cfx *f)
{
    char errmsg[LSKV_ERRMSG_SIZE];
    memset(f, 0, sizeof *f);
    ASSERT_EQ(cert_service_load_or_create(test_tmpdir(), "svc", true, &f->svc, NULL, errmsg), 0);
    ASSERT_EQ(cert_node_load_or_create(test_tmpdir(), f->svc, "n1", true, &f->node, NULL,
                                       errmsg), 0);
    memset(f->secret, 3, sizeof f->secret);
    static int round; /* fresh directories for every fixture of the run */
    char name[32];
    snprintf(name, sizeof name, "src%d", round);
    member_open(f, &f->src, name);
    snprintf(name, sizeof name, "dst%d", round++);
    member_open(f, &f->dst, name);
    fsm_allow_catchup(&f->dst.fsm, true);
}

static void fx_close(struct cfx *f)
{
    member_close(&f->src);
    member_close(&f->dst);
    cert_node_free(f->node);
    cert_service_free(f->svc);
}

static void apply_cmd(struct member *m, uint64_t index, enum command_op op,
                      const ProtobufCMessage *req)
{
    uint8_t *cmd;
    size_t len;
    ASSERT_EQ(command_encode(op, NULL, req, &cmd, &len), 0);
    struct consensus_entry_info info = {.index = index, .term = 2, .proposed_ms = 1};
    void *r = NULL;
    int rv = m->vt.apply(m->vt.data, &info, cmd, len, &r);
    if (rv != 0)
        TEST_FAIL("apply %llu: %s: %s", (unsigned long long)index, lskv_errname(rv),
                  m->fsm.errmsg);
    m->vt.free_result(m->vt.data, r);
    free(cmd);
}

static void put(struct member *m, uint64_t index, const char *key, const char *value)
{
    Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
    req.key = (ProtobufCBinaryData){.data = (uint8_t *)key, .len = strlen(key)};
    req.value = (ProtobufCBinaryData){.data = (uint8_t *)value, .len = strlen(value)};
    apply_cmd(m, index, COMMAND_PUT, &req.base);
}

static void del(struct member *m, uint64_t index, const char *key)
{
    Etcdserverpb__DeleteRangeRequest req = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    req.key = (ProtobufCBinaryData){.data = (uint8_t *)key, .len = strlen(key)};
    apply_cmd(m, index, COMMAND_DELETE_RANGE, &req.base);
}

static void sign(struct cfx *f, struct member *m, uint64_t index)
{
    uint8_t *p, *cmd;
    size_t n, len;
    ASSERT_EQ(ledger_make_signature(m->l, f->node, 1000 + index, &p, &n), 0);
    ASSERT_EQ(command_wrap(COMMAND_SIGNATURE, NULL, p, n, &cmd, &len), 0);
    struct consensus_entry_info info = {.index = index, .term = 2, .proposed_ms = 1};
    void *r = NULL;
    ASSERT_EQ(m->vt.apply(m->vt.data, &info, cmd, len, &r), 0);
    m->vt.free_result(m->vt.data, r);
    free(cmd);
    free(p);
}

/* dst applied the first 3 entries, src goes on to 200 entries with
 * overwrites, deletes and signatures; returns src's snapshot. */
static uint8_t *diverge(struct cfx *f, size_t *len)
{
    uint64_t index = 2;
    for (int i = 0; i < 200; i++, index++) {
        char key[32], value[64];
        snprintf(key, sizeof key, "k%03d", i % 70);
        snprintf(value, sizeof value, "value-%d", i);
        if (i % 23 == 22) {
            sign(f, &f->src, index);
            if (i < 3)
                sign(f, &f->dst, index);
        } else if (i % 11 == 10) {
            del(&f->src, index, key);
        } else {
            put(&f->src, index, key, value);
            if (i < 3)
                put(&f->dst, index, key, value);
        }
    }
    ASSERT_EQ(f->src.vt.flush(f->src.vt.data), 0);
    ASSERT_EQ(f->dst.vt.flush(f->dst.vt.data), 0);
    uint8_t *snap;
    ASSERT_EQ(f->src.vt.snapshot(f->src.vt.data, &snap, len), 0);
    return snap;
}

/* Runs the exchange (tests/lib/catchup_exchange.h); forge may change a
 * reply. Returns what catchup_take or catchup_next failed with, or 0 when
 * done. */
static int exchange(struct cfx *f, catchup_forge_fn forge, unsigned *calls, char *errmsg)
{
    return catchup_exchange(&f->dst.fsm, &f->src.fsm, forge, calls, errmsg);
}

TEST(catchup, a_held_snapshot_is_restored_once_ledger_and_records_are_fetched)
{
    struct cfx f;
    fx_open(&f);
    size_t len;
    uint8_t *snap = diverge(&f, &len);
    /* held: the state stays, nothing is applied or snapshotted meanwhile */
    int64_t before = kvstore_revision(f.dst.kv);
    ASSERT_EQ(f.dst.vt.restore(f.dst.vt.data, snap, len), LSKV_ENOTREADY);
    ASSERT_EQ(kvstore_revision(f.dst.kv), before);
    ASSERT(!f.dst.vt.can_apply(f.dst.vt.data, 10));
    uint8_t *s2;
    size_t l2;
    ASSERT_EQ(f.dst.vt.snapshot(f.dst.vt.data, &s2, &l2), LSKV_ENOTREADY);
    /* a held member serves nobody */
    uint8_t *reply;
    size_t rl;
    uint8_t req[20] = {0};
    ASSERT_EQ(catchup_serve(&f.dst.fsm, CATCHUP_CALL_LEDGER, req, sizeof req, &reply, &rl),
              LSKV_ENOTREADY);

    char errmsg[LSKV_ERRMSG_SIZE] = "";
    unsigned calls;
    int rv = exchange(&f, NULL, &calls, errmsg);
    if (rv != 0)
        TEST_FAIL("exchange: %s: %s", lskv_errname(rv), errmsg);
    ASSERT(calls >= 2); /* ledger, then records */
    ASSERT(f.dst.fsm.pending == NULL);
    ASSERT(f.dst.vt.can_apply(f.dst.vt.data, 10));
    ASSERT_EQ(kvstore_revision(f.dst.kv), kvstore_revision(f.src.kv));
    /* the same state: the same snapshot, byte for byte (index, ledger
     * position, leases, members) */
    ASSERT_EQ(f.dst.vt.snapshot(f.dst.vt.data, &s2, &l2), 0);
    ASSERT_EQ(l2, len);
    ASSERT(memcmp(s2, snap, len) == 0);
    free(s2);
    /* every record the index names reads back, verified, as on src */
    struct ledger_position ps, pd;
    ledger_position(f.src.l, &ps);
    ledger_position(f.dst.l, &pd);
    ASSERT_EQ(pd.size, ps.size);
    struct arena a;
    arena_init(&a);
    int64_t rev = kvstore_revision(f.src.kv);
    int same = 0;
    for (int64_t main = 1; main <= rev; main++) {
        struct kv_record r1, r2;
        if (recstore_get(f.src.rs, main, 0, &a, &r1, NULL) != 0)
            continue; /* superseded and compacted nowhere: never written here */
        ASSERT_EQ(recstore_get(f.dst.rs, main, 0, &a, &r2, NULL), 0);
        ASSERT_EQ(r1.value_len, r2.value_len);
        ASSERT(memcmp(r1.value, r2.value, r1.value_len) == 0);
        ASSERT_EQ(r1.tombstone, r2.tombstone);
        same++;
    }
    ASSERT(same > 100);
    arena_close(&a);
    /* a newer complete snapshot simply restores */
    ASSERT_EQ(f.dst.vt.restore(f.dst.vt.data, snap, len), 0);
    free(snap);
    fx_close(&f);
}

/* The first record answered names another key (same length). */
static void rename_record(uint8_t kind, uint8_t *reply, size_t len)
{
    if (kind != CATCHUP_CALL_RECORDS || len < 4 + 1 + 1 + 24 + 4 + 1)
        return;
    reply[4 + 1 + 1 + 24 + 4] ^= 0x40; /* first key byte */
}

/* The first record answered claims another version. */
static void bump_version(uint8_t kind, uint8_t *reply, size_t len)
{
    if (kind != CATCHUP_CALL_RECORDS || len < 4 + 1 + 1 + 24)
        return;
    reply[4 + 1 + 1 + 8 + 7] ^= 1;
}

/* More records answered than asked. */
static void overcount(uint8_t kind, uint8_t *reply, size_t len)
{
    if (kind != CATCHUP_CALL_RECORDS || len < 4)
        return;
    put_u32be(reply, get_u32be(reply) + CATCHUP_RECORDS_PER_CALL + 1);
}

TEST(catchup, forged_answers_are_refused_and_nothing_is_restored)
{
    catchup_forge_fn forges[] = {catchup_forge_ledger_frame, rename_record,
                                                    bump_version, overcount};
    for (size_t i = 0; i < sizeof forges / sizeof forges[0]; i++) {
        struct cfx f;
        fx_open(&f);
        size_t len;
        uint8_t *snap = diverge(&f, &len);
        ASSERT_EQ(f.dst.vt.restore(f.dst.vt.data, snap, len), LSKV_ENOTREADY);
        char errmsg[LSKV_ERRMSG_SIZE] = "";
        unsigned calls;
        int rv = exchange(&f, forges[i], &calls, errmsg);
        if (rv != LSKV_ECORRUPT)
            TEST_FAIL("forgery %zu: %s (%s), want LSKV_ECORRUPT", i, lskv_errname(rv), errmsg);
        ASSERT(f.dst.fsm.pending != NULL); /* still held: never restored */
        ASSERT_EQ(kvstore_revision(f.dst.kv), 4);
        free(snap);
        fx_close(&f);
    }
}

TEST(catchup, malformed_requests_are_refused_by_the_member_asked)
{
    struct cfx f;
    fx_open(&f);
    uint8_t *reply;
    size_t rl;
    uint8_t req[64] = {0};
    ASSERT_EQ(catchup_serve(&f.src.fsm, CATCHUP_CALL_LEDGER, req, 19, &reply, &rl), LSKV_EINVAL);
    put_u32be(req, 3);
    ASSERT_EQ(catchup_serve(&f.src.fsm, CATCHUP_CALL_RECORDS, req, 4 + 16 * 2, &reply, &rl),
              LSKV_EINVAL);
    put_u32be(req, CATCHUP_RECORDS_PER_CALL + 1);
    ASSERT_EQ(catchup_serve(&f.src.fsm, CATCHUP_CALL_RECORDS, req, 4, &reply, &rl), LSKV_EINVAL);
    ASSERT_EQ(catchup_serve(&f.src.fsm, 99, req, 4, &reply, &rl), LSKV_EINVAL);
    /* a record it lacks: answered as missing, the asker tries later */
    put_u32be(req, 1);
    put_u64be(req + 4, 77);
    ASSERT_EQ(catchup_serve(&f.src.fsm, CATCHUP_CALL_RECORDS, req, 20, &reply, &rl), 0);
    ASSERT_EQ(rl, 5);
    ASSERT_EQ(get_u32be(reply), 1);
    ASSERT_EQ(reply[4], 0);
    free(reply);
    fx_close(&f);
}

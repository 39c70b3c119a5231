/* Fuzzes the catch-up calls (statemachine/catchup.h) on both sides: the
 * request a member serves (catchup_serve: LEDGER and RECORDS) and the
 * replies a catching-up member takes, in its LEDGER phase and in its
 * RECORDS phase. Any bytes give an error code, never a crash, an
 * out-of-bounds read or a restore: a forged reply cannot make the held
 * snapshot restore. Input: byte 0 picks the target, the rest is the
 * message. The members (ledger, engine, index) are built once, in a
 * temporary directory. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "identity/cert.h"
#include "kv/kvstore.h"
#include "ledger/ledger.h"
#include "statemachine/catchup.h"
#include "statemachine/fsm.h"
#include "storage/recstore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t KEY[32] = {4, 2};

struct member {
    ledger *l;
    recstore *rs;
    kvstore *kv;
    struct fsm fsm;
    struct consensus_fsm vt;
};

static char dir[] = "/tmp/fuzz_catchup.XXXXXX";
static cert_service *svc;
static cert_node *node;
static struct member src, held_ledger, held_records;
static catchup *in_ledger, *in_records;

static void die(const char *what, const char *why)
{
    fprintf(stderr, "fuzz_catchup setup: %s: %s\n", what, why);
    abort();
}

static void member_open(struct member *m, const char *name)
{
    char path[512], errmsg[LSKV_ERRMSG_SIZE] = "";
    static const uint8_t secret[LEDGER_SECRET_BYTES] = {1};
    snprintf(path, sizeof path, "%s/%s-ledger", dir, name);
    struct ledger_config lc = {.dir = path, .secret = secret, .service = svc};
    if (ledger_open(&lc, &m->l, errmsg) != 0)
        die("ledger_open", errmsg);
    snprintf(path, sizeof path, "%s/%s-engine", dir, name);
    struct recstore_config rc = {.path = path, .data_key = KEY, .cluster_id = 5};
    if (recstore_open(&rc, &m->rs, errmsg) != 0 || kvstore_open(m->rs, &m->kv) != 0)
        die("recstore_open", errmsg);
    fsm_init(&m->fsm, m->kv, m->rs, 5, 6);
    fsm_set_ledger(&m->fsm, m->l);
    fsm_allow_catchup(&m->fsm, true);
    m->vt = fsm_vtable(&m->fsm);
}

static void put(uint64_t index, int i)
{
    char key[16], value[32];
    snprintf(key, sizeof key, "k%d", i % 7);
    snprintf(value, sizeof value, "v%d", i);
    Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
    req.key = (ProtobufCBinaryData){.data = (uint8_t *)key, .len = strlen(key)};
    req.value = (ProtobufCBinaryData){.data = (uint8_t *)value, .len = strlen(value)};
    uint8_t *cmd;
    size_t len;
    struct consensus_entry_info info = {.index = index, .term = 2, .proposed_ms = 1};
    void *r = NULL;
    if (command_encode(COMMAND_PUT, NULL, &req.base, &cmd, &len) != 0 ||
        src.vt.apply(src.vt.data, &info, cmd, len, &r) != 0)
        die("apply", src.fsm.errmsg);
    src.vt.free_result(src.vt.data, r);
    free(cmd);
}

/* Runs real exchanges until c asks for kind (or is done). */
static void advance_to(catchup *c, uint8_t want)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    for (;;) {
        uint8_t kind, *req, *reply;
        size_t req_len, reply_len;
        if (catchup_next(c, &kind, &req, &req_len, errmsg) != 0)
            die("catchup_next", errmsg);
        if (kind == want) {
            free(req);
            return;
        }
        if (catchup_serve(&src.fsm, kind, req, req_len, &reply, &reply_len) != 0 ||
            catchup_take(c, reply, reply_len, errmsg) != 0)
            die("exchange", errmsg);
        free(req);
        free(reply);
    }
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* The temporary directory goes with the process. */
static void cleanup(void)
{
    nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    if (mkdtemp(dir) == NULL)
        die("mkdtemp", dir);
    atexit(cleanup);
    if (cert_service_load_or_create(dir, "svc", true, &svc, NULL, errmsg) != 0 ||
        cert_node_load_or_create(dir, svc, "n1", true, &node, NULL, errmsg) != 0)
        die("certs", errmsg);
    member_open(&src, "src");
    member_open(&held_ledger, "a");
    member_open(&held_records, "b");
    for (int i = 0; i < 20; i++)
        put(2 + (uint64_t)i, i);
    uint8_t *snap;
    size_t len;
    if (src.vt.flush(src.vt.data) != 0 || src.vt.snapshot(src.vt.data, &snap, &len) != 0)
        die("snapshot", "");
    if (held_ledger.vt.restore(held_ledger.vt.data, snap, len) != LSKV_ENOTREADY ||
        held_records.vt.restore(held_records.vt.data, snap, len) != LSKV_ENOTREADY)
        die("restore", "not held");
    free(snap);
    if (catchup_new(&held_ledger.fsm, &in_ledger) != 0 ||
        catchup_new(&held_records.fsm, &in_records) != 0)
        die("catchup_new", "");
    advance_to(in_ledger, CATCHUP_CALL_LEDGER);
    advance_to(in_records, CATCHUP_CALL_RECORDS);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        setup();
        ready = 1;
    }
    if (size < 1)
        return 0;
    uint8_t *msg = malloc(size - 1 ? size - 1 : 1); /* exact size: ASan sees overreads */
    if (msg == NULL)
        return 0;
    memcpy(msg, data + 1, size - 1);
    char errmsg[LSKV_ERRMSG_SIZE];
    uint8_t *reply = NULL;
    size_t reply_len = 0;
    int rv;
    switch (data[0] % 4) {
    case 0:
        rv = catchup_serve(&src.fsm, CATCHUP_CALL_LEDGER, msg, size - 1, &reply, &reply_len);
        break;
    case 1:
        rv = catchup_serve(&src.fsm, CATCHUP_CALL_RECORDS, msg, size - 1, &reply, &reply_len);
        break;
    case 2:
        rv = catchup_take(in_ledger, msg, size - 1, errmsg);
        break;
    default:
        rv = catchup_take(in_records, msg, size - 1, errmsg);
        break;
    }
    (void)rv;
    free(reply);
    free(msg);
    /* Nothing forged restores a held snapshot. */
    if (held_ledger.fsm.pending == NULL || held_records.fsm.pending == NULL)
        abort();
    return 0;
}

/* Tests for consensus/fsm.c with a ledger: what apply writes to the ledger
 * (KV entries with claims, OTHER entries for rejected commands, signature
 * commands), replay checks after a restart, and the snapshot's ledger size. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/err.h"
#include "statemachine/fsm.h"
#include "identity/cert.h"
#include "kv/kvstore.h"
#include "ledger/ledger.h"
#include "ledger/receipt.h"
#include "runner.h"
#include "storage/recstore.h"

static const uint8_t DATA_KEY[32] = {9, 9, 9, 4};

struct store {
    recstore *rs;
    kvstore *kv;
    struct fsm fsm;
    struct consensus_fsm vt;
};

struct fx {
    cert_service *svc;
    cert_node *node;
    uint8_t secret[LEDGER_SECRET_BYTES];
    ledger *l;
    char errmsg[LSKV_ERRMSG_SIZE];
};

static void store_open(struct store *s, const char *name, ledger *l)
{
    char path[4096], errmsg[LSKV_ERRMSG_SIZE] = "";
    snprintf(path, sizeof path, "%s/%s", test_tmpdir(), name);
    struct recstore_config cfg = {.path = path, .data_key = DATA_KEY, .cluster_id = 5};
    int rv = recstore_open(&cfg, &s->rs, errmsg);
    if (rv != 0)
        TEST_FAIL("recstore_open: %s", errmsg);
    ASSERT_EQ(kvstore_open(s->rs, &s->kv), 0);
    fsm_init(&s->fsm, s->kv, s->rs, 5, 6);
    fsm_set_ledger(&s->fsm, l);
    s->vt = fsm_vtable(&s->fsm);
}

static void store_close(struct store *s)
{
    kvstore_close(s->kv);
    recstore_close(s->rs);
}

static void ledger_at(struct fx *f, const char *name)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", test_tmpdir(), name);
    struct ledger_config cfg = {.dir = dir, .secret = f->secret, .service = f->svc};
    int rv = ledger_open(&cfg, &f->l, f->errmsg);
    if (rv != 0)
        TEST_FAIL("ledger_open: %s", f->errmsg);
}

static void fx_open(struct fx *f)
{
    memset(f, 0, sizeof *f);
    ASSERT_EQ(cert_service_load_or_create(test_tmpdir(), "svc", true, &f->svc, NULL, f->errmsg),
              0);
    ASSERT_EQ(cert_node_load_or_create(test_tmpdir(), f->svc, "n1", true, &f->node, NULL,
                                       f->errmsg), 0);
    memset(f->secret, 3, sizeof f->secret);
    ledger_at(f, "ledger");
}

static void fx_close(struct fx *f)
{
    ledger_close(f->l);
    cert_node_free(f->node);
    cert_service_free(f->svc);
}

static void put_cmd(const char *key, const char *value, int64_t lease, uint8_t **cmd,
                    size_t *len)
{
    Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
    req.key = (ProtobufCBinaryData){.data = (uint8_t *)key, .len = strlen(key)};
    req.value = (ProtobufCBinaryData){.data = (uint8_t *)value, .len = strlen(value)};
    req.lease = lease;
    ASSERT_EQ(command_encode(COMMAND_PUT, NULL, &req.base, cmd, len), 0);
}

/* Applies cmd at (term, index); returns apply's code, *res the result. */
static int apply(struct store *s, uint64_t term, uint64_t index, const uint8_t *cmd, size_t len,
                 struct fsm_result **res)
{
    struct consensus_entry_info info = {.index = index, .term = term, .proposed_ms = 1};
    void *r = NULL;
    int rv = s->vt.apply(s->vt.data, &info, cmd, len, &r);
    *res = r;
    return rv;
}

static void apply_put(struct store *s, uint64_t index, const char *key, const char *value)
{
    uint8_t *cmd;
    size_t len;
    struct fsm_result *r;
    put_cmd(key, value, 0, &cmd, &len);
    ASSERT_EQ(apply(s, 2, index, cmd, len, &r), 0);
    ASSERT_EQ(r->rv, 0);
    fsm_result_free(r);
    free(cmd);
}

static void apply_signature(struct fx *f, struct store *s, uint64_t index)
{
    uint8_t *p;
    size_t n;
    ASSERT_EQ(ledger_make_signature(f->l, f->node, 1000, &p, &n), 0);
    uint8_t *cmd;
    size_t len;
    ASSERT_EQ(command_wrap(COMMAND_SIGNATURE, NULL, p, n, &cmd, &len), 0);
    struct fsm_result *r;
    int rv = apply(s, 2, index, cmd, len, &r);
    if (rv != 0)
        TEST_FAIL("signature apply: %s: %s", lskv_errname(rv), s->fsm.errmsg);
    fsm_result_free(r);
    free(cmd);
    free(p);
}

/* a=1 at index 3 and b=2 at index 4, both in term 2. */
static void apply_two_puts(struct store *s)
{
    apply_put(s, 3, "a", "1");
    apply_put(s, 4, "b", "2");
}

/* A ledger fixture and a store in test_tmpdir()/db writing to its ledger. */
static void open_fx_and_store(struct fx *f, struct store *s, const char *db)
{
    fx_open(f);
    store_open(s, db, f->l);
}

TEST(fsm, put_is_a_kv_ledger_entry_whose_receipt_binds_request_and_response)
{
    struct fx f;
    struct store s;
    open_fx_and_store(&f, &s, "db");
    uint8_t *cmd;
    size_t len;
    struct fsm_result *r;
    put_cmd("alpha", "one", 0, &cmd, &len);
    ASSERT_EQ(apply(&s, 2, 3, cmd, len, &r), 0);
    ASSERT_EQ(r->rv, 0);
    struct ledger_position pos;
    ledger_position(f.l, &pos);
    ASSERT_EQ(pos.size, 1);
    ASSERT_EQ(pos.index, 3);
    ASSERT_EQ(pos.revision, 2);
    apply_signature(&f, &s, 4);

    struct arena a;
    arena_init(&a);
    Lskvserverpb__Receipt *rc;
    ASSERT_EQ(ledger_receipt(f.l, 2, 2, &a, &rc, f.errmsg), 0);
    /* claims the client can rebuild: its request and the response it got */
    Etcdserverpb__PutRequest *req = etcdserverpb__put_request__unpack(&a.pb, len - 2, cmd + 2);
    Etcdserverpb__PutResponse *resp =
        etcdserverpb__put_response__unpack(&a.pb, r->response_len, r->response);
    ASSERT_EQ(!!(req != NULL && resp != NULL && resp->header != NULL), 1);
    ASSERT_EQ(resp->header->revision, 2);
    Lskvserverpb__ReceiptClaims c = LSKVSERVERPB__RECEIPT_CLAIMS__INIT;
    c.request_case = LSKVSERVERPB__RECEIPT_CLAIMS__REQUEST_REQUEST_PUT;
    c.request_put = req;
    c.response_case = LSKVSERVERPB__RECEIPT_CLAIMS__RESPONSE_RESPONSE_PUT;
    c.response_put = resp;
    uint8_t digest[32];
    ASSERT_EQ(receipt_claims_digest(&c, digest), 0);
    ASSERT_EQ(receipt_verify(rc, f.svc, digest, NULL, f.errmsg), 0);
    /* another value is not what was signed */
    req->value.data[0] ^= 1;
    ASSERT_EQ(receipt_claims_digest(&c, digest), 0);
    ASSERT_EQ(receipt_verify(rc, f.svc, digest, NULL, f.errmsg), LSKV_ECORRUPT);
    arena_close(&a);
    fsm_result_free(r);
    free(cmd);
    store_close(&s);
    fx_close(&f);
}

TEST(fsm, rejected_command_is_an_other_entry_without_a_revision)
{
    struct fx f;
    struct store s;
    open_fx_and_store(&f, &s, "db");
    uint8_t *cmd;
    size_t len;
    struct fsm_result *r;
    put_cmd("k", "v", 77, &cmd, &len); /* no such lease */
    ASSERT_EQ(apply(&s, 2, 3, cmd, len, &r), 0);
    ASSERT_EQ(r->rv, LSKV_ELEASENOTFOUND);
    fsm_result_free(r);
    free(cmd);
    struct ledger_position pos;
    ledger_position(f.l, &pos);
    ASSERT_EQ(pos.size, 1);
    ASSERT_EQ(pos.revision, 1);
    enum ledger_tx_status st;
    ASSERT_EQ(ledger_tx_status(f.l, 1, 0, &st, f.errmsg), 0);
    ASSERT_EQ(st, LEDGER_TX_UNKNOWN);
    store_close(&s);
    fx_close(&f);
}

TEST(fsm, bad_signature_command_is_fatal)
{
    struct fx f;
    struct store s;
    open_fx_and_store(&f, &s, "db");
    apply_put(&s, 3, "a", "1");
    uint8_t *p;
    size_t n;
    ASSERT_EQ(ledger_make_signature(f.l, f.node, 1000, &p, &n), 0);
    p[20] ^= 0x10; /* inside the root */
    uint8_t *cmd;
    size_t len;
    ASSERT_EQ(command_wrap(COMMAND_SIGNATURE, NULL, p, n, &cmd, &len), 0);
    struct fsm_result *r = NULL;
    ASSERT_NE(apply(&s, 2, 4, cmd, len, &r), 0);
    ASSERT_EQ(!!(r == NULL), 1);
    ASSERT_EQ(!!(s.fsm.errmsg[0] != '\0'), 1);
    free(cmd);
    free(p);
    store_close(&s);
    fx_close(&f);
}

TEST(fsm, replay_checks_entries_the_ledger_already_holds)
{
    struct fx f;
    struct store s;
    open_fx_and_store(&f, &s, "db1");
    apply_two_puts(&s);
    apply_signature(&f, &s, 5);
    apply_put(&s, 6, "c", "3");
    store_close(&s);
    ledger_close(f.l);
    ledger_at(&f, "ledger"); /* restart: reopen */
    struct ledger_position before;
    ledger_position(f.l, &before);
    ASSERT_EQ(before.size, 4);

    /* the same commands replayed onto an empty store: checked, not appended */
    store_open(&s, "db2", f.l);
    apply_two_puts(&s);
    ASSERT_EQ(s.fsm.replayed, 2);
    apply_put(&s, 7, "d", "4"); /* skipping 5, 6 is not checked here; 7 is new */
    struct ledger_position after;
    ledger_position(f.l, &after);
    ASSERT_EQ(after.size, 5);
    ASSERT_EQ(after.index, 7);
    store_close(&s);

    /* a different command at an index the ledger holds: divergence */
    store_open(&s, "db3", f.l);
    apply_put(&s, 3, "a", "1");
    uint8_t *cmd;
    size_t len;
    struct fsm_result *r = NULL;
    put_cmd("b", "2-but-different", 0, &cmd, &len);
    ASSERT_EQ(apply(&s, 2, 4, cmd, len, &r), LSKV_ECORRUPT);
    ASSERT_EQ(!!(strstr(s.fsm.errmsg, "differs") != NULL), 1);
    free(cmd);
    store_close(&s);
    fx_close(&f);
}

TEST(fsm, snapshot_covers_the_ledger_and_restore_refuses_a_shorter_one)
{
    struct fx f;
    struct store s;
    open_fx_and_store(&f, &s, "db1");
    apply_two_puts(&s);
    uint8_t *snap;
    size_t snap_len;
    ASSERT_EQ(s.vt.snapshot(s.vt.data, &snap, &snap_len), 0);
    store_close(&s);

    store_open(&s, "db2", f.l); /* same ledger: fine */
    ASSERT_EQ(s.vt.restore(s.vt.data, snap, snap_len), 0);
    ASSERT_EQ(kvstore_revision(s.kv), 3);
    store_close(&s);

    ledger_close(f.l);
    ledger_at(&f, "ledger-empty"); /* the ledger lost what the snapshot covers */
    store_open(&s, "db3", f.l);
    ASSERT_EQ(s.vt.restore(s.vt.data, snap, snap_len), LSKV_ECORRUPT);
    ASSERT_EQ(!!(strstr(s.fsm.errmsg, "were lost") != NULL), 1);
    /* a ledger as long, but of another history: the root differs */
    apply_put(&s, 3, "a", "1");
    apply_put(&s, 4, "b", "other");
    store_close(&s);
    store_open(&s, "db5", f.l);
    ASSERT_EQ(s.vt.restore(s.vt.data, snap, snap_len), LSKV_ECORRUPT);
    ASSERT_EQ(!!(strstr(s.fsm.errmsg, "another history") != NULL), 1);
    store_close(&s);
    snap[11] = 9; /* unknown version */
    store_open(&s, "db4", NULL);
    ASSERT_EQ(s.vt.restore(s.vt.data, snap, snap_len), LSKV_EFORMAT);
    store_close(&s);
    free(snap);
    fx_close(&f);
}

static int apply_cmd(struct store *s, uint64_t index, enum command_op op,
                     const ProtobufCMessage *req, struct fsm_result **r)
{
    uint8_t *cmd;
    size_t len;
    ASSERT_EQ(command_encode(op, NULL, req, &cmd, &len), 0);
    int rv = apply(s, 2, index, cmd, len, r);
    free(cmd);
    return rv;
}

static int lease_cmd(struct store *s, uint64_t index, enum command_op op, int64_t id,
                     int64_t ttl)
{
    struct fsm_result *r;
    Etcdserverpb__LeaseGrantRequest g = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
    Etcdserverpb__LeaseRevokeRequest v = ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
    g.id = v.id = id;
    g.ttl = ttl;
    ASSERT_EQ(apply_cmd(s, index, op, op == COMMAND_LEASE_GRANT ? &g.base : &v.base, &r), 0);
    int rv = r->rv;
    fsm_result_free(r);
    return rv;
}

static int put_leased(struct store *s, uint64_t index, const char *key, int64_t lease)
{
    uint8_t *cmd;
    size_t len;
    struct fsm_result *r;
    put_cmd(key, "v", lease, &cmd, &len);
    ASSERT_EQ(apply(s, 2, index, cmd, len, &r), 0);
    free(cmd);
    int rv = r->rv;
    fsm_result_free(r);
    return rv;
}

/* Grant, puts with a lease, a put that moves a key off it, revoke: the
 * lease's remaining keys go in one revision, and a snapshot carries the
 * leases and their keys. */
TEST(fsm, leases_hold_keys_and_revoke_deletes_them_in_one_revision)
{
    struct fx f;
    struct store s;
    lessor *leases, *restored;
    open_fx_and_store(&f, &s, "db1");
    ASSERT_EQ(lessor_new(2, &leases), 0);
    fsm_set_leases(&s.fsm, leases);
    ASSERT_EQ(lease_cmd(&s, 3, COMMAND_LEASE_GRANT, 77, 1), 0);
    ASSERT_EQ(lease_cmd(&s, 4, COMMAND_LEASE_GRANT, 77, 5), LSKV_ELEASEEXISTS);
    ASSERT_EQ(put_leased(&s, 5, "a", 78), LSKV_ELEASENOTFOUND);
    ASSERT_EQ(put_leased(&s, 6, "a", 77), 0);
    ASSERT_EQ(put_leased(&s, 7, "b", 77), 0);
    ASSERT_EQ(put_leased(&s, 8, "c", 77), 0);
    ASSERT_EQ(put_leased(&s, 9, "c", 0), 0); /* moved off the lease */
    ASSERT_EQ(kvstore_revision(s.kv), 5);
    ASSERT_EQ(lessor_lease_of(leases, (const uint8_t *)"b", 1), 77);

    uint8_t *snap;
    size_t snap_len;
    ASSERT_EQ(s.vt.snapshot(s.vt.data, &snap, &snap_len), 0);

    ASSERT_EQ(lease_cmd(&s, 10, COMMAND_LEASE_REVOKE, 77, 0), 0);
    ASSERT_EQ(kvstore_revision(s.kv), 6); /* a and b: one revision */
    ASSERT(!lessor_exists(leases, 77));
    ASSERT_EQ(lease_cmd(&s, 11, COMMAND_LEASE_REVOKE, 77, 0), LSKV_ELEASENOTFOUND);
    struct arena a;
    arena_init(&a);
    Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
    rr.key = (ProtobufCBinaryData){.data = (uint8_t *)"a", .len = 1};
    rr.range_end = (ProtobufCBinaryData){.data = (uint8_t *)"z", .len = 1};
    Etcdserverpb__RangeResponse *resp;
    ASSERT_EQ(kvstore_range(s.kv, &rr, &a, &resp, f.errmsg), 0);
    ASSERT_EQ(resp->count, 1); /* c only */
    arena_close(&a);
    store_close(&s);

    /* The snapshot from before the revoke brings lease 77 and a, b back. */
    store_open(&s, "db2", f.l);
    ASSERT_EQ(lessor_new(2, &restored), 0);
    fsm_set_leases(&s.fsm, restored);
    ASSERT_EQ(s.vt.restore(s.vt.data, snap, snap_len), 0);
    ASSERT(lessor_exists(restored, 77));
    ASSERT_EQ(lessor_lease_of(restored, (const uint8_t *)"a", 1), 77);
    ASSERT_EQ(lessor_lease_of(restored, (const uint8_t *)"c", 1), 0);
    store_close(&s);
    free(snap);
    lessor_free(leases);
    lessor_free(restored);
    fx_close(&f);
}

/* A command that is not a store write (a grant) after a put: the put's
 * changes are not taken for the grant's (they point into freed request
 * memory; ASan would say so), so no key moves between leases. */
TEST(fsm, a_grant_after_a_put_moves_no_key)
{
    struct fx f;
    struct store s;
    lessor *leases;
    open_fx_and_store(&f, &s, "db1");
    ASSERT_EQ(lessor_new(2, &leases), 0);
    fsm_set_leases(&s.fsm, leases);
    ASSERT_EQ(lease_cmd(&s, 3, COMMAND_LEASE_GRANT, 5, 10), 0);
    ASSERT_EQ(put_leased(&s, 4, "k", 5), 0);
    ASSERT_EQ(put_leased(&s, 5, "k", 0), 0); /* detached */
    ASSERT_EQ(lease_cmd(&s, 6, COMMAND_LEASE_GRANT, 6, 10), 0);
    ASSERT_EQ(lessor_lease_of(leases, (const uint8_t *)"k", 1), 0);
    ASSERT_EQ(put_leased(&s, 7, "k", 6), 0);
    ASSERT_EQ(lease_cmd(&s, 8, COMMAND_LEASE_GRANT, 7, 10), 0);
    ASSERT_EQ(lessor_lease_of(leases, (const uint8_t *)"k", 1), 6);
    store_close(&s);
    lessor_free(leases);
    fx_close(&f);
}

/* An auth or store command from user at auth revision rev (request id 1:
 * a client's, so checked). */
static int user_cmd(struct store *s, uint64_t index, enum command_op op,
                    const ProtobufCMessage *req, const char *user, uint64_t rev)
{
    struct command_meta meta = {.request_id = 1, .username = user, .auth_revision = rev};
    uint8_t *cmd;
    size_t len;
    struct fsm_result *r;
    ASSERT_EQ(command_encode(op, &meta, req, &cmd, &len), 0);
    ASSERT_EQ(apply(s, 2, index, cmd, len, &r), 0);
    free(cmd);
    int rv = r->rv;
    fsm_result_free(r);
    return rv;
}

/* Auth commands change the replicated store; once enabled, apply checks
 * each command's user and auth revision (a denied put makes no revision),
 * and the snapshot carries the store. */
TEST(fsm, auth_commands_apply_and_are_checked_at_apply)
{
    struct fx f;
    struct store s;
    open_fx_and_store(&f, &s, "db");
    Etcdserverpb__AuthUserAddRequest ua = ETCDSERVERPB__AUTH_USER_ADD_REQUEST__INIT;
    ua.name = "root";
    ua.hashedpassword = "$2b$04$abcdefghijklmnopqrstuuMGzXl9cBNlS0TkwT7L8YwJYyX2wYkm6";
    ASSERT_EQ(user_cmd(&s, 3, COMMAND_USER_ADD, &ua.base, "", 0), 0);
    ua.name = "u";
    ASSERT_EQ(user_cmd(&s, 4, COMMAND_USER_ADD, &ua.base, "", 0), 0);
    Etcdserverpb__AuthUserGrantRoleRequest gr = ETCDSERVERPB__AUTH_USER_GRANT_ROLE_REQUEST__INIT;
    gr.user = "root";
    gr.role = "root";
    ASSERT_EQ(user_cmd(&s, 5, COMMAND_USER_GRANT_ROLE, &gr.base, "", 0), 0);
    Etcdserverpb__AuthEnableRequest en = ETCDSERVERPB__AUTH_ENABLE_REQUEST__INIT;
    ASSERT_EQ(user_cmd(&s, 6, COMMAND_AUTH_ENABLE, &en.base, "", 0), 0);
    ASSERT(s.fsm.auth.enabled);
    uint64_t rev = s.fsm.auth.revision;
    Etcdserverpb__AuthRoleAddRequest ra = ETCDSERVERPB__AUTH_ROLE_ADD_REQUEST__INIT;
    ra.name = "r";
    ASSERT_EQ(user_cmd(&s, 7, COMMAND_ROLE_ADD, &ra.base, "", 0), LSKV_EUSEREMPTY);
    ASSERT_EQ(user_cmd(&s, 8, COMMAND_ROLE_ADD, &ra.base, "u", rev), LSKV_EPERMDENIED);
    ASSERT_EQ(user_cmd(&s, 9, COMMAND_ROLE_ADD, &ra.base, "root", rev), 0);
    ASSERT_EQ(s.fsm.auth.revision, rev + 1);
    Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
    put.key = (ProtobufCBinaryData){.data = (uint8_t *)"k", .len = 1};
    int64_t kv_rev = kvstore_revision(s.kv);
    ASSERT_EQ(user_cmd(&s, 10, COMMAND_PUT, &put.base, "", 0), LSKV_EUSEREMPTY);
    ASSERT_EQ(user_cmd(&s, 11, COMMAND_PUT, &put.base, "u", rev + 1), LSKV_EPERMDENIED);
    ASSERT_EQ(user_cmd(&s, 12, COMMAND_PUT, &put.base, "root", rev), LSKV_EAUTHOLDREV);
    ASSERT_EQ(kvstore_revision(s.kv), kv_rev); /* denied: no revision */
    ASSERT_EQ(user_cmd(&s, 13, COMMAND_PUT, &put.base, "root", rev + 1), 0);
    ASSERT_EQ(kvstore_revision(s.kv), kv_rev + 1);
    /* internal commands (request id 0) are not checked */
    apply_put(&s, 14, "x", "1");
    ASSERT_EQ(kvstore_revision(s.kv), kv_rev + 2);
    uint8_t *snap;
    size_t snap_len;
    ASSERT_EQ(s.vt.snapshot(s.vt.data, &snap, &snap_len), 0);
    ASSERT(memmem(snap, snap_len, ua.hashedpassword, strlen(ua.hashedpassword)) != NULL);
    fsm_close(&s.fsm);
    store_close(&s);
    store_open(&s, "db2", f.l);
    ASSERT_EQ(s.vt.restore(s.vt.data, snap, snap_len), 0);
    ASSERT(s.fsm.auth.enabled);
    ASSERT_EQ(s.fsm.auth.revision, rev + 1);
    ASSERT(authstore_has_role(&s.fsm.auth, "root", "root"));
    ASSERT(authstore_role(&s.fsm.auth, "r") != NULL);
    free(snap);
    fsm_close(&s.fsm);
    store_close(&s);
    fx_close(&f);
}

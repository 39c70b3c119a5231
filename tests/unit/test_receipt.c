/* Tests for src/ledger/receipt.c and src/identity/cert.c. */
#include <errno.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/arena.h"
#include "common/err.h"
#include "identity/cert.h"
#include "ledger/merkle.h"
#include "ledger/receipt.h"
#include "ledger/sig.h"
#include "runner.h"

struct ids {
    cert_service *svc;
    cert_node *node;
};

static void make_ids(struct ids *ids, const char *sub)
{
    char dir[600], errmsg[LSKV_ERRMSG_SIZE] = "";
    snprintf(dir, sizeof dir, "%s/%s", test_tmpdir(), sub);
    mkdir(dir, 0700);
    int rv = cert_service_load_or_create(dir, "svc", true, &ids->svc, NULL, errmsg);
    if (rv == 0)
        rv = cert_node_load_or_create(dir, ids->svc, "node", true, &ids->node, NULL, errmsg);
    if (rv != 0)
        TEST_FAIL("identity: %s", errmsg);
}

static void free_ids(struct ids *ids)
{
    cert_node_free(ids->node);
    cert_service_free(ids->svc);
}

/* A receipt for leaf i of a tree of n leaves whose leaf i is made of the
 * given components (other leaves arbitrary). */
static Lskvserverpb__Receipt *make(struct arena *a, const struct ids *ids, uint64_t i, uint64_t n)
{
    uint8_t wsd[32], cd[32], leaf[32];
    memset(wsd, 0x11, 32);
    memset(cd, 0x22, 32);
    const char *ce = "ce:1.5:abcd";
    merkle_tree *t;
    ASSERT_EQ(merkle_open(0, NULL, 0, &t), 0);
    for (uint64_t j = 0; j < n; j++) {
        if (j == i) {
            merkle_leaf_hash(wsd, ce, strlen(ce), cd, leaf);
        } else {
            memset(leaf, (int)j, 32);
        }
        ASSERT_EQ(merkle_append(t, leaf), 0);
    }
    uint8_t root[32], sig[CERT_SIG_MAX_BYTES];
    size_t sig_len, n_steps;
    struct merkle_step steps[MERKLE_MAX_DEPTH];
    ASSERT_EQ(merkle_root(t, n, root), 0);
    ASSERT_EQ(merkle_proof(t, i, n, steps, &n_steps), 0);
    uint8_t svc[32], digest[32];
    ASSERT_EQ(cert_service_digest(ids->svc, svc), 0);
    sig_statement_digest(n, root, svc, digest);
    ASSERT_EQ(cert_node_sign(ids->node, digest, sig, &sig_len), 0);
    merkle_close(t);
    struct receipt_parts p = {.cert_pem = cert_node_pem(ids->node),
                              .cert_len = strlen(cert_node_pem(ids->node)),
                              .sig = sig, .sig_len = sig_len,
                              .node_id = cert_node_id(ids->node), .commit_evidence = ce,
                              .steps = steps, .n_steps = n_steps, .leaf_index = i,
                              .tree_size = n};
    memcpy(p.write_set_digest, wsd, 32);
    memcpy(p.claims_digest, cd, 32);
    memcpy(p.service_digest, svc, 32);
    Lskvserverpb__Receipt *r;
    ASSERT_EQ(receipt_build(&p, a, &r), 0);
    return r;
}

TEST(receipt, build_verify_json_roundtrip)
{
    struct ids ids;
    make_ids(&ids, "a");
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    uint64_t cases[][2] = {{0, 1}, {0, 2}, {4, 7}, {6, 7}, {12, 13}, {5, 16}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct arena a;
        arena_init(&a);
        Lskvserverpb__Receipt *r = make(&a, &ids, cases[c][0], cases[c][1]);
        uint8_t cd[32];
        memset(cd, 0x22, 32);
        int rv = receipt_verify(r, ids.svc, cd, NULL, errmsg);
        if (rv != 0)
            TEST_FAIL("case %zu: %s", c, errmsg);
        char *js = receipt_to_json(r);
        ASSERT(js != NULL);
        ASSERT(strstr(js, "\"leaf_index\"") != NULL);
        Lskvserverpb__Receipt *r2;
        ASSERT_EQ(receipt_from_json(js, strlen(js), &a, &r2, errmsg), 0);
        ASSERT_EQ(receipt_verify(r2, ids.svc, cd, NULL, errmsg), 0);
        /* also inside a GetReceiptResponse object */
        size_t wl = strlen(js) + 64;
        char *wrapped = malloc(wl);
        snprintf(wrapped, wl, "{\"header\": {}, \"receipt\": %s}", js);
        ASSERT_EQ(receipt_from_json(wrapped, strlen(wrapped), &a, &r2, errmsg), 0);
        ASSERT_EQ(receipt_verify(r2, ids.svc, NULL, NULL, errmsg), 0);
        free(wrapped);
        free(js);
        arena_close(&a);
    }
    free_ids(&ids);
}

TEST(receipt, each_check_can_fail)
{
    struct ids ids, other;
    make_ids(&ids, "a");
    make_ids(&other, "b");
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    struct arena a;
    arena_init(&a);
    Lskvserverpb__Receipt *r = make(&a, &ids, 4, 7);
    ASSERT_EQ(receipt_verify(r, ids.svc, NULL, NULL, errmsg), 0);
    /* position: same proof claimed for another leaf index or size */
    r->tx_receipt->leaf_index = 5;
    ASSERT_EQ(receipt_verify(r, ids.svc, NULL, NULL, errmsg), LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, "needs") != NULL);
    r->tx_receipt->leaf_index = 4;
    r->tx_receipt->tree_size = 5; /* (4,8) has the same pattern as (4,7): not a failure */
    ASSERT_EQ(receipt_verify(r, ids.svc, NULL, NULL, errmsg), LSKV_ECORRUPT);
    r->tx_receipt->tree_size = 7;
    /* leaf components */
    r->tx_receipt->leaf_components->commit_evidence = "ce:1.5:abce";
    ASSERT_EQ(receipt_verify(r, ids.svc, NULL, NULL, errmsg), LSKV_ECORRUPT);
    r->tx_receipt->leaf_components->commit_evidence = "ce:1.5:abcd";
    char *wsd = r->tx_receipt->leaf_components->write_set_digest;
    wsd[0] = 'z';
    ASSERT_EQ(receipt_verify(r, ids.svc, NULL, NULL, errmsg), LSKV_EINVAL);
    wsd[0] = '1';
    /* a proof element with both sides */
    Lskvserverpb__Proof *e = r->tx_receipt->proof[0];
    char *saved_l = e->left, *saved_r = e->right;
    e->left = e->right = saved_l && saved_l[0] ? saved_l : saved_r;
    ASSERT_EQ(receipt_verify(r, ids.svc, NULL, NULL, errmsg), LSKV_EINVAL);
    e->left = saved_l;
    e->right = saved_r;
    /* signature */
    uint8_t *sig = r->signature.data;
    sig[r->signature.len - 1] ^= 1;
    ASSERT_EQ(receipt_verify(r, ids.svc, NULL, NULL, errmsg), LSKV_ECORRUPT);
    sig[r->signature.len - 1] ^= 1;
    /* node id */
    char *id = r->node_id;
    r->node_id = "00";
    ASSERT_EQ(receipt_verify(r, ids.svc, NULL, NULL, errmsg), LSKV_ECORRUPT);
    r->node_id = id;
    /* the service named by the statement */
    ASSERT_EQ(receipt_verify(r, other.svc, NULL, NULL, errmsg), LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, "another service identity") != NULL);
    /* endorsement: a statement naming other's service, signed by a node it
     * did not endorse */
    struct ids mixed = {.svc = other.svc, .node = ids.node};
    Lskvserverpb__Receipt *rm = make(&a, &mixed, 4, 7);
    ASSERT_EQ(receipt_verify(rm, NULL, NULL, NULL, errmsg), 0);
    ASSERT_EQ(receipt_verify(rm, other.svc, NULL, NULL, errmsg), LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, "endorsed") != NULL);
    /* claims */
    uint8_t cd[32];
    memset(cd, 0x23, 32);
    ASSERT_EQ(receipt_verify(r, ids.svc, cd, NULL, errmsg), LSKV_ECORRUPT);
    ASSERT_EQ(receipt_verify(r, ids.svc, NULL, NULL, errmsg), 0);
    arena_close(&a);
    free_ids(&ids);
    free_ids(&other);
}

TEST(receipt, claims_digest_ignores_response_header)
{
    Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
    req.key.data = (uint8_t *)"k";
    req.key.len = 1;
    Etcdserverpb__ResponseHeader h1 = ETCDSERVERPB__RESPONSE_HEADER__INIT,
                                 h2 = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    h1.revision = 5;
    h2.revision = 6;
    h2.member_id = 9;
    Etcdserverpb__PutResponse resp = ETCDSERVERPB__PUT_RESPONSE__INIT;
    resp.header = &h1;
    Lskvserverpb__ReceiptClaims c = LSKVSERVERPB__RECEIPT_CLAIMS__INIT;
    ASSERT_EQ(receipt_claims_digest(&c, (uint8_t[32]){0}), LSKV_EINVAL);
    c.request_case = LSKVSERVERPB__RECEIPT_CLAIMS__REQUEST_REQUEST_PUT;
    c.request_put = &req;
    c.response_case = LSKVSERVERPB__RECEIPT_CLAIMS__RESPONSE_RESPONSE_PUT;
    c.response_put = &resp;
    uint8_t d1[32], d2[32], d3[32];
    ASSERT_EQ(receipt_claims_digest(&c, d1), 0);
    ASSERT(resp.header == &h1); /* the caller's message is unchanged */
    resp.header = &h2;
    ASSERT_EQ(receipt_claims_digest(&c, d2), 0);
    ASSERT_MEM_EQ(d1, d2, 32);
    req.key.data = (uint8_t *)"j";
    ASSERT_EQ(receipt_claims_digest(&c, d3), 0);
    ASSERT(memcmp(d1, d3, 32) != 0);
    /* digest = SHA-256 of the packed bytes: field 1 (request), field 4 (response) */
    uint8_t *b;
    size_t n;
    ASSERT_EQ(receipt_claims_pack(&c, &b, &n), 0);
    ASSERT_EQ(b[0], 0x0a); /* field 1, length-delimited */
    uint8_t want[32];
    SHA256(b, n, want);
    ASSERT_MEM_EQ(want, d3, 32);
    free(b);
}

TEST(receipt, json_rejects_malformed)
{
    struct arena a;
    arena_init(&a);
    char errmsg[LSKV_ERRMSG_SIZE];
    Lskvserverpb__Receipt *r;
    const char *bad[] = {
        "", "[]", "{", "{\"cert\": 1}", "{\"tx_receipt\": {}}",
        "{\"tx_receipt\": {\"leaf_components\": {}, \"proof\": 3}}",
        "{\"signature\": \"***\", \"tx_receipt\": {\"leaf_components\": {}}}",
        "{\"tx_receipt\": {\"leaf_components\": {}, \"leaf_index\": \"x\"}}",
        "{\"tx_receipt\": {\"leaf_components\": {}, \"proof\": [1]}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rv = receipt_from_json(bad[i], strlen(bad[i]), &a, &r, errmsg);
        if (rv != LSKV_EINVAL)
            TEST_FAIL("input %zu accepted (%d)", i, rv);
    }
    /* well-formed but empty: parses, fails verification cleanly */
    const char *empty = "{\"tx_receipt\": {\"leaf_components\": {}}}";
    ASSERT_EQ(receipt_from_json(empty, strlen(empty), &a, &r, errmsg), 0);
    ASSERT_EQ(receipt_verify(r, NULL, NULL, NULL, errmsg), LSKV_EINVAL);
    arena_close(&a);
}

TEST(cert, files_reload_and_key_mode)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    const char *dir = test_tmpdir();
    cert_service *s;
    cert_node *n;
    bool created;
    ASSERT_EQ(cert_service_load_or_create(dir, "svc", false, &s, &created, errmsg), -ENOENT);
    ASSERT_EQ(cert_service_load_or_create(dir, "svc", true, &s, &created, errmsg), 0);
    ASSERT(created);
    ASSERT_EQ(cert_node_load_or_create(dir, s, "n", true, &n, &created, errmsg), 0);
    ASSERT(created);
    char id[CERT_NODE_ID_HEX];
    snprintf(id, sizeof id, "%s", cert_node_id(n));
    ASSERT_EQ(strlen(id), 64);
    char path[600];
    struct stat st;
    snprintf(path, sizeof path, "%s/node.key", dir);
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600);
    cert_node_free(n);
    cert_service_free(s);
    /* reload: same identity */
    ASSERT_EQ(cert_service_load_or_create(dir, "svc", true, &s, &created, errmsg), 0);
    ASSERT(!created);
    ASSERT_EQ(cert_node_load_or_create(dir, s, "n", true, &n, &created, errmsg), 0);
    ASSERT(!created);
    ASSERT_STR_EQ(cert_node_id(n), id);
    char id2[CERT_NODE_ID_HEX];
    ASSERT_EQ(cert_node_id_of_pem(cert_node_pem(n), strlen(cert_node_pem(n)), id2), 0);
    ASSERT_STR_EQ(id2, id);
    uint8_t digest[32] = {1, 2, 3}, sig[CERT_SIG_MAX_BYTES];
    size_t sl;
    ASSERT_EQ(cert_node_sign(n, digest, sig, &sl), 0);
    const char *pem = cert_node_pem(n);
    ASSERT_EQ(cert_verify_digest(pem, strlen(pem), digest, sig, sl, errmsg), 0);
    digest[0] ^= 1;
    ASSERT_EQ(cert_verify_digest(pem, strlen(pem), digest, sig, sl, errmsg), LSKV_ECORRUPT);
    ASSERT_EQ(cert_verify_digest("junk", 4, digest, sig, sl, errmsg), LSKV_EINVAL);
    cert_node_free(n);
    /* a verify-only service cannot endorse a new node */
    cert_service *vo;
    ASSERT_EQ(cert_service_from_pem(cert_service_pem(s), strlen(cert_service_pem(s)), &vo,
                                    errmsg), 0);
    char sub[600];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    mkdir(sub, 0700);
    ASSERT_EQ(cert_node_load_or_create(sub, vo, "n2", true, &n, NULL, errmsg), LSKV_EINVAL);
    cert_service_free(vo);
    cert_service_free(s);
    /* a key file readable by others is refused */
    ASSERT_EQ(chmod(path, 0644), 0);
    ASSERT_EQ(cert_service_load_or_create(dir, "svc", true, &s, NULL, errmsg), 0);
    ASSERT_EQ(cert_node_load_or_create(dir, s, "n", true, &n, NULL, errmsg), LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, "0600") != NULL);
    cert_service_free(s);
}

TEST(receipt, relabelled_tree_size_fails)
{
    struct ids ids, other;
    make_ids(&ids, "a");
    make_ids(&other, "b");
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    struct arena a;
    arena_init(&a);
    /* leaf 0 of 3 and leaf 0 of 4 have the same proof pattern (right,
     * right): only the signed statement tells them apart */
    bool d3[MERKLE_MAX_DEPTH], d4[MERKLE_MAX_DEPTH];
    ASSERT_EQ(merkle_shape(0, 3, d3), 2);
    ASSERT_EQ(merkle_shape(0, 4, d4), 2);
    ASSERT(d3[0] == d4[0] && d3[1] == d4[1]);
    Lskvserverpb__Receipt *r = make(&a, &ids, 0, 3);
    ASSERT_EQ(receipt_verify(r, ids.svc, NULL, NULL, errmsg), 0);
    r->tx_receipt->tree_size = 4;
    ASSERT_EQ(receipt_verify(r, ids.svc, NULL, NULL, errmsg), LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, "signature does not verify") != NULL);
    r->tx_receipt->tree_size = 3;
    ASSERT_EQ(receipt_verify(r, NULL, NULL, NULL, errmsg), 0); /* digest from the receipt */
    /* the service pinned by the statement is checked against the one given */
    ASSERT_EQ(receipt_verify(r, other.svc, NULL, NULL, errmsg), LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, "another service identity") != NULL);
    r->service_cert_digest = "";
    ASSERT_EQ(receipt_verify(r, NULL, NULL, NULL, errmsg), LSKV_EINVAL);
    arena_close(&a);
    free_ids(&other);
    free_ids(&ids);
}

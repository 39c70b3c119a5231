/* The join exchange (identity/join.h) in memory: a founder and a joiner
 * that end with a data dir the daemon's load path accepts, and every
 * refusal, each with its error and without a secret (join.h invariants). */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/err.h"
#include "common/file.h"
#include "common/hex.h"
#include "config/datadir.h"
#include "identity/attestation.h"
#include "identity/cert.h"
#include "identity/join.h"
#include "proto/lskvpeer.pb-c.h"
#include "runner.h"

#define CLUSTER 0x1122334455667788ull
#define MEMBER 0x0a0b0c0d0e0f1011ull

/* A founder: service identity with key, secrets, its own TLS identity (a
 * node certificate issued by the service) and its report binding it. */
struct founder {
    cert_service *svc;
    struct join_key tls;   /* key; tls.cert_pem replaced by the endorsed one */
    uint8_t data_key[JOIN_SECRET_BYTES], ledger_secret[JOIN_SECRET_BYTES];
    uint8_t *report;
    size_t report_len;
    struct attest_policy policy;
    struct join_founder f;
    char *svc_key_pem;     /* to search for it */
};

static void founder_init(struct founder *fo)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    memset(fo, 0, sizeof *fo);
    ASSERT_EQ(cert_service_new("lskv service 1122334455667788", &fo->svc, errmsg), 0);
    ASSERT_EQ(join_key_new(1, &fo->tls, errmsg), 0);
    uint8_t *spki;
    size_t spki_len, key_len;
    ASSERT_EQ(cert_spki_of_pem(fo->tls.cert_pem, strlen(fo->tls.cert_pem), &spki, &spki_len),
              0);
    free(fo->tls.cert_pem);
    ASSERT_EQ(cert_issue_node(fo->svc, spki, spki_len, "lskv node 0000000000000001",
                              &fo->tls.cert_pem, errmsg), 0);
    free(spki);
    memset(fo->data_key, 0xd1, sizeof fo->data_key);
    memset(fo->ledger_secret, 0x15, sizeof fo->ledger_secret);
    fo->data_key[0] = 'D'; /* distinct from any other file's bytes */
    fo->ledger_secret[0] = 'L';
    ASSERT_EQ(attest_report_make(fo->tls.digest, &fo->report, &fo->report_len, errmsg), 0);
    ASSERT_EQ(attest_policy_default(&fo->policy, errmsg), 0);
    ASSERT_EQ(cert_service_key_pem(fo->svc, &fo->svc_key_pem, &key_len), 0);
    fo->f = (struct join_founder){
        .policy = &fo->policy,
        .service = fo->svc,
        .data_key = fo->data_key,
        .ledger_secret = fo->ledger_secret,
        .cluster_id = CLUSTER,
        .report = fo->report,
        .report_len = fo->report_len,
    };
}

static void founder_close(struct founder *fo)
{
    cert_service_free(fo->svc);
    join_key_wipe(&fo->tls);
    free(fo->report);
    cert_secret_free(fo->svc_key_pem);
}

/* 40 characters of a PEM key's base64 that only this key has: the second
 * line of the body (the first starts with the same PKCS#8 header bytes in
 * every P-384 key). */
static const char *pem_body(const char *pem)
{
    const char *nl = strchr(pem, '\n');
    ASSERT(nl != NULL);
    nl = strchr(nl + 1, '\n');
    ASSERT(nl != NULL && strlen(nl + 1) > 40);
    return nl + 1;
}

static bool contains(const uint8_t *buf, size_t len, const void *needle, size_t n)
{
    return memmem(buf, len, needle, n) != NULL;
}

/* A refusal response holds no secret of the founder's. */
static void assert_no_secret(const struct founder *fo, const uint8_t *buf, size_t len)
{
    ASSERT(!contains(buf, len, fo->data_key, sizeof fo->data_key));
    ASSERT(!contains(buf, len, fo->ledger_secret, sizeof fo->ledger_secret));
    const char *body = pem_body(fo->svc_key_pem);
    ASSERT(!contains(buf, len, body, 40));
    ASSERT(!contains(buf, len, "PRIVATE KEY", 11));
}

static bool all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return false;
    return true;
}

/* Sends req to fo as the peer whose TLS key digest is tls_digest, expects
 * refusal code want with want_text, no secret in the response, and the
 * joiner k seeing the same refusal and receiving nothing. */
static void expect_refused(struct founder *fo, const struct join_key *k,
                           const uint8_t *tls_digest, const uint8_t *req, size_t req_len,
                           int want, const char *want_text)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "", jerr[LSKV_ERRMSG_SIZE] = "";
    uint8_t *resp;
    size_t resp_len;
    int rv = join_handle(&fo->f, tls_digest, req, req_len, &resp, &resp_len, NULL, errmsg);
    if (rv != want || strstr(errmsg, want_text) == NULL)
        TEST_FAIL("join_handle: %d \"%s\", want %d \"%s\"", rv, errmsg, want, want_text);
    ASSERT(resp != NULL);
    assert_no_secret(fo, resp, resp_len);
    struct join_secrets s;
    ASSERT_EQ(join_response_open(resp, resp_len, k, MEMBER, fo->tls.cert_pem,
                                 strlen(fo->tls.cert_pem), &fo->policy, &s, jerr), want);
    ASSERT(strstr(jerr, "founder refused the join: ") == jerr);
    ASSERT(strstr(jerr, want_text) != NULL);
    ASSERT(all_zero(&s, sizeof s));
    join_buf_free(resp, resp_len);
}

/* A JoinRequest with every field chosen by the test. */
static void request_of(const uint8_t *report, size_t report_len, const struct join_key *k,
                       uint64_t member, uint64_t cluster, uint8_t **out, size_t *len)
{
    uint8_t *spki;
    size_t spki_len;
    ASSERT_EQ(cert_spki_of_pem(k->cert_pem, strlen(k->cert_pem), &spki, &spki_len), 0);
    Lskvpeerpb__JoinRequest m = LSKVPEERPB__JOIN_REQUEST__INIT;
    m.attestation.data = (uint8_t *)report;
    m.attestation.len = report_len;
    m.node_public_key.data = spki;
    m.node_public_key.len = spki_len;
    m.member_id = member;
    m.member_name = "m2";
    m.cluster_id = cluster;
    *len = lskvpeerpb__join_request__get_packed_size(&m);
    *out = malloc(*len);
    lskvpeerpb__join_request__pack(&m, *out);
    free(spki);
}

static void scan_files(const char *dir, const char *rel, const struct founder *fo,
                       const struct join_key *k, int *n_files)
{
    DIR *d = opendir(dir);
    ASSERT(d != NULL);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[1024], name[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        snprintf(name, sizeof name, "%s%s", rel, e->d_name);
        struct stat st;
        ASSERT_EQ(lstat(path, &st), 0);
        if (S_ISDIR(st.st_mode)) {
            char sub[600];
            snprintf(sub, sizeof sub, "%s/", name);
            scan_files(path, sub, fo, k, n_files);
            continue;
        }
        uint8_t *buf;
        size_t len;
        char errmsg[LSKV_ERRMSG_SIZE];
        ASSERT_EQ(file_read_all(path, &buf, &len, errmsg), 0);
        char hexkey[2 * JOIN_SECRET_BYTES + 1], hexsec[2 * JOIN_SECRET_BYTES + 1];
        hex_encode(fo->data_key, JOIN_SECRET_BYTES, hexkey);
        hex_encode(fo->ledger_secret, JOIN_SECRET_BYTES, hexsec);
        bool is_data_key = strcmp(name, "data.key") == 0;
        bool is_ledger = strcmp(name, "ledger.secret") == 0;
        bool is_svc_key = strcmp(name, "identity/service.key") == 0;
        bool is_node_key = strcmp(name, "identity/node.key") == 0;
        if (contains(buf, len, fo->data_key, JOIN_SECRET_BYTES) != is_data_key ||
            contains(buf, len, fo->ledger_secret, JOIN_SECRET_BYTES) != is_ledger ||
            contains(buf, len, hexkey, 64) || contains(buf, len, hexsec, 64) ||
            contains(buf, len, pem_body(fo->svc_key_pem), 40) != is_svc_key ||
            contains(buf, len, pem_body(k->key_pem), 40) != is_node_key ||
            contains(buf, len, "PRIVATE KEY", 11) != (is_svc_key || is_node_key))
            TEST_FAIL("%s: holds a secret it should not (or lacks its own)", name);
        if (is_data_key || is_ledger || is_svc_key || is_node_key)
            ASSERT_EQ(st.st_mode & 0777, 0600);
        free(buf);
        ++*n_files;
    }
    closedir(d);
}

TEST(join, founder_and_joiner_end_with_a_data_dir_the_daemon_loads)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "", dir[512], iddir[600];
    struct founder fo;
    founder_init(&fo);
    struct join_key k;
    ASSERT_EQ(join_key_new(MEMBER, &k, errmsg), 0);
    char cn[64];
    ASSERT_EQ(cert_cn_of_pem(k.cert_pem, strlen(k.cert_pem), cn, sizeof cn), 0);
    ASSERT_STR_EQ(cn, "lskv node 0a0b0c0d0e0f1011");

    uint8_t *req, *resp;
    size_t req_len, resp_len;
    ASSERT_EQ(join_request_make(&k, MEMBER, "m2", CLUSTER, &req, &req_len, errmsg), 0);
    struct join_peer who;
    int rv = join_handle(&fo.f, k.digest, req, req_len, &resp, &resp_len, &who, errmsg);
    if (rv != 0)
        TEST_FAIL("join_handle: %s", errmsg);
    ASSERT_EQ(who.member_id, MEMBER);
    ASSERT_STR_EQ(who.name, "m2");
    char hex[CERT_NODE_ID_HEX];
    hex_encode(k.digest, sizeof k.digest, hex);
    ASSERT_STR_EQ(who.node_id, hex);

    struct join_secrets s;
    rv = join_response_open(resp, resp_len, &k, MEMBER, fo.tls.cert_pem,
                            strlen(fo.tls.cert_pem), &fo.policy, &s, errmsg);
    if (rv != 0)
        TEST_FAIL("join_response_open: %s", errmsg);
    ASSERT_MEM_EQ(s.data_key, fo.data_key, JOIN_SECRET_BYTES);
    ASSERT_MEM_EQ(s.ledger_secret, fo.ledger_secret, JOIN_SECRET_BYTES);
    ASSERT_STR_EQ(s.service_cert_pem, cert_service_pem(fo.svc));
    ASSERT_STR_EQ(s.service_key_pem, fo.svc_key_pem);
    ASSERT_EQ(cert_check_endorsed(fo.svc, s.node_cert_pem, strlen(s.node_cert_pem), errmsg), 0);

    /* Install, then load the way lskvd's open path does. */
    snprintf(dir, sizeof dir, "%s/joined", test_tmpdir());
    struct datadir d;
    ASSERT_EQ(datadir_open(&d, dir, errmsg), 0);
    ASSERT(d.fresh);
    rv = join_install(&d, &s, &k, errmsg);
    if (rv != 0)
        TEST_FAIL("join_install: %s", errmsg);
    snprintf(iddir, sizeof iddir, "%s/identity", dir);
    cert_service *svc;
    cert_node *node;
    bool created = true;
    ASSERT_EQ(cert_service_load_or_create(iddir, "x", true, &svc, &created, errmsg), 0);
    ASSERT(!created);
    ASSERT_STR_EQ(cert_service_pem(svc), cert_service_pem(fo.svc));
    created = true;
    ASSERT_EQ(cert_node_load_or_create(iddir, svc, "x", true, &node, &created, errmsg), 0);
    ASSERT(!created);
    ASSERT_STR_EQ(cert_node_id(node), hex);
    /* The joined member can endorse a later joiner with the service key. */
    struct datadir d2 = d;
    char later[700];
    snprintf(later, sizeof later, "%s/later", test_tmpdir());
    ASSERT_EQ(mkdir(later, 0700), 0);
    cert_node *n2;
    ASSERT_EQ(cert_node_load_or_create(later, svc, "lskv node 2", true, &n2, &created, errmsg), 0);
    ASSERT(created);
    cert_node_free(n2);
    uint8_t key[JOIN_SECRET_BYTES];
    created = true;
    ASSERT_EQ(datadir_load_secret(&d2, "data.key", key, sizeof key, &created, errmsg), 0);
    ASSERT(!created);
    ASSERT_MEM_EQ(key, fo.data_key, sizeof key);
    ASSERT_EQ(datadir_load_secret(&d2, "ledger.secret", key, sizeof key, &created, errmsg), 0);
    ASSERT(!created);
    ASSERT_MEM_EQ(key, fo.ledger_secret, sizeof key);

    /* Secrets are in their own files only, and nowhere in the clear else. */
    int n_files = 0;
    scan_files(dir, "", &fo, &k, &n_files);
    ASSERT_EQ(n_files, 6 + 1); /* the six installed, and datadir's lock */

    /* Installing again replaces nothing; a dir that is not fresh is refused. */
    ASSERT_EQ(join_install(&d, &s, &k, errmsg), -EEXIST);
    ASSERT(strstr(errmsg, "already there") != NULL);
    struct datadir used;
    datadir_close(&d);
    ASSERT_EQ(datadir_open(&used, dir, errmsg), 0);
    ASSERT(!used.fresh);
    ASSERT_EQ(join_install(&used, &s, &k, errmsg), LSKV_EINVAL);
    ASSERT(strstr(errmsg, "fresh") != NULL);
    datadir_close(&used);

    cert_node_free(node);
    cert_service_free(svc);
    join_secrets_wipe(&s);
    ASSERT(all_zero(&s, sizeof s));
    join_buf_free(resp, resp_len);
    join_buf_free(req, req_len);
    join_key_wipe(&k);
    founder_close(&fo);
}

TEST(join, request_refusals_carry_their_error_and_no_secret)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    struct founder fo;
    founder_init(&fo);
    struct join_key k, other;
    ASSERT_EQ(join_key_new(MEMBER, &k, errmsg), 0);
    ASSERT_EQ(join_key_new(MEMBER, &other, errmsg), 0);
    uint8_t *req, *report;
    size_t req_len, report_len;

    /* A request whose key is not the TLS key. */
    ASSERT_EQ(join_request_make(&k, MEMBER, "m2", CLUSTER, &req, &req_len, errmsg), 0);
    expect_refused(&fo, &k, other.digest, req, req_len, -EACCES,
                   "its node key is not the key the TLS channel proved");
    /* Another cluster. */
    join_buf_free(req, req_len);
    ASSERT_EQ(join_request_make(&k, MEMBER, "m2", CLUSTER + 1, &req, &req_len, errmsg), 0);
    expect_refused(&fo, &k, k.digest, req, req_len, LSKV_EINVAL,
                   "join request is for cluster 1122334455667789, this is cluster "
                   "1122334455667788");
    join_buf_free(req, req_len);

    /* Forged report_data: the report binds another key than the request's. */
    ASSERT_EQ(attest_report_make(other.digest, &report, &report_len, errmsg), 0);
    request_of(report, report_len, &k, MEMBER, CLUSTER, &req, &req_len);
    expect_refused(&fo, &k, k.digest, req, req_len, -EACCES,
                   "join request: attestation report: report_data does not bind the key");
    free(req);
    free(report);

    /* Wrong version. */
    struct attest_report r = {.format_version = 9, .kind = ATTEST_KIND_VIRTUAL};
    r.measurement = fo.policy.measurements[0];
    memcpy(r.report_data, k.digest, sizeof k.digest);
    ASSERT_EQ(attest_report_encode(&r, &report, &report_len), 0);
    request_of(report, report_len, &k, MEMBER, CLUSTER, &req, &req_len);
    expect_refused(&fo, &k, k.digest, req, req_len, LSKV_EFORMAT, "format version 9");
    free(req);
    free(report);

    /* Member id 0 (the founder checks what a well-behaved joiner never sends). */
    ASSERT_EQ(attest_report_make(k.digest, &report, &report_len, errmsg), 0);
    request_of(report, report_len, &k, 0, CLUSTER, &req, &req_len);
    expect_refused(&fo, &k, k.digest, req, req_len, LSKV_EINVAL, "member id 0");
    free(req);

    /* The same valid request under stricter policies. */
    request_of(report, report_len, &k, MEMBER, CLUSTER, &req, &req_len);
    fo.policy.accept_virtual = false;
    expect_refused(&fo, &k, k.digest, req, req_len, -EACCES,
                   "virtual reports are not allowed by the attestation policy");
    fo.policy.accept_virtual = true;
    memset(fo.policy.measurements[0].bytes, 0x77, ATTEST_DIGEST_BYTES);
    expect_refused(&fo, &k, k.digest, req, req_len, -EACCES,
                   "is not accepted by the attestation policy");

    /* Truncated and garbage bytes: every proper prefix is refused. */
    ASSERT_EQ(attest_policy_default(&fo.policy, errmsg), 0);
    for (size_t n = 0; n < req_len; n++) {
        uint8_t *resp;
        size_t resp_len;
        int rv = join_handle(&fo.f, k.digest, req, n, &resp, &resp_len, NULL, errmsg);
        if (rv == 0)
            TEST_FAIL("prefix of %zu bytes admitted", n);
        ASSERT(resp != NULL);
        assert_no_secret(&fo, resp, resp_len);
        join_buf_free(resp, resp_len);
    }
    const uint8_t garbage[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01};
    expect_refused(&fo, &k, k.digest, garbage, sizeof garbage, LSKV_ECORRUPT,
                   "join request: malformed");
    uint8_t *huge = calloc(1, JOIN_MSG_MAX_BYTES + 1);
    expect_refused(&fo, &k, k.digest, huge, JOIN_MSG_MAX_BYTES + 1, LSKV_ECORRUPT, "at most");
    free(huge);
    free(req);
    free(report);
    join_key_wipe(&other);
    join_key_wipe(&k);
    founder_close(&fo);
}

static int refuse_all(void *arg, uint64_t member_id, const char *name, char *errmsg)
{
    ++*(int *)arg;
    errmsg_printf(errmsg, "member %016" PRIx64 " (%s) is not in the cluster", member_id, name);
    return LSKV_ENOTFOUND;
}

TEST(join, admit_hook_refuses_unexpected_members)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    struct founder fo;
    founder_init(&fo);
    struct join_key k;
    ASSERT_EQ(join_key_new(MEMBER, &k, errmsg), 0);
    uint8_t *req;
    size_t req_len;
    ASSERT_EQ(join_request_make(&k, MEMBER, "m2", CLUSTER, &req, &req_len, errmsg), 0);
    int calls = 0;
    fo.f.admit = refuse_all;
    fo.f.admit_arg = &calls;
    expect_refused(&fo, &k, k.digest, req, req_len, LSKV_ENOTFOUND,
                   "member 0a0b0c0d0e0f1011 (m2) is not in the cluster");
    ASSERT_EQ(calls, 1);
    join_buf_free(req, req_len);
    join_key_wipe(&k);
    founder_close(&fo);
}

/* Admits k's request at fo and returns the response. */
static void admitted(struct founder *fo, const struct join_key *k, uint8_t **resp,
                     size_t *resp_len)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    uint8_t *req;
    size_t req_len;
    ASSERT_EQ(join_request_make(k, MEMBER, "m2", CLUSTER, &req, &req_len, errmsg), 0);
    ASSERT_EQ(join_handle(&fo->f, k->digest, req, req_len, resp, resp_len, NULL, errmsg), 0);
    join_buf_free(req, req_len);
}

static void expect_open_fails(const struct founder *fo, const struct join_key *k,
                              uint64_t member, const char *founder_pem, const uint8_t *resp,
                              size_t resp_len, int want, const char *want_text)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    struct join_secrets s;
    int rv = join_response_open(resp, resp_len, k, member, founder_pem, strlen(founder_pem),
                                &fo->policy, &s, errmsg);
    if (rv != want || strstr(errmsg, want_text) == NULL)
        TEST_FAIL("join_response_open: %d \"%s\", want %d \"%s\"", rv, errmsg, want, want_text);
    ASSERT(all_zero(&s, sizeof s));
    /* errmsg never carries a secret. */
    ASSERT(!contains((const uint8_t *)errmsg, strlen(errmsg), fo->data_key, 8));
    ASSERT(strstr(errmsg, "PRIVATE") == NULL);
}

TEST(join, response_refusals_leave_the_joiner_with_nothing)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    struct founder fo;
    founder_init(&fo);
    struct join_key k, stranger;
    ASSERT_EQ(join_key_new(MEMBER, &k, errmsg), 0);
    ASSERT_EQ(join_key_new(7, &stranger, errmsg), 0);
    uint8_t *resp;
    size_t resp_len;

    /* The founder's report binds another key than its TLS certificate's. */
    uint8_t *bad_report;
    size_t bad_len;
    ASSERT_EQ(attest_report_make(stranger.digest, &bad_report, &bad_len, errmsg), 0);
    fo.f.report = bad_report;
    fo.f.report_len = bad_len;
    admitted(&fo, &k, &resp, &resp_len);
    expect_open_fails(&fo, &k, MEMBER, fo.tls.cert_pem, resp, resp_len, -EACCES,
                      "join response: founder's report: attestation report: report_data "
                      "does not bind");
    join_buf_free(resp, resp_len);
    fo.f.report = fo.report;
    fo.f.report_len = fo.report_len;
    free(bad_report);

    /* A founder the joiner's policy does not accept. */
    admitted(&fo, &k, &resp, &resp_len);
    struct founder strict = fo;
    strict.policy.accept_virtual = false;
    expect_open_fails(&strict, &k, MEMBER, fo.tls.cert_pem, resp, resp_len, -EACCES,
                      "virtual reports are not allowed");

    /* A founder whose TLS certificate the service does not endorse (its
     * report binds that certificate's key: only the endorsement is wrong). */
    ASSERT_EQ(attest_report_make(stranger.digest, &bad_report, &bad_len, errmsg), 0);
    fo.f.report = bad_report;
    fo.f.report_len = bad_len;
    uint8_t *resp2;
    size_t resp2_len;
    admitted(&fo, &k, &resp2, &resp2_len);
    expect_open_fails(&fo, &k, MEMBER, stranger.cert_pem, resp2, resp2_len, LSKV_ECORRUPT,
                      "join response: founder's TLS certificate: node certificate not "
                      "endorsed");
    join_buf_free(resp2, resp2_len);
    fo.f.report = fo.report;
    fo.f.report_len = fo.report_len;
    free(bad_report);

    /* Issued for another member id; opened with another key. */
    expect_open_fails(&fo, &k, MEMBER + 1, fo.tls.cert_pem, resp, resp_len, LSKV_ECORRUPT,
                      "member id 0a0b0c0d0e0f1011 (want 0a0b0c0d0e0f1012)");
    expect_open_fails(&fo, &stranger, MEMBER, fo.tls.cert_pem, resp, resp_len, LSKV_ECORRUPT,
                      "the node certificate is not for our key");

    /* Every proper prefix and garbage: refused, nothing kept. */
    for (size_t n = 0; n < resp_len; n++) {
        struct join_secrets s;
        int rv = join_response_open(resp, n, &k, MEMBER, fo.tls.cert_pem,
                                    strlen(fo.tls.cert_pem), &fo.policy, &s, errmsg);
        if (rv == 0)
            TEST_FAIL("prefix of %zu bytes accepted", n);
        ASSERT(all_zero(&s, sizeof s));
    }
    const uint8_t garbage[] = {0x1a, 0xff, 0xff, 0x03};
    expect_open_fails(&fo, &k, MEMBER, fo.tls.cert_pem, garbage, sizeof garbage, LSKV_ECORRUPT,
                      "join response: malformed");
    const uint8_t positive[] = {0x08, 0x02}; /* status 1 (zigzag) */
    expect_open_fails(&fo, &k, MEMBER, fo.tls.cert_pem, positive, sizeof positive,
                      LSKV_ECORRUPT, "join response: status 1");

    /* A response whose secrets have the wrong size. */
    Lskvpeerpb__JoinResponse *m = lskvpeerpb__join_response__unpack(NULL, resp_len, resp);
    ASSERT(m != NULL);
    m->data_key.len = 16;
    size_t n = lskvpeerpb__join_response__get_packed_size(m);
    uint8_t *short_key = malloc(n);
    lskvpeerpb__join_response__pack(m, short_key);
    expect_open_fails(&fo, &k, MEMBER, fo.tls.cert_pem, short_key, n, LSKV_ECORRUPT,
                      "data key of 16 and ledger secret of 32 bytes");
    free(short_key);
    lskvpeerpb__join_response__free_unpacked(m, NULL);

    join_buf_free(resp, resp_len);
    join_key_wipe(&stranger);
    join_key_wipe(&k);
    founder_close(&fo);
}

/* An existing cluster's member table, as admit_existing sees it. */
struct table {
    const char *url;       /* the added member's peer URL */
    uint64_t id;           /* its id */
    bool started;
    int calls;
};

static int admit_by_table(void *arg, char *const *peer_urls, size_t n, const char *name,
                          struct join_admitted *out, char *errmsg)
{
    struct table *t = arg;
    t->calls++;
    ASSERT_STR_EQ(name, "m4");
    if (n != 1 || strcmp(peer_urls[0], t->url) != 0) {
        errmsg_printf(errmsg, "no member with peer URLs %s", peer_urls[0]);
        return LSKV_EMEMBERNOTFOUND;
    }
    if (t->started) {
        errmsg_printf(errmsg, "has started before");
        return -EEXIST;
    }
    out->member_id = t->id;
    out->n_members = 2;
    out->ids[0] = 1;
    out->peer_urls[0] = "http://127.0.0.1:1";
    out->ids[1] = t->id;
    out->peer_urls[1] = t->url;
    return 0;
}

TEST(join, existing_cluster_gives_the_added_member_its_id)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    struct founder fo;
    founder_init(&fo);
    struct table t = {.url = "http://127.0.0.1:4", .id = 0x4444};
    fo.f.admit_existing = admit_by_table;
    fo.f.admit_arg = &t;
    struct join_key k;
    ASSERT_EQ(join_key_new(MEMBER, &k, errmsg), 0); /* the id --initial-cluster derives */
    char *urls[] = {"http://127.0.0.1:4"};
    uint8_t *req, *resp;
    size_t req_len, resp_len;
    ASSERT_EQ(join_request_make_existing(&k, MEMBER, "m4", urls, 1, &req, &req_len, errmsg), 0);
    struct join_peer who;
    int rv = join_handle(&fo.f, k.digest, req, req_len, &resp, &resp_len, &who, errmsg);
    if (rv != 0)
        TEST_FAIL("join_handle: %s", errmsg);
    ASSERT_EQ(t.calls, 1);
    ASSERT_EQ(who.member_id, 0x4444u);
    /* The joiner does not know its id: it takes the response's. */
    struct join_secrets s;
    rv = join_response_open(resp, resp_len, &k, 0, fo.tls.cert_pem, strlen(fo.tls.cert_pem),
                            &fo.policy, &s, errmsg);
    if (rv != 0)
        TEST_FAIL("join_response_open: %s", errmsg);
    ASSERT_EQ(s.member_id, 0x4444u);
    ASSERT_EQ(s.cluster_id, CLUSTER);
    ASSERT_EQ(s.n_members, 2u);
    ASSERT_EQ(s.member_ids[0], 1u);
    ASSERT_STR_EQ(s.member_peer_urls[1], "http://127.0.0.1:4");
    char cn[64];
    ASSERT_EQ(cert_cn_of_pem(s.node_cert_pem, strlen(s.node_cert_pem), cn, sizeof cn), 0);
    ASSERT_STR_EQ(cn, "lskv node 0000000000004444");
    join_secrets_wipe(&s);
    /* Expecting the id --initial-cluster derived, the joiner refuses it. */
    expect_open_fails(&fo, &k, MEMBER, fo.tls.cert_pem, resp, resp_len, LSKV_ECORRUPT,
                      "member id 0000000000004444 (want 0a0b0c0d0e0f1011)");
    join_buf_free(resp, resp_len);

    /* Not added, or started before: refused, no secret. */
    t.url = "http://127.0.0.1:5";
    expect_refused(&fo, &k, k.digest, req, req_len, LSKV_EMEMBERNOTFOUND,
                   "no member with peer URLs http://127.0.0.1:4");
    t.url = "http://127.0.0.1:4";
    t.started = true;
    expect_refused(&fo, &k, k.digest, req, req_len, -EEXIST, "has started before");
    /* A member that does not serve existing-cluster joins refuses them. */
    fo.f.admit_existing = NULL;
    expect_refused(&fo, &k, k.digest, req, req_len, -EACCES,
                   "does not admit members of an existing cluster");
    ASSERT_EQ(t.calls, 3);
    join_buf_free(req, req_len);
    /* Peer URLs are bounded on both sides. */
    char *none[] = {""};
    ASSERT_EQ(join_request_make_existing(&k, MEMBER, "m4", none, 1, &req, &req_len, errmsg),
              LSKV_EINVAL);
    ASSERT_EQ(join_request_make_existing(&k, MEMBER, "m4", urls, 0, &req, &req_len, errmsg),
              LSKV_EINVAL);
    join_key_wipe(&k);
    founder_close(&fo);
}

/* lskvctl: command dispatch, receipt verify, ledger synth (a test tool). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/arena.h"
#include "common/err.h"
#include "common/file.h"
#include "common/hex.h"
#include "crypto/keyfile.h"
#include "identity/cert.h"
#include "ledger/anchor.h"
#include "ledger/chunk.h"
#include "ledger/ledger.h"
#include "ledger/receipt.h"
#include "lskvctl.h"
#include "proto/lskvserver.pb-c.h"

static const char usage[] =
    "usage: lskvctl <command> ...\n"
    "  receipt verify FILE --service-cert CERT [--request R --response S\n"
    "                 [--kind put|delete_range|txn|lease_grant|lease_revoke]] [--anchor A]\n"
    "      verify a receipt (JSON, as GetReceipt returns it) offline; R and S are\n"
    "      the binary protobuf request and response the receipt is for; with an\n"
    "      anchor, the receipt's tree and the anchor's must be one history (the\n"
    "      receipt must carry the proof: receipt get --anchor)\n"
    "  receipt get REV [--term T] [--endpoints URL] [--out FILE] [--timeout SEC]\n"
    "                 [--anchor A] [--request R --response S [--kind K]]\n"
    "      fetch the receipt of the write that made revision REV (JSON), retrying\n"
    "      while the server says it is not signed yet (default timeout 10 s); with\n"
    "      an anchor, embed the consistency proof between its tree and the anchor's;\n"
    "      with R and S, of the write at REV with those claims (how lease commands,\n"
    "      which make no revision of their own, are found)\n"
    "  anchor get [--endpoints URL] [--out FILE]\n"
    "      save the latest signed root (JSON): an anchor for --anchor\n"
    "  tx-status REV [--term T] [--endpoints URL]\n"
    "      Unknown, Pending, Committed or Invalid\n"
    "  ledger show DIR                        one line per ledger entry\n"
    "  ledger audit DIR --service-cert CERT [--ledger-secret FILE]\n"
    "               [--anchor A | --backup FILE --source-data-key KEY]\n"
    "      re-read every chunk, recompute every leaf and root, check every\n"
    "      signature (and with the secret every private part); with an anchor,\n"
    "      the ledger must hold its signed root at its size (else rolled back\n"
    "      or forked); with a backup, the ledger must hold the position (size and\n"
    "      root) the backup was taken at\n"
    "  ledger synth DIR --entries N [--sig-every K] [--chunk-bytes B]\n"
    "                 [--receipts OUTDIR]\n"
    "      TEST TOOL: write a synthetic ledger, identity and secret under DIR\n"
    "  attestation verify FILE --policy POLICY (--key-digest HEX | --node-cert CERT)\n"
    "      check a member's attestation report (binary AttestationReport) against\n"
    "      an --attestation-policy file and the key it must bind (SHA-256 of the\n"
    "      public key, or that of a certificate); prints its fields and the verdict\n"
    "  snapshot status FILE --source-data-key KEY\n"
    "      check a backup `etcdctl snapshot save` took from lskvd (every frame, with\n"
    "      the data.key of a member of its cluster) and print its source: cluster,\n"
    "      member, revision, records, ledger size and root\n"
    "  snapshot restore FILE --source-data-key KEY --data-dir D [--name N]\n"
    "                 [--initial-cluster C] [--initial-cluster-token T]\n"
    "                 [--initial-advertise-peer-urls U]\n"
    "      check the backup, then make the new data dir D for member N of a new\n"
    "      cluster (ids derived from the flags, as etcd's restore derives them);\n"
    "      lskvd started there with the same flags imports it; a bad backup\n"
    "      creates nothing\n"
    "exit: 0 ok, 1 check failed, 2 usage or I/O error, 3 not implemented\n";

void lskvctl_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "lskvctl: %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

const char *lskvctl_opt(int argc, char **argv, const char *name)
{
    for (int i = 0; i < argc; i++) {
        if (argv[i] != NULL && strcmp(argv[i], name) == 0 && i + 1 < argc) {
            const char *v = argv[i + 1];
            argv[i] = argv[i + 1] = NULL;
            return v;
        }
    }
    return NULL;
}

bool lskvctl_flag(int argc, char **argv, const char *name)
{
    for (int i = 0; i < argc; i++) {
        if (argv[i] != NULL && strcmp(argv[i], name) == 0) {
            argv[i] = NULL;
            return true;
        }
    }
    return false;
}

const char *lskvctl_positional(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (argv[i] != NULL && strncmp(argv[i], "--", 2) != 0) {
            const char *v = argv[i];
            argv[i] = NULL;
            return v;
        }
    }
    return NULL;
}

/* Says what is wrong with the command line, then the usage. */
static int usage_error(const char *cmd, const char *what, const char *arg)
{
    if (arg != NULL)
        lskvctl_fail(cmd, "%s '%s'", what, arg);
    else
        lskvctl_fail(cmd, "%s", what);
    fputs(usage, stderr);
    return EXIT_USAGE;
}

static bool leftover(int argc, char **argv, const char *cmd)
{
    for (int i = 0; i < argc; i++)
        if (argv[i] != NULL)
            return usage_error(cmd, "unexpected argument", argv[i]) != 0;
    return false;
}

int lskvctl_read_secret(const char *path, uint8_t out[32], char *errmsg)
{
    return keyfile_load_or_create(path, out, LEDGER_SECRET_BYTES, false, NULL, errmsg);
}

/* --- receipt verify --------------------------------------------------------- */

static int claims_from_files(const char *kind, const char *req_path, const char *resp_path,
                             uint8_t digest[32], char *errmsg)
{
    uint8_t *rq = NULL, *rs = NULL;
    size_t rql, rsl;
    int rv = file_read_all(req_path, &rq, &rql, errmsg);
    if (rv == 0)
        rv = file_read_all(resp_path, &rs, &rsl, errmsg);
    if (rv != 0) {
        free(rq);
        return rv;
    }
    Lskvserverpb__ReceiptClaims c = LSKVSERVERPB__RECEIPT_CLAIMS__INIT;
    ProtobufCMessage *a = NULL, *b = NULL;
    enum receipt_kind k;
    rv = LSKV_EINVAL;
    if (receipt_kind_from_name(kind, &k) != 0) {
        errmsg_printf(errmsg, "--kind must be put, delete_range, txn, lease_grant or "
                              "lease_revoke");
        goto out;
    }
    a = protobuf_c_message_unpack(receipt_request_type(k), NULL, rql, rq);
    b = protobuf_c_message_unpack(receipt_response_type(k), NULL, rsl, rs);
    if (a == NULL || b == NULL) {
        errmsg_printf(errmsg, "request or response is not a %s protobuf message", kind);
        goto out;
    }
    receipt_claims_set(&c, k, a, b);
    rv = receipt_claims_digest(&c, digest);
out:
    if (a)
        protobuf_c_message_free_unpacked(a, NULL);
    if (b)
        protobuf_c_message_free_unpacked(b, NULL);
    free(rq);
    free(rs);
    return rv;
}

int cmd_receipt_verify(int argc, char **argv)
{
    const char *cmd = "receipt verify";
    const char *cert_path = lskvctl_opt(argc, argv, "--service-cert");
    const char *req = lskvctl_opt(argc, argv, "--request");
    const char *resp = lskvctl_opt(argc, argv, "--response");
    const char *kind = lskvctl_opt(argc, argv, "--kind");
    const char *anchor_path = lskvctl_opt(argc, argv, "--anchor");
    const char *file = lskvctl_positional(argc, argv);
    if (file == NULL || cert_path == NULL || (req == NULL) != (resp == NULL))
        return usage_error(cmd, "need FILE and --service-cert (and both or neither of "
                                "--request/--response)", NULL);
    if (leftover(argc, argv, cmd))
        return EXIT_USAGE;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    uint8_t *json = NULL;
    size_t json_len;
    cert_service *svc = NULL;
    struct arena a;
    arena_init(&a);
    int code = EXIT_USAGE;
    if (cert_service_from_file(cert_path, &svc, errmsg) != 0 ||
        file_read_all(file, &json, &json_len, errmsg) != 0) {
        lskvctl_fail(cmd, "%s", errmsg);
        goto out;
    }
    Lskvserverpb__Receipt *r;
    if (receipt_from_json((const char *)json, json_len, &a, &r, errmsg) != 0) {
        lskvctl_fail(cmd, "%s: %s", file, errmsg);
        goto out;
    }
    uint8_t digest[32];
    if (req != NULL && claims_from_files(kind ? kind : "put", req, resp, digest, errmsg) != 0) {
        lskvctl_fail(cmd, "%s", errmsg);
        goto out;
    }
    uint8_t root[32];
    int rv = receipt_verify(r, svc, req ? digest : NULL, root, errmsg);
    if (rv != 0) {
        lskvctl_fail(cmd, "%s: FAILED: %s", file, errmsg);
        code = EXIT_CHECK_FAILED;
        goto out;
    }
    if (anchor_path != NULL) {
        Lskvserverpb__SignedRoot *anchor;
        uint8_t aroot[32];
        if ((rv = lskvctl_load_anchor(anchor_path, svc, &a, &anchor, aroot, errmsg)) != 0) {
            lskvctl_fail(cmd, "%s", errmsg);
            code = rv == LSKV_ECORRUPT ? EXIT_CHECK_FAILED : EXIT_USAGE;
            goto out;
        }
        if ((rv = anchor_check_receipt(r, root, anchor, aroot, errmsg)) != 0) {
            lskvctl_fail(cmd, "%s: FAILED: %s", file, errmsg);
            code = EXIT_CHECK_FAILED;
            goto out;
        }
    }
    char hex[65];
    hex_encode(root, 32, hex);
    printf("OK: leaf %" PRIu64 " of %" PRIu64 ", root %s, node %s, %s%s\n",
           r->tx_receipt->leaf_index, r->tx_receipt->tree_size, hex, r->node_id,
           req ? "claims match" : "claims not checked",
           anchor_path ? ", consistent with the anchor" : "");
    code = 0;
out:
    arena_close(&a);
    cert_service_free(svc);
    free(json);
    return code;
}

/* --- receipt get, tx-status (talk to lskvd) ------------------------------------ */

#define DEFAULT_ENDPOINT "http://127.0.0.1:2379"

static const char *first_endpoint(const char *list, char *buf, size_t n)
{
    if (list == NULL)
        return DEFAULT_ENDPOINT;
    snprintf(buf, n, "%s", list);
    char *comma = strchr(buf, ',');
    if (comma != NULL)
        *comma = '\0';
    return buf;
}

static bool parse_i64(const char *s, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return false;
    *out = v;
    return true;
}

/* The write both receipt get and tx-status ask about:
 * REV [--term T] [--endpoints URL] (the command's own options taken first). */
struct write_ref {
    int64_t rev;
    uint64_t term;
    const char *url;
    char url_buf[512];
};

/* Returns 0, or EXIT_USAGE after saying why. positive: REV must be > 0. */
static int write_ref_parse(int argc, char **argv, const char *cmd, bool positive,
                           struct write_ref *out)
{
    const char *term_s = lskvctl_opt(argc, argv, "--term");
    const char *eps = lskvctl_opt(argc, argv, "--endpoints");
    const char *rev_s = lskvctl_positional(argc, argv);
    int64_t term = 0;
    if (rev_s == NULL || !parse_i64(rev_s, &out->rev) || (positive && out->rev <= 0) ||
        (term_s != NULL && (!parse_i64(term_s, &term) || term < 0)))
        return usage_error(cmd, positive ? "need a positive revision REV (and a non-negative "
                                           "--term)"
                                         : "need a revision REV (and a non-negative --term)",
                           NULL);
    if (leftover(argc, argv, cmd))
        return EXIT_USAGE;
    out->term = (uint64_t)term;
    out->url = first_endpoint(eps, out->url_buf, sizeof out->url_buf);
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int cmd_receipt_get(int argc, char **argv)
{
    const char *cmd = "receipt get";
    const char *out_path = lskvctl_opt(argc, argv, "--out");
    const char *timeout_s = lskvctl_opt(argc, argv, "--timeout");
    const char *anchor_path = lskvctl_opt(argc, argv, "--anchor");
    const char *claims_req = lskvctl_opt(argc, argv, "--request");
    const char *claims_resp = lskvctl_opt(argc, argv, "--response");
    const char *kind = lskvctl_opt(argc, argv, "--kind");
    if ((claims_req == NULL) != (claims_resp == NULL) || (kind != NULL && claims_req == NULL))
        return usage_error(cmd, "--request and --response go together (--kind with them)", NULL);
    struct write_ref w;
    if (write_ref_parse(argc, argv, cmd, true, &w) != 0)
        return EXIT_USAGE;
    int64_t rev = w.rev;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    double timeout = timeout_s ? atof(timeout_s) : 10.0, start = now_s();
    Lskvserverpb__GetReceiptRequest req = LSKVSERVERPB__GET_RECEIPT_REQUEST__INIT;
    req.revision = w.rev;
    req.raft_term = w.term;
    char digest_hex[2 * 32 + 1];
    if (claims_req != NULL) {
        uint8_t digest[32];
        if (claims_from_files(kind ? kind : "put", claims_req, claims_resp, digest, errmsg) != 0) {
            lskvctl_fail(cmd, "%s", errmsg);
            return EXIT_USAGE;
        }
        hex_encode(digest, sizeof digest, digest_hex);
        req.claims_digest = digest_hex;
    }
    uint8_t buf[160];
    size_t n = lskvserverpb__get_receipt_request__pack(&req, buf);
    for (;;) {
        struct lskvctl_reply r;
        if (lskvctl_unary(w.url, "/etcdserverpb.Receipt/GetReceipt", buf, n, &r, errmsg) != 0) {
            lskvctl_fail(cmd, "%s", errmsg);
            return EXIT_USAGE;
        }
        if (r.grpc_status == 14 /* UNAVAILABLE */ && strstr(r.grpc_message, "not ready")) {
            if (now_s() - start > timeout) {
                lskvctl_fail(cmd, "revision %" PRId64 ": still not ready after %.1f s: %s", rev,
                             timeout, r.grpc_message);
                return EXIT_CHECK_FAILED;
            }
            const char *hint = strstr(r.grpc_message, "retry-after-ms: ");
            long ms = hint ? atol(hint + 16) : 20;
            if (ms < 1 || ms > 1000)
                ms = 20;
            struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        if (r.grpc_status != 0) {
            lskvctl_fail(cmd, "revision %" PRId64 ": grpc status %d: %s", rev, r.grpc_status,
                         r.grpc_message);
            free(r.msg);
            return r.grpc_status == 5 /* NOT_FOUND */ ? EXIT_CHECK_FAILED : EXIT_USAGE;
        }
        Lskvserverpb__GetReceiptResponse *resp =
            lskvserverpb__get_receipt_response__unpack(NULL, r.len, r.msg);
        free(r.msg);
        if (resp == NULL || resp->receipt == NULL) {
            lskvctl_fail(cmd, "malformed GetReceiptResponse");
            if (resp)
                lskvserverpb__get_receipt_response__free_unpacked(resp, NULL);
            return EXIT_USAGE;
        }
        struct arena aa;
        arena_init(&aa);
        Lskvserverpb__GetConsistencyProofResponse *cp = NULL;
        if (anchor_path != NULL) {
            /* The anchor is checked by receipt verify; here only its size. */
            Lskvserverpb__SignedRoot *anchor;
            uint8_t aroot[32];
            uint64_t as, rs = resp->receipt->tx_receipt ? resp->receipt->tx_receipt->tree_size : 0;
            int rv = lskvctl_load_anchor(anchor_path, NULL, &aa, &anchor, aroot, errmsg);
            as = rv == 0 ? anchor->tree_size : 0;
            if (rv == 0 && as != rs)
                rv = lskvctl_consistency(w.url, as < rs ? as : rs, as < rs ? rs : as, &cp,
                                         errmsg);
            if (rv != 0) {
                lskvctl_fail(cmd, "%s", errmsg);
                lskvserverpb__get_receipt_response__free_unpacked(resp, NULL);
                arena_close(&aa);
                return rv == LSKV_ENOTFOUND || rv == LSKV_ECORRUPT ? EXIT_CHECK_FAILED
                                                                    : EXIT_USAGE;
            }
            resp->receipt->anchor_size = as;
            if (cp != NULL) {
                resp->receipt->n_anchor_proof = cp->n_proof;
                resp->receipt->anchor_proof = cp->proof;
            }
        }
        char *js = receipt_to_json(resp->receipt);
        resp->receipt->n_anchor_proof = 0; /* borrowed from cp */
        resp->receipt->anchor_proof = NULL;
        if (cp != NULL)
            lskvserverpb__get_consistency_proof_response__free_unpacked(cp, NULL);
        arena_close(&aa);
        lskvserverpb__get_receipt_response__free_unpacked(resp, NULL);
        if (js == NULL)
            return EXIT_USAGE;
        return lskvctl_emit(cmd, out_path, js);
    }
}

int cmd_tx_status(int argc, char **argv)
{
    const char *cmd = "tx-status";
    struct write_ref w;
    if (write_ref_parse(argc, argv, cmd, false, &w) != 0)
        return EXIT_USAGE;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    Lskvserverpb__TxStatusRequest req = LSKVSERVERPB__TX_STATUS_REQUEST__INIT;
    req.revision = w.rev;
    req.raft_term = w.term;
    uint8_t buf[64];
    size_t n = lskvserverpb__tx_status_request__pack(&req, buf);
    struct lskvctl_reply r;
    if (lskvctl_unary(w.url, "/etcdserverpb.Maintenance/TxStatus", buf, n, &r, errmsg) != 0) {
        lskvctl_fail(cmd, "%s", errmsg);
        return EXIT_USAGE;
    }
    if (r.grpc_status != 0) {
        lskvctl_fail(cmd, "grpc status %d: %s", r.grpc_status, r.grpc_message);
        return EXIT_USAGE;
    }
    Lskvserverpb__TxStatusResponse *resp =
        lskvserverpb__tx_status_response__unpack(NULL, r.len, r.msg);
    free(r.msg);
    if (resp == NULL) {
        lskvctl_fail(cmd, "malformed TxStatusResponse");
        return EXIT_USAGE;
    }
    static const char *const names[] = {"Unknown", "Pending", "Committed", "Invalid"};
    unsigned st = (unsigned)resp->status;
    printf("%s\n", st < 4 ? names[st] : "?");
    lskvserverpb__tx_status_response__free_unpacked(resp, NULL);
    return 0;
}

/* --- ledger synth (test tool) ------------------------------------------------- */

static int write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return -errno;
    size_t n = fwrite(data, 1, len, f);
    int rv = fclose(f);
    return n == len && rv == 0 ? 0 : -EIO;
}

int cmd_ledger_synth(int argc, char **argv)
{
    const char *cmd = "ledger synth";
    const char *n_s = lskvctl_opt(argc, argv, "--entries");
    const char *k_s = lskvctl_opt(argc, argv, "--sig-every");
    const char *cb_s = lskvctl_opt(argc, argv, "--chunk-bytes");
    const char *rdir = lskvctl_opt(argc, argv, "--receipts");
    const char *dir = lskvctl_positional(argc, argv);
    if (dir == NULL || n_s == NULL)
        return usage_error(cmd, "need DIR and --entries N", NULL);
    if (leftover(argc, argv, cmd))
        return EXIT_USAGE;
    long n = atol(n_s), k = k_s ? atol(k_s) : 100;
    unsigned long long chunk_bytes = cb_s ? strtoull(cb_s, NULL, 10) : 0;
    if (n < 1 || k < 1) {
        lskvctl_fail(cmd, "--entries and --sig-every must be positive");
        return EXIT_USAGE;
    }
    char errmsg[LSKV_ERRMSG_SIZE] = "", path[4096];
    cert_service *svc = NULL;
    cert_node *node = NULL;
    ledger *l = NULL;
    uint8_t secret[LEDGER_SECRET_BYTES];
    int code = EXIT_USAGE;
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/identity", dir);
    mkdir(path, 0700);
    if (cert_service_load_or_create(path, "lskv synthetic service", true, &svc, NULL, errmsg) ||
        cert_node_load_or_create(path, svc, "lskv synthetic node", true, &node, NULL, errmsg)) {
        lskvctl_fail(cmd, "%s", errmsg);
        goto out;
    }
    snprintf(path, sizeof path, "%s/ledger.secret", dir);
    if (keyfile_load_or_create(path, secret, sizeof secret, true, NULL, errmsg) != 0) {
        lskvctl_fail(cmd, "%s", errmsg);
        goto out;
    }
    snprintf(path, sizeof path, "%s/ledger", dir);
    struct ledger_config cfg = {.dir = path, .secret = secret, .service = svc,
                                .chunk_bytes = chunk_bytes};
    if (ledger_open(&cfg, &l, errmsg) != 0) {
        lskvctl_fail(cmd, "%s", errmsg);
        goto out;
    }
    if (rdir != NULL)
        mkdir(rdir, 0755);
    struct ledger_position pos;
    ledger_position(l, &pos);
    uint64_t index = pos.index + 1, term = pos.term ? pos.term : 1;
    int64_t rev = pos.revision ? pos.revision : 1;
    for (long i = 0; i < n; i++) {
        char key[64], val[64];
        rev++;
        snprintf(key, sizeof key, "key-%ld", (long)rev);
        snprintf(val, sizeof val, "value-%ld", (long)rev);
        Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
        req.key.data = (uint8_t *)key;
        req.key.len = strlen(key);
        req.value.data = (uint8_t *)val;
        req.value.len = strlen(val);
        Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
        hdr.cluster_id = 1;
        hdr.member_id = 1;
        hdr.revision = rev;
        hdr.raft_term = term;
        Etcdserverpb__PutResponse resp = ETCDSERVERPB__PUT_RESPONSE__INIT;
        resp.header = &hdr;
        Lskvserverpb__ReceiptClaims c = LSKVSERVERPB__RECEIPT_CLAIMS__INIT;
        c.request_case = LSKVSERVERPB__RECEIPT_CLAIMS__REQUEST_REQUEST_PUT;
        c.request_put = &req;
        c.response_case = LSKVSERVERPB__RECEIPT_CLAIMS__RESPONSE_RESPONSE_PUT;
        c.response_put = &resp;
        uint8_t *claims;
        size_t claims_len;
        if (receipt_claims_pack(&c, &claims, &claims_len) != 0)
            goto out;
        uint8_t ws[256];
        size_t ws_len = (size_t)snprintf((char *)ws, sizeof ws, "put %s=%s", key, val);
        struct ledger_entry e = {.term = term, .index = index++, .revision = rev,
                                 .type = LEDGER_ENTRY_KV, .write_set = ws, .write_set_len = ws_len,
                                 .claims = claims, .claims_len = claims_len};
        int rv = ledger_append(l, &e, errmsg);
        free(claims);
        if (rv != 0) {
            lskvctl_fail(cmd, "%s", errmsg);
            goto out;
        }
        if (rdir != NULL) {
            uint8_t buf[512];
            size_t bl = etcdserverpb__put_request__pack(&req, buf);
            snprintf(path, sizeof path, "%s/request_%" PRId64 ".bin", rdir, rev);
            write_file(path, buf, bl);
            bl = etcdserverpb__put_response__pack(&resp, buf);
            snprintf(path, sizeof path, "%s/response_%" PRId64 ".bin", rdir, rev);
            write_file(path, buf, bl);
        }
        if ((i + 1) % k == 0 || i + 1 == n) {
            uint8_t *p;
            size_t len;
            if ((rv = ledger_make_signature(l, node, 0, &p, &len)) == 0) {
                rv = ledger_apply_signature(l, term, index++, rev, p, len, NULL, errmsg);
                free(p);
            }
            if (rv != 0) {
                lskvctl_fail(cmd, "signature: %s", errmsg);
                goto out;
            }
        }
    }
    if (rdir != NULL) {
        for (int64_t r = rev - n + 1; r <= rev; r++) {
            struct arena a;
            arena_init(&a);
            Lskvserverpb__Receipt *rc;
            if (ledger_receipt(l, r, term, &a, &rc, errmsg) != 0) {
                lskvctl_fail(cmd, "receipt %" PRId64 ": %s", r, errmsg);
                arena_close(&a);
                goto out;
            }
            char *js = receipt_to_json(rc);
            snprintf(path, sizeof path, "%s/receipt_%" PRId64 ".json", rdir, r);
            int rv = js ? write_file(path, js, strlen(js)) : LSKV_ENOMEM;
            free(js);
            arena_close(&a);
            if (rv != 0) {
                lskvctl_fail(cmd, "%s: %s", path, lskv_strerror(rv));
                goto out;
            }
        }
    }
    ledger_position(l, &pos);
    printf("synth: %" PRIu64 " entries, revision %" PRId64 ", signed %" PRIu64 "\n", pos.size,
           pos.revision, pos.signed_size);
    code = 0;
out:
    ledger_close(l);
    cert_node_free(node);
    cert_service_free(svc);
    return code;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    const char *a = argv[1], *b = argc > 2 ? argv[2] : "";
    if (strcmp(a, "receipt") == 0 && strcmp(b, "verify") == 0)
        return cmd_receipt_verify(argc - 3, argv + 3);
    if (strcmp(a, "ledger") == 0 && strcmp(b, "show") == 0)
        return cmd_ledger_show(argc - 3, argv + 3);
    if (strcmp(a, "ledger") == 0 && strcmp(b, "audit") == 0)
        return cmd_ledger_audit(argc - 3, argv + 3);
    if (strcmp(a, "ledger") == 0 && strcmp(b, "synth") == 0)
        return cmd_ledger_synth(argc - 3, argv + 3);
    if (strcmp(a, "anchor") == 0 && strcmp(b, "get") == 0)
        return cmd_anchor_get(argc - 3, argv + 3);
    if (strcmp(a, "receipt") == 0 && strcmp(b, "get") == 0)
        return cmd_receipt_get(argc - 3, argv + 3);
    if (strcmp(a, "attestation") == 0 && strcmp(b, "verify") == 0)
        return cmd_attestation_verify(argc - 3, argv + 3);
    if (strcmp(a, "snapshot") == 0 && strcmp(b, "status") == 0)
        return cmd_snapshot_status(argc - 3, argv + 3);
    if (strcmp(a, "snapshot") == 0 && strcmp(b, "restore") == 0)
        return cmd_snapshot_restore(argc - 3, argv + 3);
    if (strcmp(a, "tx-status") == 0)
        return cmd_tx_status(argc - 2, argv + 2);
    return usage_error(a, "unknown command", NULL);
}

int lskvctl_emit(const char *cmd, const char *out_path, char *js)
{
    int code = 0;
    if (out_path != NULL) {
        FILE *f = fopen(out_path, "w");
        if (f == NULL || fputs(js, f) < 0 || fputc('\n', f) < 0 || fclose(f) != 0) {
            lskvctl_fail(cmd, "%s: %s", out_path, strerror(errno));
            code = EXIT_USAGE;
        }
    } else {
        puts(js);
    }
    free(js);
    return code;
}

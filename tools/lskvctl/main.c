/* lskvctl: command dispatch, receipt verify, ledger synth (a test tool). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/arena.h"
#include "common/err.h"
#include "crypto/keyfile.h"
#include "identity/cert.h"
#include "ledger/chunk.h"
#include "ledger/ledger.h"
#include "ledger/receipt.h"
#include "lskvctl.h"
#include "proto/lskvserver.pb-c.h"

static const char usage[] =
    "usage: lskvctl <command> ...\n"
    "  receipt verify FILE --service-cert CERT [--request R --response S\n"
    "                 [--kind put|delete_range|txn]]\n"
    "      verify a receipt (JSON, as GetReceipt returns it) offline; R and S are\n"
    "      the binary protobuf request and response the receipt is for\n"
    "  receipt get REV [--endpoints URL]        (not yet wired)\n"
    "  tx-status REV [--term T] [--endpoints URL] (not yet wired)\n"
    "  ledger show DIR                        one line per ledger entry\n"
    "  ledger audit DIR --service-cert CERT [--ledger-secret FILE]\n"
    "      re-read every chunk, recompute every leaf and root, check every\n"
    "      signature (and with the secret every private part)\n"
    "  ledger synth DIR --entries N [--sig-every K] [--chunk-bytes B]\n"
    "                 [--receipts OUTDIR]\n"
    "      TEST TOOL: write a synthetic ledger, identity and secret under DIR\n"
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

static bool leftover(int argc, char **argv, const char *cmd)
{
    for (int i = 0; i < argc; i++) {
        if (argv[i] != NULL) {
            lskvctl_fail(cmd, "unexpected argument '%s'", argv[i]);
            fputs(usage, stderr);
            return true;
        }
    }
    return false;
}

int lskvctl_read_secret(const char *path, uint8_t out[32], char *errmsg)
{
    return keyfile_load_or_create(path, out, LEDGER_SECRET_BYTES, false, NULL, errmsg);
}

static int read_all(const char *path, uint8_t **buf, size_t *len, char *errmsg)
{
    return chunk_read_file(path, buf, len, errmsg);
}

/* --- receipt verify --------------------------------------------------------- */

static int claims_from_files(const char *kind, const char *req_path, const char *resp_path,
                             uint8_t digest[32], char *errmsg)
{
    uint8_t *rq = NULL, *rs = NULL;
    size_t rql, rsl;
    int rv = read_all(req_path, &rq, &rql, errmsg);
    if (rv == 0)
        rv = read_all(resp_path, &rs, &rsl, errmsg);
    if (rv != 0) {
        free(rq);
        return rv;
    }
    Lskvserverpb__ReceiptClaims c = LSKVSERVERPB__RECEIPT_CLAIMS__INIT;
    ProtobufCMessage *a = NULL, *b = NULL;
    rv = LSKV_EINVAL;
    if (strcmp(kind, "put") == 0) {
        c.request_case = LSKVSERVERPB__RECEIPT_CLAIMS__REQUEST_REQUEST_PUT;
        c.response_case = LSKVSERVERPB__RECEIPT_CLAIMS__RESPONSE_RESPONSE_PUT;
        c.request_put = etcdserverpb__put_request__unpack(NULL, rql, rq);
        c.response_put = etcdserverpb__put_response__unpack(NULL, rsl, rs);
        a = (ProtobufCMessage *)c.request_put;
        b = (ProtobufCMessage *)c.response_put;
    } else if (strcmp(kind, "delete_range") == 0) {
        c.request_case = LSKVSERVERPB__RECEIPT_CLAIMS__REQUEST_REQUEST_DELETE_RANGE;
        c.response_case = LSKVSERVERPB__RECEIPT_CLAIMS__RESPONSE_RESPONSE_DELETE_RANGE;
        c.request_delete_range = etcdserverpb__delete_range_request__unpack(NULL, rql, rq);
        c.response_delete_range = etcdserverpb__delete_range_response__unpack(NULL, rsl, rs);
        a = (ProtobufCMessage *)c.request_delete_range;
        b = (ProtobufCMessage *)c.response_delete_range;
    } else if (strcmp(kind, "txn") == 0) {
        c.request_case = LSKVSERVERPB__RECEIPT_CLAIMS__REQUEST_REQUEST_TXN;
        c.response_case = LSKVSERVERPB__RECEIPT_CLAIMS__RESPONSE_RESPONSE_TXN;
        c.request_txn = etcdserverpb__txn_request__unpack(NULL, rql, rq);
        c.response_txn = etcdserverpb__txn_response__unpack(NULL, rsl, rs);
        a = (ProtobufCMessage *)c.request_txn;
        b = (ProtobufCMessage *)c.response_txn;
    } else {
        errmsg_printf(errmsg, "--kind must be put, delete_range or txn");
        goto out;
    }
    if (a == NULL || b == NULL) {
        errmsg_printf(errmsg, "request or response is not a %s protobuf message", kind);
        goto out;
    }
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
    const char *file = lskvctl_positional(argc, argv);
    if (file == NULL || cert_path == NULL || (req == NULL) != (resp == NULL)) {
        lskvctl_fail(cmd, "need FILE and --service-cert (and both or neither of --request/--response)");
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    if (leftover(argc, argv, cmd))
        return EXIT_USAGE;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    char *pem = NULL;
    size_t pem_len;
    uint8_t *json = NULL;
    size_t json_len;
    cert_service *svc = NULL;
    struct arena a;
    arena_init(&a);
    int code = EXIT_USAGE;
    if (cert_read_file(cert_path, &pem, &pem_len, errmsg) != 0 ||
        cert_service_from_pem(pem, pem_len, &svc, errmsg) != 0 ||
        read_all(file, &json, &json_len, errmsg) != 0) {
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
    char hex[65];
    receipt_hex(root, 32, hex);
    printf("OK: leaf %" PRIu64 " of %" PRIu64 ", root %s, node %s, %s\n",
           r->tx_receipt->leaf_index, r->tx_receipt->tree_size, hex, r->node_id,
           req ? "claims match" : "claims not checked");
    code = 0;
out:
    arena_close(&a);
    cert_service_free(svc);
    free(pem);
    free(json);
    return code;
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
    if (dir == NULL || n_s == NULL) {
        lskvctl_fail(cmd, "need DIR and --entries N");
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
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
    if ((strcmp(a, "receipt") == 0 && strcmp(b, "get") == 0) || strcmp(a, "tx-status") == 0) {
        lskvctl_fail(a, "not yet wired: talking to lskvd over gRPC comes with the server "
                        "integration; use curl on /v3/receipt/get_receipt meanwhile");
        return EXIT_NOT_IMPLEMENTED;
    }
    lskvctl_fail(a, "unknown command");
    fputs(usage, stderr);
    return EXIT_USAGE;
}

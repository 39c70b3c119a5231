/* lskvctl anchor get, and the anchor helpers receipt get/verify and ledger
 * audit share (ledger/anchor.h, docs/ledger-format.md section 8). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/file.h"
#include "ledger/anchor.h"
#include "lskvctl.h"

int lskvctl_load_anchor(const char *path, const cert_service *svc, struct arena *a,
                        Lskvserverpb__SignedRoot **out, uint8_t root[32], char *errmsg)
{
    uint8_t *json = NULL;
    size_t len;
    int rv = file_read_all(path, &json, &len, errmsg);
    if (rv == 0)
        rv = anchor_from_json((const char *)json, len, a, out, errmsg);
    if (rv == 0)
        rv = anchor_verify(*out, svc, root, errmsg);
    if (rv != 0)
        errmsg_wrapf(errmsg, "anchor %s", path);
    free(json);
    return rv;
}

int lskvctl_consistency(const char *url, uint64_t from, uint64_t to,
                        Lskvserverpb__GetConsistencyProofResponse **out, char *errmsg)
{
    Lskvserverpb__GetConsistencyProofRequest req =
        LSKVSERVERPB__GET_CONSISTENCY_PROOF_REQUEST__INIT;
    req.from_size = from;
    req.to_size = to;
    uint8_t buf[64];
    size_t n = lskvserverpb__get_consistency_proof_request__pack(&req, buf);
    struct lskvctl_reply r;
    int rv = lskvctl_unary(url, "/etcdserverpb.Receipt/GetConsistencyProof", buf, n, &r, errmsg);
    if (rv != 0)
        return rv;
    if (r.grpc_status != 0) {
        errmsg_printf(errmsg, "GetConsistencyProof %llu -> %llu: grpc status %d: %s",
                      (unsigned long long)from, (unsigned long long)to, r.grpc_status,
                      r.grpc_message);
        free(r.msg);
        return r.grpc_status == 5 /* NOT_FOUND */ ? LSKV_ENOTFOUND : LSKV_EIO;
    }
    *out = lskvserverpb__get_consistency_proof_response__unpack(NULL, r.len, r.msg);
    free(r.msg);
    if (*out == NULL || (*out)->to == NULL || (from != 0 && (*out)->from == NULL)) {
        errmsg_printf(errmsg, "malformed GetConsistencyProofResponse");
        if (*out != NULL)
            lskvserverpb__get_consistency_proof_response__free_unpacked(*out, NULL);
        return LSKV_EIO;
    }
    return 0;
}

int cmd_anchor_get(int argc, char **argv)
{
    const char *cmd = "anchor get";
    const char *eps = lskvctl_opt(argc, argv, "--endpoints");
    const char *out_path = lskvctl_opt(argc, argv, "--out");
    char url[512], errmsg[LSKV_ERRMSG_SIZE] = "";
    snprintf(url, sizeof url, "%s", eps ? eps : "http://127.0.0.1:2379");
    char *comma = strchr(url, ',');
    if (comma != NULL)
        *comma = '\0';
    for (int i = 0; i < argc; i++) {
        if (argv[i] != NULL) {
            lskvctl_fail(cmd, "unexpected argument '%s'", argv[i]);
            return EXIT_USAGE;
        }
    }
    Lskvserverpb__GetConsistencyProofResponse *resp;
    if (lskvctl_consistency(url, 0, 0, &resp, errmsg) != 0) {
        lskvctl_fail(cmd, "%s", errmsg);
        return EXIT_USAGE;
    }
    char *js = anchor_to_json(resp->to);
    lskvserverpb__get_consistency_proof_response__free_unpacked(resp, NULL);
    if (js == NULL)
        return EXIT_USAGE;
    return lskvctl_emit(cmd, out_path, js);
}

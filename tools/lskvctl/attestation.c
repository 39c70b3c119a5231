/* lskvctl attestation verify: a report file against a policy and the key
 * it must bind (identity/attestation.h), with the report's fields printed
 * so an operator sees what a refused member sent. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/file.h"
#include "common/hex.h"
#include "identity/attestation.h"
#include "identity/cert.h"
#include "lskvctl.h"

/* The key digest from --key-digest HEX or the public key of --node-cert. */
static int key_digest(const char *hex, const char *cert_path, uint8_t out[ATTEST_DIGEST_BYTES],
                      char *errmsg)
{
    if (hex != NULL) {
        if (hex_decode(hex, out, ATTEST_DIGEST_BYTES) != 0) {
            errmsg_printf(errmsg, "--key-digest: want 64 hex digits");
            return LSKV_EINVAL;
        }
        return 0;
    }
    uint8_t *pem;
    size_t len;
    int rv = file_read_all(cert_path, &pem, &len, errmsg);
    if (rv != 0)
        return rv;
    rv = cert_key_digest_of_pem((const char *)pem, len, out);
    free(pem);
    if (rv != 0)
        errmsg_printf(errmsg, "%s: not a PEM certificate", cert_path);
    return rv;
}

int cmd_attestation_verify(int argc, char **argv)
{
    const char *cmd = "attestation verify";
    const char *policy_path = lskvctl_opt(argc, argv, "--policy");
    const char *hex = lskvctl_opt(argc, argv, "--key-digest");
    const char *cert_path = lskvctl_opt(argc, argv, "--node-cert");
    const char *file = lskvctl_positional(argc, argv);
    if (file == NULL || policy_path == NULL || (hex == NULL) == (cert_path == NULL)) {
        lskvctl_fail(cmd, "need FILE, --policy POLICY and one of --key-digest HEX or "
                          "--node-cert CERT");
        return EXIT_USAGE;
    }
    for (int i = 0; i < argc; i++)
        if (argv[i] != NULL) {
            lskvctl_fail(cmd, "unexpected argument '%s'", argv[i]);
            return EXIT_USAGE;
        }
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    struct attest_policy policy;
    uint8_t digest[ATTEST_DIGEST_BYTES];
    uint8_t *buf = NULL;
    size_t len = 0;
    if (attest_policy_load(policy_path, &policy, errmsg) != 0 ||
        key_digest(hex, cert_path, digest, errmsg) != 0 ||
        file_read_all(file, &buf, &len, errmsg) != 0) {
        lskvctl_fail(cmd, "%s", errmsg);
        return EXIT_USAGE;
    }
    struct attest_report r;
    if (attest_report_parse(buf, len, &r, errmsg) == 0) {
        char m[2 * ATTEST_MEASUREMENT_MAX_BYTES + 1], d[2 * ATTEST_DIGEST_BYTES + 1];
        hex_encode(r.measurement.bytes, r.measurement.len, m);
        hex_encode(r.report_data, ATTEST_DIGEST_BYTES, d);
        printf("format_version: %u\nkind: %s (%d)\nmeasurement: %s\nreport_data: %s\n"
               "evidence: %zu bytes\n", r.format_version, attest_kind_name(r.kind), r.kind, m,
               d, r.evidence_len);
    }
    int rv = attest_report_verify(buf, len, &policy, digest, NULL, errmsg);
    free(buf);
    if (rv != 0) {
        printf("verdict: refused\n");
        lskvctl_fail(cmd, "%s: %s", file, errmsg);
        return EXIT_CHECK_FAILED;
    }
    printf("verdict: accepted\n");
    return 0;
}

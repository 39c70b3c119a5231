/* Attestation reports (DESIGN.md section 5): what a member shows before the
 * cluster trusts it with its secrets, and the cluster's policy for them.
 *
 * A report binds a node public key to the code that holds it:
 *   report_data = SHA-256 of the node public key (SubjectPublicKeyInfo DER,
 *                 the bytes of the node id, cert_key_digest_of_pem)
 *   measurement = what runs: VIRTUAL, SHA-256 of the lskvd binary
 *                 (/proc/self/exe, computed once per process)
 * in a versioned protobuf (proto/lskvpeer.proto AttestationReport). A
 * hardware kind (SEV-SNP, SGX) fills evidence with the platform's signed
 * report; this module knows how to verify VIRTUAL only and refuses the
 * others as not implemented. A virtual report is signed by nobody: anyone
 * can write one, so accepting virtual reports means trusting the network
 * and the peer's operator (as CCF's virtual mode); the policy says whether
 * a cluster does.
 *
 * Policy file (--attestation-policy FILE), JSON:
 *   {"accept_virtual": true, "measurements": ["<64 hex>", ...]}
 * accept_virtual defaults to false; measurements (1 to
 * ATTEST_MAX_MEASUREMENTS hex digests of 32 to 64 bytes) defaults to this
 * binary's own measurement; any other key is refused. Without the flag the
 * policy is attest_policy_default: virtual reports of this very binary.
 *
 * Refusals, each with its errmsg (verify):
 *   LSKV_ECORRUPT        malformed bytes, sizes out of bounds
 *   LSKV_EFORMAT         format_version is not ATTEST_FORMAT_VERSION
 *   LSKV_EUNIMPLEMENTED  a kind this build cannot verify (SEV-SNP, SGX, unknown)
 *   -EACCES              virtual not allowed; measurement not accepted;
 *                        report_data does not bind the expected key */
#ifndef LSKV_IDENTITY_ATTESTATION_H
#define LSKV_IDENTITY_ATTESTATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ATTEST_FORMAT_VERSION 1
#define ATTEST_DIGEST_BYTES 32            /* report_data, a virtual measurement */
#define ATTEST_MEASUREMENT_MAX_BYTES 64   /* SEV-SNP's is 48 */
#define ATTEST_MAX_MEASUREMENTS 64        /* accepted by one policy */
#define ATTEST_REPORT_MAX_BYTES (64 * 1024) /* a report, evidence included */
#define ATTEST_POLICY_MAX_BYTES (64 * 1024) /* a policy file */

enum attest_kind { /* = lskvpeerpb AttestationKind */
    ATTEST_KIND_VIRTUAL = 1,
    ATTEST_KIND_SEV_SNP = 2,
    ATTEST_KIND_SGX = 3,
};

struct attest_measurement {
    uint8_t bytes[ATTEST_MEASUREMENT_MAX_BYTES];
    size_t len; /* 1..ATTEST_MEASUREMENT_MAX_BYTES */
};

struct attest_policy {
    bool accept_virtual;                 /* virtual reports may be accepted */
    size_t n_measurements;               /* 1..ATTEST_MAX_MEASUREMENTS */
    struct attest_measurement measurements[ATTEST_MAX_MEASUREMENTS];
};

/* A decoded report (a copy: the evidence itself is not kept, only its size). */
struct attest_report {
    uint32_t format_version;
    int kind;                            /* enum attest_kind, or what the bytes said */
    struct attest_measurement measurement;
    uint8_t report_data[ATTEST_DIGEST_BYTES];
    size_t evidence_len;
};

/* This binary's measurement: SHA-256 of /proc/self/exe, read once per
 * process (later calls return the first result; thread-safe).
 * Errors: negated errno (cannot read the binary), LSKV_EIO. */
int attest_self_measurement(uint8_t out[ATTEST_DIGEST_BYTES], char *errmsg);

/* The policy without --attestation-policy: virtual reports whose
 * measurement is this binary's. Errors: as attest_self_measurement. */
int attest_policy_default(struct attest_policy *p, char *errmsg);
/* Parses a policy (format above; bounded by ATTEST_POLICY_MAX_BYTES).
 * Errors: LSKV_EINVAL (errmsg names the key and the rule), or as
 * attest_self_measurement when measurements is absent. */
int attest_policy_parse(const char *json, size_t len, struct attest_policy *p, char *errmsg);
/* The same from a file. Errors: as attest_policy_parse, negated errno
 * (errmsg names the file). */
int attest_policy_load(const char *path, struct attest_policy *p, char *errmsg);

/* Encodes r as a report (r->evidence_len must be 0: no evidence yet) into
 * *out (malloc'ed, caller frees). Errors: LSKV_EINVAL (a field out of
 * bounds), LSKV_ENOMEM. */
int attest_report_encode(const struct attest_report *r, uint8_t **out, size_t *len);
/* This process's virtual report for the node key whose SPKI digest is
 * key_digest (*out malloc'ed, caller frees).
 * Errors: as attest_self_measurement, LSKV_ENOMEM. */
int attest_report_make(const uint8_t key_digest[ATTEST_DIGEST_BYTES], uint8_t **out,
                       size_t *len, char *errmsg);
/* Decodes report bytes (at most ATTEST_REPORT_MAX_BYTES) without judging
 * them beyond their shape: what lskvctl prints.
 * Errors: LSKV_ECORRUPT (malformed, a field of the wrong size). */
int attest_report_parse(const uint8_t *buf, size_t len, struct attest_report *r,
                        char *errmsg);
/* Verifies report bytes against policy p and the key the report must bind
 * (expected_key_digest: SHA-256 of the SPKI DER the peer's TLS proved).
 * r (may be NULL) gets the decoded report when it parses, verdict aside.
 * Returns 0 when accepted; refusals as listed at the top of this file. */
int attest_report_verify(const uint8_t *buf, size_t len, const struct attest_policy *p,
                         const uint8_t expected_key_digest[ATTEST_DIGEST_BYTES],
                         struct attest_report *r, char *errmsg);

/* "virtual", "sev-snp", "sgx" or "unknown". */
const char *attest_kind_name(int kind);

#endif

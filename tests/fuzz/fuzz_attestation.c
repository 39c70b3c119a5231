/* Fuzzes attestation report bytes (identity/attestation.c): parse, then
 * verify against a fixed policy (virtual, measurement 0x11 * 32) and key
 * digest (0x22 * 32); the seed "valid" passes both. Any bytes must give 0
 * or one of the documented refusals, never a crash or an overread; an
 * accepted report must be exactly what the policy and key allow, and must
 * encode back to bytes that are accepted too. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "identity/attestation.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct attest_policy p = {.accept_virtual = true, .n_measurements = 1};
    memset(p.measurements[0].bytes, 0x11, ATTEST_DIGEST_BYTES);
    p.measurements[0].len = ATTEST_DIGEST_BYTES;
    uint8_t key[ATTEST_DIGEST_BYTES];
    memset(key, 0x22, sizeof key);
    uint8_t *copy = malloc(size ? size : 1); /* exact size: ASan sees overreads */
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    struct attest_report r;
    int parsed = attest_report_parse(copy, size, &r, errmsg);
    if (parsed != 0 && parsed != LSKV_ECORRUPT)
        abort();
    int rv = attest_report_verify(copy, size, &p, key, &r, errmsg);
    if (rv != 0 && rv != LSKV_ECORRUPT && rv != LSKV_EFORMAT && rv != LSKV_EUNIMPLEMENTED &&
        rv != -EACCES)
        abort();
    if ((rv == 0 || rv == -EACCES) && parsed != 0)
        abort();
    if (rv == 0) {
        if (r.format_version != ATTEST_FORMAT_VERSION || r.kind != ATTEST_KIND_VIRTUAL ||
            r.measurement.len != ATTEST_DIGEST_BYTES ||
            memcmp(r.measurement.bytes, p.measurements[0].bytes, ATTEST_DIGEST_BYTES) != 0 ||
            memcmp(r.report_data, key, sizeof key) != 0 || r.evidence_len != 0)
            abort();
        uint8_t *again;
        size_t len;
        if (attest_report_encode(&r, &again, &len) != 0 ||
            attest_report_verify(again, len, &p, key, NULL, errmsg) != 0)
            abort();
        free(again);
        /* The same report for another key, or under a policy without
         * virtual reports, is refused. */
        key[0] ^= 1;
        if (attest_report_verify(copy, size, &p, key, NULL, errmsg) != -EACCES)
            abort();
        key[0] ^= 1;
        p.accept_virtual = false;
        if (attest_report_verify(copy, size, &p, key, NULL, errmsg) != -EACCES)
            abort();
    }
    free(copy);
    return 0;
}

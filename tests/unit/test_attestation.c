/* Attestation reports and policy (identity/attestation.h): each refusal
 * gives its own code and message, and a report is accepted only by a policy
 * that allows it, for the key it binds. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/err.h"
#include "common/file.h"
#include "common/hex.h"
#include "crypto/hash.h"
#include "identity/attestation.h"
#include "runner.h"

static const uint8_t KEY_A[ATTEST_DIGEST_BYTES] = {0xaa, 1, 2, 3};
static const uint8_t KEY_B[ATTEST_DIGEST_BYTES] = {0xbb, 1, 2, 3};

static void policy_of(struct attest_policy *p, bool accept_virtual, const uint8_t *m,
                      size_t len)
{
    memset(p, 0, sizeof *p);
    p->accept_virtual = accept_virtual;
    p->n_measurements = 1;
    memcpy(p->measurements[0].bytes, m, len);
    p->measurements[0].len = len;
}

/* A report with every field chosen by the test. */
static void encode(uint32_t version, int kind, const uint8_t *m, size_t mlen,
                   const uint8_t key[ATTEST_DIGEST_BYTES], uint8_t **out, size_t *len)
{
    struct attest_report r = {.format_version = version, .kind = kind};
    memcpy(r.measurement.bytes, m, mlen);
    r.measurement.len = mlen;
    memcpy(r.report_data, key, ATTEST_DIGEST_BYTES);
    ASSERT_EQ(attest_report_encode(&r, out, len), 0);
}

TEST(attestation, self_measurement_is_the_sha256_of_this_binary)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    uint8_t m[ATTEST_DIGEST_BYTES], again[ATTEST_DIGEST_BYTES], want[HASH_BYTES];
    ASSERT_EQ(attest_self_measurement(m, errmsg), 0);
    uint8_t *exe;
    size_t len;
    ASSERT_EQ(file_read_all("/proc/self/exe", &exe, &len, errmsg), 0);
    hash_sha256(exe, len, want);
    free(exe);
    ASSERT_MEM_EQ(m, want, sizeof want);
    ASSERT_EQ(attest_self_measurement(again, errmsg), 0);
    ASSERT_MEM_EQ(m, again, sizeof m);
}

TEST(attestation, own_report_verifies_under_the_default_policy)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    struct attest_policy p;
    ASSERT_EQ(attest_policy_default(&p, errmsg), 0);
    ASSERT(p.accept_virtual);
    ASSERT_EQ(p.n_measurements, 1);
    uint8_t *buf, self[ATTEST_DIGEST_BYTES];
    size_t len;
    ASSERT_EQ(attest_report_make(KEY_A, &buf, &len, errmsg), 0);
    struct attest_report r;
    ASSERT_EQ(attest_report_verify(buf, len, &p, KEY_A, &r, errmsg), 0);
    ASSERT_EQ(r.format_version, ATTEST_FORMAT_VERSION);
    ASSERT_EQ(r.kind, ATTEST_KIND_VIRTUAL);
    ASSERT_EQ(r.measurement.len, ATTEST_DIGEST_BYTES);
    ASSERT_EQ(attest_self_measurement(self, errmsg), 0);
    ASSERT_MEM_EQ(r.measurement.bytes, self, sizeof self);
    ASSERT_MEM_EQ(r.report_data, KEY_A, sizeof KEY_A);
    ASSERT_EQ(r.evidence_len, 0);
    ASSERT_STR_EQ(attest_kind_name(r.kind), "virtual");
    free(buf);
}

TEST(attestation, report_for_another_key_is_refused)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    struct attest_policy p;
    ASSERT_EQ(attest_policy_default(&p, errmsg), 0);
    uint8_t *buf;
    size_t len;
    ASSERT_EQ(attest_report_make(KEY_B, &buf, &len, errmsg), 0);
    ASSERT_EQ(attest_report_verify(buf, len, &p, KEY_A, NULL, errmsg), -EACCES);
    ASSERT(strstr(errmsg, "report_data does not bind the key") != NULL);
    free(buf);
}

TEST(attestation, other_measurement_is_refused_and_named)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    uint8_t other[ATTEST_DIGEST_BYTES], self[ATTEST_DIGEST_BYTES];
    memset(other, 0x5e, sizeof other);
    ASSERT_EQ(attest_self_measurement(self, errmsg), 0);
    struct attest_policy p;
    policy_of(&p, true, self, sizeof self);
    uint8_t *buf;
    size_t len;
    encode(ATTEST_FORMAT_VERSION, ATTEST_KIND_VIRTUAL, other, sizeof other, KEY_A, &buf, &len);
    ASSERT_EQ(attest_report_verify(buf, len, &p, KEY_A, NULL, errmsg), -EACCES);
    ASSERT(strstr(errmsg, "measurement 5e5e5e") != NULL);
    ASSERT(strstr(errmsg, "is not accepted by the attestation policy") != NULL);
    /* The same report passes once the policy lists it (the second entry). */
    p.measurements[1] = p.measurements[0];
    memcpy(p.measurements[1].bytes, other, sizeof other);
    p.n_measurements = 2;
    ASSERT_EQ(attest_report_verify(buf, len, &p, KEY_A, NULL, errmsg), 0);
    free(buf);
}

TEST(attestation, virtual_not_allowed_is_refused)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    uint8_t self[ATTEST_DIGEST_BYTES];
    ASSERT_EQ(attest_self_measurement(self, errmsg), 0);
    struct attest_policy p;
    policy_of(&p, false, self, sizeof self);
    uint8_t *buf;
    size_t len;
    ASSERT_EQ(attest_report_make(KEY_A, &buf, &len, errmsg), 0);
    ASSERT_EQ(attest_report_verify(buf, len, &p, KEY_A, NULL, errmsg), -EACCES);
    ASSERT(strstr(errmsg, "virtual reports are not allowed") != NULL);
    free(buf);
}

TEST(attestation, wrong_version_and_kind_are_refused_before_anything_else)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    uint8_t self[ATTEST_DIGEST_BYTES];
    ASSERT_EQ(attest_self_measurement(self, errmsg), 0);
    struct attest_policy p;
    policy_of(&p, true, self, sizeof self);
    uint8_t *buf;
    size_t len;
    encode(2, ATTEST_KIND_VIRTUAL, self, sizeof self, KEY_A, &buf, &len);
    ASSERT_EQ(attest_report_verify(buf, len, &p, KEY_A, NULL, errmsg), LSKV_EFORMAT);
    ASSERT(strstr(errmsg, "format version 2, this build reads 1") != NULL);
    free(buf);
    encode(0, ATTEST_KIND_VIRTUAL, self, sizeof self, KEY_A, &buf, &len);
    ASSERT_EQ(attest_report_verify(buf, len, &p, KEY_A, NULL, errmsg), LSKV_EFORMAT);
    free(buf);
    encode(ATTEST_FORMAT_VERSION, ATTEST_KIND_SEV_SNP, self, sizeof self, KEY_A, &buf, &len);
    ASSERT_EQ(attest_report_verify(buf, len, &p, KEY_A, NULL, errmsg), LSKV_EUNIMPLEMENTED);
    ASSERT(strstr(errmsg, "kind sev-snp (2) cannot be verified") != NULL);
    free(buf);
    encode(ATTEST_FORMAT_VERSION, 77, self, sizeof self, KEY_A, &buf, &len);
    ASSERT_EQ(attest_report_verify(buf, len, &p, KEY_A, NULL, errmsg), LSKV_EUNIMPLEMENTED);
    ASSERT(strstr(errmsg, "kind unknown (77)") != NULL);
    free(buf);
    /* A 48-byte (hardware-sized) measurement in a virtual report. */
    uint8_t m48[48] = {1};
    encode(ATTEST_FORMAT_VERSION, ATTEST_KIND_VIRTUAL, m48, sizeof m48, KEY_A, &buf, &len);
    ASSERT_EQ(attest_report_verify(buf, len, &p, KEY_A, NULL, errmsg), LSKV_ECORRUPT);
    free(buf);
}

TEST(attestation, truncated_and_garbage_bytes_are_malformed)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    struct attest_policy p;
    ASSERT_EQ(attest_policy_default(&p, errmsg), 0);
    uint8_t *buf;
    size_t len;
    ASSERT_EQ(attest_report_make(KEY_A, &buf, &len, errmsg), 0);
    /* Every proper prefix is refused: cut inside a field it is malformed,
     * cut between fields a field is missing (wrong size). */
    for (size_t n = 0; n < len; n++) {
        int rv = attest_report_verify(buf, n, &p, KEY_A, NULL, errmsg);
        if (rv != LSKV_ECORRUPT && rv != LSKV_EFORMAT && rv != LSKV_EUNIMPLEMENTED)
            TEST_FAIL("prefix of %zu bytes: %d (%s)", n, rv, errmsg);
    }
    const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x80};
    ASSERT_EQ(attest_report_verify(garbage, sizeof garbage, &p, KEY_A, NULL, errmsg),
              LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, "malformed") != NULL);
    /* Evidence in a virtual report. */
    uint8_t *bigger = malloc(len + 4);
    memcpy(bigger, buf, len);
    memcpy(bigger + len, "\x2a\x02hi", 4); /* field 5, 2 bytes */
    ASSERT_EQ(attest_report_verify(bigger, len + 4, &p, KEY_A, NULL, errmsg), LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, "no evidence") != NULL);
    free(bigger);
    /* Bounded before decoding. */
    uint8_t *huge = calloc(1, ATTEST_REPORT_MAX_BYTES + 1);
    ASSERT_EQ(attest_report_verify(huge, ATTEST_REPORT_MAX_BYTES + 1, &p, KEY_A, NULL, errmsg),
              LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, "at most") != NULL);
    free(huge);
    free(buf);
}

TEST(attestation, policy_json_parses_and_refuses_precisely)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    struct attest_policy p;
    char text[400], hex[65];
    uint8_t m[ATTEST_DIGEST_BYTES], self[ATTEST_DIGEST_BYTES];
    memset(m, 0xab, sizeof m);
    hex_encode(m, sizeof m, hex);
    snprintf(text, sizeof text, "{\"accept_virtual\": true, \"measurements\": [\"%s\"]}", hex);
    ASSERT_EQ(attest_policy_parse(text, strlen(text), &p, errmsg), 0);
    ASSERT(p.accept_virtual);
    ASSERT_EQ(p.n_measurements, 1);
    ASSERT_EQ(p.measurements[0].len, 32);
    ASSERT_MEM_EQ(p.measurements[0].bytes, m, sizeof m);

    /* accept_virtual defaults to false, measurements to this binary's. */
    ASSERT_EQ(attest_policy_parse("{}", 2, &p, errmsg), 0);
    ASSERT(!p.accept_virtual);
    ASSERT_EQ(p.n_measurements, 1);
    ASSERT_EQ(attest_self_measurement(self, errmsg), 0);
    ASSERT_MEM_EQ(p.measurements[0].bytes, self, sizeof self);

    static const struct {
        const char *json, *err;
    } bad[] = {
        {"[]", "not a JSON object"},
        {"{", "not a JSON object"},
        {"{\"accept_virtual\": 1}", "\"accept_virtual\": want true or false"},
        {"{\"accept_virtual\": true, \"accept_virtual\": false}", "not a JSON object"},
        {"{\"measurement\": []}", "unknown key \"measurement\""},
        {"{\"measurements\": []}", "want an array of 1 to 64"},
        {"{\"measurements\": \"ab\"}", "want an array of 1 to 64"},
        {"{\"measurements\": [\"abcd\"]}", "\"measurements\"[0]: want 64 to 128 hex digits"},
        {"{\"measurements\": [7]}", "\"measurements\"[0]"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errmsg[0] = '\0';
        ASSERT_EQ(attest_policy_parse(bad[i].json, strlen(bad[i].json), &p, errmsg),
                  LSKV_EINVAL);
        if (strstr(errmsg, bad[i].err) == NULL)
            TEST_FAIL("%s: errmsg \"%s\", want \"%s\"", bad[i].json, errmsg, bad[i].err);
    }
    /* A 65th measurement, and a non-hex digit. */
    char big[65 * 70 + 40];
    size_t n = (size_t)snprintf(big, sizeof big, "{\"measurements\": [");
    for (int i = 0; i < 65; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "%s\"%s\"", i ? "," : "", hex);
    snprintf(big + n, sizeof big - n, "]}");
    ASSERT_EQ(attest_policy_parse(big, strlen(big), &p, errmsg), LSKV_EINVAL);
    hex[10] = 'g';
    snprintf(text, sizeof text, "{\"measurements\": [\"%s\"]}", hex);
    ASSERT_EQ(attest_policy_parse(text, strlen(text), &p, errmsg), LSKV_EINVAL);
}

TEST(attestation, policy_file_names_itself_in_errors)
{
    char errmsg[LSKV_ERRMSG_SIZE] = "", path[512];
    struct attest_policy p;
    snprintf(path, sizeof path, "%s/policy.json", test_tmpdir());
    ASSERT_EQ(attest_policy_load(path, &p, errmsg), -ENOENT);
    const char *text = "{\"accept_virtual\": false, \"extra\": 1}";
    ASSERT_EQ(file_write_durable(path, text, strlen(text), 0644, errmsg), 0);
    ASSERT_EQ(attest_policy_load(path, &p, errmsg), LSKV_EINVAL);
    ASSERT(strstr(errmsg, path) == errmsg);
    ASSERT(strstr(errmsg, "unknown key \"extra\"") != NULL);
    text = "{\"accept_virtual\": true}";
    ASSERT_EQ(file_write_durable(path, text, strlen(text), 0644, errmsg), 0);
    ASSERT_EQ(attest_policy_load(path, &p, errmsg), 0);
    ASSERT(p.accept_virtual);
}

/* Attestation reports and policy (see attestation.h).
 *
 * Why the checks come in this order: the version first (a later format may
 * mean anything), then the kind (only then do the other fields have a
 * meaning), then the policy on the kind and measurement, and the key
 * binding last, so that a report from an unaccepted binary is named as such
 * even when it binds another key too. */
#include "identity/attestation.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/file.h"
#include "common/hex.h"
#include "proto/lskvpeer.pb-c.h"

/* --- This binary's measurement --------------------------------------------- */

static struct {
    pthread_once_t once;
    int rv;
    uint8_t digest[ATTEST_DIGEST_BYTES];
    char errmsg[LSKV_ERRMSG_SIZE];
} self = {.once = PTHREAD_ONCE_INIT};

static void measure_self(void)
{
    const char *path = "/proc/self/exe";
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        self.rv = -errno;
        errmsg_printf(self.errmsg, "%s: open: %s", path, strerror(errno));
        return;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    self.rv = LSKV_EIO;
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        errmsg_printf(self.errmsg, "%s: no SHA-256", path);
        goto out;
    }
    static uint8_t buf[64 * 1024];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            self.rv = -errno;
            errmsg_printf(self.errmsg, "%s: read: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1)
            goto out;
    }
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(ctx, self.digest, &len) == 1 && len == ATTEST_DIGEST_BYTES)
        self.rv = 0;
out:
    EVP_MD_CTX_free(ctx);
    close(fd);
}

int attest_self_measurement(uint8_t out[ATTEST_DIGEST_BYTES], char *errmsg)
{
    pthread_once(&self.once, measure_self);
    if (self.rv != 0) {
        errmsg_printf(errmsg, "measuring this binary: %s", self.errmsg);
        return self.rv;
    }
    memcpy(out, self.digest, ATTEST_DIGEST_BYTES);
    return 0;
}

const char *attest_kind_name(int kind)
{
    switch (kind) {
    case ATTEST_KIND_VIRTUAL:
        return "virtual";
    case ATTEST_KIND_SEV_SNP:
        return "sev-snp";
    case ATTEST_KIND_SGX:
        return "sgx";
    default:
        return "unknown";
    }
}

/* --- Policy ------------------------------------------------------------------ */

static int self_measurement(struct attest_measurement *m, char *errmsg)
{
    m->len = ATTEST_DIGEST_BYTES;
    return attest_self_measurement(m->bytes, errmsg);
}

int attest_policy_default(struct attest_policy *p, char *errmsg)
{
    memset(p, 0, sizeof *p);
    p->accept_virtual = true;
    p->n_measurements = 1;
    return self_measurement(&p->measurements[0], errmsg);
}

static int parse_measurements(json_t *arr, struct attest_policy *p, char *errmsg)
{
    if (!json_is_array(arr) || json_array_size(arr) == 0 ||
        json_array_size(arr) > ATTEST_MAX_MEASUREMENTS) {
        errmsg_printf(errmsg, "\"measurements\": want an array of 1 to %d hex strings",
                      ATTEST_MAX_MEASUREMENTS);
        return LSKV_EINVAL;
    }
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        const char *hex = json_string_value(v);
        size_t n = hex ? strlen(hex) : 0;
        struct attest_measurement *m = &p->measurements[i];
        if (hex == NULL || n % 2 != 0 || n < 2 * ATTEST_DIGEST_BYTES ||
            n > 2 * ATTEST_MEASUREMENT_MAX_BYTES || hex_decode(hex, m->bytes, n / 2) != 0) {
            errmsg_printf(errmsg, "\"measurements\"[%zu]: want %d to %d hex digits", i,
                          2 * ATTEST_DIGEST_BYTES, 2 * ATTEST_MEASUREMENT_MAX_BYTES);
            return LSKV_EINVAL;
        }
        m->len = n / 2;
    }
    p->n_measurements = json_array_size(arr);
    return 0;
}

int attest_policy_parse(const char *text, size_t len, struct attest_policy *p, char *errmsg)
{
    memset(p, 0, sizeof *p);
    if (len > ATTEST_POLICY_MAX_BYTES) {
        errmsg_printf(errmsg, "policy of %zu bytes, at most %d", len, ATTEST_POLICY_MAX_BYTES);
        return LSKV_EINVAL;
    }
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL || !json_is_object(root)) {
        errmsg_printf(errmsg, "not a JSON object%s%s", root ? "" : ": ",
                      root ? "" : jerr.text);
        json_decref(root);
        return LSKV_EINVAL;
    }
    int rv = 0;
    const char *key;
    json_t *v;
    json_t *measurements = NULL;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "accept_virtual") == 0) {
            if (!json_is_boolean(v)) {
                errmsg_printf(errmsg, "\"accept_virtual\": want true or false");
                rv = LSKV_EINVAL;
                break;
            }
            p->accept_virtual = json_is_true(v);
        } else if (strcmp(key, "measurements") == 0) {
            measurements = v;
        } else {
            errmsg_printf(errmsg, "unknown key \"%.64s\" (want accept_virtual, measurements)",
                          key);
            rv = LSKV_EINVAL;
            break;
        }
    }
    if (rv == 0) {
        if (measurements != NULL) {
            rv = parse_measurements(measurements, p, errmsg);
        } else {
            p->n_measurements = 1;
            rv = self_measurement(&p->measurements[0], errmsg);
        }
    }
    json_decref(root);
    return rv;
}

int attest_policy_load(const char *path, struct attest_policy *p, char *errmsg)
{
    uint8_t *buf;
    size_t len;
    int rv = file_read_all(path, &buf, &len, errmsg);
    if (rv != 0)
        return rv;
    rv = attest_policy_parse((const char *)buf, len, p, errmsg);
    free(buf);
    if (rv != 0)
        errmsg_wrapf(errmsg, "%s", path);
    return rv;
}

/* --- Reports ----------------------------------------------------------------- */

int attest_report_encode(const struct attest_report *r, uint8_t **out, size_t *len)
{
    if (r->measurement.len == 0 || r->measurement.len > ATTEST_MEASUREMENT_MAX_BYTES ||
        r->evidence_len != 0)
        return LSKV_EINVAL;
    Lskvpeerpb__AttestationReport m = LSKVPEERPB__ATTESTATION_REPORT__INIT;
    m.format_version = r->format_version;
    m.kind = (Lskvpeerpb__AttestationKind)r->kind;
    m.measurement.data = (uint8_t *)r->measurement.bytes;
    m.measurement.len = r->measurement.len;
    m.report_data.data = (uint8_t *)r->report_data;
    m.report_data.len = ATTEST_DIGEST_BYTES;
    size_t n = lskvpeerpb__attestation_report__get_packed_size(&m);
    *out = malloc(n ? n : 1);
    if (*out == NULL)
        return LSKV_ENOMEM;
    *len = lskvpeerpb__attestation_report__pack(&m, *out);
    return 0;
}

int attest_report_make(const uint8_t key_digest[ATTEST_DIGEST_BYTES], uint8_t **out,
                       size_t *len, char *errmsg)
{
    struct attest_report r = {.format_version = ATTEST_FORMAT_VERSION,
                              .kind = ATTEST_KIND_VIRTUAL};
    int rv = self_measurement(&r.measurement, errmsg);
    if (rv != 0)
        return rv;
    memcpy(r.report_data, key_digest, ATTEST_DIGEST_BYTES);
    return attest_report_encode(&r, out, len);
}

int attest_report_parse(const uint8_t *buf, size_t len, struct attest_report *r,
                        char *errmsg)
{
    memset(r, 0, sizeof *r);
    if (len > ATTEST_REPORT_MAX_BYTES) {
        errmsg_printf(errmsg, "attestation report of %zu bytes, at most %d", len,
                      ATTEST_REPORT_MAX_BYTES);
        return LSKV_ECORRUPT;
    }
    Lskvpeerpb__AttestationReport *m = lskvpeerpb__attestation_report__unpack(NULL, len, buf);
    if (m == NULL) {
        errmsg_printf(errmsg, "attestation report: malformed");
        return LSKV_ECORRUPT;
    }
    int rv = LSKV_ECORRUPT;
    r->format_version = m->format_version;
    r->kind = (int)m->kind;
    r->evidence_len = m->evidence.len;
    if (m->measurement.len == 0 || m->measurement.len > ATTEST_MEASUREMENT_MAX_BYTES) {
        errmsg_printf(errmsg, "attestation report: measurement of %zu bytes, want 1 to %d",
                      m->measurement.len, ATTEST_MEASUREMENT_MAX_BYTES);
    } else if (m->report_data.len != ATTEST_DIGEST_BYTES) {
        errmsg_printf(errmsg, "attestation report: report_data of %zu bytes, want %d",
                      m->report_data.len, ATTEST_DIGEST_BYTES);
    } else {
        memcpy(r->measurement.bytes, m->measurement.data, m->measurement.len);
        r->measurement.len = m->measurement.len;
        memcpy(r->report_data, m->report_data.data, ATTEST_DIGEST_BYTES);
        rv = 0;
    }
    lskvpeerpb__attestation_report__free_unpacked(m, NULL);
    return rv;
}

static bool measurement_accepted(const struct attest_policy *p,
                                 const struct attest_measurement *m)
{
    for (size_t i = 0; i < p->n_measurements && i < ATTEST_MAX_MEASUREMENTS; i++)
        if (p->measurements[i].len == m->len &&
            memcmp(p->measurements[i].bytes, m->bytes, m->len) == 0)
            return true;
    return false;
}

int attest_report_verify(const uint8_t *buf, size_t len, const struct attest_policy *p,
                         const uint8_t expected_key_digest[ATTEST_DIGEST_BYTES],
                         struct attest_report *out, char *errmsg)
{
    struct attest_report local;
    struct attest_report *r = out ? out : &local;
    int rv = attest_report_parse(buf, len, r, errmsg);
    if (rv != 0)
        return rv;
    if (r->format_version != ATTEST_FORMAT_VERSION) {
        errmsg_printf(errmsg, "attestation report: format version %u, this build reads %d",
                      r->format_version, ATTEST_FORMAT_VERSION);
        return LSKV_EFORMAT;
    }
    if (r->kind != ATTEST_KIND_VIRTUAL) {
        errmsg_printf(errmsg, "attestation report: kind %s (%d) cannot be verified by this "
                      "build (virtual only)", attest_kind_name(r->kind), r->kind);
        return LSKV_EUNIMPLEMENTED;
    }
    if (r->evidence_len != 0 || r->measurement.len != ATTEST_DIGEST_BYTES) {
        errmsg_printf(errmsg, "attestation report: a virtual report has a %d-byte measurement "
                      "and no evidence (has %zu and %zu bytes)", ATTEST_DIGEST_BYTES,
                      r->measurement.len, r->evidence_len);
        return LSKV_ECORRUPT;
    }
    if (!p->accept_virtual) {
        errmsg_printf(errmsg, "attestation report: virtual reports are not allowed by the "
                      "attestation policy");
        return -EACCES;
    }
    if (!measurement_accepted(p, &r->measurement)) {
        char hex[2 * ATTEST_MEASUREMENT_MAX_BYTES + 1];
        hex_encode(r->measurement.bytes, r->measurement.len, hex);
        errmsg_printf(errmsg, "attestation report: measurement %s is not accepted by the "
                      "attestation policy", hex);
        return -EACCES;
    }
    if (memcmp(r->report_data, expected_key_digest, ATTEST_DIGEST_BYTES) != 0) {
        errmsg_printf(errmsg, "attestation report: report_data does not bind the key the "
                      "peer proved (not the SHA-256 of its public key)");
        return -EACCES;
    }
    return 0;
}

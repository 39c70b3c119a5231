/* Fuzzes the join exchange's parsers (identity/join.c). The first byte
 * chooses what the rest is:
 *   0  a JoinRequest from a peer whose TLS key is a fixed other key
 *   1  a JoinRequest from a peer whose TLS key is the one the request
 *      claims (so a well-formed request reaches the report check, and with
 *      a report of measurement 0x11 * 32 binding its key, is admitted)
 *   2  a JoinResponse, opened by a joiner with a fresh key
 * Any bytes must give an error or (1) an admission, never a crash or an
 * overread; a refusal must carry no secret, and a joiner that refuses a
 * response must keep nothing. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "identity/join.h"
#include "proto/lskvpeer.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct {
    bool ready;
    cert_service *svc;
    struct join_key founder, joiner;
    uint8_t data_key[JOIN_SECRET_BYTES], ledger_secret[JOIN_SECRET_BYTES];
    struct attest_policy policy;
    uint8_t *report;
    size_t report_len;
    struct join_founder f;
} fz;

/* An existing cluster's membership: one member added at this URL, not
 * started (admits it with id 4). */
static int admit_existing(void *arg, char *const *peer_urls, size_t n, const char *name,
                          struct join_admitted *out, char *errmsg)
{
    (void)arg;
    (void)name;
    if (n != 1 || strcmp(peer_urls[0], "http://10.0.0.4:2380") != 0) {
        errmsg_printf(errmsg, "not added");
        return LSKV_EMEMBERNOTFOUND;
    }
    out->member_id = 4;
    out->n_members = 2;
    out->ids[0] = 1;
    out->peer_urls[0] = "http://10.0.0.1:2380";
    out->ids[1] = 4;
    out->peer_urls[1] = peer_urls[0];
    return 0;
}

static void setup(void)
{
    char errmsg[LSKV_ERRMSG_SIZE];
    if (cert_service_new("lskv service fuzz", &fz.svc, errmsg) != 0 ||
        join_key_new(1, &fz.founder, errmsg) != 0 || join_key_new(2, &fz.joiner, errmsg) != 0)
        abort();
    memset(fz.data_key, 0xd7, sizeof fz.data_key);
    memset(fz.ledger_secret, 0x5c, sizeof fz.ledger_secret);
    fz.policy.accept_virtual = true;
    fz.policy.n_measurements = 1;
    memset(fz.policy.measurements[0].bytes, 0x11, ATTEST_DIGEST_BYTES);
    fz.policy.measurements[0].len = ATTEST_DIGEST_BYTES;
    struct attest_report r = {.format_version = ATTEST_FORMAT_VERSION,
                              .kind = ATTEST_KIND_VIRTUAL,
                              .measurement = fz.policy.measurements[0]};
    memcpy(r.report_data, fz.founder.digest, CERT_DIGEST_BYTES);
    if (attest_report_encode(&r, &fz.report, &fz.report_len) != 0)
        abort();
    fz.f = (struct join_founder){.policy = &fz.policy, .service = fz.svc,
                                 .data_key = fz.data_key, .ledger_secret = fz.ledger_secret,
                                 .cluster_id = 0x1122334455667788ull, .report = fz.report,
                                 .report_len = fz.report_len,
                                 .admit_existing = admit_existing};
    fz.ready = true;
}

static bool has(const uint8_t *buf, size_t len, const uint8_t *secret)
{
    return memmem(buf, len, secret, JOIN_SECRET_BYTES) != NULL;
}

static bool all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fz.ready)
        setup();
    if (size == 0)
        return 0;
    int mode = data[0] % 3;
    size--;
    uint8_t *copy = malloc(size ? size : 1); /* exact size: ASan sees overreads */
    if (copy == NULL)
        return 0;
    memcpy(copy, data + 1, size);
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    if (mode < 2) {
        uint8_t digest[CERT_DIGEST_BYTES];
        memcpy(digest, fz.joiner.digest, sizeof digest);
        if (mode == 1) {
            Lskvpeerpb__JoinRequest *m =
                size <= JOIN_MSG_MAX_BYTES ? lskvpeerpb__join_request__unpack(NULL, size, copy)
                                           : NULL;
            if (m != NULL)
                (void)cert_spki_digest(m->node_public_key.data, m->node_public_key.len, digest);
            lskvpeerpb__join_request__free_unpacked(m, NULL);
        }
        uint8_t *resp = NULL;
        size_t resp_len = 0;
        struct join_peer who;
        int rv = join_handle(&fz.f, digest, copy, size, &resp, &resp_len, &who, errmsg);
        if (rv != 0 && (resp == NULL || has(resp, resp_len, fz.data_key) ||
                        has(resp, resp_len, fz.ledger_secret)))
            abort();
        if (rv == 0 && (mode == 0 || !has(resp, resp_len, fz.data_key)))
            abort();
        join_buf_free(resp, resp_len);
    } else {
        struct join_secrets s;
        int rv = join_response_open(copy, size, &fz.joiner, 2, fz.founder.cert_pem,
                                    strlen(fz.founder.cert_pem), &fz.policy, &s, errmsg);
        /* The founder's self-signed certificate is endorsed by no service,
         * and no input can make a certificate for the joiner's fresh key. */
        if (rv == 0 || !all_zero(&s, sizeof s))
            abort();
    }
    free(copy);
    return 0;
}

/* The join exchange (see join.h for the protocol and its invariants).
 *
 * Why a wiping allocator: protobuf-c copies every bytes and string field of
 * a message it decodes into memory of its own, and frees it without
 * clearing. Decoding a JoinResponse through wiping_allocator (each block
 * remembers its size) clears those copies of the service key, data key and
 * ledger secret when the message is freed, on every path (invariant 6).
 * Encoded responses are built in buffers this file allocates and callers
 * free with join_buf_free, which clears them too. */
#include "identity/join.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/err.h"
#include "common/file.h"
#include "common/hex.h"
#include "crypto/aead.h"
#include "proto/lskvpeer.pb-c.h"

_Static_assert(JOIN_SECRET_BYTES == DATADIR_KEY_BYTES, "data key size");
_Static_assert(JOIN_SECRET_BYTES == AEAD_KEY_BYTES, "data key size");

/* --- Memory that held secrets -------------------------------------------- */

enum { WIPE_HEADER = alignof(max_align_t) };

static void *wipe_alloc(void *arg, size_t size)
{
    (void)arg;
    if (size > SIZE_MAX - WIPE_HEADER)
        return NULL;
    uint8_t *base = malloc(WIPE_HEADER + size);
    if (base == NULL)
        return NULL;
    memcpy(base, &size, sizeof size);
    return base + WIPE_HEADER;
}

static void wipe_free(void *arg, void *ptr)
{
    (void)arg;
    if (ptr == NULL)
        return;
    uint8_t *base = (uint8_t *)ptr - WIPE_HEADER;
    size_t size;
    memcpy(&size, base, sizeof size);
    OPENSSL_cleanse(base, WIPE_HEADER + size);
    free(base);
}

static ProtobufCAllocator wiping_allocator = {wipe_alloc, wipe_free, NULL};

void join_buf_free(uint8_t *buf, size_t len)
{
    if (buf == NULL)
        return;
    OPENSSL_cleanse(buf, len);
    free(buf);
}

/* Packs m into a malloc'ed buffer (join_buf_free). */
static int pack(const ProtobufCMessage *m, uint8_t **out, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    *out = malloc(n ? n : 1);
    if (*out == NULL)
        return LSKV_ENOMEM;
    *len = protobuf_c_message_pack(m, *out);
    return 0;
}

static void node_cn(uint64_t member_id, char out[64])
{
    snprintf(out, 64, "lskv node %016" PRIx64, member_id);
}

/* --- Joiner: key and request ------------------------------------------------ */

void join_key_wipe(struct join_key *k)
{
    cert_secret_free(k->key_pem);
    free(k->cert_pem);
    memset(k, 0, sizeof *k);
}

int join_key_new(uint64_t member_id, struct join_key *k, char *errmsg)
{
    memset(k, 0, sizeof *k);
    char cn[64];
    node_cn(member_id, cn);
    int rv = cert_key_new(cn, &k->key_pem, &k->cert_pem, errmsg);
    if (rv == 0 && (rv = cert_key_digest_of_pem(k->cert_pem, strlen(k->cert_pem),
                                                 k->digest)) != 0)
        errmsg_printf(errmsg, "cannot read back the new node certificate");
    if (rv != 0)
        join_key_wipe(k);
    return rv;
}

/* Peer URLs a joiner names: how many, how long. */
static bool peer_urls_ok(char *const *urls, size_t n)
{
    if (n == 0 || n > JOIN_URLS_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (urls[i] == NULL || urls[i][0] == '\0' || strlen(urls[i]) > 255)
            return false;
    return true;
}

static int request_make(const struct join_key *k, uint64_t member_id, const char *name,
                        uint64_t cluster_id, char *const *peer_urls, size_t n_peer_urls,
                        uint8_t **out, size_t *len, char *errmsg)
{
    if (member_id == 0 || strlen(name) > JOIN_NAME_MAX) {
        errmsg_printf(errmsg, "join request: member id must not be 0 and the name at most "
                      "%d bytes", JOIN_NAME_MAX);
        return LSKV_EINVAL;
    }
    uint8_t *spki = NULL, *report = NULL;
    size_t spki_len = 0, report_len = 0;
    int rv = cert_spki_of_pem(k->cert_pem, strlen(k->cert_pem), &spki, &spki_len);
    if (rv != 0) {
        errmsg_printf(errmsg, "join request: cannot read the node certificate");
        return rv;
    }
    if ((rv = attest_report_make(k->digest, &report, &report_len, errmsg)) == 0) {
        Lskvpeerpb__JoinRequest m = LSKVPEERPB__JOIN_REQUEST__INIT;
        m.attestation.data = report;
        m.attestation.len = report_len;
        m.node_public_key.data = spki;
        m.node_public_key.len = spki_len;
        m.member_id = member_id;
        m.member_name = (char *)name;
        m.cluster_id = cluster_id;
        m.existing = peer_urls != NULL;
        m.peer_urls = (char **)peer_urls;
        m.n_peer_urls = peer_urls != NULL ? n_peer_urls : 0;
        rv = pack(&m.base, out, len);
    }
    free(report);
    free(spki);
    return rv;
}

int join_request_make(const struct join_key *k, uint64_t member_id, const char *name,
                      uint64_t cluster_id, uint8_t **out, size_t *len, char *errmsg)
{
    return request_make(k, member_id, name, cluster_id, NULL, 0, out, len, errmsg);
}

int join_request_make_existing(const struct join_key *k, uint64_t member_id, const char *name,
                               char *const *peer_urls, size_t n_peer_urls, uint8_t **out,
                               size_t *len, char *errmsg)
{
    if (!peer_urls_ok(peer_urls, n_peer_urls)) {
        errmsg_printf(errmsg, "join request: 1 to %d peer URLs of at most 255 bytes",
                      JOIN_URLS_MAX);
        return LSKV_EINVAL;
    }
    return request_make(k, member_id, name, 0, peer_urls, n_peer_urls, out, len, errmsg);
}

/* --- Founder ------------------------------------------------------------------ */

/* A refusal: status and text, nothing else. */
static void refuse(int code, const char *text, uint8_t **resp, size_t *resp_len)
{
    Lskvpeerpb__JoinResponse m = LSKVPEERPB__JOIN_RESPONSE__INIT;
    m.status = code;
    m.error = (char *)text;
    if (pack(&m.base, resp, resp_len) != 0) {
        *resp = NULL;
        *resp_len = 0;
    }
}

/* Invariants (2), (3), (4) and admit, in that order; an existing
 * cluster's joiner gets its member in *admitted. */
static int check_request(const struct join_founder *f,
                         const uint8_t peer_key_digest[CERT_DIGEST_BYTES],
                         const Lskvpeerpb__JoinRequest *m, struct join_admitted *admitted,
                         char *errmsg)
{
    if (m->existing && !peer_urls_ok(m->peer_urls, m->n_peer_urls)) {
        errmsg_printf(errmsg, "join request: 1 to %d peer URLs of at most 255 bytes",
                      JOIN_URLS_MAX);
        return LSKV_EINVAL;
    }
    if (m->cluster_id != f->cluster_id && !(m->existing && m->cluster_id == 0)) {
        errmsg_printf(errmsg, "join request is for cluster %016" PRIx64 ", this is cluster "
                      "%016" PRIx64, m->cluster_id, f->cluster_id);
        return LSKV_EINVAL;
    }
    if (m->member_id == 0 || strlen(m->member_name) > JOIN_NAME_MAX) {
        errmsg_printf(errmsg, "join request: member id 0 or a name over %d bytes",
                      JOIN_NAME_MAX);
        return LSKV_EINVAL;
    }
    uint8_t digest[CERT_DIGEST_BYTES];
    if (cert_spki_digest(m->node_public_key.data, m->node_public_key.len, digest) != 0) {
        errmsg_printf(errmsg, "join request: node key is not a P-384 public key in DER");
        return LSKV_EINVAL;
    }
    if (memcmp(digest, peer_key_digest, CERT_DIGEST_BYTES) != 0) {
        errmsg_printf(errmsg, "join request: its node key is not the key the TLS channel "
                      "proved");
        return -EACCES;
    }
    int rv = attest_report_verify(m->attestation.data, m->attestation.len, f->policy,
                                  peer_key_digest, NULL, errmsg);
    if (rv != 0) {
        errmsg_wrapf(errmsg, "join request");
        return rv;
    }
    if (m->existing) {
        if (f->admit_existing == NULL) {
            errmsg_printf(errmsg, "this member does not admit members of an existing cluster");
            return -EACCES;
        }
        memset(admitted, 0, sizeof *admitted);
        if ((rv = f->admit_existing(f->admit_arg, m->peer_urls, m->n_peer_urls, m->member_name,
                                    admitted, errmsg)) != 0)
            return rv;
        if (admitted->member_id == 0 || admitted->n_members > JOIN_MEMBERS_MAX) {
            errmsg_printf(errmsg, "join request: no member id to give");
            return LSKV_EINVAL;
        }
        return 0;
    }
    if (f->admit != NULL && (rv = f->admit(f->admit_arg, m->member_id, m->member_name,
                                           errmsg)) != 0)
        return rv;
    admitted->member_id = m->member_id;
    return 0;
}

static int admit_response(const struct join_founder *f, const Lskvpeerpb__JoinRequest *m,
                          const struct join_admitted *admitted, uint8_t **resp,
                          size_t *resp_len, char *errmsg)
{
    char cn[64], *node_pem = NULL, *key_pem = NULL;
    size_t key_len;
    node_cn(admitted->member_id, cn);
    int rv = cert_issue_node(f->service, m->node_public_key.data, m->node_public_key.len, cn,
                             &node_pem, errmsg);
    if (rv != 0)
        return rv;
    if ((rv = cert_service_key_pem(f->service, &key_pem, &key_len)) != 0) {
        errmsg_printf(errmsg, "cannot encode the service key");
        free(node_pem);
        return rv;
    }
    Lskvpeerpb__JoinResponse r = LSKVPEERPB__JOIN_RESPONSE__INIT;
    r.service_cert_pem = (char *)cert_service_pem(f->service);
    r.service_key_pem = key_pem;
    r.data_key.data = (uint8_t *)f->data_key;
    r.data_key.len = JOIN_SECRET_BYTES;
    r.ledger_secret.data = (uint8_t *)f->ledger_secret;
    r.ledger_secret.len = JOIN_SECRET_BYTES;
    r.node_cert_pem = node_pem;
    r.founder_attestation.data = (uint8_t *)f->report;
    r.founder_attestation.len = f->report_len;
    r.member_id = admitted->member_id;
    r.cluster_id = f->cluster_id;
    if (m->existing) {
        r.member_ids = (uint64_t *)admitted->ids;
        r.member_peer_urls = (char **)admitted->peer_urls;
        r.n_member_ids = r.n_member_peer_urls = admitted->n_members;
    }
    if ((rv = pack(&r.base, resp, resp_len)) != 0)
        errmsg_printf(errmsg, "out of memory for the join response");
    cert_secret_free(key_pem);
    free(node_pem);
    return rv;
}

int join_handle(const struct join_founder *f,
                const uint8_t peer_key_digest[CERT_DIGEST_BYTES], const uint8_t *req,
                size_t req_len, uint8_t **resp, size_t *resp_len, struct join_peer *who,
                char *errmsg)
{
    *resp = NULL;
    *resp_len = 0;
    if (who != NULL) {
        memset(who, 0, sizeof *who);
        hex_encode(peer_key_digest, CERT_DIGEST_BYTES, who->node_id);
    }
    Lskvpeerpb__JoinRequest *m = NULL;
    int rv = LSKV_ECORRUPT;
    if (req_len > JOIN_MSG_MAX_BYTES)
        errmsg_printf(errmsg, "join request of %zu bytes, at most %d", req_len,
                      JOIN_MSG_MAX_BYTES);
    else if ((m = lskvpeerpb__join_request__unpack(NULL, req_len, req)) == NULL)
        errmsg_printf(errmsg, "join request: malformed");
    else {
        if (who != NULL) {
            who->member_id = m->member_id;
            snprintf(who->name, sizeof who->name, "%s", m->member_name);
        }
        struct join_admitted admitted = {0};
        rv = check_request(f, peer_key_digest, m, &admitted, errmsg);
        if (rv == 0 && who != NULL)
            who->member_id = admitted.member_id;
        if (rv == 0)
            rv = admit_response(f, m, &admitted, resp, resp_len, errmsg);
    }
    if (rv != 0) {
        /* The refusal carries errmsg: built from the request and the
         * policy, never from a secret (invariant 7). */
        refuse(rv, errmsg, resp, resp_len);
    }
    lskvpeerpb__join_request__free_unpacked(m, NULL);
    return rv;
}

/* --- Joiner: response ---------------------------------------------------------- */

void join_secrets_wipe(struct join_secrets *s)
{
    free(s->service_cert_pem);
    cert_secret_free(s->service_key_pem);
    free(s->node_cert_pem);
    for (size_t i = 0; i < s->n_members; i++)
        free(s->member_peer_urls[i]);
    OPENSSL_cleanse(s, sizeof *s);
}

/* The founder's text, kept printable and short: it goes into our logs. */
static void refusal_text(const char *text, char *errmsg)
{
    char clean[JOIN_ERROR_MAX + 1];
    size_t n = 0;
    for (; text[n] != '\0' && n < JOIN_ERROR_MAX; n++)
        clean[n] = text[n] >= 0x20 && text[n] < 0x7f ? text[n] : '?';
    clean[n] = '\0';
    errmsg_printf(errmsg, "founder refused the join: %s", clean);
}

/* The ids the response gives: the certificate's member (the one asked
 * for, unless 0), the cluster's, and a member list holding it. */
static int check_ids(const Lskvpeerpb__JoinResponse *m, uint64_t member_id, char *errmsg)
{
    if (m->member_id == 0 || (member_id != 0 && m->member_id != member_id) ||
        m->cluster_id == 0 || m->n_member_ids != m->n_member_peer_urls ||
        m->n_member_ids > JOIN_MEMBERS_MAX) {
        errmsg_printf(errmsg, "join response: member id %016" PRIx64 " (want %016" PRIx64
                      "), cluster id %016" PRIx64 ", %zu member ids for %zu peer URLs",
                      m->member_id, member_id, m->cluster_id, m->n_member_ids,
                      m->n_member_peer_urls);
        return LSKV_ECORRUPT;
    }
    bool self_listed = m->n_member_ids == 0;
    for (size_t i = 0; i < m->n_member_ids; i++) {
        self_listed |= m->member_ids[i] == m->member_id;
        if (m->member_ids[i] == 0 || m->member_peer_urls[i][0] == '\0') {
            errmsg_printf(errmsg, "join response: member %zu of the list has id 0 or no URL", i);
            return LSKV_ECORRUPT;
        }
    }
    if (!self_listed) {
        errmsg_printf(errmsg, "join response: the member list lacks %016" PRIx64,
                      m->member_id);
        return LSKV_ECORRUPT;
    }
    return 0;
}

/* Invariant (5) and the checks on what was issued to us. */
static int check_response(const Lskvpeerpb__JoinResponse *m, const struct join_key *k,
                          uint64_t member_id, const char *founder_cert_pem,
                          size_t founder_cert_len, const struct attest_policy *policy,
                          char *errmsg)
{
    uint8_t founder_digest[CERT_DIGEST_BYTES], node_digest[CERT_DIGEST_BYTES];
    int ids = check_ids(m, member_id, errmsg);
    if (ids != 0)
        return ids;
    if (cert_key_digest_of_pem(founder_cert_pem, founder_cert_len, founder_digest) != 0) {
        errmsg_printf(errmsg, "founder's TLS certificate: not a PEM certificate");
        return LSKV_EINVAL;
    }
    int rv = attest_report_verify(m->founder_attestation.data, m->founder_attestation.len,
                                  policy, founder_digest, NULL, errmsg);
    if (rv != 0) {
        errmsg_wrapf(errmsg, "join response: founder's report");
        return rv;
    }
    cert_service *svc = NULL;
    rv = cert_service_from_pem_key(m->service_cert_pem, strlen(m->service_cert_pem),
                                   m->service_key_pem, strlen(m->service_key_pem), &svc,
                                   errmsg);
    if (rv != 0) {
        errmsg_wrapf(errmsg, "join response");
        return LSKV_ECORRUPT;
    }
    char cn[64], want_cn[64];
    node_cn(m->member_id, want_cn);
    if ((rv = cert_check_endorsed(svc, founder_cert_pem, founder_cert_len, errmsg)) != 0) {
        errmsg_wrapf(errmsg, "join response: founder's TLS certificate");
    } else if ((rv = cert_check_endorsed(svc, m->node_cert_pem, strlen(m->node_cert_pem),
                                         errmsg)) != 0) {
        errmsg_wrapf(errmsg, "join response: our node certificate");
    } else if (cert_key_digest_of_pem(m->node_cert_pem, strlen(m->node_cert_pem),
                                      node_digest) != 0 ||
               memcmp(node_digest, k->digest, CERT_DIGEST_BYTES) != 0) {
        rv = LSKV_ECORRUPT;
        errmsg_printf(errmsg, "join response: the node certificate is not for our key");
    } else if (cert_cn_of_pem(m->node_cert_pem, strlen(m->node_cert_pem), cn, sizeof cn) != 0 ||
               strcmp(cn, want_cn) != 0) {
        rv = LSKV_ECORRUPT;
        errmsg_printf(errmsg, "join response: the node certificate is not for \"%s\"", want_cn);
    } else if (m->data_key.len != JOIN_SECRET_BYTES ||
               m->ledger_secret.len != JOIN_SECRET_BYTES) {
        rv = LSKV_ECORRUPT;
        errmsg_printf(errmsg, "join response: data key of %zu and ledger secret of %zu "
                      "bytes, want %d", m->data_key.len, m->ledger_secret.len,
                      JOIN_SECRET_BYTES);
    }
    cert_service_free(svc);
    return rv == 0 ? 0 : rv == LSKV_EINVAL ? LSKV_ECORRUPT : rv;
}

int join_response_open(const uint8_t *resp, size_t len, const struct join_key *k,
                       uint64_t member_id, const char *founder_cert_pem,
                       size_t founder_cert_len, const struct attest_policy *policy,
                       struct join_secrets *out, char *errmsg)
{
    memset(out, 0, sizeof *out);
    if (len > JOIN_MSG_MAX_BYTES) {
        errmsg_printf(errmsg, "join response of %zu bytes, at most %d", len,
                      JOIN_MSG_MAX_BYTES);
        return LSKV_ECORRUPT;
    }
    Lskvpeerpb__JoinResponse *m =
        lskvpeerpb__join_response__unpack(&wiping_allocator, len, resp);
    if (m == NULL) {
        errmsg_printf(errmsg, "join response: malformed");
        return LSKV_ECORRUPT;
    }
    int rv;
    if (m->status > 0) {
        rv = LSKV_ECORRUPT;
        errmsg_printf(errmsg, "join response: status %d", (int)m->status);
    } else if (m->status < 0) {
        rv = m->status;
        refusal_text(m->error, errmsg);
    } else if ((rv = check_response(m, k, member_id, founder_cert_pem, founder_cert_len,
                                    policy, errmsg)) == 0) {
        out->service_cert_pem = strdup(m->service_cert_pem);
        out->service_key_pem = strdup(m->service_key_pem);
        out->node_cert_pem = strdup(m->node_cert_pem);
        memcpy(out->data_key, m->data_key.data, JOIN_SECRET_BYTES);
        memcpy(out->ledger_secret, m->ledger_secret.data, JOIN_SECRET_BYTES);
        out->member_id = m->member_id;
        out->cluster_id = m->cluster_id;
        bool copied = true;
        for (size_t i = 0; i < m->n_member_ids; i++) {
            out->member_ids[i] = m->member_ids[i];
            out->member_peer_urls[i] = strdup(m->member_peer_urls[i]);
            out->n_members++;
            copied = copied && out->member_peer_urls[i] != NULL;
        }
        if (out->service_cert_pem == NULL || out->service_key_pem == NULL ||
            out->node_cert_pem == NULL || !copied) {
            join_secrets_wipe(out);
            rv = LSKV_ENOMEM;
        }
    }
    lskvpeerpb__join_response__free_unpacked(m, &wiping_allocator);
    return rv;
}

/* --- Install --------------------------------------------------------------------- */

static const char *const installed[] = {
    "identity/service.pem", "identity/service.key", "identity/node.pem",
    "identity/node.key",    "ledger.secret",        "data.key",
};

int join_install(const struct datadir *d, const struct join_secrets *s,
                 const struct join_key *k, char *errmsg)
{
    if (!d->fresh) {
        errmsg_printf(errmsg, "%s: joining needs a fresh (empty) data dir", d->path);
        return LSKV_EINVAL;
    }
    char path[DATADIR_PATH_MAX], iddir[DATADIR_PATH_MAX];
    int rv;
    for (size_t i = 0; i < sizeof installed / sizeof installed[0]; i++) {
        struct stat st;
        if ((rv = datadir_path(d, installed[i], path, sizeof path, errmsg)) != 0)
            return rv;
        if (lstat(path, &st) == 0) {
            errmsg_printf(errmsg, "%s: already there; joining replaces nothing", path);
            return -EEXIST;
        }
    }
    if ((rv = datadir_path(d, "identity", iddir, sizeof iddir, errmsg)) != 0)
        return rv;
    if (mkdir(iddir, 0700) != 0 && errno != EEXIST) {
        rv = -errno;
        errmsg_printf(errmsg, "%s: mkdir: %s", iddir, strerror(errno));
        return rv;
    }
    if ((rv = file_fsync_dir(d->path)) != 0) {
        errmsg_printf(errmsg, "%s: fsync: %s", d->path, strerror(-rv));
        return rv;
    }
    cert_service *svc = NULL;
    if ((rv = cert_service_from_pem_key(s->service_cert_pem, strlen(s->service_cert_pem),
                                        s->service_key_pem, strlen(s->service_key_pem), &svc,
                                        errmsg)) != 0 ||
        (rv = cert_service_save(svc, iddir, errmsg)) != 0 ||
        (rv = cert_node_install(iddir, svc, s->node_cert_pem, strlen(s->node_cert_pem),
                                k->key_pem, strlen(k->key_pem), errmsg)) != 0)
        goto out;
    if ((rv = datadir_path(d, "ledger.secret", path, sizeof path, errmsg)) != 0 ||
        (rv = file_write_durable(path, s->ledger_secret, JOIN_SECRET_BYTES, 0600, errmsg)) != 0)
        goto out;
    if ((rv = datadir_path(d, "data.key", path, sizeof path, errmsg)) != 0 ||
        (rv = file_write_durable(path, s->data_key, JOIN_SECRET_BYTES, 0600, errmsg)) != 0)
        goto out;
out:
    cert_service_free(svc);
    return rv;
}

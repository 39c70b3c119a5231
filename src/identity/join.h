/* The join exchange (DESIGN.md section 5): how a new member gets the
 * cluster's secrets, as pure functions over bytes. The peer link that
 * carries them (TLS on the peer port) is the caller's.
 *
 *   joiner                                      founder (any member holding
 *                                                the service key and secrets)
 *   join_key_new: node key + self-signed cert
 *   TLS handshake with that cert  ───────────►  learns the key's digest
 *   join_request_make ── JoinRequest ────────►  join_handle(TLS digest)
 *                                                  checks cluster id, that the
 *                                                  request's key is the TLS key,
 *                                                  its report against the policy;
 *                                                  issues the node certificate
 *   join_response_open ◄── JoinResponse ─────      (or a refusal, no secret)
 *     checks the founder's report binds the
 *     founder's TLS key and the service cert
 *     endorses the founder's TLS cert
 *   join_install: files in a fresh data dir
 *
 * Invariants:
 *   (1) Secrets (service key, data key, ledger secret) are put in a
 *       response only after (2), (3) and (4) held for the request.
 *   (2) The request's node key is the key the TLS channel proved.
 *   (3) The request's report binds that key and passes the policy.
 *   (4) The request names the founder's cluster id, and a member id not 0;
 *       or it joins an existing cluster (--initial-cluster-state existing):
 *       then admit_existing found the member MemberAdd made for its peer
 *       URLs, and that member's id is the one certified.
 *   (5) The joiner takes secrets only from a founder whose report binds the
 *       key of its TLS certificate, passes the joiner's policy, and whose
 *       certificate the received service certificate endorses.
 *   (6) Every buffer that held a secret is wiped before it is freed:
 *       responses (join_buf_free), decoded messages (a wiping allocator),
 *       join_key and join_secrets (their _wipe).
 *   (7) On disk, secrets are only in the 0600 files the daemon loads
 *       (identity/service.key, identity/node.key, data.key, ledger.secret);
 *       no errmsg ever contains secret bytes. */
#ifndef LSKV_IDENTITY_JOIN_H
#define LSKV_IDENTITY_JOIN_H

#include <stddef.h>
#include <stdint.h>

#include "config/datadir.h"
#include "identity/attestation.h"
#include "identity/cert.h"

#define JOIN_SECRET_BYTES 32            /* data key, ledger secret */
#define JOIN_MSG_MAX_BYTES (128 * 1024) /* a request or a response */
#define JOIN_NAME_MAX 255               /* member name bytes */
#define JOIN_ERROR_MAX 400              /* refusal text kept by the joiner */
#define JOIN_MEMBERS_MAX 64             /* members an existing cluster lists */
#define JOIN_URLS_MAX 8                 /* peer URLs of a joiner */

/* A joiner's node key before it is endorsed. Holds a secret: join_key_wipe. */
struct join_key {
    char *key_pem;                      /* PKCS#8 PEM of the private key */
    char *cert_pem;                     /* self-signed, for the TLS handshake */
    uint8_t digest[CERT_DIGEST_BYTES];  /* SHA-256 of its SPKI DER */
};

/* Makes a fresh node key and a self-signed certificate for it, common name
 * "lskv node <16 hex member_id>". Errors: LSKV_EIO, LSKV_ENOMEM. */
int join_key_new(uint64_t member_id, struct join_key *k, char *errmsg);
/* Wipes and frees what k holds; k may be zeroed or half made. */
void join_key_wipe(struct join_key *k);

/* Wipes len bytes of buf and frees it (responses hold secrets). */
void join_buf_free(uint8_t *buf, size_t len);

/* The JoinRequest for k (with this process's virtual report binding it),
 * member_id (not 0), name (at most JOIN_NAME_MAX bytes) and the cluster id
 * the joiner expects. *out malloc'ed: join_buf_free.
 * Errors: LSKV_EINVAL (member id 0, name too long), as attest_report_make. */
int join_request_make(const struct join_key *k, uint64_t member_id, const char *name,
                      uint64_t cluster_id, uint8_t **out, size_t *len, char *errmsg);
/* The same for a member that MemberAdd added to an existing cluster under
 * peer_urls (1 to JOIN_URLS_MAX, each at most 255 bytes): member_id is the
 * one --initial-cluster derives (not 0; the cluster answers with the id it
 * gave), the cluster id is left for the cluster to say.
 * Errors: as join_request_make, LSKV_EINVAL (peer URLs). */
int join_request_make_existing(const struct join_key *k, uint64_t member_id, const char *name,
                               char *const *peer_urls, size_t n_peer_urls, uint8_t **out,
                               size_t *len, char *errmsg);

/* What admit_existing gives an existing cluster's joiner: its member id
 * and the members it should reach (ids and first peer URLs, borrowed for
 * the call). */
struct join_admitted {
    uint64_t member_id;
    size_t n_members;
    uint64_t ids[JOIN_MEMBERS_MAX];
    const char *peer_urls[JOIN_MEMBERS_MAX];
};

/* What the founder answers with; all borrowed for the call. */
struct join_founder {
    const struct attest_policy *policy;
    const cert_service *service;        /* must hold its key */
    const uint8_t *data_key;            /* JOIN_SECRET_BYTES */
    const uint8_t *ledger_secret;       /* JOIN_SECRET_BYTES */
    uint64_t cluster_id;
    const uint8_t *report;              /* the founder's own report, binding */
    size_t report_len;                  /*   the key of its TLS certificate */
    /* May refuse a member the cluster does not expect (0 = admit, else an
     * LSKV_E* with errmsg); NULL admits any. */
    int (*admit)(void *arg, uint64_t member_id, const char *name, char *errmsg);
    /* Admits an existing cluster's joiner by its peer URLs, filling out (0),
     * or refuses (an LSKV_E* with errmsg); NULL refuses every such join. */
    int (*admit_existing)(void *arg, char *const *peer_urls, size_t n_peer_urls,
                          const char *name, struct join_admitted *out, char *errmsg);
    void *admit_arg;
};

/* Who was admitted (or asked). */
struct join_peer {
    uint64_t member_id;
    char name[JOIN_NAME_MAX + 1];
    char node_id[CERT_NODE_ID_HEX];     /* hex of the TLS key digest */
};

/* Handles JoinRequest bytes (at most JOIN_MSG_MAX_BYTES) from a peer whose
 * TLS handshake proved the key with SPKI digest peer_key_digest.
 * Returns 0 when admitted: *resp holds the secrets and the new node
 * certificate. Otherwise returns the refusal and errmsg says why: then
 * *resp, when not NULL, is a refusal to send (status and text, no secret).
 * *resp is malloc'ed: join_buf_free(*resp, *resp_len). who (may be NULL)
 * gets the member id and name the request claimed, when it parsed.
 * Errors (refusals): LSKV_ECORRUPT (malformed request), -EACCES (key is not
 * the TLS key; report refused by policy or not binding), LSKV_EFORMAT,
 * LSKV_EUNIMPLEMENTED (report), LSKV_EINVAL (wrong cluster id, member id 0,
 * name too long, key not P-384), what admit returns; and LSKV_EIO,
 * LSKV_ENOMEM (the founder failed; *resp says so when it could be made). */
int join_handle(const struct join_founder *f,
                const uint8_t peer_key_digest[CERT_DIGEST_BYTES], const uint8_t *req,
                size_t req_len, uint8_t **resp, size_t *resp_len, struct join_peer *who,
                char *errmsg);

/* What an admitted joiner received. Holds secrets: join_secrets_wipe. */
struct join_secrets {
    char *service_cert_pem;
    char *service_key_pem;              /* PKCS#8 PEM */
    char *node_cert_pem;                /* the joiner's, endorsed */
    uint8_t data_key[JOIN_SECRET_BYTES];
    uint8_t ledger_secret[JOIN_SECRET_BYTES];
    uint64_t member_id, cluster_id;     /* the certificate's member, the cluster's */
    size_t n_members;                   /* an existing cluster's members: */
    uint64_t member_ids[JOIN_MEMBERS_MAX];
    char *member_peer_urls[JOIN_MEMBERS_MAX]; /*   ids, first peer URLs */
};
void join_secrets_wipe(struct join_secrets *s);

/* Opens JoinResponse bytes (at most JOIN_MSG_MAX_BYTES) received over TLS
 * from the founder whose certificate is founder_cert_pem, for a request
 * made with k and member_id (0: a request of join_request_make_existing,
 * whose id the response gives). Checks invariant (5), that the node
 * certificate is endorsed by the service certificate, is for k's key and
 * the member id, and the secrets' sizes and ids. On 0, out holds copies
 * (the caller wipes them); on error out holds nothing.
 * Errors: the founder's refusal code as it sent it (errmsg "founder refused
 * the join: <its text>"), LSKV_ECORRUPT (malformed; a check failed), -EACCES
 * (the founder's report refused by policy or not binding its TLS key),
 * LSKV_EFORMAT, LSKV_EUNIMPLEMENTED, LSKV_EINVAL (founder_cert_pem is not a
 * PEM certificate), LSKV_ENOMEM. */
int join_response_open(const uint8_t *resp, size_t len, const struct join_key *k,
                       uint64_t member_id, const char *founder_cert_pem,
                       size_t founder_cert_len, const struct attest_policy *policy,
                       struct join_secrets *out, char *errmsg);

/* Writes what the joiner received into d, which datadir_open found fresh
 * (and which this process holds locked): identity/ (0700) with service.pem,
 * service.key, node.pem, node.key (cert.h), then ledger.secret and data.key
 * (0600, temporary name, fsync, rename, directory fsync), so that the
 * daemon's open path, still treating d as fresh, loads them instead of
 * making new ones (ids stays the caller's). Nothing existing is replaced.
 * Errors: LSKV_EINVAL (d not fresh), -EEXIST (a file is already there),
 * LSKV_ECORRUPT (the node key is not the certificate's, or it is not
 * endorsed), other negated errno, LSKV_EIO. */
int join_install(const struct datadir *d, const struct join_secrets *s,
                 const struct join_key *k, char *errmsg);

#endif

/* Service and node identities (DESIGN.md section 5): ECDSA P-384 keys and
 * X.509 certificates (OpenSSL 3).
 *
 * - The service identity is a self-signed certificate (CA:TRUE) made when
 *   the cluster is bootstrapped. It endorses (signs) every node certificate.
 *   Auditors and clients pin it.
 * - A node identity is a P-384 key made on the node and a certificate for it
 *   issued by the service key. Node id = lower-case hex SHA-256 of the node
 *   public key (SubjectPublicKeyInfo DER).
 * - Ledger signatures are ECDSA over a 32-byte SHA-256 digest used as a
 *   pre-hashed message (Python: ec.ECDSA(Prehashed(SHA256()))), DER encoded.
 *
 * Files in a directory (virtual mode: private keys in 0600 PEM files, written
 * to a temporary name, fsynced and renamed; loading refuses a looser mode):
 *   service.pem  service.key  node.pem  node.key
 * Certificates are valid for 100 years; verification ignores validity times
 * so an old ledger can be audited. Secrets are wiped when freed. */
#ifndef LSKV_IDENTITY_CERT_H
#define LSKV_IDENTITY_CERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CERT_DIGEST_BYTES 32
#define CERT_SIG_MAX_BYTES 128   /* DER ECDSA P-384 is at most 104 */
#define CERT_NODE_ID_HEX 65      /* 64 hex digits + NUL */

typedef struct cert_service cert_service;
typedef struct cert_node cert_node;

/* Loads dir/service.pem (and dir/service.key when present). If neither
 * exists and create is true, makes a new key and self-signed certificate
 * with common name cn and writes both durably. *created (may be NULL) says
 * which happened. A service loaded without its key can verify, not endorse.
 * Errors: negated errno, LSKV_ECORRUPT (unparsable file, key mode looser
 * than 0600, key does not match cert), LSKV_EIO (OpenSSL), LSKV_ENOMEM. */
int cert_service_load_or_create(const char *dir, const char *cn, bool create,
                                cert_service **out, bool *created, char *errmsg);
/* A new service identity in memory (key and self-signed CA certificate with
 * common name cn); nothing is written. Errors: LSKV_EIO, LSKV_ENOMEM. */
int cert_service_new(const char *cn, cert_service **out, char *errmsg);
/* Writes s as dir/service.key (0600) and dir/service.pem, durably,
 * replacing what is there. Errors: LSKV_EINVAL (s has no key), negated
 * errno, LSKV_EIO. */
int cert_service_save(const cert_service *s, const char *dir, char *errmsg);
/* A service identity that can endorse, from its PEM certificate and PKCS#8
 * PEM key (both copied; the caller wipes key_pem).
 * Errors: LSKV_ECORRUPT (unparsable, or the key is not the certificate's). */
int cert_service_from_pem_key(const char *cert_pem, size_t cert_len, const char *key_pem,
                              size_t key_len, cert_service **out, char *errmsg);
/* The service private key as PKCS#8 PEM (NUL-terminated, *len without the
 * NUL): a secret the caller frees with cert_secret_free.
 * Errors: LSKV_EINVAL (s has no key), LSKV_EIO, LSKV_ENOMEM. */
int cert_service_key_pem(const cert_service *s, char **pem, size_t *len);
/* Wipes a NUL-terminated secret (a key PEM) and frees it. NULL is a no-op. */
void cert_secret_free(char *secret);
/* A verify-only service identity from a PEM certificate (copied).
 * Errors: LSKV_ECORRUPT (not a certificate), LSKV_ENOMEM. */
int cert_service_from_pem(const char *pem, size_t len, cert_service **out, char *errmsg);
/* The same from a PEM file. Errors: as cert_service_from_pem, negated errno. */
int cert_service_from_file(const char *path, cert_service **out, char *errmsg);
/* The service certificate, PEM; valid until cert_service_free. */
const char *cert_service_pem(const cert_service *s);
/* SHA-256 of the service certificate (DER): what ledger signatures name
 * (docs/ledger-format.md section 4). Errors: LSKV_EIO. */
int cert_service_digest(const cert_service *s, uint8_t out[CERT_DIGEST_BYTES]);
void cert_service_free(cert_service *s);

/* Loads dir/node.pem + dir/node.key, or (create, neither exists) makes a
 * node key and a certificate for it issued by s (which must hold its key),
 * common name cn. Checks that the node certificate is endorsed by s.
 * Errors: as cert_service_load_or_create; LSKV_EINVAL (s has no key to
 * endorse with); LSKV_ECORRUPT (node cert not endorsed by s). */
int cert_node_load_or_create(const char *dir, const cert_service *s, const char *cn,
                             bool create, cert_node **out, bool *created, char *errmsg);
/* Checks that cert_pem (a node certificate) is endorsed by s and that
 * key_pem is its private key, then writes dir/node.key (0600) and
 * dir/node.pem durably, as cert_node_load_or_create then loads them.
 * Both strings are copied; the caller wipes key_pem.
 * Errors: LSKV_ECORRUPT (unparsable, key not the certificate's, not
 * endorsed), LSKV_EIO, negated errno. */
int cert_node_install(const char *dir, const cert_service *s, const char *cert_pem,
                      size_t cert_len, const char *key_pem, size_t key_len, char *errmsg);
/* PEM certificate and hex node id; valid until cert_node_free. */
const char *cert_node_pem(const cert_node *n);
/* The node private key as PKCS#8 PEM (what the peer network's TLS shows):
 * a secret the caller frees with cert_secret_free. Errors: LSKV_EIO,
 * LSKV_ENOMEM. */
int cert_node_key_pem(const cert_node *n, char **pem, size_t *len);
const char *cert_node_id(const cert_node *n);
/* Signs a 32-byte digest: sig gets DER (room CERT_SIG_MAX_BYTES).
 * Errors: LSKV_EIO. */
int cert_node_sign(const cert_node *n, const uint8_t digest[CERT_DIGEST_BYTES],
                   uint8_t *sig, size_t *sig_len);
void cert_node_free(cert_node *n);

/* --- Verification without private keys (shared with lskvctl) ---------- */

/* Verifies sig over digest with the public key of the PEM certificate.
 * Errors: LSKV_EINVAL (certificate unparsable or not P-384),
 * LSKV_ECORRUPT (signature does not verify). */
int cert_verify_digest(const char *cert_pem, size_t pem_len,
                       const uint8_t digest[CERT_DIGEST_BYTES], const uint8_t *sig,
                       size_t sig_len, char *errmsg);
/* Checks that the PEM node certificate is issued and signed by s.
 * Errors: LSKV_EINVAL (unparsable), LSKV_ECORRUPT (not endorsed). */
int cert_check_endorsed(const cert_service *s, const char *node_pem, size_t pem_len,
                        char *errmsg);
/* Node id (hex SHA-256 of the public key DER) of a PEM certificate.
 * Errors: LSKV_EINVAL. */
int cert_node_id_of_pem(const char *pem, size_t pem_len, char out[CERT_NODE_ID_HEX]);

/* The subject common name of a PEM certificate into out (NUL-terminated).
 * Errors: LSKV_EINVAL (unparsable, no CN, longer than size - 1). */
int cert_cn_of_pem(const char *pem, size_t pem_len, char *out, size_t size);

/* --- Keys of members that are joining (identity/join.h) ---------------- */

/* A fresh P-384 key (*key_pem, PKCS#8: a secret, cert_secret_free) and a
 * self-signed certificate for it (*cert_pem, free()), common name cn: what
 * a joining member shows in its TLS handshake before it is endorsed.
 * Errors: LSKV_EIO, LSKV_ENOMEM. */
int cert_key_new(const char *cn, char **key_pem, char **cert_pem, char *errmsg);
/* The public key of a PEM certificate as SubjectPublicKeyInfo DER (*der
 * malloc'ed, caller frees). Errors: LSKV_EINVAL (unparsable), LSKV_ENOMEM. */
int cert_spki_of_pem(const char *pem, size_t pem_len, uint8_t **der, size_t *der_len);
/* SHA-256 of the public key (SPKI DER) of a PEM certificate: the bytes of
 * its node id, and what an attestation report binds. Errors: LSKV_EINVAL. */
int cert_key_digest_of_pem(const char *pem, size_t pem_len, uint8_t out[CERT_DIGEST_BYTES]);
/* SHA-256 of spki after checking it is a P-384 SubjectPublicKeyInfo in its
 * one canonical DER encoding. Errors: LSKV_EINVAL. */
int cert_spki_digest(const uint8_t *spki, size_t len, uint8_t out[CERT_DIGEST_BYTES]);
/* Issues a node certificate for the public key spki (checked as by
 * cert_spki_digest), common name cn, signed by s's key. *pem_out is
 * malloc'ed (caller frees). Errors: LSKV_EINVAL (s has no key; spki is not
 * a P-384 key), LSKV_EIO, LSKV_ENOMEM. */
int cert_issue_node(const cert_service *s, const uint8_t *spki, size_t spki_len,
                    const char *cn, char **pem_out, char *errmsg);

#endif

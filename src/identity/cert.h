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
/* PEM certificate and hex node id; valid until cert_node_free. */
const char *cert_node_pem(const cert_node *n);
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

#endif

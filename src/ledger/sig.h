/* Signature entries: the public part of a CHUNK_ENTRY_SIGNATURE entry
 * (docs/ledger-format.md section 4). All integers big endian.
 *
 *   u8 version (2) | u64 tree_size | root[32] | service_digest[32] |
 *   u16 sig_len | sig[sig_len] | u32 cert_len | cert_pem[cert_len]
 *
 * The entry says: "the root of the tree over leaves [0, tree_size) is root,
 * under the service whose certificate (DER) hashes to service_digest",
 * signed by the node whose certificate is cert_pem. sig is ECDSA P-384
 * (DER) over the signed statement
 *
 *   SHA-256("lskv-signed-root-v2" || u64be tree_size || root || service_digest)
 *
 * as a pre-hashed digest, so a signature binds the size as well as the root
 * (a proof relabelled to another size fails) and pins the service identity.
 * tree_size is at most the signature entry's own leaf index (a signature
 * never covers itself). Version 1 (ECDSA over the root alone) is refused. */
#ifndef LSKV_LEDGER_SIG_H
#define LSKV_LEDGER_SIG_H

#include <stddef.h>
#include <stdint.h>

#include "identity/cert.h"
#include "ledger/merkle.h"

#define SIG_PAYLOAD_VERSION 2
#define SIG_MAX_CERT_BYTES (64 * 1024)
#define SIG_STATEMENT_LABEL "lskv-signed-root-v2"

struct sig_payload {
    uint64_t tree_size;                          /* leaves covered */
    uint8_t root[MERKLE_HASH_BYTES];             /* root over them */
    uint8_t service_digest[MERKLE_HASH_BYTES];   /* SHA-256 of the service cert DER */
    const uint8_t *sig;                          /* DER, borrowed */
    size_t sig_len;
    const char *cert_pem;                        /* node cert, borrowed, not NUL-terminated */
    size_t cert_len;
};

size_t sig_payload_size(const struct sig_payload *p);
void sig_payload_encode(const struct sig_payload *p, uint8_t *out);
/* Pointers in p borrow buf. Errors: LSKV_ECORRUPT, LSKV_EFORMAT (any
 * version but SIG_PAYLOAD_VERSION). */
int sig_payload_decode(const uint8_t *buf, size_t len, struct sig_payload *p, char *errmsg);

/* The digest the node signs (see above). */
void sig_statement_digest(uint64_t tree_size, const uint8_t root[MERKLE_HASH_BYTES],
                          const uint8_t service_digest[MERKLE_HASH_BYTES],
                          uint8_t out[MERKLE_HASH_BYTES]);

/* Signs the statement for (tree_size, root, service_digest) with node's key
 * and encodes the payload into a malloc'ed buffer (caller frees).
 * Errors: LSKV_EIO, LSKV_ENOMEM. */
int sig_make(const cert_node *node, const uint8_t service_digest[MERKLE_HASH_BYTES],
             uint64_t tree_size, const uint8_t root[MERKLE_HASH_BYTES], uint8_t **out,
             size_t *out_len);

/* Checks p's signature over its statement with p's certificate and, when
 * service is not NULL, that p names service and its certificate is endorsed
 * by it (sig_check, then sig_check_service).
 * Errors: LSKV_ECORRUPT (bad signature, other service, not endorsed),
 * LSKV_EINVAL (bad cert). */
int sig_verify(const struct sig_payload *p, const cert_service *service, char *errmsg);
/* The signature alone. Errors: as sig_verify. */
int sig_check(const struct sig_payload *p, char *errmsg);
/* p names service's digest and its certificate is endorsed by service.
 * Errors: as sig_verify. */
int sig_check_service(const struct sig_payload *p, const cert_service *service, char *errmsg);

#endif

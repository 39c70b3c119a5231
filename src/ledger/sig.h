/* Signature entries: the public part of a CHUNK_ENTRY_SIGNATURE entry
 * (docs/ledger-format.md section 4). All integers big endian.
 *
 *   u8 version (1) | u64 tree_size | root[32] | u16 sig_len | sig[sig_len] |
 *   u32 cert_len | cert_pem[cert_len]
 *
 * The entry says: "the root of the tree over leaves [0, tree_size) is root",
 * signed by the node whose certificate is cert_pem: sig is ECDSA P-384 (DER)
 * over root as a pre-hashed SHA-256 digest (as CCF). tree_size is at most the
 * signature entry's own leaf index (a signature never covers itself). */
#ifndef LSKV_LEDGER_SIG_H
#define LSKV_LEDGER_SIG_H

#include <stddef.h>
#include <stdint.h>

#include "identity/cert.h"
#include "ledger/merkle.h"

#define SIG_PAYLOAD_VERSION 1
#define SIG_MAX_CERT_BYTES (64 * 1024)

struct sig_payload {
    uint64_t tree_size;                  /* leaves covered */
    uint8_t root[MERKLE_HASH_BYTES];     /* root over them */
    const uint8_t *sig;                  /* DER, borrowed */
    size_t sig_len;
    const char *cert_pem;                /* node cert, borrowed, not NUL-terminated */
    size_t cert_len;
};

size_t sig_payload_size(const struct sig_payload *p);
void sig_payload_encode(const struct sig_payload *p, uint8_t *out);
/* Pointers in p borrow buf. Errors: LSKV_ECORRUPT, LSKV_EFORMAT. */
int sig_payload_decode(const uint8_t *buf, size_t len, struct sig_payload *p, char *errmsg);

/* Signs root with node's key and encodes the payload into a malloc'ed
 * buffer (caller frees). Errors: LSKV_EIO, LSKV_ENOMEM. */
int sig_make(const cert_node *node, uint64_t tree_size, const uint8_t root[MERKLE_HASH_BYTES],
             uint8_t **out, size_t *out_len);

/* Checks p's signature over p->root with p's certificate and, when service
 * is not NULL, that the certificate is endorsed by it (sig_check, then
 * sig_check_service).
 * Errors: LSKV_ECORRUPT (bad signature or endorsement), LSKV_EINVAL (bad cert). */
int sig_verify(const struct sig_payload *p, const cert_service *service, char *errmsg);
/* The signature alone. Errors: as sig_verify. */
int sig_check(const struct sig_payload *p, char *errmsg);
/* The certificate's endorsement by service alone (a verifier that has
 * checked the same certificate before may skip it). Errors: as sig_verify. */
int sig_check_service(const struct sig_payload *p, const cert_service *service, char *errmsg);

#endif

/* The bytes members exchange on a peer connection (net/peer.c), inside TLS.
 *
 * After the TLS handshake the connecting side sends a preamble:
 *   "LSKP"  version (1 byte, 2)  channel (1 byte, enum peer_channel)
 *   raft id (8 bytes, big-endian; 0 unless channel is PEER_RAFT)
 *   incarnation (8 bytes, big-endian, non-zero: random per process run, so a
 *   peer tells two processes acting as one member apart)
 *   address length (2 bytes, big-endian)  address (raft's "host:port")
 * and the accepting side answers one byte, enum peer_ack.
 * Then a PEER_RAFT connection carries raft_uv's bytes as they are, and every
 * other channel carries messages framed as a 4-byte big-endian length and
 * that many bytes (at most PEER_MAX_MESSAGE). */
#ifndef LSKV_NET_PEER_WIRE_H
#define LSKV_NET_PEER_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PEER_MAX_MESSAGE (64u << 20)
#define PEER_ADDRESS_MAX 300   /* bytes of a preamble's address */
#define PEER_PREAMBLE_FIXED 24 /* bytes before the address */
#define PEER_PREAMBLE_MAX (PEER_PREAMBLE_FIXED + PEER_ADDRESS_MAX)
#define PEER_FRAME_HEADER 4

/* PEER_PROBE: a restarting member asks what the others know of it
 * (consensus/probe.h). */
enum peer_channel { PEER_RAFT = 1, PEER_JOIN = 2, PEER_FORWARD = 3, PEER_PROBE = 4 };
/* PEER_ACK_FORK: another process of the same member (another incarnation)
 * was heard recently; this one is refused. */
enum peer_ack { PEER_ACK_OK = 0, PEER_ACK_REFUSED = 1, PEER_ACK_FORK = 2 };

struct peer_preamble {
    uint8_t channel;
    uint64_t raft_id;                   /* non-zero exactly for PEER_RAFT */
    uint64_t incarnation;               /* non-zero */
    char address[PEER_ADDRESS_MAX + 1]; /* NUL-terminated; "" unless PEER_RAFT */
};

/* Encodes p into out; returns the byte count. p must be valid (as decode
 * would accept it). */
size_t peer_preamble_encode(const struct peer_preamble *p, uint8_t out[PEER_PREAMBLE_MAX]);
/* Decodes a preamble at the start of buf: returns the bytes it took (> 0),
 * 0 when buf holds only a prefix of a valid one, or LSKV_ECORRUPT (bad magic,
 * version or channel; a raft id or address where there must be none or none
 * where there must be one; a zero incarnation; an address too long or
 * holding a NUL). */
int peer_preamble_decode(const uint8_t *buf, size_t len, struct peer_preamble *out);

/* Identity proof (only with operator TLS, net/peer.h): right after the TLS
 * handshake each side sends
 *   "LSKI"  version (1 byte, 1)  certificate length (4 bytes)  node
 *   certificate (PEM)  signature length (2 bytes)  signature
 * where the signature is by the node key over peer_proof_message(): the
 * role of the signer and the TLS exporter value of this session. */
#define PEER_PROOF_CERT_MAX 16384
#define PEER_PROOF_SIG_MAX 512
#define PEER_PROOF_FIXED 9
#define PEER_PROOF_MAX (PEER_PROOF_FIXED + PEER_PROOF_CERT_MAX + 2 + PEER_PROOF_SIG_MAX)
#define PEER_EXPORTER_BYTES 32
#define PEER_EXPORTER_LABEL "EXPORTER-lskv-peer-proof-v1"
#define PEER_PROOF_MESSAGE_BYTES (19 + 1 + PEER_EXPORTER_BYTES)

struct peer_proof {
    const uint8_t *cert_pem; /* borrowed from the decoded buffer */
    size_t cert_len;
    const uint8_t *sig;
    size_t sig_len;
};

/* Encodes a proof into out (PEER_PROOF_MAX bytes); returns the byte count,
 * 0 if the certificate or signature is too long. */
size_t peer_proof_encode(const uint8_t *cert_pem, size_t cert_len, const uint8_t *sig,
                         size_t sig_len, uint8_t out[PEER_PROOF_MAX]);
/* Decodes a proof at the start of buf: the bytes it took (> 0), 0 when buf
 * holds only a prefix of a valid one, or LSKV_ECORRUPT (bad magic or
 * version, a length out of bounds, an empty certificate or signature). */
int peer_proof_decode(const uint8_t *buf, size_t len, struct peer_proof *out);
/* What a proof signs: "lskv-peer-proof-v1" || role (0 client, 1 server) ||
 * exporter. */
void peer_proof_message(bool server, const uint8_t exporter[PEER_EXPORTER_BYTES],
                        uint8_t out[PEER_PROOF_MESSAGE_BYTES]);

/* Reassembles framed messages from a byte stream. Zero it to start; free its
 * buffer with peer_framer_free. */
struct peer_framer {
    uint8_t header[PEER_FRAME_HEADER];
    size_t header_len; /* bytes of header[] filled */
    uint8_t *buf;      /* the message being collected when it spans feeds */
    size_t cap, got, want;
};

/* Called for each complete message (msg borrowed for the call); a non-zero
 * return stops peer_framer_feed, which returns it. */
typedef int (*peer_framer_cb)(void *arg, const uint8_t *msg, size_t len);

/* Feeds stream bytes. Returns 0, a callback's non-zero return, or
 * LSKV_ETOOLARGE (a length over PEER_MAX_MESSAGE), LSKV_ENOMEM; after an
 * error the framer must not be fed again. Memory grows with the bytes that
 * arrive, not with a length a peer announces. */
int peer_framer_feed(struct peer_framer *f, const uint8_t *data, size_t len,
                     peer_framer_cb cb, void *arg);
void peer_framer_free(struct peer_framer *f);

/* Writes the frame header for a message of len bytes. */
void peer_frame_header(size_t len, uint8_t out[PEER_FRAME_HEADER]);

#endif

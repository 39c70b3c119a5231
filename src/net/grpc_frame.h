/* gRPC message framing (grpc/doc/PROTOCOL-HTTP2.md), with no I/O.
 *
 * A message on the wire is a 5-byte prefix (compressed flag, u32 big-endian
 * length) followed by the bytes; messages may be split across HTTP/2 DATA
 * frames and one frame may carry several. The deframer is incremental and
 * bounds what it buffers by max_bytes. Also here: the percent-encoding of
 * grpc-message and grpc-go's error texts, so the wire format lives in one
 * place. */
#ifndef LSKV_NET_GRPC_FRAME_H
#define LSKV_NET_GRPC_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GRPC_FRAME_PREFIX_BYTES 5

/* One complete message; msg is borrowed for the duration of the call.
 * Return 0 to go on, anything else to stop (grpc_deframer_push returns it). */
typedef int (*grpc_deframer_cb)(void *arg, const uint8_t *msg, size_t len);

struct grpc_deframer {
    size_t max_bytes;      /* larger messages are refused */
    uint8_t prefix[GRPC_FRAME_PREFIX_BYTES];
    size_t prefix_have;    /* bytes of prefix seen (0..5) */
    uint32_t msg_len;      /* length from the prefix, once complete */
    uint8_t *buf;          /* partial message body (owned) */
    size_t buf_have;       /* bytes in buf */
    size_t buf_cap;        /* allocated bytes of buf */
    uint32_t too_large_len; /* set when push fails with LSKV_ETOOLARGE */
};

void grpc_deframer_init(struct grpc_deframer *d, size_t max_bytes);
void grpc_deframer_free(struct grpc_deframer *d);

/* Consumes data, calling cb for every complete message. The body buffer grows
 * as bytes arrive, never beyond max_bytes, so a lying length costs nothing.
 * Errors:
 *   LSKV_ETOOLARGE      a prefix announced more than max_bytes (too_large_len)
 *   LSKV_EUNIMPLEMENTED the compressed flag is set (we offer no compression)
 *   LSKV_ECORRUPT       a flag byte other than 0 or 1
 *   LSKV_ENOMEM         out of memory
 *   other non-zero      returned by cb
 * After an error the deframer must only be freed. */
int grpc_deframer_push(struct grpc_deframer *d, const uint8_t *data, size_t len,
                       grpc_deframer_cb cb, void *arg);

/* True when a message has started but not finished (truncation at end of
 * stream is an error). */
bool grpc_deframer_partial(const struct grpc_deframer *d);

/* Bytes buffered for the current partial message. */
size_t grpc_deframer_buffered(const struct grpc_deframer *d);

/* Writes the 5-byte prefix of an uncompressed message of len bytes. */
void grpc_frame_prefix(uint8_t out[GRPC_FRAME_PREFIX_BYTES], uint32_t len);

/* grpc-go's text for a received message above the limit (rpc_util.go
 * recvAndDecompress): "grpc: received message larger than max (N vs. M)". */
void grpc_frame_too_large_text(char *out, size_t cap, uint64_t len, size_t max_bytes);

/* Percent-encodes a grpc-message value: bytes outside 0x20..0x7e and '%'
 * become %XX. Returns a malloc'd string, or NULL when out of memory. */
char *grpc_frame_percent_encode(const char *msg);

/* The grpc-timeout request header as grpc-go reads it (http_util.go
 * decodeTimeout): 2 to 9 bytes, a base-10 integer with an optional sign,
 * then a unit H, M, S, m, u or n. *out_ns gets the duration in nanoseconds,
 * clamped to the int64 range; zero or negative means already expired.
 * Errors: LSKV_EINVAL (grpc-go resets the stream with PROTOCOL_ERROR). */
int grpc_timeout_parse(const uint8_t *v, size_t len, int64_t *out_ns);

/* Reverse of grpc_frame_percent_encode (invalid escapes are kept as is).
 * out has room for strlen(in) + 1 bytes. */
void grpc_frame_percent_decode(const char *in, char *out);

#endif

/* A pass-through scanner for the HTTP/2 frames a client sends (after the
 * 24-byte client preface), with no I/O and no nghttp2 dependency.
 *
 * Its one job: drop RST_STREAM frames for idle streams. grpc-core (Python
 * gRPC) cancels a call right after a new connection opens by sending
 * RST_STREAM for a stream whose HEADERS it never sent. RFC 7540 calls that a
 * connection error and nghttp2 answers GOAWAY PROTOCOL_ERROR, failing every
 * other call on the connection; grpc-go (etcd) ignores such frames. So we
 * find frame boundaries ourselves (9-byte header: 24-bit length, type, flags,
 * 31-bit stream id) and, at each RST_STREAM header, first pass on everything
 * before it, then ask the owner whether the stream is idle (the owner's view
 * is then current) and drop the frame if so. All other bytes pass unchanged,
 * in order, in as few pieces as possible. Input may arrive in chunks of any
 * size: a frame header split across chunks is held (at most 9 bytes) until
 * complete. */
#ifndef LSKV_NET_H2_FILTER_H
#define LSKV_NET_H2_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define H2_FILTER_HEADER_BYTES 9
#define H2_FILTER_TYPE_RST_STREAM 0x3
#define H2_FILTER_RST_STREAM_LENGTH 4

struct h2_filter_ops {
    /* Bytes to hand on (borrowed for the call). 0 to go on, anything else
     * stops h2_filter_feed, which returns it. */
    int (*pass)(void *ud, const uint8_t *data, size_t len);
    /* Is stream_id (31 bits, non-zero) idle? Called with every byte before
     * the RST_STREAM frame already passed. */
    bool (*is_idle)(void *ud, uint32_t stream_id);
};

struct h2_filter {
    uint8_t hdr[H2_FILTER_HEADER_BYTES]; /* a frame header split across chunks */
    size_t hdr_have;                     /* bytes of hdr held (0..8) */
    uint32_t payload_left;               /* bytes of the current payload to go */
    bool dropping;                       /* ... which are dropped, not passed */
    uint64_t dropped_frames;             /* RST_STREAM frames dropped so far */
};

/* Starts at a frame boundary (right after the client preface). */
void h2_filter_init(struct h2_filter *f);

/* Scans data, calling ops->pass for the bytes to keep and ops->is_idle for
 * each well-formed RST_STREAM frame (length 4, stream id non-zero); frames
 * of other lengths pass, so the receiver reports them as it should.
 * Returns 0, or the first non-zero value of ops->pass (the filter's state is
 * then undefined: stop feeding). */
int h2_filter_feed(struct h2_filter *f, const uint8_t *data, size_t len,
                   const struct h2_filter_ops *ops, void *ud);

#endif

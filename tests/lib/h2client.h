/* A small blocking HTTP/2 (nghttp2) gRPC client for tests: h2c or TLS (ALPN
 * h2, no certificate check), many streams on one connection, raw DATA
 * bytes in, raw response bytes and trailers out. Not thread-safe: one
 * client per thread. */
#ifndef LSKV_TESTS_H2CLIENT_H
#define LSKV_TESTS_H2CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct h2client h2client;

struct h2client_stream {
    int32_t id;
    bool closed;           /* stream closed (normally or reset) */
    uint32_t close_code;   /* error code from on_stream_close */
    bool reset_by_peer;    /* RST_STREAM received */
    int http_status;       /* :status, 0 if none */
    int grpc_status;       /* -1 if none */
    char grpc_message[512]; /* percent-decoded */
    char content_type[64];
    int n_header_frames;   /* HEADERS frames received */
    int n_data_frames;     /* DATA frames with payload received */
    uint8_t *body;         /* concatenated DATA payload */
    size_t body_len;
};

/* Connects (blocking). Returns 0 or -1. */
int h2client_connect(const char *host, uint16_t port, bool tls, h2client **out);
void h2client_close(h2client *cl);

/* Starts a POST to path with content-type application/grpc and te: trailers;
 * extra is NULL or a NULL-terminated list of name, value pairs. data (copied)
 * is sent as DATA; end_stream half-closes after it. Returns the stream id or
 * -1. */
int32_t h2client_start(h2client *cl, const char *path, const char *const *extra,
                       const uint8_t *data, size_t len, bool end_stream);
/* More DATA on a started stream. Returns 0 or -1. */
int h2client_send(h2client *cl, int32_t id, const uint8_t *data, size_t len, bool end_stream);
/* RST_STREAM(CANCEL). */
int h2client_rst(h2client *cl, int32_t id);

/* Does I/O until stream id (0: every stream) is closed. Returns 0, or -1 on
 * timeout or when the connection ended first. */
int h2client_wait(h2client *cl, int32_t id, int timeout_ms);
/* Does I/O for about ms milliseconds. Returns -1 if the connection ended. */
int h2client_pump(h2client *cl, int ms);

struct h2client_stream *h2client_stream(h2client *cl, int32_t id);
bool h2client_goaway(const h2client *cl);
bool h2client_eof(const h2client *cl);

/* A gRPC-framed copy of msg (5-byte prefix); *out_len gets its size. */
uint8_t *h2client_frame(const uint8_t *msg, size_t len, size_t *out_len);
/* The i-th message in a response body; returns 0 or -1. */
int h2client_message(const struct h2client_stream *s, size_t i, const uint8_t **msg,
                     size_t *len);

/* A connected plain TCP socket fd, or -1. */
int h2client_tcp_connect(const char *host, uint16_t port);

#endif

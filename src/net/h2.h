/* One server-side HTTP/2 connection: a libuv TCP socket (optionally TLS)
 * pumping bytes through an nghttp2 session.
 *
 * The layer above (grpc_server.c) supplies the nghttp2 callbacks and their
 * user data; this module owns the socket, the TLS state and the session:
 * the client preface check, the server's first SETTINGS (with generous flow
 * control windows), reading, writing with bounded buffering, GOAWAY and
 * closing. Everything runs on the loop thread.
 *
 * Life cycle: h2_conn_accept (or h2_conn_open_mem) -> ... -> hooks.on_close
 * (exactly once: the connection is going away, no nghttp2 callback follows)
 * -> hooks.on_free (exactly once: every handle is closed and the connection
 * is freed). */
#ifndef LSKV_NET_H2_H
#define LSKV_NET_H2_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "net/tls.h"

typedef struct h2_conn h2_conn;

/* Flow control: what one stream and the whole connection may have in flight
 * towards us. We consume DATA as it arrives, so these only pace the peer. */
#define H2_STREAM_WINDOW_BYTES (1u << 20)
#define H2_CONN_WINDOW_BYTES (16u << 20)
#define H2_MAX_CONCURRENT_STREAMS 4096u
/* Output queued in the socket above this: stop reading and producing. */
#define H2_WRITE_HIGH_WATER_BYTES (4u << 20)
/* Time a new connection has for its TLS handshake and first request bytes
 * (h2.c note 7). */
#define H2_HANDSHAKE_MS 10000

struct h2_conn_hooks {
    void (*on_close)(void *ud);
    void (*on_free)(void *ud);
    /* Hook for the HTTP/1.1 JSON gateway: the first bytes were not the
     * HTTP/2 client preface. NULL: answer "505 HTTP Version Not Supported"
     * and close. When set, it receives every byte read from then on and
     * owns the connection (h2_conn_write_raw, h2_conn_end, h2_conn_close). */
    void (*on_http1)(void *ud, h2_conn *c, const uint8_t *data, size_t len);
};

struct h2_conn_config {
    const nghttp2_session_callbacks *callbacks; /* borrowed; copied by nghttp2 */
    void *ud;                        /* nghttp2 user data and hook argument */
    const struct h2_conn_hooks *hooks; /* borrowed, must outlive the connection */
    tls_ctx *tls;                    /* NULL: h2c; borrowed, must outlive */
    uint32_t max_streams;            /* SETTINGS_MAX_CONCURRENT_STREAMS; 0 = the
                                        H2_MAX_CONCURRENT_STREAMS bound */
};

/* Accepts a connection from the listening stream server. If this returns 0,
 * hooks->on_free will be called exactly once (even when the accept itself
 * fails later in this call). Errors: LSKV_ENOMEM (nothing to free). */
int h2_conn_accept(uv_stream_t *server, const struct h2_conn_config *cfg, h2_conn **out);

/* A connection without a socket (fuzzing, tests): input comes from
 * h2_conn_feed, output is counted and dropped. It may close itself (protocol
 * error, server shutdown) but is freed only by h2_conn_close, which the
 * caller must call exactly once. Errors: LSKV_ENOMEM. */
int h2_conn_open_mem(const struct h2_conn_config *cfg, h2_conn **out);
/* Feeds bytes as if read from the socket; then flushes. No-op once closing. */
void h2_conn_feed(h2_conn *c, const uint8_t *data, size_t len);
/* Output bytes produced so far (mem connections). */
size_t h2_conn_output_bytes(const h2_conn *c);

/* The session, for nghttp2_submit_* and friends; NULL once closing. */
nghttp2_session *h2_conn_session(h2_conn *c);

/* Frames were submitted or data resumed outside of an nghttp2 callback:
 * write them soon (coalesced, before the loop next polls). */
void h2_conn_kick(h2_conn *c);

/* Sends GOAWAY, writes what it can and closes. Idempotent. */
void h2_conn_shutdown(h2_conn *c);

/* Closes at once (pending output is dropped). Idempotent for socket
 * connections; for memory connections it also releases them (see above). */
void h2_conn_close(h2_conn *c);

/* Raw bytes for the HTTP/1.1 hook. Errors: LSKV_ESHUTDOWN when closing. */
int h2_conn_write_raw(h2_conn *c, const uint8_t *data, size_t len);

/* Raw mode: closes the connection (gracefully) unless called again within
 * ms; 0 disarms. No-op once closing and for memory connections. */
void h2_conn_set_idle_timeout(h2_conn *c, uint64_t ms);

/* Raw mode: closes at once (pending output dropped), but from the loop,
 * not inside this call: the caller may be deep in a callback. No-op once
 * closing and for memory connections. */
void h2_conn_abort_soon(h2_conn *c);
/* Output bytes written and not yet taken by the socket. */
size_t h2_conn_queued_bytes(const h2_conn *c);
/* Raw mode: closes once what was written is out (graceful). Idempotent. */
void h2_conn_end(h2_conn *c);

/* "ip:port" of the peer ("mem" for memory connections). */
const char *h2_conn_peer(const h2_conn *c);
/* The CN of the client's verified TLS certificate (tls_conn_peer_cn), or
 * NULL (no TLS, no verified certificate, no CN). Borrowed: valid while c is. */
const char *h2_conn_cert_cn(h2_conn *c);

#endif

/* A minimal gRPC client (lskv-bench, lskvctl): unary and bidirectional
 * streaming calls over HTTP/2 (nghttp2) on libuv TCP connections, cleartext (h2c with prior knowledge, http://) or TLS
 * with ALPN h2 (https://). One connection carries many concurrent calls;
 * every call is a new stream. Single-threaded: everything runs on one loop.
 *
 * Errors are negative libuv codes (UV_ECONNREFUSED, UV_EPROTO, ...); the
 * functions that take an errmsg buffer (LSKV_ERRMSG_SIZE bytes) also describe
 * the failure there. */
#ifndef LSKV_CLIENT_GRPC_CLIENT_H
#define LSKV_CLIENT_GRPC_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct ssl_ctx_st;
struct gconn; /* opaque: one HTTP/2 connection */

/* A parsed endpoint: "http://host:port", "https://host:port" or "host:port"
 * (cleartext). */
struct gendpoint {
    char host[256];
    int port;
    int tls;             /* 1 for https:// */
    char authority[280]; /* host:port, the :authority header */
};

/* Parses url into ep. Errors: UV_EINVAL (errmsg says why). */
int gendpoint_parse(const char *url, struct gendpoint *ep, char *errmsg);

/* A TLS client context with ALPN "h2". cacert: PEM file of trusted CAs, or
 * NULL for the system store; cert/key: client certificate and key files, or
 * NULL; insecure: do not verify the server. The caller frees the result with
 * SSL_CTX_free. Errors: UV_EINVAL (a file could not be loaded). */
int gtls_ctx_new(const char *cacert, const char *cert, const char *key, int insecure,
                 struct ssl_ctx_st **out, char *errmsg);

/* Called once per gconn_open that returned 0: status 0 when the connection
 * is ready for calls (TCP connected, TLS done, the server's HTTP/2 SETTINGS
 * received), negative otherwise (errmsg of gconn_errmsg says why; the
 * connection must still be closed). */
typedef void (*gconn_ready_cb)(struct gconn *c, int status, void *arg);

/* Starts connecting to ep (host resolved synchronously). tls_ctx is required
 * for an https endpoint and borrowed until gconn_close's callback. On 0,
 * *out is the connection and ready_cb will be called exactly once.
 * Errors: UV_EINVAL (tls endpoint without tls_ctx), UV_EAI_* (resolution),
 * UV_ENOMEM, other libuv codes from uv_tcp_connect. */
int gconn_open(uv_loop_t *loop, const struct gendpoint *ep, struct ssl_ctx_st *tls_ctx,
               gconn_ready_cb ready_cb, void *arg, struct gconn **out, char *errmsg);

/* Why the connection failed or closed; "" while it is healthy. */
const char *gconn_errmsg(const struct gconn *c);

/* Closes the connection: calls still active complete with UV_ECANCELED, then
 * close_cb (may be NULL) runs once the handles are closed and c is freed. */
void gconn_close(struct gconn *c, void (*close_cb)(void *arg), void *arg);

/* One call. The caller owns the struct, fills the request fields and keeps
 * it (and msg) alive until done is called.
 *
 * Unary (on_message NULL): msg is the request; the response accumulates in
 * resp and is read with gcall_message inside done.
 *
 * Streaming (on_message set, e.g. Watch, LeaseKeepAlive): msg, when not
 * NULL, is the first request message (copied at gcall_start); more follow
 * with gcall_send, and gcall_close_send half-closes the request side. Every
 * complete response message is handed to on_message as it arrives (resp
 * only buffers a partial one); done is called once when the stream ends
 * (the server's trailers, a reset, or the connection failing or closing:
 * err UV_ECANCELED after gconn_close). */
struct gcall {
    /* request */
    const char *path;    /* "/etcdserverpb.KV/Put"; borrowed */
    const uint8_t *msg;  /* serialized request message, borrowed */
    size_t msg_len;      /* bytes of msg */
    void (*done)(struct gcall *call); /* called once when the call ends */
    /* streaming calls: one response message (without the gRPC prefix),
     * valid during the callback. It may call gcall_send, or gconn_close
     * (then done runs first and no more messages are delivered); it must
     * not free the call. */
    void (*on_message)(struct gcall *call, const uint8_t *msg, size_t len);
    void *data;          /* for the caller */

    /* result, valid inside done (reset by gcall_start) */
    int err;             /* 0, or negative: the stream or connection failed */
    uint32_t h2_error;   /* RST_STREAM / GOAWAY error code when err != 0 */
    int http_status;     /* :status, 0 when none arrived */
    int grpc_status;     /* grpc-status, -1 when none arrived */
    char grpc_message[160]; /* grpc-message (as sent, percent-encoded) */
    uint8_t *resp;       /* raw response body (gRPC framed); owned by the call */
    size_t resp_len;     /* bytes in resp */
    size_t resp_cap;     /* allocated bytes of resp (reused between calls) */

    /* private */
    struct gconn *conn_;
    int32_t stream_id_;
    size_t sent_;
    uint8_t prefix_[5];
    uint8_t *out_;       /* streaming: framed messages not yet sent */
    size_t out_len_, out_cap_;
    int out_closed_;     /* streaming: gcall_close_send was called */
    int deferred_;       /* streaming: nghttp2 waits for gcall_send */
    struct gcall *next_, *prev_; /* the connection's active calls */
};

/* Prepares a call struct (zeroes it). Pair with gcall_free. */
void gcall_init(struct gcall *call);
/* Frees the response and send buffers. The call must not be active. */
void gcall_free(struct gcall *call);

/* Starts call on c. The request is framed (5-byte gRPC prefix) and sent with
 * content-type application/grpc and te: trailers; frames go out on the next
 * loop iteration. If this returns 0, done is called exactly once (err < 0
 * when the stream or connection failed, otherwise check http_status and
 * grpc_status). Errors (done is not called): UV_ENOTCONN (the connection is
 * not ready or has failed), UV_ENOMEM. */
int gcall_start(struct gconn *c, struct gcall *call);

/* Streaming calls: queues one request message (framed, copied) on the
 * active call; frames go out on the next loop iteration. Errors:
 * UV_ENOTCONN (the call is not active or its request side is closed),
 * UV_EINVAL (not a streaming call), UV_ENOMEM. */
int gcall_send(struct gcall *call, const uint8_t *msg, size_t len);

/* Streaming calls: ends the request side (END_STREAM after what is queued);
 * the server's answers keep coming until it ends the stream. No-op when the
 * call is not active. */
void gcall_close_send(struct gcall *call);

/* The response message of a finished unary call: exactly one uncompressed gRPC
 * frame is expected. On 0, *msg / *len point into call->resp (valid until the
 * call is restarted or freed). Errors: UV_EPROTO (no frame, several frames,
 * compressed, or length mismatch). */
int gcall_message(const struct gcall *call, const uint8_t **msg, size_t *len);

#endif

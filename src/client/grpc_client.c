/* gRPC unary and streaming calls over nghttp2 on libuv (see grpc_client.h).
 *
 * Data flow. Reads: TCP bytes -> (TLS: memory BIO -> SSL_read) ->
 * nghttp2_session_mem_recv, whose callbacks fill the active gcall and finish
 * it on stream close. Writes never happen inside callbacks: anything that may
 * produce frames marks the connection dirty by starting its uv_prepare
 * handle, which runs once per loop iteration before libuv polls and moves
 * everything nghttp2 has queued (through SSL_write and the write BIO for TLS)
 * into a single uv_write. That batches all the requests issued during one
 * iteration into one system call, which is what keeps a single-threaded load
 * generator cheap.
 *
 * Failure. Once a connection fails it is "dead": the nghttp2 session is kept
 * (it may be inside a callback) but never driven again, every active call is
 * finished with the error, and new calls are refused. The session is deleted
 * only in the close callback, when no nghttp2 frame can be on the stack. */
#include "client/grpc_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/url.h"

#define READY_TIMEOUT_MS 10000     /* connect + TLS + server SETTINGS */
#define STREAM_WINDOW (1u << 24)   /* per-stream receive window */
#define CONN_WINDOW (1 << 30)      /* connection receive window */

struct wreq {
    uv_write_t req;
    size_t len, cap;
    uint8_t data[];
};

struct gconn {
    uv_loop_t *loop;
    uv_tcp_t tcp;
    uv_prepare_t prepare;
    uv_timer_t timer;
    uv_connect_t connect_req;
    struct gendpoint ep;
    SSL_CTX *tls_ctx;
    SSL *ssl;          /* NULL for cleartext */
    BIO *rbio, *wbio;  /* network -> ssl, ssl -> network (owned by ssl) */
    int handshake_done;
    nghttp2_session *h2;
    gconn_ready_cb ready_cb;
    void *ready_arg;
    int ready_reported;
    int ready_pending; /* server SETTINGS seen, report after mem_recv */
    int dead;
    int closing;
    int handles_open;
    void (*close_cb)(void *arg);
    void *close_arg;
    struct gcall *calls; /* active calls, doubly linked */
    char errmsg[LSKV_ERRMSG_SIZE];
    uint8_t rbuf[65536];
    uint8_t plain[65536];
};

static void schedule_flush(struct gconn *c);

/* ---- endpoints and TLS context ------------------------------------------ */

int gendpoint_parse(const char *url, struct gendpoint *ep, char *errmsg)
{
    memset(ep, 0, sizeof *ep);
    struct url u;
    if (url_parse(url, URL_SCHEME_OPTIONAL, &u, errmsg) != 0)
        return UV_EINVAL;
    if (u.port == 0) {
        errmsg_printf(errmsg, "%s: bad port", url);
        return UV_EINVAL;
    }
    memcpy(ep->host, u.host, sizeof ep->host);
    ep->port = u.port;
    ep->tls = u.tls;
    snprintf(ep->authority, sizeof ep->authority, "%s", u.hostport);
    return 0;
}

static const char *ssl_errstr(void)
{
    static char buf[200];
    unsigned long e = ERR_get_error();
    if (e == 0)
        return "unknown TLS error";
    ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    return buf;
}

int gtls_ctx_new(const char *cacert, const char *cert, const char *key, int insecure,
                 SSL_CTX **out, char *errmsg)
{
    static const unsigned char alpn[] = "\x02h2";
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        errmsg_printf(errmsg, "SSL_CTX_new: %s", ssl_errstr());
        return UV_ENOMEM;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1);
    if (insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        int ok = cacert ? SSL_CTX_load_verify_locations(ctx, cacert, NULL)
                        : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            errmsg_printf(errmsg, "%s: %s", cacert ? cacert : "system CA store", ssl_errstr());
            goto err;
        }
    }
    if (cert != NULL || key != NULL) {
        if (cert == NULL || key == NULL) {
            errmsg_printf(errmsg, "a client certificate needs both --cert and --key");
            goto err;
        }
        if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
            errmsg_printf(errmsg, "%s: %s", cert, ssl_errstr());
            goto err;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
            errmsg_printf(errmsg, "%s: %s", key, ssl_errstr());
            goto err;
        }
    }
    *out = ctx;
    return 0;
err:
    SSL_CTX_free(ctx);
    return UV_EINVAL;
}

/* ---- connection failure ----------------------------------------------- */

static void call_unlink(struct gconn *c, struct gcall *call)
{
    struct gcall **prev = call->prev_ ? &call->prev_->next_ : &c->calls;
    *prev = call->next_;
    if (call->next_)
        call->next_->prev_ = call->prev_;
    call->next_ = call->prev_ = NULL;
    call->conn_ = NULL;
}

static void call_finish(struct gconn *c, struct gcall *call)
{
    if (c->h2 && call->stream_id_ > 0)
        nghttp2_session_set_stream_user_data(c->h2, call->stream_id_, NULL);
    call_unlink(c, call);
    call->done(call);
}

static void report_ready(struct gconn *c, int status)
{
    if (c->ready_reported)
        return;
    c->ready_reported = 1;
    uv_timer_stop(&c->timer);
    c->ready_cb(c, status, c->ready_arg);
}

__attribute__((format(printf, 3, 4))) static void conn_fail(struct gconn *c, int status,
                                                            const char *fmt, ...)
{
    if (!c->dead) {
        c->dead = 1;
        if (c->errmsg[0] == '\0') {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
            va_end(ap);
        }
        if (!c->closing)
            uv_read_stop((uv_stream_t *)&c->tcp);
    }
    report_ready(c, status);
    /* Pop one at a time: a done callback may close the connection, which
     * drains the list itself. */
    while (c->calls != NULL) {
        struct gcall *call = c->calls;
        call->err = status;
        call_finish(c, call);
    }
}

const char *gconn_errmsg(const struct gconn *c)
{
    return c->errmsg;
}

/* Grows *buf (*cap bytes, doubling from 256) to hold need bytes.
 * Errors: UV_ENOMEM (*buf is unchanged). */
static int buf_reserve(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need)
        n *= 2;
    uint8_t *p = realloc(*buf, n);
    if (p == NULL)
        return UV_ENOMEM;
    *buf = p;
    *cap = n;
    return 0;
}

/* ---- nghttp2 callbacks -------------------------------------------------- */

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    (void)flags, (void)user;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    struct gcall *call = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
    if (call == NULL)
        return 0;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        call->http_status = 0;
        for (size_t i = 0; i < valuelen && i < 4; i++)
            call->http_status = call->http_status * 10 + (value[i] - '0');
    } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        int st = 0;
        for (size_t i = 0; i < valuelen; i++) {
            if (value[i] < '0' || value[i] > '9' || i >= 4) {
                st = 2; /* UNKNOWN: not a status number */
                break;
            }
            st = st * 10 + (value[i] - '0');
        }
        call->grpc_status = st;
    } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
        size_t n = valuelen < sizeof call->grpc_message - 1 ? valuelen
                                                             : sizeof call->grpc_message - 1;
        memcpy(call->grpc_message, value, n);
        call->grpc_message[n] = '\0';
    }
    return 0;
}

/* Streaming calls: hands every complete gRPC message buffered in resp to
 * on_message and keeps the partial rest. */
static int deliver_messages(struct gconn *c, struct gcall *call)
{
    size_t off = 0;
    while (call->resp_len - off >= 5) {
        const uint8_t *p = call->resp + off;
        size_t n = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | p[4];
        if (p[0] != 0) {
            if (c->errmsg[0] == '\0')
                snprintf(c->errmsg, sizeof c->errmsg, "%s: compressed gRPC message", call->path);
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        if (call->resp_len - off - 5 < n)
            break;
        call->on_message(call, p + 5, n);
        if (call->conn_ != c) { /* finished inside the callback */
            call->resp_len = 0;
            return 0;
        }
        off += 5 + n;
    }
    if (off > 0) {
        memmove(call->resp, call->resp + off, call->resp_len - off);
        call->resp_len -= off;
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t stream_id,
                         const uint8_t *data, size_t len, void *user)
{
    (void)flags, (void)user;
    struct gcall *call = nghttp2_session_get_stream_user_data(s, stream_id);
    if (call == NULL)
        return 0;
    if (buf_reserve(&call->resp, &call->resp_cap, call->resp_len + len) != 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    memcpy(call->resp + call->resp_len, data, len);
    call->resp_len += len;
    return call->on_message ? deliver_messages(user, call) : 0;
}

static int on_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t error_code,
                           void *user)
{
    struct gconn *c = user;
    struct gcall *call = nghttp2_session_get_stream_user_data(s, stream_id);
    if (call == NULL || c->dead)
        return 0;
    if (error_code != NGHTTP2_NO_ERROR) {
        call->err = UV_EPROTO;
        call->h2_error = error_code;
    }
    call_finish(c, call);
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *user)
{
    (void)s;
    struct gconn *c = user;
    if (frame->hd.type == NGHTTP2_SETTINGS && !(frame->hd.flags & NGHTTP2_FLAG_ACK))
        c->ready_pending = 1;
    if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR &&
        c->errmsg[0] == '\0')
        snprintf(c->errmsg, sizeof c->errmsg, "server sent GOAWAY (%s)",
                 nghttp2_http2_strerror(frame->goaway.error_code));
    return 0;
}

static ssize_t read_request(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length,
                            uint32_t *data_flags, nghttp2_data_source *source, void *user)
{
    (void)s, (void)stream_id, (void)user;
    struct gcall *call = source->ptr;
    if (call->on_message != NULL) { /* streaming: what gcall_send queued */
        size_t n = call->out_len_ - call->sent_;
        if (n == 0 && !call->out_closed_) {
            call->deferred_ = 1;
            return NGHTTP2_ERR_DEFERRED;
        }
        if (n > length)
            n = length;
        memcpy(buf, call->out_ + call->sent_, n);
        call->sent_ += n;
        if (call->sent_ == call->out_len_) {
            call->sent_ = call->out_len_ = 0;
            if (call->out_closed_)
                *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        }
        return (ssize_t)n;
    }
    size_t total = sizeof call->prefix_ + call->msg_len, n = 0;
    while (n < length && call->sent_ < total) {
        size_t chunk;
        if (call->sent_ < sizeof call->prefix_) {
            chunk = sizeof call->prefix_ - call->sent_;
            if (chunk > length - n)
                chunk = length - n;
            memcpy(buf + n, call->prefix_ + call->sent_, chunk);
        } else {
            size_t off = call->sent_ - sizeof call->prefix_;
            chunk = call->msg_len - off;
            if (chunk > length - n)
                chunk = length - n;
            memcpy(buf + n, call->msg + off, chunk);
        }
        n += chunk;
        call->sent_ += chunk;
    }
    if (call->sent_ == total)
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int start_h2(struct gconn *c)
{
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        return UV_ENOMEM;
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    int rv = nghttp2_session_client_new(&c->h2, cbs, c);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0)
        return UV_ENOMEM;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
    };
    if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0 ||
        nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW) != 0)
        return UV_ENOMEM;
    schedule_flush(c);
    return 0;
}

/* ---- writing ----------------------------------------------------------- */

static int wreq_append(struct wreq **w, const uint8_t *data, size_t len)
{
    size_t need = (*w ? (*w)->len : 0) + len;
    if (*w == NULL || need > (*w)->cap) {
        size_t cap = *w ? (*w)->cap : 16384;
        while (cap < need)
            cap *= 2;
        struct wreq *n = realloc(*w, sizeof **w + cap);
        if (n == NULL)
            return UV_ENOMEM;
        if (*w == NULL)
            n->len = 0;
        n->cap = cap;
        *w = n;
    }
    memcpy((*w)->data + (*w)->len, data, len);
    (*w)->len += len;
    return 0;
}

static void on_write(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct gconn *c = req->data;
    free(w);
    if (status < 0 && !c->dead && !c->closing)
        conn_fail(c, status, "write: %s", uv_strerror(status));
}

static void flush(struct gconn *c)
{
    if (c->dead || c->closing)
        return;
    struct wreq *w = NULL;
    int rv = 0;
    if (c->h2 != NULL) {
        for (;;) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(c->h2, &data);
            if (n < 0) {
                free(w);
                conn_fail(c, UV_EPROTO, "HTTP/2: %s", nghttp2_strerror((int)n));
                return;
            }
            if (n == 0)
                break;
            if (c->ssl != NULL) {
                if (SSL_write(c->ssl, data, (int)n) != (int)n) {
                    free(w);
                    conn_fail(c, UV_EPROTO, "TLS write: %s", ssl_errstr());
                    return;
                }
            } else if ((rv = wreq_append(&w, data, (size_t)n)) != 0) {
                break;
            }
        }
    }
    if (c->ssl != NULL && rv == 0) {
        uint8_t buf[16384];
        int n;
        while ((n = BIO_read(c->wbio, buf, sizeof buf)) > 0)
            if ((rv = wreq_append(&w, buf, (size_t)n)) != 0)
                break;
    }
    if (rv != 0) {
        free(w);
        conn_fail(c, rv, "out of memory");
        return;
    }
    if (w != NULL) {
        uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)w->len);
        w->req.data = c;
        rv = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
        if (rv != 0) {
            free(w);
            conn_fail(c, rv, "write: %s", uv_strerror(rv));
            return;
        }
    }
    if (c->h2 != NULL && !nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2))
        conn_fail(c, UV_ECONNRESET, "server ended the HTTP/2 session");
}

static void on_prepare(uv_prepare_t *h)
{
    struct gconn *c = h->data;
    uv_prepare_stop(h);
    flush(c);
}

static void schedule_flush(struct gconn *c)
{
    if (!c->dead && !c->closing)
        uv_prepare_start(&c->prepare, on_prepare);
}

/* ---- reading ----------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct gconn *c = h->data;
    *buf = uv_buf_init((char *)c->rbuf, sizeof c->rbuf);
}

static void feed_h2(struct gconn *c, const uint8_t *data, size_t len)
{
    ssize_t n = nghttp2_session_mem_recv(c->h2, data, len);
    if (n < 0) {
        conn_fail(c, UV_EPROTO, "HTTP/2: %s", nghttp2_strerror((int)n));
        return;
    }
    if (c->ready_pending && !c->ready_reported && !c->dead && !c->closing)
        report_ready(c, 0);
    schedule_flush(c);
}

static void tls_handshake(struct gconn *c)
{
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        const unsigned char *proto;
        unsigned len;
        SSL_get0_alpn_selected(c->ssl, &proto, &len);
        if (len != 2 || memcmp(proto, "h2", 2) != 0) {
            conn_fail(c, UV_EPROTO, "TLS: the server did not negotiate HTTP/2 (ALPN h2)");
            return;
        }
        c->handshake_done = 1;
        int rv = start_h2(c);
        if (rv != 0)
            conn_fail(c, rv, "HTTP/2 session: %s", uv_strerror(rv));
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        schedule_flush(c);
        return;
    }
    long vr = SSL_get_verify_result(c->ssl);
    if (vr != X509_V_OK)
        conn_fail(c, UV_EPROTO, "TLS handshake: certificate verification failed: %s",
                  X509_verify_cert_error_string(vr));
    else
        conn_fail(c, UV_EPROTO, "TLS handshake: %s", ssl_errstr());
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct gconn *c = s->data;
    if (c->dead || c->closing || nread == 0)
        return;
    if (nread < 0) {
        const char *when = c->ssl && !c->handshake_done ? "TLS handshake: "
                           : !c->ready_reported           ? "HTTP/2 setup: "
                                                          : "";
        conn_fail(c, (int)nread, "%s%s", when,
                  nread == UV_EOF ? "server closed the connection" : uv_strerror((int)nread));
        return;
    }
    if (c->ssl == NULL) {
        feed_h2(c, (const uint8_t *)buf->base, (size_t)nread);
        return;
    }
    BIO_write(c->rbio, buf->base, (int)nread);
    if (!c->handshake_done) {
        tls_handshake(c);
        if (!c->handshake_done)
            return;
    }
    for (;;) {
        int n = SSL_read(c->ssl, c->plain, sizeof c->plain);
        if (n > 0) {
            feed_h2(c, c->plain, (size_t)n);
            if (c->dead || c->closing)
                return;
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ)
            break;
        if (e == SSL_ERROR_ZERO_RETURN)
            conn_fail(c, UV_EOF, "server closed the TLS connection");
        else
            conn_fail(c, UV_EPROTO, "TLS read: %s", ssl_errstr());
        return;
    }
    schedule_flush(c); /* TLS 1.3 may have something to say back */
}

/* ---- connecting -------------------------------------------------------- */

static void on_ready_timeout(uv_timer_t *t)
{
    struct gconn *c = t->data;
    conn_fail(c, UV_ETIMEDOUT, "no HTTP/2 SETTINGS from the server within %d ms",
              READY_TIMEOUT_MS);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct gconn *c = req->data;
    if (c->closing)
        return;
    if (status < 0) {
        conn_fail(c, status, "connect: %s", uv_strerror(status));
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    int rv = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rv != 0) {
        conn_fail(c, rv, "read: %s", uv_strerror(rv));
        return;
    }
    if (c->ssl == NULL) {
        rv = start_h2(c);
        if (rv != 0)
            conn_fail(c, rv, "HTTP/2 session: %s", uv_strerror(rv));
        return;
    }
    tls_handshake(c);
}

static int setup_tls(struct gconn *c, char *errmsg)
{
    c->ssl = SSL_new(c->tls_ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (c->ssl == NULL || c->rbio == NULL || c->wbio == NULL) {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        c->rbio = c->wbio = NULL;
        errmsg_printf(errmsg, "TLS: %s", ssl_errstr());
        return UV_ENOMEM;
    }
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_connect_state(c->ssl);
    unsigned char addr[16];
    int is_ip = inet_pton(AF_INET, c->ep.host, addr) == 1 ||
                inet_pton(AF_INET6, c->ep.host, addr) == 1;
    X509_VERIFY_PARAM *param = SSL_get0_param(c->ssl);
    if (is_ip) {
        X509_VERIFY_PARAM_set1_ip_asc(param, c->ep.host);
    } else {
        SSL_set_tlsext_host_name(c->ssl, c->ep.host);
        X509_VERIFY_PARAM_set1_host(param, c->ep.host, 0);
    }
    return 0;
}

static void on_handle_closed(uv_handle_t *h)
{
    struct gconn *c = h->data;
    if (--c->handles_open > 0)
        return;
    if (c->h2)
        nghttp2_session_del(c->h2);
    if (c->ssl)
        SSL_free(c->ssl);
    void (*cb)(void *) = c->close_cb;
    void *arg = c->close_arg;
    free(c);
    if (cb)
        cb(arg);
}

int gconn_open(uv_loop_t *loop, const struct gendpoint *ep, SSL_CTX *tls_ctx,
               gconn_ready_cb ready_cb, void *arg, struct gconn **out, char *errmsg)
{
    if (ep->tls && tls_ctx == NULL) {
        errmsg_printf(errmsg, "%s: TLS endpoint without a TLS context", ep->authority);
        return UV_EINVAL;
    }
    char port[8];
    snprintf(port, sizeof port, "%d", ep->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    uv_getaddrinfo_t gai;
    int rv = uv_getaddrinfo(loop, &gai, NULL, ep->host, port, &hints);
    if (rv != 0) {
        errmsg_printf(errmsg, "%s: %s", ep->host, uv_strerror(rv));
        return rv;
    }
    struct gconn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        uv_freeaddrinfo(gai.addrinfo);
        errmsg_printf(errmsg, "out of memory");
        return UV_ENOMEM;
    }
    c->loop = loop;
    c->ep = *ep;
    c->tls_ctx = tls_ctx;
    c->ready_cb = ready_cb;
    c->ready_arg = arg;
    if (ep->tls && (rv = setup_tls(c, errmsg)) != 0) {
        uv_freeaddrinfo(gai.addrinfo);
        free(c);
        return rv;
    }
    uv_tcp_init(loop, &c->tcp);
    uv_prepare_init(loop, &c->prepare);
    uv_timer_init(loop, &c->timer);
    c->tcp.data = c->prepare.data = c->timer.data = c->connect_req.data = c;
    c->handles_open = 3;
    rv = uv_tcp_connect(&c->connect_req, &c->tcp, gai.addrinfo->ai_addr, on_connect);
    uv_freeaddrinfo(gai.addrinfo);
    if (rv != 0) {
        errmsg_printf(errmsg, "%s: connect: %s", ep->authority, uv_strerror(rv));
        c->closing = 1;
        uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
        uv_close((uv_handle_t *)&c->prepare, on_handle_closed);
        uv_close((uv_handle_t *)&c->timer, on_handle_closed);
        return rv;
    }
    uv_timer_start(&c->timer, on_ready_timeout, READY_TIMEOUT_MS, 0);
    *out = c;
    return 0;
}

void gconn_close(struct gconn *c, void (*close_cb)(void *arg), void *arg)
{
    if (c->closing)
        return;
    c->close_cb = close_cb;
    c->close_arg = arg;
    conn_fail(c, UV_ECANCELED, "closed");
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->prepare, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

/* ---- calls ------------------------------------------------------------- */

void gcall_init(struct gcall *call)
{
    memset(call, 0, sizeof *call);
}

void gcall_free(struct gcall *call)
{
    free(call->resp);
    call->resp = NULL;
    call->resp_cap = call->resp_len = 0;
    free(call->out_);
    call->out_ = NULL;
    call->out_cap_ = call->out_len_ = 0;
}

/* Appends one framed message to a streaming call's send buffer. */
static int queue_message(struct gcall *call, const uint8_t *msg, size_t len)
{
    if (call->sent_ > 0) { /* drop what nghttp2 has taken */
        memmove(call->out_, call->out_ + call->sent_, call->out_len_ - call->sent_);
        call->out_len_ -= call->sent_;
        call->sent_ = 0;
    }
    size_t need = call->out_len_ + 5 + len;
    if (buf_reserve(&call->out_, &call->out_cap_, need) != 0)
        return UV_ENOMEM;
    uint8_t *p = call->out_ + call->out_len_;
    p[0] = 0; /* not compressed */
    p[1] = (uint8_t)(len >> 24);
    p[2] = (uint8_t)(len >> 16);
    p[3] = (uint8_t)(len >> 8);
    p[4] = (uint8_t)len;
    if (len > 0)
        memcpy(p + 5, msg, len);
    call->out_len_ = need;
    return 0;
}

/* Lets nghttp2 read a streaming call's request data again. */
static void resume_sending(struct gcall *call)
{
    struct gconn *c = call->conn_;
    if (call->deferred_) {
        call->deferred_ = 0;
        nghttp2_session_resume_data(c->h2, call->stream_id_);
    }
    schedule_flush(c);
}

int gcall_send(struct gcall *call, const uint8_t *msg, size_t len)
{
    if (call->on_message == NULL)
        return UV_EINVAL;
    if (call->conn_ == NULL || call->conn_->dead || call->conn_->closing || call->out_closed_)
        return UV_ENOTCONN;
    int rv = queue_message(call, msg, len);
    if (rv == 0)
        resume_sending(call);
    return rv;
}

void gcall_close_send(struct gcall *call)
{
    if (call->on_message == NULL || call->conn_ == NULL || call->out_closed_ ||
        call->conn_->dead || call->conn_->closing)
        return;
    call->out_closed_ = 1;
    resume_sending(call);
}

int gcall_start(struct gconn *c, struct gcall *call)
{
    if (c->dead || c->closing || c->h2 == NULL || !c->ready_reported)
        return UV_ENOTCONN;
    call->err = 0;
    call->h2_error = 0;
    call->http_status = 0;
    call->grpc_status = -1;
    call->grpc_message[0] = '\0';
    call->resp_len = 0;
    call->sent_ = 0;
    call->prefix_[0] = 0; /* not compressed */
    call->prefix_[1] = (uint8_t)(call->msg_len >> 24);
    call->prefix_[2] = (uint8_t)(call->msg_len >> 16);
    call->prefix_[3] = (uint8_t)(call->msg_len >> 8);
    call->prefix_[4] = (uint8_t)call->msg_len;
    call->out_len_ = 0;
    call->out_closed_ = 0;
    call->deferred_ = 0;
    if (call->on_message != NULL && call->msg != NULL &&
        queue_message(call, call->msg, call->msg_len) != 0)
        return UV_ENOMEM;

#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), \
                  NGHTTP2_NV_FLAG_NO_COPY_NAME}
    const nghttp2_nv hdrs[] = {
        NV(":method", "POST"),
        NV(":scheme", c->ssl ? "https" : "http"),
        NV(":path", call->path),
        NV(":authority", c->ep.authority),
        NV("content-type", "application/grpc"),
        NV("te", "trailers"),
        NV("user-agent", "lskv-bench"),
    };
#undef NV
    nghttp2_data_provider prd = {.source.ptr = call, .read_callback = read_request};
    int32_t id = nghttp2_submit_request(c->h2, NULL, hdrs, sizeof hdrs / sizeof hdrs[0], &prd,
                                        call);
    if (id < 0)
        return id == NGHTTP2_ERR_NOMEM ? UV_ENOMEM : UV_ENOTCONN;
    call->stream_id_ = id;
    call->conn_ = c;
    call->prev_ = NULL;
    call->next_ = c->calls;
    if (c->calls)
        c->calls->prev_ = call;
    c->calls = call;
    schedule_flush(c);
    return 0;
}

int gcall_message(const struct gcall *call, const uint8_t **msg, size_t *len)
{
    if (call->resp_len < 5 || call->resp[0] != 0)
        return UV_EPROTO;
    size_t n = (size_t)call->resp[1] << 24 | (size_t)call->resp[2] << 16 |
               (size_t)call->resp[3] << 8 | call->resp[4];
    if (n != call->resp_len - 5)
        return UV_EPROTO;
    *msg = call->resp + 5;
    *len = n;
    return 0;
}

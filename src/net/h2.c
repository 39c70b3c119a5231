/* Notes on the design.
 *
 * (1) Nothing is written before the client's first bytes: they must be the
 *     HTTP/2 preface ("PRI * HTTP/2.0..."); otherwise the client speaks
 *     HTTP/1.1 and gets a plain-text answer (or the gateway hook) instead of
 *     binary SETTINGS. As soon as the preface is complete our SETTINGS go out
 *     first (grpc-go drops connections whose first frame is anything else).
 * (2) Output is produced by nghttp2_session_mem_send into one buffer per
 *     flush, which is handed to uv_write without a copy. While more than
 *     H2_WRITE_HIGH_WATER_BYTES are queued in the socket we neither produce
 *     nor read, so a client that does not read cannot make us buffer.
 * (3) Callbacks from the layer above may submit frames at any time: inside
 *     our own processing (in_io > 0) the flush at its end picks them up;
 *     otherwise a uv_prepare handle flushes before the loop next polls, so
 *     many sends in one loop iteration become one write.
 * (4) Protocol errors: nghttp2 queues GOAWAY; we write it and close this
 *     connection only.
 * (5) Frames after the preface pass through h2_filter, which drops
 *     RST_STREAM for idle streams (a call grpc-core cancels before sending
 *     its HEADERS) instead of letting nghttp2 kill the connection, as
 *     grpc-go does. A stream is idle when it is client-initiated (odd) and
 *     above the last one nghttp2 processed; the filter feeds everything
 *     before the frame first, so that number is current.
 * (6) Orderly close: unless the socket itself failed, a closing connection
 *     first writes what it queued (a GOAWAY, an answer), then shuts down
 *     its sending side (FIN), and reads and drops whatever the peer still
 *     sends until the peer's EOF or LINGER_MS. Closing a socket that has
 *     unread bytes, or a pending write, makes the kernel send a reset, which
 *     clients report as ECONNRESET; etcd (Go) never does that.
 * (7) A connection that has not finished its TLS handshake and sent its first
 *     request bytes (the HTTP/2 preface, or an HTTP/1.x request line) within
 *     H2_HANDSHAKE_MS is closed: a client that connects and stalls must not
 *     hold a connection for ever (the linger timer doubles as this timer).
 *     From then on HTTP/2 connections may idle (etcd keeps them too; their
 *     cost is small, note 8); the HTTP/1 hook sets its own idle timeout
 *     (h2_conn_set_idle_timeout, the same timer).
 * (8) Memory of a connection is allocated when needed, not at accept (issue 8
 *     point 6: thousands of idle or stalled sockets must cost a few kB
 *     each): socket reads and TLS plaintext go through one buffer each for
 *     the whole loop (read_buf, plain_buf), because every byte is consumed
 *     synchronously (nghttp2, the HTTP/1 hook) before the next read; the
 *     nghttp2 session exists from the completed preface on; OpenSSL's own
 *     state once the first TLS record (the ClientHello) is complete
 *     (tls.c); output buffers only while there is output. */
#include "net/h2.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "net/h2_filter.h"
#include "net/listener.h"

#define MODULE "net"

#define LINGER_MS 500 /* note 6 */
#define PREFACE NGHTTP2_CLIENT_MAGIC
#define PREFACE_LEN NGHTTP2_CLIENT_MAGIC_LEN

enum h2_state { ST_PREFACE, ST_H2, ST_HTTP1 };

struct h2_conn {
    uv_tcp_t tcp;
    uv_prepare_t prep;
    uv_timer_t linger;     /* note 6 */
    uv_shutdown_t shut;
    struct h2_conn_config cfg;
    bool mem;              /* no socket: h2_conn_open_mem */
    tls_conn *tls;
    bool cn_known;         /* cn holds the client certificate's CN ("": none) */
    char cn[256];
    nghttp2_session *session;
    enum h2_state state;
    size_t preface_have;   /* preface bytes matched so far */
    struct h2_filter filter; /* note 5 */
    bool closing;          /* hooks.on_close was called */
    bool handles_closing;  /* uv_close was called */
    bool shutting_down;    /* note 6: FIN queued, draining the peer */
    bool peer_eof;         /* the peer closed its sending side */
    int handles_open;
    int in_io;             /* depth of our own processing (note 3) */
    bool released;         /* mem: h2_conn_close was called */
    bool read_paused;      /* note 2 */
    size_t write_inflight; /* bytes handed to uv_write, not yet done */
    size_t output_bytes;   /* mem: bytes produced */
    uint8_t *obuf;         /* output being collected for one uv_write */
    size_t olen, ocap;
    char peer[80];
};

/* Note 8. Everything runs on the loop thread (h2.h), and a buffer's bytes
 * are consumed before the next read or TLS record, so one of each serves
 * every connection. */
static uint8_t read_buf[64 * 1024];
static uint8_t plain_buf[16 * 1024];

struct write_req {
    uv_write_t req;
    h2_conn *c;
    uint8_t *data;
    size_t len;
};

static const char http1_reply[] =
    "HTTP/1.1 505 HTTP Version Not Supported\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 45\r\n"
    "Connection: close\r\n"
    "\r\n"
    "this port serves gRPC over HTTP/2 (h2 / h2c)\n";

static void conn_close(h2_conn *c, bool graceful);
static void flush(h2_conn *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void conn_free(h2_conn *c)
{
    nghttp2_session_del(c->session);
    tls_conn_close(c->tls);
    free(c->obuf);
    void *ud = c->cfg.ud;
    void (*on_free)(void *) = c->cfg.hooks->on_free;
    free(c);
    on_free(ud);
}

static void on_handle_closed(uv_handle_t *h)
{
    h2_conn *c = h->data;
    if (--c->handles_open == 0)
        conn_free(c);
}

static int session_create(h2_conn *c)
{
    h2_filter_init(&c->filter);
    nghttp2_option *opt;
    if (nghttp2_option_new(&opt) != 0)
        return LSKV_ENOMEM;
    /* grpc-go clients (etcdctl's per-endpoint calls) send the whole endpoint
     * URL as :authority ("http://127.0.0.1:2379"), which nghttp2's strict
     * HTTP messaging rejects with RST_STREAM; grpc-go's server accepts it.
     * The gRPC layer checks :method and :path itself. */
    nghttp2_option_set_no_http_messaging(opt, 1);
    int rv = nghttp2_session_server_new2(&c->session, c->cfg.callbacks, c->cfg.ud, opt);
    nghttp2_option_del(opt);
    if (rv != 0)
        return LSKV_ENOMEM;
    const nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
         c->cfg.max_streams ? c->cfg.max_streams : H2_MAX_CONCURRENT_STREAMS},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW_BYTES},
    };
    if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 2) != 0 ||
        nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0,
                                              (int32_t)H2_CONN_WINDOW_BYTES) != 0)
        return LSKV_ENOMEM;
    return 0;
}

static int out_append(h2_conn *c, const uint8_t *p, size_t n)
{
    if (c->olen + n > c->ocap) {
        size_t cap = c->ocap ? c->ocap * 2 : 16384;
        while (cap < c->olen + n)
            cap *= 2;
        uint8_t *b = realloc(c->obuf, cap);
        if (b == NULL)
            return LSKV_ENOMEM;
        c->obuf = b;
        c->ocap = cap;
    }
    memcpy(c->obuf + c->olen, p, n);
    c->olen += n;
    return 0;
}

static void on_write(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    h2_conn *c = w->c;
    c->write_inflight -= w->len;
    free(w->data);
    free(w);
    if (c->closing) {
        conn_close(c, true);
        return;
    }
    if (status < 0) {
        conn_close(c, false);
        return;
    }
    if (c->write_inflight < H2_WRITE_HIGH_WATER_BYTES / 2) {
        if (c->read_paused) {
            c->read_paused = false;
            uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
        }
        flush(c);
    }
}

/* Hands the collected output (and TLS ciphertext) to the socket. */
static int write_out(h2_conn *c)
{
    if (c->tls) {
        size_t n;
        while ((n = tls_conn_pending(c->tls)) > 0) {
            if (c->olen + n > c->ocap) {
                size_t cap = c->ocap ? c->ocap : 16384;
                while (cap < c->olen + n)
                    cap *= 2;
                uint8_t *b = realloc(c->obuf, cap);
                if (b == NULL)
                    return LSKV_ENOMEM;
                c->obuf = b;
                c->ocap = cap;
            }
            c->olen += tls_conn_take(c->tls, c->obuf + c->olen, n);
        }
    }
    if (c->olen == 0)
        return 0;
    if (c->mem) {
        c->output_bytes += c->olen;
        c->olen = 0;
        return 0;
    }
    struct write_req *w = malloc(sizeof *w);
    if (w == NULL)
        return LSKV_ENOMEM;
    w->c = c;
    w->data = c->obuf;
    w->len = c->olen;
    c->obuf = NULL;
    c->olen = c->ocap = 0;
    uv_buf_t buf = uv_buf_init((char *)w->data, (unsigned)w->len);
    int rv = uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write);
    if (rv != 0) {
        free(w->data);
        free(w);
        return rv;
    }
    c->write_inflight += w->len;
    return 0;
}

static int emit(h2_conn *c, const uint8_t *p, size_t n)
{
    if (c->tls)
        return tls_conn_write(c->tls, p, n);
    return out_append(c, p, n);
}

static size_t queued(const h2_conn *c)
{
    return c->write_inflight + c->olen + (c->tls ? tls_conn_pending(c->tls) : 0);
}

static void flush(h2_conn *c)
{
    if (c->closing)
        return;
    bool fail = false;
    c->in_io++;
    if (c->state == ST_H2 && (c->tls == NULL || tls_conn_ready(c->tls))) {
        while (queued(c) < H2_WRITE_HIGH_WATER_BYTES) {
            const uint8_t *p;
            ssize_t n = nghttp2_session_mem_send(c->session, &p);
            if (n < 0 || (n > 0 && emit(c, p, (size_t)n) != 0)) {
                fail = true;
                break;
            }
            if (n == 0)
                break;
        }
    }
    if (write_out(c) != 0)
        fail = true;
    c->in_io--;
    if (fail) {
        conn_close(c, false);
        return;
    }
    if (c->state == ST_H2 && !nghttp2_session_want_read(c->session) &&
        !nghttp2_session_want_write(c->session)) {
        conn_close(c, true); /* both sides said GOAWAY and nothing is open */
        return;
    }
    if (!c->mem && !c->read_paused && queued(c) >= H2_WRITE_HIGH_WATER_BYTES) {
        c->read_paused = true;
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
}

static void close_handles(h2_conn *c)
{
    if (c->handles_closing)
        return;
    c->handles_closing = true;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->prep, on_handle_closed);
    uv_close((uv_handle_t *)&c->linger, on_handle_closed);
}

static void on_linger(uv_timer_t *t)
{
    close_handles(t->data);
}

/* Note 7. */
static void on_handshake_timeout(uv_timer_t *t)
{
    h2_conn *c = t->data;
    if (c->state == ST_PREFACE)
        conn_close(c, true);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    h2_conn *c = req->data;
    /* FIN is out: done if the peer has closed too (or the socket failed). */
    if (status < 0 || c->peer_eof)
        close_handles(c);
}

/* Note 6. graceful false: the socket failed, close it now. */
static void conn_close(h2_conn *c, bool graceful)
{
    if (!c->closing) {
        c->closing = true;
        c->cfg.hooks->on_close(c->cfg.ud);
        if (!c->mem)
            uv_prepare_stop(&c->prep);
    }
    if (c->mem) {
        /* Freed only once its owner let go (h2_conn_close) and we are out
         * of our own processing. */
        if (c->released && c->in_io == 0 && !c->handles_closing) {
            c->handles_closing = true;
            conn_free(c);
        }
        return;
    }
    if (c->handles_closing)
        return;
    if (!graceful) {
        close_handles(c);
        return;
    }
    /* Collected raw output goes first (over TLS it waits in OpenSSL's
     * buffer, not in obuf: a Connection: close answer lost it). */
    bool unwritten = c->olen > 0 || (c->tls != NULL && tls_conn_pending(c->tls) > 0);
    if (!c->shutting_down && unwritten && write_out(c) != 0) {
        close_handles(c);
        return;
    }
    if (c->shutting_down || c->write_inflight > 0)
        return; /* on_write, on_read, on_shutdown or the timer finish it */
    c->shutting_down = true;
    c->shut.data = c;
    if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        close_handles(c);
        return;
    }
    uv_timer_start(&c->linger, on_linger, LINGER_MS, 0);
    if (!c->peer_eof) /* keep reading, to drop what the peer still sends */
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* The first bytes were not the HTTP/2 preface (note 1). */
static void http1(h2_conn *c, const uint8_t *data, size_t len)
{
    if (c->cfg.hooks->on_http1 != NULL) {
        /* JSON gateway hook: it gets every byte read so far. */
        uint8_t *all = malloc(c->preface_have + len);
        if (all == NULL) {
            conn_close(c, false);
            return;
        }
        memcpy(all, PREFACE, c->preface_have);
        memcpy(all + c->preface_have, data, len);
        c->cfg.hooks->on_http1(c->cfg.ud, c, all, c->preface_have + len);
        free(all);
        return;
    }
    if (emit(c, (const uint8_t *)http1_reply, sizeof http1_reply - 1) != 0 ||
        write_out(c) != 0) {
        conn_close(c, false);
        return;
    }
    conn_close(c, true);
}

/* Returns 0, or < 0 when the connection must close. */
static int session_recv(h2_conn *c, const uint8_t *data, size_t len)
{
    ssize_t rv = nghttp2_session_mem_recv(c->session, data, len);
    if (rv >= 0)
        return 0;
    if (rv != NGHTTP2_ERR_FLOODED && rv != NGHTTP2_ERR_NOMEM &&
        rv != NGHTTP2_ERR_CALLBACK_FAILURE && !c->closing) {
        /* Make sure the peer hears why (note 4). */
        nghttp2_session_terminate_session(c->session, NGHTTP2_PROTOCOL_ERROR);
        const uint8_t *p;
        ssize_t n;
        while ((n = nghttp2_session_mem_send(c->session, &p)) > 0)
            if (emit(c, p, (size_t)n) != 0)
                break;
        write_out(c);
    }
    return -1;
}

static int filter_pass(void *ud, const uint8_t *data, size_t len)
{
    h2_conn *c = ud;
    if (c->closing)
        return 1; /* stop quietly, as before the filter */
    return session_recv(c, data, len);
}

static bool filter_is_idle(void *ud, uint32_t stream_id)
{
    h2_conn *c = ud;
    return (stream_id & 1u) != 0 &&
           (int64_t)stream_id > (int64_t)nghttp2_session_get_last_proc_stream_id(c->session);
}

static const struct h2_filter_ops filter_ops = {filter_pass, filter_is_idle};

static int process_plain(h2_conn *c, const uint8_t *data, size_t len)
{
    if (c->state == ST_PREFACE) {
        size_t n = PREFACE_LEN - c->preface_have;
        if (n > len)
            n = len;
        if (memcmp(data, &PREFACE[c->preface_have], n) != 0) {
            c->state = ST_HTTP1;
            if (!c->mem)
                uv_timer_stop(&c->linger); /* note 7: a request has begun */
            http1(c, data, len);
            return 0;
        }
        c->preface_have += n;
        if (c->preface_have < PREFACE_LEN)
            return 0;
        if (!c->mem)
            uv_timer_stop(&c->linger); /* note 7 */
        if (session_create(c) != 0) /* note 8 */
            return -1;
        c->state = ST_H2;
        if (session_recv(c, (const uint8_t *)PREFACE, PREFACE_LEN) != 0)
            return -1;
        data += n;
        len -= n;
    }
    if (c->state == ST_HTTP1) {
        if (c->cfg.hooks->on_http1 != NULL && !c->closing)
            c->cfg.hooks->on_http1(c->cfg.ud, c, data, len);
        return 0;
    }
    if (len == 0 || c->closing)
        return 0;
    return h2_filter_feed(&c->filter, data, len, &filter_ops, c) < 0 ? -1 : 0;
}

static void process_input(h2_conn *c, const uint8_t *data, size_t len)
{
    bool fail = false;
    c->in_io++;
    if (c->tls) {
        if (tls_conn_feed(c->tls, data, len) != 0) {
            write_out(c); /* the alert, if any */
            fail = true;
            /* As etcd's "rejected connection" line: who, and why. */
            if (!tls_conn_ready(c->tls) && tls_conn_failure(c->tls)[0] != '\0')
                LOG_WARN(MODULE, "rejected connection from %s (TLS handshake: %s)", c->peer,
                         tls_conn_failure(c->tls));
        }
        while (!fail && !c->closing) {
            ssize_t n = tls_conn_read(c->tls, plain_buf, sizeof plain_buf);
            if (n == 0)
                break;
            if (n < 0 || process_plain(c, plain_buf, (size_t)n) != 0)
                fail = true;
        }
    } else {
        fail = process_plain(c, data, len) != 0;
    }
    if (fail)
        conn_close(c, true);
    else
        flush(c);
    c->in_io--;
    if (c->mem && c->closing && c->released && c->in_io == 0 && !c->handles_closing) {
        c->handles_closing = true;
        conn_free(c);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    (void)h;
    *buf = uv_buf_init((char *)read_buf, sizeof read_buf); /* note 8 */
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    h2_conn *c = s->data;
    if (nread == UV_EOF) {
        /* The peer is done sending: finish our side in order (note 6). */
        c->peer_eof = true;
        uv_read_stop(s);
        if (c->shutting_down)
            close_handles(c);
        else
            conn_close(c, true);
        return;
    }
    if (nread < 0) {
        conn_close(c, false);
        return;
    }
    if (nread > 0 && !c->closing)
        process_input(c, (const uint8_t *)buf->base, (size_t)nread);
}

static void on_prepare(uv_prepare_t *p)
{
    h2_conn *c = p->data;
    uv_prepare_stop(p);
    flush(c);
}

int h2_conn_accept(uv_stream_t *server, const struct h2_conn_config *cfg, h2_conn **out)
{
    h2_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return LSKV_ENOMEM;
    c->cfg = *cfg;
    snprintf(c->peer, sizeof c->peer, "unknown");
    uv_tcp_init(server->loop, &c->tcp);
    uv_prepare_init(server->loop, &c->prep);
    uv_timer_init(server->loop, &c->linger);
    c->tcp.data = c->prep.data = c->linger.data = c;
    c->handles_open = 3;
    *out = c;
    int rv = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rv == 0 && cfg->tls != NULL)
        rv = tls_conn_open(cfg->tls, &c->tls);
    if (rv == 0) {
        uv_tcp_nodelay(&c->tcp, 1);
        uv_tcp_keepalive(&c->tcp, 1, 60);
        listener_peer_name(&c->tcp, c->peer, sizeof c->peer);
        rv = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
    if (rv == 0)
        uv_timer_start(&c->linger, on_handshake_timeout, H2_HANDSHAKE_MS, 0);
    if (rv != 0)
        conn_close(c, false);
    return 0;
}

int h2_conn_open_mem(const struct h2_conn_config *cfg, h2_conn **out)
{
    h2_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return LSKV_ENOMEM;
    c->cfg = *cfg;
    c->cfg.tls = NULL;
    c->mem = true;
    snprintf(c->peer, sizeof c->peer, "mem");
    *out = c;
    return 0;
}

void h2_conn_feed(h2_conn *c, const uint8_t *data, size_t len)
{
    if (!c->closing)
        process_input(c, data, len);
}

size_t h2_conn_output_bytes(const h2_conn *c)
{
    return c->output_bytes;
}

nghttp2_session *h2_conn_session(h2_conn *c)
{
    return c->closing || c->state != ST_H2 ? NULL : c->session;
}

void h2_conn_kick(h2_conn *c)
{
    if (c->closing || c->in_io > 0)
        return;
    if (c->mem)
        flush(c);
    else
        uv_prepare_start(&c->prep, on_prepare);
}

void h2_conn_shutdown(h2_conn *c)
{
    if (!c->closing && c->state == ST_H2) {
        nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(c->session),
                              NGHTTP2_NO_ERROR, NULL, 0);
        flush(c);
    }
    conn_close(c, true);
}

void h2_conn_close(h2_conn *c)
{
    if (c->mem)
        c->released = true;
    conn_close(c, false);
}

int h2_conn_write_raw(h2_conn *c, const uint8_t *data, size_t len)
{
    if (c->closing)
        return LSKV_ESHUTDOWN;
    if (len == 0)
        return 0;
    /* Collected, and handed to the socket once per loop iteration (note 3):
     * a stream of small answers (gateway keepalives, watch events) must not
     * cost one socket write and one output buffer each. */
    int rv = emit(c, data, len);
    if (rv == 0)
        h2_conn_kick(c);
    return rv;
}

static void on_idle_timeout(uv_timer_t *t)
{
    h2_conn *c = t->data;
    if (!c->closing)
        conn_close(c, true);
}

void h2_conn_set_idle_timeout(h2_conn *c, uint64_t ms)
{
    if (c->mem || c->closing)
        return; /* closing: the timer is the linger timer now (note 6) */
    if (ms == 0)
        uv_timer_stop(&c->linger);
    else
        uv_timer_start(&c->linger, on_idle_timeout, ms, 0);
}

static void on_abort_timeout(uv_timer_t *t)
{
    conn_close(t->data, false);
}

void h2_conn_abort_soon(h2_conn *c)
{
    if (c->mem || c->closing)
        return;
    uv_timer_start(&c->linger, on_abort_timeout, 0, 0);
}

size_t h2_conn_queued_bytes(const h2_conn *c)
{
    return queued(c);
}

void h2_conn_end(h2_conn *c)
{
    conn_close(c, true);
}

const char *h2_conn_peer(const h2_conn *c)
{
    return c->peer;
}

const char *h2_conn_cert_cn(h2_conn *c)
{
    /* Looked up once the handshake is done; the certificate cannot change. */
    if (!c->cn_known && c->tls != NULL && tls_conn_ready(c->tls)) {
        c->cn_known = true;
        if (tls_conn_peer_cn(c->tls, c->cn, sizeof c->cn) != 0)
            c->cn[0] = '\0';
    }
    return c->cn[0] ? c->cn : NULL;
}

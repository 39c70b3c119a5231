#include "h2client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/hex.h"

#define MAX_STREAMS 2048

struct out_src {
    uint8_t *buf;
    size_t off, len;
    bool eof;
    bool deferred;
};

struct h2client {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    nghttp2_session *session;
    bool eof;
    bool goaway;
    struct h2client_stream streams[MAX_STREAMS];
    struct out_src srcs[MAX_STREAMS];
    size_t n_streams;
};

int h2client_tcp_connect(const char *host, uint16_t port)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    char ps[8];
    snprintf(ps, sizeof ps, "%u", port);
    if (getaddrinfo(host, ps, &hints, &ai) != 0)
        return -1;
    int fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

static size_t stream_index(h2client *cl, int32_t id)
{
    for (size_t i = 0; i < cl->n_streams; i++)
        if (cl->streams[i].id == id)
            return i;
    return SIZE_MAX;
}

struct h2client_stream *h2client_stream(h2client *cl, int32_t id)
{
    size_t i = stream_index(cl, id);
    return i == SIZE_MAX ? NULL : &cl->streams[i];
}

static int write_all(h2client *cl, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w;
        if (cl->ssl) {
            int r = SSL_write(cl->ssl, p, (int)n);
            w = r > 0 ? r : -1;
        } else {
            w = send(cl->fd, p, n, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
        }
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int flush(h2client *cl)
{
    for (;;) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(cl->session, &p);
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        if (write_all(cl, p, (size_t)n) != 0) {
            cl->eof = true;
            return -1;
        }
    }
}

int h2client_pump(h2client *cl, int ms)
{
    if (cl->eof)
        return -1;
    if (flush(cl) != 0)
        return -1;
    struct pollfd pfd = {.fd = cl->fd, .events = POLLIN};
    int pr = (cl->ssl && SSL_pending(cl->ssl) > 0) ? 1 : poll(&pfd, 1, ms);
    if (pr <= 0)
        return 0;
    uint8_t buf[65536];
    ssize_t n;
    if (cl->ssl) {
        int r = SSL_read(cl->ssl, buf, sizeof buf);
        n = r > 0 ? r : -1;
    } else {
        n = recv(cl->fd, buf, sizeof buf, 0);
    }
    if (n <= 0) {
        cl->eof = true;
        return -1;
    }
    if (nghttp2_session_mem_recv(cl->session, buf, (size_t)n) < 0) {
        cl->eof = true;
        return -1;
    }
    return flush(cl);
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool done(h2client *cl, int32_t id)
{
    if (id != 0) {
        struct h2client_stream *s = h2client_stream(cl, id);
        return s == NULL || s->closed;
    }
    for (size_t i = 0; i < cl->n_streams; i++)
        if (!cl->streams[i].closed)
            return false;
    return true;
}

int h2client_wait(h2client *cl, int32_t id, int timeout_ms)
{
    long end = now_ms() + timeout_ms;
    while (!done(cl, id)) {
        long left = end - now_ms();
        if (left <= 0 || h2client_pump(cl, left > 100 ? 100 : (int)left) != 0)
            return done(cl, id) ? 0 : -1;
    }
    return 0;
}

static ssize_t src_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                        size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                        void *user_data)
{
    (void)session;
    (void)stream_id;
    (void)user_data;
    struct out_src *s = source->ptr;
    size_t avail = s->len - s->off;
    if (avail == 0) {
        if (s->eof) {
            *data_flags |= NGHTTP2_DATA_FLAG_EOF;
            return 0;
        }
        s->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = avail < length ? avail : length;
    memcpy(buf, s->buf + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

static int src_append(struct out_src *s, const uint8_t *data, size_t len, bool eof)
{
    uint8_t *p = realloc(s->buf, s->len + len + 1);
    if (p == NULL)
        return -1;
    s->buf = p;
    if (len)
        memcpy(s->buf + s->len, data, len);
    s->len += len;
    s->eof = eof;
    return 0;
}

#define CNV(n, v) \
    {(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE}

int32_t h2client_start(h2client *cl, const char *path, const char *const *extra,
                       const uint8_t *data, size_t len, bool end_stream)
{
    if (cl->n_streams == MAX_STREAMS)
        return -1;
    nghttp2_nv nva[32] = {
        CNV(":method", "POST"),
        CNV(":scheme", cl->ssl ? "https" : "http"),
        CNV(":authority", "localhost"),
        CNV(":path", path),
        CNV("content-type", "application/grpc"),
        CNV("te", "trailers"),
    };
    size_t n = 6;
    for (size_t i = 0; extra && extra[i] && n < 32; i += 2)
        nva[n++] = (nghttp2_nv)CNV(extra[i], extra[i + 1]);
    size_t idx = cl->n_streams;
    struct out_src *src = &cl->srcs[idx];
    memset(src, 0, sizeof *src);
    if (src_append(src, data, len, end_stream) != 0)
        return -1;
    nghttp2_data_provider prd = {.source.ptr = src, .read_callback = src_read};
    int32_t id = nghttp2_submit_request(cl->session, NULL, nva, n, &prd, NULL);
    if (id < 0)
        return -1;
    struct h2client_stream *s = &cl->streams[idx];
    memset(s, 0, sizeof *s);
    s->id = id;
    s->grpc_status = -1;
    cl->n_streams++;
    if (flush(cl) != 0)
        return -1;
    return id;
}

int h2client_send(h2client *cl, int32_t id, const uint8_t *data, size_t len, bool end_stream)
{
    size_t i = stream_index(cl, id);
    if (i == SIZE_MAX || src_append(&cl->srcs[i], data, len, end_stream) != 0)
        return -1;
    if (cl->srcs[i].deferred) {
        cl->srcs[i].deferred = false;
        nghttp2_session_resume_data(cl->session, id);
    }
    return flush(cl);
}

int h2client_rst(h2client *cl, int32_t id)
{
    if (nghttp2_submit_rst_stream(cl->session, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL) != 0)
        return -1;
    return flush(cl);
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *ud)
{
    (void)session;
    (void)flags;
    struct h2client_stream *s = h2client_stream(ud, frame->hd.stream_id);
    if (s == NULL)
        return 0;
    char v[512];
    size_t n = valuelen < sizeof v - 1 ? valuelen : sizeof v - 1;
    memcpy(v, value, n);
    v[n] = '\0';
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        s->http_status = atoi(v);
    } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        s->grpc_status = atoi(v);
    } else if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
        v[sizeof s->content_type - 1] = '\0';
        memcpy(s->content_type, v, strlen(v) + 1);
    } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
        char *o = s->grpc_message;
        for (size_t i = 0; v[i];) {
            int hi, lo;
            if (v[i] == '%' && (hi = hex_digit(v[i + 1])) >= 0 && (lo = hex_digit(v[i + 2])) >= 0) {
                *o++ = (char)(hi * 16 + lo);
                i += 3;
            } else {
                *o++ = v[i++];
            }
        }
        *o = '\0';
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
    (void)session;
    h2client *cl = ud;
    if (frame->hd.type == NGHTTP2_GOAWAY)
        cl->goaway = true;
    struct h2client_stream *s = h2client_stream(cl, frame->hd.stream_id);
    if (s == NULL)
        return 0;
    if (frame->hd.type == NGHTTP2_HEADERS)
        s->n_header_frames++;
    if (frame->hd.type == NGHTTP2_DATA && frame->hd.length > 0)
        s->n_data_frames++;
    if (frame->hd.type == NGHTTP2_RST_STREAM)
        s->reset_by_peer = true;
    return 0;
}

static int on_data(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                   const uint8_t *data, size_t len, void *ud)
{
    (void)session;
    (void)flags;
    struct h2client_stream *s = h2client_stream(ud, stream_id);
    if (s == NULL)
        return 0;
    uint8_t *p = realloc(s->body, s->body_len + len + 1);
    if (p == NULL)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    s->body = p;
    memcpy(s->body + s->body_len, data, len);
    s->body_len += len;
    return 0;
}

static int on_close(nghttp2_session *session, int32_t stream_id, uint32_t code, void *ud)
{
    (void)session;
    struct h2client_stream *s = h2client_stream(ud, stream_id);
    if (s) {
        s->closed = true;
        s->close_code = code;
    }
    return 0;
}

int h2client_connect(const char *host, uint16_t port, bool tls, h2client **out)
{
    h2client *cl = calloc(1, sizeof *cl);
    if (cl == NULL)
        return -1;
    cl->fd = h2client_tcp_connect(host, port);
    if (cl->fd < 0)
        goto err;
    if (tls) {
        cl->ctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_verify(cl->ctx, SSL_VERIFY_NONE, NULL);
        static const unsigned char alpn[] = {2, 'h', '2'};
        SSL_CTX_set_alpn_protos(cl->ctx, alpn, sizeof alpn);
        cl->ssl = SSL_new(cl->ctx);
        SSL_set_fd(cl->ssl, cl->fd);
        SSL_set_tlsext_host_name(cl->ssl, "localhost");
        if (SSL_connect(cl->ssl) != 1)
            goto err;
        const unsigned char *sel;
        unsigned sel_len;
        SSL_get0_alpn_selected(cl->ssl, &sel, &sel_len);
        if (sel_len != 2 || memcmp(sel, "h2", 2) != 0)
            goto err;
    }
    nghttp2_session_callbacks *cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_close);
    int rv = nghttp2_session_client_new(&cl->session, cbs, cl);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0)
        goto err;
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20}};
    nghttp2_submit_settings(cl->session, NGHTTP2_FLAG_NONE, iv, 1);
    nghttp2_session_set_local_window_size(cl->session, NGHTTP2_FLAG_NONE, 0, 16 << 20);
    if (flush(cl) != 0)
        goto err;
    *out = cl;
    return 0;
err:
    h2client_close(cl);
    return -1;
}

void h2client_close(h2client *cl)
{
    if (cl == NULL)
        return;
    nghttp2_session_del(cl->session);
    if (cl->ssl)
        SSL_free(cl->ssl);
    if (cl->ctx)
        SSL_CTX_free(cl->ctx);
    if (cl->fd >= 0)
        close(cl->fd);
    for (size_t i = 0; i < cl->n_streams; i++) {
        free(cl->streams[i].body);
        free(cl->srcs[i].buf);
    }
    free(cl);
}

bool h2client_goaway(const h2client *cl)
{
    return cl->goaway;
}

bool h2client_eof(const h2client *cl)
{
    return cl->eof;
}

uint8_t *h2client_frame(const uint8_t *msg, size_t len, size_t *out_len)
{
    uint8_t *p = malloc(len + 5);
    if (p == NULL)
        return NULL;
    p[0] = 0;
    p[1] = (uint8_t)(len >> 24);
    p[2] = (uint8_t)(len >> 16);
    p[3] = (uint8_t)(len >> 8);
    p[4] = (uint8_t)len;
    if (len)
        memcpy(p + 5, msg, len);
    *out_len = len + 5;
    return p;
}

int h2client_message(const struct h2client_stream *s, size_t i, const uint8_t **msg,
                     size_t *len)
{
    size_t off = 0;
    for (;;) {
        if (s->body_len - off < 5)
            return -1;
        const uint8_t *p = s->body + off;
        size_t n = ((size_t)p[1] << 24) | ((size_t)p[2] << 16) | ((size_t)p[3] << 8) | p[4];
        if (s->body_len - off - 5 < n)
            return -1;
        if (i-- == 0) {
            *msg = p + 5;
            *len = n;
            return 0;
        }
        off += 5 + n;
    }
}

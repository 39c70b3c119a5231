/* Tests for src/net: the gRPC framing, listen URLs and the server driven by
 * real clients (tests/lib/h2client, raw sockets, python3 grpcio, etcdctl).
 *
 * Each server test runs the server's loop on the test's main thread and the
 * client on a second thread; when the client is done it wakes the loop with
 * a uv_async, the server closes, and the loop must end with every handle
 * closed (uv_loop_close returns 0). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "common/err.h"
#include "h2client.h"
#include "net/grpc_frame.h"
#include "net/grpc_server.h"
#include "net/h2.h"
#include "net/listener.h"
#include "proto/rpc.pb-c.h"
#include "runner.h"

/* ---- grpc_frame ---- */

struct collected {
    int n;
    size_t lens[16];
    uint8_t first[16];
};

static int collect(void *arg, const uint8_t *msg, size_t len)
{
    struct collected *c = arg;
    c->lens[c->n] = len;
    c->first[c->n] = len ? msg[0] : 0;
    c->n++;
    return 0;
}

TEST(grpc_frame, deframe_split_and_batched)
{
    uint8_t wire[64];
    size_t n = 0;
    /* Three messages: 3 bytes "abc", empty, 10 bytes of 'x'. */
    grpc_frame_prefix(wire + n, 3);
    memcpy(wire + n + 5, "abc", 3);
    n += 8;
    grpc_frame_prefix(wire + n, 0);
    n += 5;
    grpc_frame_prefix(wire + n, 10);
    memset(wire + n + 5, 'x', 10);
    n += 15;
    /* Every split point, byte by byte and in two pieces. */
    for (size_t cut = 0; cut <= n; cut++) {
        struct grpc_deframer d;
        struct collected c = {0};
        grpc_deframer_init(&d, 100);
        ASSERT_EQ(grpc_deframer_push(&d, wire, cut, collect, &c), 0);
        ASSERT_EQ(grpc_deframer_push(&d, wire + cut, n - cut, collect, &c), 0);
        ASSERT_EQ(c.n, 3);
        ASSERT_EQ(c.lens[0], 3);
        ASSERT_EQ(c.first[0], 'a');
        ASSERT_EQ(c.lens[1], 0);
        ASSERT_EQ(c.lens[2], 10);
        ASSERT(!grpc_deframer_partial(&d));
        grpc_deframer_free(&d);
    }
    struct grpc_deframer d;
    struct collected c = {0};
    grpc_deframer_init(&d, 100);
    for (size_t i = 0; i < n - 1; i++)
        ASSERT_EQ(grpc_deframer_push(&d, wire + i, 1, collect, &c), 0);
    ASSERT_EQ(c.n, 2);
    ASSERT(grpc_deframer_partial(&d));
    grpc_deframer_free(&d);
}

TEST(grpc_frame, deframe_errors)
{
    struct grpc_deframer d;
    struct collected c = {0};
    uint8_t big[5];
    grpc_frame_prefix(big, 101);
    grpc_deframer_init(&d, 100);
    ASSERT_EQ(grpc_deframer_push(&d, big, 5, collect, &c), LSKV_ETOOLARGE);
    ASSERT_EQ(d.too_large_len, 101);
    grpc_deframer_free(&d);

    uint8_t comp[6] = {1, 0, 0, 0, 1, 'z'};
    grpc_deframer_init(&d, 100);
    ASSERT_EQ(grpc_deframer_push(&d, comp, 6, collect, &c), LSKV_EUNIMPLEMENTED);
    grpc_deframer_free(&d);

    uint8_t bad[6] = {7, 0, 0, 0, 1, 'z'};
    grpc_deframer_init(&d, 100);
    ASSERT_EQ(grpc_deframer_push(&d, bad, 6, collect, &c), LSKV_ECORRUPT);
    grpc_deframer_free(&d);
    ASSERT_EQ(c.n, 0);

    /* A lying length costs only what arrived. */
    uint8_t lie[5 + 10];
    grpc_frame_prefix(lie, 100);
    memset(lie + 5, 'q', 10);
    grpc_deframer_init(&d, 1000);
    ASSERT_EQ(grpc_deframer_push(&d, lie, sizeof lie, collect, &c), 0);
    ASSERT_LE(grpc_deframer_buffered(&d), 100);
    grpc_deframer_free(&d);
}

TEST(grpc_frame, timeout_parse)
{
    int64_t ns = 0;
#define OK(v, want)                                                                    \
    do {                                                                               \
        ASSERT_EQ(grpc_timeout_parse((const uint8_t *)(v), strlen(v), &ns), 0);      \
        ASSERT_EQ(ns, (int64_t)(want));                                              \
    } while (0)
#define BAD(v) ASSERT_EQ(grpc_timeout_parse((const uint8_t *)(v), strlen(v), &ns), LSKV_EINVAL)
    OK("1S", 1000000000LL);
    OK("250m", 250000000LL);
    OK("7u", 7000LL);
    OK("9n", 9LL);
    OK("2M", 120000000000LL);
    OK("1H", 3600000000000LL);
    OK("99999999S", 99999999000000000LL);
    OK("00000001m", 1000000LL);
    OK("+5S", 5000000000LL);
    OK("-1S", -1000000000LL); /* strconv.ParseInt takes a sign: expired */
    OK("0S", 0);
    OK("99999999H", INT64_MAX); /* clamped, as grpc-go clamps hours */
    BAD("");
    BAD("S");
    BAD("1");
    BAD("1x");
    BAD("1s");
    BAD("123456789S"); /* 8 digits at most */
    BAD("+S");
    BAD("-S");
    BAD(" 1S");
    BAD("1 S");
    BAD("1.5S");
    BAD("0x1S");
#undef OK
#undef BAD
}

TEST(grpc_frame, too_large_text)
{
    char text[100];
    grpc_frame_too_large_text(text, sizeof text, 2202019, 2097152);
    ASSERT_STR_EQ(text, "grpc: received message larger than max (2202019 vs. 2097152)");
}

TEST(grpc_frame, percent_encoding)
{
    char *e = grpc_frame_percent_encode("a 100% \xc3\xa9\n~");
    ASSERT_STR_EQ(e, "a 100%25 %C3%A9%0A~");
    char back[64];
    grpc_frame_percent_decode(e, back);
    ASSERT_STR_EQ(back, "a 100% \xc3\xa9\n~");
    free(e);
}

/* ---- server fixture ---- */

struct fixture;
typedef void (*client_fn)(struct fixture *fx);

struct pending {
    grpc_call *call;
    uint8_t msg[64];
    size_t len;
    uv_timer_t timer;
    struct fixture *fx;
};

struct fixture {
    uv_loop_t loop;
    grpc_server *srv;
    uint16_t port;
    uint16_t tls_port;
    uint16_t ip6_port;
    uv_async_t done;
    pthread_t thread;
    client_fn client;
    bool woke; /* the client thread sent done (client thread only) */
    bool closed;
    /* Counters the handlers keep (loop thread only). */
    int n_unary;
    int n_cancel;
    int n_later_cancelled_at_finish;
    int n_later_send_refused;
    int n_half_close;
    int n_pending_timers;
    uint64_t later_ms;
    grpc_call *held; /* "Hold": never finished until the server closes */
    _Atomic int n_held_seen; /* read by the client thread */
    char cert[512], key[512];
    bool json_gateway; /* serve the JSON gateway on the port */
};

static void on_unary(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct fixture *fx = ctx;
    fx->n_unary++;
    ASSERT_EQ(grpc_call_send(call, msg, len), 0);
    grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static void on_fail(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    (void)msg;
    (void)len;
    (void)ctx;
    grpc_call_finish(call, GRPC_STATUS_NOT_FOUND, "nope: 100% gone\n");
}

static void on_timer_closed(uv_handle_t *h)
{
    struct pending *p = h->data;
    p->fx->n_pending_timers--;
    free(p);
}

static void later_fire(uv_timer_t *t)
{
    struct pending *p = t->data;
    struct fixture *fx = p->fx;
    if (grpc_call_cancelled(p->call)) {
        fx->n_later_cancelled_at_finish++;
        if (grpc_call_send(p->call, p->msg, p->len) == LSKV_ESHUTDOWN)
            fx->n_later_send_refused++;
    } else {
        ASSERT_EQ(grpc_call_send(p->call, p->msg, p->len), 0);
    }
    ASSERT(grpc_call_get_data(p->call) == p);
    grpc_call_finish(p->call, GRPC_STATUS_OK, NULL);
    uv_close((uv_handle_t *)&p->timer, on_timer_closed);
}

static void on_later(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct fixture *fx = ctx;
    struct pending *p = calloc(1, sizeof *p);
    ASSERT(p != NULL);
    p->call = call;
    p->fx = fx;
    p->len = len < sizeof p->msg ? len : sizeof p->msg;
    memcpy(p->msg, msg, p->len);
    grpc_call_set_data(call, p);
    uv_timer_init(&fx->loop, &p->timer);
    p->timer.data = p;
    fx->n_pending_timers++;
    uv_timer_start(&p->timer, later_fire, fx->later_ms, 0);
}

static void on_cancel(grpc_call *call, void *ctx)
{
    struct fixture *fx = ctx;
    ASSERT(grpc_call_cancelled(call));
    fx->n_cancel++;
    if (call == fx->held) {
        fx->held = NULL;
        grpc_call_finish(call, GRPC_STATUS_CANCELLED, NULL);
    }
}

static void on_hold(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    (void)msg;
    (void)len;
    struct fixture *fx = ctx;
    fx->held = call;
    fx->n_held_seen++;
}

static void on_stream_msg(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    (void)ctx;
    grpc_call_send(call, msg, len);
    grpc_call_send(call, msg, len);
}

static void on_stream_half_close(grpc_call *call, void *ctx)
{
    struct fixture *fx = ctx;
    fx->n_half_close++;
    grpc_call_finish(call, GRPC_STATUS_OK, "bye");
}

/* etcdctl's Range: answers key "foo" = "bar" at revision 7. */
static void on_range(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    (void)ctx;
    Etcdserverpb__RangeRequest *req = etcdserverpb__range_request__unpack(NULL, len, msg);
    if (req == NULL) {
        grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "bad RangeRequest");
        return;
    }
    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    hdr.cluster_id = 1;
    hdr.member_id = 2;
    hdr.revision = 7;
    hdr.raft_term = 3;
    Mvccpb__KeyValue kv = MVCCPB__KEY_VALUE__INIT;
    kv.key.data = req->key.data;
    kv.key.len = req->key.len;
    kv.value.data = (uint8_t *)"bar";
    kv.value.len = 3;
    kv.create_revision = 7;
    kv.mod_revision = 7;
    kv.version = 1;
    Mvccpb__KeyValue *kvs[] = {&kv};
    Etcdserverpb__RangeResponse resp = ETCDSERVERPB__RANGE_RESPONSE__INIT;
    resp.header = &hdr;
    resp.kvs = kvs;
    resp.n_kvs = 1;
    resp.count = 1;
    size_t n = etcdserverpb__range_response__get_packed_size(&resp);
    uint8_t *out = malloc(n);
    etcdserverpb__range_response__pack(&resp, out);
    etcdserverpb__range_request__free_unpacked(req, NULL);
    grpc_call_send(call, out, n);
    free(out);
    grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static void on_server_closed(void *arg)
{
    struct fixture *fx = arg;
    fx->closed = true;
}

static void on_done(uv_async_t *a)
{
    struct fixture *fx = a->data;
    uv_close((uv_handle_t *)a, NULL);
    grpc_server_close(fx->srv, on_server_closed, fx);
    /* The handler's duty: finish what it holds after the server cancelled. */
    ASSERT(fx->held == NULL);
}

static void *client_main(void *arg)
{
    struct fixture *fx = arg;
    fx->client(fx);
    if (!fx->woke)
        uv_async_send(&fx->done);
    return NULL;
}

static void make_cert(struct fixture *fx)
{
    snprintf(fx->cert, sizeof fx->cert, "%s/cert.pem", test_tmpdir());
    snprintf(fx->key, sizeof fx->key, "%s/key.pem", test_tmpdir());
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-keyout %s -out %s -days 2 -subj /CN=localhost "
             "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null",
             fx->key, fx->cert);
    ASSERT_EQ(system(cmd), 0);
}

static void fixture_run(struct fixture *fx, size_t max_recv, bool with_tls, client_fn client)
{
    ASSERT_EQ(uv_loop_init(&fx->loop), 0);
    fx->later_ms = fx->later_ms ? fx->later_ms : 200;
    const struct grpc_method methods[] = {
        {.path = "/test.Echo/Unary", .on_message = on_unary, .on_cancel = on_cancel, .ctx = fx},
        {.path = "/test.Echo/Later", .on_message = on_later, .on_cancel = on_cancel, .ctx = fx},
        {.path = "/test.Echo/Fail", .on_message = on_fail, .ctx = fx},
        {.path = "/test.Echo/Hold", .on_message = on_hold, .on_cancel = on_cancel, .ctx = fx},
        {.path = "/test.Echo/Stream",
         .streaming = true,
         .on_message = on_stream_msg,
         .on_half_close = on_stream_half_close,
         .on_cancel = on_cancel,
         .ctx = fx},
        {.path = "/etcdserverpb.KV/Range", .on_message = on_range, .ctx = fx},
    };
    const char *urls[] = {"http://127.0.0.1:0", "https://127.0.0.1:0", "http://[::1]:0"};
    if (with_tls)
        make_cert(fx);
    struct grpc_server_config cfg = {
        .listen_urls = urls,
        .n_listen_urls = with_tls ? 3 : 1,
        .tls = {.cert_file = with_tls ? fx->cert : NULL, .key_file = with_tls ? fx->key : NULL},
        .max_recv_message_bytes = max_recv,
        .json_gateway = fx->json_gateway,
        .methods = methods,
        .n_methods = sizeof methods / sizeof methods[0],
    };
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    int rv = grpc_server_open(&fx->loop, &cfg, &fx->srv, errmsg);
    if (rv != 0)
        TEST_FAIL("grpc_server_open: %s", errmsg);
    fx->port = grpc_server_port(fx->srv, 0);
    fx->tls_port = with_tls ? grpc_server_port(fx->srv, 1) : 0;
    fx->ip6_port = with_tls ? grpc_server_port(fx->srv, 2) : 0;
    ASSERT_NE(fx->port, 0);
    fx->client = client;
    ASSERT_EQ(uv_async_init(&fx->loop, &fx->done, on_done), 0);
    fx->done.data = fx;
    ASSERT_EQ(pthread_create(&fx->thread, NULL, client_main, fx), 0);
    ASSERT_EQ(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
    ASSERT_EQ(pthread_join(fx->thread, NULL), 0);
    ASSERT(fx->closed);
    ASSERT_EQ(fx->n_pending_timers, 0);
    ASSERT_EQ(uv_loop_close(&fx->loop), 0); /* a leaked handle fails here */
}

/* One unary echo on a fresh connection. */
static void unary_echo_host(const char *host, uint16_t port, bool tls, const char *text)
{
    h2client *cl;
    ASSERT_EQ(h2client_connect(host, port, tls, &cl), 0);
    size_t n;
    uint8_t *req = h2client_frame((const uint8_t *)text, strlen(text), &n);
    int32_t id = h2client_start(cl, "/test.Echo/Unary", NULL, req, n, true);
    free(req);
    ASSERT_GT(id, 0);
    ASSERT_EQ(h2client_wait(cl, id, 5000), 0);
    struct h2client_stream *s = h2client_stream(cl, id);
    ASSERT_EQ(s->http_status, 200);
    ASSERT_STR_EQ(s->content_type, "application/grpc");
    ASSERT_EQ(s->grpc_status, 0);
    ASSERT_EQ(s->n_header_frames, 2); /* headers, then trailers */
    const uint8_t *m;
    size_t len;
    ASSERT_EQ(h2client_message(s, 0, &m, &len), 0);
    ASSERT_EQ(len, strlen(text));
    ASSERT_MEM_EQ(m, text, len);
    ASSERT_EQ(h2client_message(s, 1, &m, &len), -1);
    h2client_close(cl);
}

static void unary_echo(uint16_t port, bool tls, const char *text)
{
    unary_echo_host("127.0.0.1", port, tls, text);
}

static void client_unary_h2c(struct fixture *fx)
{
    unary_echo(fx->port, false, "hello");
    unary_echo(fx->port, false, "");
}

TEST(grpc_server, unary_echo_h2c)
{
    struct fixture fx = {0};
    fixture_run(&fx, 0, false, client_unary_h2c);
    ASSERT_EQ(fx.n_unary, 2);
}

static void client_unary_tls(struct fixture *fx)
{
    unary_echo(fx->tls_port, true, "over TLS");
    unary_echo(fx->port, false, "and h2c on the other URL");
    unary_echo_host("::1", fx->ip6_port, false, "and IPv6");
}

TEST(grpc_server, unary_echo_tls)
{
    struct fixture fx = {0};
    fixture_run(&fx, 0, true, client_unary_tls);
    ASSERT_EQ(fx.n_unary, 3);
}

static void client_large(struct fixture *fx)
{
    h2client *cl;
    ASSERT_EQ(h2client_connect("127.0.0.1", fx->port, false, &cl), 0);
    size_t big = 1 << 20;
    uint8_t *msg = malloc(big);
    for (size_t i = 0; i < big; i++)
        msg[i] = (uint8_t)(i * 7 + (i >> 12));
    size_t n;
    uint8_t *req = h2client_frame(msg, big, &n);
    /* Hand it over in odd pieces; nghttp2 splits further into 16 KiB frames. */
    int32_t id = h2client_start(cl, "/test.Echo/Unary", NULL, req, 3, false);
    ASSERT_GT(id, 0);
    size_t off = 3;
    while (off < n) {
        size_t k = n - off < 100003 ? n - off : 100003;
        ASSERT_EQ(h2client_send(cl, id, req + off, k, off + k == n), 0);
        off += k;
        h2client_pump(cl, 0);
    }
    ASSERT_EQ(h2client_wait(cl, id, 10000), 0);
    struct h2client_stream *s = h2client_stream(cl, id);
    ASSERT_EQ(s->grpc_status, 0);
    ASSERT_GT(s->n_data_frames, 10);
    const uint8_t *m;
    size_t len;
    ASSERT_EQ(h2client_message(s, 0, &m, &len), 0);
    ASSERT_EQ(len, big);
    ASSERT_MEM_EQ(m, msg, big);
    free(req);
    free(msg);
    h2client_close(cl);
}

TEST(grpc_server, large_message_split_across_frames)
{
    struct fixture fx = {0};
    fixture_run(&fx, 4 << 20, false, client_large);
    ASSERT_EQ(fx.n_unary, 1);
}

static void client_concurrent(struct fixture *fx)
{
    h2client *cl;
    ASSERT_EQ(h2client_connect("127.0.0.1", fx->port, false, &cl), 0);
    int32_t ids[100];
    for (int i = 0; i < 100; i++) {
        char text[32];
        snprintf(text, sizeof text, "req-%d", i);
        size_t n;
        uint8_t *req = h2client_frame((const uint8_t *)text, strlen(text), &n);
        /* Half of them go to the method that answers later, so all 100 are
         * open at once. */
        ids[i] = h2client_start(cl, i % 2 ? "/test.Echo/Later" : "/test.Echo/Unary", NULL,
                                req, n, true);
        free(req);
        ASSERT_GT(ids[i], 0);
    }
    ASSERT_EQ(h2client_wait(cl, 0, 10000), 0);
    for (int i = 0; i < 100; i++) {
        struct h2client_stream *s = h2client_stream(cl, ids[i]);
        char text[32];
        snprintf(text, sizeof text, "req-%d", i);
        ASSERT_EQ(s->grpc_status, 0);
        const uint8_t *m;
        size_t len;
        ASSERT_EQ(h2client_message(s, 0, &m, &len), 0);
        ASSERT_EQ(len, strlen(text));
        ASSERT_MEM_EQ(m, text, len);
    }
    h2client_close(cl);
}

TEST(grpc_server, concurrent_streams_on_one_connection)
{
    struct fixture fx = {0};
    fx.later_ms = 100;
    fixture_run(&fx, 0, false, client_concurrent);
    ASSERT_EQ(fx.n_unary, 50);
    ASSERT_EQ(fx.n_cancel, 0);
}

/* Sends one framed message to path and waits for the end of the stream. */
static struct h2client_stream *call_once(h2client *cl, const char *path,
                                         const char *const *extra, const uint8_t *wire,
                                         size_t n)
{
    int32_t id = h2client_start(cl, path, extra, wire, n, true);
    ASSERT_GT(id, 0);
    ASSERT_EQ(h2client_wait(cl, id, 5000), 0);
    return h2client_stream(cl, id);
}

static void client_errors(struct fixture *fx)
{
    h2client *cl;
    ASSERT_EQ(h2client_connect("127.0.0.1", fx->port, false, &cl), 0);
    size_t n;
    uint8_t *req = h2client_frame((const uint8_t *)"x", 1, &n);

    struct h2client_stream *s = call_once(cl, "/etcdserverpb.Foo/Bar", NULL, req, n);
    ASSERT_EQ(s->http_status, 200);
    ASSERT_EQ(s->grpc_status, GRPC_STATUS_UNIMPLEMENTED);
    ASSERT_STR_EQ(s->grpc_message, "unknown service etcdserverpb.Foo");
    ASSERT_EQ(s->n_header_frames, 1); /* trailers-only */
    ASSERT_EQ(s->body_len, 0);

    s = call_once(cl, "/etcdserverpb.KV/Bar", NULL, req, n);
    ASSERT_EQ(s->grpc_status, GRPC_STATUS_UNIMPLEMENTED);
    ASSERT_STR_EQ(s->grpc_message, "unknown method Bar for service etcdserverpb.KV");

    s = call_once(cl, "/test.Echo/Fail", NULL, req, n);
    ASSERT_EQ(s->grpc_status, GRPC_STATUS_NOT_FOUND);
    ASSERT_STR_EQ(s->grpc_message, "nope: 100% gone\n");
    ASSERT_EQ(s->n_header_frames, 1);

    /* 1024 is the limit in this fixture. */
    uint8_t big[1025] = {0};
    free(req);
    req = h2client_frame(big, sizeof big, &n);
    s = call_once(cl, "/test.Echo/Unary", NULL, req, n);
    ASSERT_EQ(s->grpc_status, GRPC_STATUS_RESOURCE_EXHAUSTED);
    ASSERT_STR_EQ(s->grpc_message, "grpc: received message larger than max (1025 vs. 1024)");
    free(req);
    req = h2client_frame(big, 1024, &n); /* exactly the limit is fine */
    s = call_once(cl, "/test.Echo/Unary", NULL, req, n);
    ASSERT_EQ(s->grpc_status, GRPC_STATUS_OK);

    /* Truncated: the prefix says 10 bytes, 4 come, then END_STREAM. */
    uint8_t trunc[9] = {0, 0, 0, 0, 10, 'a', 'b', 'c', 'd'};
    s = call_once(cl, "/test.Echo/Unary", NULL, trunc, sizeof trunc);
    ASSERT_EQ(s->grpc_status, GRPC_STATUS_INTERNAL);

    /* No message at all for a unary method. */
    s = call_once(cl, "/test.Echo/Unary", NULL, NULL, 0);
    ASSERT_EQ(s->grpc_status, GRPC_STATUS_INTERNAL);

    /* Two messages for a unary method. */
    uint8_t two[12] = {0, 0, 0, 0, 1, 'a', 0, 0, 0, 0, 1, 'b'};
    s = call_once(cl, "/test.Echo/Unary", NULL, two, sizeof two);
    ASSERT_EQ(s->grpc_status, GRPC_STATUS_UNIMPLEMENTED);

    /* Compressed flag. */
    uint8_t comp[6] = {1, 0, 0, 0, 1, 'z'};
    const char *gzip[] = {"grpc-encoding", "gzip", NULL};
    s = call_once(cl, "/test.Echo/Later", gzip, comp, sizeof comp);
    ASSERT_EQ(s->grpc_status, GRPC_STATUS_UNIMPLEMENTED);
    s = call_once(cl, "/test.Echo/Unary", NULL, comp, sizeof comp);
    ASSERT_EQ(s->grpc_status, GRPC_STATUS_INTERNAL);
    ASSERT_STR_EQ(s->grpc_message, "grpc: compressed flag set with identity or empty encoding");

    /* Not gRPC. */
    const char *json[] = {"content-type", "application/json", NULL};
    int32_t id = h2client_start(cl, "/test.Echo/Unary", json, (const uint8_t *)"{}", 2, true);
    ASSERT_EQ(h2client_wait(cl, id, 5000), 0);
    ASSERT_EQ(h2client_stream(cl, id)->http_status, 415);

    /* The connection is still good. */
    free(req);
    req = h2client_frame((const uint8_t *)"still", 5, &n);
    s = call_once(cl, "/test.Echo/Unary", NULL, req, n);
    ASSERT_EQ(s->grpc_status, 0);
    ASSERT(!h2client_goaway(cl));
    free(req);
    h2client_close(cl);
}

TEST(grpc_server, error_statuses)
{
    struct fixture fx = {0};
    fixture_run(&fx, 1024, false, client_errors);
    ASSERT_EQ(fx.n_unary, 2);
}

static void client_stream(struct fixture *fx)
{
    h2client *cl;
    ASSERT_EQ(h2client_connect("127.0.0.1", fx->port, false, &cl), 0);
    size_t n;
    uint8_t *a = h2client_frame((const uint8_t *)"one", 3, &n);
    int32_t id = h2client_start(cl, "/test.Echo/Stream", NULL, a, n, false);
    ASSERT_GT(id, 0);
    free(a);
    /* The echo of the first message arrives before we send more. */
    for (int i = 0; i < 50 && h2client_stream(cl, id)->body_len < 16; i++)
        h2client_pump(cl, 50);
    ASSERT_EQ(h2client_stream(cl, id)->body_len, 16);
    /* Two more in one DATA chunk, the second split in half. */
    uint8_t wire[32];
    grpc_frame_prefix(wire, 3);
    memcpy(wire + 5, "two", 3);
    grpc_frame_prefix(wire + 8, 5);
    memcpy(wire + 13, "three", 5);
    ASSERT_EQ(h2client_send(cl, id, wire, 15, false), 0);
    h2client_pump(cl, 20);
    ASSERT_EQ(h2client_send(cl, id, wire + 15, 3, true), 0);
    ASSERT_EQ(h2client_wait(cl, id, 5000), 0);
    struct h2client_stream *s = h2client_stream(cl, id);
    ASSERT_EQ(s->grpc_status, 0);
    ASSERT_STR_EQ(s->grpc_message, "bye");
    const char *want[] = {"one", "one", "two", "two", "three", "three"};
    for (size_t i = 0; i < 6; i++) {
        const uint8_t *m;
        size_t len;
        ASSERT_EQ(h2client_message(s, i, &m, &len), 0);
        ASSERT_EQ(len, strlen(want[i]));
        ASSERT_MEM_EQ(m, want[i], len);
    }
    h2client_close(cl);
}

TEST(grpc_server, streaming_echo)
{
    struct fixture fx = {0};
    fixture_run(&fx, 0, false, client_stream);
    ASSERT_EQ(fx.n_half_close, 1);
}

/* Reads from fd until EOF/reset or 5 s; returns the bytes read. */
static size_t read_until_closed(int fd, uint8_t *buf, size_t cap, bool *closed)
{
    size_t got = 0;
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    *closed = false;
    for (;;) {
        ssize_t r = recv(fd, buf + got, cap - got, 0);
        if (r == 0 || (r < 0 && errno == ECONNRESET)) {
            *closed = true;
            return got;
        }
        if (r < 0)
            return got;
        got += (size_t)r;
        if (got == cap)
            return got;
    }
}

static void client_garbage(struct fixture *fx)
{
    /* A client that holds a healthy connection throughout. */
    h2client *good;
    ASSERT_EQ(h2client_connect("127.0.0.1", fx->port, false, &good), 0);

    int fd = h2client_tcp_connect("127.0.0.1", fx->port);
    ASSERT_GE(fd, 0);
    static const char bad[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                              "\x00\x00\x04\xff\x07\x00\x00\x00\x01garbage garbage";
    ASSERT_EQ(send(fd, bad, sizeof bad - 1, 0), (ssize_t)(sizeof bad - 1));
    uint8_t buf[4096];
    bool closed;
    size_t got = read_until_closed(fd, buf, sizeof buf, &closed);
    ASSERT(closed);
    /* SETTINGS first, and a GOAWAY (type 7) somewhere after it. */
    ASSERT_GE(got, 9);
    ASSERT_EQ(buf[3], NGHTTP2_SETTINGS);
    bool goaway = false;
    for (size_t off = 0; off + 9 <= got;) {
        size_t len = ((size_t)buf[off] << 16) | ((size_t)buf[off + 1] << 8) | buf[off + 2];
        goaway |= buf[off + 3] == NGHTTP2_GOAWAY;
        off += 9 + len;
    }
    ASSERT(goaway);
    close(fd);

    /* Plain garbage without a preface, and HTTP/1.1. */
    fd = h2client_tcp_connect("127.0.0.1", fx->port);
    static const char http1[] = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT_EQ(send(fd, http1, sizeof http1 - 1, 0), (ssize_t)(sizeof http1 - 1));
    got = read_until_closed(fd, buf, sizeof buf - 1, &closed);
    ASSERT(closed);
    buf[got] = '\0';
    ASSERT(strncmp((char *)buf, "HTTP/1.1 505 ", 13) == 0);
    close(fd);

    /* A peer that vanishes half-way through the preface. */
    fd = h2client_tcp_connect("127.0.0.1", fx->port);
    ASSERT_EQ(send(fd, "PRI * HT", 8, 0), 8);
    close(fd);

    unary_echo(fx->port, false, "second client");
    size_t n;
    uint8_t *req = h2client_frame((const uint8_t *)"first", 5, &n);
    struct h2client_stream *s = call_once(good, "/test.Echo/Unary", NULL, req, n);
    ASSERT_EQ(s->grpc_status, 0);
    free(req);
    h2client_close(good);
}

TEST(grpc_server, garbage_closes_only_that_connection)
{
    struct fixture fx = {0};
    fixture_run(&fx, 0, false, client_garbage);
    ASSERT_EQ(fx.n_unary, 2);
}

static void client_reset(struct fixture *fx)
{
    h2client *cl;
    ASSERT_EQ(h2client_connect("127.0.0.1", fx->port, false, &cl), 0);
    size_t n;
    uint8_t *req = h2client_frame((const uint8_t *)"late", 4, &n);
    int32_t id = h2client_start(cl, "/test.Echo/Later", NULL, req, n, true);
    ASSERT_GT(id, 0);
    h2client_pump(cl, 30); /* the server has the request; its timer runs */
    ASSERT_EQ(h2client_rst(cl, id), 0);
    /* A second call on the same connection, also answered later. */
    int32_t id2 = h2client_start(cl, "/test.Echo/Later", NULL, req, n, true);
    ASSERT_EQ(h2client_wait(cl, id2, 5000), 0);
    ASSERT_EQ(h2client_stream(cl, id2)->grpc_status, 0);

    /* A whole connection dropped while its call is pending. */
    h2client *cl2;
    ASSERT_EQ(h2client_connect("127.0.0.1", fx->port, false, &cl2), 0);
    ASSERT_GT(h2client_start(cl2, "/test.Echo/Later", NULL, req, n, true), 0);
    h2client_pump(cl2, 30);
    h2client_close(cl2);
    usleep(400 * 1000); /* both timers fire after the cancellations */
    free(req);
    h2client_close(cl);
}

/* Frames after the preface until a PING ACK (1) or a GOAWAY / close / 5 s
 * without one (0). */
static int wait_ping_ack(int fd)
{
    uint8_t buf[16384];
    size_t have = 0;
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (;;) {
        size_t off = 0;
        while (have - off >= 9) {
            size_t len = ((size_t)buf[off] << 16) | ((size_t)buf[off + 1] << 8) | buf[off + 2];
            if (have - off < 9 + len)
                break;
            if (buf[off + 3] == NGHTTP2_GOAWAY)
                return 0;
            if (buf[off + 3] == NGHTTP2_PING && (buf[off + 4] & NGHTTP2_FLAG_ACK))
                return 1;
            off += 9 + len;
        }
        memmove(buf, buf + off, have - off);
        have -= off;
        if (have == sizeof buf)
            return 0;
        ssize_t r = recv(fd, buf + have, sizeof buf - have, 0);
        if (r <= 0)
            return 0;
        have += (size_t)r;
    }
}

static void client_idle_rst(struct fixture *fx)
{
    /* grpc-core cancels calls whose HEADERS it never sent with RST_STREAM
     * (idle streams); the connection must go on, as with grpc-go. */
    int fd = h2client_tcp_connect("127.0.0.1", fx->port);
    ASSERT_GE(fd, 0);
    static const uint8_t start[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                                   "\x00\x00\x00\x04\x00\x00\x00\x00\x00"  /* SETTINGS */
                                   "\x00\x00\x04\x03\x00\x00\x00\x00\x01" /* RST_STREAM 1 */
                                   "\x00\x00\x00\x08"                     /* CANCEL */
                                   "\x00\x00\x04\x03\x00";                /* RST 3, split */
    static const uint8_t rest[] = "\x00\x00\x00\x03\x00\x00\x00\x08"
                                  "\x00\x00\x08\x06\x00\x00\x00\x00\x00pingping";
    ASSERT_EQ(send(fd, start, sizeof start - 1, 0), (ssize_t)(sizeof start - 1));
    usleep(50 * 1000);
    ASSERT_EQ(send(fd, rest, sizeof rest - 1, 0), (ssize_t)(sizeof rest - 1));
    ASSERT_EQ(wait_ping_ack(fd), 1);
    close(fd);
    /* RST_STREAM on stream 0 is still a connection error. */
    fd = h2client_tcp_connect("127.0.0.1", fx->port);
    ASSERT_GE(fd, 0);
    static const uint8_t bad[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                                 "\x00\x00\x00\x04\x00\x00\x00\x00\x00"
                                 "\x00\x00\x04\x03\x00\x00\x00\x00\x00\x00\x00\x00\x08"
                                 "\x00\x00\x08\x06\x00\x00\x00\x00\x00pingping";
    ASSERT_EQ(send(fd, bad, sizeof bad - 1, 0), (ssize_t)(sizeof bad - 1));
    ASSERT_EQ(wait_ping_ack(fd), 0);
    close(fd);
    unary_echo(fx->port, false, "still serving");
}

TEST(grpc_server, idle_stream_rst_keeps_the_connection)
{
    struct fixture fx = {0};
    fixture_run(&fx, 0, false, client_idle_rst);
    ASSERT_EQ(fx.n_unary, 1);
}

/* POSTs body to the JSON gateway; the whole answer (Connection: close). */
static void http1_post(uint16_t port, const char *target, const char *body, size_t body_len,
                       size_t claimed_len, char *out, size_t cap)
{
    int fd = h2client_tcp_connect("127.0.0.1", port);
    ASSERT_GE(fd, 0);
    char head[256];
    int n = snprintf(head, sizeof head,
                     "POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     target, claimed_len);
    ASSERT_EQ(send(fd, head, (size_t)n, 0), n);
    for (size_t off = 0; off < body_len;) {
        ssize_t w = send(fd, body + off, body_len - off, MSG_NOSIGNAL);
        if (w <= 0)
            break; /* the server may answer and close early */
        off += (size_t)w;
    }
    bool closed;
    size_t got = read_until_closed(fd, (uint8_t *)out, cap - 1, &closed);
    out[got] = '\0';
    close(fd);
}

/* {"key": "<base64 of n 'k' bytes>"} (malloc'd). */
static char *range_json(size_t n, size_t *len)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *s = malloc(n / 3 * 4 + 32);
    ASSERT(s != NULL);
    size_t at = (size_t)sprintf(s, "{\"key\": \"");
    const uint8_t k = 'k';
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)k << 16 | (uint32_t)k << 8 | k; /* n is a multiple of 3 */
        s[at++] = b64[v >> 18 & 63];
        s[at++] = b64[v >> 12 & 63];
        s[at++] = b64[v >> 6 & 63];
        s[at++] = b64[v & 63];
    }
    at += (size_t)sprintf(s + at, "\"}");
    *len = at;
    return s;
}

static void client_json_limits(struct fixture *fx)
{
    char out[8192];
    size_t len;
    /* 4.6 KiB of JSON for a 3.5 KiB message: above the 4 KiB gRPC limit as
     * JSON, below it as protobuf, so it is served. */
    char *body = range_json(3498, &len);
    ASSERT_GT(len, 4096);
    http1_post(fx->port, "/v3/kv/range", body, len, len, out, sizeof out);
    free(body);
    if (strncmp(out, "HTTP/1.1 200 ", 13) != 0 || strstr(out, "\"YmFy\"") == NULL)
        TEST_FAIL("small: %.300s", out);
    /* Converted above the gRPC limit: grpc-go's answer as etcd's gateway
     * relays it. */
    body = range_json(4500, &len);
    http1_post(fx->port, "/v3/kv/range", body, len, len, out, sizeof out);
    free(body);
    if (strncmp(out, "HTTP/1.1 429 ", 13) != 0 ||
        strstr(out, "\"error\":\"grpc: received message larger than max (4503 vs. 4096)\"") ==
            NULL ||
        strstr(out, "\"code\":8}") == NULL)
        TEST_FAIL("large: %.300s", out);
    /* A body above 4/3 of the limit plus the slack: 413 at once. */
    size_t huge = 4096 + 4096 / 3 + 3 + (1u << 20);
    http1_post(fx->port, "/v3/kv/range", "", 0, huge, out, sizeof out);
    if (strncmp(out, "HTTP/1.", 7) != 0 || strncmp(out + 8, " 413 ", 5) != 0)
        TEST_FAIL("huge: %.300s", out);
    unary_echo(fx->port, false, "still serving");
}

TEST(grpc_server, json_gateway_body_limits)
{
    struct fixture fx = {.json_gateway = true};
    fixture_run(&fx, 4096, false, client_json_limits);
    ASSERT_EQ(fx.n_unary, 1);
}

TEST(grpc_server, client_reset_before_async_finish)
{
    struct fixture fx = {0};
    fx.later_ms = 200;
    fixture_run(&fx, 0, false, client_reset);
    ASSERT_EQ(fx.n_cancel, 2);
    ASSERT_EQ(fx.n_later_cancelled_at_finish, 2);
    ASSERT_EQ(fx.n_later_send_refused, 2);
}

static void client_hold(struct fixture *fx)
{
    h2client *cl;
    ASSERT_EQ(h2client_connect("127.0.0.1", fx->port, false, &cl), 0);
    size_t n;
    uint8_t *req = h2client_frame((const uint8_t *)"x", 1, &n);
    int32_t id = h2client_start(cl, "/test.Echo/Hold", NULL, req, n, true);
    free(req);
    ASSERT_GT(id, 0);
    for (int i = 0; i < 100 && fx->n_held_seen == 0; i++)
        h2client_pump(cl, 50);
    ASSERT_EQ(fx->n_held_seen, 1);
    /* The client is still connected when the server closes: wake the loop,
     * then expect GOAWAY and the end of the connection. */
    fx->woke = true;
    uv_async_send(&fx->done);
    h2client_wait(cl, id, 5000);
    for (int i = 0; i < 50 && !h2client_eof(cl); i++)
        h2client_pump(cl, 100);
    ASSERT(h2client_goaway(cl));
    ASSERT(h2client_eof(cl));
    h2client_close(cl);
}

/* grpc-timeout: ended at the deadline as etcd's grpc-go ends it; a handler
 * that answers in time answers; a malformed value resets the stream. */
static void client_deadline(struct fixture *fx)
{
    h2client *cl;
    ASSERT_EQ(h2client_connect("127.0.0.1", fx->port, false, &cl), 0);
    size_t n;
    uint8_t *req = h2client_frame((const uint8_t *)"x", 1, &n);
    static const char *const t100ms[] = {"grpc-timeout", "100m", NULL};
    static const char *const t2s[] = {"grpc-timeout", "2S", NULL};
    static const char *const t0[] = {"grpc-timeout", "0S", NULL};
    static const char *const bad[] = {"grpc-timeout", "1x", NULL};
    static const char *const long9[] = {"grpc-timeout", "123456789S", NULL};

    /* The handler holds it past the deadline (300 ms): UNKNOWN at 100 ms. */
    uint64_t t = uv_hrtime();
    struct h2client_stream *s = call_once(cl, "/test.Echo/Later", t100ms, req, n);
    uint64_t ms = (uv_hrtime() - t) / 1000000;
    ASSERT_EQ(s->grpc_status, GRPC_STATUS_UNKNOWN);
    ASSERT_STR_EQ(s->grpc_message, "context deadline exceeded");
    ASSERT(ms >= 90 && ms < 280);
    /* In time: answered. */
    s = call_once(cl, "/test.Echo/Later", t2s, req, n);
    ASSERT_EQ(s->grpc_status, GRPC_STATUS_OK);
    ASSERT_EQ(s->body_len, n);
    /* Expired on arrival: the handler never sees it. */
    s = call_once(cl, "/test.Echo/Unary", t0, req, n);
    ASSERT_EQ(s->grpc_status, GRPC_STATUS_DEADLINE_EXCEEDED);
    ASSERT_STR_EQ(s->grpc_message, "context deadline exceeded");
    /* Malformed: reset, whatever the method. */
    s = call_once(cl, "/test.Echo/Unary", bad, req, n);
    ASSERT(s->reset_by_peer);
    ASSERT_EQ(s->close_code, 1); /* PROTOCOL_ERROR */
    ASSERT_EQ(s->grpc_status, -1);
    s = call_once(cl, "/no.Such/Method", long9, req, n);
    ASSERT(s->reset_by_peer);
    ASSERT_EQ(s->close_code, 1);
    /* The request never completes (no half-close): grpc-go's read of it
     * times out, DEADLINE_EXCEEDED. */
    int32_t id = h2client_start(cl, "/test.Echo/Unary", t100ms, req, n, false);
    ASSERT_GT(id, 0);
    ASSERT_EQ(h2client_wait(cl, id, 5000), 0);
    s = h2client_stream(cl, id);
    ASSERT_EQ(s->grpc_status, GRPC_STATUS_DEADLINE_EXCEEDED);
    /* The connection serves on. */
    s = call_once(cl, "/test.Echo/Unary", NULL, req, n);
    ASSERT_EQ(s->grpc_status, GRPC_STATUS_OK);
    free(req);
    /* Let the held handler finish (cancelled) before the server closes. */
    h2client_pump(cl, 400);
    h2client_close(cl);
}

TEST(grpc_server, grpc_timeout)
{
    struct fixture fx = {0};
    fx.later_ms = 300;
    fixture_run(&fx, 0, false, client_deadline);
    /* One Unary answered; one Later ended at its deadline: told through
     * on_cancel, its late send refused, its finish harmless. */
    const int got[] = {fx.n_unary, fx.n_cancel, fx.n_later_cancelled_at_finish,
                       fx.n_later_send_refused};
    ASSERT_MEM_EQ(got, ((const int[]){1, 1, 1, 1}), sizeof got);
}

TEST(grpc_server, close_cancels_pending_calls)
{
    struct fixture fx = {0};
    fixture_run(&fx, 0, false, client_hold);
    ASSERT_EQ(fx.n_cancel, 1);
    ASSERT(fx.held == NULL);
}

/* ---- real clients ---- */

static int run_capture(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    ASSERT(p != NULL);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    return pclose(p);
}

static void client_python(struct fixture *fx)
{
    char cmd[2048], out[4096];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c '\n"
             "import grpc\n"
             "ch = grpc.insecure_channel(\"127.0.0.1:%u\")\n"
             "print(ch.unary_unary(\"/test.Echo/Unary\")(b\"py-h2c\", timeout=5))\n"
             "try:\n"
             "    ch.unary_unary(\"/test.Nope/X\")(b\"\", timeout=5)\n"
             "except grpc.RpcError as e:\n"
             "    print(e.code(), e.details())\n"
             "r = ch.stream_stream(\"/test.Echo/Stream\")(iter([b\"s1\", b\"s2\"]), timeout=5)\n"
             "print(list(r))\n"
             "creds = grpc.ssl_channel_credentials(open(\"%s\", \"rb\").read())\n"
             "tch = grpc.secure_channel(\"localhost:%u\", creds)\n"
             "print(tch.unary_unary(\"/test.Echo/Unary\")(b\"py-tls\", timeout=5))\n"
             "' 2>&1",
             fx->port, fx->cert, fx->tls_port);
    int rc = run_capture(cmd, out, sizeof out);
    fprintf(stderr, "%s", out);
    ASSERT_EQ(rc, 0);
    ASSERT(strstr(out, "b'py-h2c'") != NULL);
    ASSERT(strstr(out, "StatusCode.UNIMPLEMENTED unknown service test.Nope") != NULL);
    ASSERT(strstr(out, "[b's1', b's1', b's2', b's2']") != NULL);
    ASSERT(strstr(out, "b'py-tls'") != NULL);
}

TEST(grpc_server, python_grpcio_client)
{
    struct fixture fx = {0};
    fixture_run(&fx, 0, true, client_python);
    ASSERT_EQ(fx.n_unary, 2);
}

static void client_etcdctl(struct fixture *fx)
{
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof cmd,
             "ETCDCTL_API=3 etcdctl --dial-timeout=5s --command-timeout=5s "
             "--endpoints=http://127.0.0.1:%u get foo 2>&1",
             fx->port);
    int rc = run_capture(cmd, out, sizeof out);
    fprintf(stderr, "%s", out);
    ASSERT_EQ(rc, 0);
    ASSERT_STR_EQ(out, "foo\nbar\n");
    snprintf(cmd, sizeof cmd,
             "ETCDCTL_API=3 etcdctl --dial-timeout=5s --command-timeout=5s "
             "--endpoints=https://127.0.0.1:%u --cacert=%s -w json get foo 2>&1",
             fx->tls_port, fx->cert);
    rc = run_capture(cmd, out, sizeof out);
    fprintf(stderr, "%s\n", out);
    ASSERT_EQ(rc, 0);
    ASSERT(strstr(out, "\"revision\":7") != NULL);
}

TEST(grpc_server, etcdctl_get_reaches_range)
{
    struct fixture fx = {0};
    fixture_run(&fx, 0, true, client_etcdctl);
}

/* ---- open errors ---- */

TEST(grpc_server, open_errors)
{
    uv_loop_t loop;
    ASSERT_EQ(uv_loop_init(&loop), 0);
    const struct grpc_method m = {.path = "/a.B/C", .on_message = on_fail};
    char errmsg[LSKV_ERRMSG_SIZE];
    grpc_server *srv = NULL, *srv2 = NULL;

    const char *bad[] = {"http://127.0.0.1:0", "tcp://x:1"};
    struct grpc_server_config cfg = {.listen_urls = bad, .n_listen_urls = 2, .methods = &m,
                                     .n_methods = 1};
    ASSERT_EQ(grpc_server_open(&loop, &cfg, &srv, errmsg), LSKV_EINVAL);

    const char *tls[] = {"https://127.0.0.1:0"};
    cfg.listen_urls = tls;
    cfg.n_listen_urls = 1;
    ASSERT_EQ(grpc_server_open(&loop, &cfg, &srv, errmsg), LSKV_EINVAL);
    cfg.tls.cert_file = "/nonexistent.pem";
    cfg.tls.key_file = "/nonexistent.key";
    ASSERT_EQ(grpc_server_open(&loop, &cfg, &srv, errmsg), LSKV_EIO);

    const char *one[] = {"http://127.0.0.1:0"};
    cfg = (struct grpc_server_config){.listen_urls = one, .n_listen_urls = 1, .methods = &m,
                                      .n_methods = 1};
    ASSERT_EQ(grpc_server_open(&loop, &cfg, &srv, errmsg), 0);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u", grpc_server_port(srv, 0));
    const char *dup[] = {"http://[::1]:0", url};
    cfg.listen_urls = dup;
    cfg.n_listen_urls = 2;
    ASSERT_EQ(grpc_server_open(&loop, &cfg, &srv2, errmsg), UV_EADDRINUSE);
    struct fixture fx = {0};
    grpc_server_close(srv, on_server_closed, &fx);
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ASSERT(fx.closed);
    ASSERT_EQ(uv_loop_close(&loop), 0);
}

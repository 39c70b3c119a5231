/* net/peer.c: members' mutual-TLS links and raft's transport, with two or
 * three peer_nets on one loop and certificates made by identity/cert.c. */
#include <errno.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <raft.h>
#include <raft/uv.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "common/err.h"
#include "common/hex.h"
#include "identity/cert.h"
#include "net/peer.h"
#include "net/probe_links.h"
#include "net/tls.h"
#include "runner.h"

/* ---- fixture --------------------------------------------------------------- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    ASSERT(f != NULL);
    static char buf[16384];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    char *s = malloc(n + 1);
    memcpy(s, buf, n);
    s[n] = '\0';
    return s;
}

struct member {
    uint64_t id;
    char *cert, *key;
    uint8_t digest[32]; /* SHA-256 of its SPKI */
};

struct pki {
    char *service; /* the cluster's service certificate */
    struct member m[4]; /* members 1..3 (index = id) of the service */
    struct member foreign; /* member 3 of another service */
    struct member self;    /* a joiner: self-signed */
    char *foreign_service;
};

static void make_member(const char *dir, const cert_service *s, uint64_t id, struct member *m)
{
    char err[LSKV_ERRMSG_SIZE], cn[64], path[600];
    snprintf(cn, sizeof cn, "lskv node %016" PRIx64, id);
    mkdir(dir, 0700);
    cert_node *n;
    ASSERT_EQ(cert_node_load_or_create(dir, s, cn, true, &n, NULL, err), 0);
    m->id = id;
    m->cert = strdup(cert_node_pem(n));
    snprintf(path, sizeof path, "%s/node.key", dir);
    m->key = slurp(path);
    ASSERT_EQ(hex_decode(cert_node_id(n), m->digest, 32), 0);
    cert_node_free(n);
}

static void make_pki(struct pki *p)
{
    char err[LSKV_ERRMSG_SIZE], dir[512], path[600];
    cert_service *s, *s2;
    snprintf(dir, sizeof dir, "%s/svc", test_tmpdir());
    mkdir(dir, 0700);
    ASSERT_EQ(cert_service_load_or_create(dir, "lskv service", true, &s, NULL, err), 0);
    p->service = strdup(cert_service_pem(s));
    for (uint64_t i = 1; i <= 3; i++) {
        snprintf(dir, sizeof dir, "%s/m%" PRIu64, test_tmpdir(), i);
        make_member(dir, s, i, &p->m[i]);
    }
    snprintf(dir, sizeof dir, "%s/svc2", test_tmpdir());
    mkdir(dir, 0700);
    ASSERT_EQ(cert_service_load_or_create(dir, "lskv service", true, &s2, NULL, err), 0);
    p->foreign_service = strdup(cert_service_pem(s2));
    snprintf(dir, sizeof dir, "%s/f3", test_tmpdir());
    make_member(dir, s2, 3, &p->foreign);
    /* A joiner's self-signed certificate for its fresh key. */
    snprintf(dir, sizeof dir, "%s/self", test_tmpdir());
    mkdir(dir, 0700);
    cert_service *self;
    ASSERT_EQ(cert_service_load_or_create(dir, "lskv joiner", true, &self, NULL, err), 0);
    p->self.cert = strdup(cert_service_pem(self));
    snprintf(path, sizeof path, "%s/service.key", dir);
    p->self.key = slurp(path);
    char hexid[CERT_NODE_ID_HEX];
    ASSERT_EQ(cert_node_id_of_pem(p->self.cert, strlen(p->self.cert), hexid), 0);
    ASSERT_EQ(hex_decode(hexid, p->self.digest, 32), 0);
    cert_service_free(self);
    cert_service_free(s);
    cert_service_free(s2);
}

static uv_loop_t loop;
static struct pki pki;

/* Runs the loop until *flag or ms passed; returns *flag. */
static void wake(uv_timer_t *t)
{
    (void)t;
}

static bool run_until(const bool *flag, unsigned ms)
{
    uint64_t end = uv_now(&loop) + ms;
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    uv_timer_start(&t, wake, 10, 10);
    while (!*flag && uv_now(&loop) < end)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return *flag;
}

static void run_for(unsigned ms)
{
    bool never = false;
    run_until(&never, ms);
}

/* What a server net saw. */
struct server {
    int links;
    int close_status;
    uint8_t last_channel;
    uint64_t last_member;
    uint8_t last_digest[32];
    bool refuse;
    bool echo;
};

static void echo_message(void *arg, peer_link *l, const uint8_t *msg, size_t len)
{
    (void)arg;
    ASSERT_EQ(peer_link_send(l, msg, len), 0);
}

static void server_closed(void *arg, peer_link *l, int status)
{
    (void)l;
    struct server *s = arg;
    s->links--;
    s->close_status = status;
}

static int on_link(void *arg, peer_link *l, uint8_t channel)
{
    struct server *s = arg;
    s->last_channel = channel;
    s->last_member = peer_link_member(l);
    peer_link_key_digest(l, s->last_digest);
    if (s->refuse)
        return 1;
    static const struct peer_link_callbacks cbs = {.on_message = echo_message,
                                                   .on_close = server_closed};
    peer_link_set(l, &cbs, s);
    s->links++;
    return 0;
}

static const char *listen_on = "127.0.0.1:0";
static unsigned handshake_ms; /* 0: the default */
static unsigned fork_window;  /* 0: no fork check */

/* op: operator TLS (NULL: none). */
static peer_net *open_net_tls(uint64_t id, const struct member *m, const char *service,
                              const struct peer_operator_tls *op, struct server *s)
{
    char err[LSKV_ERRMSG_SIZE] = "";
    struct peer_net_config cfg = {
        .member_id = id,
        .listen_address = listen_on,
        .handshake_timeout_ms = handshake_ms,
        .fork_window_ms = fork_window,
        .identity = {.cert_pem = m->cert, .key_pem = m->key, .service_cert_pem = service},
        .on_link = on_link,
        .arg = s,
    };
    if (op != NULL)
        cfg.operator_tls = *op;
    peer_net *n = NULL;
    int rv = peer_net_open(&loop, &cfg, &n, err);
    if (rv != 0)
        TEST_FAIL("peer_net_open: %s", err);
    return n;
}

static peer_net *open_net(uint64_t id, const struct member *m, const char *service,
                          struct server *s)
{
    return open_net_tls(id, m, service, NULL, s);
}

static void addr_of(peer_net *n, char *out, size_t cap)
{
    snprintf(out, cap, "127.0.0.1:%u", peer_net_port(n));
}

static void set_true(void *arg)
{
    *(bool *)arg = true;
}

static void close_net(peer_net *n)
{
    bool done = false;
    peer_net_close(n, set_true, &done);
    ASSERT(run_until(&done, 5000));
}

static void setup(void)
{
    uv_loop_init(&loop);
    make_pki(&pki);
}

static void teardown(void)
{
    uv_run(&loop, UV_RUN_NOWAIT);
    ASSERT_EQ(uv_loop_close(&loop), 0); /* every handle was released */
}

/* A client link's view. */
struct client {
    bool opened, closed;
    int open_status, close_status;
    int messages;
    size_t bytes;
    uint8_t last[64];
    size_t last_len;
};

static void c_open(void *arg, peer_link *l, int status)
{
    (void)l;
    struct client *c = arg;
    c->opened = true;
    c->open_status = status;
}

static void c_message(void *arg, peer_link *l, const uint8_t *msg, size_t len)
{
    (void)l;
    struct client *c = arg;
    c->messages++;
    c->bytes += len;
    c->last_len = len < sizeof c->last ? len : sizeof c->last;
    memcpy(c->last, msg, c->last_len);
}

static void c_close(void *arg, peer_link *l, int status)
{
    (void)l;
    struct client *c = arg;
    c->closed = true;
    c->close_status = status;
}

static const struct peer_link_callbacks client_cbs = {c_open, c_message, c_close};

/* ---- links ---------------------------------------------------------------- */

TEST(peer, link_echo)
{
    setup();
    struct server sa = {0}, sb = {0};
    peer_net *a = open_net(1, &pki.m[1], pki.service, &sa);
    peer_net *b = open_net(2, &pki.m[2], pki.service, &sb);
    char addr[64];
    addr_of(a, addr, sizeof addr);
    struct client c = {0};
    peer_link *l;
    ASSERT_EQ(peer_link_connect(b, addr, PEER_FORWARD, &client_cbs, &c, &l), 0);
    /* Queued before the handshake: sent once open. */
    ASSERT_EQ(peer_link_send(l, (const uint8_t *)"hello", 5), 0);
    ASSERT(peer_link_queued(l) > 0);
    ASSERT(run_until(&c.opened, 5000));
    ASSERT_EQ(c.open_status, 0);
    ASSERT_EQ(peer_link_member(l), 1);
    uint8_t digest[32];
    peer_link_key_digest(l, digest);
    ASSERT_MEM_EQ(digest, pki.m[1].digest, 32);
    ASSERT_EQ(sa.last_channel, PEER_FORWARD);
    ASSERT_EQ(sa.last_member, 2);
    ASSERT_MEM_EQ(sa.last_digest, pki.m[2].digest, 32);
    ASSERT_EQ(peer_link_send(l, NULL, 0), 0); /* empty messages are messages */
    static uint8_t big[3 << 20];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7 + (i >> 13));
    ASSERT_EQ(peer_link_send(l, big, sizeof big), 0);
    ASSERT_EQ(peer_link_send(l, (const uint8_t *)"bye", 3), 0);
    ASSERT_EQ(peer_link_send(l, big, PEER_MAX_MESSAGE + 1), LSKV_ETOOLARGE);
    while (c.messages < 4 && run_until(&c.closed, 50))
        ;
    for (int i = 0; i < 400 && c.messages < 4; i++)
        run_for(20);
    ASSERT_EQ(c.messages, 4);
    ASSERT_EQ(c.bytes, 5 + 0 + sizeof big + 3);
    ASSERT_EQ(c.last_len, 3);
    ASSERT_MEM_EQ(c.last, "bye", 3);
    ASSERT_EQ(sa.links, 1);
    peer_link_close(l);
    ASSERT(!c.closed); /* never inside the call */
    ASSERT(run_until(&c.closed, 5000));
    ASSERT_EQ(c.close_status, 0);
    for (int i = 0; i < 100 && sa.links > 0; i++)
        run_for(10);
    ASSERT_EQ(sa.links, 0); /* the server side saw it close */
    close_net(a);
    close_net(b);
    teardown();
}

TEST(peer, refused_by_on_link)
{
    setup();
    struct server sa = {.refuse = true}, sb = {0};
    peer_net *a = open_net(1, &pki.m[1], pki.service, &sa);
    peer_net *b = open_net(2, &pki.m[2], pki.service, &sb);
    char addr[64];
    addr_of(a, addr, sizeof addr);
    struct client c = {0};
    peer_link *l;
    ASSERT_EQ(peer_link_connect(b, addr, PEER_FORWARD, &client_cbs, &c, &l), 0);
    ASSERT(run_until(&c.closed, 5000));
    ASSERT(c.opened);
    ASSERT_EQ(c.open_status, -ECONNREFUSED);
    ASSERT_EQ(sa.last_channel, PEER_FORWARD);
    close_net(a);
    close_net(b);
    teardown();
}

/* Identity: certificates of another service are refused either way. */
TEST(peer, foreign_service_refused)
{
    setup();
    struct server sa = {0}, sf = {0}, sg = {0};
    peer_net *a = open_net(1, &pki.m[1], pki.service, &sa);
    /* f: another cluster's member 3 that trusts only its own service. */
    peer_net *f = open_net(3, &pki.foreign, pki.foreign_service, &sf);
    /* g: the same foreign certificate, but trusting our service: the
     * server must be the one to refuse it. */
    peer_net *g = open_net(3, &pki.foreign, pki.service, &sg);
    char addr_a[64], addr_f[64];
    addr_of(a, addr_a, sizeof addr_a);
    addr_of(f, addr_f, sizeof addr_f);

    struct client c1 = {0}, c2 = {0}, c3 = {0};
    peer_link *l;
    ASSERT_EQ(peer_link_connect(g, addr_a, PEER_FORWARD, &client_cbs, &c1, &l), 0);
    ASSERT(run_until(&c1.closed, 5000));
    ASSERT_EQ(c1.open_status, -ECONNREFUSED); /* a refused g's certificate */
    ASSERT_EQ(sa.last_channel, 0);            /* on_link never saw it */

    ASSERT_EQ(peer_link_connect(a, addr_f, PEER_FORWARD, &client_cbs, &c2, &l), 0);
    ASSERT(run_until(&c2.closed, 5000));
    ASSERT_EQ(c2.open_status, -EACCES); /* a refused f's certificate */
    ASSERT_EQ(sf.last_channel, 0);

    ASSERT_EQ(peer_link_connect(f, addr_a, PEER_FORWARD, &client_cbs, &c3, &l), 0);
    ASSERT(run_until(&c3.closed, 5000));
    ASSERT(c3.open_status < 0);
    ASSERT_EQ(sa.last_channel, 0);
    close_net(a);
    close_net(f);
    close_net(g);
    teardown();
}

/* A joiner's self-signed certificate: good for PEER_JOIN only. */
TEST(peer, join_self_signed)
{
    setup();
    struct server sa = {0}, sj = {0}, sk = {0};
    peer_net *a = open_net(1, &pki.m[1], pki.service, &sa);
    peer_net *j = open_net(9, &pki.self, NULL, &sj);        /* knows no service yet */
    peer_net *k = open_net(9, &pki.self, pki.service, &sk); /* trusts a, is not endorsed */
    char addr[64];
    addr_of(a, addr, sizeof addr);
    struct client c1 = {0}, c2 = {0}, c3 = {0}, c4 = {0};
    peer_link *l1, *l2, *l3;

    ASSERT_EQ(peer_link_connect(j, addr, PEER_JOIN, &client_cbs, &c1, &l1), 0);
    ASSERT(run_until(&c1.opened, 5000));
    ASSERT_EQ(c1.open_status, 0);
    ASSERT_EQ(sa.last_channel, PEER_JOIN);
    ASSERT_EQ(sa.last_member, 0); /* no endorsed identity */
    ASSERT_MEM_EQ(sa.last_digest, pki.self.digest, 32);
    uint8_t d[32];
    peer_link_key_digest(l1, d);
    ASSERT_MEM_EQ(d, pki.m[1].digest, 32); /* the joiner sees a's key */
    ASSERT_EQ(peer_link_member(l1), 0);    /* but cannot check it yet */
    ASSERT_EQ(peer_link_send(l1, (const uint8_t *)"join", 4), 0);
    for (int i = 0; i < 200 && c1.messages == 0; i++)
        run_for(10);
    ASSERT_EQ(c1.messages, 1);

    ASSERT_EQ(peer_link_connect(k, addr, PEER_JOIN, &client_cbs, &c2, &l2), 0);
    ASSERT(run_until(&c2.opened, 5000));
    ASSERT_EQ(c2.open_status, 0);
    ASSERT_EQ(peer_link_member(l2), 1); /* k checked a against the service */

    sa.last_channel = 0;
    ASSERT_EQ(peer_link_connect(k, addr, PEER_FORWARD, &client_cbs, &c3, &l3), 0);
    ASSERT(run_until(&c3.closed, 5000));
    ASSERT_EQ(c3.open_status, -ECONNREFUSED); /* a refused it */
    ASSERT_EQ(sa.last_channel, 0);

    /* Without a service certificate, only PEER_JOIN can be dialled. */
    ASSERT_EQ(peer_link_connect(j, addr, PEER_FORWARD, &client_cbs, &c4, &l3), 0);
    ASSERT(run_until(&c4.closed, 5000));
    ASSERT_EQ(c4.open_status, -EACCES);

    /* After the join: the endorsed identity is used for new connections. */
    struct peer_tls_identity id = {pki.m[3].cert, pki.m[3].key, pki.service};
    char err[LSKV_ERRMSG_SIZE];
    ASSERT_EQ(peer_net_set_identity(j, &id, err), 0);
    struct client c5 = {0};
    ASSERT_EQ(peer_link_connect(j, addr, PEER_FORWARD, &client_cbs, &c5, &l3), 0);
    ASSERT(run_until(&c5.opened, 5000));
    ASSERT_EQ(c5.open_status, 0);
    ASSERT_EQ(sa.last_member, 3);
    ASSERT_EQ(peer_link_member(l3), 1);
    ASSERT(!c1.closed); /* the join link lives on */

    close_net(a);
    ASSERT(c1.closed && c2.closed && c5.closed);
    close_net(j);
    close_net(k);
    teardown();
}

TEST(peer, address_in_use)
{
    setup();
    struct server sa = {0};
    peer_net *a = open_net(1, &pki.m[1], pki.service, &sa);
    char addr[64], err[LSKV_ERRMSG_SIZE] = "";
    addr_of(a, addr, sizeof addr);
    struct peer_net_config cfg = {
        .member_id = 2,
        .listen_address = addr,
        .identity = {pki.m[2].cert, pki.m[2].key, pki.service},
    };
    peer_net *b = NULL;
    ASSERT_EQ(peer_net_open(&loop, &cfg, &b, err), UV_EADDRINUSE);
    ASSERT(strstr(err, addr) != NULL);
    ASSERT(strstr(err, "address already in use") != NULL);
    cfg.listen_address = "127.0.0.1:0";
    cfg.identity.key_pem = pki.m[1].key; /* not the certificate's key */
    ASSERT_EQ(peer_net_open(&loop, &cfg, &b, err), LSKV_EINVAL);
    close_net(a);
    teardown();
}

/* ---- raft's transport ------------------------------------------------------ */

struct rside {
    uv_stream_t *stream;
    raft_id id;
    char address[64];
    int accepted;
    struct raft_uv_connect req;
    bool connected;
    int connect_status;
    bool closed;
    /* reading */
    bool paused;
    size_t got;
    bool bad;
    uint8_t buf[65536];
};

static struct rside *accepted_side;

static void r_accept(struct raft_uv_transport *t, raft_id id, const char *address,
                     uv_stream_t *stream)
{
    (void)t;
    struct rside *s = accepted_side;
    s->accepted++;
    s->id = id;
    snprintf(s->address, sizeof s->address, "%s", address);
    s->stream = stream;
    stream->data = s;
}

static void r_connect(struct raft_uv_connect *req, uv_stream_t *stream, int status)
{
    struct rside *s = req->data;
    s->connected = true;
    s->connect_status = status;
    s->stream = stream;
    if (stream != NULL)
        stream->data = s;
}

static uint8_t pattern(size_t i)
{
    return (uint8_t)(i * 31 + (i >> 16));
}

static void r_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct rside *s = h->data;
    *buf = uv_buf_init((char *)s->buf, sizeof s->buf);
}

static void r_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct rside *s = st->data;
    if (n < 0) {
        s->closed = true;
        uv_read_stop(st);
        return;
    }
    for (ssize_t i = 0; i < n; i++)
        if ((uint8_t)buf->base[i] != pattern(s->got + (size_t)i))
            s->bad = true;
    s->got += (size_t)n;
}

static void close_stream(struct rside *s)
{
    if (s->stream != NULL)
        uv_close((uv_handle_t *)s->stream, (uv_close_cb)raft_free);
    s->stream = NULL;
}

static void t_closed(struct raft_uv_transport *t)
{
    *(bool *)t->data = true;
}

static void close_transport(struct raft_uv_transport *t)
{
    bool done = false;
    t->data = &done;
    t->close(t, t_closed);
    ASSERT(!done);
    ASSERT(run_until(&done, 5000));
}

#define BIG (32u << 20)

TEST(peer, raft_bridge_large)
{
    setup();
    struct server sa = {0}, sb = {0};
    peer_net *a = open_net(1, &pki.m[1], pki.service, &sa);
    peer_net *b = open_net(2, &pki.m[2], pki.service, &sb);
    char addr_a[64], addr_b[64];
    addr_of(a, addr_a, sizeof addr_a);
    addr_of(b, addr_b, sizeof addr_b);
    struct raft_uv_transport *ta = peer_net_raft_transport(a), *tb = peer_net_raft_transport(b);
    ASSERT_EQ(ta->init(ta, 1, addr_a), 0);
    ASSERT_EQ(tb->init(tb, 2, addr_b), 0);
    static struct rside srv, cli;
    accepted_side = &srv;
    ASSERT_EQ(ta->listen(ta, r_accept), 0);
    cli.req.data = &cli;
    ASSERT_EQ(tb->connect(tb, &cli.req, 1, addr_a, r_connect), 0);
    ASSERT(run_until(&cli.connected, 5000));
    ASSERT_EQ(cli.connect_status, 0);
    for (int i = 0; i < 100 && srv.accepted == 0; i++)
        run_for(10);
    ASSERT_EQ(srv.accepted, 1);
    ASSERT_EQ(srv.id, 2);
    ASSERT_STR_EQ(srv.address, addr_b);

    /* 32 MiB each way in one write each; a's reader waits at first. */
    uint8_t *data = malloc(BIG);
    for (size_t i = 0; i < BIG; i++)
        data[i] = pattern(i);
    uv_write_t w1, w2;
    uv_buf_t b1 = uv_buf_init((char *)data, BIG);
    ASSERT_EQ(uv_write(&w1, cli.stream, &b1, 1, NULL), 0);
    ASSERT_EQ(uv_write(&w2, srv.stream, &b1, 1, NULL), 0);
    ASSERT_EQ(uv_read_start(cli.stream, r_alloc, r_read), 0);
    run_for(1500);
    /* Backpressure: what left the writer and is not read yet sits in
     * kernel buffers and the bridges, bounded, not 32 MiB. */
    size_t in_flight = BIG - cli.stream->write_queue_size;
    fprintf(stderr, "# slow reader: %zu bytes in flight after 1.5 s\n", in_flight);
    ASSERT_LT(in_flight, 12u << 20);
    ASSERT_EQ(srv.got, 0);
    uint64_t t0 = uv_now(&loop);
    ASSERT_EQ(uv_read_start(srv.stream, r_alloc, r_read), 0);
    for (int i = 0; i < 3000 && (srv.got < BIG || cli.got < BIG); i++)
        run_for(10);
    fprintf(stderr, "# 2 x 32 MiB through TLS in %" PRIu64 " ms\n", uv_now(&loop) - t0);
    ASSERT_EQ(srv.got, BIG);
    ASSERT_EQ(cli.got, BIG);
    ASSERT(!srv.bad && !cli.bad);

    /* raft closing its stream closes the other side's. */
    close_stream(&cli);
    ASSERT(run_until(&srv.closed, 5000));
    close_stream(&srv);
    close_transport(ta);
    close_transport(tb);
    close_net(a);
    close_net(b);
    free(data);
    teardown();
}

TEST(peer, raft_id_must_match_certificate)
{
    setup();
    struct server sa = {0}, sb = {0};
    peer_net *a = open_net(1, &pki.m[1], pki.service, &sa);
    peer_net *b = open_net(2, &pki.m[2], pki.service, &sb);
    char addr_a[64], addr_b[64];
    addr_of(a, addr_a, sizeof addr_a);
    addr_of(b, addr_b, sizeof addr_b);
    struct raft_uv_transport *ta = peer_net_raft_transport(a), *tb = peer_net_raft_transport(b);
    ASSERT_EQ(ta->init(ta, 1, addr_a), 0);
    ASSERT_EQ(tb->init(tb, 5, addr_b), 0); /* b's certificate says member 2 */
    static struct rside srv, cli, cli2;
    accepted_side = &srv;
    ASSERT_EQ(ta->listen(ta, r_accept), 0);
    cli.req.data = &cli;
    ASSERT_EQ(tb->connect(tb, &cli.req, 1, addr_a, r_connect), 0);
    ASSERT(run_until(&cli.connected, 5000));
    ASSERT_EQ(cli.connect_status, RAFT_NOCONNECTION);
    ASSERT(cli.stream == NULL);
    ASSERT_EQ(srv.accepted, 0);

    /* Dialling id 7 at a's address: a's certificate is member 1's. */
    ASSERT_EQ(tb->init(tb, 2, addr_b), 0);
    cli2.req.data = &cli2;
    ASSERT_EQ(tb->connect(tb, &cli2.req, 7, addr_a, r_connect), 0);
    ASSERT(run_until(&cli2.connected, 5000));
    ASSERT_EQ(cli2.connect_status, RAFT_NOCONNECTION);
    ASSERT_EQ(srv.accepted, 0);
    close_transport(ta);
    close_transport(tb);
    close_net(a);
    close_net(b);
    teardown();
}

/* A TCP server that accepts and never answers: connects to it stay pending. */
static void mute_accept(uv_stream_t *server, int status)
{
    ASSERT_EQ(status, 0);
    uv_tcp_t *c = malloc(sizeof *c);
    uv_tcp_init(&loop, c);
    ASSERT_EQ(uv_accept(server, (uv_stream_t *)c), 0);
    c->data = server->data;
    server->data = c; /* remember the last one, to close it */
}

/* Listens on a free port with mute_accept; addr gets "127.0.0.1:port". */
static void mute_open(uv_tcp_t *mute, char *addr, size_t cap)
{
    uv_tcp_init(&loop, mute);
    mute->data = NULL;
    struct sockaddr_in sin;
    uv_ip4_addr("127.0.0.1", 0, &sin);
    ASSERT_EQ(uv_tcp_bind(mute, (struct sockaddr *)&sin, 0), 0);
    ASSERT_EQ(uv_listen((uv_stream_t *)mute, 8, mute_accept), 0);
    int len = sizeof sin;
    uv_tcp_getsockname(mute, (struct sockaddr *)&sin, &len);
    snprintf(addr, cap, "127.0.0.1:%u", ntohs(sin.sin_port));
}

static void mute_close(uv_tcp_t *mute)
{
    for (uv_tcp_t *m = mute->data; m != NULL;) {
        uv_tcp_t *next = m->data;
        uv_close((uv_handle_t *)m, (uv_close_cb)free);
        m = next;
    }
    uv_close((uv_handle_t *)mute, NULL);
}

TEST(peer, close_with_pending_and_live)
{
    setup();
    struct server sa = {0}, sb = {0};
    peer_net *a = open_net(1, &pki.m[1], pki.service, &sa);
    peer_net *b = open_net(2, &pki.m[2], pki.service, &sb);
    char addr_a[64], addr_b[64], addr_m[64];
    addr_of(a, addr_a, sizeof addr_a);
    addr_of(b, addr_b, sizeof addr_b);
    uv_tcp_t mute;
    mute_open(&mute, addr_m, sizeof addr_m);

    struct raft_uv_transport *ta = peer_net_raft_transport(a), *tb = peer_net_raft_transport(b);
    ASSERT_EQ(ta->init(ta, 1, addr_a), 0);
    ASSERT_EQ(tb->init(tb, 2, addr_b), 0);
    static struct rside srv, live, pending;
    accepted_side = &srv;
    ASSERT_EQ(ta->listen(ta, r_accept), 0);
    live.req.data = &live;
    ASSERT_EQ(tb->connect(tb, &live.req, 1, addr_a, r_connect), 0);
    ASSERT(run_until(&live.connected, 5000));
    ASSERT_EQ(live.connect_status, 0);
    pending.req.data = &pending;
    ASSERT_EQ(tb->connect(tb, &pending.req, 3, addr_m, r_connect), 0);
    struct client c = {0}, cm = {0};
    peer_link *l, *lm;
    ASSERT_EQ(peer_link_connect(b, addr_a, PEER_FORWARD, &client_cbs, &c, &l), 0);
    ASSERT_EQ(peer_link_connect(b, addr_m, PEER_FORWARD, &client_cbs, &cm, &lm), 0);
    ASSERT(run_until(&c.opened, 5000));
    run_for(100);
    ASSERT(!pending.connected && !cm.opened);

    /* raft's side: the transport cancels the pending connect. */
    close_transport(tb);
    ASSERT(pending.connected);
    ASSERT_EQ(pending.connect_status, RAFT_CANCELED);
    /* The net closes the links and the live bridge (raft sees EOF). */
    ASSERT_EQ(uv_read_start(live.stream, r_alloc, r_read), 0);
    close_net(b);
    ASSERT(c.closed && cm.closed);
    ASSERT_EQ(c.close_status, LSKV_ESHUTDOWN);
    ASSERT_EQ(cm.open_status, LSKV_ESHUTDOWN);
    ASSERT(run_until(&live.closed, 5000));
    close_stream(&live);
    close_stream(&srv);
    close_transport(ta);
    struct client c2 = {0};
    ASSERT_EQ(peer_link_connect(a, addr_m, PEER_FORWARD, &client_cbs, &c2, &l), 0);
    close_net(a); /* with a connect in flight */
    ASSERT(c2.closed);
    mute_close(&mute);
    teardown();
}

/* ---- three real libraft nodes over this transport ------------------------- */

struct rnode {
    struct raft_io io;
    struct raft raft;
    struct raft_fsm fsm;
    int applied;
    char last[32];
    bool closed;
};

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    struct rnode *n = fsm->data;
    n->applied++;
    snprintf(n->last, sizeof n->last, "%.*s", (int)buf->len, (const char *)buf->base);
    *result = NULL;
    return 0;
}

static void raft_closed(struct raft *r)
{
    struct rnode *n = r->data;
    n->closed = true;
}

static void applied_cb(struct raft_apply *req, int status, void *result)
{
    (void)result;
    int *st = req->data;
    *st = status == 0 ? 1 : status;
}

TEST(peer, raft_cluster_elects_and_replicates)
{
    setup();
    static struct rnode rn[4];
    struct server sv[4] = {{0}};
    peer_net *net[4];
    char addr[4][64];
    for (int i = 1; i <= 3; i++) {
        net[i] = open_net((uint64_t)i, &pki.m[i], pki.service, &sv[i]);
        addr_of(net[i], addr[i], sizeof addr[i]);
    }
    for (int i = 1; i <= 3; i++) {
        char dir[600];
        snprintf(dir, sizeof dir, "%s/raft%d", test_tmpdir(), i);
        mkdir(dir, 0700);
        struct rnode *n = &rn[i];
        n->fsm.version = 1;
        n->fsm.data = n;
        n->fsm.apply = fsm_apply;
        ASSERT_EQ(raft_uv_init(&n->io, &loop, dir, peer_net_raft_transport(net[i])), 0);
        ASSERT_EQ(raft_init(&n->raft, &n->io, &n->fsm, (raft_id)i, addr[i]), 0);
        n->raft.data = n;
        raft_set_election_timeout(&n->raft, 300);
        raft_set_heartbeat_timeout(&n->raft, 50);
        struct raft_configuration conf;
        raft_configuration_init(&conf);
        for (int j = 1; j <= 3; j++)
            ASSERT_EQ(raft_configuration_add(&conf, (raft_id)j, addr[j], RAFT_VOTER), 0);
        ASSERT_EQ(raft_bootstrap(&n->raft, &conf), 0);
        raft_configuration_close(&conf);
        ASSERT_EQ(raft_start(&n->raft), 0);
    }
    int leader = 0;
    for (int t = 0; t < 1000 && leader == 0; t++) {
        run_for(10);
        for (int i = 1; i <= 3; i++)
            if (raft_state(&rn[i].raft) == RAFT_LEADER)
                leader = i;
    }
    ASSERT_GT(leader, 0);
    fprintf(stderr, "# leader: member %d\n", leader);
    struct raft_apply req;
    int status = 0;
    req.data = &status;
    struct raft_buffer buf = {.base = raft_malloc(8), .len = 8};
    memcpy(buf.base, "entry-42", 8);
    ASSERT_EQ(raft_apply(&rn[leader].raft, &req, &buf, 1, applied_cb), 0);
    for (int t = 0; t < 500 && (rn[1].applied < 1 || rn[2].applied < 1 || rn[3].applied < 1);
         t++)
        run_for(10);
    ASSERT_EQ(status, 1);
    for (int i = 1; i <= 3; i++) {
        ASSERT_EQ(rn[i].applied, 1);
        ASSERT_STR_EQ(rn[i].last, "entry-42");
    }
    for (int i = 1; i <= 3; i++)
        raft_close(&rn[i].raft, raft_closed);
    for (int i = 1; i <= 3; i++)
        ASSERT(run_until(&rn[i].closed, 5000));
    for (int i = 1; i <= 3; i++)
        raft_uv_close(&rn[i].io);
    for (int i = 1; i <= 3; i++)
        close_net(net[i]);
    teardown();
}

/* ---- never hang; addresses ------------------------------------------------- */

struct raw {
    uv_tcp_t tcp;
    uv_connect_t req;
    uv_write_t w;
    bool connected, eof;
    const char *send; /* sent once connected */
};

static void raw_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    static char b[65536];
    (void)suggested;
    *buf = uv_buf_init(b, sizeof b);
}

static void raw_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    struct raw *r = st->data;
    if (n < 0)
        r->eof = true;
}

static void raw_connected(uv_connect_t *req, int status)
{
    struct raw *r = req->data;
    ASSERT_EQ(status, 0);
    r->connected = true;
    uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_read);
    if (r->send != NULL) {
        uv_buf_t b = uv_buf_init((char *)r->send, (unsigned)strlen(r->send));
        uv_write(&r->w, (uv_stream_t *)&r->tcp, &b, 1, NULL);
    }
}

static void raw_connect(struct raw *r, uint16_t port)
{
    struct sockaddr_in sin;
    uv_ip4_addr("127.0.0.1", port, &sin);
    uv_tcp_init(&loop, &r->tcp);
    r->tcp.data = r->req.data = r;
    ASSERT_EQ(uv_tcp_connect(&r->req, &r->tcp, (struct sockaddr *)&sin, raw_connected), 0);
}

TEST(peer, handshake_timeout_both_sides)
{
    setup();
    handshake_ms = 300;
    struct server sa = {0}, sb = {0};
    peer_net *a = open_net(1, &pki.m[1], pki.service, &sa);
    peer_net *b = open_net(2, &pki.m[2], pki.service, &sb);
    /* Server side: a client that says nothing, and one that speaks no TLS. */
    static struct raw silent, junk = {.send = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"};
    raw_connect(&silent, peer_net_port(a));
    raw_connect(&junk, peer_net_port(a));
    ASSERT(run_until(&junk.eof, 1000));
    ASSERT(!silent.eof);
    ASSERT(run_until(&silent.eof, 2000));

    /* Client side: a server that accepts and says nothing. */
    uv_tcp_t mute;
    char addr_m[64], addr_b[64];
    mute_open(&mute, addr_m, sizeof addr_m);
    addr_of(b, addr_b, sizeof addr_b);
    struct client c = {0};
    peer_link *l;
    uint64_t t0 = uv_now(&loop);
    ASSERT_EQ(peer_link_connect(a, addr_m, PEER_FORWARD, &client_cbs, &c, &l), 0);
    ASSERT(run_until(&c.closed, 3000));
    ASSERT_EQ(c.open_status, LSKV_ETIMEOUT);
    ASSERT_GE(uv_now(&loop) - t0, 250);
    struct raft_uv_transport *ta = peer_net_raft_transport(a);
    ASSERT_EQ(ta->init(ta, 1, "127.0.0.1:1"), 0);
    static struct rside r;
    r.req.data = &r;
    ASSERT_EQ(ta->connect(ta, &r.req, 3, addr_m, r_connect), 0);
    ASSERT(run_until(&r.connected, 3000));
    ASSERT_EQ(r.connect_status, RAFT_NOCONNECTION);
    /* Nothing listening: refused at once. */
    struct client c2 = {0};
    close_net(b);
    ASSERT_EQ(peer_link_connect(a, addr_b, PEER_FORWARD, &client_cbs, &c2, &l), 0);
    ASSERT(run_until(&c2.closed, 3000));
    ASSERT_EQ(c2.open_status, UV_ECONNREFUSED);
    ASSERT_EQ(peer_link_connect(a, "no-port", PEER_FORWARD, &client_cbs, &c2, &l), LSKV_EINVAL);
    ASSERT_EQ(peer_link_connect(a, addr_b, PEER_RAFT, &client_cbs, &c2, &l), LSKV_EINVAL);

    close_transport(ta);
    close_net(a);
    mute_close(&mute);
    uv_close((uv_handle_t *)&silent.tcp, NULL);
    uv_close((uv_handle_t *)&junk.tcp, NULL);
    teardown();
}

/* Names and IPv6 literals, for listening and dialling. */
TEST(peer, addresses)
{
    setup();
    struct server sa = {0}, sb = {0};
    listen_on = "localhost:0";
    peer_net *a = open_net(1, &pki.m[1], pki.service, &sa);
    listen_on = "[::1]:0";
    char err[LSKV_ERRMSG_SIZE];
    struct peer_net_config cfg = {
        .member_id = 2,
        .listen_address = listen_on,
        .identity = {pki.m[2].cert, pki.m[2].key, pki.service},
        .on_link = on_link,
        .arg = &sb,
    };
    peer_net *b = NULL;
    bool v6 = peer_net_open(&loop, &cfg, &b, err) == 0;
    if (!v6) {
        fprintf(stderr, "# no IPv6 here: %s\n", err);
        cfg.listen_address = "127.0.0.1:0";
        ASSERT_EQ(peer_net_open(&loop, &cfg, &b, err), 0);
    }
    char addr[64];
    struct client c1 = {0}, c2 = {0};
    peer_link *l;
    snprintf(addr, sizeof addr, "localhost:%u", peer_net_port(a));
    ASSERT_EQ(peer_link_connect(b, addr, PEER_FORWARD, &client_cbs, &c1, &l), 0);
    ASSERT(run_until(&c1.opened, 5000));
    ASSERT_EQ(c1.open_status, 0);
    if (v6) {
        snprintf(addr, sizeof addr, "[::1]:%u", peer_net_port(b));
        ASSERT_EQ(peer_link_connect(a, addr, PEER_FORWARD, &client_cbs, &c2, &l), 0);
        ASSERT(run_until(&c2.opened, 5000));
        ASSERT_EQ(c2.open_status, 0);
        ASSERT_EQ(peer_link_member(l), 2);
    }
    close_net(a);
    close_net(b);
    teardown();
}

/* ---- a hand-driven client (net/tls.h), to send what peer.c never would --- */

struct hand {
    uv_tcp_t tcp;
    uv_connect_t req;
    tls_ctx *ctx;
    tls_conn *tls;
    bool ready, eof;
    const uint8_t *after; /* plaintext sent once the handshake is done */
    size_t after_len;
    uint8_t ack;
    bool acked;
};

static void free_write(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void hand_flush(struct hand *h)
{
    size_t n = tls_conn_pending(h->tls);
    if (n == 0)
        return;
    uv_write_t *w = malloc(sizeof *w + n);
    uint8_t *buf = (uint8_t *)(w + 1);
    n = tls_conn_take(h->tls, buf, n);
    uv_buf_t b = uv_buf_init((char *)buf, (unsigned)n);
    ASSERT_EQ(uv_write(w, (uv_stream_t *)&h->tcp, &b, 1, free_write), 0);
}

static void hand_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct hand *h = st->data;
    if (n < 0) {
        h->eof = true;
        return;
    }
    if (tls_conn_feed(h->tls, (const uint8_t *)buf->base, (size_t)n) != 0) {
        h->eof = true;
        return;
    }
    hand_flush(h);
    if (!h->ready && tls_conn_ready(h->tls)) {
        h->ready = true;
        ASSERT_EQ(tls_conn_write(h->tls, h->after, h->after_len), 0);
        hand_flush(h);
    }
    uint8_t plain[256];
    ssize_t got = tls_conn_read(h->tls, plain, sizeof plain);
    if (got > 0 && !h->acked) {
        h->acked = true;
        h->ack = plain[0];
    } else if (got < 0) {
        h->eof = true;
    }
}

static void hand_connected(uv_connect_t *req, int status)
{
    struct hand *h = req->data;
    ASSERT_EQ(status, 0);
    ASSERT_EQ(uv_read_start((uv_stream_t *)&h->tcp, raw_alloc, hand_read), 0);
    hand_flush(h); /* the ClientHello */
}

/* Connects to port as member m, sends after (plaintext) once ready. */
static void hand_start(struct hand *h, const struct member *m, uint16_t port)
{
    SSL_CTX *sc = SSL_CTX_new(TLS_client_method());
    BIO *cb = BIO_new_mem_buf(m->cert, -1), *kb = BIO_new_mem_buf(m->key, -1);
    X509 *x = PEM_read_bio_X509(cb, NULL, NULL, NULL);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
    ASSERT(x != NULL && k != NULL);
    ASSERT_EQ(SSL_CTX_use_certificate(sc, x), 1);
    ASSERT_EQ(SSL_CTX_use_PrivateKey(sc, k), 1);
    SSL_CTX_set_verify(sc, SSL_VERIFY_NONE, NULL);
    X509_free(x);
    EVP_PKEY_free(k);
    BIO_free(cb);
    BIO_free(kb);
    ASSERT_EQ(tls_ctx_wrap(sc, true, &h->ctx), 0);
    ASSERT_EQ(tls_conn_open(h->ctx, &h->tls), 0);
    struct sockaddr_in sin;
    uv_ip4_addr("127.0.0.1", port, &sin);
    uv_tcp_init(&loop, &h->tcp);
    h->tcp.data = h->req.data = h;
    ASSERT_EQ(uv_tcp_connect(&h->req, &h->tcp, (struct sockaddr *)&sin, hand_connected), 0);
}

static void hand_done(uv_handle_t *hd)
{
    struct hand *h = hd->data;
    tls_conn_close(h->tls);
    tls_ctx_close(h->ctx);
}

TEST(peer, bad_bytes_after_handshake)
{
    setup();
    struct server sa = {0};
    peer_net *a = open_net(1, &pki.m[1], pki.service, &sa);
    /* A frame announcing PEER_MAX_MESSAGE + 1 bytes ends the link. */
    static uint8_t msg[PEER_PREAMBLE_MAX + 8];
    struct peer_preamble p = {.channel = PEER_FORWARD, .incarnation = 7};
    size_t n = peer_preamble_encode(&p, msg);
    peer_frame_header(5, msg + n);
    memcpy(msg + n + 4, "hello", 5);
    peer_frame_header(PEER_MAX_MESSAGE + 1u, msg + n + 9);
    static struct hand h1;
    h1.after = msg;
    h1.after_len = n + 13;
    hand_start(&h1, &pki.m[2], peer_net_port(a));
    ASSERT(run_until(&h1.eof, 5000));
    ASSERT(h1.acked);
    ASSERT_EQ(h1.ack, PEER_ACK_OK);
    ASSERT_EQ(sa.last_member, 2);
    for (int i = 0; i < 100 && sa.links > 0; i++)
        run_for(10);
    ASSERT_EQ(sa.links, 0);
    ASSERT_EQ(sa.close_status, LSKV_ETOOLARGE);

    /* A malformed preamble: closed, on_link never called. */
    sa.last_channel = 0;
    static const uint8_t junk[] = "LSKP\x02\x09junkjunkjunk";
    static struct hand h2;
    h2.after = junk;
    h2.after_len = sizeof junk - 1;
    hand_start(&h2, &pki.m[2], peer_net_port(a));
    ASSERT(run_until(&h2.eof, 5000));
    ASSERT(!h2.acked);
    ASSERT_EQ(sa.last_channel, 0);

    uv_close((uv_handle_t *)&h1.tcp, hand_done);
    uv_close((uv_handle_t *)&h2.tcp, hand_done);
    close_net(a);
    teardown();
}

/* ---- forks ---------------------------------------------------------------- */

/* Connects from n to addr on PEER_FORWARD, sends msg and waits for its echo. */
static peer_link *echoed(peer_net *n, const char *addr, struct client *c, const char *msg)
{
    peer_link *l = NULL;
    ASSERT_EQ(peer_link_connect(n, addr, PEER_FORWARD, &client_cbs, c, &l), 0);
    ASSERT_EQ(peer_link_send(l, (const uint8_t *)msg, strlen(msg)), 0);
    for (int i = 0; i < 500 && c->messages == 0; i++)
        run_for(10);
    ASSERT_EQ(c->open_status, 0);
    ASSERT_EQ(c->messages, 1);
    return l;
}

/* Two processes acting as member 2 (a copied data dir): while the first is
 * heard within the fork window, the second is refused with -EEXIST; once the
 * first has been silent longer, the second is taken as a restart and the
 * first's remaining link is closed when it next sends. */
TEST(peer, second_incarnation_refused_while_first_live)
{
    setup();
    fork_window = 300;
    struct server sa = {.echo = true}, sb1 = {0}, sb2 = {0};
    peer_net *a = open_net(1, &pki.m[1], pki.service, &sa);
    peer_net *b1 = open_net(2, &pki.m[2], pki.service, &sb1);
    peer_net *b2 = open_net(2, &pki.m[2], pki.service, &sb2);
    fork_window = 0;
    ASSERT(peer_net_incarnation(b1) != 0);
    ASSERT(peer_net_incarnation(b1) != peer_net_incarnation(b2));
    char addr[64];
    addr_of(a, addr, sizeof addr);

    struct client c1 = {0};
    peer_link *l1 = echoed(b1, addr, &c1, "one");

    /* The first keeps talking: the second is refused each time. */
    for (int round = 0; round < 2; round++) {
        struct client c2 = {0};
        peer_link *l2 = NULL;
        ASSERT_EQ(peer_link_connect(b2, addr, PEER_PROBE, &client_cbs, &c2, &l2), 0);
        ASSERT(run_until(&c2.closed, 5000));
        ASSERT(c2.opened);
        ASSERT_EQ(c2.open_status, -EEXIST);
        ASSERT_EQ(peer_link_send(l1, (const uint8_t *)"one", 3), 0);
        run_for(100);
    }
    ASSERT_EQ(c1.messages, 3);

    /* Silent for longer than the window: a restart. */
    run_for(400);
    struct client c3 = {0};
    peer_link *l3 = echoed(b2, addr, &c3, "two");
    /* The old process's link is closed once it speaks again. */
    ASSERT_EQ(peer_link_send(l1, (const uint8_t *)"one", 3), 0);
    ASSERT(run_until(&c1.closed, 5000));
    ASSERT_EQ(c1.messages, 3);

    /* Once the live one's links have all closed (it stopped: its kernel
     * closes them), another is a restart at once, window or not. */
    peer_link_close(l3);
    ASSERT(run_until(&c3.closed, 5000));
    for (int i = 0; i < 100 && sa.links > 0; i++)
        run_for(10);
    struct client c4 = {0};
    peer_link *l4 = echoed(b1, addr, &c4, "three");
    peer_link_close(l4);
    ASSERT(run_until(&c4.closed, 5000));
    close_net(b1);
    close_net(b2);
    close_net(a);
    teardown();
}

/* ---- the rollback probe (net/probe_links.h) -------------------------------- */

/* A member's net whose PEER_PROBE links go to its probe_links and whose
 * other links echo (struct server). */
struct prober {
    struct server s;
    peer_net *net;
    probe_links *probes;
    bool done;
    int status;
    char why[LSKV_ERRMSG_SIZE];
};

static int prober_link(void *arg, peer_link *l, uint8_t channel)
{
    struct prober *p = arg;
    if (channel != PEER_PROBE)
        return on_link(&p->s, l, channel);
    probe_links_accept(p->probes, l);
    return 0;
}

static void prober_done(void *arg, int status, const char *why)
{
    struct prober *p = arg;
    p->done = true;
    p->status = status;
    snprintf(p->why, sizeof p->why, "%s", why);
}

/* Opens member id's net (fork window 300 ms) into a zeroed *p, with a probe
 * of the members at addrs (ids in ids), paced on a 100 ms election. */
static void prober_open(struct prober *p, uint64_t id, const uint64_t *ids,
                        const char *const *addrs, size_t n)
{
    memset(p, 0, sizeof *p);
    char err[LSKV_ERRMSG_SIZE] = "";
    struct peer_net_config cfg = {
        .member_id = id,
        .listen_address = listen_on,
        .identity = {.cert_pem = pki.m[id].cert, .key_pem = pki.m[id].key,
                     .service_cert_pem = pki.service},
        .on_link = prober_link,
        .arg = p,
        .fork_window_ms = 300,
    };
    if (peer_net_open(&loop, &cfg, &p->net, err) != 0)
        TEST_FAIL("peer_net_open: %s", err);
    struct probe_peer peers[3];
    for (size_t i = 0; i < n; i++)
        peers[i] = (struct probe_peer){.id = ids[i], .address = addrs[i]};
    ASSERT_EQ(probe_links_new(&loop, p->net, peers, n, 100, &p->probes), 0);
}

static void prober_close(struct prober *p)
{
    probe_links_close(p->probes);
    close_net(p->net);
}

/* Members that are themselves starting answer "not running": once every
 * other member answered, the asker may start. */
TEST(peer, probe_answered_by_every_member_starts)
{
    setup();
    static struct prober a, b, c;
    prober_open(&b, 2, NULL, NULL, 0);
    prober_open(&c, 3, NULL, NULL, 0);
    char ab[64], ac[64];
    addr_of(b.net, ab, sizeof ab);
    addr_of(c.net, ac, sizeof ac);
    const uint64_t ids[] = {2, 3};
    const char *const addrs[] = {ab, ac};
    prober_open(&a, 1, ids, addrs, 2);
    struct probe_self self = {.last_index = 10, .term = 2};
    ASSERT_EQ(probe_links_ask(a.probes, &self, prober_done, &a), 0);
    ASSERT(!a.done); /* never inside the call */
    ASSERT_EQ(probe_links_ask(a.probes, &self, prober_done, &a), LSKV_EINVAL);
    ASSERT(run_until(&a.done, 5000));
    ASSERT_EQ(a.status, 0);
    prober_close(&a);
    prober_close(&b);
    prober_close(&c);
    teardown();
}

/* Nobody answers: the asker waits (no majority), and closing it calls no one. */
TEST(peer, probe_without_answers_waits)
{
    setup();
    static struct prober a, gone;
    prober_open(&gone, 2, NULL, NULL, 0);
    char addr[64];
    addr_of(gone.net, addr, sizeof addr);
    prober_close(&gone); /* its port is closed now */
    const uint64_t ids[] = {2, 3};
    const char *const addrs[] = {addr, addr};
    prober_open(&a, 1, ids, addrs, 2);
    struct probe_self self = {.last_index = 10, .term = 2};
    ASSERT_EQ(probe_links_ask(a.probes, &self, prober_done, &a), 0);
    ASSERT(!run_until(&a.done, 1500));
    prober_close(&a);
    ASSERT(!a.done);
    teardown();
}

/* A second process of member 2 asks while the first one talks to member 1:
 * member 1 refuses it each time, and after three election timeouts of
 * refusals it is told to stop (-EEXIST). */
TEST(peer, probe_of_a_second_live_process_is_refused)
{
    setup();
    static struct prober a, b1, b2;
    prober_open(&a, 1, NULL, NULL, 0);
    prober_open(&b1, 2, NULL, NULL, 0);
    char aa[64];
    addr_of(a.net, aa, sizeof aa);
    const uint64_t ids[] = {1};
    const char *const addrs[] = {aa};
    prober_open(&b2, 2, ids, addrs, 1);
    struct client c1 = {0};
    peer_link *l1 = echoed(b1.net, aa, &c1, "live");
    struct probe_self self = {.last_index = 10, .term = 2};
    ASSERT_EQ(probe_links_ask(b2.probes, &self, prober_done, &b2), 0);
    for (int i = 0; i < 60 && !b2.done; i++) {
        ASSERT_EQ(peer_link_send(l1, (const uint8_t *)"live", 4), 0);
        run_for(50);
    }
    ASSERT(b2.done);
    ASSERT_EQ(b2.status, -EEXIST);
    ASSERT(strstr(b2.why, "another process of this member is live") != NULL);
    ASSERT(!c1.closed); /* the first process was not disturbed */
    peer_link_close(l1);
    ASSERT(run_until(&c1.closed, 5000));
    prober_close(&b2);
    prober_close(&b1);
    prober_close(&a);
    teardown();
}

/* ---- operator TLS (--peer-cert-file ...) ---------------------------------- */

struct op_pki {
    char *ca;                 /* the operator's CA */
    struct member cert[3];    /* handshake certificates it issued */
    struct member rogue;      /* one issued by another CA */
};

static void make_op_pki(struct op_pki *o)
{
    char err[LSKV_ERRMSG_SIZE], dir[512];
    cert_service *ca, *other;
    snprintf(dir, sizeof dir, "%s/opca", test_tmpdir());
    mkdir(dir, 0700);
    ASSERT_EQ(cert_service_load_or_create(dir, "operator CA", true, &ca, NULL, err), 0);
    o->ca = strdup(cert_service_pem(ca));
    for (uint64_t i = 0; i < 3; i++) {
        snprintf(dir, sizeof dir, "%s/op%" PRIu64, test_tmpdir(), i);
        make_member(dir, ca, 0x100 + i, &o->cert[i]);
    }
    snprintf(dir, sizeof dir, "%s/opca2", test_tmpdir());
    mkdir(dir, 0700);
    ASSERT_EQ(cert_service_load_or_create(dir, "another CA", true, &other, NULL, err), 0);
    snprintf(dir, sizeof dir, "%s/oprogue", test_tmpdir());
    make_member(dir, other, 0x200, &o->rogue);
    cert_service_free(ca);
    cert_service_free(other);
}

static peer_net *open_op_net(uint64_t id, const struct member *m, const char *service,
                             const struct member *op, const char *ca, struct server *s)
{
    struct peer_operator_tls tls = {.cert_pem = op->cert, .key_pem = op->key, .ca_pem = ca,
                                    .client_cert_auth = true};
    return open_net_tls(id, m, service, &tls, s);
}

/* The handshake presents the operator's certificates; who a member is comes
 * from the proof inside: its node certificate, endorsed by the service. */
TEST(peer, operator_tls_proves_the_node_inside)
{
    setup();
    struct op_pki op;
    make_op_pki(&op);
    struct server sa = {0}, sb = {0}, sc = {0}, sd = {0};
    peer_net *a = open_op_net(1, &pki.m[1], pki.service, &op.cert[0], op.ca, &sa);
    peer_net *b = open_op_net(2, &pki.m[2], pki.service, &op.cert[1], op.ca, &sb);
    /* c: the operator certificate of another CA (node identity fine) */
    peer_net *c = open_op_net(3, &pki.m[3], pki.service, &op.rogue, op.ca, &sc);
    /* d: the operator's certificate, but another service's node */
    peer_net *d = open_op_net(3, &pki.foreign, pki.service, &op.cert[2], op.ca, &sd);
    char addr[64];
    addr_of(a, addr, sizeof addr);

    struct client cb = {0};
    peer_link *l;
    ASSERT_EQ(peer_link_connect(b, addr, PEER_FORWARD, &client_cbs, &cb, &l), 0);
    ASSERT_EQ(peer_link_send(l, (const uint8_t *)"hello", 5), 0);
    ASSERT(run_until(&cb.opened, 5000));
    ASSERT_EQ(cb.open_status, 0);
    ASSERT_EQ(peer_link_member(l), 1);
    uint8_t digest[32];
    peer_link_key_digest(l, digest);
    ASSERT_MEM_EQ(digest, pki.m[1].digest, 32); /* the node key, not the TLS one */
    ASSERT_EQ(sa.last_member, 2);
    ASSERT_MEM_EQ(sa.last_digest, pki.m[2].digest, 32);
    for (int i = 0; i < 200 && cb.messages < 1; i++)
        run_for(10);
    ASSERT_EQ(cb.messages, 1);
    ASSERT_MEM_EQ(cb.last, "hello", 5);
    peer_link_close(l);
    ASSERT(run_until(&cb.closed, 5000));

    sa.last_channel = 0;
    struct client cc = {0}, cd = {0};
    ASSERT_EQ(peer_link_connect(c, addr, PEER_FORWARD, &client_cbs, &cc, &l), 0);
    ASSERT(run_until(&cc.closed, 5000));
    ASSERT(cc.open_status < 0);    /* the handshake failed: not the operator's CA */
    ASSERT_EQ(sa.last_channel, 0); /* on_link never saw it */
    ASSERT_EQ(peer_link_connect(d, addr, PEER_FORWARD, &client_cbs, &cd, &l), 0);
    ASSERT(run_until(&cd.closed, 5000));
    ASSERT_EQ(cd.open_status, -ECONNREFUSED); /* a refused d's node certificate */
    ASSERT_EQ(sa.last_channel, 0);
    close_net(a);
    close_net(b);
    close_net(c);
    close_net(d);
    free(op.ca);
    for (int i = 0; i < 3; i++) {
        free(op.cert[i].cert);
        free(op.cert[i].key);
    }
    free(op.rogue.cert);
    free(op.rogue.key);
    teardown();
}

/* The peer network (see peer.h).
 *
 * One struct peer_link per TCP connection, whatever its channel. Its life:
 *   client: RESOLVE -> CONNECT -> TLS -> PREAMBLE (await the ack) -> OPEN
 *   server:                       TLS -> PREAMBLE (await it)      -> OPEN
 * and CLOSED from any state. Closing closes the link's libuv handles; the
 * struct is freed, and the deferred callbacks (on_open failure, on_close,
 * raft's connect callback) run, once the last handle's close callback came:
 * so no callback runs inside an API call, and user callbacks may close the
 * link (or the net) freely.
 *
 * Why the certificate check is ours and after the handshake: the channel,
 * which decides whether a joiner's unendorsed certificate is acceptable,
 * comes in the preamble, inside TLS. OpenSSL's own verification is told to
 * accept any certificate (TLS 1.3 still proves the peer holds its key), and
 * check_peer below decides, against the service certificate, with the
 * identity code (identity/cert.c) doing the chain check. */
#include "net/peer.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/err.h"
#include "common/hex.h"
#include "common/log.h"
#include "common/url.h"
#include "identity/cert.h"
#include "net/listener.h"
#include "net/tls.h"

#define MOD "peer"
#define READ_CHUNK 65536

/* TLS contexts and trust anchor for new connections; shared, so that links
 * keep theirs after peer_net_set_identity. */
struct ident {
    int refs;
    tls_ctx *server, *client;
    cert_service *service; /* NULL before joining */
    /* Operator TLS (peer.h): the contexts present the operator's
     * certificate, and the node's goes in the identity proof. */
    bool wrapped;
    EVP_PKEY *node_key;
    char *node_cert_pem;
};

/* Operator TLS settings, copied. */
struct op_tls {
    char *cert_pem, *key_pem, *ca_pem;
    char *allowed_cn, *allowed_hostname;
    bool client_cert_auth;
};

enum state { S_RESOLVE, S_CONNECT, S_TLS, S_PROOF, S_PREAMBLE, S_OPEN, S_CLOSED };

struct peer_link {
    peer_net *net;
    peer_link *prev, *next; /* net->links */
    bool client;
    uint8_t channel;
    enum state state;
    char name[PEER_ADDRESS_MAX + 16]; /* peer's address, for logs */
    struct ident *ident;
    tls_conn *tls;
    uv_tcp_t tcp;
    uv_timer_t timer; /* handshake timeout */
    uv_getaddrinfo_t gai;
    uv_connect_t connect;
    struct addrinfo *addrs, *next_addr; /* client: what the name resolved to */
    bool gai_pending, tcp_reading;
    int handles;      /* open libuv handles and pending requests */
    int close_status; /* why it closed */
    bool opened;      /* client: on_open(0) was called */

    uint64_t member;        /* proven by an endorsed certificate, or 0 */
    uint64_t incarnation;   /* server: the one the preamble announced */
    bool counted;           /* server: counted in its member's heard.links */
    uint8_t key_digest[32]; /* SHA-256 of the peer's SPKI DER */
    char *cert_pem;         /* the peer's certificate, PEM (PEER_JOIN links only) */
    char *proven_pem;       /* operator TLS: the node certificate its proof proved */
    uint8_t *proof;         /* operator TLS: the peer's proof so far */
    size_t proof_len;

    /* Server: the preamble so far. */
    uint8_t pre[PEER_PREAMBLE_MAX];
    size_t pre_len;

    /* Message links. */
    struct peer_link_callbacks cbs;
    void *arg;
    struct peer_framer framer;
    uint8_t *pending; /* plaintext written before OPEN */
    size_t pending_len;

    /* Raft connections. */
    uint64_t raft_id;                        /* client: dialled; server: claimed */
    char raft_address[PEER_ADDRESS_MAX + 1]; /* server: the client's raft address */
    struct raft_uv_connect *raft_req;        /* client: until its callback */
    raft_uv_connect_cb raft_cb;
    uv_pipe_t bridge; /* our end of the socketpair */
    bool bridge_open, bridge_reading;
};

struct peer_net {
    uv_loop_t *loop;
    uint64_t member_id;
    struct ident *ident;
    struct op_tls op; /* cert_pem NULL: node certificates in the handshake */
    uv_tcp_t listener;
    uv_tcp_t more[PEER_MAX_MORE_LISTEN]; /* peer_net_config.more_listen */
    size_t n_more;
    uv_timer_t defer; /* runs the transport's close callback outside close */
    unsigned handshake_timeout_ms;
    int (*on_link)(void *arg, peer_link *l, uint8_t channel);
    void *arg;
    peer_link *links;
    int handles; /* listener + defer */
    uint64_t incarnation;    /* this process's, announced in every preamble */
    unsigned fork_window_ms; /* 0: no fork check */
    /* The newest incarnation heard from each member and when (uv_now). */
    struct heard {
        uint64_t member, incarnation, at_ms;
        int links; /* server-side links of that incarnation still open */
    } *heard;
    size_t n_heard;
    bool closing;
    void (*close_cb)(void *arg);
    void *close_arg;

    struct raft_uv_transport transport;
    raft_id raft_id;
    char raft_address[PEER_ADDRESS_MAX + 1];
    raft_uv_accept_cb accept_cb;
    bool transport_closing;
    const char *(*moved_address)(void *arg, uint64_t id); /* peer_net_set_raft_address */
    void *moved_address_arg;
    raft_uv_transport_close_cb transport_close_cb;
};

static void link_close(peer_link *l, int status);
static void flush_tls(peer_link *l);

/* ---- identity ------------------------------------------------------------ */

static void openssl_errmsg(char *errmsg, const char *what)
{
    char buf[200] = "unknown OpenSSL error";
    unsigned long e = ERR_get_error();
    if (e != 0)
        ERR_error_string_n(e, buf, sizeof buf);
    errmsg_printf(errmsg, "%s: %s", what, buf);
    ERR_clear_error();
}

/* Any certificate passes OpenSSL; check_peer decides (see the top note). */
static int accept_any(int ok, X509_STORE_CTX *ctx)
{
    (void)ok;
    (void)ctx;
    return 1;
}

/* Operator TLS: etcd's checks of the peer's certificate (a chain to the CA
 * when one is given; the server asks for a client certificate only with
 * client_cert_auth). Who the peer is comes from its proof. */
static int op_verify(SSL_CTX *ctx, const struct op_tls *op, bool client, char *errmsg)
{
    int mode = SSL_VERIFY_NONE;
    if (op->ca_pem != NULL) {
        BIO *b = BIO_new_mem_buf(op->ca_pem, -1);
        X509_STORE *store = SSL_CTX_get_cert_store(ctx);
        X509 *x;
        int n = 0;
        while (b != NULL && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
            n += X509_STORE_add_cert(store, x) == 1;
            X509_free(x);
        }
        BIO_free(b);
        ERR_clear_error();
        if (n == 0) {
            errmsg_printf(errmsg, "--peer-trusted-ca-file: no certificate in it");
            return LSKV_EINVAL;
        }
        mode = SSL_VERIFY_PEER;
    }
    if (!client)
        mode = op->client_cert_auth ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                                    : SSL_VERIFY_NONE;
    SSL_CTX_set_verify(ctx, mode, NULL);
    return 0;
}

/* op NULL: the node certificate in the handshake, checked by check_peer. */
static int make_ssl_ctx(const struct peer_tls_identity *id, const struct op_tls *op, bool client,
                        tls_ctx **out, char *errmsg)
{
    SSL_CTX *ctx = SSL_CTX_new(client ? TLS_client_method() : TLS_server_method());
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    BIO *cb = NULL, *kb = NULL;
    int rv = LSKV_EINVAL;
    if (ctx == NULL) {
        openssl_errmsg(errmsg, "SSL_CTX_new");
        return LSKV_ENOMEM;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (op == NULL)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, accept_any);
    else if ((rv = op_verify(ctx, op, client, errmsg)) != 0)
        goto out;
    rv = LSKV_EINVAL;
    cb = BIO_new_mem_buf(id->cert_pem, -1);
    kb = BIO_new_mem_buf(id->key_pem, -1);
    if (cb == NULL || kb == NULL) {
        rv = LSKV_ENOMEM;
        goto out;
    }
    cert = PEM_read_bio_X509(cb, NULL, NULL, NULL);
    key = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
    if (cert == NULL || key == NULL) {
        openssl_errmsg(errmsg, cert == NULL ? "peer certificate" : "peer key");
        goto out;
    }
    if (SSL_CTX_use_certificate(ctx, cert) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        openssl_errmsg(errmsg, "peer certificate and key");
        goto out;
    }
    rv = tls_ctx_wrap(ctx, client, out);
    if (rv == 0)
        ctx = NULL;
    if (rv == 0 && op != NULL && (op->allowed_cn != NULL || op->allowed_hostname != NULL) &&
        (rv = tls_ctx_allow_only(*out, op->allowed_cn, op->allowed_hostname)) != 0) {
        tls_ctx_close(*out);
        *out = NULL;
    }
out:
    X509_free(cert);
    EVP_PKEY_free(key);
    BIO_free(cb);
    BIO_free(kb);
    SSL_CTX_free(ctx);
    return rv;
}

static void op_free(struct op_tls *op)
{
    free(op->cert_pem);
    if (op->key_pem != NULL)
        OPENSSL_cleanse(op->key_pem, strlen(op->key_pem));
    free(op->key_pem);
    free(op->ca_pem);
    free(op->allowed_cn);
    free(op->allowed_hostname);
    *op = (struct op_tls){0};
}

static int op_copy(const struct peer_operator_tls *in, struct op_tls *out)
{
    *out = (struct op_tls){.client_cert_auth = in->client_cert_auth};
    if (in->cert_pem == NULL)
        return 0;
    out->cert_pem = strdup(in->cert_pem);
    out->key_pem = in->key_pem ? strdup(in->key_pem) : NULL;
    out->ca_pem = in->ca_pem ? strdup(in->ca_pem) : NULL;
    out->allowed_cn = in->allowed_cn ? strdup(in->allowed_cn) : NULL;
    out->allowed_hostname = in->allowed_hostname ? strdup(in->allowed_hostname) : NULL;
    if (out->cert_pem == NULL || out->key_pem == NULL || (in->ca_pem && out->ca_pem == NULL) ||
        (in->allowed_cn && out->allowed_cn == NULL) ||
        (in->allowed_hostname && out->allowed_hostname == NULL)) {
        op_free(out);
        return LSKV_ENOMEM;
    }
    return 0;
}

static void ident_unref(struct ident *id)
{
    if (id == NULL || --id->refs > 0)
        return;
    tls_ctx_close(id->server);
    tls_ctx_close(id->client);
    cert_service_free(id->service);
    EVP_PKEY_free(id->node_key);
    free(id->node_cert_pem);
    free(id);
}

/* The node key and certificate that sign this member's proofs. */
static int ident_wrap(struct ident *id, const struct peer_tls_identity *pi, char *errmsg)
{
    BIO *kb = BIO_new_mem_buf(pi->key_pem, -1);
    id->node_key = kb != NULL ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
    BIO_free(kb);
    if (id->node_key == NULL) {
        openssl_errmsg(errmsg, "peer identity: node key");
        return LSKV_EINVAL;
    }
    if ((id->node_cert_pem = strdup(pi->cert_pem)) == NULL)
        return LSKV_ENOMEM;
    if (strlen(id->node_cert_pem) > PEER_PROOF_CERT_MAX) {
        errmsg_printf(errmsg, "peer identity: node certificate over %d bytes",
                      PEER_PROOF_CERT_MAX);
        return LSKV_EINVAL;
    }
    id->wrapped = true;
    return 0;
}

static int ident_make(const struct peer_tls_identity *pi, const struct op_tls *op,
                      struct ident **out, char *errmsg)
{
    if (pi->cert_pem == NULL || pi->key_pem == NULL) {
        errmsg_printf(errmsg, "peer identity: no certificate or key");
        return LSKV_EINVAL;
    }
    struct ident *id = calloc(1, sizeof *id);
    if (id == NULL)
        return LSKV_ENOMEM;
    id->refs = 1;
    int rv;
    if (op->cert_pem != NULL) {
        struct peer_tls_identity as = {.cert_pem = op->cert_pem, .key_pem = op->key_pem};
        rv = make_ssl_ctx(&as, op, false, &id->server, errmsg);
        if (rv == 0)
            rv = make_ssl_ctx(&as, op, true, &id->client, errmsg);
        if (rv == 0)
            rv = ident_wrap(id, pi, errmsg);
    } else {
        rv = make_ssl_ctx(pi, NULL, false, &id->server, errmsg);
        if (rv == 0)
            rv = make_ssl_ctx(pi, NULL, true, &id->client, errmsg);
    }
    if (rv == 0 && pi->service_cert_pem != NULL) {
        rv = cert_service_from_pem(pi->service_cert_pem, strlen(pi->service_cert_pem),
                                   &id->service, errmsg);
        if (rv != 0) {
            errmsg_wrapf(errmsg, "service certificate");
            rv = LSKV_EINVAL;
        }
    }
    if (rv != 0) {
        ident_unref(id);
        return rv;
    }
    *out = id;
    return 0;
}

/* Member id from a node certificate's CN "lskv node <16 hex>", or 0. */
static uint64_t cn_member(X509 *x)
{
    char cn[64];
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn);
    ERR_clear_error();
    if (n != 26 || strncmp(cn, "lskv node ", 10) != 0)
        return 0;
    uint64_t id = 0;
    for (int i = 10; i < 26; i++) {
        char c = cn[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            return 0;
        id = id << 4 | (uint64_t)v;
    }
    return id;
}

/* Decides whether the peer's certificate may use channel (the top note and
 * peer.h); want_member is the raft id the peer must be, 0 for any. Sets
 * l->member and l->key_digest. Returns 0, or -EACCES with why in reason. */
static int check_peer(peer_link *l, uint8_t channel, uint64_t want_member, char *reason,
                      size_t cap)
{
    SSL *ssl = tls_conn_ssl(l->tls);
    X509 *proven = NULL;
    if (l->ident->wrapped && l->proven_pem != NULL) {
        BIO *pb = BIO_new_mem_buf(l->proven_pem, -1);
        proven = pb != NULL ? PEM_read_bio_X509(pb, NULL, NULL, NULL) : NULL;
        BIO_free(pb);
    }
    X509 *x = l->ident->wrapped ? proven : ssl ? SSL_get0_peer_certificate(ssl) : NULL;
    if (x == NULL) {
        snprintf(reason, cap, "no certificate");
        return -EACCES;
    }
    BIO *b = BIO_new(BIO_s_mem());
    char *pem = NULL;
    long pem_len = -1;
    if (b != NULL && PEM_write_bio_X509(b, x) == 1)
        pem_len = BIO_get_mem_data(b, &pem);
    ERR_clear_error();
    int rv = -EACCES;
    char hexid[CERT_NODE_ID_HEX];
    if (pem_len <= 0 || cert_node_id_of_pem(pem, (size_t)pem_len, hexid) != 0 ||
        hex_decode(hexid, l->key_digest, sizeof l->key_digest) != 0) {
        snprintf(reason, cap, "unreadable certificate");
        goto out;
    }
    const cert_service *s = l->ident->service;
    char err[LSKV_ERRMSG_SIZE] = "no service certificate to check it against";
    bool endorsed = s != NULL && cert_check_endorsed(s, pem, (size_t)pem_len, err) == 0;
    uint64_t member = endorsed ? cn_member(x) : 0;
    l->member = member;
    if (channel == PEER_JOIN && l->cert_pem == NULL &&
        (l->cert_pem = strndup(pem, (size_t)pem_len)) == NULL) {
        snprintf(reason, cap, "out of memory");
        goto out;
    }
    if (channel == PEER_JOIN && (!l->client || s == NULL)) {
        rv = 0; /* a joiner, or joining: attestation checks the key */
    } else if (!endorsed) {
        snprintf(reason, cap, "%s", err);
    } else if (member == 0) {
        snprintf(reason, cap, "certificate does not name a member (CN \"lskv node <id>\")");
    } else if (want_member != 0 && member != want_member) {
        snprintf(reason, cap, "raft id %016" PRIx64 " but certificate of member %016" PRIx64,
                 want_member, member);
    } else {
        rv = 0;
    }
out:
    BIO_free(b);
    X509_free(proven);
    return rv;
}

/* ---- incarnations ---------------------------------------------------------- */

static struct heard *heard_of(peer_net *n, uint64_t member)
{
    for (size_t i = 0; i < n->n_heard; i++)
        if (n->heard[i].member == member)
            return &n->heard[i];
    struct heard *h = realloc(n->heard, (n->n_heard + 1) * sizeof *h);
    if (h == NULL)
        return NULL;
    n->heard = h;
    h[n->n_heard] = (struct heard){.member = member};
    return &h[n->n_heard++];
}

/* Server: a member's link announced incarnation inc. Refused (non-zero, with
 * reason) while another incarnation of that member has a link open here and
 * was heard within the fork window: two processes act as one member (a
 * copied data dir). An incarnation whose links all closed (a process that
 * stopped or died: its kernel closes them) or that was not heard for longer
 * (a partition) is taken as gone: a restart. */
static int check_incarnation(peer_link *l, uint64_t inc, char *reason, size_t cap)
{
    peer_net *n = l->net;
    l->incarnation = inc;
    if (n->fork_window_ms == 0 || l->member == 0)
        return 0;
    struct heard *h = heard_of(n, l->member);
    if (h == NULL)
        return 0; /* out of memory: no check rather than no service */
    uint64_t now = uv_now(n->loop);
    if (h->incarnation != 0 && h->incarnation != inc && h->links > 0 &&
        now - h->at_ms < n->fork_window_ms) {
        snprintf(reason, cap, "member %016" PRIx64 " is already live as incarnation %016" PRIx64
                 " (heard %" PRIu64 " ms ago); refusing a second process of it (incarnation %016"
                 PRIx64 "): was its data dir copied?", l->member, h->incarnation, now - h->at_ms,
                 inc);
        return -EEXIST;
    }
    if (h->incarnation != inc)
        h->links = 0; /* the old one's links are closed when they next send */
    h->incarnation = inc;
    h->at_ms = now;
    h->links++;
    l->counted = true;
    return 0;
}

/* Server: bytes came from the member behind l. A link of an incarnation
 * that another has replaced (after the fork window) is closed. */
static bool heard_from(peer_link *l)
{
    peer_net *n = l->net;
    if (l->client || n->fork_window_ms == 0 || l->member == 0 || l->incarnation == 0)
        return true;
    struct heard *h = heard_of(n, l->member);
    if (h == NULL)
        return true;
    if (h->incarnation != l->incarnation)
        return false;
    h->at_ms = uv_now(n->loop);
    return true;
}

/* ---- life cycle ---------------------------------------------------------- */

static void net_maybe_closed(peer_net *n)
{
    if (!n->closing || n->links != NULL || n->handles > 0)
        return;
    if (n->transport_close_cb != NULL) /* peer_net_close came first */
        n->transport_close_cb(&n->transport);
    void (*cb)(void *) = n->close_cb;
    void *arg = n->close_arg;
    ident_unref(n->ident);
    op_free(&n->op);
    free(n->heard);
    free(n);
    if (cb != NULL)
        cb(arg);
}

static void defer_cb(uv_timer_t *t);

static bool raft_pending(const peer_net *n)
{
    for (const peer_link *l = n->links; l != NULL; l = l->next)
        if (l->raft_req != NULL)
            return true;
    return false;
}

static void transport_maybe_closed(peer_net *n)
{
    if (n->transport_closing && n->transport_close_cb != NULL && !raft_pending(n) &&
        !uv_is_closing((uv_handle_t *)&n->defer))
        uv_timer_start(&n->defer, defer_cb, 0, 0);
}

static struct heard *heard_of(peer_net *n, uint64_t member);

static void link_free(peer_link *l)
{
    peer_net *n = l->net;
    if (l->counted) {
        struct heard *h = heard_of(n, l->member);
        if (h != NULL && h->incarnation == l->incarnation)
            h->links--;
    }
    if (l->prev != NULL)
        l->prev->next = l->next;
    else
        n->links = l->next;
    if (l->next != NULL)
        l->next->prev = l->prev;
    int status = l->close_status;
    if (l->raft_req != NULL) {
        struct raft_uv_connect *req = l->raft_req;
        l->raft_req = NULL;
        l->raft_cb(req, NULL, status == LSKV_ESHUTDOWN ? RAFT_CANCELED : RAFT_NOCONNECTION);
    }
    if (l->channel != PEER_RAFT && l->client && !l->opened && l->cbs.on_open != NULL)
        l->cbs.on_open(l->arg, l, status);
    if (l->cbs.on_close != NULL)
        l->cbs.on_close(l->arg, l, status);
    tls_conn_close(l->tls);
    ident_unref(l->ident);
    peer_framer_free(&l->framer);
    free(l->pending);
    if (l->addrs != NULL)
        uv_freeaddrinfo(l->addrs);
    free(l->cert_pem);
    free(l->proven_pem);
    free(l->proof);
    free(l);
    transport_maybe_closed(n);
    net_maybe_closed(n);
}

static void handle_closed(uv_handle_t *h)
{
    peer_link *l = h->data;
    if (--l->handles == 0)
        link_free(l);
}

static void link_close(peer_link *l, int status)
{
    if (l->state == S_CLOSED)
        return;
    l->state = S_CLOSED;
    l->close_status = status;
    if (l->gai_pending)
        uv_cancel((uv_req_t *)&l->gai); /* its callback still comes */
    if (!uv_is_closing((uv_handle_t *)&l->tcp)) /* else retry_closed counts it */
        uv_close((uv_handle_t *)&l->tcp, handle_closed);
    uv_close((uv_handle_t *)&l->timer, handle_closed);
    if (l->bridge_open)
        uv_close((uv_handle_t *)&l->bridge, handle_closed);
}

static const char *channel_name(uint8_t channel)
{
    switch (channel) {
    case PEER_RAFT:
        return " (raft)";
    case PEER_JOIN:
        return " (join)";
    case PEER_FORWARD:
        return " (forward)";
    case PEER_PROBE:
        return " (probe)";
    }
    return ""; /* a server before the preamble */
}

/* Logs why a connection is refused or failed, once, and closes it. */
static void refuse(peer_link *l, int status, const char *what, const char *reason)
{
    if (l->state != S_CLOSED)
        LOG_WARN(MOD, "%s %s%s closed: %s", l->client ? "connection to" : "connection from",
                 l->name, channel_name(l->channel), reason ? reason : what);
    link_close(l, status);
}

static void timeout_cb(uv_timer_t *t)
{
    peer_link *l = t->data;
    refuse(l, LSKV_ETIMEOUT, "handshake timed out", NULL);
}

static peer_link *link_new(peer_net *n, bool client, uint8_t channel)
{
    peer_link *l = calloc(1, sizeof *l);
    if (l == NULL)
        return NULL;
    l->net = n;
    l->client = client;
    l->channel = channel;
    l->ident = n->ident;
    n->ident->refs++;
    uv_tcp_init(n->loop, &l->tcp);
    uv_timer_init(n->loop, &l->timer);
    l->tcp.data = l->timer.data = l;
    l->handles = 2;
    uv_timer_start(&l->timer, timeout_cb, n->handshake_timeout_ms, 0);
    l->next = n->links;
    if (n->links != NULL)
        n->links->prev = l;
    n->links = l;
    return l;
}

/* ---- bytes out ----------------------------------------------------------- */

struct wreq {
    uv_write_t req;
    peer_link *l;
    uint8_t data[];
};

static void bridge_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

static void tcp_write_cb(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    peer_link *l = w->l;
    free(w);
    if (status < 0) {
        link_close(l, status);
        return;
    }
    /* raft -> peer backpressure: resume reading raft's bytes. */
    if (l->state == S_OPEN && l->bridge_open && !l->bridge_reading &&
        l->tcp.write_queue_size < PEER_BRIDGE_HIGH_WATER / 2) {
        if (uv_read_start((uv_stream_t *)&l->bridge, alloc_cb, bridge_read_cb) == 0)
            l->bridge_reading = true;
    }
}

/* Moves the ciphertext OpenSSL made onto the socket. */
static void flush_tls(peer_link *l)
{
    size_t n;
    while (l->state != S_CLOSED && (n = tls_conn_pending(l->tls)) > 0) {
        struct wreq *w = malloc(sizeof *w + n);
        if (w == NULL) {
            link_close(l, LSKV_ENOMEM);
            return;
        }
        w->l = l;
        n = tls_conn_take(l->tls, w->data, n);
        uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)n);
        int rv = uv_write(&w->req, (uv_stream_t *)&l->tcp, &b, 1, tcp_write_cb);
        if (rv != 0) {
            free(w);
            link_close(l, rv);
        }
    }
}

static int send_plain(peer_link *l, const uint8_t *data, size_t len)
{
    if (tls_conn_write(l->tls, data, len) != 0) {
        link_close(l, LSKV_EIO);
        return LSKV_EIO;
    }
    flush_tls(l);
    return 0;
}

/* ---- raft bridge --------------------------------------------------------- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = malloc(READ_CHUNK);
    buf->len = buf->base ? READ_CHUNK : 0;
}

/* raft wrote: encrypt and send. */
static void bridge_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    peer_link *l = s->data;
    if (nread > 0 && l->state == S_OPEN) {
        send_plain(l, (const uint8_t *)buf->base, (size_t)nread);
        if (l->state == S_OPEN && l->tcp.write_queue_size > PEER_BRIDGE_HIGH_WATER) {
            uv_read_stop(s);
            l->bridge_reading = false;
        }
    } else if (nread < 0) {
        link_close(l, nread == UV_EOF ? 0 : (int)nread);
    }
    free(buf->base);
}

static void tcp_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void bridge_write_cb(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    peer_link *l = w->l;
    free(w);
    if (status < 0) {
        link_close(l, status);
        return;
    }
    /* peer -> raft backpressure: resume reading the peer. */
    if (l->state == S_OPEN && !l->tcp_reading &&
        l->bridge.write_queue_size < PEER_BRIDGE_HIGH_WATER / 2) {
        if (uv_read_start((uv_stream_t *)&l->tcp, alloc_cb, tcp_read_cb) == 0)
            l->tcp_reading = true;
    }
}

static void to_raft(peer_link *l, const uint8_t *data, size_t len)
{
    struct wreq *w = malloc(sizeof *w + len);
    if (w == NULL) {
        link_close(l, LSKV_ENOMEM);
        return;
    }
    w->l = l;
    memcpy(w->data, data, len);
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)len);
    int rv = uv_write(&w->req, (uv_stream_t *)&l->bridge, &b, 1, bridge_write_cb);
    if (rv != 0) {
        free(w);
        link_close(l, rv);
        return;
    }
    if (l->bridge.write_queue_size > PEER_BRIDGE_HIGH_WATER && l->tcp_reading) {
        uv_read_stop((uv_stream_t *)&l->tcp);
        l->tcp_reading = false;
    }
}

/* Makes the socketpair; *raft_end is the raft_malloc'ed pipe for raft. */
static int bridge_open(peer_link *l, uv_stream_t **raft_end)
{
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
        return -errno;
    uv_pipe_t *p = raft_malloc(sizeof *p);
    int rv = p == NULL ? LSKV_ENOMEM : uv_pipe_init(l->net->loop, p, 0);
    if (rv != 0) {
        raft_free(p);
        close(fds[0]);
        close(fds[1]);
        return rv;
    }
    uv_pipe_init(l->net->loop, &l->bridge, 0);
    l->bridge.data = l;
    l->bridge_open = true;
    l->handles++;
    rv = uv_pipe_open(p, fds[0]);
    if (rv != 0) {
        close(fds[0]);
        close(fds[1]);
        uv_close((uv_handle_t *)p, (uv_close_cb)raft_free);
        return rv;
    }
    rv = uv_pipe_open(&l->bridge, fds[1]);
    if (rv != 0)
        close(fds[1]);
    else
        rv = uv_read_start((uv_stream_t *)&l->bridge, alloc_cb, bridge_read_cb);
    if (rv != 0) {
        uv_close((uv_handle_t *)p, (uv_close_cb)raft_free);
        return rv;
    }
    l->bridge_reading = true;
    *raft_end = (uv_stream_t *)p;
    return 0;
}

/* ---- bytes in ------------------------------------------------------------ */

static int message_cb(void *arg, const uint8_t *msg, size_t len)
{
    peer_link *l = arg;
    if (l->cbs.on_message != NULL)
        l->cbs.on_message(l->arg, l, msg, len);
    return l->state == S_CLOSED ? 1 : 0;
}

static void open_data(peer_link *l, const uint8_t *data, size_t len)
{
    if (len == 0 || l->state != S_OPEN)
        return;
    if (l->channel == PEER_RAFT) {
        to_raft(l, data, len);
        return;
    }
    int rv = peer_framer_feed(&l->framer, data, len, message_cb, l);
    if (rv == LSKV_ETOOLARGE)
        refuse(l, rv, "message over PEER_MAX_MESSAGE", NULL);
    else if (rv < 0)
        link_close(l, rv);
}

static void set_open(peer_link *l)
{
    l->state = S_OPEN;
    uv_timer_stop(&l->timer);
    if (l->pending_len > 0) {
        uint8_t *p = l->pending;
        size_t n = l->pending_len;
        l->pending = NULL;
        l->pending_len = 0;
        send_plain(l, p, n);
        free(p);
    }
}

/* Client: the server's answer to the preamble. */
static size_t client_ack(peer_link *l, const uint8_t *data, size_t len)
{
    if (data[0] == PEER_ACK_FORK) {
        refuse(l, -EEXIST, "refused by the server: another process of this member is live "
               "there", NULL);
        return len;
    }
    if (data[0] != PEER_ACK_OK) {
        refuse(l, -ECONNREFUSED, "refused by the server", NULL);
        return len;
    }
    set_open(l);
    if (l->channel == PEER_RAFT) {
        uv_stream_t *stream = NULL;
        int rv = bridge_open(l, &stream);
        if (rv != 0) {
            link_close(l, rv);
            return len;
        }
        struct raft_uv_connect *req = l->raft_req;
        l->raft_req = NULL;
        l->raft_cb(req, stream, 0);
    } else {
        l->opened = true;
        if (l->cbs.on_open != NULL)
            l->cbs.on_open(l->arg, l, 0);
    }
    return 1;
}

static void send_ack(peer_link *l, uint8_t ack)
{
    /* Written ahead of anything queued while on_link ran. */
    if (tls_conn_write(l->tls, &ack, 1) != 0)
        link_close(l, LSKV_EIO);
    else
        flush_tls(l);
}

/* Server: a complete preamble. */
static void server_preamble(peer_link *l, const struct peer_preamble *p)
{
    peer_net *n = l->net;
    char reason[300];
    l->channel = p->channel;
    l->raft_id = p->raft_id;
    snprintf(l->raft_address, sizeof l->raft_address, "%s", p->address);
    if (check_peer(l, p->channel, p->raft_id, reason, sizeof reason) != 0) {
        send_ack(l, PEER_ACK_REFUSED);
        refuse(l, -EACCES, NULL, reason);
        return;
    }
    if (check_incarnation(l, p->incarnation, reason, sizeof reason) != 0) {
        send_ack(l, PEER_ACK_FORK);
        refuse(l, -EEXIST, NULL, reason);
        return;
    }
    if (p->channel == PEER_RAFT) {
        uv_stream_t *stream = NULL;
        int rv = LSKV_ESHUTDOWN;
        if (n->accept_cb != NULL && !n->transport_closing)
            rv = bridge_open(l, &stream);
        if (rv != 0) {
            send_ack(l, PEER_ACK_REFUSED);
            refuse(l, rv, NULL, rv == LSKV_ESHUTDOWN ? "raft is not listening" : uv_strerror(rv));
            return;
        }
        send_ack(l, PEER_ACK_OK);
        set_open(l);
        n->accept_cb(&n->transport, p->raft_id, p->address, stream);
        return;
    }
    int refused = n->on_link != NULL ? n->on_link(n->arg, l, p->channel) : 1;
    if (l->state == S_CLOSED)
        return;
    if (refused) {
        send_ack(l, PEER_ACK_REFUSED);
        l->cbs = (struct peer_link_callbacks){0};
        refuse(l, -ECONNREFUSED, "refused by this member", NULL);
        return;
    }
    send_ack(l, PEER_ACK_OK);
    if (l->state != S_CLOSED)
        set_open(l);
}

/* Server: collects the preamble; returns the bytes of data it took. */
static size_t server_collect(peer_link *l, const uint8_t *data, size_t len)
{
    size_t take = sizeof l->pre - l->pre_len;
    if (take > len)
        take = len;
    memcpy(l->pre + l->pre_len, data, take);
    struct peer_preamble p;
    int rv = peer_preamble_decode(l->pre, l->pre_len + take, &p);
    if (rv < 0) {
        refuse(l, LSKV_ECORRUPT, "malformed preamble", NULL);
        return len;
    }
    if (rv == 0) {
        l->pre_len += take;
        return take;
    }
    size_t used = (size_t)rv - l->pre_len;
    server_preamble(l, &p);
    return used;
}

static size_t proof_collect(peer_link *l, const uint8_t *data, size_t len);

/* Plaintext from the peer, in whatever state. */
static void on_plain(peer_link *l, const uint8_t *data, size_t len)
{
    while (len > 0 && (l->state == S_PROOF || l->state == S_PREAMBLE)) {
        size_t used = l->state == S_PROOF ? proof_collect(l, data, len)
                      : l->client          ? client_ack(l, data, len)
                                           : server_collect(l, data, len);
        data += used;
        len -= used;
    }
    open_data(l, data, len);
}

/* The TLS exporter value of this session (RFC 8446 7.5). */
static int exporter_of(peer_link *l, uint8_t out[PEER_EXPORTER_BYTES])
{
    SSL *ssl = tls_conn_ssl(l->tls);
    int ok = ssl != NULL &&
             SSL_export_keying_material(ssl, out, PEER_EXPORTER_BYTES, PEER_EXPORTER_LABEL,
                                        strlen(PEER_EXPORTER_LABEL), NULL, 0, 0) == 1;
    ERR_clear_error();
    return ok ? 0 : LSKV_EIO;
}

/* Operator TLS: this member's node certificate and its signature over the
 * session, so the peer learns who holds this end. */
static void send_proof(peer_link *l)
{
    uint8_t exp[PEER_EXPORTER_BYTES], msg[PEER_PROOF_MESSAGE_BYTES], sig[PEER_PROOF_SIG_MAX];
    size_t sig_len = sizeof sig;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = exporter_of(l, exp) == 0 && md != NULL;
    if (ok) {
        peer_proof_message(!l->client, exp, msg);
        ok = EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, l->ident->node_key) == 1 &&
             EVP_DigestSign(md, sig, &sig_len, msg, sizeof msg) == 1;
    }
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    static uint8_t out[PEER_PROOF_MAX]; /* the loop's thread only */
    const char *pem = l->ident->node_cert_pem;
    size_t n = ok ? peer_proof_encode((const uint8_t *)pem, strlen(pem), sig, sig_len, out) : 0;
    if (n == 0) {
        refuse(l, LSKV_EIO, "cannot sign this member's identity proof", NULL);
        return;
    }
    send_plain(l, out, n);
}

/* Checks the peer's proof: its signature by the key of the certificate it
 * names, over this session. Returns 0 or -EACCES with why in reason. */
static int check_proof(peer_link *l, const struct peer_proof *p, char *reason, size_t cap)
{
    uint8_t exp[PEER_EXPORTER_BYTES], msg[PEER_PROOF_MESSAGE_BYTES];
    BIO *b = BIO_new_mem_buf(p->cert_pem, (int)p->cert_len);
    X509 *x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rv = -EACCES;
    if (x == NULL) {
        snprintf(reason, cap, "identity proof: unreadable certificate");
    } else if (md == NULL || exporter_of(l, exp) != 0) {
        snprintf(reason, cap, "identity proof: no TLS exporter value");
    } else {
        peer_proof_message(l->client, exp, msg); /* the peer is the server iff we dial */
        if (EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, X509_get0_pubkey(x)) != 1 ||
            EVP_DigestVerify(md, p->sig, p->sig_len, msg, sizeof msg) != 1)
            snprintf(reason, cap, "identity proof: the signature does not verify with the "
                                  "certificate's key over this session");
        else if ((l->proven_pem = strndup((const char *)p->cert_pem, p->cert_len)) == NULL)
            snprintf(reason, cap, "out of memory");
        else
            rv = 0;
    }
    ERR_clear_error();
    EVP_MD_CTX_free(md);
    X509_free(x);
    return rv;
}

static void preamble_stage(peer_link *l);

/* Operator TLS: collects the peer's proof; returns the bytes of data it
 * took. */
static size_t proof_collect(peer_link *l, const uint8_t *data, size_t len)
{
    if (l->proof == NULL && (l->proof = malloc(PEER_PROOF_MAX)) == NULL) {
        link_close(l, LSKV_ENOMEM);
        return len;
    }
    size_t take = PEER_PROOF_MAX - l->proof_len;
    if (take > len)
        take = len;
    memcpy(l->proof + l->proof_len, data, take);
    struct peer_proof p;
    int rv = peer_proof_decode(l->proof, l->proof_len + take, &p);
    if (rv < 0) {
        refuse(l, LSKV_ECORRUPT, "malformed identity proof", NULL);
        return len;
    }
    if (rv == 0) {
        l->proof_len += take;
        return take;
    }
    size_t used = (size_t)rv - l->proof_len;
    char reason[300];
    int ok = check_proof(l, &p, reason, sizeof reason);
    free(l->proof);
    l->proof = NULL;
    l->proof_len = 0;
    if (ok != 0) {
        refuse(l, -EACCES, NULL, reason);
        return len;
    }
    preamble_stage(l);
    return used;
}

static void handshake_done(peer_link *l)
{
    if (l->ident->wrapped) {
        l->state = S_PROOF;
        send_proof(l);
        return;
    }
    preamble_stage(l);
}

/* The preamble and its answer (the client checks the server's identity
 * first). */
static void preamble_stage(peer_link *l)
{
    l->state = S_PREAMBLE;
    if (!l->client)
        return;
    char reason[300];
    if (check_peer(l, l->channel, l->channel == PEER_RAFT ? l->raft_id : 0, reason,
                   sizeof reason) != 0) {
        refuse(l, -EACCES, NULL, reason);
        return;
    }
    struct peer_preamble p = {.channel = l->channel, .incarnation = l->net->incarnation};
    if (l->channel == PEER_RAFT) {
        p.raft_id = l->net->raft_id;
        snprintf(p.address, sizeof p.address, "%s", l->net->raft_address);
    }
    uint8_t buf[PEER_PREAMBLE_MAX];
    size_t n = peer_preamble_encode(&p, buf);
    send_plain(l, buf, n);
}

static void tcp_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    peer_link *l = s->data;
    if (nread < 0) {
        if (l->state < S_OPEN)
            refuse(l, (int)nread, NULL, nread == UV_EOF ? "closed during the handshake"
                                                        : uv_strerror((int)nread));
        else
            link_close(l, (int)nread);
    } else if (nread > 0 && l->state == S_OPEN && !heard_from(l)) {
        refuse(l, -EEXIST, "a newer process of this member replaced it", NULL);
    } else if (nread > 0 && l->state != S_CLOSED) {
        bool was_ready = tls_conn_ready(l->tls);
        if (tls_conn_feed(l->tls, (const uint8_t *)buf->base, (size_t)nread) != 0) {
            const char *why = tls_conn_failure(l->tls);
            flush_tls(l); /* our alert: the other side logs why */
            refuse(l, LSKV_EIO, "TLS failure", why[0] ? why : "TLS failure");
        } else {
            flush_tls(l);
            if (!was_ready && tls_conn_ready(l->tls) && l->state == S_TLS)
                handshake_done(l);
            uint8_t plain[READ_CHUNK];
            ssize_t got;
            while (l->state != S_CLOSED && l->state != S_TLS &&
                   (got = tls_conn_read(l->tls, plain, sizeof plain)) != 0) {
                if (got < 0) {
                    const char *why = tls_conn_failure(l->tls);
                    if (got == LSKV_EIO && why[0] != '\0') /* an alert after the handshake */
                        refuse(l, LSKV_EIO, "TLS failure", why);
                    else
                        link_close(l, got == LSKV_ESHUTDOWN ? UV_EOF : (int)got);
                    break;
                }
                on_plain(l, plain, (size_t)got);
            }
            if (l->state != S_CLOSED)
                flush_tls(l); /* TLS 1.3 key updates and the like */
        }
    }
    free(buf->base);
}

static int start_tls(peer_link *l)
{
    int rv = tls_conn_open(l->client ? l->ident->client : l->ident->server, &l->tls);
    if (rv != 0)
        return rv;
    uv_tcp_nodelay(&l->tcp, 1);
    uv_tcp_keepalive(&l->tcp, 1, 30); /* a vanished peer's link ends, in time */
    rv = uv_read_start((uv_stream_t *)&l->tcp, alloc_cb, tcp_read_cb);
    if (rv != 0)
        return rv;
    l->tcp_reading = true;
    l->state = S_TLS;
    flush_tls(l); /* client: the ClientHello */
    return 0;
}

/* ---- connecting ---------------------------------------------------------- */

static void connect_next(peer_link *l);

/* The socket of a failed attempt is closed; try the next address. */
static void retry_closed(uv_handle_t *h)
{
    peer_link *l = h->data;
    if (l->state == S_CLOSED) {
        handle_closed(h);
        return;
    }
    uv_tcp_init(l->net->loop, &l->tcp);
    l->tcp.data = l;
    connect_next(l);
}

static void connect_cb(uv_connect_t *req, int status)
{
    peer_link *l = req->data;
    l->handles--;
    if (l->state == S_CLOSED) {
        if (l->handles == 0)
            link_free(l);
        return;
    }
    if (status < 0 && l->next_addr != NULL) {
        uv_close((uv_handle_t *)&l->tcp, retry_closed);
        return;
    }
    if (status < 0) {
        refuse(l, status, NULL, uv_strerror(status));
        return;
    }
    int rv = start_tls(l);
    if (rv != 0)
        refuse(l, rv, NULL, lskv_strerror(rv));
}

static void connect_next(peer_link *l)
{
    struct addrinfo *ai = l->next_addr;
    l->next_addr = ai->ai_next;
    l->connect.data = l;
    int rv = uv_tcp_connect(&l->connect, &l->tcp, ai->ai_addr, connect_cb);
    if (rv != 0) {
        refuse(l, rv, NULL, uv_strerror(rv));
        return;
    }
    l->handles++;
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    peer_link *l = req->data;
    l->gai_pending = false;
    l->handles--;
    l->addrs = l->next_addr = res;
    if (l->state == S_CLOSED) {
        if (l->handles == 0)
            link_free(l);
        return;
    }
    if (status < 0 || res == NULL) {
        refuse(l, status < 0 ? status : UV_EAI_NONAME, NULL,
               uv_strerror(status < 0 ? status : UV_EAI_NONAME));
        return;
    }
    l->state = S_CONNECT;
    connect_next(l);
}

static int dial(peer_net *n, const char *address, uint8_t channel, peer_link **out)
{
    struct url u;
    char err[LSKV_ERRMSG_SIZE];
    if (n->closing)
        return LSKV_ESHUTDOWN;
    if (url_parse(address, URL_SCHEME_OPTIONAL, &u, err) != 0 || u.tls || u.port == 0)
        return LSKV_EINVAL;
    peer_link *l = link_new(n, true, channel);
    if (l == NULL)
        return LSKV_ENOMEM;
    snprintf(l->name, sizeof l->name, "%s", address);
    char port[8];
    snprintf(port, sizeof port, "%u", u.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    l->gai.data = l;
    int rv = uv_getaddrinfo(n->loop, &l->gai, gai_cb, u.host, port, &hints);
    if (rv != 0) {
        link_close(l, rv); /* no callbacks are set yet */
        return rv;
    }
    l->gai_pending = true;
    l->handles++;
    *out = l;
    return 0;
}

/* ---- the raft transport -------------------------------------------------- */

static int transport_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    peer_net *n = t->impl;
    if (strlen(address) > PEER_ADDRESS_MAX) {
        snprintf(t->errmsg, sizeof t->errmsg, "address too long");
        return RAFT_INVALID;
    }
    n->raft_id = id;
    snprintf(n->raft_address, sizeof n->raft_address, "%s", address);
    return 0;
}

static int transport_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    peer_net *n = t->impl;
    n->accept_cb = cb;
    return 0;
}

static int transport_connect(struct raft_uv_transport *t, struct raft_uv_connect *req,
                             raft_id id, const char *address, raft_uv_connect_cb cb)
{
    peer_net *n = t->impl;
    peer_link *l = NULL;
    if (n->transport_closing)
        return RAFT_CANCELED;
    const char *moved = n->moved_address ? n->moved_address(n->moved_address_arg, id) : NULL;
    if (moved != NULL)
        address = moved;
    int rv = dial(n, address, PEER_RAFT, &l);
    if (rv != 0) {
        snprintf(t->errmsg, sizeof t->errmsg, "connect to %s: %s", address, lskv_strerror(rv));
        return rv == LSKV_ENOMEM ? RAFT_NOMEM : RAFT_NOCONNECTION;
    }
    l->raft_id = id;
    l->raft_req = req;
    l->raft_cb = cb;
    return 0;
}

static void defer_cb(uv_timer_t *t)
{
    peer_net *n = t->data;
    if (n->transport_close_cb != NULL && !raft_pending(n)) {
        raft_uv_transport_close_cb cb = n->transport_close_cb;
        n->transport_close_cb = NULL;
        cb(&n->transport);
    }
}

static void transport_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    peer_net *n = t->impl;
    n->transport_closing = true;
    n->transport_close_cb = cb;
    n->accept_cb = NULL;
    /* Cancel pending connects and raft connections not yet handed to raft;
     * those raft holds, raft closes. */
    for (peer_link *l = n->links; l != NULL; l = l->next)
        if (l->channel == PEER_RAFT && l->state < S_OPEN)
            link_close(l, LSKV_ESHUTDOWN);
    if (!uv_is_closing((uv_handle_t *)&n->defer))
        uv_timer_start(&n->defer, defer_cb, 0, 0);
}

/* ---- the net ------------------------------------------------------------- */

static void on_connection(uv_stream_t *server, int status)
{
    peer_net *n = server->data;
    if (status < 0) {
        LOG_WARN(MOD, "accept: %s", uv_strerror(status));
        return;
    }
    peer_link *l = link_new(n, false, 0);
    if (l == NULL) {
        LOG_WARN(MOD, "accept: out of memory");
        return;
    }
    int rv = uv_accept(server, (uv_stream_t *)&l->tcp);
    if (rv == 0) {
        listener_peer_name(&l->tcp, l->name, sizeof l->name);
        rv = start_tls(l);
    }
    if (rv != 0)
        refuse(l, rv, NULL, lskv_strerror(rv));
}

static void net_handle_closed(uv_handle_t *h)
{
    peer_net *n = h->data;
    n->handles--;
    net_maybe_closed(n);
}

int peer_net_open(uv_loop_t *loop, const struct peer_net_config *cfg, peer_net **out,
                  char *errmsg)
{
    struct url u;
    if (url_parse(cfg->listen_address, URL_SCHEME_OPTIONAL, &u, errmsg) != 0) {
        errmsg_wrapf(errmsg, "peer listen address");
        return LSKV_EINVAL;
    }
    peer_net *n = calloc(1, sizeof *n);
    if (n == NULL)
        return LSKV_ENOMEM;
    n->loop = loop;
    n->member_id = cfg->member_id;
    n->handshake_timeout_ms =
        cfg->handshake_timeout_ms ? cfg->handshake_timeout_ms : PEER_HANDSHAKE_TIMEOUT_MS;
    n->on_link = cfg->on_link;
    n->arg = cfg->arg;
    n->fork_window_ms = cfg->fork_window_ms;
    n->incarnation = cfg->incarnation;
    while (n->incarnation == 0 &&
           getrandom(&n->incarnation, sizeof n->incarnation, 0) != sizeof n->incarnation)
        ;
    int rv = op_copy(&cfg->operator_tls, &n->op);
    if (rv == 0)
        rv = ident_make(&cfg->identity, &n->op, &n->ident, errmsg);
    if (rv != 0) {
        op_free(&n->op);
        free(n->heard);
    free(n);
        return rv;
    }
    uv_tcp_init(loop, &n->listener);
    uv_timer_init(loop, &n->defer);
    n->listener.data = n->defer.data = n;
    n->handles = 2;
    rv = listener_listen(&n->listener, &u, on_connection, errmsg);
    if (rv == 0 && cfg->n_more_listen > PEER_MAX_MORE_LISTEN) {
        errmsg_printf(errmsg, "peer listen addresses: at most %d", PEER_MAX_MORE_LISTEN + 1);
        rv = LSKV_EINVAL;
    }
    for (size_t i = 0; rv == 0 && i < cfg->n_more_listen; i++) {
        struct url more;
        uv_tcp_init(loop, &n->more[i]);
        n->more[i].data = n;
        n->n_more++;
        n->handles++;
        rv = url_parse(cfg->more_listen[i], URL_SCHEME_OPTIONAL, &more, errmsg);
        if (rv == 0)
            rv = listener_listen(&n->more[i], &more, on_connection, errmsg);
    }
    if (rv != 0) {
        /* Closed handles must be waited for: free in the callbacks. */
        n->closing = true;
        uv_close((uv_handle_t *)&n->listener, net_handle_closed);
        uv_close((uv_handle_t *)&n->defer, net_handle_closed);
        for (size_t i = 0; i < n->n_more; i++)
            uv_close((uv_handle_t *)&n->more[i], net_handle_closed);
        return rv;
    }
    n->transport.impl = n;
    n->transport.init = transport_init;
    n->transport.listen = transport_listen;
    n->transport.connect = transport_connect;
    n->transport.close = transport_close;
    *out = n;
    return 0;
}

uint64_t peer_net_incarnation(const peer_net *n)
{
    return n->incarnation;
}

uint16_t peer_net_port(const peer_net *n)
{
    return listener_port(&n->listener);
}

void peer_net_set_raft_address(peer_net *n, const char *(*fn)(void *arg, uint64_t id),
                               void *arg)
{
    n->moved_address = fn;
    n->moved_address_arg = arg;
}

int peer_net_set_identity(peer_net *n, const struct peer_tls_identity *id, char *errmsg)
{
    struct ident *next;
    int rv = ident_make(id, &n->op, &next, errmsg);
    if (rv != 0)
        return rv;
    ident_unref(n->ident);
    n->ident = next;
    return 0;
}

struct raft_uv_transport *peer_net_raft_transport(peer_net *n)
{
    return &n->transport;
}

int peer_link_connect(peer_net *n, const char *address, uint8_t channel,
                      const struct peer_link_callbacks *cbs, void *arg, peer_link **out)
{
    if (channel != PEER_JOIN && channel != PEER_FORWARD && channel != PEER_PROBE)
        return LSKV_EINVAL;
    peer_link *l = NULL;
    int rv = dial(n, address, channel, &l);
    if (rv != 0)
        return rv;
    l->cbs = *cbs;
    l->arg = arg;
    *out = l;
    return 0;
}

void peer_link_set(peer_link *l, const struct peer_link_callbacks *cbs, void *arg)
{
    l->cbs = *cbs;
    l->arg = arg;
}

int peer_link_send(peer_link *l, const uint8_t *msg, size_t len)
{
    if (len > PEER_MAX_MESSAGE)
        return LSKV_ETOOLARGE;
    if (l->state == S_CLOSED)
        return LSKV_ESHUTDOWN;
    uint8_t hdr[PEER_FRAME_HEADER];
    peer_frame_header(len, hdr);
    if (l->state != S_OPEN) {
        uint8_t *p = realloc(l->pending, l->pending_len + sizeof hdr + len);
        if (p == NULL)
            return LSKV_ENOMEM;
        memcpy(p + l->pending_len, hdr, sizeof hdr);
        if (len > 0)
            memcpy(p + l->pending_len + sizeof hdr, msg, len);
        l->pending = p;
        l->pending_len += sizeof hdr + len;
        return 0;
    }
    int rv = tls_conn_write(l->tls, hdr, sizeof hdr);
    if (rv == 0 && len > 0)
        rv = tls_conn_write(l->tls, msg, len);
    if (rv != 0) {
        link_close(l, LSKV_EIO);
        return LSKV_EIO;
    }
    flush_tls(l);
    return 0;
}

size_t peer_link_queued(const peer_link *l)
{
    return l->tcp.write_queue_size + l->pending_len;
}

void peer_link_close(peer_link *l)
{
    link_close(l, 0);
}

uint64_t peer_link_member(const peer_link *l)
{
    return l->member;
}

const char *peer_link_cert_pem(const peer_link *l)
{
    return l->cert_pem;
}

void peer_link_key_digest(const peer_link *l, uint8_t out[32])
{
    memcpy(out, l->key_digest, 32);
}

const char *peer_link_address(const peer_link *l)
{
    return l->name;
}

void peer_net_close(peer_net *n, void (*cb)(void *arg), void *arg)
{
    n->closing = true;
    n->close_cb = cb;
    n->close_arg = arg;
    n->accept_cb = NULL;
    for (peer_link *l = n->links; l != NULL; l = l->next)
        link_close(l, LSKV_ESHUTDOWN);
    uv_close((uv_handle_t *)&n->listener, net_handle_closed);
    uv_close((uv_handle_t *)&n->defer, net_handle_closed);
    for (size_t i = 0; i < n->n_more; i++)
        uv_close((uv_handle_t *)&n->more[i], net_handle_closed);
}

/* The peer network: mutual-TLS connections between the members of a
 * cluster, all on one listening port (the member's peer URL).
 *
 * Two kinds of traffic share it, chosen by the connecting side in a preamble
 * (net/peer_wire.h):
 * - raft's: peer_net_raft_transport is a struct raft_uv_transport (libraft
 *   0.15) to pass to raft_uv_init. raft_uv reads and writes a plain
 *   uv_stream_t, so each raft connection hands raft one end of a socketpair
 *   (a uv_pipe_t allocated with raft_malloc, which raft_uv frees) and pumps
 *   bytes between the other end and TLS, with bounded buffers both ways.
 * - message links (PEER_JOIN, PEER_FORWARD, PEER_PROBE): framed messages up
 *   to PEER_MAX_MESSAGE bytes.
 *
 * Identity: TLS 1.3 only, both sides present a certificate. A member's node
 * certificate must chain to the service certificate (the only trust anchor,
 * validity times ignored) and name the member ("lskv node <16 hex id>"); a
 * raft connection's raft id must be that member id (checked by both sides:
 * the server against the id the client claims, the client against the id
 * it dials). Exception, PEER_JOIN only: the server takes any client
 * certificate (a joiner's self-signed one), and a client without a service
 * certificate takes any server certificate; the join code checks the key
 * (peer_link_key_digest) by attestation. Refusals are logged (module
 * "peer") with the peer's address and the reason. A connection that has not
 * finished its handshake and preamble within PEER_HANDSHAKE_TIMEOUT_MS is
 * closed.
 *
 * Forks: every preamble carries this process's incarnation (random per
 * run). The server side remembers, per member, the newest incarnation and
 * when it last heard bytes from it; a connection of another incarnation of
 * that member, while one of the first's links is open and within
 * fork_window_ms of its last bytes, is refused with PEER_ACK_FORK (the
 * client sees -EEXIST), and logged: two processes act as one member.
 * Otherwise (the first's links all closed, as when it stopped or died, or
 * silent for longer: a partition) the new incarnation is taken as a
 * restart, and the old one's remaining links are closed when they next
 * send.
 *
 * Everything runs on the loop given to peer_net_open; no function is
 * thread-safe. */
#ifndef LSKV_NET_PEER_H
#define LSKV_NET_PEER_H

#include <raft.h>
#include <raft/uv.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "net/peer_wire.h"

#define PEER_HANDSHAKE_TIMEOUT_MS 10000
/* A raft bridge stops reading one side while more than this many bytes
 * wait to be written to the other. */
#define PEER_BRIDGE_HIGH_WATER (1u << 20)

typedef struct peer_net peer_net;
typedef struct peer_link peer_link;

struct peer_tls_identity {
    const char *cert_pem, *key_pem; /* this member's certificate and private key (PEM) */
    const char *service_cert_pem;   /* trust anchor; NULL only before joining */
};

/* A link's callbacks; each gets the arg given with them. */
struct peer_link_callbacks {
    /* Client side only: the handshake is done (0) or failed (< 0: negated
     * errno from the connection, LSKV_ETIMEOUT, LSKV_EIO for TLS,
     * -EACCES when the server's certificate is refused, -ECONNREFUSED when
     * the server refused the link, -EEXIST when it refused it because
     * another process of this member is live, LSKV_ESHUTDOWN when closed
     * first).
     * on_close follows a failure. */
    void (*on_open)(void *arg, peer_link *l, int status);
    /* A message; msg is borrowed for the call. */
    void (*on_message)(void *arg, peer_link *l, const uint8_t *msg, size_t len);
    /* Once, always last, never inside a call of this module's API; l is
     * freed after it. status: 0 after peer_link_close, LSKV_ESHUTDOWN after
     * peer_net_close, otherwise why the link ended (UV_EOF when the peer
     * closed it, LSKV_ETOOLARGE for an oversized message, ...). */
    void (*on_close)(void *arg, peer_link *l, int status);
};

/* Operator TLS: etcd's --peer-cert-file, --peer-key-file,
 * --peer-trusted-ca-file and --peer-client-cert-auth. With cert_pem set the
 * TLS handshake presents the operator's certificate and checks the peer's
 * as etcd does (a chain to ca_pem when given; the server asks for a client
 * certificate only with client_cert_auth). The member identity then moves
 * inside the channel: right after the handshake each side sends its node
 * certificate and a signature by its node key over this session's TLS
 * exporter value (peer_wire.h, PEER_PROOF), so the node identity is bound
 * to the very connection; the rules above apply to that certificate. */
struct peer_operator_tls {
    const char *cert_pem, *key_pem; /* NULL: none (node certificates in the handshake) */
    const char *ca_pem;             /* may be NULL */
    bool client_cert_auth;
    /* --peer-cert-allowed-cn / --peer-cert-allowed-hostname (at most one):
     * the other side's handshake certificate must have it, in both roles
     * as in etcd (tls_ctx_allow_only). */
    const char *allowed_cn, *allowed_hostname;
};

#define PEER_MAX_MORE_LISTEN 7 /* listen addresses besides the first */

struct peer_net_config {
    uint64_t member_id;
    const char *listen_address;        /* "host:port" to bind (port 0: any) */
    /* More "host:port" to listen on, the same as the first (etcd listens on
     * every --listen-peer-urls URL): at most PEER_MAX_MORE_LISTEN. */
    const char *const *more_listen;
    size_t n_more_listen;
    struct peer_tls_identity identity; /* copied */
    struct peer_operator_tls operator_tls; /* copied */
    /* A server-side link on a non-raft channel has completed its handshake.
     * Return 0 and call peer_link_set to take it, non-zero to refuse (the
     * link is closed, the client's on_open gets -ECONNREFUSED). */
    int (*on_link)(void *arg, peer_link *l, uint8_t channel);
    void *arg;
    unsigned handshake_timeout_ms; /* 0: PEER_HANDSHAKE_TIMEOUT_MS */
    uint64_t incarnation;          /* 0: a random one */
    unsigned fork_window_ms;       /* 0: no fork check (the election timeout) */
};

/* Binds and listens. Errors: negated errno (errmsg names the address and
 * port, e.g. "listen on 127.0.0.1:2380: address already in use"),
 * LSKV_EINVAL (bad address or identity: errmsg says which), LSKV_EIO,
 * LSKV_ENOMEM. */
int peer_net_open(uv_loop_t *loop, const struct peer_net_config *cfg, peer_net **out,
                  char *errmsg);
/* This process's incarnation, as announced. */
uint64_t peer_net_incarnation(const peer_net *n);
/* The port the listener is bound to. */
uint16_t peer_net_port(const peer_net *n);
/* Replaces the identity for new connections (after a join gave this member
 * its endorsed cert); live connections keep theirs. Copied. Errors:
 * LSKV_EINVAL (unparsable or mismatched certificate and key), LSKV_ENOMEM;
 * the old identity stays then. */
int peer_net_set_identity(peer_net *n, const struct peer_tls_identity *id, char *errmsg);
/* Where raft's connections to member id go: fn(arg, id) gives "host:port"
 * (valid until the next call) or NULL for the address raft's configuration
 * holds. libraft 0.15 keeps the address a server was added with; the
 * committed membership may have moved the member since (MemberUpdate). */
void peer_net_set_raft_address(peer_net *n, const char *(*fn)(void *arg, uint64_t id),
                               void *arg);
/* raft's transport over this net; valid until peer_net_close. The raft id
 * raft_uv gives it must be cfg->member_id (peers check it against the
 * certificate). */
struct raft_uv_transport *peer_net_raft_transport(peer_net *n);

/* Connects to address ("host:port", host a name, an IPv4 literal or a
 * bracketed IPv6 one; each address a name resolves to is tried in turn) on
 * channel (PEER_JOIN, PEER_FORWARD or PEER_PROBE). cbs is
 * copied; on_open then on_message/on_close follow. Messages sent before
 * on_open are queued. Errors: LSKV_EINVAL (address or channel),
 * LSKV_ESHUTDOWN (net closing), LSKV_ENOMEM; no callback then. */
int peer_link_connect(peer_net *n, const char *address, uint8_t channel,
                      const struct peer_link_callbacks *cbs, void *arg, peer_link **out);
/* Sets the callbacks of a server-side link (inside on_link). */
void peer_link_set(peer_link *l, const struct peer_link_callbacks *cbs, void *arg);
/* Queues a message (copied). Errors: LSKV_ETOOLARGE (over PEER_MAX_MESSAGE),
 * LSKV_ESHUTDOWN (link closing), LSKV_EIO, LSKV_ENOMEM. */
int peer_link_send(peer_link *l, const uint8_t *msg, size_t len);
/* Bytes queued and not yet handed to the kernel, for backpressure. */
size_t peer_link_queued(const peer_link *l);
/* Closes the link; queued messages not yet written are dropped. on_close
 * follows, never inside this call. Idempotent until on_close. */
void peer_link_close(peer_link *l);
/* The member id proven by an endorsed certificate; 0 if none (a joiner). */
uint64_t peer_link_member(const peer_link *l);
/* The peer's certificate (PEM) on a PEER_JOIN link once it is open (the
 * joiner checks the founder's against its report), else NULL. */
const char *peer_link_cert_pem(const peer_link *l);
/* SHA-256 of the peer's SubjectPublicKeyInfo DER. */
void peer_link_key_digest(const peer_link *l, uint8_t out[32]);
/* The peer's address ("ip:port" or the address dialled), for logs. */
const char *peer_link_address(const peer_link *l);

/* Closes the listener, every link (on_close with LSKV_ESHUTDOWN) and raft
 * connection (pending connects complete with RAFT_CANCELED); cb once
 * everything is released. Call it once, after raft_uv's close finished if
 * raft used the transport. */
void peer_net_close(peer_net *n, void (*cb)(void *arg), void *arg);

#endif

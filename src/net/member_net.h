/* A member's network: its peer port (net/peer.h) carrying raft's traffic,
 * the forwarding links (net/forward_links.h) and the join exchange
 * (identity/join.h) in both roles.
 *
 * Forming a cluster (DESIGN.md section 5): the member with the lowest id in
 * --initial-cluster is the founder. It makes the service identity and the
 * secrets and serves joins; every other member of a new cluster starts with
 * a fresh node key and a self-signed certificate, asks the founder for the
 * secrets over PEER_JOIN (retrying each second while the founder cannot be
 * reached: members start in any order), installs them into its data dir and
 * then starts as a member. Once a member holds the secrets it serves joins
 * too, but only of the members the configuration names (id and name), and
 * only after their attestation report passed the cluster's policy.
 *
 * Joining an existing cluster (--initial-cluster-state existing): a member
 * that MemberAdd added starts with a fresh node key, asks any member it
 * knows of (in turn, each second), and is admitted when the admitting
 * member's committed membership holds a member with its peer URLs that has
 * not started yet: it gets that member's id, the cluster id and the members
 * to reach with the secrets. Only the leader admits (its membership is the
 * newest); a member that does not lead, or does not list the joiner yet,
 * refuses, and the next one is asked, up to MEMBER_NET_JOIN_NOT_FOUND_TRIES
 * refusals in all. A new cluster's member is admitted by the configuration
 * until a membership is committed, then only if that lists it unstarted.
 *
 * Which members may open forwarding and probe links follows the committed
 * membership (member_net_set_members), so members added later are
 * reached and accepted. */
#ifndef LSKV_NET_MEMBER_NET_H
#define LSKV_NET_MEMBER_NET_H

#include <raft.h>
#include <raft/uv.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config/datadir.h"
#include "consensus/node.h"
#include "identity/attestation.h"
#include "identity/cert.h"
#include "identity/join.h"
#include "net/peer.h"
#include "net/peer_rtt.h"
#include "net/probe_links.h"

typedef struct member_net member_net;

struct member_net_peer {
    uint64_t id;
    const char *name;
    const char *address; /* peer "host:port" */
};

struct member_net_config {
    uint64_t member_id, cluster_id;
    const char *name;
    const char *listen_address;            /* "host:port" */
    const char *const *more_listen;        /* more "host:port" (peer_net_config) */
    size_t n_more_listen;
    const struct member_net_peer *members; /* every member, this one too (copied) */
    size_t n_members;
    const struct attest_policy *policy;    /* copied */
    unsigned election_ms; /* raft's election timeout: the peer net's fork
                             window and the probe's pace (0: no fork check) */
    struct peer_operator_tls operator_tls; /* --peer-cert-file ... (net/peer.h) */
};

/* Listens on the peer port with identity (copied). Errors: as
 * peer_net_open, LSKV_ENOMEM. */
int member_net_open(uv_loop_t *loop, const struct member_net_config *cfg,
                    const struct peer_tls_identity *identity, member_net **out, char *errmsg);

/* The committed membership changed (every member, this one too; copied):
 * forwarding goes to these addresses, and links of these members are
 * taken. Errors: LSKV_ENOMEM (the old list stays). */
int member_net_set_members(member_net *mn, const struct member_net_peer *members, size_t n);

/* Finds, for an existing cluster's joiner, the member MemberAdd made for
 * peer_urls (join_founder.admit_existing, identity/join.h). */
typedef int (*member_net_admit_existing_fn)(void *arg, char *const *peer_urls, size_t n,
                                            const char *name, struct join_admitted *out,
                                            char *errmsg);

/* Serves joins from now on with these (borrowed until member_net_close):
 * the service identity holding its key, the data key and ledger secret
 * (JOIN_SECRET_BYTES each) and this member's node certificate (PEM), whose
 * key its attestation report binds. Errors: as attest_report_make. */
int member_net_serve_joins(member_net *mn, const cert_service *service,
                           const uint8_t *data_key, const uint8_t *ledger_secret,
                           const char *node_cert_pem, member_net_admit_existing_fn admit,
                           void *admit_arg, char *errmsg);

#define MEMBER_NET_JOIN_NOT_FOUND_TRIES 30

/* What a join gave: this member's id and the cluster's; joining an existing
 * cluster, also its members (ids and first peer URLs). */
struct member_net_joined {
    uint64_t member_id, cluster_id;
    size_t n_members;
    const uint64_t *member_ids;
    char *const *member_peer_urls;
};
/* joined is NULL unless status is 0, and borrowed for the call. */
typedef void (*member_net_joined_cb)(void *arg, int status,
                                     const struct member_net_joined *joined,
                                     const char *errmsg);

/* Joins: request made with k (borrowed until done), response checked
 * against the policy, secrets installed into d (fresh, held locked by this
 * process). A new cluster's member asks its founder; with existing_urls
 * (this member's advertised peer URLs, copied) it joins an existing
 * cluster, asking each other member it knows of in turn. done fires once,
 * never inside this call: 0 once installed and the endorsed identity is in
 * use for new peer connections, else the refusal or the reason the
 * response was not taken (the daemon stops). Errors: LSKV_ENOMEM, as
 * join_request_make(_existing). */
int member_net_join(member_net *mn, const struct join_key *k, const struct datadir *d,
                    char *const *existing_urls, size_t n_existing_urls,
                    member_net_joined_cb done, void *arg, char *errmsg);

/* Before raft starts on a data dir that holds state: asks the other members
 * whether it was rolled back or another process of this member is live
 * (net/probe_links.h). done as probe_links_ask. */
int member_net_probe(member_net *mn, const struct probe_self *self, probe_done_cb done,
                     void *arg);

/* metrics_series_fn (arg: the member_net) of the round-trip times to the
 * other members (net/peer_rtt.h); valid until member_net_close. */
const struct metrics_histogram *member_net_rtt_series(void *arg, size_t i, char *value,
                                                      size_t size);

/* Whether the committed membership at raft's applied index lists member id
 * (probe answers say "removed" otherwise: probe_links_set_member_check).
 * Until set, every asker is listed. */
void member_net_set_member_check(member_net *mn, bool (*listed)(void *arg, uint64_t id),
                                 void *arg);
/* Each answer to the round-trip probes (peer_rtt_set_reply_cb): how a
 * running member learns what the leader knows of it. */
void member_net_set_probe_reply_cb(member_net *mn, peer_rtt_reply_fn fn, void *arg);

/* raft's transport; valid until member_net_close. */
struct raft_uv_transport *member_net_transport(member_net *mn);
/* consensus_config.send (arg: the member_net). */
int member_net_send(void *arg, uint64_t to, const uint8_t *msg, size_t len);
/* Where forwarded messages go once the node is open. */
void member_net_set_node(member_net *mn, consensus_node *node);

/* Closes links and the port; cb (may be NULL) once everything is released.
 * Call it after the consensus node that used the transport has closed. */
void member_net_close(member_net *mn, void (*cb)(void *arg), void *arg);

#endif

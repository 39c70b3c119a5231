/* Round-trip times to the other members, for etcd's
 * etcd_network_peer_round_trip_time_seconds{To="<member id>"}: every
 * PEER_RTT_INTERVAL_MS, one probe request (consensus/probe.h) on a
 * PEER_PROBE link kept open to each member, timed from send to answer
 * (any member answers probes, net/probe_links.h). etcd's prober does the
 * same over its own HTTP endpoint, every few seconds, with its buckets:
 * prometheus.ExponentialBuckets(0.0001, 2, 16). A member that does not
 * answer within the interval has its link closed and made again; nothing
 * is observed for it meanwhile (etcd observes nothing for a peer it cannot
 * reach either).
 *
 * The answers also tell a running member what the others know of it: a
 * follower removed while it could not hear the leader never applies its
 * removal, and the leader no longer replicates to it; the leader's answer
 * says so (probe_reply.removed), as etcd's peers answer a removed member's
 * messages. Every answer goes to the reply callback. */
#ifndef LSKV_NET_PEER_RTT_H
#define LSKV_NET_PEER_RTT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "consensus/probe.h"
#include "http/metrics.h"
#include "net/peer.h"

#define PEER_RTT_INTERVAL_MS 4000 /* etcd's proberInterval */
#define PEER_RTT_MAX_PEERS 64

typedef struct peer_rtt peer_rtt;

struct peer_rtt_peer {
    uint64_t id;
    const char *address; /* peer "host:port" (copied) */
};

/* Starts the timer. Errors: LSKV_ENOMEM. */
int peer_rtt_new(uv_loop_t *loop, peer_net *net, peer_rtt **out);
/* The members to time from now on (this one excluded); a member that stays
 * at its address keeps its link and histogram. Errors: LSKV_ENOMEM (the
 * old list stays). */
int peer_rtt_set_peers(peer_rtt *r, const struct peer_rtt_peer *peers, size_t n);
/* Called with each answer, from the member `from` (NULL: none). */
typedef void (*peer_rtt_reply_fn)(void *arg, uint64_t from, const struct probe_reply *reply);
void peer_rtt_set_reply_cb(peer_rtt *r, peer_rtt_reply_fn fn, void *arg);
/* metrics_series_fn (arg: the peer_rtt): the i-th member that answered at
 * least once, its id in hex as the label value. */
const struct metrics_histogram *peer_rtt_series(void *arg, size_t i, char *value, size_t size);
/* Stops; r is freed once its links and timer are closed (call before
 * peer_net_close ends). NULL: no-op. */
void peer_rtt_close(peer_rtt *r);

#endif

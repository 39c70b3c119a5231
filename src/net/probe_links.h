/* The rollback and fork probe on the peer network (channel PEER_PROBE,
 * net/peer.h; messages and judgement in consensus/probe.h).
 *
 * Serving: every member answers a probe from any endorsed member with what
 * its consensus node knows (nothing while it is itself starting).
 *
 * Asking: before a member that restarts from its data dir starts raft, it
 * connects to every other member, sends a probe and collects the answers
 * (retrying each PROBE_RETRY_MS a member it cannot reach). It is done when:
 * - an answer shows the data dir was rolled back (probe_judge): refused;
 * - a member keeps refusing the link because another process of this member
 *   is live there (PEER_ACK_FORK) for PROBE_FORK_ROUNDS election timeouts (a
 *   crashed process's last bytes age out within one): refused;
 * - probe_enough says the answers suffice (bound: PROBE_BOUND_ROUNDS election
 *   timeouts since the start), and no member's latest word is a fork
 *   refusal: start.
 * Fewer than a majority answering: it waits, logging every
 * PROBE_LOG_EVERY_MS. */
#ifndef LSKV_NET_PROBE_LINKS_H
#define LSKV_NET_PROBE_LINKS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "consensus/node.h"
#include "consensus/probe.h"
#include "net/peer.h"

#define PROBE_RETRY_MS 1000
#define PROBE_BOUND_ROUNDS 3
#define PROBE_FORK_ROUNDS 3
#define PROBE_LOG_EVERY_MS 5000

typedef struct probe_links probe_links;

struct probe_peer {
    uint64_t id;
    const char *address; /* peer "host:port" (copied) */
};

/* peers: the other members. election_ms: the election timeout in use.
 * Errors: LSKV_ENOMEM. */
int probe_links_new(uv_loop_t *loop, peer_net *net, const struct probe_peer *peers, size_t n,
                    unsigned election_ms, probe_links **out);
/* Whether the committed membership lists member id (false: the answer
 * says the asker was removed); NULL: every asker is listed. */
void probe_links_set_member_check(probe_links *p, bool (*listed)(void *arg, uint64_t id),
                                  void *arg);
/* The node whose view answers probes; NULL until it is open. */
void probe_links_set_node(probe_links *p, consensus_node *node);
/* Takes a server-side PEER_PROBE link (peer_net_config.on_link). */
void probe_links_accept(probe_links *p, peer_link *l);

/* done: 0 to start, else LSKV_ECORRUPT (rolled back), LSKV_EREMOVED (the
 * leader no longer lists this member) or -EEXIST (a fork), with errmsg
 * saying why. */
typedef void (*probe_done_cb)(void *arg, int status, const char *errmsg);
/* Asks the peers as described above; self is copied. done fires once, never
 * inside this call (not at all after probe_links_close). With no peers it
 * fires with 0 on the next loop turn. Errors: LSKV_EINVAL (asked twice). */
int probe_links_ask(probe_links *p, const struct probe_self *self, probe_done_cb done,
                    void *arg);

/* Stops asking, closes its links; p is freed once they and its timer are
 * closed (call before peer_net_close ends). */
void probe_links_close(probe_links *p);

#endif

/* The links that carry consensus forwarding messages (consensus/forward.h)
 * between members: channel PEER_FORWARD of the peer network (net/peer.h),
 * mutual TLS with endorsed node certificates on both sides.
 *
 * Each member sends on its own outbound link to each peer (made on first
 * use, made again after it drops) and reads what peers send on their
 * outbound links to it; the sender of a message is the member id the
 * link's certificate proves, never a field of the message. A link that
 * cannot take more (queue above FORWARD_LINKS_MAX_QUEUED bytes, or not
 * connected) refuses the message: the caller answers its client at once
 * instead of growing memory. */
#ifndef LSKV_NET_FORWARD_LINKS_H
#define LSKV_NET_FORWARD_LINKS_H

#include <stddef.h>
#include <stdint.h>

#include "consensus/node.h"
#include "net/peer.h"

#define FORWARD_LINKS_MAX_QUEUED (64u << 20)

typedef struct forward_links forward_links;

struct forward_peer {
    uint64_t id;
    const char *address; /* peer "host:port" (copied) */
};

/* Errors: LSKV_ENOMEM. */
int forward_links_new(peer_net *net, const struct forward_peer *peers, size_t n,
                      forward_links **out);
/* The peers from now on (the committed membership changed): a link to a
 * peer that stays at its address stays; the others close.
 * Errors: LSKV_ENOMEM (the old peers stay). */
int forward_links_set_peers(forward_links *fl, const struct forward_peer *peers, size_t n);
/* The node messages are delivered to; set once it is open (messages that
 * arrive before are dropped: nobody can wait for them yet). */
void forward_links_set_node(forward_links *fl, consensus_node *node);
/* consensus_config.send: arg is the forward_links. */
int forward_links_send(void *arg, uint64_t to, const uint8_t *msg, size_t len);
/* Takes a server-side PEER_FORWARD link (peer_net_config.on_link). */
void forward_links_accept(forward_links *fl, peer_link *l);
/* Closes every link; fl is freed once they are gone (peer_net_close waits
 * for them too). */
void forward_links_close(forward_links *fl);

#endif

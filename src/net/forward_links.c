/* Forwarding links between members: see forward_links.h. */
#include "net/forward_links.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"

#define MODULE "peer"

struct outbound {
    uint64_t id;
    char *address;
    peer_link *link; /* NULL: not connected */
    bool open;       /* handshake done */
};

struct forward_links {
    peer_net *net;
    consensus_node *node;
    struct outbound *peers;
    size_t n;
    unsigned live;  /* links whose on_close has not run */
    bool closing;
};

static void maybe_free(forward_links *fl)
{
    if (!fl->closing || fl->live != 0)
        return;
    for (size_t i = 0; i < fl->n; i++)
        free(fl->peers[i].address);
    free(fl->peers);
    free(fl);
}

int forward_links_new(peer_net *net, const struct forward_peer *peers, size_t n,
                      forward_links **out)
{
    forward_links *fl = calloc(1, sizeof *fl);
    if (fl == NULL || (n > 0 && (fl->peers = calloc(n, sizeof *fl->peers)) == NULL)) {
        free(fl);
        return LSKV_ENOMEM;
    }
    fl->net = net;
    fl->n = n;
    for (size_t i = 0; i < n; i++) {
        fl->peers[i].id = peers[i].id;
        if ((fl->peers[i].address = strdup(peers[i].address)) == NULL) {
            fl->closing = true;
            maybe_free(fl);
            return LSKV_ENOMEM;
        }
    }
    *out = fl;
    return 0;
}

int forward_links_set_peers(forward_links *fl, const struct forward_peer *peers, size_t n)
{
    struct outbound *next = calloc(n ? n : 1, sizeof *next);
    if (next == NULL)
        return LSKV_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        next[i].id = peers[i].id;
        if ((next[i].address = strdup(peers[i].address)) == NULL) {
            while (i-- > 0)
                free(next[i].address);
            free(next);
            return LSKV_ENOMEM;
        }
    }
    for (size_t j = 0; j < fl->n; j++) {
        struct outbound *old = &fl->peers[j];
        struct outbound *kept = NULL;
        for (size_t i = 0; i < n && kept == NULL; i++)
            if (next[i].id == old->id && strcmp(next[i].address, old->address) == 0)
                kept = &next[i];
        if (kept != NULL) {
            kept->link = old->link;
            kept->open = old->open;
        } else if (old->link != NULL) {
            peer_link_close(old->link); /* link_closed finds no entry: only counts */
        }
        free(old->address);
    }
    free(fl->peers);
    fl->peers = next;
    fl->n = n;
    return 0;
}

void forward_links_set_node(forward_links *fl, consensus_node *node)
{
    fl->node = node;
}

/* ---- inbound ------------------------------------------------------------ */

static void inbound_message(void *arg, peer_link *l, const uint8_t *msg, size_t len)
{
    forward_links *fl = arg;
    if (fl->node != NULL && !fl->closing)
        consensus_receive(fl->node, peer_link_member(l), msg, len);
}

static void link_closed(void *arg, peer_link *l, int status)
{
    (void)status;
    forward_links *fl = arg;
    for (size_t i = 0; i < fl->n; i++) {
        if (fl->peers[i].link == l) {
            fl->peers[i].link = NULL;
            fl->peers[i].open = false;
        }
    }
    fl->live--;
    maybe_free(fl);
}

void forward_links_accept(forward_links *fl, peer_link *l)
{
    static const struct peer_link_callbacks cbs = {
        .on_message = inbound_message,
        .on_close = link_closed,
    };
    fl->live++;
    peer_link_set(l, &cbs, fl);
    if (fl->closing)
        peer_link_close(l);
}

/* ---- outbound ----------------------------------------------------------- */

static void outbound_open(void *arg, peer_link *l, int status)
{
    forward_links *fl = arg;
    for (size_t i = 0; i < fl->n; i++) {
        if (fl->peers[i].link != l)
            continue;
        if (status == 0)
            fl->peers[i].open = true;
        else
            LOG_WARN(MODULE, "forwarding link to member %016" PRIx64 " at %s: %s",
                     fl->peers[i].id, fl->peers[i].address, lskv_strerror(status));
    }
}

static struct outbound *peer_of(forward_links *fl, uint64_t id)
{
    for (size_t i = 0; i < fl->n; i++)
        if (fl->peers[i].id == id)
            return &fl->peers[i];
    return NULL;
}

int forward_links_send(void *arg, uint64_t to, const uint8_t *msg, size_t len)
{
    static const struct peer_link_callbacks cbs = {
        .on_open = outbound_open,
        .on_message = inbound_message, /* peers answer on their own links */
        .on_close = link_closed,
    };
    forward_links *fl = arg;
    struct outbound *p = peer_of(fl, to);
    if (fl->closing || p == NULL)
        return LSKV_ENOTLEADER;
    if (p->link == NULL) {
        int rv = peer_link_connect(fl->net, p->address, PEER_FORWARD, &cbs, fl, &p->link);
        if (rv != 0)
            return rv;
        fl->live++;
    }
    /* Queued until the handshake is done; bounded either way. */
    if (peer_link_queued(p->link) + len > FORWARD_LINKS_MAX_QUEUED)
        return LSKV_ETOOMANYREQUESTS;
    return peer_link_send(p->link, msg, len);
}

void forward_links_close(forward_links *fl)
{
    fl->closing = true;
    for (size_t i = 0; i < fl->n; i++)
        if (fl->peers[i].link != NULL)
            peer_link_close(fl->peers[i].link);
    maybe_free(fl);
}

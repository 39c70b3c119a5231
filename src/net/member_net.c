/* A member's network: see member_net.h. */
#include "net/member_net.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "net/forward_links.h"
#include "net/probe_links.h"

#define MODULE "member"
#define JOIN_RETRY_MS 1000
#define JOIN_LOG_EVERY 10 /* failed attempts between two log lines */

struct member_net {
    uv_loop_t *loop;
    peer_net *net;
    forward_links *links;
    probe_links *probes;
    peer_rtt *rtt;
    uint64_t member_id, cluster_id;
    struct member_net_peer *members; /* --initial-cluster's; copied, strings too */
    size_t n_members;
    struct member_net_peer *known;   /* the committed membership's (set_members) */
    size_t n_known;
    struct attest_policy policy;

    /* Serving joins (member_net_serve_joins). */
    bool serving;
    member_net_admit_existing_fn admit_existing;
    void *admit_existing_arg;
    struct join_founder founder;
    uint8_t *report; /* this member's own report */
    size_t report_len;

    /* Joining (member_net_join). */
    const struct join_key *key;
    const struct datadir *dir;
    uint8_t *request;
    size_t request_len;
    peer_link *join_link;
    uv_timer_t retry;
    unsigned attempts;
    bool existing;      /* joining an existing cluster: any member admits */
    unsigned not_found; /* refusals by members that do not list us yet */
    bool joined;
    member_net_joined_cb done;
    void *done_arg;

    bool closing;
    void (*close_cb)(void *arg);
    void *close_arg;
};

static const struct member_net_peer *member_of(const member_net *mn, uint64_t id)
{
    for (size_t i = 0; i < mn->n_members; i++)
        if (mn->members[i].id == id)
            return &mn->members[i];
    return NULL;
}

/* peer_net_set_raft_address: the committed membership's address. */
static const char *raft_address_of(void *arg, uint64_t id)
{
    member_net *mn = arg;
    for (size_t i = 0; i < mn->n_known; i++)
        if (mn->known[i].id == id)
            return mn->known[i].address;
    return NULL;
}

/* A member of the committed membership, once there is one (a removed
 * member is not, whatever --initial-cluster says); before, a configured
 * one. */
static bool known(const member_net *mn, uint64_t id)
{
    if (id == 0)
        return false;
    for (size_t i = 0; i < mn->n_known; i++)
        if (mn->known[i].id == id)
            return true;
    return mn->n_known == 0 && member_of(mn, id) != NULL;
}

/* The founder: the member with the lowest id. */
static const struct member_net_peer *founder_of(const member_net *mn)
{
    const struct member_net_peer *f = NULL;
    for (size_t i = 0; i < mn->n_members; i++)
        if (f == NULL || mn->members[i].id < f->id)
            f = &mn->members[i];
    return f;
}

/* ---- serving joins -------------------------------------------------------- */

/* Only the members the configuration names, under their names; once a
 * membership is committed, only those it lists that have not started (a
 * fresh data dir in a started member's place would be a rolled-back
 * member; a removed one is not listed). */
static int admit(void *arg, uint64_t member_id, const char *name, char *errmsg)
{
    member_net *mn = arg;
    for (size_t i = 0; mn->n_known > 0 && i < mn->n_known; i++) {
        if (mn->known[i].id != member_id)
            continue;
        if (mn->known[i].name[0] != '\0') {
            errmsg_printf(errmsg, "member %016" PRIx64 " (%s) has started before: a fresh data "
                          "dir cannot take its place; remove it and add it again", member_id,
                          mn->known[i].name);
            return -EEXIST;
        }
        break;
    }
    if (mn->n_known > 0 && !known(mn, member_id)) {
        errmsg_printf(errmsg, "member %016" PRIx64 " is not in the cluster's membership",
                      member_id);
        return -EACCES;
    }
    const struct member_net_peer *m = member_of(mn, member_id);
    if (m == NULL || member_id == mn->member_id) {
        errmsg_printf(errmsg, "member %016" PRIx64 " is not in the cluster's configuration",
                      member_id);
        return -EACCES;
    }
    if (strcmp(m->name, name) != 0) {
        errmsg_printf(errmsg, "member %016" PRIx64 " is named %s in the configuration, not %s",
                      member_id, m->name, name);
        return -EACCES;
    }
    return 0;
}

static int admit_existing_member(void *arg, char *const *peer_urls, size_t n,
                                 const char *name, struct join_admitted *out, char *errmsg)
{
    member_net *mn = arg;
    return mn->admit_existing(mn->admit_existing_arg, peer_urls, n, name, out, errmsg);
}

static void join_request_in(void *arg, peer_link *l, const uint8_t *msg, size_t len)
{
    member_net *mn = arg;
    uint8_t digest[CERT_DIGEST_BYTES];
    peer_link_key_digest(l, digest);
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    struct join_peer who = {0};
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    int rv = join_handle(&mn->founder, digest, msg, len, &resp, &resp_len, &who, errmsg);
    if (rv == 0)
        LOG_INFO(MODULE, "admitted member %016" PRIx64 " (%s, node %.16s...) from %s: its "
                 "attestation report passed the policy; sent the cluster's secrets",
                 who.member_id, who.name, who.node_id, peer_link_address(l));
    else
        LOG_WARN(MODULE, "refused a join from %s (member %016" PRIx64 "): %s",
                 peer_link_address(l), who.member_id, errmsg);
    if (resp != NULL) {
        /* The joiner closes the link once it has the answer. */
        if (peer_link_send(l, resp, resp_len) != 0)
            peer_link_close(l);
        join_buf_free(resp, resp_len);
    } else {
        peer_link_close(l);
    }
}

static void join_link_closed(void *arg, peer_link *l, int status)
{
    (void)arg;
    (void)l;
    (void)status;
}

static int on_link(void *arg, peer_link *l, uint8_t channel)
{
    member_net *mn = arg;
    if (mn->closing)
        return LSKV_ESHUTDOWN;
    if (channel == PEER_FORWARD) {
        if (!known(mn, peer_link_member(l)))
            return -EACCES;
        forward_links_accept(mn->links, l);
        return 0;
    }
    if (channel == PEER_PROBE) {
        /* Any endorsed member: a removed one is told so in the answer. */
        if (peer_link_member(l) == 0)
            return -EACCES;
        probe_links_accept(mn->probes, l);
        return 0;
    }
    if (channel == PEER_JOIN && mn->serving) {
        static const struct peer_link_callbacks cbs = {
            .on_message = join_request_in,
            .on_close = join_link_closed,
        };
        peer_link_set(l, &cbs, mn);
        return 0;
    }
    return -ECONNREFUSED; /* not serving joins (yet): the joiner retries */
}

int member_net_serve_joins(member_net *mn, const cert_service *service,
                           const uint8_t *data_key, const uint8_t *ledger_secret,
                           const char *node_cert_pem, member_net_admit_existing_fn admit_existing,
                           void *admit_arg, char *errmsg)
{
    uint8_t digest[CERT_DIGEST_BYTES];
    int rv = cert_key_digest_of_pem(node_cert_pem, strlen(node_cert_pem), digest);
    if (rv != 0) {
        errmsg_printf(errmsg, "node certificate: %s", lskv_strerror(rv));
        return rv;
    }
    if ((rv = attest_report_make(digest, &mn->report, &mn->report_len, errmsg)) != 0)
        return rv;
    mn->founder = (struct join_founder){
        .policy = &mn->policy,
        .service = service,
        .data_key = data_key,
        .ledger_secret = ledger_secret,
        .cluster_id = mn->cluster_id,
        .report = mn->report,
        .report_len = mn->report_len,
        .admit = admit,
        .admit_existing = admit_existing != NULL ? admit_existing_member : NULL,
        .admit_arg = mn,
    };
    mn->admit_existing = admit_existing;
    mn->admit_existing_arg = admit_arg;
    mn->serving = true;
    return 0;
}

/* ---- joining -------------------------------------------------------------- */

static void join_attempt(member_net *mn);

static void on_retry(uv_timer_t *t)
{
    join_attempt(t->data);
}

static void join_finish(member_net *mn, int status, const struct member_net_joined *joined,
                        const char *errmsg)
{
    mn->joined = true;
    uv_timer_stop(&mn->retry);
    if (mn->join_link != NULL) {
        peer_link_close(mn->join_link);
        mn->join_link = NULL;
    }
    mn->done(mn->done_arg, status, joined, errmsg);
}

static void join_response_in(void *arg, peer_link *l, const uint8_t *msg, size_t len)
{
    member_net *mn = arg;
    if (mn->joined || l != mn->join_link)
        return;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    struct join_secrets s = {0};
    const char *founder_pem = peer_link_cert_pem(l);
    int rv = founder_pem == NULL ? LSKV_ECORRUPT
                                 : join_response_open(msg, len, mn->key,
                                                      mn->existing ? 0 : mn->member_id,
                                                      founder_pem, strlen(founder_pem),
                                                      &mn->policy, &s, errmsg);
    if ((rv == LSKV_EMEMBERNOTFOUND || rv == LSKV_ENOTLEADER) && mn->existing &&
        ++mn->not_found < MEMBER_NET_JOIN_NOT_FOUND_TRIES) {
        /* That member does not lead, or has not applied our MemberAdd yet:
         * ask the next. */
        LOG_INFO(MODULE, "%s: %s; asking again", peer_link_address(l), errmsg);
        peer_link_close(l); /* join_closed retries */
        return;
    }
    if (rv == 0)
        rv = join_install(mn->dir, &s, mn->key, errmsg);
    struct peer_tls_identity id = {.cert_pem = s.node_cert_pem,
                                   .key_pem = mn->key->key_pem,
                                   .service_cert_pem = s.service_cert_pem};
    if (rv == 0)
        rv = peer_net_set_identity(mn->net, &id, errmsg);
    struct member_net_joined joined = {
        .member_id = s.member_id, .cluster_id = s.cluster_id, .n_members = s.n_members,
        .member_ids = s.member_ids, .member_peer_urls = s.member_peer_urls};
    if (rv == 0) {
        LOG_INFO(MODULE, "joined as member %016" PRIx64 " of cluster %016" PRIx64 ": %s vouched "
                 "for by its attestation report; secrets installed", s.member_id, s.cluster_id,
                 peer_link_address(l));
        mn->member_id = s.member_id; /* the same unless existing */
        if (mn->existing)
            mn->cluster_id = s.cluster_id;
    }
    join_finish(mn, rv, rv == 0 ? &joined : NULL, errmsg);
    join_secrets_wipe(&s);
}

static void join_open(void *arg, peer_link *l, int status)
{
    member_net *mn = arg;
    if (status == 0 || l != mn->join_link)
        return;
    if (mn->attempts % JOIN_LOG_EVERY == 1)
        LOG_INFO(MODULE, "waiting for the founder at %s to admit this member: %s (attempt %u)",
                 peer_link_address(l), lskv_strerror(status), mn->attempts);
}

static void join_closed(void *arg, peer_link *l, int status)
{
    (void)status;
    member_net *mn = arg;
    if (l != mn->join_link)
        return;
    mn->join_link = NULL;
    if (!mn->joined && !mn->closing)
        uv_timer_start(&mn->retry, on_retry, JOIN_RETRY_MS, 0);
}

/* Joining an existing cluster: each other configured member in turn. */
static const struct member_net_peer *next_to_ask(member_net *mn)
{
    for (size_t k = 0; k < mn->n_members; k++) {
        const struct member_net_peer *p = &mn->members[(mn->attempts + k) % mn->n_members];
        if (p->id != mn->member_id)
            return p;
    }
    return NULL;
}

static void join_attempt(member_net *mn)
{
    static const struct peer_link_callbacks cbs = {
        .on_open = join_open,
        .on_message = join_response_in,
        .on_close = join_closed,
    };
    if (mn->joined || mn->closing || mn->join_link != NULL)
        return;
    const struct member_net_peer *f = mn->existing ? next_to_ask(mn) : founder_of(mn);
    if (f == NULL) {
        uv_timer_start(&mn->retry, on_retry, JOIN_RETRY_MS, 0);
        return;
    }
    mn->attempts++;
    int rv = peer_link_connect(mn->net, f->address, PEER_JOIN, &cbs, mn, &mn->join_link);
    if (rv == 0)
        rv = peer_link_send(mn->join_link, mn->request, mn->request_len);
    if (rv != 0 && mn->join_link == NULL)
        uv_timer_start(&mn->retry, on_retry, JOIN_RETRY_MS, 0);
    else if (rv != 0)
        peer_link_close(mn->join_link); /* join_closed retries */
}

int member_net_join(member_net *mn, const struct join_key *k, const struct datadir *d,
                    char *const *existing_urls, size_t n_existing_urls,
                    member_net_joined_cb done, void *arg, char *errmsg)
{
    const struct member_net_peer *self = member_of(mn, mn->member_id);
    const char *name = self ? self->name : "";
    mn->existing = existing_urls != NULL;
    int rv = mn->existing
                 ? join_request_make_existing(k, mn->member_id, name, existing_urls,
                                              n_existing_urls, &mn->request, &mn->request_len,
                                              errmsg)
                 : join_request_make(k, mn->member_id, name, mn->cluster_id, &mn->request,
                                     &mn->request_len, errmsg);
    if (rv != 0)
        return rv;
    mn->key = k;
    mn->dir = d;
    mn->done = done;
    mn->done_arg = arg;
    uv_timer_start(&mn->retry, on_retry, 0, 0);
    return 0;
}

/* ---- life cycle ----------------------------------------------------------- */

struct raft_uv_transport *member_net_transport(member_net *mn)
{
    return peer_net_raft_transport(mn->net);
}

int member_net_send(void *arg, uint64_t to, const uint8_t *msg, size_t len)
{
    member_net *mn = arg;
    return forward_links_send(mn->links, to, msg, len);
}

void member_net_set_node(member_net *mn, consensus_node *node)
{
    forward_links_set_node(mn->links, node);
    probe_links_set_node(mn->probes, node);
}

int member_net_probe(member_net *mn, const struct probe_self *self, probe_done_cb done,
                     void *arg)
{
    return probe_links_ask(mn->probes, self, done, arg);
}

static int rtt_peers(peer_rtt *rtt, const struct forward_peer *peers, size_t n)
{
    struct peer_rtt_peer list[PEER_RTT_MAX_PEERS];
    size_t k = 0;
    for (size_t i = 0; i < n && k < PEER_RTT_MAX_PEERS; i++)
        list[k++] = (struct peer_rtt_peer){.id = peers[i].id, .address = peers[i].address};
    return peer_rtt_set_peers(rtt, list, k);
}

void member_net_set_member_check(member_net *mn, bool (*listed)(void *arg, uint64_t id),
                                 void *arg)
{
    probe_links_set_member_check(mn->probes, listed, arg);
}

void member_net_set_probe_reply_cb(member_net *mn, peer_rtt_reply_fn fn, void *arg)
{
    peer_rtt_set_reply_cb(mn->rtt, fn, arg);
}

const struct metrics_histogram *member_net_rtt_series(void *arg, size_t i, char *value,
                                                      size_t size)
{
    member_net *mn = arg;
    return mn->rtt != NULL ? peer_rtt_series(mn->rtt, i, value, size) : NULL;
}

static void free_peers(struct member_net_peer *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free((char *)p[i].name);
        free((char *)p[i].address);
    }
    free(p);
}

static void free_members(member_net *mn)
{
    free_peers(mn->members, mn->n_members);
    free_peers(mn->known, mn->n_known);
}

int member_net_set_members(member_net *mn, const struct member_net_peer *members, size_t n)
{
    if (mn->n_known == n) { /* the same list: nothing to do */
        size_t same = 0;
        for (size_t i = 0; i < n; i++)
            if (mn->known[i].id == members[i].id &&
                strcmp(mn->known[i].address, members[i].address) == 0 &&
                strcmp(mn->known[i].name, members[i].name ? members[i].name : "") == 0)
                same++;
        if (same == n && n > 0)
            return 0;
    }
    struct member_net_peer *copy = calloc(n ? n : 1, sizeof *copy);
    struct forward_peer *peers = calloc(n ? n : 1, sizeof *peers);
    size_t n_copied = 0, n_peers = 0;
    int rv = copy == NULL || peers == NULL ? LSKV_ENOMEM : 0;
    for (size_t i = 0; i < n && rv == 0; i++, n_copied++) {
        copy[i].id = members[i].id;
        copy[i].name = strdup(members[i].name != NULL ? members[i].name : "");
        copy[i].address = strdup(members[i].address);
        if (copy[i].name == NULL || copy[i].address == NULL)
            rv = LSKV_ENOMEM;
        else if (members[i].id != mn->member_id)
            peers[n_peers++] = (struct forward_peer){.id = members[i].id,
                                                     .address = copy[i].address};
    }
    if (rv == 0 && mn->links != NULL)
        rv = forward_links_set_peers(mn->links, peers, n_peers);
    if (rv == 0 && mn->rtt != NULL)
        rv = rtt_peers(mn->rtt, peers, n_peers);
    free(peers);
    if (rv != 0) {
        free_peers(copy, n_copied);
        return rv;
    }
    free_peers(mn->known, mn->n_known);
    mn->known = copy;
    mn->n_known = n;
    LOG_INFO(MODULE, "peers: %zu members in the committed membership", n);
    return 0;
}

int member_net_open(uv_loop_t *loop, const struct member_net_config *cfg,
                    const struct peer_tls_identity *identity, member_net **out, char *errmsg)
{
    member_net *mn = calloc(1, sizeof *mn);
    if (mn == NULL || (mn->members = calloc(cfg->n_members, sizeof *mn->members)) == NULL) {
        free(mn);
        errmsg_printf(errmsg, "member network: out of memory");
        return LSKV_ENOMEM;
    }
    mn->loop = loop;
    mn->member_id = cfg->member_id;
    mn->cluster_id = cfg->cluster_id;
    mn->policy = *cfg->policy;
    struct forward_peer *peers = calloc(cfg->n_members, sizeof *peers);
    size_t n_peers = 0;
    int rv = peers == NULL ? LSKV_ENOMEM : 0;
    for (size_t i = 0; i < cfg->n_members && rv == 0; i++) {
        mn->members[i].id = cfg->members[i].id;
        mn->members[i].name = strdup(cfg->members[i].name);
        mn->members[i].address = strdup(cfg->members[i].address);
        mn->n_members++;
        if (mn->members[i].name == NULL || mn->members[i].address == NULL)
            rv = LSKV_ENOMEM;
        else if (cfg->members[i].id != cfg->member_id)
            peers[n_peers++] = (struct forward_peer){.id = cfg->members[i].id,
                                                     .address = cfg->members[i].address};
    }
    struct peer_net_config pc = {
        .member_id = cfg->member_id,
        .listen_address = cfg->listen_address,
        .more_listen = cfg->more_listen,
        .n_more_listen = cfg->n_more_listen,
        .identity = *identity,
        .on_link = on_link,
        .arg = mn,
        .fork_window_ms = cfg->election_ms,
        .operator_tls = cfg->operator_tls,
    };
    if (rv == 0)
        rv = peer_net_open(loop, &pc, &mn->net, errmsg);
    /* No link is taken before the loop runs: the links exist by then. */
    if (rv == 0 && (rv = forward_links_new(mn->net, peers, n_peers, &mn->links)) != 0)
        peer_net_close(mn->net, NULL, NULL); /* out of memory: let the start fail */
    /* Timed from the first committed membership on (member_net_set_members):
     * a joiner's self-signed certificate would be refused until then. */
    if (rv == 0 && (rv = peer_rtt_new(loop, mn->net, &mn->rtt)) != 0) {
        peer_rtt_close(mn->rtt);
        forward_links_close(mn->links);
        peer_net_close(mn->net, NULL, NULL);
    }
    if (rv == 0) {
        struct probe_peer *pp = calloc(n_peers + 1, sizeof *pp);
        for (size_t i = 0; pp != NULL && i < n_peers; i++)
            pp[i] = (struct probe_peer){.id = peers[i].id, .address = peers[i].address};
        rv = pp == NULL ? LSKV_ENOMEM
                        : probe_links_new(loop, mn->net, pp, n_peers, cfg->election_ms,
                                          &mn->probes);
        free(pp);
        if (rv != 0) {
            peer_rtt_close(mn->rtt);
            forward_links_close(mn->links);
            peer_net_close(mn->net, NULL, NULL);
        }
    }
    free(peers);
    if (rv != 0) {
        if (rv == LSKV_ENOMEM)
            errmsg_printf(errmsg, "member network: out of memory");
        free_members(mn);
        free(mn);
        return rv;
    }
    uv_timer_init(loop, &mn->retry);
    mn->retry.data = mn;
    peer_net_set_raft_address(mn->net, raft_address_of, mn);
    *out = mn;
    return 0;
}

static void net_closed(void *arg)
{
    member_net *mn = arg;
    void (*cb)(void *) = mn->close_cb;
    void *cb_arg = mn->close_arg;
    free(mn->report);
    join_buf_free(mn->request, mn->request_len);
    free_members(mn);
    free(mn);
    if (cb != NULL)
        cb(cb_arg);
}

static void retry_closed(uv_handle_t *h)
{
    member_net *mn = h->data;
    peer_net_close(mn->net, net_closed, mn);
}

void member_net_close(member_net *mn, void (*cb)(void *arg), void *arg)
{
    if (mn->closing)
        return;
    mn->closing = true;
    mn->close_cb = cb;
    mn->close_arg = arg;
    forward_links_close(mn->links); /* freed once peer_net_close ends its links */
    mn->links = NULL;
    probe_links_close(mn->probes); /* the same */
    mn->probes = NULL;
    peer_rtt_close(mn->rtt); /* the same */
    mn->rtt = NULL;
    if (mn->join_link != NULL)
        peer_link_close(mn->join_link);
    uv_close((uv_handle_t *)&mn->retry, retry_closed);
}

/* etcdserverpb.Cluster: MemberList, MemberAdd, MemberRemove, MemberUpdate
 * and MemberPromote over the committed membership (statemachine/
 * member_table.h). A change is one log entry, proposed here (a follower's
 * goes to the leader like any write); its apply checks it against the table
 * with etcd's errors and answers with the members after it, so every member
 * agrees on the membership. The leader then drives raft's configuration
 * toward the table (consensus_reconcile, from the daemon). Before the
 * bootstrap list is committed (the first moments of a new cluster),
 * MemberList shows --initial-cluster with what members published. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "common/arena.h"
#include "common/bytes.h"
#include "common/err.h"
#include "common/url.h"
#include "consensus/reconfig.h"

/* A change waiting for the leader's check (etcd's mayAddMember and its
 * kin, which need the leader's replication progress) before it is
 * proposed. */
struct change_wait {
    struct api *api;
    grpc_call *call;
    enum command_op op;
    size_t len;
    uint8_t body[];
};

/* consensus_check_change of op on id against the committed membership. */
static int check_change(struct api *api, enum consensus_change_op op, uint64_t id)
{
    struct consensus_want members[MEMBER_TABLE_MAX];
    size_t n = 0;
    const struct member_table *t = api->published;
    for (size_t i = 0; t != NULL && i < t->n; i++)
        members[n++] = (struct consensus_want){.id = t->m[i]->id, .voter = !t->m[i]->islearner,
                                               .started = t->m[i]->name != NULL &&
                                                          t->m[i]->name[0] != '\0'};
    return consensus_check_change(api->node, op, id, api->strict_reconfig, members, n,
                                  api->seen, uv_now(api->loop));
}

/* The call a follower makes (consensus_call_leader): op u8 | id u64 BE. */
#define CHECK_CALL_BYTES 9

/* MemberList's members: the committed table, or the bootstrap flags. */
static int list_members(struct api *api, struct arena *a, Etcdserverpb__Member ***out,
                        size_t *n_out)
{
    if (api->published != NULL && member_table_initialized(api->published)) {
        const Etcdserverpb__Member **list = arena_alloc(a, MEMBER_TABLE_MAX * sizeof *list);
        if (list == NULL)
            return LSKV_ENOMEM;
        *n_out = member_table_sorted(api->published, list);
        *out = (Etcdserverpb__Member **)list;
        return 0;
    }
    size_t n = api->members != NULL ? api->members->n : 0;
    Etcdserverpb__Member *list = arena_alloc(a, (n ? n : 1) * sizeof *list);
    Etcdserverpb__Member **members = arena_alloc(a, (n ? n : 1) * sizeof *members);
    if (list == NULL || members == NULL)
        return LSKV_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const struct member *m = &api->members->m[i];
        etcdserverpb__member__init(&list[i]);
        list[i].id = m->id;
        list[i].peerurls = (char **)m->peer_urls;
        list[i].n_peerurls = m->n_peer_urls;
        const Etcdserverpb__Member *p =
            api->published ? member_table_get(api->published, m->id) : NULL;
        list[i].name = p ? p->name : (char *)"";
        if (p != NULL) {
            list[i].clienturls = p->clienturls;
            list[i].n_clienturls = p->n_clienturls;
        }
        members[i] = &list[i];
    }
    *out = members;
    *n_out = n;
    return 0;
}

static void cluster_member_list(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct api *api = ctx;
    struct arena a;
    arena_init(&a);
    if (api_decode(call, &etcdserverpb__member_list_request__descriptor, msg, len, &a) ==
        NULL) {
        arena_close(&a);
        return;
    }
    Etcdserverpb__ResponseHeader header = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    api_fill_header(api, &header);
    header.revision = 0; /* etcd's cluster server header carries no revision */
    Etcdserverpb__MemberListResponse resp = ETCDSERVERPB__MEMBER_LIST_RESPONSE__INIT;
    resp.header = &header;
    int rv = list_members(api, &a, &resp.members, &resp.n_members);
    if (rv != 0)
        api_fail(api, call, rv, NULL);
    else
        api_reply(call, &resp.base);
    arena_close(&a);
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* etcd's types.NewURLs: each http(s)://host:port without a path; sorted in
 * place, as etcd keeps them. */
static int check_urls(char **urls, size_t n)
{
    if (n == 0 || n > MEMBERS_MAX_URLS)
        return LSKV_EMEMBERBADURLS;
    for (size_t i = 0; i < n; i++) {
        struct url u;
        char why[LSKV_ERRMSG_SIZE];
        size_t len = strlen(urls[i]);
        if (url_parse(urls[i], 0, &u, why) != 0 || len == 0 || urls[i][len - 1] == '/')
            return LSKV_EMEMBERBADURLS;
    }
    qsort(urls, n, sizeof *urls, cmp_str);
    return 0;
}

static void checked(void *arg, int status, const uint8_t *reply, size_t len)
{
    (void)reply;
    (void)len;
    struct change_wait *w = arg;
    if (status != 0)
        api_fail(w->api, w->call, status, NULL);
    else
        api_propose(w->api, w->call, w->op, w->body, w->len);
    free(w);
}

/* Proposes body as op for call once the leader's check of check_op on id
 * passed (check_op 0: at once). */
static void propose_checked(struct api *api, grpc_call *call, enum command_op op,
                            const uint8_t *body, size_t len, enum consensus_change_op check_op,
                            uint64_t id)
{
    if (check_op == 0) {
        api_propose(api, call, op, body, len);
        return;
    }
    struct consensus_status st;
    consensus_get_status(api->node, &st);
    if (st.is_leader) {
        int rv = check_change(api, check_op, id);
        if (rv != 0)
            api_fail(api, call, rv, NULL);
        else
            api_propose(api, call, op, body, len);
        return;
    }
    struct change_wait *w = malloc(sizeof *w + len);
    if (w == NULL) {
        api_fail(api, call, LSKV_ENOMEM, NULL);
        return;
    }
    *w = (struct change_wait){.api = api, .call = call, .op = op, .len = len};
    memcpy(w->body, body, len);
    uint8_t req[CHECK_CALL_BYTES];
    req[0] = (uint8_t)check_op;
    put_u64be(req + 1, id);
    int rv = consensus_call_leader(api->node, API_CALL_MEMBER_CHECK, req, sizeof req, checked, w);
    if (rv != 0) {
        free(w);
        api_fail(api, call, rv, NULL);
    }
}

int cluster_service_serve_call(struct api *api, const uint8_t *req, size_t len, uint8_t **reply,
                               size_t *reply_len)
{
    if (len != CHECK_CALL_BYTES)
        return LSKV_EINVAL;
    int rv = check_change(api, (enum consensus_change_op)req[0], get_u64be(req + 1));
    if (rv != 0)
        return rv;
    if ((*reply = calloc(1, 1)) == NULL) /* one byte: a reply is never empty */
        return LSKV_ENOMEM;
    *reply_len = 1;
    return 0;
}

/* Packs msg and proposes it as op for call (after the leader's check). */
static void propose_msg(struct api *api, grpc_call *call, enum command_op op,
                        const ProtobufCMessage *msg, struct arena *a,
                        enum consensus_change_op check_op, uint64_t id)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *body = arena_alloc(a, n ? n : 1);
    if (body == NULL) {
        api_fail(api, call, LSKV_ENOMEM, NULL);
        return;
    }
    protobuf_c_message_pack(msg, body);
    propose_checked(api, call, op, body, n, check_op, id);
}

/* With auth on, membership changes are root's (etcd's
 * checkMembershipOperationPermission); false: answered. */
static bool admin_ok(struct api *api, grpc_call *call)
{
    int rv = api_authorize_admin(api, call);
    if (rv != 0)
        api_fail(api, call, rv, NULL);
    return rv == 0;
}

static void cluster_member_add(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct api *api = ctx;
    struct arena a;
    arena_init(&a);
    Etcdserverpb__MemberAddRequest *req =
        api_decode(call, &etcdserverpb__member_add_request__descriptor, msg, len, &a);
    if (req == NULL || !admin_ok(api, call))
        goto out;
    int rv = check_urls(req->peerurls, req->n_peerurls);
    if (rv != 0) {
        api_fail(api, call, rv, NULL);
        goto out;
    }
    /* etcd's v3rpc MemberAdd: NewMember("", urls, "", &now), whose id is the
     * first 8 bytes of SHA-1(sorted URLs + "" + decimal unix seconds). The
     * member receiving the request picks it; the entry carries it. */
    char now[32];
    snprintf(now, sizeof now, "%lld", (long long)time(NULL));
    Etcdserverpb__Member m = ETCDSERVERPB__MEMBER__INIT;
    m.id = members_member_id((const char *const *)req->peerurls, req->n_peerurls, now);
    m.peerurls = req->peerurls;
    m.n_peerurls = req->n_peerurls;
    m.islearner = req->islearner;
    propose_msg(api, call, COMMAND_MEMBER_ADD, &m.base, &a,
                m.islearner ? CONSENSUS_CHECK_ADD_LEARNER : CONSENSUS_CHECK_ADD_VOTER, m.id);
out:
    arena_close(&a);
}

/* MemberRemove and MemberPromote: a request with only an id (field 1 in
 * both), proposed as the client sent it once the leader's check passed. */
static void change_by_id(grpc_call *call, const uint8_t *msg, size_t len, struct api *api,
                         const ProtobufCMessageDescriptor *desc, enum command_op op,
                         enum consensus_change_op check)
{
    struct arena a;
    arena_init(&a);
    const ProtobufCMessage *req = api_decode(call, desc, msg, len, &a);
    if (req != NULL && admin_ok(api, call)) {
        uint64_t id;
        memcpy(&id, (const char *)req + protobuf_c_message_descriptor_get_field(desc, 1)->offset,
               sizeof id);
        propose_checked(api, call, op, msg, len, check, id);
    }
    arena_close(&a);
}

static void cluster_member_remove(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    change_by_id(call, msg, len, ctx, &etcdserverpb__member_remove_request__descriptor,
                 COMMAND_MEMBER_REMOVE, CONSENSUS_CHECK_REMOVE);
}

static void cluster_member_update(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct api *api = ctx;
    struct arena a;
    arena_init(&a);
    /* etcd's MemberUpdate takes the URLs as given (no NewURLs, no sort). */
    if (api_decode(call, &etcdserverpb__member_update_request__descriptor, msg, len, &a) !=
            NULL &&
        admin_ok(api, call))
        api_propose(api, call, COMMAND_MEMBER_UPDATE, msg, len);
    arena_close(&a);
}

static void cluster_member_promote(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    change_by_id(call, msg, len, ctx, &etcdserverpb__member_promote_request__descriptor,
                 COMMAND_MEMBER_PROMOTE, CONSENSUS_CHECK_PROMOTE);
}

size_t cluster_service_methods(struct api *api, struct grpc_method *m)
{
    m[0] = (struct grpc_method){.path = "/etcdserverpb.Cluster/MemberList",
                                .on_message = cluster_member_list, .ctx = api};
    m[1] = (struct grpc_method){.path = "/etcdserverpb.Cluster/MemberAdd",
                                .on_message = cluster_member_add, .ctx = api};
    m[2] = (struct grpc_method){.path = "/etcdserverpb.Cluster/MemberRemove",
                                .on_message = cluster_member_remove, .ctx = api};
    m[3] = (struct grpc_method){.path = "/etcdserverpb.Cluster/MemberUpdate",
                                .on_message = cluster_member_update, .ctx = api};
    m[4] = (struct grpc_method){.path = "/etcdserverpb.Cluster/MemberPromote",
                                .on_message = cluster_member_promote, .ctx = api};
    return 5;
}

/* etcdserverpb.Cluster: MemberList of the bootstrap membership (id and peer
 * URLs as --initial-cluster gives them) with what each member published
 * through the log once it served (name and client URLs: etcd's publish; a
 * member that has not published yet shows an empty name, as in etcd). */
#include "api/api.h"
#include "common/arena.h"
#include "common/err.h"

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
    size_t n = api->members != NULL ? api->members->n : 0;
    Etcdserverpb__Member *list = arena_alloc(&a, (n ? n : 1) * sizeof *list);
    Etcdserverpb__Member **members = arena_alloc(&a, (n ? n : 1) * sizeof *members);
    if (list == NULL || members == NULL) {
        api_fail(api, call, LSKV_ENOMEM, NULL);
        arena_close(&a);
        return;
    }
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
    Etcdserverpb__MemberListResponse resp = ETCDSERVERPB__MEMBER_LIST_RESPONSE__INIT;
    resp.header = &header;
    resp.members = members;
    resp.n_members = n;
    api_reply(call, &resp.base);
    arena_close(&a);
}

size_t cluster_service_methods(struct api *api, struct grpc_method *m)
{
    m[0] = (struct grpc_method){.path = "/etcdserverpb.Cluster/MemberList",
                                .on_message = cluster_member_list, .ctx = api};
    return 1;
}

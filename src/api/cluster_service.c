/* etcdserverpb.Cluster: MemberList (membership changes come with clusters). */
#include "api/api.h"
#include "common/arena.h"

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
    Etcdserverpb__Member self = ETCDSERVERPB__MEMBER__INIT;
    self.id = api->member_id;
    self.name = (char *)api->name;
    self.peerurls = (char **)api->peer_urls;
    self.n_peerurls = api->n_peer_urls;
    self.clienturls = (char **)api->client_urls;
    self.n_clienturls = api->n_client_urls;
    Etcdserverpb__Member *members[1] = {&self};
    Etcdserverpb__MemberListResponse resp = ETCDSERVERPB__MEMBER_LIST_RESPONSE__INIT;
    resp.header = &header;
    resp.members = members;
    resp.n_members = 1;
    api_reply(call, &resp.base);
    arena_close(&a);
}

size_t cluster_service_methods(struct api *api, struct grpc_method *m)
{
    m[0] = (struct grpc_method){.path = "/etcdserverpb.Cluster/MemberList",
                                .on_message = cluster_member_list, .ctx = api};
    return 1;
}

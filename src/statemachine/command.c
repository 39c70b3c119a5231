#include "statemachine/command.h"

#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/err.h"
#include "common/pbdepth.h"
#include "ledger/ledger.h"

/* ---- store ops: etcd's checks and apply, one pair per request type ------ */

static int validate_put(const ProtobufCMessage *req, const struct command_limits *lim)
{
    (void)lim;
    return kvstore_validate_put((const Etcdserverpb__PutRequest *)req);
}

static int validate_delete_range(const ProtobufCMessage *req, const struct command_limits *lim)
{
    (void)lim;
    return kvstore_validate_delete_range((const Etcdserverpb__DeleteRangeRequest *)req);
}

static int validate_txn(const ProtobufCMessage *req, const struct command_limits *lim)
{
    return kvstore_validate_txn((const Etcdserverpb__TxnRequest *)req, lim->max_txn_ops);
}

static int apply_put(const struct command_target *t, const ProtobufCMessage *req,
                     struct arena *a, ProtobufCMessage **resp, char *errmsg)
{
    Etcdserverpb__PutResponse *out = NULL;
    int rv = kvstore_put(t->kv, (const Etcdserverpb__PutRequest *)req, a, &out, errmsg);
    *resp = (ProtobufCMessage *)out;
    return rv;
}

static int apply_delete_range(const struct command_target *t, const ProtobufCMessage *req,
                              struct arena *a, ProtobufCMessage **resp, char *errmsg)
{
    Etcdserverpb__DeleteRangeResponse *out = NULL;
    int rv = kvstore_delete_range(t->kv, (const Etcdserverpb__DeleteRangeRequest *)req, a, &out,
                                  errmsg);
    *resp = (ProtobufCMessage *)out;
    return rv;
}

static int apply_txn(const struct command_target *t, const ProtobufCMessage *req,
                     struct arena *a, ProtobufCMessage **resp, char *errmsg)
{
    Etcdserverpb__TxnResponse *out = NULL;
    int rv = kvstore_txn(t->kv, (const Etcdserverpb__TxnRequest *)req, a, &out, errmsg);
    *resp = (ProtobufCMessage *)out;
    return rv;
}

static int apply_compaction(const struct command_target *t, const ProtobufCMessage *req,
                            struct arena *a, ProtobufCMessage **resp, char *errmsg)
{
    Etcdserverpb__CompactionResponse *out = NULL;
    int rv = kvstore_compact(t->kv, (const Etcdserverpb__CompactionRequest *)req, a, &out, errmsg);
    *resp = (ProtobufCMessage *)out;
    return rv;
}

/* ---- leases (lease/lessor.h) -------------------------------------------- */

static int validate_lease_grant(const ProtobufCMessage *req, const struct command_limits *lim)
{
    (void)lim;
    const Etcdserverpb__LeaseGrantRequest *r = (const Etcdserverpb__LeaseGrantRequest *)req;
    return r->ttl > LEASE_MAX_TTL ? LSKV_ELEASETTLTOOLARGE : 0;
}

static int apply_lease_grant(const struct command_target *t, const ProtobufCMessage *req,
                             struct arena *a, ProtobufCMessage **resp, char *errmsg)
{
    (void)errmsg;
    const Etcdserverpb__LeaseGrantRequest *r = (const Etcdserverpb__LeaseGrantRequest *)req;
    int64_t ttl;
    int rv = lessor_grant(t->leases, r->id, r->ttl, &ttl);
    if (rv != 0)
        return rv;
    Etcdserverpb__LeaseGrantResponse *out = arena_alloc(a, sizeof *out);
    if (out == NULL)
        return LSKV_ENOMEM;
    etcdserverpb__lease_grant_response__init(out);
    out->id = r->id;
    out->ttl = ttl;
    out->error = (char *)"";
    *resp = &out->base;
    return 0;
}

static int validate_member_attributes(const ProtobufCMessage *req,
                                      const struct command_limits *lim)
{
    (void)lim;
    return ((const Etcdserverpb__Member *)req)->id != 0 ? 0 : LSKV_EINVAL;
}

/* etcd's publish: the answer is MemberUpdate's shape (header, members). */
static int apply_member_attributes(const struct command_target *t, const ProtobufCMessage *req,
                                   struct arena *a, ProtobufCMessage **resp, char *errmsg)
{
    (void)errmsg;
    int rv = member_table_set(t->members, (const Etcdserverpb__Member *)req);
    if (rv != 0)
        return rv;
    Etcdserverpb__MemberUpdateResponse *out = arena_alloc(a, sizeof *out);
    if (out == NULL)
        return LSKV_ENOMEM;
    etcdserverpb__member_update_response__init(out);
    *resp = &out->base;
    return 0;
}

/* ---- membership (member_table.h) ------------------------------------------ */

/* A response of type desc (one of etcd's Member*Response, all with a
 * repeated "members") holding the members after a change, sorted by id and
 * borrowed from the table until the response is packed (right after
 * apply). */
static int members_response(const struct command_target *t, struct arena *a,
                            const ProtobufCMessageDescriptor *desc, ProtobufCMessage **resp)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(desc, "members");
    ProtobufCMessage *m = arena_alloc(a, desc->sizeof_message);
    const Etcdserverpb__Member **list = arena_alloc(a, MEMBER_TABLE_MAX * sizeof *list);
    if (f == NULL || m == NULL || list == NULL)
        return LSKV_ENOMEM;
    desc->message_init(m);
    size_t n = member_table_sorted(t->members, list);
    memcpy((char *)m + f->quantifier_offset, &n, sizeof n);
    memcpy((char *)m + f->offset, &list, sizeof list);
    *resp = m;
    return 0;
}

static int validate_members_init(const ProtobufCMessage *req, const struct command_limits *lim)
{
    (void)lim;
    const Etcdserverpb__MemberListResponse *r = (const Etcdserverpb__MemberListResponse *)req;
    return r->n_members > 0 && r->n_members <= MEMBER_TABLE_MAX ? 0 : LSKV_EINVAL;
}

static int apply_members_init(const struct command_target *t, const ProtobufCMessage *req,
                              struct arena *a, ProtobufCMessage **resp, char *errmsg)
{
    (void)errmsg;
    const Etcdserverpb__MemberListResponse *r = (const Etcdserverpb__MemberListResponse *)req;
    int rv = member_table_init(t->members, (const Etcdserverpb__Member *const *)r->members,
                               r->n_members);
    return rv != 0 ? rv
                   : members_response(t, a, &etcdserverpb__member_list_response__descriptor,
                                      resp);
}

static int validate_member_add(const ProtobufCMessage *req, const struct command_limits *lim)
{
    (void)lim;
    const Etcdserverpb__Member *m = (const Etcdserverpb__Member *)req;
    return m->id != 0 && m->n_peerurls > 0 ? 0 : LSKV_EINVAL;
}

static int apply_member_add(const struct command_target *t, const ProtobufCMessage *req,
                            struct arena *a, ProtobufCMessage **resp, char *errmsg)
{
    (void)errmsg;
    const Etcdserverpb__Member *m = (const Etcdserverpb__Member *)req;
    int rv = member_table_add(t->members, m);
    if (rv == 0)
        rv = members_response(t, a, &etcdserverpb__member_add_response__descriptor, resp);
    if (rv == 0)
        ((Etcdserverpb__MemberAddResponse *)*resp)->member =
            (Etcdserverpb__Member *)member_table_get(t->members, m->id);
    return rv;
}

static int apply_member_remove(const struct command_target *t, const ProtobufCMessage *req,
                               struct arena *a, ProtobufCMessage **resp, char *errmsg)
{
    (void)errmsg;
    int rv = member_table_remove(t->members, ((const Etcdserverpb__MemberRemoveRequest *)req)->id);
    return rv != 0 ? rv
                   : members_response(t, a, &etcdserverpb__member_remove_response__descriptor,
                                      resp);
}

static int apply_member_update(const struct command_target *t, const ProtobufCMessage *req,
                               struct arena *a, ProtobufCMessage **resp, char *errmsg)
{
    (void)errmsg;
    const Etcdserverpb__MemberUpdateRequest *r = (const Etcdserverpb__MemberUpdateRequest *)req;
    int rv = member_table_update(t->members, r->id, r->peerurls, r->n_peerurls);
    return rv != 0 ? rv
                   : members_response(t, a, &etcdserverpb__member_update_response__descriptor,
                                      resp);
}

static int apply_member_promote(const struct command_target *t, const ProtobufCMessage *req,
                                struct arena *a, ProtobufCMessage **resp, char *errmsg)
{
    (void)errmsg;
    int rv =
        member_table_promote(t->members, ((const Etcdserverpb__MemberPromoteRequest *)req)->id);
    return rv != 0 ? rv
                   : members_response(t, a, &etcdserverpb__member_promote_response__descriptor,
                                      resp);
}

Etcdserverpb__RequestOp *command_op_delete(struct arena *a, ProtobufCBinaryData key)
{
    Etcdserverpb__RequestOp *op = arena_alloc(a, sizeof *op);
    Etcdserverpb__DeleteRangeRequest *d = arena_alloc(a, sizeof *d);
    if (op == NULL || d == NULL)
        return NULL;
    etcdserverpb__request_op__init(op);
    etcdserverpb__delete_range_request__init(d);
    d->key = key;
    op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
    op->request_delete_range = d;
    return op;
}

/* etcd's Revoke: the lease's keys deleted in key order, in one revision (a
 * txn of deletes), then the lease is gone. */
static int apply_lease_revoke(const struct command_target *t, const ProtobufCMessage *req,
                              struct arena *a, ProtobufCMessage **resp, char *errmsg)
{
    const Etcdserverpb__LeaseRevokeRequest *r = (const Etcdserverpb__LeaseRevokeRequest *)req;
    uint8_t **keys;
    size_t *lens, n;
    int rv = lessor_keys(t->leases, r->id, a, &keys, &lens, &n);
    if (rv != 0)
        return rv;
    Etcdserverpb__TxnRequest *txn = arena_alloc(a, sizeof *txn);
    Etcdserverpb__RequestOp **ops = arena_alloc(a, (n ? n : 1) * sizeof *ops);
    if (txn == NULL || ops == NULL)
        return LSKV_ENOMEM;
    etcdserverpb__txn_request__init(txn);
    for (size_t i = 0; i < n; i++)
        if ((ops[i] = command_op_delete(a, (ProtobufCBinaryData){.data = keys[i],
                                                                 .len = lens[i]})) == NULL)
            return LSKV_ENOMEM;
    txn->success = ops;
    txn->n_success = n;
    Etcdserverpb__TxnResponse *deleted = NULL;
    if ((rv = kvstore_txn(t->kv, txn, a, &deleted, errmsg)) != 0)
        return rv;
    if ((rv = lessor_remove(t->leases, r->id)) != 0)
        return rv;
    Etcdserverpb__LeaseRevokeResponse *out = arena_alloc(a, sizeof *out);
    if (out == NULL)
        return LSKV_ENOMEM;
    etcdserverpb__lease_revoke_response__init(out);
    *resp = &out->base;
    return 0;
}

/* ---- auth (auth/authstore.h): etcd's auth requests ----------------------- */

#define AUTH_APPLY(fn, store_call, Req, Resp, resp_init)                                     \
    static int fn(const struct command_target *t, const ProtobufCMessage *req,                \
                  struct arena *a, ProtobufCMessage **resp, char *errmsg)                     \
    {                                                                                          \
        (void)errmsg;                                                                          \
        (void)req;                                                                             \
        if (t->auth == NULL)                                                                   \
            return LSKV_ECORRUPT;                                                              \
        int rv = store_call(t->auth, (const Req *)req);                                        \
        if (rv != 0)                                                                           \
            return rv;                                                                         \
        Resp *out = arena_alloc(a, sizeof *out);                                               \
        if (out == NULL)                                                                       \
            return LSKV_ENOMEM;                                                                \
        resp_init(out);                                                                        \
        *resp = &out->base;                                                                    \
        return 0;                                                                              \
    }

static int auth_enable(struct authstore *as, const Etcdserverpb__AuthEnableRequest *r)
{
    (void)r;
    return authstore_enable(as);
}

static int auth_disable(struct authstore *as, const Etcdserverpb__AuthDisableRequest *r)
{
    (void)r;
    return authstore_disable(as);
}

AUTH_APPLY(apply_auth_enable, auth_enable, Etcdserverpb__AuthEnableRequest,
           Etcdserverpb__AuthEnableResponse, etcdserverpb__auth_enable_response__init)
AUTH_APPLY(apply_auth_disable, auth_disable, Etcdserverpb__AuthDisableRequest,
           Etcdserverpb__AuthDisableResponse, etcdserverpb__auth_disable_response__init)
AUTH_APPLY(apply_user_add, authstore_user_add, Etcdserverpb__AuthUserAddRequest,
           Etcdserverpb__AuthUserAddResponse, etcdserverpb__auth_user_add_response__init)
AUTH_APPLY(apply_user_delete, authstore_user_delete, Etcdserverpb__AuthUserDeleteRequest,
           Etcdserverpb__AuthUserDeleteResponse, etcdserverpb__auth_user_delete_response__init)
AUTH_APPLY(apply_user_change_password, authstore_user_change_password,
           Etcdserverpb__AuthUserChangePasswordRequest,
           Etcdserverpb__AuthUserChangePasswordResponse,
           etcdserverpb__auth_user_change_password_response__init)
AUTH_APPLY(apply_user_grant_role, authstore_user_grant_role,
           Etcdserverpb__AuthUserGrantRoleRequest, Etcdserverpb__AuthUserGrantRoleResponse,
           etcdserverpb__auth_user_grant_role_response__init)
AUTH_APPLY(apply_user_revoke_role, authstore_user_revoke_role,
           Etcdserverpb__AuthUserRevokeRoleRequest, Etcdserverpb__AuthUserRevokeRoleResponse,
           etcdserverpb__auth_user_revoke_role_response__init)
AUTH_APPLY(apply_role_add, authstore_role_add, Etcdserverpb__AuthRoleAddRequest,
           Etcdserverpb__AuthRoleAddResponse, etcdserverpb__auth_role_add_response__init)
AUTH_APPLY(apply_role_delete, authstore_role_delete, Etcdserverpb__AuthRoleDeleteRequest,
           Etcdserverpb__AuthRoleDeleteResponse, etcdserverpb__auth_role_delete_response__init)
AUTH_APPLY(apply_role_grant_permission, authstore_role_grant_permission,
           Etcdserverpb__AuthRoleGrantPermissionRequest,
           Etcdserverpb__AuthRoleGrantPermissionResponse,
           etcdserverpb__auth_role_grant_permission_response__init)
AUTH_APPLY(apply_role_revoke_permission, authstore_role_revoke_permission,
           Etcdserverpb__AuthRoleRevokePermissionRequest,
           Etcdserverpb__AuthRoleRevokePermissionResponse,
           etcdserverpb__auth_role_revoke_permission_response__init)

/* The log holds a hash, never a password: a user add or password change
 * without one (or with a password) is not proposed. */
static int validate_user_add(const ProtobufCMessage *req, const struct command_limits *lim)
{
    (void)lim;
    const Etcdserverpb__AuthUserAddRequest *r = (const Etcdserverpb__AuthUserAddRequest *)req;
    bool no_password = r->options != NULL && r->options->no_password;
    if (r->password != NULL && r->password[0] != '\0')
        return LSKV_EINVAL;
    if (r->name == NULL || r->name[0] == '\0')
        return LSKV_EUSEREMPTY;
    return no_password || (r->hashedpassword && r->hashedpassword[0]) ? 0 : LSKV_EINVAL;
}

static int validate_user_change_password(const ProtobufCMessage *req,
                                         const struct command_limits *lim)
{
    (void)lim;
    const Etcdserverpb__AuthUserChangePasswordRequest *r =
        (const Etcdserverpb__AuthUserChangePasswordRequest *)req;
    if (r->password != NULL && r->password[0] != '\0')
        return LSKV_EINVAL;
    return r->hashedpassword && r->hashedpassword[0] ? 0 : LSKV_EINVAL;
}

static int validate_role_grant_permission(const ProtobufCMessage *req,
                                          const struct command_limits *lim)
{
    (void)lim;
    const Etcdserverpb__AuthRoleGrantPermissionRequest *r =
        (const Etcdserverpb__AuthRoleGrantPermissionRequest *)req;
    if (r->perm == NULL)
        return LSKV_EINVAL;
    int type = (int)r->perm->permtype;
    return type >= AUTH_READ && type <= AUTH_READWRITE ? 0 : LSKV_EINVAL;
}

bool command_is_auth(enum command_op op)
{
    return op >= COMMAND_AUTH_ENABLE && op <= COMMAND_ROLE_REVOKE_PERMISSION;
}

/* etcd's checkLeasePuts: every key on the lease must be writable. */
static int check_lease_keys(const struct command_target *t, const char *user, uint64_t rev,
                            int64_t lease)
{
    if (lease == 0 || t->leases == NULL || !lessor_exists(t->leases, lease))
        return 0;
    struct arena a;
    arena_init(&a);
    uint8_t **keys;
    size_t *lens, n;
    int rv = lessor_keys(t->leases, lease, &a, &keys, &lens, &n);
    for (size_t i = 0; rv == 0 && i < n; i++)
        rv = authstore_check(t->auth, user, rev, keys[i], lens[i], NULL, 0, AUTH_WRITE);
    arena_close(&a);
    return rv;
}

int command_authorize(const struct command_target *t, const Lskvcommandpb__Command *c,
                      const ProtobufCMessage *req)
{
    if (t->auth == NULL || !t->auth->enabled || c->request_id == 0 || req == NULL)
        return 0;
    const char *user = c->username ? c->username : "";
    uint64_t rev = c->auth_revision;
    struct authstore *as = t->auth;
    int rv = 0;
    if (command_is_auth((enum command_op)c->op_case))
        return authstore_check_admin(as, user);
    switch ((enum command_op)c->op_case) {
    case COMMAND_PUT: {
        const Etcdserverpb__PutRequest *r = (const Etcdserverpb__PutRequest *)req;
        rv = authstore_check(as, user, rev, r->key.data, r->key.len, NULL, 0, AUTH_WRITE);
        if (rv == 0)
            rv = check_lease_keys(t, user, rev, r->lease);
        if (rv == 0 && r->prev_kv)
            rv = authstore_check(as, user, rev, r->key.data, r->key.len, NULL, 0, AUTH_READ);
        return rv;
    }
    case COMMAND_DELETE_RANGE: {
        const Etcdserverpb__DeleteRangeRequest *r = (const Etcdserverpb__DeleteRangeRequest *)req;
        rv = authstore_check(as, user, rev, r->key.data, r->key.len, r->range_end.data,
                             r->range_end.len, AUTH_WRITE);
        if (rv == 0 && r->prev_kv)
            rv = authstore_check(as, user, rev, r->key.data, r->key.len, r->range_end.data,
                                 r->range_end.len, AUTH_READ);
        return rv;
    }
    case COMMAND_TXN:
        return authstore_check_txn(as, user, rev, (const Etcdserverpb__TxnRequest *)req);
    case COMMAND_LEASE_REVOKE:
        return check_lease_keys(t, user, rev, ((const Etcdserverpb__LeaseRevokeRequest *)req)->id);
    default:
        return 0;
    }
}

/* The one table of ops (command.h). */
static const struct command_kind command_kinds[] = {
    {COMMAND_PUT, "put", &etcdserverpb__put_request__descriptor, validate_put, apply_put,
     LEDGER_ENTRY_KV, true, RECEIPT_PUT, false},
    {COMMAND_DELETE_RANGE, "delete_range", &etcdserverpb__delete_range_request__descriptor,
     validate_delete_range, apply_delete_range, LEDGER_ENTRY_KV, true, RECEIPT_DELETE_RANGE, false},
    {COMMAND_TXN, "txn", &etcdserverpb__txn_request__descriptor, validate_txn, apply_txn,
     LEDGER_ENTRY_KV, true, RECEIPT_TXN, false},
    {COMMAND_COMPACTION, "compaction", &etcdserverpb__compaction_request__descriptor, NULL,
     apply_compaction, LEDGER_ENTRY_COMPACT, false, 0, false},
    {COMMAND_SIGNATURE, "signature", NULL, NULL, NULL, LEDGER_ENTRY_SIGNATURE, false, 0, false},
    /* A lease entry's write set is the command itself, as a compaction's
     * (fsm.c ledger_record): a grant changes no key, and a revoke's deletes
     * follow from it and the state before. Their receipts are found by
     * revision and claims digest (lskvserver.proto GetReceiptRequest). */
    {COMMAND_LEASE_GRANT, "lease_grant", &etcdserverpb__lease_grant_request__descriptor,
     validate_lease_grant, apply_lease_grant, LEDGER_ENTRY_LEASE, true, RECEIPT_LEASE_GRANT, false},
    {COMMAND_LEASE_REVOKE, "lease_revoke", &etcdserverpb__lease_revoke_request__descriptor, NULL,
     apply_lease_revoke, LEDGER_ENTRY_LEASE, true, RECEIPT_LEASE_REVOKE, false},
    {COMMAND_MEMBER_ATTRIBUTES, "member_attributes", &etcdserverpb__member__descriptor,
     validate_member_attributes, apply_member_attributes, LEDGER_ENTRY_OTHER, false, 0, true},
    {COMMAND_MEMBERS_INIT, "members_init", &etcdserverpb__member_list_response__descriptor,
     validate_members_init, apply_members_init, LEDGER_ENTRY_MEMBER, false, 0, true},
    {COMMAND_MEMBER_ADD, "member_add", &etcdserverpb__member__descriptor, validate_member_add,
     apply_member_add, LEDGER_ENTRY_MEMBER, false, 0, true},
    {COMMAND_MEMBER_REMOVE, "member_remove", &etcdserverpb__member_remove_request__descriptor,
     NULL, apply_member_remove, LEDGER_ENTRY_MEMBER, false, 0, true},
    {COMMAND_MEMBER_UPDATE, "member_update", &etcdserverpb__member_update_request__descriptor,
     NULL, apply_member_update, LEDGER_ENTRY_MEMBER, false, 0, true},
    {COMMAND_MEMBER_PROMOTE, "member_promote", &etcdserverpb__member_promote_request__descriptor,
     NULL, apply_member_promote, LEDGER_ENTRY_MEMBER, false, 0, true},
    /* Auth: the ledger entry's write set is the command (a user's password
     * as its bcrypt hash only). */
    {COMMAND_AUTH_ENABLE, "auth_enable", &etcdserverpb__auth_enable_request__descriptor, NULL,
     apply_auth_enable, LEDGER_ENTRY_OTHER, false, 0, false},
    {COMMAND_AUTH_DISABLE, "auth_disable", &etcdserverpb__auth_disable_request__descriptor, NULL,
     apply_auth_disable, LEDGER_ENTRY_OTHER, false, 0, false},
    {COMMAND_USER_ADD, "user_add", &etcdserverpb__auth_user_add_request__descriptor,
     validate_user_add, apply_user_add, LEDGER_ENTRY_OTHER, false, 0, false},
    {COMMAND_USER_DELETE, "user_delete", &etcdserverpb__auth_user_delete_request__descriptor,
     NULL, apply_user_delete, LEDGER_ENTRY_OTHER, false, 0, false},
    {COMMAND_USER_CHANGE_PASSWORD, "user_change_password",
     &etcdserverpb__auth_user_change_password_request__descriptor,
     validate_user_change_password, apply_user_change_password, LEDGER_ENTRY_OTHER, false, 0, false},
    {COMMAND_USER_GRANT_ROLE, "user_grant_role",
     &etcdserverpb__auth_user_grant_role_request__descriptor, NULL, apply_user_grant_role,
     LEDGER_ENTRY_OTHER, false, 0, false},
    {COMMAND_USER_REVOKE_ROLE, "user_revoke_role",
     &etcdserverpb__auth_user_revoke_role_request__descriptor, NULL, apply_user_revoke_role,
     LEDGER_ENTRY_OTHER, false, 0, false},
    {COMMAND_ROLE_ADD, "role_add", &etcdserverpb__auth_role_add_request__descriptor, NULL,
     apply_role_add, LEDGER_ENTRY_OTHER, false, 0, false},
    {COMMAND_ROLE_DELETE, "role_delete", &etcdserverpb__auth_role_delete_request__descriptor,
     NULL, apply_role_delete, LEDGER_ENTRY_OTHER, false, 0, false},
    {COMMAND_ROLE_GRANT_PERMISSION, "role_grant_permission",
     &etcdserverpb__auth_role_grant_permission_request__descriptor,
     validate_role_grant_permission, apply_role_grant_permission, LEDGER_ENTRY_OTHER, false, 0, false},
    {COMMAND_ROLE_REVOKE_PERMISSION, "role_revoke_permission",
     &etcdserverpb__auth_role_revoke_permission_request__descriptor, NULL,
     apply_role_revoke_permission, LEDGER_ENTRY_OTHER, false, 0, false},
    /* Applied by the state machine itself (statemachine/restore.h): it reads
     * the member's copy of the backup. The ledger entry's write set is the
     * command: it records the source cluster and ledger position. */
    {COMMAND_RESTORE, "restore", &lskvcommandpb__restore__descriptor, NULL, NULL,
     LEDGER_ENTRY_OTHER, false, 0, false},
};

const struct command_kind *command_kind_of(unsigned op)
{
    for (size_t i = 0; i < sizeof command_kinds / sizeof command_kinds[0]; i++)
        if (command_kinds[i].op == op)
            return &command_kinds[i];
    return NULL;
}

/* ---- envelope ------------------------------------------------------------ */

static size_t varint_put(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

int command_wrap(enum command_op op, const struct command_meta *meta, const uint8_t *body,
                 size_t len, uint8_t **out, size_t *out_len)
{
    if (command_kind_of(op) == NULL)
        return LSKV_EINVAL;
    /* The envelope's scalar fields, packed by protobuf-c with the oneof
     * unset; then the op's field framed by hand around the body bytes. */
    Lskvcommandpb__Command c = LSKVCOMMANDPB__COMMAND__INIT;
    if (meta != NULL) {
        c.request_id = meta->request_id;
        c.origin_member = meta->origin_member;
        c.username = meta->username ? (char *)meta->username : (char *)"";
        c.auth_revision = meta->auth_revision;
    }
    size_t head = lskvcommandpb__command__get_packed_size(&c);
    uint64_t tag = ((uint64_t)op << 3) | 2; /* wire type 2: length-delimited */
    size_t total = head + varint_len(tag) + varint_len(len) + len;
    uint8_t *buf = malloc(total);
    if (buf == NULL)
        return LSKV_ENOMEM;
    size_t off = lskvcommandpb__command__pack(&c, buf);
    off += varint_put(buf + off, tag);
    off += varint_put(buf + off, len);
    if (len)
        memcpy(buf + off, body, len);
    *out = buf;
    *out_len = off + len;
    return 0;
}

int command_encode(enum command_op op, const struct command_meta *meta,
                   const ProtobufCMessage *msg, uint8_t **out, size_t *out_len)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *body = malloc(n ? n : 1);
    if (body == NULL)
        return LSKV_ENOMEM;
    protobuf_c_message_pack(msg, body);
    int rv = command_wrap(op, meta, body, n, out, out_len);
    free(body);
    return rv;
}

int command_decode(const uint8_t *buf, size_t len, struct arena *a,
                   Lskvcommandpb__Command **out)
{
    /* The envelope adds one level to the request's (common/pbdepth.h). */
    if (pbdepth_check(&lskvcommandpb__command__descriptor, buf, len, PBDEPTH_MAX + 1) != 0)
        return LSKV_ECORRUPT;
    Lskvcommandpb__Command *c = lskvcommandpb__command__unpack(&a->pb, len, buf);
    if (c == NULL || command_kind_of(c->op_case) == NULL)
        return LSKV_ECORRUPT;
    *out = c;
    return 0;
}

const ProtobufCMessage *command_request(const Lskvcommandpb__Command *c)
{
    /* The oneof's message fields share one offset; the descriptor finds it,
     * so a new op needs no code here. */
    const ProtobufCFieldDescriptor *fd =
        protobuf_c_message_descriptor_get_field(&lskvcommandpb__command__descriptor, c->op_case);
    if (fd == NULL || fd->type != PROTOBUF_C_TYPE_MESSAGE)
        return NULL;
    const ProtobufCMessage *m;
    memcpy(&m, (const char *)c + fd->offset, sizeof m);
    return m;
}

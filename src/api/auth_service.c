/* etcdserverpb.Auth: etcd 3.4's auth RPCs (etcdserver/v3_server.go,
 * apply_auth.go) over the replicated auth store (auth/authstore.h) and
 * this member's simple tokens (auth/tokens.h).
 *
 * Changes (enable, disable, users, roles, permissions) are commands: the
 * admin check runs here (so a denied one leaves no trace) and again at
 * apply. UserAdd and UserChangePassword hash the password with bcrypt on
 * libuv's thread pool (tens of milliseconds) and propose the hash only.
 * Reads (UserGet/List, RoleGet/List) and Authenticate are answered here
 * after a consensus barrier, with etcd's rules: UserGet of oneself and
 * RoleGet of one's own role need no root. Authenticate checks the password
 * off the loop too, then hands out a token of this member. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "common/err.h"
#include "common/log.h"
#include "crypto/password.h"

/* ---- changes ------------------------------------------------------------ */

static void propose_packed(struct api *api, grpc_call *call, enum command_op op,
                           const ProtobufCMessage *req)
{
    size_t n = protobuf_c_message_get_packed_size(req);
    uint8_t *body = malloc(n ? n : 1);
    if (body == NULL) {
        api_fail(api, call, LSKV_ENOMEM, NULL);
        return;
    }
    protobuf_c_message_pack(req, body);
    api_propose(api, call, op, body, n);
    free(body);
}

/* A password to hash off the loop, then the request to propose. */
struct hash_job {
    uv_work_t work;
    struct api *api;
    grpc_call *call;
    enum command_op op;
    char *name;
    bool no_password;
    char *password;
    char hash[PASSWORD_HASH_MAX];
    int rv;
};

static void hash_job_free(struct hash_job *j)
{
    if (j->password != NULL)
        explicit_bzero(j->password, strlen(j->password));
    free(j->password);
    free(j->name);
    explicit_bzero(j->hash, sizeof j->hash);
    free(j);
}

static void hash_work(uv_work_t *w)
{
    struct hash_job *j = w->data;
    j->rv = password_hash(j->password, j->api->bcrypt_cost, j->hash);
}

static void hash_done(uv_work_t *w, int status)
{
    struct hash_job *j = w->data;
    if (status != 0 || j->rv != 0) {
        api_fail(j->api, j->call, status != 0 ? LSKV_ESHUTDOWN : j->rv, "hashing a password");
        hash_job_free(j);
        return;
    }
    /* The command holds the hash; the password field stays empty. */
    if (j->op == COMMAND_USER_ADD) {
        Etcdserverpb__AuthUserAddRequest r = ETCDSERVERPB__AUTH_USER_ADD_REQUEST__INIT;
        Authpb__UserAddOptions o = AUTHPB__USER_ADD_OPTIONS__INIT;
        r.name = j->name;
        r.hashedpassword = j->hash;
        o.no_password = false;
        r.options = &o;
        propose_packed(j->api, j->call, j->op, &r.base);
    } else {
        Etcdserverpb__AuthUserChangePasswordRequest r =
            ETCDSERVERPB__AUTH_USER_CHANGE_PASSWORD_REQUEST__INIT;
        r.name = j->name;
        r.hashedpassword = j->hash;
        propose_packed(j->api, j->call, j->op, &r.base);
    }
    hash_job_free(j);
}

/* Hashes password on the thread pool, then proposes op for name. */
static void hash_then_propose(struct api *api, grpc_call *call, enum command_op op,
                              const char *name, const char *password)
{
    struct hash_job *j = calloc(1, sizeof *j);
    if (j == NULL || (j->name = strdup(name ? name : "")) == NULL ||
        (j->password = strdup(password ? password : "")) == NULL) {
        if (j != NULL)
            hash_job_free(j);
        api_fail(api, call, LSKV_ENOMEM, NULL);
        return;
    }
    j->api = api;
    j->call = call;
    j->op = op;
    j->work.data = j;
    int rv = uv_queue_work(api->loop, &j->work, hash_work, hash_done);
    if (rv != 0) {
        hash_job_free(j);
        api_fail(api, call, rv, "queueing a password hash");
    }
}

/* The common path of every auth change: decode, etcd's checks, the admin
 * check, then propose (user add and password change: after hashing). */
static void handle_change(struct api *api, grpc_call *call, const uint8_t *msg, size_t len,
                          enum command_op op)
{
    if (len > api->max_request_bytes) {
        api_fail(api, call, LSKV_ETOOLARGE, NULL);
        return;
    }
    const struct command_kind *kind = command_kind_of(op);
    struct arena a;
    arena_init(&a);
    ProtobufCMessage *req = api_decode(call, kind->request, msg, len, &a);
    if (req == NULL)
        goto out;
    int rv = api_authorize_admin(api, call);
    if (rv == 0 && op == COMMAND_USER_ADD) {
        Etcdserverpb__AuthUserAddRequest *r = (Etcdserverpb__AuthUserAddRequest *)req;
        if (r->name == NULL || r->name[0] == '\0') {
            rv = LSKV_EUSEREMPTY; /* etcd's first check, before hashing */
        } else if (r->options == NULL || !r->options->no_password) {
            hash_then_propose(api, call, op, r->name, r->password);
            goto out;
        } else {
            r->password = (char *)""; /* etcd ignores it; the log never holds it */
            r->hashedpassword = (char *)"";
            propose_packed(api, call, op, req);
            goto out;
        }
    } else if (rv == 0 && op == COMMAND_USER_CHANGE_PASSWORD) {
        Etcdserverpb__AuthUserChangePasswordRequest *r =
            (Etcdserverpb__AuthUserChangePasswordRequest *)req;
        /* etcd answers an unknown user at apply, after hashing: the same
         * answer, without the hashing */
        if (authstore_user(api->auth, r->name ? r->name : "") == NULL)
            rv = LSKV_EUSERNOTFOUND;
        else {
            hash_then_propose(api, call, op, r->name, r->password);
            goto out;
        }
    }
    if (rv == 0 && kind->validate)
        rv = kind->validate(req, &api->limits);
    if (rv != 0)
        api_fail(api, call, rv, NULL);
    else
        api_propose(api, call, op, msg, len);
out:
    arena_close(&a);
}

#define CHANGE(fn, op)                                                                \
    static void fn(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)        \
    {                                                                                 \
        handle_change(ctx, call, msg, len, op);                                       \
    }

CHANGE(auth_enable, COMMAND_AUTH_ENABLE)
CHANGE(auth_disable, COMMAND_AUTH_DISABLE)
CHANGE(user_add, COMMAND_USER_ADD)
CHANGE(user_delete, COMMAND_USER_DELETE)
CHANGE(user_change_password, COMMAND_USER_CHANGE_PASSWORD)
CHANGE(user_grant_role, COMMAND_USER_GRANT_ROLE)
CHANGE(user_revoke_role, COMMAND_USER_REVOKE_ROLE)
CHANGE(role_add, COMMAND_ROLE_ADD)
CHANGE(role_delete, COMMAND_ROLE_DELETE)
CHANGE(role_grant_permission, COMMAND_ROLE_GRANT_PERMISSION)
CHANGE(role_revoke_permission, COMMAND_ROLE_REVOKE_PERMISSION)

/* ---- reads and Authenticate: after a barrier ------------------------------ */

enum read_kind { READ_USER_GET, READ_USER_LIST, READ_ROLE_GET, READ_ROLE_LIST, READ_AUTHENTICATE };

struct read_call {
    uv_work_t work;
    struct api *api;
    grpc_call *call;
    enum read_kind kind;
    char *name;     /* user or role asked for */
    char *password; /* Authenticate */
    char hash[PASSWORD_HASH_MAX];
    bool match;
};

static void read_free(struct read_call *r)
{
    if (r->password != NULL)
        explicit_bzero(r->password, strlen(r->password));
    free(r->password);
    free(r->name);
    free(r);
}

static void answer_user_get(struct api *api, grpc_call *call, const char *name)
{
    const char *me;
    uint64_t rev;
    int rv = api_auth_info(api, call, &me, &rev);
    /* etcd: root, or the user asking about itself */
    if (rv == 0 && (rv = authstore_check_admin(api->auth, me)) != 0 && strcmp(name, me) == 0)
        rv = 0;
    const struct auth_user *u = rv == 0 ? authstore_user(api->auth, name) : NULL;
    if (rv == 0 && u == NULL)
        rv = LSKV_EUSERNOTFOUND;
    if (rv != 0) {
        api_fail(api, call, rv, NULL);
        return;
    }
    Etcdserverpb__AuthUserGetResponse resp = ETCDSERVERPB__AUTH_USER_GET_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    api_fill_header(api, &h);
    resp.header = &h;
    resp.roles = u->roles;
    resp.n_roles = u->n_roles;
    api_reply(call, &resp.base);
}

static void answer_role_get(struct api *api, grpc_call *call, const char *name)
{
    const char *me;
    uint64_t rev;
    int rv = api_auth_info(api, call, &me, &rev);
    /* etcd: root, or a user asking about a role it has */
    if (rv == 0 && (rv = authstore_check_admin(api->auth, me)) != 0 &&
        authstore_has_role(api->auth, me, name))
        rv = 0;
    const struct auth_role *r = rv == 0 ? authstore_role(api->auth, name) : NULL;
    if (rv == 0 && r == NULL)
        rv = LSKV_EROLENOTFOUND;
    if (rv != 0) {
        api_fail(api, call, rv, NULL);
        return;
    }
    Authpb__Permission *perms = calloc(r->n_perms ? r->n_perms : 1, sizeof *perms);
    Authpb__Permission **pp = calloc(r->n_perms ? r->n_perms : 1, sizeof *pp);
    if (perms == NULL || pp == NULL) {
        free(perms);
        free(pp);
        api_fail(api, call, LSKV_ENOMEM, NULL);
        return;
    }
    for (size_t i = 0; i < r->n_perms; i++) {
        authpb__permission__init(&perms[i]);
        perms[i].permtype = (Authpb__Permission__Type)r->perms[i].type;
        perms[i].key = (ProtobufCBinaryData){.data = r->perms[i].key, .len = r->perms[i].key_len};
        perms[i].range_end =
            (ProtobufCBinaryData){.data = r->perms[i].end, .len = r->perms[i].end_len};
        pp[i] = &perms[i];
    }
    Etcdserverpb__AuthRoleGetResponse resp = ETCDSERVERPB__AUTH_ROLE_GET_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    api_fill_header(api, &h);
    resp.header = &h;
    resp.perm = pp;
    resp.n_perm = r->n_perms;
    api_reply(call, &resp.base);
    free(perms);
    free(pp);
}

static void answer_list(struct api *api, grpc_call *call, bool users)
{
    int rv = api_authorize_admin(api, call);
    if (rv != 0) {
        api_fail(api, call, rv, NULL);
        return;
    }
    size_t n = users ? api->auth->n_users : api->auth->n_roles;
    char **names = calloc(n ? n : 1, sizeof *names);
    if (names == NULL) {
        api_fail(api, call, LSKV_ENOMEM, NULL);
        return;
    }
    for (size_t i = 0; i < n; i++)
        names[i] = users ? api->auth->users[i].name : api->auth->roles[i].name;
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    api_fill_header(api, &h);
    if (users) {
        Etcdserverpb__AuthUserListResponse resp = ETCDSERVERPB__AUTH_USER_LIST_RESPONSE__INIT;
        resp.header = &h;
        resp.users = names;
        resp.n_users = n;
        api_reply(call, &resp.base);
    } else {
        Etcdserverpb__AuthRoleListResponse resp = ETCDSERVERPB__AUTH_ROLE_LIST_RESPONSE__INIT;
        resp.header = &h;
        resp.roles = names;
        resp.n_roles = n;
        api_reply(call, &resp.base);
    }
    free(names);
}

static void verify_work(uv_work_t *w)
{
    struct read_call *r = w->data;
    r->match = password_verify(r->password, r->hash);
}

/* The password checked (off the loop): a token, if the user is still the
 * one that was checked (etcd retries when the store moved; a changed hash
 * here is a changed password: refuse). */
static void verify_done(uv_work_t *w, int status)
{
    struct read_call *r = w->data;
    struct api *api = r->api;
    const struct auth_user *u = authstore_user(api->auth, r->name);
    int rv = status != 0 ? LSKV_ESHUTDOWN : 0;
    if (rv == 0 && !api->auth->enabled)
        rv = LSKV_EAUTHNOTENABLED;
    else if (rv == 0 && (!r->match || u == NULL || strcmp(u->hash, r->hash) != 0))
        rv = LSKV_EAUTHFAILED;
    char simple[AUTH_TOKEN_MAX], *jwt = NULL;
    const char *token = simple;
    if (rv == 0 && api->jwt != NULL) {
        if (!jwt_key_can_sign(api->jwt)) {
            grpc_call_finish(r->call, GRPC_STATUS_UNKNOWN,
                             "auth: token signing attempted with verify-only key");
            read_free(r);
            return;
        }
        rv = jwt_sign(api->jwt, r->name, api->auth->revision,
                      (int64_t)time(NULL) + (int64_t)(api->jwt_ttl_ms / 1000), &jwt);
        token = jwt;
    } else if (rv == 0) {
        rv = auth_tokens_assign(api->tokens, api->auth, r->name, uv_now(api->loop), simple);
    }
    if (rv != 0) {
        if (rv == LSKV_EAUTHFAILED)
            LOG_INFO("auth", "authentication failed for user %s from %s", r->name,
                     grpc_call_peer(r->call));
        api_fail(api, r->call, rv, NULL);
    } else {
        Etcdserverpb__AuthenticateResponse resp = ETCDSERVERPB__AUTHENTICATE_RESPONSE__INIT;
        Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
        api_fill_header(api, &h);
        resp.header = &h;
        resp.token = (char *)token;
        api_reply(r->call, &resp.base);
    }
    free(jwt);
    read_free(r);
}

/* etcd's CheckPassword up to the hash comparison, which runs off the loop. */
static void start_authenticate(struct read_call *r)
{
    struct api *api = r->api;
    int rv = 0;
    const struct auth_user *u = authstore_user(api->auth, r->name);
    if (!api->auth->enabled)
        rv = LSKV_EAUTHNOTENABLED;
    else if (u == NULL)
        rv = LSKV_EAUTHFAILED;
    else if (u->no_password)
        rv = LSKV_ENOPASSWORDUSER;
    else if (strlen(u->hash) >= sizeof r->hash || (api->tokens == NULL && api->jwt == NULL))
        rv = LSKV_EAUTHFAILED;
    if (rv == 0) {
        memcpy(r->hash, u->hash, strlen(u->hash) + 1);
        r->work.data = r;
        if ((rv = uv_queue_work(api->loop, &r->work, verify_work, verify_done)) == 0)
            return;
    }
    api_fail(api, r->call, rv, NULL);
    read_free(r);
}

static void after_barrier(void *arg, int status, void *result)
{
    (void)result;
    struct read_call *r = arg;
    if (status != 0) {
        api_fail(r->api, r->call, status, NULL);
    } else {
        switch (r->kind) {
        case READ_USER_GET:
            answer_user_get(r->api, r->call, r->name);
            break;
        case READ_ROLE_GET:
            answer_role_get(r->api, r->call, r->name);
            break;
        case READ_USER_LIST:
        case READ_ROLE_LIST:
            answer_list(r->api, r->call, r->kind == READ_USER_LIST);
            break;
        case READ_AUTHENTICATE:
            start_authenticate(r);
            return; /* it frees r */
        }
    }
    read_free(r);
}

static void handle_read(struct api *api, grpc_call *call, const uint8_t *msg, size_t len,
                        enum read_kind kind, const ProtobufCMessageDescriptor *desc)
{
    struct arena a;
    arena_init(&a);
    const char *name = "", *password = NULL;
    ProtobufCMessage *req = api_decode(call, desc, msg, len, &a);
    struct read_call *r = req ? calloc(1, sizeof *r) : NULL;
    if (req == NULL)
        goto out;
    if (kind == READ_USER_GET)
        name = ((Etcdserverpb__AuthUserGetRequest *)req)->name;
    else if (kind == READ_ROLE_GET)
        name = ((Etcdserverpb__AuthRoleGetRequest *)req)->role;
    else if (kind == READ_AUTHENTICATE) {
        name = ((Etcdserverpb__AuthenticateRequest *)req)->name;
        password = ((Etcdserverpb__AuthenticateRequest *)req)->password;
    }
    if (r == NULL || (r->name = strdup(name ? name : "")) == NULL ||
        (password != NULL && (r->password = strdup(password)) == NULL)) {
        if (r != NULL)
            read_free(r);
        api_fail(api, call, LSKV_ENOMEM, NULL);
        goto out;
    }
    r->api = api;
    r->call = call;
    r->kind = kind;
    int rv = consensus_barrier(api->node, after_barrier, r);
    if (rv != 0) {
        api_fail(api, call, rv, NULL);
        read_free(r);
    }
out:
    if (password != NULL)
        explicit_bzero((char *)password, strlen(password));
    arena_close(&a);
}

#define READ(fn, kind, desc)                                                          \
    static void fn(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)        \
    {                                                                                 \
        handle_read(ctx, call, msg, len, kind, desc);                                 \
    }

READ(authenticate, READ_AUTHENTICATE, &etcdserverpb__authenticate_request__descriptor)
READ(user_get, READ_USER_GET, &etcdserverpb__auth_user_get_request__descriptor)
READ(user_list, READ_USER_LIST, &etcdserverpb__auth_user_list_request__descriptor)
READ(role_get, READ_ROLE_GET, &etcdserverpb__auth_role_get_request__descriptor)
READ(role_list, READ_ROLE_LIST, &etcdserverpb__auth_role_list_request__descriptor)

size_t auth_service_methods(struct api *api, struct grpc_method *m)
{
    static const struct {
        const char *path;
        grpc_message_fn fn;
    } table[] = {
        {"/etcdserverpb.Auth/AuthEnable", auth_enable},
        {"/etcdserverpb.Auth/AuthDisable", auth_disable},
        {"/etcdserverpb.Auth/Authenticate", authenticate},
        {"/etcdserverpb.Auth/UserAdd", user_add},
        {"/etcdserverpb.Auth/UserGet", user_get},
        {"/etcdserverpb.Auth/UserList", user_list},
        {"/etcdserverpb.Auth/UserDelete", user_delete},
        {"/etcdserverpb.Auth/UserChangePassword", user_change_password},
        {"/etcdserverpb.Auth/UserGrantRole", user_grant_role},
        {"/etcdserverpb.Auth/UserRevokeRole", user_revoke_role},
        {"/etcdserverpb.Auth/RoleAdd", role_add},
        {"/etcdserverpb.Auth/RoleGet", role_get},
        {"/etcdserverpb.Auth/RoleList", role_list},
        {"/etcdserverpb.Auth/RoleDelete", role_delete},
        {"/etcdserverpb.Auth/RoleGrantPermission", role_grant_permission},
        {"/etcdserverpb.Auth/RoleRevokePermission", role_revoke_permission},
    };
    size_t n = sizeof table / sizeof table[0];
    for (size_t i = 0; i < n; i++)
        m[i] = (struct grpc_method){.path = table[i].path, .on_message = table[i].fn, .ctx = api};
    return n;
}

/* Tests for auth/authstore.c (etcd's auth store rules) and
 * crypto/password.c (bcrypt through libcrypt). */
#include <stdlib.h>
#include <string.h>

#include "auth/authstore.h"
#include "auth/tokens.h"
#include "common/err.h"
#include "crypto/password.h"
#include "proto/lskvauth.pb-c.h"
#include "runner.h"

static int add_user(struct authstore *as, char *name, const char *password, bool no_password)
{
    char hash[PASSWORD_HASH_MAX] = "";
    if (!no_password && password_hash(password, 4, hash) != 0)
        return -1;
    Etcdserverpb__AuthUserAddRequest r = ETCDSERVERPB__AUTH_USER_ADD_REQUEST__INIT;
    Authpb__UserAddOptions o = AUTHPB__USER_ADD_OPTIONS__INIT;
    o.no_password = no_password;
    r.name = name;
    r.hashedpassword = hash;
    r.options = &o;
    return authstore_user_add(as, &r);
}

static int grant_role(struct authstore *as, char *user, char *role)
{
    Etcdserverpb__AuthUserGrantRoleRequest r = ETCDSERVERPB__AUTH_USER_GRANT_ROLE_REQUEST__INIT;
    r.user = user;
    r.role = role;
    return authstore_user_grant_role(as, &r);
}

static int add_role(struct authstore *as, char *name)
{
    Etcdserverpb__AuthRoleAddRequest r = ETCDSERVERPB__AUTH_ROLE_ADD_REQUEST__INIT;
    r.name = name;
    return authstore_role_add(as, &r);
}

static int grant_perm(struct authstore *as, char *role, const char *key, const char *end,
                      size_t end_len, Authpb__Permission__Type type)
{
    Etcdserverpb__AuthRoleGrantPermissionRequest r =
        ETCDSERVERPB__AUTH_ROLE_GRANT_PERMISSION_REQUEST__INIT;
    Authpb__Permission p = AUTHPB__PERMISSION__INIT;
    p.key = (ProtobufCBinaryData){.data = (uint8_t *)key, .len = strlen(key)};
    p.range_end = (ProtobufCBinaryData){.data = (uint8_t *)end, .len = end_len};
    p.permtype = type;
    r.name = role;
    r.perm = &p;
    return authstore_role_grant_permission(as, &r);
}

static int check(const struct authstore *as, const char *user, const char *key,
                 const char *end, size_t end_len, enum auth_perm_type t)
{
    return authstore_check(as, user, as->revision, (const uint8_t *)key, strlen(key),
                           (const uint8_t *)end, end_len, t);
}

TEST(authstore, password_hash_is_bcrypt_and_verifies)
{
    char h[PASSWORD_HASH_MAX];
    ASSERT_EQ(password_hash("s3cret", 4, h), 0);
    ASSERT(strncmp(h, "$2b$04$", 7) == 0);
    ASSERT_EQ(strlen(h), 60u);
    ASSERT(strstr(h, "s3cret") == NULL);
    ASSERT(password_verify("s3cret", h));
    ASSERT(!password_verify("s3creT", h));
    ASSERT(!password_verify("s3cret", ""));
    char h2[PASSWORD_HASH_MAX];
    ASSERT_EQ(password_hash("s3cret", 4, h2), 0);
    ASSERT(strcmp(h, h2) != 0); /* salted */
    ASSERT_EQ(password_hash("x", 3, h2), LSKV_EINVAL);
    ASSERT(!password_verify("s3cret", "s3cret")); /* not a hash: never a match */
}

TEST(authstore, enable_needs_root_user_with_root_role)
{
    struct authstore as;
    authstore_init(&as);
    ASSERT_EQ(as.revision, 1u);
    ASSERT_EQ(authstore_enable(&as), LSKV_EROOTUSERNOTEXIST);
    ASSERT_EQ(add_user(&as, "root", "pw", false), 0);
    ASSERT_EQ(as.revision, 2u);
    ASSERT_EQ(authstore_enable(&as), LSKV_EROOTROLENOTEXIST);
    ASSERT_EQ(grant_role(&as, "root", "root"), 0); /* the root role need not exist */
    ASSERT_EQ(as.revision, 3u);
    ASSERT_EQ(grant_role(&as, "root", "root"), 0); /* again: ignored, no revision */
    ASSERT_EQ(as.revision, 3u);
    ASSERT_EQ(authstore_enable(&as), 0);
    ASSERT(as.enabled);
    ASSERT_EQ(as.revision, 3u); /* etcd: enable does not move the revision */
    ASSERT_EQ(authstore_enable(&as), 0);
    /* root is protected while enabled */
    Etcdserverpb__AuthUserDeleteRequest del = ETCDSERVERPB__AUTH_USER_DELETE_REQUEST__INIT;
    del.name = "root";
    ASSERT_EQ(authstore_user_delete(&as, &del), LSKV_EINVALIDAUTHMGMT);
    Etcdserverpb__AuthUserRevokeRoleRequest rv = ETCDSERVERPB__AUTH_USER_REVOKE_ROLE_REQUEST__INIT;
    rv.name = "root";
    rv.role = "root";
    ASSERT_EQ(authstore_user_revoke_role(&as, &rv), LSKV_EINVALIDAUTHMGMT);
    Etcdserverpb__AuthRoleDeleteRequest rd = ETCDSERVERPB__AUTH_ROLE_DELETE_REQUEST__INIT;
    rd.role = "root";
    ASSERT_EQ(authstore_role_delete(&as, &rd), LSKV_EINVALIDAUTHMGMT);
    ASSERT_EQ(authstore_check_password(&as, "root", "pw"), 0);
    ASSERT_EQ(authstore_check_password(&as, "root", "pW"), LSKV_EAUTHFAILED);
    ASSERT_EQ(authstore_check_password(&as, "nobody", "pw"), LSKV_EAUTHFAILED);
    ASSERT_EQ(authstore_disable(&as), 0);
    ASSERT_EQ(as.revision, 4u);
    ASSERT_EQ(authstore_check_password(&as, "root", "pw"), LSKV_EAUTHNOTENABLED);
    ASSERT_EQ(authstore_user_revoke_role(&as, &rv), 0); /* disabled: allowed */
    ASSERT_EQ(authstore_user_delete(&as, &del), 0);
    authstore_clear(&as);
}

TEST(authstore, users_and_roles_errors)
{
    struct authstore as;
    authstore_init(&as);
    ASSERT_EQ(add_user(&as, "", "pw", false), LSKV_EUSEREMPTY);
    ASSERT_EQ(add_user(&as, "u", "pw", false), 0);
    ASSERT_EQ(add_user(&as, "u", "pw", false), LSKV_EUSEREXISTS);
    ASSERT_EQ(add_user(&as, "np", NULL, true), 0);
    ASSERT_EQ(add_role(&as, ""), LSKV_EROLEEMPTY);
    ASSERT_EQ(add_role(&as, "r"), 0);
    ASSERT_EQ(add_role(&as, "r"), LSKV_EROLEEXISTS);
    ASSERT_EQ(grant_role(&as, "x", "r"), LSKV_EUSERNOTFOUND);
    ASSERT_EQ(grant_role(&as, "u", "nope"), LSKV_EROLENOTFOUND);
    ASSERT_EQ(grant_role(&as, "u", "r"), 0);
    ASSERT(authstore_has_role(&as, "u", "r"));
    Etcdserverpb__AuthUserRevokeRoleRequest rv = ETCDSERVERPB__AUTH_USER_REVOKE_ROLE_REQUEST__INIT;
    rv.name = "np";
    rv.role = "r";
    ASSERT_EQ(authstore_user_revoke_role(&as, &rv), LSKV_EROLENOTGRANTED);
    ASSERT_EQ(grant_perm(&as, "nope", "a", "", 0, AUTHPB__PERMISSION__TYPE__READ),
              LSKV_EROLENOTFOUND);
    Etcdserverpb__AuthRoleRevokePermissionRequest rp =
        ETCDSERVERPB__AUTH_ROLE_REVOKE_PERMISSION_REQUEST__INIT;
    rp.role = "r";
    rp.key = (ProtobufCBinaryData){.data = (uint8_t *)"a", .len = 1};
    ASSERT_EQ(authstore_role_revoke_permission(&as, &rp), LSKV_EPERMNOTGRANTED);
    ASSERT_EQ(grant_perm(&as, "r", "a", "", 0, AUTHPB__PERMISSION__TYPE__READ), 0);
    uint64_t rev = as.revision;
    ASSERT_EQ(authstore_role_revoke_permission(&as, &rp), 0);
    ASSERT_EQ(as.revision, rev + 1);
    ASSERT_EQ(as.roles[0].n_perms, 0u);
    /* deleting a role takes it from its users */
    Etcdserverpb__AuthRoleDeleteRequest rd = ETCDSERVERPB__AUTH_ROLE_DELETE_REQUEST__INIT;
    rd.role = "r";
    ASSERT_EQ(authstore_role_delete(&as, &rd), 0);
    ASSERT(!authstore_has_role(&as, "u", "r"));
    ASSERT_EQ(authstore_role_delete(&as, &rd), LSKV_EROLENOTFOUND);
    /* a no-password user cannot authenticate */
    ASSERT_EQ(add_user(&as, "root", "pw", false), 0);
    ASSERT_EQ(grant_role(&as, "root", "root"), 0);
    ASSERT_EQ(authstore_enable(&as), 0);
    ASSERT_EQ(authstore_check_password(&as, "np", ""), LSKV_ENOPASSWORDUSER);
    /* a password change replaces the hash */
    char h[PASSWORD_HASH_MAX];
    ASSERT_EQ(password_hash("new", 4, h), 0);
    Etcdserverpb__AuthUserChangePasswordRequest cp =
        ETCDSERVERPB__AUTH_USER_CHANGE_PASSWORD_REQUEST__INIT;
    cp.name = "u";
    cp.hashedpassword = h;
    ASSERT_EQ(authstore_user_change_password(&as, &cp), 0);
    ASSERT_EQ(authstore_check_password(&as, "u", "pw"), LSKV_EAUTHFAILED);
    ASSERT_EQ(authstore_check_password(&as, "u", "new"), 0);
    cp.name = "ghost";
    ASSERT_EQ(authstore_user_change_password(&as, &cp), LSKV_EUSERNOTFOUND);
    authstore_clear(&as);
}

TEST(authstore, permission_checks_as_etcd)
{
    struct authstore as;
    authstore_init(&as);
    ASSERT_EQ(add_user(&as, "root", "pw", false), 0);
    ASSERT_EQ(grant_role(&as, "root", "root"), 0);
    ASSERT_EQ(add_user(&as, "u", "pw", false), 0);
    ASSERT_EQ(add_role(&as, "r"), 0);
    ASSERT_EQ(grant_role(&as, "u", "r"), 0);
    ASSERT_EQ(grant_perm(&as, "r", "k", "", 0, AUTHPB__PERMISSION__TYPE__READ), 0);
    ASSERT_EQ(grant_perm(&as, "r", "p/", "p0", 2, AUTHPB__PERMISSION__TYPE__READWRITE), 0);
    ASSERT_EQ(grant_perm(&as, "r", "w", "x", 1, AUTHPB__PERMISSION__TYPE__WRITE), 0);
    ASSERT_EQ(grant_perm(&as, "r", "z", "\0", 1, AUTHPB__PERMISSION__TYPE__READ), 0);
    /* disabled: everything allowed, nobody needed */
    ASSERT_EQ(authstore_check(&as, "", 0, (const uint8_t *)"q", 1, NULL, 0, AUTH_WRITE), 0);
    ASSERT_EQ(authstore_enable(&as), 0);
    ASSERT_EQ(authstore_check(&as, "", 0, (const uint8_t *)"q", 1, NULL, 0, AUTH_READ),
              LSKV_EUSEREMPTY);
    ASSERT_EQ(authstore_check(&as, "u", as.revision - 1, (const uint8_t *)"k", 1, NULL, 0,
                              AUTH_READ),
              LSKV_EAUTHOLDREV);
    ASSERT_EQ(check(&as, "root", "anything", "\0", 1, AUTH_WRITE), 0);
    ASSERT_EQ(check(&as, "ghost", "k", "", 0, AUTH_READ), LSKV_EPERMDENIED);
    /* one key */
    ASSERT_EQ(check(&as, "u", "k", "", 0, AUTH_READ), 0);
    ASSERT_EQ(check(&as, "u", "k", "", 0, AUTH_WRITE), LSKV_EPERMDENIED);
    ASSERT_EQ(check(&as, "u", "k2", "", 0, AUTH_READ), LSKV_EPERMDENIED);
    ASSERT_EQ(check(&as, "u", "k", "k\0", 2, AUTH_READ), 0); /* [k, k\0) is the key */
    ASSERT_EQ(check(&as, "u", "k", "l", 1, AUTH_READ), LSKV_EPERMDENIED);
    /* a prefix: keys in it, ranges inside it, not past it */
    ASSERT_EQ(check(&as, "u", "p/a", "", 0, AUTH_WRITE), 0);
    ASSERT_EQ(check(&as, "u", "p/", "p0", 2, AUTH_READ), 0);
    ASSERT_EQ(check(&as, "u", "p/a", "p/b", 3, AUTH_READ), 0);
    ASSERT_EQ(check(&as, "u", "p/", "p1", 2, AUTH_READ), LSKV_EPERMDENIED);
    ASSERT_EQ(check(&as, "u", "p", "", 0, AUTH_READ), LSKV_EPERMDENIED);
    ASSERT_EQ(check(&as, "u", "p/", "\0", 1, AUTH_READ), LSKV_EPERMDENIED);
    /* write only */
    ASSERT_EQ(check(&as, "u", "w1", "", 0, AUTH_WRITE), 0);
    ASSERT_EQ(check(&as, "u", "w1", "", 0, AUTH_READ), LSKV_EPERMDENIED);
    /* from key: everything from z on */
    ASSERT_EQ(check(&as, "u", "zz", "\0", 1, AUTH_READ), 0);
    ASSERT_EQ(check(&as, "u", "y", "\0", 1, AUTH_READ), LSKV_EPERMDENIED);
    /* grants that join cover a range; a gap does not */
    ASSERT_EQ(grant_perm(&as, "r", "x", "z", 1, AUTHPB__PERMISSION__TYPE__WRITE), 0);
    ASSERT_EQ(check(&as, "u", "w", "y", 1, AUTH_WRITE), 0);
    ASSERT_EQ(check(&as, "u", "w", "\0", 1, AUTH_WRITE), LSKV_EPERMDENIED);
    ASSERT_EQ(grant_perm(&as, "r", "z", "\0", 1, AUTHPB__PERMISSION__TYPE__READWRITE), 0);
    ASSERT_EQ(check(&as, "u", "w", "\0", 1, AUTH_WRITE), 0);
    /* a txn: compares read, nested txns too */
    Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
    put.key = (ProtobufCBinaryData){.data = (uint8_t *)"k", .len = 1};
    Etcdserverpb__RequestOp op = ETCDSERVERPB__REQUEST_OP__INIT;
    op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    op.request_put = &put;
    Etcdserverpb__RequestOp *ops[] = {&op};
    Etcdserverpb__TxnRequest inner = ETCDSERVERPB__TXN_REQUEST__INIT;
    inner.failure = ops;
    inner.n_failure = 1;
    Etcdserverpb__RequestOp nest = ETCDSERVERPB__REQUEST_OP__INIT;
    nest.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN;
    nest.request_txn = &inner;
    Etcdserverpb__RequestOp *outer_ops[] = {&nest};
    Etcdserverpb__TxnRequest txn = ETCDSERVERPB__TXN_REQUEST__INIT;
    txn.success = outer_ops;
    txn.n_success = 1;
    ASSERT_EQ(authstore_check_txn(&as, "u", as.revision, &txn), LSKV_EPERMDENIED);
    put.key = (ProtobufCBinaryData){.data = (uint8_t *)"p/x", .len = 3};
    ASSERT_EQ(authstore_check_txn(&as, "u", as.revision, &txn), 0);
    /* admin */
    ASSERT_EQ(authstore_check_admin(&as, "root"), 0);
    ASSERT_EQ(authstore_check_admin(&as, "u"), LSKV_EPERMDENIED);
    ASSERT_EQ(authstore_check_admin(&as, ""), LSKV_EUSEREMPTY);
    ASSERT_EQ(authstore_check_admin(&as, "ghost"), LSKV_EUSERNOTFOUND);
    authstore_clear(&as);
}

TEST(authstore, snapshot_round_trip_and_corrupt)
{
    struct authstore as, back;
    authstore_init(&as);
    authstore_init(&back);
    ASSERT_EQ(add_user(&as, "root", "correct horse", false), 0);
    ASSERT_EQ(grant_role(&as, "root", "root"), 0);
    ASSERT_EQ(add_user(&as, "np", NULL, true), 0);
    ASSERT_EQ(add_role(&as, "r"), 0);
    ASSERT_EQ(grant_role(&as, "np", "r"), 0);
    ASSERT_EQ(grant_perm(&as, "r", "p/", "p0", 2, AUTHPB__PERMISSION__TYPE__READWRITE), 0);
    ASSERT_EQ(authstore_enable(&as), 0);
    uint8_t *buf, *buf2;
    size_t len, len2;
    ASSERT_EQ(authstore_encode(&as, &buf, &len), 0);
    ASSERT(memmem(buf, len, "correct horse", 13) == NULL); /* the hash, never the password */
    ASSERT(memmem(buf, len, "$2b$04$", 7) != NULL);
    ASSERT_EQ(authstore_decode(&back, buf, len), 0);
    ASSERT(back.enabled);
    ASSERT_EQ(back.revision, as.revision);
    ASSERT_EQ(back.n_users, 2u);
    ASSERT(back.users[0].no_password);
    ASSERT(authstore_has_role(&back, "np", "r"));
    ASSERT_EQ(authstore_check_password(&back, "root", "correct horse"), 0);
    ASSERT_EQ(authstore_encode(&back, &buf2, &len2), 0);
    ASSERT_EQ(len2, len);
    ASSERT(memcmp(buf, buf2, len) == 0);
    free(buf2);
    /* garbage, and users out of order */
    ASSERT_EQ(authstore_decode(&back, (const uint8_t *)"\xff\xff", 2), LSKV_ECORRUPT);
    ASSERT_EQ(back.n_users, 0u);
    ASSERT(!back.enabled);
    Authpb__User u1 = AUTHPB__USER__INIT, u2 = AUTHPB__USER__INIT;
    u1.name = (ProtobufCBinaryData){.data = (uint8_t *)"b", .len = 1};
    u2.name = (ProtobufCBinaryData){.data = (uint8_t *)"a", .len = 1};
    Authpb__User *us[] = {&u1, &u2};
    Lskvauthpb__AuthState st = LSKVAUTHPB__AUTH_STATE__INIT;
    st.revision = 3;
    st.users = us;
    st.n_users = 2;
    uint8_t raw[256];
    size_t n = lskvauthpb__auth_state__pack(&st, raw);
    ASSERT_EQ(authstore_decode(&back, raw, n), LSKV_ECORRUPT);
    st.n_users = 1;
    n = lskvauthpb__auth_state__pack(&st, raw);
    ASSERT_EQ(authstore_decode(&back, raw, n), 0);
    st.revision = 0;
    n = lskvauthpb__auth_state__pack(&st, raw);
    ASSERT_EQ(authstore_decode(&back, raw, n), LSKV_ECORRUPT);
    free(buf);
    authstore_clear(&as);
    authstore_clear(&back);
}

TEST(authstore, simple_tokens_expire_and_die_with_their_user)
{
    struct authstore as;
    authstore_init(&as);
    ASSERT_EQ(add_user(&as, "root", "pw", false), 0);
    ASSERT_EQ(grant_role(&as, "root", "root"), 0);
    ASSERT_EQ(add_user(&as, "u", "pw", false), 0);
    ASSERT_EQ(add_user(&as, "np", NULL, true), 0);
    ASSERT_EQ(authstore_enable(&as), 0);
    auth_tokens *t;
    ASSERT_EQ(auth_tokens_new(1000, &t), 0);
    char a[AUTH_TOKEN_MAX], b[AUTH_TOKEN_MAX];
    ASSERT_EQ(auth_tokens_assign(t, &as, "np", 0, a), LSKV_EAUTHFAILED);
    ASSERT_EQ(auth_tokens_assign(t, &as, "ghost", 0, a), LSKV_EAUTHFAILED);
    ASSERT_EQ(auth_tokens_assign(t, &as, "u", 0, a), 0);
    ASSERT_EQ(auth_tokens_assign(t, &as, "root", 0, b), 0);
    ASSERT(strcmp(a, b) != 0);
    ASSERT_EQ(strlen(strchr(a, '.')) > 1 && strchr(a, '.') - a == 16, 1); /* etcd's shape */
    const char *who;
    ASSERT_EQ(auth_tokens_lookup(t, &as, a, 900, &who), 0);
    ASSERT_STR_EQ(who, "u");
    ASSERT_EQ(auth_tokens_lookup(t, &as, a, 1800, &who), 0); /* each use renews */
    ASSERT_EQ(auth_tokens_lookup(t, &as, "nope.1", 1800, &who), LSKV_EINVALIDTOKEN);
    ASSERT_EQ(auth_tokens_lookup(t, &as, a, 2801, &who), LSKV_EINVALIDTOKEN); /* idle 1 s */
    ASSERT_EQ(auth_tokens_lookup(t, &as, a, 2801, &who), LSKV_EINVALIDTOKEN); /* and gone */
    /* a password change kills the user's tokens */
    ASSERT_EQ(auth_tokens_assign(t, &as, "u", 3000, a), 0);
    char h[PASSWORD_HASH_MAX];
    ASSERT_EQ(password_hash("new", 4, h), 0);
    Etcdserverpb__AuthUserChangePasswordRequest cp =
        ETCDSERVERPB__AUTH_USER_CHANGE_PASSWORD_REQUEST__INIT;
    cp.name = "u";
    cp.hashedpassword = h;
    ASSERT_EQ(authstore_user_change_password(&as, &cp), 0);
    ASSERT_EQ(auth_tokens_lookup(t, &as, a, 3001, &who), LSKV_EINVALIDTOKEN);
    /* so do disable and enable again, even unseen in between */
    ASSERT_EQ(auth_tokens_assign(t, &as, "root", 3000, b), 0);
    ASSERT_EQ(auth_tokens_lookup(t, &as, b, 3001, &who), 0);
    ASSERT_EQ(authstore_disable(&as), 0);
    ASSERT_EQ(authstore_enable(&as), 0);
    ASSERT_EQ(auth_tokens_lookup(t, &as, b, 3002, &who), LSKV_EINVALIDTOKEN);
    /* and deleting the user */
    ASSERT_EQ(auth_tokens_assign(t, &as, "u", 4000, a), 0);
    Etcdserverpb__AuthUserDeleteRequest del = ETCDSERVERPB__AUTH_USER_DELETE_REQUEST__INIT;
    del.name = "u";
    ASSERT_EQ(authstore_user_delete(&as, &del), 0);
    ASSERT_EQ(auth_tokens_lookup(t, &as, a, 4001, &who), LSKV_EINVALIDTOKEN);
    auth_tokens_free(t);
    authstore_clear(&as);
}

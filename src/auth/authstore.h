/* The auth store: etcd 3.4's users, roles, key permissions, the enabled
 * flag and the auth revision (etcd auth/store.go, range_perm_cache.go).
 *
 * Replicated state: it changes only when a committed auth command applies
 * (statemachine/command.c), so every member holds the same store; apply is
 * deterministic (no clock, no randomness). A user's password is held as
 * its bcrypt hash only (crypto/password.h), made by the proposing member;
 * a no_password user has none and cannot Authenticate.
 *
 * Rules, as etcd's:
 *  - the revision starts at 1 and grows by one with every change but
 *    AuthEnable (a grant of a role the user has changes nothing);
 *  - AuthEnable needs the user "root" holding the role "root"; while auth
 *    is enabled, root cannot be deleted nor lose the root role, and the
 *    root role cannot be deleted; the role "root" need not exist to be
 *    granted and allows everything;
 *  - permissions: a READ, WRITE or READWRITE grant over a key (no range
 *    end), [key, range_end), or key onwards (range end "\0"); an empty
 *    range end in a check is one key, any other range must be covered
 *    wholly by the union of the user's grants of that type.
 * Errors are etcd's, as LSKV_E* codes (common/err.h). */
#ifndef LSKV_AUTH_AUTHSTORE_H
#define LSKV_AUTH_AUTHSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/rpc.pb-c.h"

#define AUTH_ROOT "root"

enum auth_perm_type { AUTH_READ = 0, AUTH_WRITE = 1, AUTH_READWRITE = 2 };

struct auth_perm {
    uint8_t *key, *end; /* malloc'ed (1 byte at least); end_len 0: one key */
    size_t key_len, end_len;
    enum auth_perm_type type;
};

struct auth_role {
    char *name;
    struct auth_perm *perms; /* etcd's order: by key */
    size_t n_perms;
};

struct auth_user {
    char *name;
    char *hash;        /* bcrypt hash; "" for a no_password user */
    bool no_password;
    char **roles;      /* sorted, unique */
    size_t n_roles;
};

struct authstore {
    bool enabled;
    uint64_t revision;
    /* The revision of the last AuthEnable (after a snapshot restore: the
     * restored revision). Not in the snapshot: tokens made before it are
     * dead (auth/tokens.h). */
    uint64_t enabled_at;
    struct auth_user *users; /* sorted by name */
    size_t n_users;
    struct auth_role *roles; /* sorted by name */
    size_t n_roles;
};

/* An empty store, auth disabled, revision 1 (etcd's new store). */
void authstore_init(struct authstore *as);
/* Frees everything; as is empty (authstore_init) afterwards. */
void authstore_clear(struct authstore *as);

/* ---- changes (apply only) ----
 * Each returns 0 or an etcd error, and LSKV_ENOMEM (not deterministic: the
 * caller stops). On any error the store is unchanged. */
int authstore_enable(struct authstore *as);
int authstore_disable(struct authstore *as);
/* r->hashedPassword is the hash (r->password is ignored: it never reaches
 * the log). */
int authstore_user_add(struct authstore *as, const Etcdserverpb__AuthUserAddRequest *r);
int authstore_user_delete(struct authstore *as, const Etcdserverpb__AuthUserDeleteRequest *r);
int authstore_user_change_password(struct authstore *as,
                                   const Etcdserverpb__AuthUserChangePasswordRequest *r);
int authstore_user_grant_role(struct authstore *as,
                              const Etcdserverpb__AuthUserGrantRoleRequest *r);
int authstore_user_revoke_role(struct authstore *as,
                               const Etcdserverpb__AuthUserRevokeRoleRequest *r);
int authstore_role_add(struct authstore *as, const Etcdserverpb__AuthRoleAddRequest *r);
int authstore_role_delete(struct authstore *as, const Etcdserverpb__AuthRoleDeleteRequest *r);
int authstore_role_grant_permission(struct authstore *as,
                                    const Etcdserverpb__AuthRoleGrantPermissionRequest *r);
int authstore_role_revoke_permission(struct authstore *as,
                                     const Etcdserverpb__AuthRoleRevokePermissionRequest *r);

/* ---- reads ---- */
const struct auth_user *authstore_user(const struct authstore *as, const char *name);
const struct auth_role *authstore_role(const struct authstore *as, const char *name);
bool authstore_has_role(const struct authstore *as, const char *user, const char *role);

/* etcd's CheckPassword: LSKV_EAUTHNOTENABLED, LSKV_EAUTHFAILED (no such
 * user or wrong password), LSKV_ENOPASSWORDUSER, or 0. Slow (bcrypt). */
int authstore_check_password(const struct authstore *as, const char *user, const char *password);

/* ---- permission checks (etcd's isOpPermitted) ----
 * user and rev are who asked and the auth revision it was checked at (the
 * command envelope's username and auth_revision; rev 0: nobody). 0 when
 * auth is disabled; else LSKV_EUSEREMPTY (rev 0), LSKV_EAUTHOLDREV (rev
 * below the store's), LSKV_EPERMDENIED, or 0. */
int authstore_check(const struct authstore *as, const char *user, uint64_t rev,
                    const uint8_t *key, size_t key_len, const uint8_t *end, size_t end_len,
                    enum auth_perm_type type);
/* A Txn's compares and ops, nested Txns included (etcd 3.4 does not look
 * into nested Txns; lskv does: docs/design-changes.md). */
int authstore_check_txn(const struct authstore *as, const char *user, uint64_t rev,
                        const Etcdserverpb__TxnRequest *t);
/* etcd's IsAdminPermitted: 0 when auth is disabled; else LSKV_EUSEREMPTY,
 * LSKV_EUSERNOTFOUND, LSKV_EPERMDENIED, or 0 for a user with role root. */
int authstore_check_admin(const struct authstore *as, const char *user);

/* ---- snapshot (section AUTH: proto/lskvauth.proto) ---- */
/* Errors: LSKV_ENOMEM. */
int authstore_encode(const struct authstore *as, uint8_t **out, size_t *out_len);
/* Replaces the store with buf's. Errors: LSKV_ECORRUPT (does not decode,
 * names unsorted or repeated, an unknown permission type, revision 0),
 * LSKV_ENOMEM; on error as is left empty (authstore_init). */
int authstore_decode(struct authstore *as, const uint8_t *buf, size_t len);

#endif

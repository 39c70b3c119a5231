#include "auth/authstore.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "crypto/password.h"
#include "proto/lskvauth.pb-c.h"

void authstore_init(struct authstore *as)
{
    memset(as, 0, sizeof *as);
    as->revision = 1;
}

static void perm_free(struct auth_perm *p)
{
    free(p->key);
    free(p->end);
}

static void role_free(struct auth_role *r)
{
    free(r->name);
    for (size_t i = 0; i < r->n_perms; i++)
        perm_free(&r->perms[i]);
    free(r->perms);
}

static void user_free(struct auth_user *u)
{
    free(u->name);
    if (u->hash != NULL)
        explicit_bzero(u->hash, strlen(u->hash));
    free(u->hash);
    for (size_t i = 0; i < u->n_roles; i++)
        free(u->roles[i]);
    free(u->roles);
}

void authstore_clear(struct authstore *as)
{
    for (size_t i = 0; i < as->n_users; i++)
        user_free(&as->users[i]);
    for (size_t i = 0; i < as->n_roles; i++)
        role_free(&as->roles[i]);
    free(as->users);
    free(as->roles);
    authstore_init(as);
}

/* ---- lookups ------------------------------------------------------------ */

/* Index of name in the sorted names (stride apart), or where it would go. */
static size_t find_name(const void *base, size_t n, size_t stride, const char *name, bool *found)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *m = *(char *const *)((const char *)base + mid * stride);
        int c = strcmp(m, name);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

const struct auth_user *authstore_user(const struct authstore *as, const char *name)
{
    bool found;
    size_t i = find_name(as->users, as->n_users, sizeof *as->users, name, &found);
    return found ? &as->users[i] : NULL;
}

const struct auth_role *authstore_role(const struct authstore *as, const char *name)
{
    bool found;
    size_t i = find_name(as->roles, as->n_roles, sizeof *as->roles, name, &found);
    return found ? &as->roles[i] : NULL;
}

static bool user_has_role(const struct auth_user *u, const char *role, size_t *at)
{
    bool found;
    size_t i = find_name(u->roles, u->n_roles, sizeof *u->roles, role, &found);
    if (at != NULL)
        *at = i;
    return found;
}

bool authstore_has_role(const struct authstore *as, const char *user, const char *role)
{
    const struct auth_user *u = authstore_user(as, user);
    return u != NULL && user_has_role(u, role, NULL);
}

/* ---- small helpers -------------------------------------------------------- */

static char *dup_str(const char *s)
{
    return strdup(s ? s : "");
}

static uint8_t *dup_bytes(const uint8_t *b, size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    if (p != NULL && n)
        memcpy(p, b, n);
    return p;
}

/* Opens a hole at i in an array of n elements (grows it by one). */
static int insert_at(void **base, size_t *n, size_t stride, size_t i)
{
    char *p = realloc(*base, (*n + 1) * stride);
    if (p == NULL)
        return LSKV_ENOMEM;
    memmove(p + (i + 1) * stride, p + i * stride, (*n - i) * stride);
    *base = p;
    (*n)++;
    return 0;
}

static void remove_at(void *base, size_t *n, size_t stride, size_t i)
{
    char *p = base;
    memmove(p + i * stride, p + (i + 1) * stride, (*n - i - 1) * stride);
    (*n)--;
}

static const char *str_or_empty(const char *s)
{
    return s ? s : "";
}

/* ---- changes ---------------------------------------------------------------- */

int authstore_enable(struct authstore *as)
{
    if (as->enabled)
        return 0; /* etcd: "already enabled; ignored" */
    const struct auth_user *root = authstore_user(as, AUTH_ROOT);
    if (root == NULL)
        return LSKV_EROOTUSERNOTEXIST;
    if (!user_has_role(root, AUTH_ROOT, NULL))
        return LSKV_EROOTROLENOTEXIST;
    as->enabled = true; /* etcd does not move the revision here */
    as->enabled_at = as->revision;
    return 0;
}

int authstore_disable(struct authstore *as)
{
    if (!as->enabled)
        return 0;
    as->enabled = false;
    as->revision++;
    return 0;
}

int authstore_user_add(struct authstore *as, const Etcdserverpb__AuthUserAddRequest *r)
{
    const char *name = str_or_empty(r->name);
    if (name[0] == '\0')
        return LSKV_EUSEREMPTY;
    bool found;
    size_t i = find_name(as->users, as->n_users, sizeof *as->users, name, &found);
    if (found)
        return LSKV_EUSEREXISTS;
    bool no_password = r->options != NULL && r->options->no_password;
    struct auth_user u = {.name = dup_str(name),
                          .hash = dup_str(no_password ? "" : r->hashedpassword),
                          .no_password = no_password};
    if (u.name == NULL || u.hash == NULL ||
        insert_at((void **)&as->users, &as->n_users, sizeof u, i) != 0) {
        user_free(&u);
        return LSKV_ENOMEM;
    }
    as->users[i] = u;
    as->revision++;
    return 0;
}

int authstore_user_delete(struct authstore *as, const Etcdserverpb__AuthUserDeleteRequest *r)
{
    const char *name = str_or_empty(r->name);
    if (as->enabled && strcmp(name, AUTH_ROOT) == 0)
        return LSKV_EINVALIDAUTHMGMT;
    bool found;
    size_t i = find_name(as->users, as->n_users, sizeof *as->users, name, &found);
    if (!found)
        return LSKV_EUSERNOTFOUND;
    user_free(&as->users[i]);
    remove_at(as->users, &as->n_users, sizeof *as->users, i);
    as->revision++;
    return 0;
}

int authstore_user_change_password(struct authstore *as,
                                   const Etcdserverpb__AuthUserChangePasswordRequest *r)
{
    bool found;
    size_t i =
        find_name(as->users, as->n_users, sizeof *as->users, str_or_empty(r->name), &found);
    if (!found)
        return LSKV_EUSERNOTFOUND;
    char *h = dup_str(r->hashedpassword);
    if (h == NULL)
        return LSKV_ENOMEM;
    struct auth_user *u = &as->users[i];
    explicit_bzero(u->hash, strlen(u->hash));
    free(u->hash);
    /* etcd keeps the user's options: a no_password user stays one. */
    u->hash = h;
    as->revision++;
    return 0;
}

int authstore_user_grant_role(struct authstore *as,
                              const Etcdserverpb__AuthUserGrantRoleRequest *r)
{
    bool found;
    size_t i =
        find_name(as->users, as->n_users, sizeof *as->users, str_or_empty(r->user), &found);
    if (!found)
        return LSKV_EUSERNOTFOUND;
    const char *role = str_or_empty(r->role);
    if (strcmp(role, AUTH_ROOT) != 0 && authstore_role(as, role) == NULL)
        return LSKV_EROLENOTFOUND;
    struct auth_user *u = &as->users[i];
    size_t at;
    if (user_has_role(u, role, &at))
        return 0; /* etcd: ignored, no revision */
    char *copy = dup_str(role);
    if (copy == NULL || insert_at((void **)&u->roles, &u->n_roles, sizeof *u->roles, at) != 0) {
        free(copy);
        return LSKV_ENOMEM;
    }
    u->roles[at] = copy;
    as->revision++;
    return 0;
}

int authstore_user_revoke_role(struct authstore *as,
                               const Etcdserverpb__AuthUserRevokeRoleRequest *r)
{
    const char *name = str_or_empty(r->name), *role = str_or_empty(r->role);
    if (as->enabled && strcmp(name, AUTH_ROOT) == 0 && strcmp(role, AUTH_ROOT) == 0)
        return LSKV_EINVALIDAUTHMGMT;
    bool found;
    size_t i = find_name(as->users, as->n_users, sizeof *as->users, name, &found);
    if (!found)
        return LSKV_EUSERNOTFOUND;
    struct auth_user *u = &as->users[i];
    size_t at;
    if (!user_has_role(u, role, &at))
        return LSKV_EROLENOTGRANTED;
    free(u->roles[at]);
    remove_at(u->roles, &u->n_roles, sizeof *u->roles, at);
    as->revision++;
    return 0;
}

int authstore_role_add(struct authstore *as, const Etcdserverpb__AuthRoleAddRequest *r)
{
    const char *name = str_or_empty(r->name);
    if (name[0] == '\0')
        return LSKV_EROLEEMPTY;
    bool found;
    size_t i = find_name(as->roles, as->n_roles, sizeof *as->roles, name, &found);
    if (found)
        return LSKV_EROLEEXISTS;
    struct auth_role role = {.name = dup_str(name)};
    if (role.name == NULL ||
        insert_at((void **)&as->roles, &as->n_roles, sizeof role, i) != 0) {
        free(role.name);
        return LSKV_ENOMEM;
    }
    as->roles[i] = role;
    as->revision++;
    return 0;
}

int authstore_role_delete(struct authstore *as, const Etcdserverpb__AuthRoleDeleteRequest *r)
{
    const char *name = str_or_empty(r->role);
    if (as->enabled && strcmp(name, AUTH_ROOT) == 0)
        return LSKV_EINVALIDAUTHMGMT;
    bool found;
    size_t i = find_name(as->roles, as->n_roles, sizeof *as->roles, name, &found);
    if (!found)
        return LSKV_EROLENOTFOUND;
    role_free(&as->roles[i]);
    remove_at(as->roles, &as->n_roles, sizeof *as->roles, i);
    /* ... and from every user that had it. */
    for (size_t k = 0; k < as->n_users; k++) {
        struct auth_user *u = &as->users[k];
        size_t at;
        if (user_has_role(u, name, &at)) {
            free(u->roles[at]);
            remove_at(u->roles, &u->n_roles, sizeof *u->roles, at);
        }
    }
    as->revision++;
    return 0;
}

static bool bytes_eq(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

/* bytes.Compare */
static int bytes_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    size_t n = an < bn ? an : bn;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0)
        return c;
    return an < bn ? -1 : an > bn ? 1 : 0;
}

int authstore_role_grant_permission(struct authstore *as,
                                    const Etcdserverpb__AuthRoleGrantPermissionRequest *r)
{
    bool found;
    size_t i =
        find_name(as->roles, as->n_roles, sizeof *as->roles, str_or_empty(r->name), &found);
    if (!found)
        return LSKV_EROLENOTFOUND;
    static const Authpb__Permission none = AUTHPB__PERMISSION__INIT;
    const Authpb__Permission *p = r->perm ? r->perm : &none;
    if ((int)p->permtype < (int)AUTH_READ || (int)p->permtype > (int)AUTH_READWRITE)
        return LSKV_EINVAL; /* refused before proposal (command.c) */
    struct auth_role *role = &as->roles[i];
    /* etcd's search: the first permission whose key is >= the new key; the
     * same key and range end there is an update, else an insert kept
     * sorted by key (a stable sort: after equal keys). */
    size_t at = 0;
    while (at < role->n_perms &&
           bytes_cmp(role->perms[at].key, role->perms[at].key_len, p->key.data, p->key.len) < 0)
        at++;
    if (at < role->n_perms &&
        bytes_eq(role->perms[at].key, role->perms[at].key_len, p->key.data, p->key.len) &&
        bytes_eq(role->perms[at].end, role->perms[at].end_len, p->range_end.data,
                 p->range_end.len)) {
        role->perms[at].type = (enum auth_perm_type)p->permtype;
        as->revision++;
        return 0;
    }
    while (at < role->n_perms &&
           bytes_cmp(role->perms[at].key, role->perms[at].key_len, p->key.data, p->key.len) == 0)
        at++;
    struct auth_perm np = {.key = dup_bytes(p->key.data, p->key.len),
                           .key_len = p->key.len,
                           .end = dup_bytes(p->range_end.data, p->range_end.len),
                           .end_len = p->range_end.len,
                           .type = (enum auth_perm_type)p->permtype};
    if (np.key == NULL || np.end == NULL ||
        insert_at((void **)&role->perms, &role->n_perms, sizeof np, at) != 0) {
        perm_free(&np);
        return LSKV_ENOMEM;
    }
    role->perms[at] = np;
    as->revision++;
    return 0;
}

int authstore_role_revoke_permission(struct authstore *as,
                                     const Etcdserverpb__AuthRoleRevokePermissionRequest *r)
{
    bool found;
    size_t i =
        find_name(as->roles, as->n_roles, sizeof *as->roles, str_or_empty(r->role), &found);
    if (!found)
        return LSKV_EROLENOTFOUND;
    struct auth_role *role = &as->roles[i];
    size_t kept = 0, before = role->n_perms;
    for (size_t k = 0; k < role->n_perms; k++) {
        struct auth_perm *p = &role->perms[k];
        if (bytes_eq(p->key, p->key_len, r->key.data, r->key.len) &&
            bytes_eq(p->end, p->end_len, r->range_end.data, r->range_end.len))
            perm_free(p);
        else
            role->perms[kept++] = *p;
    }
    if (kept == before)
        return LSKV_EPERMNOTGRANTED;
    role->n_perms = kept;
    as->revision++;
    return 0;
}

/* ---- checks ----------------------------------------------------------------- */

int authstore_check_password(const struct authstore *as, const char *user, const char *password)
{
    if (!as->enabled)
        return LSKV_EAUTHNOTENABLED;
    const struct auth_user *u = authstore_user(as, str_or_empty(user));
    if (u == NULL)
        return LSKV_EAUTHFAILED;
    if (u->no_password)
        return LSKV_ENOPASSWORDUSER;
    return password_verify(str_or_empty(password), u->hash) ? 0 : LSKV_EAUTHFAILED;
}

/* etcd's adt.BytesAffineComparable: an empty end is past every key. */
static bool is_inf(const uint8_t *b, size_t n)
{
    (void)b;
    return n == 0;
}

/* A grant's interval [b, e), e empty for "no end": a single key k is
 * [k, k"\0") (point). perm_ivl returns false for a grant that covers
 * nothing (an empty key: etcd's affine compare puts it past every key). */
struct ivl {
    const uint8_t *b, *e;
    size_t bn, en;
    bool point; /* e is b + "\0" */
};

static bool perm_ivl(const struct auth_perm *p, struct ivl *out)
{
    if (p->key_len == 0)
        return false;
    out->b = p->key;
    out->bn = p->key_len;
    out->point = false;
    if (p->end_len == 0) {
        out->point = true; /* [k, k"\0") */
        out->e = NULL;
        out->en = 0;
    } else if (p->end_len == 1 && p->end[0] == 0) {
        out->e = NULL; /* from key onwards */
        out->en = 0;
    } else {
        out->e = p->end;
        out->en = p->end_len;
    }
    return true;
}

/* x < ivl's end (affine) */
static bool below_end(const struct ivl *v, const uint8_t *x, size_t xn)
{
    if (v->point) /* x < k"\0"  <=>  x <= k */
        return bytes_cmp(x, xn, v->b, v->bn) <= 0;
    if (is_inf(v->e, v->en))
        return true;
    return bytes_cmp(x, xn, v->e, v->en) < 0;
}

static bool type_allows(enum auth_perm_type have, enum auth_perm_type want)
{
    return have == AUTH_READWRITE || have == want;
}

/* Every grant of type of user u, visited until fn returns true. */
static bool any_grant(const struct authstore *as, const struct auth_user *u,
                      enum auth_perm_type type, bool (*fn)(const struct ivl *, void *), void *arg)
{
    for (size_t i = 0; i < u->n_roles; i++) {
        const struct auth_role *r = authstore_role(as, u->roles[i]);
        if (r == NULL)
            continue;
        for (size_t k = 0; k < r->n_perms; k++) {
            struct ivl v;
            if (type_allows(r->perms[k].type, type) && perm_ivl(&r->perms[k], &v) && fn(&v, arg))
                return true;
        }
    }
    return false;
}

struct cursor {
    const uint8_t *at; /* the first key not known to be covered */
    size_t n;
    uint8_t *best;     /* the furthest end of a grant holding at (owned) */
    size_t best_n;
    bool found, inf, nomem;
};

/* A grant that holds key c->at: remember the one reaching furthest. */
static bool reaches_further(const struct ivl *v, void *arg)
{
    struct cursor *c = arg;
    if (bytes_cmp(v->b, v->bn, c->at, c->n) > 0 || !below_end(v, c->at, c->n))
        return false;
    if (!v->point && is_inf(v->e, v->en)) {
        c->found = c->inf = true;
        return true;
    }
    size_t en = v->point ? v->bn + 1 : v->en; /* a key's grant ends at k"\0" */
    uint8_t *e = malloc(en);
    if (e == NULL) {
        c->nomem = true;
        return true;
    }
    memcpy(e, v->point ? v->b : v->e, v->point ? v->bn : v->en);
    if (v->point)
        e[v->bn] = 0;
    if (c->found && bytes_cmp(e, en, c->best, c->best_n) <= 0) {
        free(e);
        return false;
    }
    free(c->best);
    c->best = e;
    c->best_n = en;
    c->found = true;
    return false;
}

static bool holds_point(const struct ivl *v, void *arg)
{
    const struct ivl *q = arg;
    return bytes_cmp(v->b, v->bn, q->b, q->bn) <= 0 && below_end(v, q->b, q->bn);
}

/* Whether the user's grants of type cover [key, end) wholly (etcd's
 * interval tree Contains: the grants meeting the range join without a gap
 * from at or before key to at or past end). */
static bool covered(const struct authstore *as, const struct auth_user *u,
                    enum auth_perm_type type, const uint8_t *key, size_t key_len,
                    const uint8_t *end, size_t end_len)
{
    bool end_inf = end_len == 1 && end[0] == 0;
    uint8_t *at = dup_bytes(key, key_len); /* owned cursor */
    size_t n = key_len;
    bool ok = false;
    while (at != NULL) {
        if (!end_inf && bytes_cmp(at, n, end, end_len) >= 0) {
            ok = true;
            break;
        }
        struct cursor c = {.at = at, .n = n};
        any_grant(as, u, type, reaches_further, &c);
        if (c.nomem || !c.found || c.inf) {
            ok = !c.nomem && c.inf;
            free(c.best);
            break;
        }
        free(at);
        at = c.best; /* strictly past the old cursor: the loop ends */
        n = c.best_n;
    }
    free(at);
    return ok;
}

int authstore_check(const struct authstore *as, const char *user, uint64_t rev,
                    const uint8_t *key, size_t key_len, const uint8_t *end, size_t end_len,
                    enum auth_perm_type type)
{
    if (!as->enabled)
        return 0;
    if (rev == 0)
        return LSKV_EUSEREMPTY;
    if (rev < as->revision)
        return LSKV_EAUTHOLDREV;
    const struct auth_user *u = authstore_user(as, str_or_empty(user));
    if (u == NULL)
        return LSKV_EPERMDENIED;
    if (user_has_role(u, AUTH_ROOT, NULL))
        return 0;
    if (end_len == 0) {
        struct ivl q = {.b = key, .bn = key_len};
        return any_grant(as, u, type, holds_point, &q) ? 0 : LSKV_EPERMDENIED;
    }
    return covered(as, u, type, key, key_len, end, end_len) ? 0 : LSKV_EPERMDENIED;
}

static int check_ops(const struct authstore *as, const char *user, uint64_t rev,
                     Etcdserverpb__RequestOp *const *ops, size_t n);

int authstore_check_txn(const struct authstore *as, const char *user, uint64_t rev,
                        const Etcdserverpb__TxnRequest *t)
{
    int rv;
    for (size_t i = 0; i < t->n_compare; i++) {
        const Etcdserverpb__Compare *c = t->compare[i];
        if (c != NULL && (rv = authstore_check(as, user, rev, c->key.data, c->key.len,
                                               c->range_end.data, c->range_end.len,
                                               AUTH_READ)) != 0)
            return rv;
    }
    if ((rv = check_ops(as, user, rev, t->success, t->n_success)) != 0)
        return rv;
    return check_ops(as, user, rev, t->failure, t->n_failure);
}

static int check_ops(const struct authstore *as, const char *user, uint64_t rev,
                     Etcdserverpb__RequestOp *const *ops, size_t n)
{
    int rv = 0;
    for (size_t i = 0; i < n && rv == 0; i++) {
        const Etcdserverpb__RequestOp *op = ops[i];
        if (op == NULL)
            continue;
        switch (op->request_case) {
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
            if (op->request_range != NULL)
                rv = authstore_check(as, user, rev, op->request_range->key.data,
                                     op->request_range->key.len,
                                     op->request_range->range_end.data,
                                     op->request_range->range_end.len, AUTH_READ);
            break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT: {
            const Etcdserverpb__PutRequest *p = op->request_put;
            if (p == NULL)
                break;
            rv = authstore_check(as, user, rev, p->key.data, p->key.len, NULL, 0, AUTH_WRITE);
            if (rv == 0 && p->prev_kv)
                rv = authstore_check(as, user, rev, p->key.data, p->key.len, NULL, 0, AUTH_READ);
            break;
        }
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE: {
            const Etcdserverpb__DeleteRangeRequest *d = op->request_delete_range;
            if (d == NULL)
                break;
            if (d->prev_kv)
                rv = authstore_check(as, user, rev, d->key.data, d->key.len, d->range_end.data,
                                     d->range_end.len, AUTH_READ);
            if (rv == 0)
                rv = authstore_check(as, user, rev, d->key.data, d->key.len, d->range_end.data,
                                     d->range_end.len, AUTH_WRITE);
            break;
        }
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
            if (op->request_txn != NULL)
                rv = authstore_check_txn(as, user, rev, op->request_txn);
            break;
        default:
            break;
        }
    }
    return rv;
}

int authstore_check_admin(const struct authstore *as, const char *user)
{
    if (!as->enabled)
        return 0;
    if (user == NULL || user[0] == '\0')
        return LSKV_EUSEREMPTY;
    const struct auth_user *u = authstore_user(as, user);
    if (u == NULL)
        return LSKV_EUSERNOTFOUND;
    return user_has_role(u, AUTH_ROOT, NULL) ? 0 : LSKV_EPERMDENIED;
}

/* ---- snapshot ------------------------------------------------------------------ */

int authstore_encode(const struct authstore *as, uint8_t **out, size_t *out_len)
{
    Lskvauthpb__AuthState st = LSKVAUTHPB__AUTH_STATE__INIT;
    st.enabled = as->enabled;
    st.revision = as->revision;
    Authpb__User *users = calloc(as->n_users ? as->n_users : 1, sizeof *users);
    Authpb__User **up = calloc(as->n_users ? as->n_users : 1, sizeof *up);
    Authpb__UserAddOptions *opts = calloc(as->n_users ? as->n_users : 1, sizeof *opts);
    Authpb__Role *roles = calloc(as->n_roles ? as->n_roles : 1, sizeof *roles);
    Authpb__Role **rp = calloc(as->n_roles ? as->n_roles : 1, sizeof *rp);
    size_t n_perms = 0;
    for (size_t i = 0; i < as->n_roles; i++)
        n_perms += as->roles[i].n_perms;
    Authpb__Permission *perms = calloc(n_perms ? n_perms : 1, sizeof *perms);
    Authpb__Permission **pp = calloc(n_perms ? n_perms : 1, sizeof *pp);
    int rv = LSKV_ENOMEM;
    if (!users || !up || !opts || !roles || !rp || !perms || !pp)
        goto out;
    for (size_t i = 0; i < as->n_users; i++) {
        const struct auth_user *u = &as->users[i];
        authpb__user__init(&users[i]);
        authpb__user_add_options__init(&opts[i]);
        opts[i].no_password = u->no_password;
        users[i].name = (ProtobufCBinaryData){.data = (uint8_t *)u->name, .len = strlen(u->name)};
        users[i].password =
            (ProtobufCBinaryData){.data = (uint8_t *)u->hash, .len = strlen(u->hash)};
        users[i].roles = u->roles;
        users[i].n_roles = u->n_roles;
        users[i].options = &opts[i];
        up[i] = &users[i];
    }
    size_t k = 0;
    for (size_t i = 0; i < as->n_roles; i++) {
        const struct auth_role *r = &as->roles[i];
        authpb__role__init(&roles[i]);
        roles[i].name = (ProtobufCBinaryData){.data = (uint8_t *)r->name, .len = strlen(r->name)};
        roles[i].keypermission = pp + k;
        roles[i].n_keypermission = r->n_perms;
        for (size_t j = 0; j < r->n_perms; j++, k++) {
            authpb__permission__init(&perms[k]);
            perms[k].permtype = (Authpb__Permission__Type)r->perms[j].type;
            perms[k].key = (ProtobufCBinaryData){.data = r->perms[j].key, .len = r->perms[j].key_len};
            perms[k].range_end =
                (ProtobufCBinaryData){.data = r->perms[j].end, .len = r->perms[j].end_len};
            pp[k] = &perms[k];
        }
        rp[i] = &roles[i];
    }
    st.users = up;
    st.n_users = as->n_users;
    st.roles = rp;
    st.n_roles = as->n_roles;
    *out_len = lskvauthpb__auth_state__get_packed_size(&st);
    if ((*out = malloc(*out_len ? *out_len : 1)) == NULL)
        goto out;
    lskvauthpb__auth_state__pack(&st, *out);
    rv = 0;
out:
    free(users);
    free(up);
    free(opts);
    free(roles);
    free(rp);
    free(perms);
    free(pp);
    return rv;
}

/* A name from bytes: no NUL inside (names are strings). */
static char *name_of(ProtobufCBinaryData b)
{
    if (b.len == 0 || memchr(b.data, 0, b.len) != NULL)
        return NULL;
    return strndup((const char *)b.data, b.len);
}

static int decode_into(struct authstore *as, const Lskvauthpb__AuthState *st)
{
    if (st->revision == 0)
        return LSKV_ECORRUPT;
    as->enabled = st->enabled;
    as->revision = st->revision;
    as->enabled_at = st->revision;
    if (st->n_roles && (as->roles = calloc(st->n_roles, sizeof *as->roles)) == NULL)
        return LSKV_ENOMEM;
    for (size_t i = 0; i < st->n_roles; i++, as->n_roles++) {
        const Authpb__Role *src = st->roles[i];
        struct auth_role *r = &as->roles[i];
        if ((r->name = name_of(src->name)) == NULL)
            return LSKV_ECORRUPT;
        if (i > 0 && strcmp(as->roles[i - 1].name, r->name) >= 0) {
            as->n_roles++; /* freed by the caller */
            return LSKV_ECORRUPT;
        }
        if (src->n_keypermission &&
            (r->perms = calloc(src->n_keypermission, sizeof *r->perms)) == NULL) {
            as->n_roles++;
            return LSKV_ENOMEM;
        }
        for (size_t k = 0; k < src->n_keypermission; k++, r->n_perms++) {
            const Authpb__Permission *p = src->keypermission[k];
            if ((int)p->permtype < (int)AUTH_READ || (int)p->permtype > (int)AUTH_READWRITE) {
                as->n_roles++;
                return LSKV_ECORRUPT;
            }
            struct auth_perm *d = &r->perms[k];
            d->type = (enum auth_perm_type)p->permtype;
            d->key = dup_bytes(p->key.data, p->key.len);
            d->key_len = p->key.len;
            d->end = dup_bytes(p->range_end.data, p->range_end.len);
            d->end_len = p->range_end.len;
            if (d->key == NULL || d->end == NULL) {
                r->n_perms++;
                as->n_roles++;
                return LSKV_ENOMEM;
            }
        }
    }
    if (st->n_users && (as->users = calloc(st->n_users, sizeof *as->users)) == NULL)
        return LSKV_ENOMEM;
    for (size_t i = 0; i < st->n_users; i++) {
        const Authpb__User *src = st->users[i];
        struct auth_user *u = &as->users[i];
        as->n_users++;
        if ((u->name = name_of(src->name)) == NULL)
            return LSKV_ECORRUPT;
        if (i > 0 && strcmp(as->users[i - 1].name, u->name) >= 0)
            return LSKV_ECORRUPT;
        u->no_password = src->options != NULL && src->options->no_password;
        if (src->password.len && memchr(src->password.data, 0, src->password.len) != NULL)
            return LSKV_ECORRUPT;
        if ((u->hash = strndup(src->password.len ? (const char *)src->password.data : "",
                               src->password.len)) == NULL)
            return LSKV_ENOMEM;
        if (src->n_roles && (u->roles = calloc(src->n_roles, sizeof *u->roles)) == NULL)
            return LSKV_ENOMEM;
        for (size_t k = 0; k < src->n_roles; k++, u->n_roles++) {
            if ((u->roles[k] = strdup(src->roles[k])) == NULL)
                return LSKV_ENOMEM;
            if (k > 0 && strcmp(u->roles[k - 1], u->roles[k]) >= 0) {
                u->n_roles++;
                return LSKV_ECORRUPT;
            }
        }
    }
    return 0;
}

int authstore_decode(struct authstore *as, const uint8_t *buf, size_t len)
{
    authstore_clear(as);
    Lskvauthpb__AuthState *st = lskvauthpb__auth_state__unpack(NULL, len, buf);
    if (st == NULL)
        return LSKV_ECORRUPT;
    int rv = decode_into(as, st);
    lskvauthpb__auth_state__free_unpacked(st, NULL);
    if (rv != 0)
        authstore_clear(as);
    return rv;
}

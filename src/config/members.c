/* The low-level SHA-1 calls are deprecated in OpenSSL 3 but remain (as in
 * crypto/hash.c); EVP headers stay in crypto/ (check-layers). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "config/members.h"

#include <inttypes.h>
#include <openssl/sha.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/url.h"

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

uint64_t members_member_id(const char *const *peer_urls, size_t n, const char *token)
{
    const char *sorted[MEMBERS_MAX_URLS];
    if (n > MEMBERS_MAX_URLS)
        n = MEMBERS_MAX_URLS;
    memcpy(sorted, peer_urls, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_str);
    SHA_CTX c;
    uint8_t md[SHA_DIGEST_LENGTH];
    SHA1_Init(&c);
    for (size_t i = 0; i < n; i++)
        SHA1_Update(&c, sorted[i], strlen(sorted[i]));
    SHA1_Update(&c, token, strlen(token));
    SHA1_Final(md, &c);
    return be64(md);
}

uint64_t members_cluster_id(const uint64_t *ids, size_t n)
{
    uint64_t sorted[MEMBERS_MAX];
    uint8_t buf[8 * MEMBERS_MAX], md[SHA_DIGEST_LENGTH];
    if (n > MEMBERS_MAX)
        n = MEMBERS_MAX;
    memcpy(sorted, ids, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_u64);
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 8; k++)
            buf[8 * i + (size_t)k] = (uint8_t)(sorted[i] >> (56 - 8 * k));
    SHA1(buf, 8 * n, md);
    return be64(md);
}

static struct member *find_name(struct members *out, const char *name, size_t len)
{
    for (size_t i = 0; i < out->n; i++)
        if (strlen(out->m[i].name) == len && strncmp(out->m[i].name, name, len) == 0)
            return &out->m[i];
    return NULL;
}

/* etcd's NewURLs: http(s)://host:port, no path (not even "/"). */
static int check_peer_url(const char *all, const char *u, char *errmsg)
{
    struct url parsed;
    char why[LSKV_ERRMSG_SIZE];
    size_t len = strlen(u);
    if (url_parse(u, 0, &parsed, why) != 0) {
        errmsg_printf(errmsg, "--initial-cluster=%s: %s", all, why);
        return LSKV_EINVAL;
    }
    if (len > 0 && u[len - 1] == '/') {
        errmsg_printf(errmsg, "--initial-cluster=%s: URL must not contain a path: %s", all, u);
        return LSKV_EINVAL;
    }
    return 0;
}

static int add_entry(struct members *out, const char *all, const char *entry, size_t len,
                     char *errmsg)
{
    const char *eq = memchr(entry, '=', len);
    size_t name_len = eq ? (size_t)(eq - entry) : len;
    const char *url = eq ? eq + 1 : entry + len;
    size_t url_len = len - name_len - (eq ? 1 : 0);
    struct member *m = find_name(out, entry, name_len);
    if (m == NULL) {
        if (out->n == MEMBERS_MAX) {
            errmsg_printf(errmsg, "--initial-cluster=%s: at most %d members", all, MEMBERS_MAX);
            return LSKV_EINVAL;
        }
        m = &out->m[out->n];
        if ((m->name = strndup(entry, name_len)) == NULL)
            return LSKV_ENOMEM;
        out->n++;
    }
    if (m->n_peer_urls == MEMBERS_MAX_URLS) {
        errmsg_printf(errmsg, "--initial-cluster=%s: at most %d peer URLs per member", all,
                      MEMBERS_MAX_URLS);
        return LSKV_EINVAL;
    }
    char *u = strndup(url, url_len);
    if (u == NULL)
        return LSKV_ENOMEM;
    m->peer_urls[m->n_peer_urls++] = u;
    return check_peer_url(all, u, errmsg);
}

static int cmp_member(const void *a, const void *b)
{
    return cmp_u64(&((const struct member *)a)->id, &((const struct member *)b)->id);
}

int members_parse(const char *initial_cluster, const char *token, struct members *out,
                  char *errmsg)
{
    memset(out, 0, sizeof *out);
    /* etcd's types.parse: comma-separated entries, empty ones skipped. */
    for (const char *s = initial_cluster; *s != '\0';) {
        size_t len = strcspn(s, ",");
        if (len > 0) {
            int rv = add_entry(out, initial_cluster, s, len, errmsg);
            if (rv != 0)
                return rv;
        }
        s += len + (s[len] == ',');
    }
    if (out->n == 0) {
        errmsg_printf(errmsg, "--initial-cluster=%s: names no member", initial_cluster);
        return LSKV_EINVAL;
    }
    /* etcd's checkDuplicateURL, over every member's URLs */
    for (size_t i = 0; i < out->n; i++)
        for (size_t a = 0; a < out->m[i].n_peer_urls; a++)
            for (size_t j = i; j < out->n; j++)
                for (size_t b = j == i ? a + 1 : 0; b < out->m[j].n_peer_urls; b++)
                    if (strcmp(out->m[i].peer_urls[a], out->m[j].peer_urls[b]) == 0) {
                        errmsg_printf(errmsg, "initial cluster %s has duplicate url",
                                      initial_cluster);
                        return LSKV_EINVAL;
                    }
    uint64_t ids[MEMBERS_MAX];
    for (size_t i = 0; i < out->n; i++) {
        struct member *m = &out->m[i];
        qsort(m->peer_urls, m->n_peer_urls, sizeof *m->peer_urls, cmp_str);
        m->id = members_member_id((const char *const *)m->peer_urls, m->n_peer_urls, token);
        for (size_t j = 0; j < i; j++)
            if (out->m[j].id == m->id) {
                errmsg_printf(errmsg, "--initial-cluster=%s: member exists with identical ID "
                              "%016" PRIx64, initial_cluster, m->id);
                return LSKV_EINVAL;
            }
        if (m->id == 0) { /* raft.None */
            errmsg_printf(errmsg, "--initial-cluster=%s: cannot use 0 as member id",
                          initial_cluster);
            return LSKV_EINVAL;
        }
        ids[i] = m->id;
    }
    qsort(out->m, out->n, sizeof *out->m, cmp_member);
    out->cluster_id = members_cluster_id(ids, out->n);
    return 0;
}

/* Go's %q of a []string: ["a" "b"] */
static void quote_list(char *out, size_t size, const char *const *urls, size_t n)
{
    size_t k = 0;
    k += (size_t)snprintf(out, size, "[");
    for (size_t i = 0; i < n && k < size; i++)
        k += (size_t)snprintf(out + k, size - k, "%s\"%s\"", i ? " " : "", urls[i]);
    if (k < size)
        snprintf(out + k, size - k, "]");
}

static bool contains(char *const *list, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0)
            return true;
    return false;
}

static void join(char *out, size_t size, const char *prefix, char *const *urls, size_t n)
{
    size_t k = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && k < size; i++)
        k += (size_t)snprintf(out + k, size - k, "%s%s%s", i ? "," : "", prefix, urls[i]);
}

/* URLStringsEqual after the string compare failed: both lists resolved,
 * sorted, equal. */
static bool resolved_equal(char *const *a, char *const *b, size_t n, members_resolve_fn resolve)
{
    char ra[MEMBERS_MAX_URLS][300], rb[MEMBERS_MAX_URLS][300];
    const char *pa[MEMBERS_MAX_URLS], *pb[MEMBERS_MAX_URLS];
    for (size_t i = 0; i < n; i++) {
        if (resolve(a[i], ra[i], sizeof ra[i]) != 0 || resolve(b[i], rb[i], sizeof rb[i]) != 0)
            return false;
        pa[i] = ra[i];
        pb[i] = rb[i];
    }
    qsort(pa, n, sizeof *pa, cmp_str);
    qsort(pb, n, sizeof *pb, cmp_str);
    for (size_t i = 0; i < n; i++)
        if (strcmp(pa[i], pb[i]) != 0)
            return false;
    return true;
}

int members_find_local(struct members *out, const char *name, char *const *advertised,
                       size_t n_advertised, members_resolve_fn resolve, char *errmsg)
{
    struct member *m = find_name(out, name, strlen(name));
    if (m == NULL) {
        errmsg_printf(errmsg, "couldn't find local name \"%s\" in the initial cluster "
                      "configuration", name);
        return LSKV_EINVAL;
    }
    out->self = (size_t)(m - out->m);
    char *ap[MEMBERS_MAX_URLS];
    size_t n = n_advertised < MEMBERS_MAX_URLS ? n_advertised : MEMBERS_MAX_URLS;
    memcpy(ap, advertised, n * sizeof *ap);
    qsort(ap, n, sizeof *ap, cmp_str);
    bool equal = n == m->n_peer_urls;
    for (size_t i = 0; equal && i < n; i++)
        equal = strcmp(ap[i], m->peer_urls[i]) == 0;
    if (equal || (n == m->n_peer_urls && resolve != NULL &&
                  resolved_equal(ap, m->peer_urls, n, resolve)))
        return 0;
    /* etcd's advertiseMatchesCluster texts, with URLStringsEqual's reason */
    char why[1600], a[700], b[700], missing[700], prefix[300];
    if (n != m->n_peer_urls) {
        quote_list(a, sizeof a, (const char *const *)ap, n);
        quote_list(b, sizeof b, (const char *const *)m->peer_urls, m->n_peer_urls);
        snprintf(why, sizeof why, "len(%s) != len(%s)", a, b);
    } else {
        size_t i = 0;
        while (strcmp(ap[i], m->peer_urls[i]) == 0)
            i++;
        snprintf(why, sizeof why, "resolved urls: \"%s\" != \"%s\"", ap[i], m->peer_urls[i]);
    }
    char *gone[MEMBERS_MAX_URLS];
    size_t n_gone = 0;
    for (size_t i = 0; i < m->n_peer_urls; i++)
        if (!contains(ap, n, m->peer_urls[i]))
            gone[n_gone++] = m->peer_urls[i];
    join(a, sizeof a, "", ap, n);
    if (n_gone > 0) {
        snprintf(prefix, sizeof prefix, "%s=", name);
        join(missing, sizeof missing, prefix, gone, n_gone);
        errmsg_printf(errmsg, "--initial-cluster has %s but missing from "
                      "--initial-advertise-peer-urls=%s (%s)", missing, a, why);
        return LSKV_EINVAL;
    }
    for (size_t i = 0; i < n; i++)
        if (!contains(m->peer_urls, m->n_peer_urls, ap[i]))
            gone[n_gone++] = ap[i];
    join(missing, sizeof missing, "", gone, n_gone);
    snprintf(prefix, sizeof prefix, "%s=", name);
    join(b, sizeof b, prefix, ap, n);
    errmsg_printf(errmsg, "--initial-advertise-peer-urls has %s but missing from "
                  "--initial-cluster=%s", missing, b);
    return LSKV_EINVAL;
}

int members_reassign(struct members *m, uint64_t member_id, uint64_t cluster_id,
                     char *errmsg)
{
    if (member_id == 0 || cluster_id == 0) {
        errmsg_printf(errmsg, "member id %016" PRIx64 " or cluster id %016" PRIx64 " is 0",
                      member_id, cluster_id);
        return LSKV_EINVAL;
    }
    for (size_t i = 0; i < m->n; i++)
        if (i != m->self && m->m[i].id == member_id) {
            errmsg_printf(errmsg, "member id %016" PRIx64 " is member %s's in --initial-cluster",
                          member_id, m->m[i].name);
            return LSKV_EINVAL;
        }
    m->m[m->self].id = member_id;
    m->cluster_id = cluster_id;
    qsort(m->m, m->n, sizeof *m->m, cmp_member);
    for (size_t i = 0; i < m->n; i++)
        if (m->m[i].id == member_id)
            m->self = i;
    return 0;
}

void members_free(struct members *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->m[i].name);
        for (size_t k = 0; k < m->m[i].n_peer_urls; k++)
            free(m->m[i].peer_urls[k]);
    }
    memset(m, 0, sizeof *m);
}

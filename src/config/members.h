/* The bootstrap membership, as etcd 3.4 derives it from --initial-cluster,
 * --initial-cluster-token, --name and --initial-advertise-peer-urls
 * (etcdserver/api/membership: newMember, genID; etcdserver/config.go):
 *
 *   member id  = first 8 bytes, big endian, of
 *                SHA-1(the member's peer URLs sorted and concatenated + token)
 *   cluster id = first 8 bytes, big endian, of
 *                SHA-1(the member ids sorted, each as 8 bytes big endian)
 *
 * so `etcdctl member list` shows the ids etcd would show for the same flags.
 * --initial-cluster is "name=peer-url,..."; a name may repeat to give a
 * member several peer URLs. Pure functions, no I/O. */
#ifndef LSKV_CONFIG_MEMBERS_H
#define LSKV_CONFIG_MEMBERS_H

#include <stddef.h>
#include <stdint.h>

#define MEMBERS_MAX 32     /* members in --initial-cluster */
#define MEMBERS_MAX_URLS 8 /* peer URLs of one member */
#define MEMBERS_DEFAULT_TOKEN "etcd-cluster"

struct member {
    char *name;
    char *peer_urls[MEMBERS_MAX_URLS]; /* sorted (strcmp), as etcd keeps them */
    size_t n_peer_urls;
    uint64_t id;
};

struct members {
    struct member m[MEMBERS_MAX]; /* sorted by id, as `member list` lists them */
    size_t n;
    size_t self;                  /* index of this member (members_find_local) */
    uint64_t cluster_id;
};

/* etcd's member id of peer URLs (in any order) and a cluster token. */
uint64_t members_member_id(const char *const *peer_urls, size_t n, const char *token);
/* etcd's cluster id of member ids (in any order). */
uint64_t members_cluster_id(const uint64_t *ids, size_t n);

/* Parses initial_cluster into *out (zeroed first; free with members_free
 * also on error) and derives every id. Each URL must be http:// or
 * https://host:port with nothing after the port (etcd's NewURLs).
 * Errors: LSKV_EINVAL (malformed entry, bad URL, duplicate URL, two
 * members with one id, too many), LSKV_ENOMEM; errmsg says which. */
int members_parse(const char *initial_cluster, const char *token, struct members *out,
                  char *errmsg);

/* Maps a URL to the form compared when the strings differ (etcd resolves
 * host names: "http://localhost:1" -> "http://127.0.0.1:1"). Returns 0, or
 * non-zero when it cannot (the URLs then differ). */
typedef int (*members_resolve_fn)(const char *url, char *out, size_t size);

/* Finds the member named name and checks that its peer URLs are advertised
 * (as sets: equal strings, or, with resolve not NULL, equal once every URL
 * of both lists is resolved, as etcd's URLStringsEqual), setting out->self.
 * Errors: LSKV_EINVAL with etcd's texts ("couldn't find local name ...",
 * "--initial-cluster has ... but missing from --initial-advertise-peer-urls=
 * ...", "--initial-advertise-peer-urls has ... but missing from
 * --initial-cluster=..."). */
int members_find_local(struct members *out, const char *name, char *const *advertised,
                       size_t n_advertised, members_resolve_fn resolve, char *errmsg);

/* A member of an existing cluster (joined with --initial-cluster-state
 * existing, or restarting from a data dir that holds ids): its own id and
 * the cluster id are the ones the cluster gave, not the ones the flags
 * derive. Sets them, keeps m sorted by id and self on this member.
 * Errors: LSKV_EINVAL (an id 0, or another listed member has member_id). */
int members_reassign(struct members *m, uint64_t member_id, uint64_t cluster_id,
                     char *errmsg);

void members_free(struct members *m);

#endif

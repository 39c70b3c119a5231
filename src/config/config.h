/* lskvd's configuration: one table row per flag (etcd's names where the
 * meaning is the same) drives parsing, --help, validation and the config dump
 * in the log. Bad configuration stops the process before it listens, naming
 * the flag, the value and the rule. */
#ifndef LSKV_CONFIG_CONFIG_H
#define LSKV_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config/members.h"

#define CONFIG_MAX_URLS 8

struct config {
    char *name;                  /* --name: human-readable member name */
    char *data_dir;              /* --data-dir */
    char *listen_client_urls[CONFIG_MAX_URLS];
    size_t n_listen_client_urls; /* --listen-client-urls, comma separated */
    char *advertise_client_urls[CONFIG_MAX_URLS];
    size_t n_advertise_client_urls;
    char *listen_peer_urls[CONFIG_MAX_URLS];
    size_t n_listen_peer_urls;
    char *initial_advertise_peer_urls[CONFIG_MAX_URLS];
    size_t n_initial_advertise_peer_urls;
    char *initial_cluster;       /* name=url,...; default: --name with each advertised peer URL */
    char *initial_cluster_token; /* --initial-cluster-token: etcd's "etcd-cluster" */
    char *initial_cluster_state; /* new | existing */
    struct members members;      /* parsed --initial-cluster with etcd's ids (members.h);
                                    members.m[members.self] is this member */
    int64_t heartbeat_interval_ms; /* --heartbeat-interval: raft heartbeat (etcd's 100) */
    int64_t election_timeout_ms;   /* --election-timeout: raft election (etcd's 1000) */
    bool strict_reconfig_check;  /* --strict-reconfig-check (etcd's true) */
    bool enable_v2;              /* --enable-v2: only false (no v2 API) */
    bool debug;                  /* --debug: --log-level=debug (etcd 3.4) */
    char *logger;                /* --logger: zap | capnslog (one lskv format either way) */
    char *log_outputs;           /* --log-outputs: default | stderr | stdout | a file (zap) */
    char *listen_metrics_urls[CONFIG_MAX_URLS];
    size_t n_listen_metrics_urls; /* --listen-metrics-urls: /metrics and /health */
    bool auto_tls;               /* --auto-tls: self-signed client cert when https lacks one */
    /* Peer TLS (the peer network uses them; the file ones are refused
     * until it does). lskv members always use mutual TLS with their node
     * certificates, so --peer-auto-tls is accepted. */
    bool peer_auto_tls;
    char *peer_cert_file, *peer_key_file, *peer_trusted_ca_file;
    bool peer_client_cert_auth;
    char *peer_cert_allowed_cn;       /* --peer-cert-allowed-cn */
    char *peer_cert_allowed_hostname; /* --peer-cert-allowed-hostname */
    bool experimental_initial_corrupt_check; /* lskv always checks at start */
    char *cert_file;             /* --cert-file: client TLS certificate (PEM) */
    char *key_file;              /* --key-file */
    char *trusted_ca_file;       /* --trusted-ca-file: CA for client certificates */
    char *client_crl_file;       /* --client-crl-file: revoked client certificates */
    bool client_cert_auth;       /* --client-cert-auth: require a client certificate */
    char *client_cert_allowed_hostname; /* --client-cert-allowed-hostname */
    char *cipher_suites;         /* --cipher-suites: etcd's (Go) names, comma separated */
    int64_t max_request_bytes;   /* --max-request-bytes: etcd's 1.5 MiB */
    int64_t max_buffered_request_bytes; /* --max-buffered-request-bytes: server-wide */
    int64_t max_txn_ops;         /* --max-txn-ops */
    int64_t max_concurrent_streams; /* --max-concurrent-streams (see config_max_streams) */
    int64_t bcrypt_cost;         /* --bcrypt-cost: auth password hashing */
    char *auth_token;            /* --auth-token: "simple" or "jwt,k=v,..." */
    char *corrupt_check_time;    /* --experimental-corrupt-check-time (a Go duration) */
    int64_t corrupt_check_ms;    /* ... in ms (0: no check) */
    int64_t auth_token_ttl;      /* --auth-token-ttl: seconds a simple token lives idle */
    int64_t snapshot_count;      /* --snapshot-count: raft entries between snapshots */
    int64_t cache_size_bytes;    /* --cache-size: trusted value cache bound */
    int64_t quota_backend_bytes; /* --quota-backend-bytes: 0 = 2 GiB, < 0 = none */
    char *log_level;             /* --log-level */
    int64_t sig_tx_interval;     /* --sig-tx-interval: entries between ledger signatures */
    int64_t sig_ms_interval;     /* --sig-ms-interval: ms between ledger signatures */
    int64_t ledger_chunk_bytes;  /* --ledger-chunk-bytes: seal a chunk at this size */
    int64_t key_epoch_size;      /* --key-epoch-size: raft indexes / revisions per data key */
    char *attestation_policy;    /* --attestation-policy: JSON file, NULL = default */
};

/* Fills defaults, parses argv, then takes ETCD_<FLAG> environment variables
 * as etcd 3.4 does (pkg/flags): a non-empty ETCD_FOO_BAR sets --foo-bar
 * unless the flag is on the command line, where a variable that shadows it
 * is an error ("conflicting environment variable ..."); unknown ETCD_
 * variables are logged as warnings. Then derives the membership (members.h).
 * On --help prints usage to out and sets *exit_now. Errors: LSKV_EINVAL with
 * errmsg naming flag (or variable), value and rule; an etcd flag lskvd does
 * not implement is refused, never ignored. */
int config_parse(struct config *c, int argc, char **argv, FILE *out, bool *exit_now,
                 char *errmsg);
void config_free(struct config *c);
/* --auto-tls as etcd's ClientSelfCert: when set and --cert-file/--key-file
 * are not both given, makes (or reuses) the self-signed pair in
 * <data-dir>/fixtures/client for every --listen-client-urls host
 * (identity/selfcert.h) and sets cert_file and key_file to it; else does
 * nothing. Call once the data dir is open. *made says a new pair was
 * written. Errors: those of selfcert_ensure, LSKV_ENOMEM. */
int config_auto_tls(struct config *c, bool *made, char *errmsg);

/* --auth-token taken apart as etcd's decomposeOpts: the type and the JWT
 * options (pointers into buf; NULL when absent). */
struct config_token {
    bool jwt;
    const char *pub_key, *priv_key, *sign_method, *ttl;
    int64_t ttl_ms; /* ttl as Go's duration (default 5m) */
    char buf[1024];
};
/* Errors: LSKV_EINVAL (another type, a malformed or repeated option, a bad
 * ttl), errmsg says which. */
int config_auth_token(const struct config *c, struct config_token *t, char *errmsg);

/* Sends the log (stderr) where --log-outputs says: nothing for default and
 * stderr, stdout, or a file opened for appending (dup2 onto stderr).
 * Errors: negated errno with errmsg naming the file. */
int config_open_log_output(const struct config *c, char *errmsg);

/* One "flag=value" log line per flag, through the given printer. */
void config_dump(const struct config *c, void (*print)(const char *line));

/* Streams per client connection lskvd allows at most (net/h2.h's bound). */
#define CONFIG_MAX_STREAMS 4096
/* --max-concurrent-streams in effect: etcd's default (no limit) is lskvd's
 * bound. */
static inline uint32_t config_max_streams(const struct config *c)
{
    return c->max_concurrent_streams > CONFIG_MAX_STREAMS ? CONFIG_MAX_STREAMS
                                                          : (uint32_t)c->max_concurrent_streams;
}

#endif

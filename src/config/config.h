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
    char *initial_cluster;       /* name=url,... */
    char *initial_cluster_state; /* new | existing */
    char *cert_file;             /* --cert-file: client TLS certificate (PEM) */
    char *key_file;              /* --key-file */
    char *trusted_ca_file;       /* --trusted-ca-file: CA for client certificates */
    bool client_cert_auth;       /* --client-cert-auth: require a client certificate */
    char *cipher_suites;         /* --cipher-suites: etcd's (Go) names, comma separated */
    int64_t max_request_bytes;   /* --max-request-bytes: etcd's 1.5 MiB */
    int64_t max_buffered_request_bytes; /* --max-buffered-request-bytes: server-wide */
    int64_t max_txn_ops;         /* --max-txn-ops */
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

/* Fills defaults, then parses argv. On --help prints usage to out and sets
 * *exit_now. Errors: LSKV_EINVAL with errmsg naming flag, value and rule. */
int config_parse(struct config *c, int argc, char **argv, FILE *out, bool *exit_now,
                 char *errmsg);
void config_free(struct config *c);
/* One "flag=value" log line per flag, through the given printer. */
void config_dump(const struct config *c, void (*print)(const char *line));

#endif

#include "config/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/url.h"
#include "common/log.h"
#include "identity/selfcert.h"

/* OPT_REFUSED: an etcd flag lskvd does not implement; help says why. Its
 * def, when not NULL, is the one value accepted (etcd's default, e.g. a
 * feature left off). */
enum opt_type { OPT_STRING, OPT_URLS, OPT_INT, OPT_BOOL, OPT_REFUSED };

struct opt {
    const char *name;
    enum opt_type type;
    const char *def;   /* default, as text */
    int64_t min, max;  /* OPT_INT bounds */
    size_t offset;     /* field in struct config */
    size_t count_offset; /* OPT_URLS: the count field */
    const char *help;
};

#define F(field) offsetof(struct config, field)
#define MIB (1024 * 1024)

static const struct opt opts[] = {
    {"name", OPT_STRING, "default", 0, 0, F(name), 0, "Human-readable name for this member."},
    {"data-dir", OPT_STRING, NULL, 0, 0, F(data_dir), 0,
     "Path to the data directory (default: ./<name>.lskv)."},
    {"listen-client-urls", OPT_URLS, "http://localhost:2379", 0, 0, F(listen_client_urls),
     F(n_listen_client_urls), "List of URLs to listen on for client traffic (http:// or https://)."},
    {"advertise-client-urls", OPT_URLS, "http://localhost:2379", 0, 0,
     F(advertise_client_urls), F(n_advertise_client_urls),
     "List of this member's client URLs to advertise to the public."},
    {"listen-peer-urls", OPT_URLS, "http://localhost:2380", 0, 0, F(listen_peer_urls),
     F(n_listen_peer_urls),
     "List of URLs for peer traffic (checked; a single member has no peers, so nothing "
     "listens yet)."},
    {"initial-advertise-peer-urls", OPT_URLS, "http://localhost:2380", 0, 0,
     F(initial_advertise_peer_urls), F(n_initial_advertise_peer_urls),
     "List of this member's peer URLs to advertise to the rest of the cluster."},
    {"initial-cluster", OPT_STRING, NULL, 0, 0, F(initial_cluster), 0,
     "Initial cluster configuration for bootstrapping (name=peer-url,...; default: --name "
     "with each --initial-advertise-peer-urls); only this member yet (single-member "
     "clusters)."},
    {"initial-cluster-token", OPT_STRING, MEMBERS_DEFAULT_TOKEN, 0, 0,
     F(initial_cluster_token), 0,
     "Initial cluster token for the etcd cluster during bootstrap (member and cluster ids "
     "derive from it as etcd's)."},
    {"initial-cluster-state", OPT_STRING, "new", 0, 0, F(initial_cluster_state), 0,
     "Initial cluster state ('new' or 'existing': a member that MemberAdd added joins a "
     "running cluster)."},
    {"heartbeat-interval", OPT_INT, "100", 1, INT64_MAX, F(heartbeat_interval_ms), 0,
     "Time (in milliseconds) of a heartbeat interval."},
    {"election-timeout", OPT_INT, "1000", 1, INT64_MAX, F(election_timeout_ms), 0,
     "Time (in milliseconds) for an election to timeout (the minimum lease TTL is "
     "ceil(1.5 x this) seconds, as etcd's)."},
    {"strict-reconfig-check", OPT_BOOL, "true", 0, 0, F(strict_reconfig_check), 0,
     "Reject reconfiguration requests that would cause quorum loss."},
    {"enable-v2", OPT_BOOL, "false", 0, 0, F(enable_v2), 0,
     "Accept etcd V2 client requests: only false (lskv has no v2 API)."},
    {"listen-metrics-urls", OPT_URLS, NULL, 0, 0, F(listen_metrics_urls),
     F(n_listen_metrics_urls),
     "List of URLs to listen on for the metrics and health endpoints (/metrics, /health)."},
    {"cert-file", OPT_STRING, NULL, 0, 0, F(cert_file), 0,
     "Path to the client server TLS cert file."},
    {"key-file", OPT_STRING, NULL, 0, 0, F(key_file), 0,
     "Path to the client server TLS key file."},
    {"trusted-ca-file", OPT_STRING, NULL, 0, 0, F(trusted_ca_file), 0,
     "Path to the client server TLS trusted CA cert file: clients must present a "
     "certificate it signed (as etcd 3.4, even without --client-cert-auth)."},
    {"client-cert-auth", OPT_BOOL, "false", 0, 0, F(client_cert_auth), 0,
     "Enable client cert authentication: a client without a certificate signed by "
     "--trusted-ca-file is refused at the TLS handshake."},
    {"auto-tls", OPT_BOOL, "false", 0, 0, F(auto_tls), 0,
     "Client TLS using generated certificates (in <data-dir>/fixtures/client), for https:// "
     "client URLs without --cert-file/--key-file."},
    {"peer-auto-tls", OPT_BOOL, "false", 0, 0, F(peer_auto_tls), 0,
     "Peer TLS using generated certificates: accepted, lskv members always use mutual TLS "
     "with their node certificates."},
    {"peer-cert-file", OPT_STRING, NULL, 0, 0, F(peer_cert_file), 0,
     "Path to the peer server TLS cert file: the certificate members present in the TLS "
     "handshake; each member's identity is then proven inside the session by its node "
     "certificate (endorsed by the service) signing the TLS exporter value."},
    {"peer-key-file", OPT_STRING, NULL, 0, 0, F(peer_key_file), 0,
     "Path to the peer server TLS key file."},
    {"peer-trusted-ca-file", OPT_STRING, NULL, 0, 0, F(peer_trusted_ca_file), 0,
     "Path to the peer server TLS trusted CA file: peers' handshake certificates must chain "
     "to it."},
    {"peer-client-cert-auth", OPT_BOOL, "false", 0, 0, F(peer_client_cert_auth), 0,
     "Enable peer client cert authentication (with --peer-trusted-ca-file); members also "
     "always prove their node certificates."},
    {"peer-cert-allowed-cn", OPT_STRING, NULL, 0, 0, F(peer_cert_allowed_cn), 0,
     "Allowed CN for inter peer authentication: a member's handshake certificate must have "
     "it (both directions, as etcd; with --peer-cert-file)."},
    {"peer-cert-allowed-hostname", OPT_STRING, NULL, 0, 0, F(peer_cert_allowed_hostname), 0,
     "Allowed TLS hostname for inter peer authentication: a member's handshake certificate "
     "must be valid for it (both directions, as etcd; with --peer-cert-file)."},
    {"client-cert-allowed-hostname", OPT_STRING, NULL, 0, 0, F(client_cert_allowed_hostname),
     0, "Allowed TLS hostname for client cert authentication (with --client-cert-auth)."},
    {"cipher-suites", OPT_STRING, NULL, 0, 0, F(cipher_suites), 0,
     "Comma-separated list of supported TLS 1.2 cipher suites, in etcd's names (empty: "
     "OpenSSL's defaults); TLS 1.3's are not configurable, as in etcd."},
    {"max-request-bytes", OPT_INT, "1572864", 1, 64 * MIB, F(max_request_bytes), 0,
     "Maximum client request size in bytes the server will accept."},
    {"max-buffered-request-bytes", OPT_INT, "268435456", 1 * MIB, INT64_MAX,
     F(max_buffered_request_bytes), 0,
     "Server-wide bound on request bytes held at once: partly received requests, and "
     "writes proposed but not yet applied, each up to this; a request beyond it gets "
     "'etcdserver: too many requests'; and watch output clients are slow to read, beyond "
     "which watchers catch up from history (lskv)."},
    {"max-concurrent-streams", OPT_INT, "4294967295", 1, 4294967295LL,
     F(max_concurrent_streams), 0,
     "Maximum concurrent streams that each client can open at a time (and JSON gateway "
     "calls at a time, as etcd's gateway is one client connection); lskvd allows at most "
     "4096 per connection, which etcd's default (4294967295, no limit) means."},
    {"max-txn-ops", OPT_INT, "128", 1, 4096 /* KV_TXN_OPS_LIMIT */, F(max_txn_ops), 0,
     "Maximum number of operations permitted in a transaction (at most 4096; txns nest "
     "at most 128 levels deep, lskv)."},
    {"snapshot-count", OPT_INT, "100000", 8, 100000000, F(snapshot_count), 0,
     "Number of committed transactions to trigger a snapshot."},
    {"quota-backend-bytes", OPT_INT, "0", INT64_MIN, INT64_MAX, F(quota_backend_bytes), 0,
     "Raise the NOSPACE alarm when the engine's disk bytes (Status dbSize) reach this "
     "(0 = 2 GiB, < 0 = no quota); free disk space is guarded in any case."},
    {"cache-size", OPT_INT, "67108864", 0, INT64_MAX, F(cache_size_bytes), 0,
     "Bytes of decrypted values the trusted core may cache (lskv)."},
    {"log-level", OPT_STRING, "info", 0, 0, F(log_level), 0,
     "Log level: debug, info, warn, error, panic, or fatal."},
    {"debug", OPT_BOOL, "false", 0, 0, F(debug), 0,
     "Enable debug-level logging (etcd 3.4's, deprecated there: --log-level=debug)."},
    {"logger", OPT_STRING, "capnslog", 0, 0, F(logger), 0,
     "Specify 'zap' or 'capnslog' (accepted as etcd 3.4 does; lskvd writes one line "
     "format with either)."},
    {"log-outputs", OPT_STRING, "default", 0, 0, F(log_outputs), 0,
     "Where the log goes: default, stderr, stdout, or (with --logger zap) a file path."},
    {"experimental-initial-corrupt-check", OPT_BOOL, "false", 0, 0,
     F(experimental_initial_corrupt_check), 0,
     "Check data corruption before serving: lskvd always verifies its ledger and raft "
     "log at start, so true and false both mean on."},
    {"sig-tx-interval", OPT_INT, "5000", 1, 100000000, F(sig_tx_interval), 0,
     "Ledger entries between signatures (lskv; 1 = sign after every entry)."},
    {"sig-ms-interval", OPT_INT, "100", 1, 3600000, F(sig_ms_interval), 0,
     "Milliseconds between ledger signatures while unsigned entries exist (lskv)."},
    {"key-epoch-size", OPT_INT, "16777216", 1, INT64_MAX, F(key_epoch_size), 0,
     "Raft entries (and revisions) sealed under one derived data key before the next "
     "key epoch (lskv)."},
    {"ledger-chunk-bytes", OPT_INT, "5242880", 4096, 1024 * MIB, F(ledger_chunk_bytes), 0,
     "Seal a ledger chunk at the first signature past this size (lskv)."},
    {"attestation-policy", OPT_STRING, NULL, 0, 0, F(attestation_policy), 0,
     "JSON file of the attestation reports members accept from joining members: "
     "{\"accept_virtual\": bool, \"measurements\": [\"<64 hex>\", ...]} (default: virtual "
     "reports of this very binary) (lskv)."},
    /* etcd 3.4 flags tools pass that lskvd does not implement: refused by
     * name with the reason, rather than ignored. */
    {"force-new-cluster", OPT_REFUSED, "false", 0, 0, 0, 0,
     "rewriting the membership of an existing data dir is not supported"},
    {"discovery", OPT_REFUSED, NULL, 0, 0, 0, 0, "discovery is not supported"},
    {"discovery-srv", OPT_REFUSED, NULL, 0, 0, 0, 0, "discovery is not supported"},
    {"discovery-fallback", OPT_REFUSED, NULL, 0, 0, 0, 0, "discovery is not supported"},
    {"discovery-proxy", OPT_REFUSED, NULL, 0, 0, 0, 0, "discovery is not supported"},
    {"proxy", OPT_REFUSED, "off", 0, 0, 0, 0, "the v2 proxy is not supported"},
    {"client-crl-file", OPT_STRING, NULL, 0, 0, F(client_crl_file), 0,
     "Path to the client certificate revocation list file (PEM or DER): a client whose "
     "certificate's serial it lists is refused at the handshake; read at each handshake."},
    {"peer-crl-file", OPT_REFUSED, NULL, 0, 0, 0, 0,
     "certificate revocation lists are not supported yet"},
    {"auth-token", OPT_STRING, "simple", 0, 0, F(auth_token), 0,
     "Specify auth token specific options: 'simple', or 'jwt,pub-key=FILE,priv-key=FILE,"
     "sign-method=RS256,ttl=5m' (etcd's)."},
    {"auto-compaction-retention", OPT_REFUSED, "0", 0, 0, 0, 0,
     "automatic compaction is not supported yet (compact with etcdctl)"},
    {"auto-compaction-mode", OPT_REFUSED, "periodic", 0, 0, 0, 0,
     "automatic compaction is not supported yet"},
    {"wal-dir", OPT_REFUSED, NULL, 0, 0, 0, 0,
     "the raft log lives in <data-dir>/raft (a separate directory is not supported)"},
    {"enable-pprof", OPT_REFUSED, "false", 0, 0, 0, 0, "there is no Go profiler"},
    {"enable-grpc-gateway", OPT_REFUSED, "true", 0, 0, 0, 0,
     "the JSON gateway is always on, as etcd's default"},
    {"metrics", OPT_REFUSED, "basic", 0, 0, 0, 0, "only etcd's basic metrics are served"},
    {"experimental-enable-lease-checkpoint", OPT_REFUSED, "false", 0, 0, 0, 0,
     "lease checkpoints are not supported yet"},
    {"experimental-watch-progress-notify-interval", OPT_REFUSED, NULL, 0, 0, 0, 0,
     "periodic watch progress notifications are not supported yet"},
    {"experimental-compaction-batch-limit", OPT_REFUSED, NULL, 0, 0, 0, 0,
     "compaction is not batched in lskv"},
    {"experimental-corrupt-check-time", OPT_STRING, "0s", 0, 0, F(corrupt_check_time), 0,
     "Duration of time between cluster corruption check passes (0s: none): each follower "
     "compares its HashKV with the leader's."},
    {"experimental-backend-bbolt-freelist-type", OPT_REFUSED, NULL, 0, 0, 0, 0,
     "lskv has no bbolt backend"},
    {"experimental-enable-v2v3", OPT_REFUSED, NULL, 0, 0, 0, 0, "lskv has no v2 API"},
    {"experimental-enable-lease-checkpoint-persist", OPT_REFUSED, "false", 0, 0, 0, 0,
     "lease checkpoints are not supported yet"},
    {"experimental-warning-apply-duration", OPT_REFUSED, NULL, 0, 0, 0, 0,
     "the slow-apply warning is not configurable"},
    {"experimental-peer-skip-client-san-verification", OPT_REFUSED, "false", 0, 0, 0, 0,
     "peers are checked by their node certificates"},
    {"config-file", OPT_REFUSED, NULL, 0, 0, 0, 0,
     "configuration files are not supported (flags or ETCD_* variables)"},
    {"max-snapshots", OPT_REFUSED, "5", 0, 0, 0, 0,
     "libraft keeps the last two snapshots (not configurable)"},
    {"max-wals", OPT_REFUSED, "5", 0, 0, 0, 0,
     "libraft removes raft log segments itself (not configurable)"},
    {"initial-election-tick-advance", OPT_REFUSED, "true", 0, 0, 0, 0,
     "a single member elects itself at once"},
    {"pre-vote", OPT_REFUSED, "false", 0, 0, 0, 0, "raft pre-vote is not configurable yet"},
    {"backend-batch-interval", OPT_REFUSED, NULL, 0, 0, 0, 0, "lskv has no bbolt backend"},
    {"backend-batch-limit", OPT_REFUSED, NULL, 0, 0, 0, 0, "lskv has no bbolt backend"},
    {"grpc-keepalive-min-time", OPT_REFUSED, NULL, 0, 0, 0, 0,
     "gRPC keepalive enforcement is not configurable yet"},
    {"grpc-keepalive-interval", OPT_REFUSED, NULL, 0, 0, 0, 0,
     "server-side gRPC keepalive pings are not supported yet"},
    {"grpc-keepalive-timeout", OPT_REFUSED, NULL, 0, 0, 0, 0,
     "server-side gRPC keepalive pings are not supported yet"},
    {"discovery-srv-name", OPT_REFUSED, NULL, 0, 0, 0, 0, "discovery is not supported"},
    {"proxy-failure-wait", OPT_REFUSED, NULL, 0, 0, 0, 0, "the v2 proxy is not supported"},
    {"proxy-refresh-interval", OPT_REFUSED, NULL, 0, 0, 0, 0, "the v2 proxy is not supported"},
    {"proxy-dial-timeout", OPT_REFUSED, NULL, 0, 0, 0, 0, "the v2 proxy is not supported"},
    {"proxy-write-timeout", OPT_REFUSED, NULL, 0, 0, 0, 0, "the v2 proxy is not supported"},
    {"proxy-read-timeout", OPT_REFUSED, NULL, 0, 0, 0, 0, "the v2 proxy is not supported"},
    {"log-output", OPT_REFUSED, NULL, 0, 0, 0, 0, "deprecated in etcd 3.4: use --log-outputs"},
    {"log-package-levels", OPT_REFUSED, NULL, 0, 0, 0, 0,
     "per-package levels are not supported (--log-level)"},
    {"bcrypt-cost", OPT_INT, "10", 4, 31, F(bcrypt_cost), 0,
     "Input for bcrypt algorithm: the cost of hashing auth passwords (4..31)."},
    {"auth-token-ttl", OPT_INT, "300", 1, INT64_MAX / 1000, F(auth_token_ttl), 0,
     "The lifetime in seconds of an auth token (renewed by each use; simple tokens)."},
    {"cors", OPT_REFUSED, NULL, 0, 0, 0, 0, "CORS headers are not supported"},
    {"host-whitelist", OPT_REFUSED, "*", 0, 0, 0, 0,
     "only etcd's default (every host) is supported"},
    {"unsafe-no-fsync", OPT_REFUSED, "false", 0, 0, 0, 0,
     "lskv always syncs what it acknowledges"},
};
#define N_OPTS (sizeof opts / sizeof opts[0])

/* Table offsets point at fields of their declared type, so the casts below
 * are aligned; going through void * says so to the compiler. */
static int parse_duration_ms(const char *s, int64_t *out);

static void *field_at(const struct config *c, size_t offset)
{
    return (char *)(uintptr_t)c + offset;
}

static char **str_field(struct config *c, const struct opt *o)
{
    return field_at(c, o->offset);
}

static void clear_urls(struct config *c, const struct opt *o)
{
    char **urls = str_field(c, o);
    size_t *n = field_at(c, o->count_offset);
    for (size_t i = 0; i < *n; i++) {
        free(urls[i]);
        urls[i] = NULL;
    }
    *n = 0;
}

static int set_opt(struct config *c, const struct opt *o, const char *value, char *errmsg)
{
    switch (o->type) {
    case OPT_STRING: {
        char **p = str_field(c, o);
        free(*p);
        *p = strdup(value);
        return *p ? 0 : LSKV_ENOMEM;
    }
    case OPT_URLS: {
        clear_urls(c, o);
        char **urls = str_field(c, o);
        size_t *n = field_at(c, o->count_offset);
        const char *s = value;
        while (*s) {
            const char *comma = strchr(s, ',');
            size_t len = comma ? (size_t)(comma - s) : strlen(s);
            if (*n == CONFIG_MAX_URLS) {
                errmsg_printf(errmsg, "--%s=%s: at most %d URLs", o->name, value,
                              CONFIG_MAX_URLS);
                return LSKV_EINVAL;
            }
            char *one = strndup(s, len);
            struct url u;
            char why[LSKV_ERRMSG_SIZE];
            if (one == NULL)
                return LSKV_ENOMEM;
            urls[(*n)++] = one;
            if (url_parse(one, 0, &u, why) != 0) {
                errmsg_printf(errmsg, "--%s=%s: %s", o->name, value, why);
                return LSKV_EINVAL;
            }
            s += len + (comma ? 1 : 0);
        }
        if (*n == 0) {
            errmsg_printf(errmsg, "--%s: needs at least one URL", o->name);
            return LSKV_EINVAL;
        }
        return 0;
    }
    case OPT_INT: {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (errno != 0 || end == value || *end != '\0' || v < o->min || v > o->max) {
            errmsg_printf(errmsg, "--%s=%s: must be an integer in [%" PRId64 ", %" PRId64 "]",
                          o->name, value, o->min, o->max);
            return LSKV_EINVAL;
        }
        *(int64_t *)field_at(c, o->offset) = v;
        return 0;
    }
    case OPT_BOOL:
        if (strcmp(value, "true") != 0 && strcmp(value, "false") != 0) {
            errmsg_printf(errmsg, "--%s=%s: must be true or false", o->name, value);
            return LSKV_EINVAL;
        }
        *(bool *)field_at(c, o->offset) = strcmp(value, "true") == 0;
        return 0;
    case OPT_REFUSED:
        if (o->def != NULL && strcmp(value, o->def) == 0)
            return 0;
        errmsg_printf(errmsg, "--%s=%s: not supported by lskvd: %s", o->name, value, o->help);
        return LSKV_EINVAL;
    }
    return LSKV_EINVAL;
}

/* The names etcd 3.4 accepts for --cipher-suites (Go's crypto/tls names,
 * secure and insecure, and two aliases; etcd's pkg/tlsutil). */
static const char *const cipher_suite_names[] = {
    "TLS_RSA_WITH_RC4_128_SHA", "TLS_RSA_WITH_3DES_EDE_CBC_SHA", "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA", "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256", "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    /* TLS 1.3's: accepted, and not configurable (Go ignores them too) */
    "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
};

static int check_cipher_suites(const char *list, char *errmsg)
{
    for (const char *s = list; *s != '\0';) {
        size_t len = strcspn(s, ",");
        bool known = false;
        for (size_t i = 0; i < sizeof cipher_suite_names / sizeof *cipher_suite_names; i++)
            known |= strlen(cipher_suite_names[i]) == len &&
                     strncmp(cipher_suite_names[i], s, len) == 0;
        if (!known) {
            errmsg_printf(errmsg, "--cipher-suites=%s: unexpected TLS cipher suite \"%.*s\"",
                          list, (int)len, s);
            return LSKV_EINVAL;
        }
        s += len + (s[len] == ',');
    }
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out, "Usage: lskvd [flags]\n\n"
                 "A confidential, ledger-backed key-value store speaking etcd's v3 API.\n"
                 "Every flag may also come from ETCD_<FLAG> (upper case, '-' as '_'), as "
                 "in etcd.\n\nFlags:\n");
    for (size_t i = 0; i < N_OPTS; i++)
        if (opts[i].type != OPT_REFUSED)
            fprintf(out, "  --%-30s %s%s%s%s\n", opts[i].name, opts[i].help,
                    opts[i].def ? " (default: " : "", opts[i].def ? opts[i].def : "",
                    opts[i].def ? ")" : "");
    fprintf(out, "  --%-30s %s\n", "help", "Show this help.");
    fprintf(out, "\netcd flags lskvd refuses (except with the value shown):\n");
    for (size_t i = 0; i < N_OPTS; i++)
        if (opts[i].type == OPT_REFUSED)
            fprintf(out, "  --%-30s %s%s%s%s\n", opts[i].name, opts[i].help,
                    opts[i].def ? " (accepted: " : "", opts[i].def ? opts[i].def : "",
                    opts[i].def ? ")" : "");
}

/* Bool-like flags may stand alone (--flag means --flag=true, as Go's). */
static bool is_bool(const struct opt *o)
{
    return o->type == OPT_BOOL ||
           (o->type == OPT_REFUSED && o->def != NULL &&
            (strcmp(o->def, "false") == 0 || strcmp(o->def, "true") == 0));
}

/* etcd's pkg/flags FlagToEnv: ETCD_ + name upper-cased, '-' -> '_'. */
static void env_name(const struct opt *o, char *out, size_t size)
{
    size_t k = (size_t)snprintf(out, size, "ETCD_");
    for (const char *p = o->name; *p != '\0' && k + 1 < size; p++)
        out[k++] = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    out[k] = '\0';
}

/* etcd's SetFlagsFromEnv and verifyEnv. */
static int parse_env(struct config *c, const bool *on_command_line, char *errmsg)
{
    char key[96];
    for (size_t i = 0; i < N_OPTS; i++) {
        if (on_command_line[i])
            continue;
        env_name(&opts[i], key, sizeof key);
        const char *v = getenv(key);
        if (v == NULL || *v == '\0')
            continue;
        char why[LSKV_ERRMSG_SIZE];
        int rv = set_opt(c, &opts[i], v, why);
        if (rv != 0) {
            errmsg_printf(errmsg, "invalid value \"%s\" for %s: %s", v, key, why);
            return rv;
        }
        LOG_INFO("config", "recognized and used environment variable %s=%s", key, v);
    }
    for (char **e = environ; *e != NULL; e++) {
        size_t len = strcspn(*e, "=");
        bool known = false;
        for (size_t i = 0; i < N_OPTS && !known; i++) {
            env_name(&opts[i], key, sizeof key);
            if (strlen(key) != len || strncmp(key, *e, len) != 0)
                continue;
            known = true;
            if (on_command_line[i]) {
                errmsg_printf(errmsg, "conflicting environment variable \"%s\" is shadowed by "
                              "corresponding command-line flag (either unset environment "
                              "variable or disable flag)", key);
                return LSKV_EINVAL;
            }
        }
        if (!known && strncmp(*e, "ETCD_", 5) == 0)
            LOG_WARN("config", "unrecognized environment variable %s", *e);
    }
    return 0;
}

/* etcd's --logger and --log-outputs rules (embed/config_logging.go), for
 * the outputs lskvd can write: one of them. */
static int check_logging(const struct config *c, char *errmsg)
{
    bool zap = strcmp(c->logger, "zap") == 0;
    if (!zap && strcmp(c->logger, "capnslog") != 0) {
        errmsg_printf(errmsg, "unknown logger option \"%s\"", c->logger);
        return LSKV_EINVAL;
    }
    const char *o = c->log_outputs;
    if (strchr(o, ',') != NULL) {
        if (!zap) {
            errmsg_printf(errmsg, "--logger=capnslog supports only 1 value in '--log-outputs', "
                          "got \"%s\"", o);
            return LSKV_EINVAL;
        }
        errmsg_printf(errmsg, "--log-outputs=%s: lskvd writes its log to one output", o);
        return LSKV_EINVAL;
    }
    bool std = strcmp(o, "default") == 0 || strcmp(o, "stderr") == 0 ||
               strcmp(o, "stdout") == 0;
    if (!zap && !std) {
        errmsg_printf(errmsg, "unknown log-output \"%s\" (only supports \"default\", "
                      "\"stderr\", \"stdout\")", o);
        return LSKV_EINVAL;
    }
    if (strcmp(o, "systemd/journal") == 0 || *o == '\0') {
        errmsg_printf(errmsg, "--log-outputs=%s: not supported by lskvd (default, stderr, "
                      "stdout or a file)", o);
        return LSKV_EINVAL;
    }
    return 0;
}

/* etcd's Validate for the raft timing (embed/config.go). */
static int check_timing(const struct config *c, char *errmsg)
{
    if (5 * c->heartbeat_interval_ms > c->election_timeout_ms) {
        errmsg_printf(errmsg, "--election-timeout[%" PRId64 "ms] should be at least as 5 times "
                      "as --heartbeat-interval[%" PRId64 "ms]", c->election_timeout_ms,
                      c->heartbeat_interval_ms);
        return LSKV_EINVAL;
    }
    if (c->election_timeout_ms > 50000) {
        errmsg_printf(errmsg, "--election-timeout[%" PRId64 "ms] is too long, and should be "
                      "set less than 50000ms", c->election_timeout_ms);
        return LSKV_EINVAL;
    }
    return 0;
}

/* The flags that only make sense with a TLS client listener. */
static int check_tls(struct config *c, char *errmsg)
{
    bool tls = false;
    for (size_t i = 0; i < c->n_listen_client_urls; i++)
        tls |= strncmp(c->listen_client_urls[i], "https://", 8) == 0;
    bool certs = c->cert_file != NULL && c->key_file != NULL;
    if (c->auto_tls && certs)
        LOG_WARN("config", "ignoring client auto TLS since certs given");
    if (tls && !certs && !c->auto_tls) {
        errmsg_printf(errmsg, "--listen-client-urls: https:// needs --cert-file and --key-file "
                      "(or --auto-tls)");
        return LSKV_EINVAL;
    }
    /* TLS options without a TLS listener would be silently ignored. */
    const char *tls_only = c->client_cert_auth ? "--client-cert-auth"
                           : c->trusted_ca_file ? "--trusted-ca-file"
                           : c->cipher_suites   ? "--cipher-suites"
                           : c->client_crl_file ? "--client-crl-file"
                                                : NULL;
    if (tls_only != NULL && !tls) {
        errmsg_printf(errmsg, "%s: needs an https:// URL in --listen-client-urls", tls_only);
        return LSKV_EINVAL;
    }
    if (c->client_crl_file != NULL && c->trusted_ca_file == NULL) {
        errmsg_printf(errmsg, "--client-crl-file: needs --client-cert-auth and "
                              "--trusted-ca-file (no client certificate to check otherwise)");
        return LSKV_EINVAL;
    }
    if (c->client_cert_auth && c->trusted_ca_file == NULL) {
        errmsg_printf(errmsg, "--client-cert-auth: needs --trusted-ca-file (the CA that "
                              "signs client certificates)");
        return LSKV_EINVAL;
    }
    if ((c->peer_cert_file == NULL) != (c->peer_key_file == NULL)) {
        errmsg_printf(errmsg, "%s: needs %s too", c->peer_cert_file ? "--peer-cert-file"
                                                                   : "--peer-key-file",
                      c->peer_cert_file ? "--peer-key-file" : "--peer-cert-file");
        return LSKV_EINVAL;
    }
    const char *needs_cert = c->peer_trusted_ca_file ? "--peer-trusted-ca-file"
                             : c->peer_client_cert_auth ? "--peer-client-cert-auth"
                             : c->peer_cert_allowed_cn ? "--peer-cert-allowed-cn"
                             : c->peer_cert_allowed_hostname ? "--peer-cert-allowed-hostname"
                                                             : NULL;
    if (c->peer_cert_allowed_cn != NULL && c->peer_cert_allowed_hostname != NULL) {
        errmsg_printf(errmsg, "AllowedCN and AllowedHostname are mutually exclusive (cn=\"%s\", "
                      "hostname=\"%s\")", c->peer_cert_allowed_cn,
                      c->peer_cert_allowed_hostname);
        return LSKV_EINVAL;
    }
    const char *allowed = c->peer_cert_allowed_cn ? "--peer-cert-allowed-cn"
                          : c->peer_cert_allowed_hostname ? "--peer-cert-allowed-hostname"
                                                          : NULL;
    if (allowed != NULL && (!c->peer_client_cert_auth || c->peer_trusted_ca_file == NULL)) {
        errmsg_printf(errmsg, "%s: needs --peer-client-cert-auth and --peer-trusted-ca-file (a "
                      "peer's certificate is checked only once verified; etcd would refuse "
                      "every peer connection)", allowed);
        return LSKV_EINVAL;
    }
    if (c->client_cert_allowed_hostname != NULL && !c->client_cert_auth) {
        errmsg_printf(errmsg, "--client-cert-allowed-hostname: needs --client-cert-auth (no "
                      "client certificate to check otherwise)");
        return LSKV_EINVAL;
    }
    if (needs_cert != NULL && c->peer_cert_file == NULL) {
        errmsg_printf(errmsg, "%s: needs --peer-cert-file and --peer-key-file (lskv members "
                      "otherwise authenticate each other by their node certificates alone)",
                      needs_cert);
        return LSKV_EINVAL;
    }
    if (c->corrupt_check_time != NULL && strcmp(c->corrupt_check_time, "0") != 0 &&
        parse_duration_ms(c->corrupt_check_time, &c->corrupt_check_ms) != 0) {
        errmsg_printf(errmsg, "invalid value \"%s\" for flag -experimental-corrupt-check-time: "
                      "parse error", c->corrupt_check_time);
        return LSKV_EINVAL;
    }
    if (c->max_concurrent_streams > CONFIG_MAX_STREAMS &&
        c->max_concurrent_streams != 4294967295LL) {
        errmsg_printf(errmsg, "--max-concurrent-streams=%" PRId64 ": lskvd allows at most %d "
                      "streams per connection (its memory bound); etcd's default 4294967295 "
                      "means that", c->max_concurrent_streams, CONFIG_MAX_STREAMS);
        return LSKV_EINVAL;
    }
    if (c->peer_client_cert_auth && c->peer_trusted_ca_file == NULL) {
        errmsg_printf(errmsg, "--peer-client-cert-auth: needs --peer-trusted-ca-file (the CA "
                              "that signs peer certificates)");
        return LSKV_EINVAL;
    }
    if (c->cipher_suites != NULL)
        return check_cipher_suites(c->cipher_suites, errmsg);
    return 0;
}

/* "http://node1:1" -> "http://10.0.0.1:1" (members_resolve_fn); as etcd's
 * netutil.resolveURL, localhost and IP addresses stay as they are. */
static int resolve_url(const char *s, char *out, size_t size)
{
    struct url u;
    unsigned char buf[16];
    char why[LSKV_ERRMSG_SIZE], numeric[80];
    if (url_parse(s, 0, &u, why) != 0)
        return -1;
    if (strcmp(u.host, "localhost") == 0 || inet_pton(AF_INET, u.host, buf) == 1 ||
        inet_pton(AF_INET6, u.host, buf) == 1) {
        snprintf(out, size, "%s", s);
        return 0;
    }
    if (url_resolve(&u, NULL, numeric, sizeof numeric, why) != 0)
        return -1;
    snprintf(out, size, "%s://%s", u.tls ? "https" : "http", numeric);
    return 0;
}

/* etcd's checkBindURLs: a listen URL names an IP address or localhost. */
static int check_bind_urls(const char *flag, char *const *urls, size_t n, char *errmsg)
{
    for (size_t i = 0; i < n; i++) {
        struct url u;
        unsigned char buf[16];
        if (url_parse(urls[i], 0, &u, errmsg) != 0) /* checked when set */
            return LSKV_EINVAL;
        if (strcmp(u.host, "localhost") != 0 && inet_pton(AF_INET, u.host, buf) != 1 &&
            inet_pton(AF_INET6, u.host, buf) != 1) {
            errmsg_printf(errmsg, "%s: expected IP in URL for binding (%s)", flag, urls[i]);
            return LSKV_EINVAL;
        }
    }
    return 0;
}

/* --initial-cluster as etcd reads it (config/members.h). */
static int check_initial_cluster(struct config *c, char *errmsg)
{
    int rv;
    if (c->initial_cluster == NULL && strcmp(c->name, "default") == 0) {
        /* etcd's default, kept for the default name whatever is advertised */
        if ((c->initial_cluster = strdup("default=http://localhost:2380")) == NULL)
            return LSKV_ENOMEM;
    } else if (c->initial_cluster == NULL) { /* etcd's InitialClusterFromName */
        size_t n = 1;
        for (size_t i = 0; i < c->n_initial_advertise_peer_urls; i++)
            n += strlen(c->name) + 2 + strlen(c->initial_advertise_peer_urls[i]);
        if ((c->initial_cluster = malloc(n)) == NULL)
            return LSKV_ENOMEM;
        size_t k = 0;
        for (size_t i = 0; i < c->n_initial_advertise_peer_urls; i++)
            k += (size_t)snprintf(c->initial_cluster + k, n - k, "%s%s=%s", i ? "," : "",
                                  c->name, c->initial_advertise_peer_urls[i]);
    }
    if ((rv = members_parse(c->initial_cluster, c->initial_cluster_token, &c->members,
                            errmsg)) != 0 ||
        (rv = members_find_local(&c->members, c->name, c->initial_advertise_peer_urls,
                                 c->n_initial_advertise_peer_urls, resolve_url, errmsg)) != 0)
        return rv;
    return 0;
}

int config_parse(struct config *c, int argc, char **argv, FILE *out, bool *exit_now,
                 char *errmsg)
{
    int rv;
    bool on_command_line[N_OPTS] = {false};
    memset(c, 0, sizeof *c);
    *exit_now = false;
    for (size_t i = 0; i < N_OPTS; i++) {
        if (opts[i].def != NULL && opts[i].type != OPT_REFUSED &&
            (rv = set_opt(c, &opts[i], opts[i].def, errmsg)) != 0)
            return rv;
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(out);
            *exit_now = true;
            return 0;
        }
        if (strncmp(arg, "--", 2) != 0) {
            errmsg_printf(errmsg, "%s: unexpected argument (flags start with --)", arg);
            return LSKV_EINVAL;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        const struct opt *o = NULL;
        for (size_t k = 0; k < N_OPTS; k++)
            if (strlen(opts[k].name) == name_len && strncmp(opts[k].name, name, name_len) == 0)
                o = &opts[k];
        if (o == NULL) {
            errmsg_printf(errmsg, "%s: unknown flag (see --help)", arg);
            return LSKV_EINVAL;
        }
        on_command_line[o - opts] = true;
        const char *value = eq ? eq + 1 : NULL;
        if (value == NULL && is_bool(o))
            value = "true"; /* as Go's flags: --flag alone, or --flag=false */
        if (value == NULL) {
            if (i + 1 >= argc) {
                errmsg_printf(errmsg, "--%s: needs a value", o->name);
                return LSKV_EINVAL;
            }
            value = argv[++i];
        }
        if ((rv = set_opt(c, o, value, errmsg)) != 0)
            return rv;
    }
    if ((rv = parse_env(c, on_command_line, errmsg)) != 0)
        return rv;
    if (c->data_dir == NULL) {
        size_t n = strlen(c->name) + 6;
        c->data_dir = malloc(n);
        if (c->data_dir == NULL)
            return LSKV_ENOMEM;
        snprintf(c->data_dir, n, "%s.lskv", c->name);
    }
    if (c->debug) { /* etcd 3.4: --debug is --log-level=debug */
        free(c->log_level);
        if ((c->log_level = strdup("debug")) == NULL)
            return LSKV_ENOMEM;
    }
    enum log_level level;
    if (log_level_parse(c->log_level, &level) != 0) {
        errmsg_printf(errmsg, "--log-level=%s: must be debug, info, warn, error, panic or fatal",
                      c->log_level);
        return LSKV_EINVAL;
    }
    if (c->enable_v2) {
        errmsg_printf(errmsg, "--enable-v2=true: not supported by lskvd (it serves etcd's v3 "
                      "API only)");
        return LSKV_EINVAL;
    }
    if ((rv = check_bind_urls("--listen-client-urls", c->listen_client_urls,
                              c->n_listen_client_urls, errmsg)) != 0 ||
        (rv = check_bind_urls("--listen-peer-urls", c->listen_peer_urls, c->n_listen_peer_urls,
                              errmsg)) != 0 ||
        (rv = check_bind_urls("--listen-metrics-urls", c->listen_metrics_urls,
                              c->n_listen_metrics_urls, errmsg)) != 0)
        return rv;
    struct config_token tok;
    if ((rv = check_logging(c, errmsg)) != 0 || (rv = check_timing(c, errmsg)) != 0 ||
        (rv = check_tls(c, errmsg)) != 0 || (rv = config_auth_token(c, &tok, errmsg)) != 0)
        return rv;
    if (strcmp(c->initial_cluster_state, "new") != 0 &&
        strcmp(c->initial_cluster_state, "existing") != 0) {
        errmsg_printf(errmsg, "--initial-cluster-state=%s: must be 'new' or 'existing'",
                      c->initial_cluster_state);
        return LSKV_EINVAL;
    }
    if ((rv = check_initial_cluster(c, errmsg)) != 0)
        return rv;
    if (strcmp(c->initial_cluster_state, "existing") == 0 && c->members.n < 2) {
        errmsg_printf(errmsg, "--initial-cluster-state=existing: --initial-cluster names no "
                      "other member to join the cluster through");
        return LSKV_EINVAL;
    }
    return 0;
}

/* Go's time.ParseDuration for what a token TTL needs: a sequence of
 * <integer><unit>, units h, m, s, ms. */
static int parse_duration_ms(const char *s, int64_t *out)
{
    int64_t total = 0;
    if (*s == '\0')
        return LSKV_EINVAL;
    while (*s) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || v < 0 || v > 1000000000)
            return LSKV_EINVAL;
        int64_t unit = strncmp(end, "ms", 2) == 0 ? 1 : *end == 'h' ? 3600000
                       : *end == 'm' ? 60000 : *end == 's' ? 1000 : 0;
        if (unit == 0)
            return LSKV_EINVAL;
        total += v * unit;
        s = end + (unit == 1 ? 2 : 1);
    }
    *out = total;
    return 0;
}

int config_auth_token(const struct config *c, struct config_token *t, char *errmsg)
{
    memset(t, 0, sizeof *t);
    t->ttl_ms = 5 * 60 * 1000; /* etcd's jwt DefaultTTL */
    snprintf(t->buf, sizeof t->buf, "%s", c->auth_token ? c->auth_token : "simple");
    char *save = NULL, *part = strtok_r(t->buf, ",", &save);
    if (part == NULL || (strcmp(part, "simple") != 0 && strcmp(part, "jwt") != 0)) {
        errmsg_printf(errmsg, "--auth-token=%s: auth: invalid auth options (token type "
                      "simple or jwt)", c->auth_token ? c->auth_token : "");
        return LSKV_EINVAL;
    }
    t->jwt = strcmp(part, "jwt") == 0;
    while ((part = strtok_r(NULL, ",", &save)) != NULL) {
        char *eq = strchr(part, '=');
        const char **slot = NULL;
        if (eq != NULL) {
            *eq = '\0';
            slot = strcmp(part, "pub-key") == 0       ? &t->pub_key
                   : strcmp(part, "priv-key") == 0    ? &t->priv_key
                   : strcmp(part, "sign-method") == 0 ? &t->sign_method
                   : strcmp(part, "ttl") == 0         ? &t->ttl
                                                      : NULL;
        }
        if (eq == NULL || strchr(eq + 1, '=') != NULL || (slot != NULL && *slot != NULL)) {
            errmsg_printf(errmsg, "--auth-token: auth: invalid auth options");
            return LSKV_EINVAL;
        }
        if (slot != NULL) /* etcd warns about unknown options and goes on */
            *slot = eq + 1;
    }
    if (t->ttl != NULL && parse_duration_ms(t->ttl, &t->ttl_ms) != 0) {
        errmsg_printf(errmsg, "--auth-token: auth: invalid auth options (ttl=%s)", t->ttl);
        return LSKV_EINVAL;
    }
    return 0;
}

int config_auto_tls(struct config *c, bool *made, char *errmsg)
{
    *made = false;
    if (!c->auto_tls || (c->cert_file != NULL && c->key_file != NULL))
        return 0;
    struct url u[CONFIG_MAX_URLS];
    const char *hosts[CONFIG_MAX_URLS];
    for (size_t i = 0; i < c->n_listen_client_urls; i++) {
        int rv = url_parse(c->listen_client_urls[i], 0, &u[i], errmsg); /* checked before */
        if (rv != 0)
            return rv;
        hosts[i] = u[i].host;
    }
    char dir[SELFCERT_PATH_MAX], cert[SELFCERT_PATH_MAX], key[SELFCERT_PATH_MAX];
    snprintf(dir, sizeof dir, "%s/fixtures/client", c->data_dir);
    int rv = selfcert_ensure(dir, hosts, c->n_listen_client_urls, cert, key, made, errmsg);
    if (rv != 0)
        return rv;
    free(c->cert_file);
    free(c->key_file);
    c->cert_file = strdup(cert);
    c->key_file = strdup(key);
    return c->cert_file && c->key_file ? 0 : LSKV_ENOMEM;
}

int config_open_log_output(const struct config *c, char *errmsg)
{
    const char *o = c->log_outputs;
    if (strcmp(o, "default") == 0 || strcmp(o, "stderr") == 0)
        return 0;
    int fd = strcmp(o, "stdout") == 0
                 ? dup(STDOUT_FILENO)
                 : open(o, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0 || dup2(fd, STDERR_FILENO) < 0) {
        int rv = -errno;
        errmsg_printf(errmsg, "--log-outputs=%s: %s", o, strerror(errno));
        if (fd >= 0)
            close(fd);
        return rv;
    }
    close(fd);
    return 0;
}

void config_free(struct config *c)
{
    for (size_t i = 0; i < N_OPTS; i++) {
        if (opts[i].type == OPT_STRING) {
            free(*str_field(c, &opts[i]));
            *str_field(c, &opts[i]) = NULL;
        } else if (opts[i].type == OPT_URLS) {
            clear_urls(c, &opts[i]);
        }
    }
    members_free(&c->members);
}

void config_dump(const struct config *c, void (*print)(const char *line))
{
    char line[1024];
    for (size_t i = 0; i < N_OPTS; i++) {
        const struct opt *o = &opts[i];
        const void *field = field_at(c, o->offset);
        if (o->type == OPT_REFUSED)
            continue;
        if (o->type == OPT_STRING) {
            const char *v = *(char *const *)field;
            snprintf(line, sizeof line, "%s=%s", o->name, v ? v : "");
        } else if (o->type == OPT_INT) {
            snprintf(line, sizeof line, "%s=%" PRId64, o->name, *(const int64_t *)field);
        } else if (o->type == OPT_BOOL) {
            snprintf(line, sizeof line, "%s=%s", o->name, *(const bool *)field ? "true" : "false");
        } else {
            char *const *urls = (char *const *)field;
            size_t n = *(const size_t *)field_at(c, o->count_offset);
            int k = snprintf(line, sizeof line, "%s=", o->name);
            for (size_t u = 0; u < n && k > 0 && (size_t)k < sizeof line; u++)
                k += snprintf(line + k, sizeof line - (size_t)k, "%s%s", u ? "," : "", urls[u]);
        }
        print(line);
    }
    for (size_t i = 0; i < c->members.n; i++) {
        const struct member *m = &c->members.m[i];
        int k = snprintf(line, sizeof line, "initial member %016" PRIx64 " %s%s, peer URLs ",
                         m->id, m->name, i == c->members.self ? " (this member)" : "");
        for (size_t u = 0; u < m->n_peer_urls && k > 0 && (size_t)k < sizeof line; u++)
            k += snprintf(line + k, sizeof line - (size_t)k, "%s%s", u ? "," : "",
                          m->peer_urls[u]);
        print(line);
    }
    if (c->members.n > 0) {
        snprintf(line, sizeof line, "initial cluster id %016" PRIx64, c->members.cluster_id);
        print(line);
    }
}

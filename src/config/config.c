#include "config/config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/url.h"
#include "common/log.h"

enum opt_type { OPT_STRING, OPT_URLS, OPT_INT, OPT_BOOL };

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
    {"listen-client-urls", OPT_URLS, "http://127.0.0.1:2379", 0, 0, F(listen_client_urls),
     F(n_listen_client_urls), "List of URLs to listen on for client traffic (http:// or https://)."},
    {"advertise-client-urls", OPT_URLS, "http://127.0.0.1:2379", 0, 0,
     F(advertise_client_urls), F(n_advertise_client_urls),
     "List of this member's client URLs to advertise to the public."},
    {"listen-peer-urls", OPT_URLS, "http://127.0.0.1:2380", 0, 0, F(listen_peer_urls),
     F(n_listen_peer_urls),
     "List of URLs for peer traffic (checked; a single member has no peers, so nothing "
     "listens yet)."},
    {"initial-advertise-peer-urls", OPT_URLS, "http://127.0.0.1:2380", 0, 0,
     F(initial_advertise_peer_urls), F(n_initial_advertise_peer_urls),
     "List of this member's peer URLs to advertise to the rest of the cluster."},
    {"initial-cluster", OPT_STRING, NULL, 0, 0, F(initial_cluster), 0,
     "Initial cluster configuration for bootstrapping (name=peer-url,...); only this "
     "member yet (single-member clusters)."},
    {"initial-cluster-state", OPT_STRING, "new", 0, 0, F(initial_cluster_state), 0,
     "Initial cluster state: 'new' ('existing', joining a cluster, is not implemented yet)."},
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
};
#define N_OPTS (sizeof opts / sizeof opts[0])

/* Table offsets point at fields of their declared type, so the casts below
 * are aligned; going through void * says so to the compiler. */
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
                 "A confidential, ledger-backed key-value store speaking etcd's v3 API.\n\n"
                 "Flags:\n");
    for (size_t i = 0; i < N_OPTS; i++)
        fprintf(out, "  --%-30s %s%s%s%s\n", opts[i].name, opts[i].help,
                opts[i].def ? " (default: " : "", opts[i].def ? opts[i].def : "",
                opts[i].def ? ")" : "");
    fprintf(out, "  --%-30s %s\n", "help", "Show this help.");
}

static bool is_own_peer_url(const struct config *c, const char *url, size_t len)
{
    for (size_t i = 0; i < c->n_initial_advertise_peer_urls; i++)
        if (strlen(c->initial_advertise_peer_urls[i]) == len &&
            strncmp(c->initial_advertise_peer_urls[i], url, len) == 0)
            return true;
    return false;
}

/* Multi-member clusters are not implemented: rather than ignore the other
 * members, --initial-cluster may name only this member and its own peer
 * URLs (as the single-member etcd command lines everyone uses do). */
static int check_initial_cluster(const struct config *c, char *errmsg)
{
    const char *s = c->initial_cluster;
    if (s == NULL)
        return 0;
    size_t name_len = strlen(c->name);
    do {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        const char *eq = memchr(s, '=', len);
        if (eq == NULL) {
            errmsg_printf(errmsg, "--initial-cluster=%s: entries are name=peer-url",
                          c->initial_cluster);
            return LSKV_EINVAL;
        }
        size_t n = (size_t)(eq - s);
        if (n != name_len || strncmp(s, c->name, n) != 0 ||
            !is_own_peer_url(c, eq + 1, len - n - 1)) {
            errmsg_printf(errmsg,
                          "--initial-cluster=%s: multi-member clusters are not implemented "
                          "yet; only this member (--name %s with its "
                          "--initial-advertise-peer-urls) may be named",
                          c->initial_cluster, c->name);
            return LSKV_EINVAL;
        }
        s = comma ? comma + 1 : NULL;
    } while (s != NULL);
    return 0;
}

int config_parse(struct config *c, int argc, char **argv, FILE *out, bool *exit_now,
                 char *errmsg)
{
    int rv;
    memset(c, 0, sizeof *c);
    *exit_now = false;
    for (size_t i = 0; i < N_OPTS; i++) {
        if (opts[i].def != NULL && (rv = set_opt(c, &opts[i], opts[i].def, errmsg)) != 0)
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
        const char *value = eq ? eq + 1 : NULL;
        if (value == NULL && o->type == OPT_BOOL)
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
    if (c->data_dir == NULL) {
        size_t n = strlen(c->name) + 6;
        c->data_dir = malloc(n);
        if (c->data_dir == NULL)
            return LSKV_ENOMEM;
        snprintf(c->data_dir, n, "%s.lskv", c->name);
    }
    enum log_level level;
    if (log_level_parse(c->log_level, &level) != 0) {
        errmsg_printf(errmsg, "--log-level=%s: must be debug, info, warn, error, panic or fatal",
                      c->log_level);
        return LSKV_EINVAL;
    }
    bool tls = false;
    for (size_t i = 0; i < c->n_listen_client_urls; i++)
        tls |= strncmp(c->listen_client_urls[i], "https://", 8) == 0;
    if (tls && (c->cert_file == NULL || c->key_file == NULL)) {
        errmsg_printf(errmsg, "--listen-client-urls: https:// needs --cert-file and --key-file");
        return LSKV_EINVAL;
    }
    /* TLS options without a TLS listener would be silently ignored. */
    const char *tls_only = c->client_cert_auth ? "--client-cert-auth"
                           : c->trusted_ca_file ? "--trusted-ca-file"
                           : c->cipher_suites   ? "--cipher-suites"
                                                : NULL;
    if (tls_only != NULL && !tls) {
        errmsg_printf(errmsg, "%s: needs an https:// URL in --listen-client-urls", tls_only);
        return LSKV_EINVAL;
    }
    if (c->client_cert_auth && c->trusted_ca_file == NULL) {
        errmsg_printf(errmsg, "--client-cert-auth: needs --trusted-ca-file (the CA that "
                              "signs client certificates)");
        return LSKV_EINVAL;
    }
    if (c->cipher_suites != NULL && (rv = check_cipher_suites(c->cipher_suites, errmsg)) != 0)
        return rv;
    if (strcmp(c->initial_cluster_state, "existing") == 0) {
        errmsg_printf(errmsg, "--initial-cluster-state=existing: joining an existing cluster "
                              "is not implemented yet (only 'new' single-member clusters)");
        return LSKV_EINVAL;
    }
    if (strcmp(c->initial_cluster_state, "new") != 0) {
        errmsg_printf(errmsg, "--initial-cluster-state=%s: must be 'new' or 'existing'",
                      c->initial_cluster_state);
        return LSKV_EINVAL;
    }
    return check_initial_cluster(c, errmsg);
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
}

void config_dump(const struct config *c, void (*print)(const char *line))
{
    char line[1024];
    for (size_t i = 0; i < N_OPTS; i++) {
        const struct opt *o = &opts[i];
        const void *field = field_at(c, o->offset);
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
}

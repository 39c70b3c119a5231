#include <stdio.h>
#include <stdlib.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <unistd.h>

#include "common/err.h"
#include "common/arena.h"
#include "config/config.h"
#include <stdint.h>
#include <string.h>
#include "runner.h"

static int parse(struct config *c, int argc, char **argv, char *errmsg)
{
    bool exit_now = false;
    FILE *devnull = fopen("/dev/null", "w");
    int rv = config_parse(c, argc, argv, devnull, &exit_now, errmsg);
    fclose(devnull);
    return rv;
}

TEST(config, defaults_match_etcd)
{
    struct config c;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    char *argv[] = {"lskvd"};
    ASSERT_EQ(parse(&c, 1, argv, errmsg), 0);
    ASSERT_STR_EQ(c.name, "default");
    ASSERT_STR_EQ(c.data_dir, "default.lskv");
    ASSERT_EQ(c.n_listen_client_urls, 1);
    ASSERT_STR_EQ(c.listen_client_urls[0], "http://localhost:2379");
    ASSERT_STR_EQ(c.initial_advertise_peer_urls[0], "http://localhost:2380");
    ASSERT_STR_EQ(c.initial_cluster_token, "etcd-cluster");
    ASSERT_EQ(c.heartbeat_interval_ms, 100);
    ASSERT_EQ(c.election_timeout_ms, 1000);
    ASSERT(c.strict_reconfig_check && !c.enable_v2 && !c.auto_tls);
    ASSERT_STR_EQ(c.logger, "capnslog");
    /* etcd's default membership and ids (measured on etcd 3.4.23) */
    ASSERT_STR_EQ(c.initial_cluster, "default=http://localhost:2380");
    ASSERT_EQ(c.members.n, 1);
    ASSERT(c.members.m[c.members.self].id == 0x8e9e05c52164694dULL);
    ASSERT(c.members.cluster_id == 0xcdf818194e3a8c32ULL);
    ASSERT_EQ(c.max_request_bytes, 1572864);
    ASSERT_EQ(c.max_txn_ops, 128);
    ASSERT_EQ(c.max_buffered_request_bytes, 256 << 20); /* lskv's own */
    config_free(&c);
}

TEST(config, flags_both_forms_and_lists)
{
    struct config c;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    char *argv[] = {"lskvd", "--name", "n1", "--data-dir=/tmp/x",
                    "--listen-client-urls", "http://127.0.0.1:1,https://[::1]:2",
                    "--cert-file", "c.pem", "--key-file", "k.pem", "--snapshot-count=100"};
    ASSERT_EQ(parse(&c, 11, argv, errmsg), 0);
    ASSERT_STR_EQ(c.name, "n1");
    ASSERT_STR_EQ(c.data_dir, "/tmp/x");
    ASSERT_EQ(c.n_listen_client_urls, 2);
    ASSERT_STR_EQ(c.listen_client_urls[1], "https://[::1]:2");
    ASSERT_EQ(c.snapshot_count, 100);
    config_free(&c);
}

TEST(config, bad_values_name_flag_and_rule)
{
    struct config c;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    char *a1[] = {"lskvd", "--max-request-bytes", "-5"};
    ASSERT_EQ(parse(&c, 3, a1, errmsg), LSKV_EINVAL);
    ASSERT(strstr(errmsg, "--max-request-bytes=-5") != NULL);
    config_free(&c);
    /* Below 1 MiB no request of etcd's default size could ever be held. */
    char *ab[] = {"lskvd", "--max-buffered-request-bytes", "1000"};
    ASSERT_EQ(parse(&c, 3, ab, errmsg), LSKV_EINVAL);
    ASSERT(strstr(errmsg, "--max-buffered-request-bytes=1000") != NULL);
    config_free(&c);
    char *a2[] = {"lskvd", "--no-such-flag=1"};
    ASSERT_EQ(parse(&c, 2, a2, errmsg), LSKV_EINVAL);
    ASSERT(strstr(errmsg, "unknown flag") != NULL);
    config_free(&c);
    char *a3[] = {"lskvd", "--listen-client-urls", "https://127.0.0.1:1"};
    ASSERT_EQ(parse(&c, 3, a3, errmsg), LSKV_EINVAL);
    ASSERT(strstr(errmsg, "--cert-file") != NULL);
    config_free(&c);
    char *a4[] = {"lskvd", "--listen-client-urls", "tcp://x"};
    ASSERT_EQ(parse(&c, 3, a4, errmsg), LSKV_EINVAL);
    config_free(&c);
    char *a5[] = {"lskvd", "--log-level", "loud"};
    ASSERT_EQ(parse(&c, 3, a5, errmsg), LSKV_EINVAL);
    config_free(&c);
    char *a6[] = {"lskvd", "--max-txn-ops", "0"};
    ASSERT_EQ(parse(&c, 3, a6, errmsg), LSKV_EINVAL);
    ASSERT(strstr(errmsg, "--max-txn-ops=0") != NULL);
    config_free(&c);
}

/* Flags lskvd does not implement are refused, never accepted and ignored. */
TEST(config, cluster_flags_checked)
{
    struct config c;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    char *a1[] = {"lskvd", "--initial-cluster-state", "existing"};
    ASSERT_EQ(parse(&c, 3, a1, errmsg), LSKV_EINVAL); /* nobody to join through */
    ASSERT(strstr(errmsg, "names no other member") != NULL);
    config_free(&c);
    char *a0[] = {"lskvd", "--initial-cluster-state", "old"};
    ASSERT_EQ(parse(&c, 3, a0, errmsg), LSKV_EINVAL);
    ASSERT(strstr(errmsg, "must be 'new' or 'existing'") != NULL);
    config_free(&c);
    char *a5[] = {"lskvd", "--name", "a", "--initial-advertise-peer-urls", "http://h:1",
                  "--initial-cluster", "a=http://h:1,b=http://h:2",
                  "--initial-cluster-state", "existing"};
    ASSERT_EQ(parse(&c, 9, a5, errmsg), 0);
    ASSERT_STR_EQ(c.initial_cluster_state, "existing");
    config_free(&c);
    char *a2[] = {"lskvd", "--name", "a", "--initial-advertise-peer-urls", "http://h:1",
                  "--initial-cluster", "a=http://h:1,b=http://h:2"};
    ASSERT_EQ(parse(&c, 7, a2, errmsg), 0); /* a cluster of two */
    ASSERT_EQ(c.members.n, 2u);
    ASSERT_STR_EQ(c.members.m[c.members.self].name, "a");
    config_free(&c);
    char *a3[] = {"lskvd", "--name", "a", "--initial-advertise-peer-urls", "http://h:1",
                  "--initial-cluster", "b=http://h:1"};
    ASSERT_EQ(parse(&c, 7, a3, errmsg), LSKV_EINVAL);
    config_free(&c);
    char *a4[] = {"lskvd", "--name", "a", "--initial-advertise-peer-urls", "http://h:1",
                  "--initial-cluster", "a=http://h:1"};
    ASSERT_EQ(parse(&c, 7, a4, errmsg), 0);
    config_free(&c);
}

TEST(config, token_and_cluster_give_etcds_ids)
{
    struct config c;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    char *a[] = {"lskvd", "--name", "a", "--initial-cluster-token", "tok2",
                 "--initial-advertise-peer-urls", "http://127.0.0.1:25386,http://127.0.0.1:25385",
                 "--initial-cluster", "a=http://127.0.0.1:25385,a=http://127.0.0.1:25386"};
    ASSERT_EQ(parse(&c, 9, a, errmsg), 0);
    ASSERT(c.members.m[c.members.self].id == 0x01736c09848c5862ULL);
    ASSERT(c.members.cluster_id == 0xab2d585756325ee9ULL);
    config_free(&c);
    char *b[] = {"lskvd", "--name", "a", "--initial-advertise-peer-urls", "http://h:2",
                 "--initial-cluster", "a=http://h:1"};
    ASSERT_EQ(parse(&c, 7, b, errmsg), LSKV_EINVAL);
    ASSERT(strstr(errmsg, "--initial-cluster has a=http://h:1 but missing from "
                          "--initial-advertise-peer-urls=http://h:2") != NULL);
    config_free(&c);
}

TEST(config, listen_urls_name_ips_or_localhost_and_default_cluster)
{
    struct config c;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    char *a[] = {"lskvd", "--listen-client-urls", "http://example.com:1"};
    ASSERT_EQ(parse(&c, 3, a, errmsg), LSKV_EINVAL);
    ASSERT_STR_EQ(errmsg, "--listen-client-urls: expected IP in URL for binding "
                          "(http://example.com:1)");
    config_free(&c);
    char *ok[] = {"lskvd", "--listen-metrics-urls", "http://localhost:1,http://[::1]:2",
                  "--listen-peer-urls", "http://0.0.0.0:3"};
    ASSERT_EQ(parse(&c, 5, ok, errmsg), 0);
    config_free(&c);
    /* etcd keeps default=http://localhost:2380 for the default name: another
     * advertised URL then needs an --initial-cluster */
    char *d[] = {"lskvd", "--initial-advertise-peer-urls", "http://127.0.0.1:9"};
    ASSERT_EQ(parse(&c, 3, d, errmsg), LSKV_EINVAL);
    ASSERT(strstr(errmsg, "--initial-cluster has default=http://localhost:2380 but missing "
                          "from --initial-advertise-peer-urls=http://127.0.0.1:9") != NULL);
    config_free(&c);
}

/* etcd compares the URLs resolved when the strings differ, but leaves
 * localhost and IP addresses as they are; the ids come from
 * --initial-cluster's strings. */
TEST(config, advertised_urls_match_once_resolved)
{
    struct config c;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    char *a[] = {"lskvd", "--name", "a", "--initial-advertise-peer-urls", "http://127.0.0.1:7",
                 "--initial-cluster", "a=http://localhost:7"};
    ASSERT_EQ(parse(&c, 7, a, errmsg), LSKV_EINVAL);
    ASSERT(strstr(errmsg, "(resolved urls: \"http://127.0.0.1:7\" != \"http://localhost:7\")"));
    config_free(&c);
    /* this machine's name, when it resolves to an IPv4 address */
    char host[256], ip[INET_ADDRSTRLEN], cluster[400], adv[100];
    struct addrinfo hints = {.ai_family = AF_INET}, *res = NULL;
    if (gethostname(host, sizeof host) != 0 || getaddrinfo(host, NULL, &hints, &res) != 0)
        return;
    inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)res->ai_addr)->sin_addr, ip, sizeof ip);
    freeaddrinfo(res);
    snprintf(cluster, sizeof cluster, "a=http://%s:7", host);
    snprintf(adv, sizeof adv, "http://%s:7", ip);
    char *b[] = {"lskvd", "--name", "a", "--initial-advertise-peer-urls", adv,
                 "--initial-cluster", cluster};
    ASSERT_EQ(parse(&c, 7, b, errmsg), 0);
    char *urls[] = {cluster + 2};
    ASSERT(c.members.m[0].id == members_member_id((const char *const *)urls, 1, "etcd-cluster"));
    config_free(&c);
    snprintf(adv, sizeof adv, "http://%s:8", ip);
    ASSERT_EQ(parse(&c, 7, b, errmsg), LSKV_EINVAL);
    config_free(&c);
}

TEST(config, raft_timing_as_etcd_validates_it)
{
    struct config c;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    char *ok[] = {"lskvd", "--heartbeat-interval", "20", "--election-timeout=100"};
    ASSERT_EQ(parse(&c, 4, ok, errmsg), 0);
    ASSERT_EQ(c.heartbeat_interval_ms, 20);
    ASSERT_EQ(c.election_timeout_ms, 100);
    config_free(&c);
    char *five[] = {"lskvd", "--heartbeat-interval", "300"};
    ASSERT_EQ(parse(&c, 3, five, errmsg), LSKV_EINVAL);
    ASSERT_STR_EQ(errmsg, "--election-timeout[1000ms] should be at least as 5 times as "
                          "--heartbeat-interval[300ms]");
    config_free(&c);
    char *lng[] = {"lskvd", "--election-timeout", "50001"};
    ASSERT_EQ(parse(&c, 3, lng, errmsg), LSKV_EINVAL);
    ASSERT_STR_EQ(errmsg, "--election-timeout[50001ms] is too long, and should be set less "
                          "than 50000ms");
    config_free(&c);
}

TEST(config, logger_outputs_v2_and_peer_tls)
{
    struct config c;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    char *zap[] = {"lskvd", "--logger", "zap", "--log-outputs", "stderr", "--peer-auto-tls",
                   "--enable-v2=false", "--strict-reconfig-check=false",
                   "--experimental-initial-corrupt-check=true", "--force-new-cluster=false"};
    ASSERT_EQ(parse(&c, 10, zap, errmsg), 0);
    ASSERT(c.peer_auto_tls && !c.strict_reconfig_check);
    config_free(&c);
    static const struct {
        const char *flag, *value, *why;
    } bad[] = {
        {"--logger", "json", "unknown logger option \"json\""},
        {"--log-outputs", "stdout,stderr", "--logger=capnslog supports only 1 value"},
        {"--log-outputs", "/tmp/x.log", "unknown log-output \"/tmp/x.log\""},
        {"--enable-v2", "true", "--enable-v2=true: not supported by lskvd"},
        {"--peer-cert-file", "p.pem", "--peer-cert-file: needs --peer-key-file too"},
        {"--peer-client-cert-auth", "true", "--peer-client-cert-auth: needs --peer-cert-file"},
        {"--peer-trusted-ca-file", "ca.pem", "--peer-trusted-ca-file: needs --peer-cert-file"},
        {"--force-new-cluster", "true", "--force-new-cluster=true: not supported by lskvd"},
        {"--auth-token", "jwt2", "auth: invalid auth options"},
        {"--auth-token", "jwt,ttl", "auth: invalid auth options"},
        {"--auth-token", "jwt,ttl=1,ttl=2", "auth: invalid auth options"},
        {"--experimental-enable-lease-checkpoint", "true", "lease checkpoints"},
        {"--experimental-corrupt-check-time", "5x",
         "invalid value \"5x\" for flag -experimental-corrupt-check-time: parse error"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char arg[128]; /* --flag=value: Go's bools take no separate value */
        snprintf(arg, sizeof arg, "%s=%s", bad[i].flag, bad[i].value);
        char *a[] = {"lskvd", arg};
        ASSERT_EQ(parse(&c, 2, a, errmsg), LSKV_EINVAL);
        ASSERT(strstr(errmsg, bad[i].why) != NULL);
        config_free(&c);
    }
    char *cc[] = {"lskvd", "--experimental-corrupt-check-time=2m30s"};
    ASSERT_EQ(parse(&c, 2, cc, errmsg), 0);
    ASSERT_EQ(c.corrupt_check_ms, 150000);
    config_free(&c);
    char *dbg[] = {"lskvd", "--debug", "--max-wals=5", "--pre-vote=false"};
    ASSERT_EQ(parse(&c, 4, dbg, errmsg), 0);
    ASSERT_STR_EQ(c.log_level, "debug");
    config_free(&c);
    /* a bool-like refused flag alone means true */
    char *alone[] = {"lskvd", "--force-new-cluster"};
    ASSERT_EQ(parse(&c, 2, alone, errmsg), LSKV_EINVAL);
    config_free(&c);
}

TEST(config, etcd_environment_variables)
{
    struct config c;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    setenv("ETCD_NAME", "fromenv", 1);
    setenv("ETCD_HEARTBEAT_INTERVAL", "50", 1);
    setenv("ETCD_INITIAL_ADVERTISE_PEER_URLS", "http://h:9", 1);
    setenv("ETCD_NO_SUCH_FLAG", "1", 1); /* warned about, not fatal */
    char *none[] = {"lskvd"};
    ASSERT_EQ(parse(&c, 1, none, errmsg), 0);
    ASSERT_STR_EQ(c.name, "fromenv");
    ASSERT_STR_EQ(c.data_dir, "fromenv.lskv");
    ASSERT_EQ(c.heartbeat_interval_ms, 50);
    ASSERT_STR_EQ(c.initial_cluster, "fromenv=http://h:9");
    config_free(&c);
    /* a flag on the command line that an ETCD_ variable shadows: etcd's fatal text */
    char *flag[] = {"lskvd", "--name", "x"};
    ASSERT_EQ(parse(&c, 3, flag, errmsg), LSKV_EINVAL);
    ASSERT_STR_EQ(errmsg, "conflicting environment variable \"ETCD_NAME\" is shadowed by "
                          "corresponding command-line flag (either unset environment variable "
                          "or disable flag)");
    config_free(&c);
    setenv("ETCD_NAME", "", 1); /* empty: unused, yet it still conflicts (etcd) */
    ASSERT_EQ(parse(&c, 3, flag, errmsg), LSKV_EINVAL);
    config_free(&c);
    unsetenv("ETCD_NAME");
    setenv("ETCD_ELECTION_TIMEOUT", "soon", 1);
    ASSERT_EQ(parse(&c, 1, none, errmsg), LSKV_EINVAL);
    ASSERT(strstr(errmsg, "invalid value \"soon\" for ETCD_ELECTION_TIMEOUT") != NULL);
    config_free(&c);
    unsetenv("ETCD_ELECTION_TIMEOUT");
    unsetenv("ETCD_HEARTBEAT_INTERVAL");
    unsetenv("ETCD_INITIAL_ADVERTISE_PEER_URLS");
    unsetenv("ETCD_NO_SUCH_FLAG");
}

TEST(arena, alignment_and_large_blocks)
{
    struct arena a;
    arena_init(&a);
    for (int i = 1; i < 100; i++) {
        void *p = arena_alloc(&a, (size_t)i * 37);
        ASSERT(p != NULL);
        ASSERT_EQ((uintptr_t)p % 16, 0);
        memset(p, 0xab, (size_t)i * 37);
    }
    uint8_t *big = arena_calloc(&a, 1, 1 << 20);
    ASSERT(big != NULL);
    ASSERT_EQ(big[(1 << 20) - 1], 0);
    ASSERT(arena_calloc(&a, SIZE_MAX / 2, 4) == NULL);
    arena_close(&a);
}

TEST(config, auth_flags)
{
    struct config c;
    char errmsg[LSKV_ERRMSG_SIZE];
    char *def[] = {"lskvd"};
    ASSERT_EQ(parse(&c, 1, def, errmsg), 0);
    ASSERT_EQ(c.auth_token_ttl, 300); /* etcd's defaults */
    ASSERT_EQ(c.bcrypt_cost, 10);
    config_free(&c);
    char *set[] = {"lskvd", "--auth-token", "simple", "--auth-token-ttl", "2",
                   "--bcrypt-cost", "4"};
    ASSERT_EQ(parse(&c, 7, set, errmsg), 0);
    ASSERT_EQ(c.auth_token_ttl, 2);
    ASSERT_EQ(c.bcrypt_cost, 4);
    config_free(&c);
    char *bad[] = {"lskvd", "--bcrypt-cost", "3"};
    ASSERT_EQ(parse(&c, 3, bad, errmsg), LSKV_EINVAL);
    ASSERT(strstr(errmsg, "bcrypt-cost") != NULL);
    config_free(&c);
}

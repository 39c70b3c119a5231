#include <stdio.h>

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
    ASSERT_STR_EQ(c.listen_client_urls[0], "http://127.0.0.1:2379");
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
TEST(config, unimplemented_cluster_flags_refused)
{
    struct config c;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    char *a1[] = {"lskvd", "--initial-cluster-state", "existing"};
    ASSERT_EQ(parse(&c, 3, a1, errmsg), LSKV_EINVAL);
    ASSERT(strstr(errmsg, "not implemented") != NULL);
    config_free(&c);
    char *a2[] = {"lskvd", "--name", "a", "--initial-advertise-peer-urls", "http://h:1",
                  "--initial-cluster", "a=http://h:1,b=http://h:2"};
    ASSERT_EQ(parse(&c, 7, a2, errmsg), LSKV_EINVAL);
    ASSERT(strstr(errmsg, "multi-member clusters are not implemented") != NULL);
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

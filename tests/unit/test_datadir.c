#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/err.h"
#include "config/datadir.h"
#include "crypto/mac.h"
#include "runner.h"

static void path_of(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", test_tmpdir(), name);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    fputs(text, f);
    fclose(f);
}

static const uint8_t KEY[DATADIR_KEY_BYTES] = {1, 2, 3};

TEST(datadir, missing_or_empty_is_fresh_anything_else_is_not)
{
    char p[512], errmsg[LSKV_ERRMSG_SIZE] = "";
    struct datadir d;
    path_of(p, sizeof p, "dd");
    ASSERT_EQ(datadir_open(&d, p, errmsg), 0);
    ASSERT(d.fresh);
    struct stat st;
    ASSERT_EQ(stat(p, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0700);
    ASSERT_EQ(datadir_open(&d, p, errmsg), 0); /* exists, empty */
    ASSERT(d.fresh);
    char f[600];
    snprintf(f, sizeof f, "%s/anything", p);
    write_text(f, "x");
    ASSERT_EQ(datadir_open(&d, p, errmsg), 0);
    ASSERT(!d.fresh);
}

/* The lock file made by the first open does not make a dir non-empty. */
TEST(datadir, lock_file_keeps_an_empty_dir_fresh)
{
    char p[512], f[600], errmsg[LSKV_ERRMSG_SIZE] = "";
    struct datadir d;
    path_of(p, sizeof p, "dd");
    ASSERT_EQ(mkdir(p, 0700), 0);
    ASSERT_EQ(datadir_open(&d, p, errmsg), 0);
    ASSERT(d.fresh);
    snprintf(f, sizeof f, "%s/" DATADIR_LOCK_FILE, p);
    struct stat st;
    ASSERT_EQ(stat(f, &st), 0);
    ASSERT_EQ(st.st_size, 0);
    datadir_close(&d);
    ASSERT_EQ(datadir_open(&d, p, errmsg), 0);
    ASSERT(d.fresh);
    datadir_close(&d);
}

/* A second process is refused at once, naming the holder; the lock file is
 * not changed by it; after the holder lets go, the dir opens again. */
TEST(datadir, second_process_is_refused_naming_the_holder)
{
    char p[512], f[600], errmsg[LSKV_ERRMSG_SIZE] = "";
    struct datadir d;
    path_of(p, sizeof p, "dd");
    ASSERT_EQ(datadir_open(&d, p, errmsg), 0);
    snprintf(f, sizeof f, "%s/" DATADIR_LOCK_FILE, p);
    struct stat before, after;
    ASSERT_EQ(stat(f, &before), 0);
    pid_t child = fork();
    ASSERT(child >= 0);
    if (child == 0) {
        struct datadir d2;
        char msg[LSKV_ERRMSG_SIZE] = "";
        int rv = datadir_open(&d2, p, msg);
        char want[128];
        snprintf(want, sizeof want, "locked by another lskvd (pid %ld)", (long)getppid());
        _exit(rv == -EAGAIN && strstr(msg, want) != NULL && strstr(msg, p) == msg ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    ASSERT_EQ(stat(f, &after), 0);
    ASSERT_EQ(after.st_size, 0);
    ASSERT_EQ(after.st_mtime, before.st_mtime);
    datadir_close(&d);
    child = fork();
    ASSERT(child >= 0);
    if (child == 0) {
        struct datadir d2;
        char msg[LSKV_ERRMSG_SIZE] = "";
        _exit(datadir_open(&d2, p, msg) == 0 ? 0 : 1);
    }
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static const struct datadir_ids FRESH_IDS = {0x1234, 0x5678};

TEST(datadir, a_fresh_dir_makes_ids_and_keys_once)
{
    char p[512], errmsg[LSKV_ERRMSG_SIZE] = "";
    struct datadir d;
    path_of(p, sizeof p, "dd");
    ASSERT_EQ(datadir_open(&d, p, errmsg), 0);
    uint8_t key[32], key2[32];
    bool created = false;
    ASSERT_EQ(datadir_load_secret(&d, "data.key", key, sizeof key, &created, errmsg), 0);
    ASSERT(created);
    struct datadir_ids ids, ids2;
    /* A fresh dir takes the ids it is given (etcd's, derived from flags). */
    struct datadir_ids derived = {0xcdf818194e3a8c32u, 0x8e9e05c52164694du};
    ASSERT_EQ(datadir_load_ids(&d, key, &derived, &ids, &created, errmsg), 0);
    ASSERT(created);
    ASSERT_EQ(ids.cluster_id, 0xcdf818194e3a8c32u);
    ASSERT_EQ(ids.member_id, 0x8e9e05c52164694du);

    /* Reopened: not fresh, the same values, nothing made. */
    ASSERT_EQ(datadir_open(&d, p, errmsg), 0);
    ASSERT(!d.fresh);
    ASSERT_EQ(datadir_load_secret(&d, "data.key", key2, sizeof key2, &created, errmsg), 0);
    ASSERT(!created);
    ASSERT_MEM_EQ(key, key2, sizeof key);
    /* An existing dir keeps its ids, whatever the flags derive now. */
    struct datadir_ids other_flags = {1, 2};
    ASSERT_EQ(datadir_load_ids(&d, key, &other_flags, &ids2, &created, errmsg), 0);
    ASSERT(!created);
    ASSERT_EQ(ids.cluster_id, ids2.cluster_id);
    ASSERT_EQ(ids.member_id, ids2.member_id);

    /* A missing secret is refused, named, and not made. */
    char f[600];
    snprintf(f, sizeof f, "%s/ledger.secret", p);
    ASSERT_EQ(datadir_load_secret(&d, "ledger.secret", key2, sizeof key2, &created, errmsg),
              LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, f) != NULL);
    ASSERT(strstr(errmsg, "missing in a non-empty data dir") != NULL);
    ASSERT(access(f, F_OK) != 0);
}

TEST(datadir, missing_ids_in_a_non_empty_dir_is_refused)
{
    char p[512], f[600], errmsg[LSKV_ERRMSG_SIZE] = "";
    struct datadir d;
    path_of(p, sizeof p, "dd");
    ASSERT_EQ(mkdir(p, 0700), 0);
    snprintf(f, sizeof f, "%s/data.key", p);
    write_text(f, "x");
    ASSERT_EQ(datadir_open(&d, p, errmsg), 0);
    struct datadir_ids ids;
    ASSERT_EQ(datadir_load_ids(&d, KEY, &FRESH_IDS, &ids, NULL, errmsg), LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, "/ids: missing in a non-empty data dir") != NULL);
    snprintf(f, sizeof f, "%s/ids", p);
    ASSERT(access(f, F_OK) != 0);
}

TEST(datadir, check_complete_names_the_first_missing)
{
    char p[512], f[600], errmsg[LSKV_ERRMSG_SIZE] = "";
    struct datadir d;
    path_of(p, sizeof p, "dd");
    ASSERT_EQ(mkdir(p, 0700), 0);
    const char *files[] = {"ids", "data.key", "identity/service.pem", "identity/service.key",
                           "identity/node.pem", "identity/node.key", "ledger.secret"};
    const char *dirs[] = {"identity", "ledger", "engine", "raft"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(f, sizeof f, "%s/%s", p, dirs[i]);
        ASSERT_EQ(mkdir(f, 0700), 0);
    }
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(f, sizeof f, "%s/%s", p, files[i]);
        write_text(f, "x");
    }
    snprintf(f, sizeof f, "%s/raft/metadata2", p);
    write_text(f, "x");
    ASSERT_EQ(datadir_open(&d, p, errmsg), 0);
    ASSERT_EQ(datadir_check_complete(&d, errmsg), 0);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(f, sizeof f, "%s/%s", p, files[i]);
        char moved[620];
        snprintf(moved, sizeof moved, "%s.away", f);
        ASSERT_EQ(rename(f, moved), 0);
        ASSERT_EQ(datadir_check_complete(&d, errmsg), LSKV_ECORRUPT);
        char want[700];
        snprintf(want, sizeof want, "%s: missing in a non-empty data dir", f);
        ASSERT_STR_EQ(errmsg, want);
        ASSERT_EQ(rename(moved, f), 0);
    }
    /* raft_uv keeps metadata1 or metadata2 (or both). */
    char m1[600], m2[600];
    snprintf(m1, sizeof m1, "%s/raft/metadata1", p);
    snprintf(m2, sizeof m2, "%s/raft/metadata2", p);
    ASSERT_EQ(rename(m2, m1), 0);
    ASSERT_EQ(datadir_check_complete(&d, errmsg), 0);
    ASSERT_EQ(unlink(m1), 0);
    ASSERT_EQ(datadir_check_complete(&d, errmsg), LSKV_ECORRUPT);
    char want[700];
    snprintf(want, sizeof want, "%s: missing in a non-empty data dir", m1);
    ASSERT_STR_EQ(errmsg, want);
    snprintf(f, sizeof f, "%s/raft", p);
    ASSERT_EQ(rmdir(f), 0);
    ASSERT_EQ(datadir_check_complete(&d, errmsg), LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, "/raft: missing") != NULL);
}

TEST(datadir, changed_ids_or_key_do_not_match)
{
    char p[512], f[600], errmsg[LSKV_ERRMSG_SIZE] = "";
    struct datadir d;
    path_of(p, sizeof p, "dd");
    ASSERT_EQ(datadir_open(&d, p, errmsg), 0);
    struct datadir_ids ids;
    ASSERT_EQ(datadir_load_ids(&d, KEY, &FRESH_IDS, &ids, NULL, errmsg), 0);
    ASSERT_EQ(datadir_open(&d, p, errmsg), 0);

    uint8_t other[DATADIR_KEY_BYTES] = {1, 2, 4};
    ASSERT_EQ(datadir_load_ids(&d, other, &FRESH_IDS, &ids, NULL, errmsg), LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, "does not match this data dir") != NULL);

    /* The same tag over a flipped cluster id, then member id. */
    uint8_t tag[DATADIR_TAG_BYTES];
    char text[DATADIR_IDS_TEXT_BYTES + 1] = "";
    ASSERT_EQ(datadir_ids_tag(KEY, &ids, tag), 0);
    snprintf(f, sizeof f, "%s/ids", p);
    for (int which = 0; which < 2; which++) {
        struct datadir_ids changed = ids;
        if (which == 0)
            changed.cluster_id ^= 1;
        else
            changed.member_id ^= 0x100;
        datadir_ids_format(&changed, tag, text);
        write_text(f, text);
        ASSERT_EQ(datadir_load_ids(&d, KEY, &FRESH_IDS, &changed, NULL, errmsg), LSKV_ECORRUPT);
        ASSERT(strstr(errmsg, "/ids: does not match this data dir") != NULL);
    }
    datadir_ids_format(&ids, tag, text);
    write_text(f, text);
    struct datadir_ids back;
    ASSERT_EQ(datadir_load_ids(&d, KEY, &FRESH_IDS, &back, NULL, errmsg), 0);
    ASSERT_EQ(back.cluster_id, ids.cluster_id);
}

TEST(datadir, ids_parse_is_exact)
{
    struct datadir_ids ids = {0x0123456789abcdefULL, 0xfedcba9876543210ULL}, got;
    uint8_t tag[DATADIR_TAG_BYTES], tag2[DATADIR_TAG_BYTES];
    for (size_t i = 0; i < sizeof tag; i++)
        tag[i] = (uint8_t)(i * 7);
    char text[DATADIR_IDS_TEXT_BYTES + 8];
    datadir_ids_format(&ids, tag, text);
    ASSERT_EQ(datadir_ids_parse(text, DATADIR_IDS_TEXT_BYTES, &got, tag2), 0);
    ASSERT_EQ(got.cluster_id, ids.cluster_id);
    ASSERT_EQ(got.member_id, ids.member_id);
    ASSERT_MEM_EQ(tag, tag2, sizeof tag);
    ASSERT(strncmp(text, "cluster_id=0123456789abcdef\nmember_id=fedcba9876543210\ntag=", 59) == 0);
    /* One byte more or less, an upper-case digit, a zero id: refused. */
    ASSERT_EQ(datadir_ids_parse(text, DATADIR_IDS_TEXT_BYTES - 1, &got, tag2), LSKV_ECORRUPT);
    text[DATADIR_IDS_TEXT_BYTES] = '\n';
    ASSERT_EQ(datadir_ids_parse(text, DATADIR_IDS_TEXT_BYTES + 1, &got, tag2), LSKV_ECORRUPT);
    text[20] = 'A';
    ASSERT_EQ(datadir_ids_parse(text, DATADIR_IDS_TEXT_BYTES, &got, tag2), LSKV_ECORRUPT);
    struct datadir_ids zero = {0, 1};
    datadir_ids_format(&zero, tag, text);
    ASSERT_EQ(datadir_ids_parse(text, DATADIR_IDS_TEXT_BYTES, &got, tag2), LSKV_ECORRUPT);
}

TEST(datadir, hmac_sha256_matches_rfc4231)
{
    /* RFC 4231 test case 2. */
    uint8_t out[MAC_BYTES];
    static const uint8_t want[MAC_BYTES] = {
        0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24,
        0x26, 0x08, 0x95, 0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27,
        0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43};
    ASSERT_EQ(mac_hmac_sha256((const uint8_t *)"Jefe", 4, "what do ya want for nothing?", 28,
                              out),
              0);
    ASSERT_MEM_EQ(out, want, sizeof out);
    ASSERT(mac_equal(out, want));
    out[31] ^= 1;
    ASSERT(!mac_equal(out, want));
}

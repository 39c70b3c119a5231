#include <stdio.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "crypto/keyfile.h"
#include "runner.h"

TEST(keyfile, create_then_load_same_key_0600)
{
    char path[512];
    snprintf(path, sizeof path, "%s/data.key", test_tmpdir());
    uint8_t k1[32], k2[32];
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    bool created = false;
    ASSERT_EQ(keyfile_load_or_create(path, k1, sizeof k1, true, &created, errmsg), 0);
    ASSERT(created);
    struct stat st;
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600);
    ASSERT_EQ(st.st_size, 32);
    ASSERT_EQ(keyfile_load_or_create(path, k2, sizeof k2, true, &created, errmsg), 0);
    ASSERT(!created);
    ASSERT_MEM_EQ(k1, k2, sizeof k1);
}

TEST(keyfile, refuses_loose_mode_wrong_size_and_missing)
{
    char path[512];
    snprintf(path, sizeof path, "%s/data.key", test_tmpdir());
    uint8_t k[32];
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    ASSERT_EQ(keyfile_load_or_create(path, k, sizeof k, false, NULL, errmsg), -ENOENT);
    ASSERT_EQ(keyfile_load_or_create(path, k, sizeof k, true, NULL, errmsg), 0);
    ASSERT_EQ(chmod(path, 0644), 0);
    ASSERT_EQ(keyfile_load_or_create(path, k, sizeof k, true, NULL, errmsg), LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, "0600") != NULL);
    ASSERT_EQ(chmod(path, 0600), 0);
    ASSERT_EQ(truncate(path, 16), 0);
    ASSERT_EQ(keyfile_load_or_create(path, k, sizeof k, true, NULL, errmsg), LSKV_ECORRUPT);
    ASSERT(strstr(errmsg, "exactly 32 bytes") != NULL);
}

/* A small test runner with honest assertions (after libuv's test/task.h).
 *
 * TEST(suite, name) { ... } registers a test. Each test runs in its own
 * process with a timeout (LSKV_TEST_TIMEOUT_S, default 20 s); a crash, a
 * failed assertion or a timeout fails it. Output is TAP, then a closing line
 * "N passed, N failed". Arguments filter tests by substring of "suite.name". */
#ifndef LSKV_TESTS_RUNNER_H
#define LSKV_TESTS_RUNNER_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*test_fn)(void);
void test_register(const char *suite, const char *name, test_fn fn);

#define TEST(suite, name)                                                  \
    static void test_##suite##_##name(void);                               \
    __attribute__((constructor)) static void register_##suite##_##name(void) \
    {                                                                      \
        test_register(#suite, #name, test_##suite##_##name);               \
    }                                                                      \
    static void test_##suite##_##name(void)

#define TEST_FAIL(...)                                                     \
    do {                                                                   \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                    \
        fprintf(stderr, __VA_ARGS__);                                      \
        fprintf(stderr, "\n");                                             \
        abort();                                                           \
    } while (0)

#define ASSERT(cond)                                                       \
    do {                                                                   \
        if (!(cond))                                                       \
            TEST_FAIL("assertion failed: %s", #cond);                      \
    } while (0)

#define ASSERT_INT_OP(a, op, b)                                            \
    do {                                                                   \
        intmax_t a_ = (intmax_t)(a), b_ = (intmax_t)(b);                   \
        if (!(a_ op b_))                                                   \
            TEST_FAIL("%s %s %s: %jd vs %jd", #a, #op, #b, a_, b_);        \
    } while (0)
#define ASSERT_EQ(a, b) ASSERT_INT_OP(a, ==, b)
#define ASSERT_NE(a, b) ASSERT_INT_OP(a, !=, b)
#define ASSERT_LT(a, b) ASSERT_INT_OP(a, <, b)
#define ASSERT_LE(a, b) ASSERT_INT_OP(a, <=, b)
#define ASSERT_GT(a, b) ASSERT_INT_OP(a, >, b)
#define ASSERT_GE(a, b) ASSERT_INT_OP(a, >=, b)

#define ASSERT_STR_EQ(a, b)                                                \
    do {                                                                   \
        const char *a_ = (a), *b_ = (b);                                   \
        if (strcmp(a_, b_) != 0)                                           \
            TEST_FAIL("%s == %s: \"%s\" vs \"%s\"", #a, #b, a_, b_);       \
    } while (0)

#define ASSERT_MEM_EQ(a, b, n)                                             \
    do {                                                                   \
        if (memcmp((a), (b), (n)) != 0)                                    \
            TEST_FAIL("%s == %s: %zu bytes differ", #a, #b, (size_t)(n));  \
    } while (0)

/* A fresh temporary directory for this test (removed by the runner). */
const char *test_tmpdir(void);
/* A TCP port on 127.0.0.1 that was free a moment ago. */
int test_free_port(void);

#endif

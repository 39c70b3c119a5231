#include "runner.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct test_case {
    const char *suite;
    const char *name;
    test_fn fn;
};

static struct test_case tests[1024];
static size_t n_tests;
static char tmpdir[256];

void test_register(const char *suite, const char *name, test_fn fn)
{
    if (n_tests == sizeof tests / sizeof tests[0]) {
        fprintf(stderr, "too many tests\n");
        exit(2);
    }
    tests[n_tests++] = (struct test_case){suite, name, fn};
}

int test_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    ASSERT_EQ(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ASSERT_EQ(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    close(fd);
    return ntohs(a.sin_port);
}

const char *test_tmpdir(void)
{
    return tmpdir;
}

static bool selected(const struct test_case *t, int argc, char **argv)
{
    if (argc < 2)
        return true;
    char full[256];
    snprintf(full, sizeof full, "%s.%s", t->suite, t->name);
    for (int i = 1; i < argc; i++)
        if (strstr(full, argv[i]) != NULL)
            return true;
    return false;
}

/* Runs one test in a child; returns true when it exited 0 in time. */
static bool run_one(const struct test_case *t, unsigned timeout_s)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/lskv-test-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return false;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(timeout_s);
        t->fn();
        exit(0);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
        fprintf(stderr, "# %s.%s: timed out after %u s\n", t->suite, t->name, timeout_s);
    else if (WIFSIGNALED(status))
        fprintf(stderr, "# %s.%s: killed by signal %d\n", t->suite, t->name,
                WTERMSIG(status));
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

int main(int argc, char **argv)
{
    const char *env = getenv("LSKV_TEST_TIMEOUT_S");
    unsigned timeout_s = env ? (unsigned)atoi(env) : 20;
    size_t n_selected = 0, passed = 0, failed = 0;
    for (size_t i = 0; i < n_tests; i++)
        n_selected += selected(&tests[i], argc, argv);
    printf("TAP version 13\n1..%zu\n", n_selected);
    size_t k = 0;
    for (size_t i = 0; i < n_tests; i++) {
        if (!selected(&tests[i], argc, argv))
            continue;
        bool ok = run_one(&tests[i], timeout_s);
        printf("%s %zu - %s.%s\n", ok ? "ok" : "not ok", ++k, tests[i].suite,
               tests[i].name);
        fflush(stdout);
        ok ? passed++ : failed++;
    }
    printf("%zu passed, %zu failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}

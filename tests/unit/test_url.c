/* Tests for common/url.c, the one URL parser (listeners, peers, clients). */
#include "common/err.h"
#include "common/url.h"
#include "runner.h"

TEST(url, parses_etcd_style_urls)
{
    char errmsg[LSKV_ERRMSG_SIZE];
    struct url u;
    ASSERT_EQ(url_parse("http://127.0.0.1:2379", 0, &u, errmsg), 0);
    ASSERT(!u.tls);
    ASSERT_STR_EQ(u.host, "127.0.0.1");
    ASSERT_EQ(u.port, 2379);
    ASSERT_STR_EQ(u.hostport, "127.0.0.1:2379");
    ASSERT_EQ(url_parse("https://[::1]:0", 0, &u, errmsg), 0);
    ASSERT(u.tls);
    ASSERT_STR_EQ(u.host, "::1");
    ASSERT_EQ(u.port, 0);
    ASSERT_STR_EQ(u.hostport, "[::1]:0");
    ASSERT_EQ(url_parse("http://localhost:2379/", 0, &u, errmsg), 0);
    ASSERT_STR_EQ(u.host, "localhost");
    /* etcdctl's bare endpoints, where the caller allows them */
    ASSERT_EQ(url_parse("127.0.0.1:2379", URL_SCHEME_OPTIONAL, &u, errmsg), 0);
    ASSERT(!u.tls);
    ASSERT_EQ(u.port, 2379);
    ASSERT_EQ(url_parse("127.0.0.1:2379", 0, &u, errmsg), LSKV_EINVAL);
    const char *bad[] = {"ftp://a:1",     "http://a",      "http://:1",    "http://a:99999",
                         "http://a:12x",  "http://::1:5",  "http://[::1]5", "http://a:1/x",
                         "http://a:1?q",  "http://u@a:1",  "",              "http://a:1#f"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (url_parse(bad[i], URL_SCHEME_OPTIONAL, &u, errmsg) != LSKV_EINVAL)
            TEST_FAIL("accepted %s", bad[i]);
    }
}

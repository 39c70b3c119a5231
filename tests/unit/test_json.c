/* JSON <-> protobuf converter (http/json.c), gateway routing and HTTP/1
 * formatting (http/gateway.c), the HTTP/1 request parser (http/http1.c). */
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "http/gateway.h"
#include "http/http1.h"
#include "http/json.h"
#include "proto/rpc.pb-c.h"
#include "runner.h"

/* JSON text -> packed -> unpacked message (caller frees with free_unpacked). */
static ProtobufCMessage *from_json(const ProtobufCMessageDescriptor *d, const char *text,
                                   int *rv, char *errmsg)
{
    uint8_t *pb = NULL;
    size_t len = 0;
    errmsg[0] = '\0';
    *rv = json_to_pb(d, text, strlen(text), &pb, &len, errmsg);
    if (*rv != 0)
        return NULL;
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, pb);
    free(pb);
    return m;
}

static char *to_json(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n + 1);
    protobuf_c_message_pack(m, buf);
    char *out = NULL;
    size_t out_len = 0;
    int rv = json_from_pb(m->descriptor, buf, n, &out, &out_len);
    free(buf);
    return rv == 0 ? out : NULL;
}

/* Expects json_to_pb to fail on text with exactly this message. */
static void expect_error(const ProtobufCMessageDescriptor *d, const char *text, const char *want)
{
    char errmsg[LSKV_ERRMSG_SIZE];
    int rv;
    ProtobufCMessage *m = from_json(d, text, &rv, errmsg);
    if (m != NULL)
        protobuf_c_message_free_unpacked(m, NULL);
    ASSERT_EQ(rv, LSKV_EINVAL);
    ASSERT_STR_EQ(errmsg, want);
}

TEST(json, range_request_fields)
{
    char errmsg[LSKV_ERRMSG_SIZE];
    int rv;
    Etcdserverpb__RangeRequest *r = (Etcdserverpb__RangeRequest *)from_json(
        &etcdserverpb__range_request__descriptor,
        "{\"key\":\"Zm9v\",\"range_end\":\"Zm9w\",\"limit\":\"10\",\"revision\":7,"
        "\"sort_order\":\"DESCEND\",\"sortTarget\":\"MOD\",\"serializable\":true,"
        "\"min_mod_revision\":\" -3 \",\"unknown\":{\"x\":[1,2]},\"count_only\":null}",
        &rv, errmsg);
    ASSERT_EQ(rv, 0);
    ASSERT(r != NULL);
    ASSERT_EQ(r->key.len, 3);
    ASSERT_MEM_EQ(r->key.data, "foo", 3);
    ASSERT_MEM_EQ(r->range_end.data, "fop", 3);
    ASSERT_EQ(r->limit, 10);
    ASSERT_EQ(r->revision, 7);
    ASSERT_EQ(r->sort_order, ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND);
    ASSERT_EQ(r->sort_target, ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD);
    ASSERT_EQ(r->serializable, 1);
    ASSERT_EQ(r->min_mod_revision, -3);
    ASSERT_EQ(r->count_only, 0);
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

TEST(json, empty_null_and_trailing_bytes)
{
    char errmsg[LSKV_ERRMSG_SIZE];
    int rv;
    const char *texts[] = {"", "  \n", "null", "{}", "{\"key\":\"Zm9v\"} trailing junk"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        Etcdserverpb__RangeRequest *r = (Etcdserverpb__RangeRequest *)from_json(
            &etcdserverpb__range_request__descriptor, texts[i], &rv, errmsg);
        ASSERT_EQ(rv, 0);
        ASSERT(r != NULL);
        ASSERT_EQ(r->key.len, i == 4 ? 3u : 0u);
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
}

TEST(json, txn_round_trip_with_oneofs)
{
    const char *text =
        "{\"compare\":[{\"result\":\"NOT_EQUAL\",\"target\":\"VERSION\",\"key\":\"YQ==\","
        "\"version\":\"0\"},{\"target\":\"VALUE\",\"key\":\"Yg==\",\"value\":\"\"}],"
        "\"success\":[{\"request_put\":{\"key\":\"YQ==\",\"value\":\"PD4m\"}},"
        "{\"request_range\":{\"key\":\"YQ==\"}}],"
        "\"failure\":[{\"requestDeleteRange\":{\"key\":\"YQ==\",\"prev_kv\":true}}]}";
    char errmsg[LSKV_ERRMSG_SIZE];
    int rv;
    ProtobufCMessage *m = from_json(&etcdserverpb__txn_request__descriptor, text, &rv, errmsg);
    ASSERT_EQ(rv, 0);
    Etcdserverpb__TxnRequest *t = (Etcdserverpb__TxnRequest *)m;
    ASSERT_EQ(t->n_compare, 2);
    ASSERT_EQ(t->compare[0]->target_union_case, ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION);
    ASSERT_EQ(t->compare[1]->target_union_case, ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE);
    ASSERT_EQ(t->n_success, 2);
    ASSERT_EQ(t->success[0]->request_case, ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT);
    ASSERT_EQ(t->failure[0]->request_case,
              ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE);
    /* Output: proto names, declaration order, set oneof members even when
     * zero ("version":"0", "value":""), zero scalars and enums omitted
     * (target VERSION is 0). */
    char *out = to_json(m);
    ASSERT(out != NULL);
    ASSERT_STR_EQ(out,
                  "{\"compare\":[{\"result\":\"NOT_EQUAL\",\"key\":\"YQ==\","
                  "\"version\":\"0\"},{\"target\":\"VALUE\",\"key\":\"Yg==\",\"value\":\"\"}],"
                  "\"success\":[{\"request_put\":{\"key\":\"YQ==\",\"value\":\"PD4m\"}},"
                  "{\"request_range\":{\"key\":\"YQ==\"}}],"
                  "\"failure\":[{\"request_delete_range\":{\"key\":\"YQ==\",\"prev_kv\":true}}]}");
    /* And back: the same bytes. */
    ProtobufCMessage *m2 = from_json(&etcdserverpb__txn_request__descriptor, out, &rv, errmsg);
    ASSERT_EQ(rv, 0);
    char *out2 = to_json(m2);
    ASSERT_STR_EQ(out, out2);
    free(out);
    free(out2);
    protobuf_c_message_free_unpacked(m, NULL);
    protobuf_c_message_free_unpacked(m2, NULL);
}

TEST(json, response_shape_as_etcd)
{
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    h.cluster_id = 15118495548433857066ull;
    h.member_id = 1;
    h.revision = 2;
    h.raft_term = 0; /* omitted */
    Mvccpb__KeyValue kv = MVCCPB__KEY_VALUE__INIT;
    kv.key.data = (uint8_t *)"foo";
    kv.key.len = 3;
    kv.create_revision = 2;
    kv.mod_revision = 2;
    kv.version = 1;
    Mvccpb__KeyValue *kvs[1] = {&kv};
    Etcdserverpb__RangeResponse r = ETCDSERVERPB__RANGE_RESPONSE__INIT;
    r.header = &h;
    r.kvs = kvs;
    r.n_kvs = 1;
    r.count = 1;
    char *out = to_json(&r.base);
    ASSERT_STR_EQ(out, "{\"header\":{\"cluster_id\":\"15118495548433857066\",\"member_id\":\"1\","
                       "\"revision\":\"2\"},\"kvs\":[{\"key\":\"Zm9v\",\"create_revision\":\"2\","
                       "\"mod_revision\":\"2\",\"version\":\"1\"}],\"count\":\"1\"}");
    free(out);
    /* camelCase .proto names stay as they are; uint32 is a number; strings
     * escaped as Go does. */
    Etcdserverpb__StatusResponse st = ETCDSERVERPB__STATUS_RESPONSE__INIT;
    st.version = (char *)"<3.4&\"\n\x01\xff";
    st.dbsize = 20480;
    char *o2 = to_json(&st.base);
    ASSERT_STR_EQ(o2, "{\"version\":\"\\u003c3.4\\u0026\\\"\\n\\u0001\\ufffd\",\"dbSize\":\"20480\"}");
    free(o2);
    Etcdserverpb__HashResponse hr = ETCDSERVERPB__HASH_RESPONSE__INIT;
    hr.hash = 3739053080u;
    char *o3 = to_json(&hr.base);
    ASSERT_STR_EQ(o3, "{\"hash\":3739053080}");
    free(o3);
    Etcdserverpb__AlarmResponse ar = ETCDSERVERPB__ALARM_RESPONSE__INIT;
    char *o4 = to_json(&ar.base);
    ASSERT_STR_EQ(o4, "{}");
    free(o4);
}

TEST(json, go_error_texts)
{
    const ProtobufCMessageDescriptor *rr = &etcdserverpb__range_request__descriptor;
    expect_error(rr, "{\"key\":\"!!!\"}", "illegal base64 data at input byte 0");
    expect_error(rr, "{\"key\":\"Zm9\"}", "illegal base64 data at input byte 0");
    expect_error(rr, "{\"key\":\"Zm-_\"}", "illegal base64 data at input byte 2");
    expect_error(rr, "{\"key\":1}", "json: cannot unmarshal number into Go value of type []uint8");
    expect_error(rr, "{\"key\":", "unexpected EOF");
    expect_error(rr, "[]", "json: cannot unmarshal array into Go value of type "
                           "map[string]json.RawMessage");
    expect_error(rr, "{\"limit\":\"abc\"}", "invalid character 'a' looking for beginning of value");
    expect_error(rr, "{\"limit\":\"0x10\"}", "invalid character 'x' after top-level value");
    expect_error(rr, "{\"limit\":\"1.0\"}",
                 "json: cannot unmarshal number 1.0 into Go value of type int64");
    expect_error(rr, "{\"limit\":1.5}",
                 "json: cannot unmarshal number 1.5 into Go value of type int64");
    expect_error(rr, "{\"limit\":\"99999999999999999999\"}",
                 "json: cannot unmarshal number 99999999999999999999 into Go value of type int64");
    expect_error(rr, "{\"limit\":true}", "json: cannot unmarshal bool into Go value of type int64");
    expect_error(rr, "{\"serializable\":\"true\"}",
                 "json: cannot unmarshal string into Go value of type bool");
    expect_error(rr, "{\"sort_order\":\"NOPE\"}",
                 "unknown value \"NOPE\" for enum etcdserverpb.RangeRequest_SortOrder");
    const ProtobufCMessageDescriptor *tr = &etcdserverpb__txn_request__descriptor;
    expect_error(tr, "{\"compare\":1}",
                 "json: cannot unmarshal number into Go value of type []json.RawMessage");
    expect_error(tr, "{\"compare\":[1]}",
                 "json: cannot unmarshal number into Go value of type map[string]json.RawMessage");
    expect_error(&etcdserverpb__member_add_request__descriptor, "{\"peerURLs\":[1]}",
                 "json: cannot unmarshal number into Go value of type string");
    expect_error(&etcdserverpb__lease_grant_request__descriptor, "{\"TTL\":\"-1x\"}",
                 "invalid character 'x' after top-level value");
    /* Known difference: Go quotes the number as written ("1e3"). */
    expect_error(&etcdserverpb__hash_kvrequest__descriptor, "{\"revision\":1e3}",
                 "json: cannot unmarshal number 1000.0 into Go value of type int64");
}

TEST(json, int_ranges_and_unsigned)
{
    char errmsg[LSKV_ERRMSG_SIZE];
    int rv;
    /* uint64 from a string above INT64_MAX; negative uint64 refused. */
    Etcdserverpb__MemberRemoveRequest *m = (Etcdserverpb__MemberRemoveRequest *)from_json(
        &etcdserverpb__member_remove_request__descriptor, "{\"ID\":\"18446744073709551615\"}",
        &rv, errmsg);
    ASSERT_EQ(rv, 0);
    ASSERT(m->id == UINT64_MAX);
    char *out = to_json(&m->base);
    ASSERT_STR_EQ(out, "{\"ID\":\"18446744073709551615\"}");
    free(out);
    protobuf_c_message_free_unpacked(&m->base, NULL);
    expect_error(&etcdserverpb__member_remove_request__descriptor, "{\"ID\":\"-1\"}",
                 "json: cannot unmarshal number -1 into Go value of type uint64");
    /* int64 extremes. */
    Etcdserverpb__RangeRequest *r = (Etcdserverpb__RangeRequest *)from_json(
        &etcdserverpb__range_request__descriptor,
        "{\"revision\":\"-9223372036854775808\",\"limit\":9223372036854775807}", &rv, errmsg);
    ASSERT_EQ(rv, 0);
    ASSERT(r->revision == INT64_MIN);
    ASSERT(r->limit == INT64_MAX);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    /* Enums by number. */
    r = (Etcdserverpb__RangeRequest *)from_json(&etcdserverpb__range_request__descriptor,
                                                "{\"sort_order\":2}", &rv, errmsg);
    ASSERT_EQ(rv, 0);
    ASSERT_EQ(r->sort_order, 2);
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

TEST(json, base64_decoder_matches_go)
{
    uint8_t out[64];
    size_t bad = 0;
    ASSERT_EQ(json_base64_decode("Zm9v", 4, out, &bad), 3);
    ASSERT_EQ(json_base64_decode("Zm8=", 4, out, &bad), 2);
    ASSERT_EQ(json_base64_decode("Zg==", 4, out, &bad), 1);
    ASSERT_EQ(json_base64_decode("Zm9v\r\nYmFy\n", 11, out, &bad), 6);
    ASSERT_MEM_EQ(out, "foobar", 6);
    ASSERT_EQ(json_base64_decode("", 0, out, &bad), 0);
    ASSERT_EQ(json_base64_decode("Zg=", 3, out, &bad), -1);
    ASSERT_EQ(bad, 3);
    ASSERT_EQ(json_base64_decode("Zg==Zg==", 8, out, &bad), -1);
    ASSERT_EQ(bad, 4);
    ASSERT_EQ(json_base64_decode("Z===", 4, out, &bad), -1);
    ASSERT_EQ(bad, 1);
    ASSERT_EQ(json_base64_decode("Zm9vY", 5, out, &bad), -1);
    ASSERT_EQ(bad, 4);
}

TEST(json, bad_bytes_never_crash)
{
    /* Deep nesting, huge arrays of nulls, invalid UTF-8: errors or empty. */
    char deep[4096];
    size_t n = 0;
    n += (size_t)snprintf(deep, sizeof deep, "{\"success\":[");
    for (int i = 0; i < 100 && n + 40 < sizeof deep; i++)
        n += (size_t)snprintf(deep + n, sizeof deep - n, "{\"request_txn\":{\"success\":[");
    deep[n] = '\0';
    char errmsg[LSKV_ERRMSG_SIZE];
    uint8_t *pb = NULL;
    size_t len = 0;
    ASSERT_EQ(json_to_pb(&etcdserverpb__txn_request__descriptor, deep, n, &pb, &len, errmsg),
              LSKV_EINVAL);
    const char bad_utf8[] = "{\"key\":\"\xff\xfe\"}";
    ASSERT_EQ(json_to_pb(&etcdserverpb__range_request__descriptor, bad_utf8,
                         sizeof bad_utf8 - 1, &pb, &len, errmsg),
              LSKV_EINVAL);
    /* Garbage protobuf refuses to render. */
    char *out = NULL;
    const uint8_t junk[] = {0x0a, 0xff, 0xff};
    ASSERT_EQ(json_from_pb(&etcdserverpb__range_response__descriptor, junk, sizeof junk, &out,
                           &len),
              LSKV_ECORRUPT);
}

TEST(gateway, routes)
{
    struct gateway_route r;
    gateway_route("POST", "/v3/kv/range", &r);
    ASSERT_EQ(r.kind, GATEWAY_RPC);
    ASSERT_STR_EQ(r.rpc->method, "/etcdserverpb.KV/Range");
    ASSERT(r.rpc->request == &etcdserverpb__range_request__descriptor);
    gateway_route("POST", "/v3beta/kv/lease/timetolive?x=1", &r);
    ASSERT_EQ(r.kind, GATEWAY_RPC);
    ASSERT_STR_EQ(r.rpc->method, "/etcdserverpb.Lease/LeaseTimeToLive");
    gateway_route("POST", "/v3/maintenance/hash", &r);
    ASSERT_STR_EQ(r.rpc->method, "/etcdserverpb.Maintenance/Hash");
    gateway_route("GET", "/v3/kv/range", &r);
    ASSERT_EQ(r.kind, GATEWAY_BAD_METHOD);
    gateway_route("POST", "/v3/watch", &r);
    ASSERT_EQ(r.kind, GATEWAY_STREAMING);
    gateway_route("POST", "/v3/kv/range/", &r);
    ASSERT_EQ(r.kind, GATEWAY_NOT_FOUND);
    gateway_route("POST", "/v3alpha/kv/range", &r);
    ASSERT_EQ(r.kind, GATEWAY_NO_ROUTE);
    gateway_route("GET", "/health", &r);
    ASSERT_EQ(r.kind, GATEWAY_HEALTH);
    gateway_route("POST", "/version", &r);
    ASSERT_EQ(r.kind, GATEWAY_BAD_METHOD);
    gateway_route("GET", "/metrics", &r);
    ASSERT_EQ(r.kind, GATEWAY_METRICS);
    ASSERT(gateway_rpc_by_method("/etcdserverpb.KV/Put") != NULL);
    ASSERT(gateway_rpc_by_method("/nope/Nope") == NULL);
}

/* The spans json_next_value gives for text, joined by '|'. */
static void spans(const char *text, char *out, size_t size)
{
    size_t pos = 0, start = 0, end = 0, n = 0, len = strlen(text);
    out[0] = '\0';
    bool open_end = false;
    while (json_next_value(text, len, pos, &start, &end, &open_end)) {
        ASSERT(!open_end || end == len);
        ASSERT(start >= pos && end > start && end <= len);
        n += (size_t)snprintf(out + n, size - n, "%s%.*s", n ? "|" : "", (int)(end - start),
                              text + start);
        pos = end;
    }
}

TEST(json, next_value_splits_a_stream_body)
{
    static const char *const cases[][2] = {
        {"", ""},
        {" \r\n\t ", ""},
        {"{\"ID\":1}{\"ID\":\"2\"}\n {}", "{\"ID\":1}|{\"ID\":\"2\"}|{}"},
        /* Braces and escaped quotes inside strings do not count. */
        {"{\"k\":\"}\\\"{\"} [1,[2]]\"s\\\"\" 12 true",
         "{\"k\":\"}\\\"{\"}|[1,[2]]|\"s\\\"\"|12|true"},
        /* Not JSON: spans json_to_pb refuses; an open value runs to the end. */
        {"{\"ID\":1}} xx{\"a\":", "{\"ID\":1}|}|xx|{\"a\":"},
        {"\"open\\", "\"open\\"},
    };
    /* What may still grow when more bytes come (a body that arrives in
     * pieces). */
    static const struct {
        const char *text;
        bool open;
    } ends[] = {{"{\"a\":1}", false}, {"{\"a\":1", true}, {"\"s\\\"", true}, {"\"s\"", false},
                {"12", true}, {"12 ", false}, {"[1]]", false}, {"{\"a\":\"}\"", true}};
    for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++) {
        size_t start = 0, end = 0;
        bool open_end = !ends[i].open;
        ASSERT(json_next_value(ends[i].text, strlen(ends[i].text), 0, &start, &end, &open_end));
        ASSERT_EQ(open_end, ends[i].open);
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char got[256];
        spans(cases[i][0], got, sizeof got);
        ASSERT_STR_EQ(got, cases[i][1]);
    }
}

TEST(gateway, stream_pieces)
{
    size_t len = 0;
    char *e = gateway_stream_error(12, "unknown method Snapshot for service x", &len);
    ASSERT_STR_EQ(e, "{\"error\":{\"grpc_code\":12,\"http_code\":501,\"message\":"
                     "\"unknown method Snapshot for service x\",\"http_status\":"
                     "\"Not Implemented\"}}");
    ASSERT_EQ(len, strlen(e));
    free(e);
    char *c = gateway_http1_chunk("abc\n", 4, true, false, &len);
    ASSERT_STR_EQ(c, "4\r\nabc\n\r\n");
    free(c);
    c = gateway_http1_chunk("", 0, true, true, &len);
    ASSERT_STR_EQ(c, "0\r\n\r\n");
    free(c);
    c = gateway_http1_chunk("{}", 2, true, true, &len);
    ASSERT_STR_EQ(c, "2\r\n{}\r\n0\r\n\r\n");
    free(c);
    c = gateway_http1_chunk("{}", 2, false, true, &len); /* HTTP/1.0: as is */
    ASSERT_STR_EQ(c, "{}");
    free(c);
    struct gateway_response r = {.status = 200, .content_type = "application/json",
                                 .grpc_metadata = true, .streamed = true};
    char *h = gateway_http1_response(&r, 1, false, &len);
    ASSERT(strstr(h, "Transfer-Encoding: chunked\r\n\r\n") != NULL);
    ASSERT(strstr(h, "Content-Length") == NULL);
    ASSERT(strstr(h, "Grpc-Metadata-Content-Type: application/grpc\r\n") != NULL);
    ASSERT_EQ(len, strlen(h));
    free(h);
}

TEST(gateway, status_and_bodies)
{
    ASSERT_EQ(gateway_http_status(0), 200);
    ASSERT_EQ(gateway_http_status(3), 400);
    ASSERT_EQ(gateway_http_status(5), 404);
    ASSERT_EQ(gateway_http_status(9), 412);
    ASSERT_EQ(gateway_http_status(11), 400);
    ASSERT_EQ(gateway_http_status(12), 501);
    ASSERT_EQ(gateway_http_status(14), 503);
    ASSERT_EQ(gateway_http_status(99), 500);
    size_t len;
    char *b = gateway_error_body(3, "etcdserver: key is not provided", &len);
    ASSERT_STR_EQ(b, "{\"error\":\"etcdserver: key is not provided\",\"message\":\"etcdserver: "
                     "key is not provided\",\"code\":3}");
    struct gateway_response r = {.status = 400, .content_type = "application/json", .body = b,
                                 .body_len = len, .grpc_trailer = true};
    char *resp = gateway_http1_response(&r, 1, false, &len);
    ASSERT(strstr(resp, "HTTP/1.1 400 Bad Request\r\n") == resp);
    ASSERT(strstr(resp, "Transfer-Encoding: chunked\r\n") != NULL);
    ASSERT(strstr(resp, "\r\n\r\n0\r\nGrpc-Trailer-Content-Type: application/grpc\r\n\r\n") ==
           NULL); /* the body chunk comes first */
    ASSERT(strstr(resp, "\r\n0\r\nGrpc-Trailer-Content-Type: application/grpc\r\n\r\n") != NULL);
    free(resp);
    resp = gateway_http1_response(&r, 0, true, &len);
    ASSERT(strstr(resp, "HTTP/1.0 400 Bad Request\r\n") == resp);
    ASSERT(strstr(resp, "Content-Length: 96\r\n") != NULL);
    ASSERT(strstr(resp, "Connection: close\r\n") != NULL);
    ASSERT(strstr(resp, "Retry-After") == NULL);
    free(resp);
    free(b);
}

TEST(gateway, not_ready_is_202_with_retry_after)
{
    ASSERT_EQ(gateway_retry_after_s(14, "retry-after-ms", "50"), 1u);   /* at least 1 */
    ASSERT_EQ(gateway_retry_after_s(14, "retry-after-ms", "1000"), 1u);
    ASSERT_EQ(gateway_retry_after_s(14, "retry-after-ms", "1001"), 2u); /* rounded up */
    ASSERT_EQ(gateway_retry_after_s(14, "retry-after-ms", "0"), 1u);
    ASSERT_EQ(gateway_retry_after_s(14, NULL, NULL), 0u);               /* plain 503 */
    ASSERT_EQ(gateway_retry_after_s(13, "retry-after-ms", "50"), 0u);   /* not UNAVAILABLE */
    ASSERT_EQ(gateway_retry_after_s(14, "x-other", "50"), 0u);
    ASSERT_EQ(gateway_retry_after_s(14, "retry-after-ms", "5x"), 0u);
    ASSERT_EQ(gateway_retry_after_s(14, "retry-after-ms", "-5"), 0u);
    ASSERT_EQ(gateway_retry_after_s(14, "retry-after-ms", ""), 0u);
    struct gateway_response r = {.status = 202, .content_type = "application/json",
                                 .body = "{}", .body_len = 2, .retry_after_s = 3};
    size_t len;
    char *resp = gateway_http1_response(&r, 1, false, &len);
    ASSERT(strstr(resp, "HTTP/1.1 202 Accepted\r\n") == resp);
    ASSERT(strstr(resp, "\r\nRetry-After: 3\r\n") != NULL);
    free(resp);
}

TEST(http1, pipelined_keepalive_and_chunked)
{
    struct http1_parser hp;
    http1_parser_init(&hp, 1024);
    const char in[] = "POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
                      "POST /v3/kv/put HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                      "Expect: 100-continue\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
                      "GET /health HTTP/1.0\r\n\r\n";
    size_t off = 0, total = sizeof in - 1;
    bool complete;
    long n = http1_parser_feed(&hp, (const uint8_t *)in, total, &complete);
    ASSERT(complete);
    const struct http1_request *r = http1_parser_request(&hp);
    ASSERT_STR_EQ(r->method, "POST");
    ASSERT_STR_EQ(r->target, "/v3/kv/range");
    ASSERT_EQ(r->body_len, 2);
    ASSERT(r->keep_alive);
    off += (size_t)n;
    http1_parser_next(&hp);
    n = http1_parser_feed(&hp, (const uint8_t *)in + off, total - off, &complete);
    ASSERT(complete);
    ASSERT(hp.expect_continue);
    ASSERT_STR_EQ(r->target, "/v3/kv/put");
    ASSERT_EQ(r->body_len, 5);
    ASSERT_MEM_EQ(r->body, "abcde", 5);
    off += (size_t)n;
    http1_parser_next(&hp);
    n = http1_parser_feed(&hp, (const uint8_t *)in + off, total - off, &complete);
    ASSERT(complete);
    ASSERT_STR_EQ(r->method, "GET");
    ASSERT(!r->keep_alive);
    ASSERT_EQ(r->http_minor, 0);
    ASSERT_EQ(off + (size_t)n, total);
    http1_parser_free(&hp);
}

TEST(http1, errors)
{
    struct http1_parser hp;
    bool complete;
    http1_parser_init(&hp, 4);
    const char big[] = "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n";
    ASSERT_EQ(http1_parser_feed(&hp, (const uint8_t *)big, sizeof big - 1, &complete),
              LSKV_ETOOLARGE);
    http1_parser_free(&hp);
    http1_parser_init(&hp, 4);
    const char chunked[] = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n123456789";
    ASSERT_EQ(http1_parser_feed(&hp, (const uint8_t *)chunked, sizeof chunked - 1, &complete),
              LSKV_ETOOLARGE);
    http1_parser_free(&hp);
    http1_parser_init(&hp, 4);
    const char junk[] = "\x16\x03\x01 hello";
    ASSERT_EQ(http1_parser_feed(&hp, (const uint8_t *)junk, sizeof junk - 1, &complete),
              LSKV_EINVAL);
    /* Sticky. */
    ASSERT_EQ(http1_parser_feed(&hp, (const uint8_t *)"GET / HTTP/1.1\r\n\r\n", 18, &complete),
              LSKV_EINVAL);
    http1_parser_free(&hp);
}

/* An HTTP/1.x connection of the JSON gateway, on an h2_conn that turned out
 * not to speak HTTP/2 (raw mode: h2_conn_write_raw, h2_conn_end).
 *
 * Requests are served one at a time, in order: while one is in flight the
 * parser is not fed, and bytes that arrive are kept (bounded) for later.
 * Malformed request: 400 and close; a body above grpc_server_max_json_body:
 * 413 and close; "Connection: close" or HTTP/1.0: close after the
 * answer. The input and body buffers count against the server-wide request
 * budget (grpc_server.c invariant 5, `accounted`): a request that would take
 * the server over it gets etcd's 429 "too many requests" and the connection
 * closes, which frees its buffers. A connection with no request in flight
 * that sends nothing for H1_IDLE_MS is closed (issue 8 point 6: idle
 * sockets must not pile up; Apache closes idle keep-alive connections
 * after 5 s). */
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "http/http1.h"
#include "net/gateway_glue.h"

#define H1_IDLE_MS H2_HANDSHAKE_MS

struct http1_conn {
    grpc_server *srv;
    h2_conn *c;          /* NULL once closed */
    struct http1_parser parser;
    uint8_t *in;         /* unparsed input in[in_off..in_len) */
    size_t in_off, in_len, in_cap, in_max;
    struct json_call *jc; /* the request in flight */
    bool busy;           /* a request is in flight */
    bool body_in;        /* ... a streaming one whose body is still coming */
    bool answered;       /* ... whose answer is complete before its body */
    bool in_process;
    bool head;           /* the request in flight is HEAD */
    int http_minor;
    bool keep_alive;
    bool closed;
    size_t accounted;    /* bytes counted against the server's budget */
};

/* The auth token of a gateway request: its Authorization header. */
static const char *token_of(const struct http1_request *req)
{
    return req->authorization[0] ? req->authorization : NULL;
}

static void process(struct http1_conn *hc);

static void write_response(struct http1_conn *hc, const struct gateway_response *r, bool close)
{
    if (hc->c == NULL)
        return;
    size_t len = 0;
    struct gateway_response rr = *r;
    char *out = gateway_http1_response(&rr, hc->http_minor, close, &len);
    if (out != NULL && hc->head) {
        char *end = strstr(out, "\r\n\r\n");
        if (end != NULL)
            len = (size_t)(end + 4 - out);
    }
    if (out == NULL || h2_conn_write_raw(hc->c, (const uint8_t *)out, len) != 0)
        close = true;
    free(out);
    if (close) {
        hc->closed = true;
        h2_conn_end(hc->c);
    }
}

static void plain_error(struct http1_conn *hc, int status, const char *body)
{
    struct gateway_response r = {.status = status,
                                 .content_type = "text/plain; charset=utf-8",
                                 .body = body,
                                 .body_len = strlen(body)};
    hc->head = false;
    write_response(hc, &r, true);
}

/* The request in flight is answered: on to the next one. */
static void request_done(struct http1_conn *hc)
{
    hc->jc = NULL;
    if (hc->body_in) {
        hc->answered = true; /* on once the body is all read (process) */
        return;
    }
    hc->busy = false;
    if (hc->c != NULL && !hc->closed)
        h2_conn_set_idle_timeout(hc->c, H1_IDLE_MS);
    http1_parser_next(&hc->parser);
    if (!hc->in_process)
        process(hc);
}

static void on_answer(void *arg, const struct gateway_response *r)
{
    struct http1_conn *hc = arg;
    if (r->streamed) {
        /* The head of a streamed answer; pieces follow (on_piece). */
        if (hc->c == NULL || hc->closed)
            return;
        size_t len = 0;
        char *out = gateway_http1_response(r, hc->http_minor, !hc->keep_alive, &len);
        if (out != NULL)
            (void)h2_conn_write_raw(hc->c, (const uint8_t *)out, len);
        free(out);
        return;
    }
    hc->jc = NULL;
    write_response(hc, r, !hc->keep_alive);
    request_done(hc);
}

static void on_piece(void *arg, const char *data, size_t len, bool last)
{
    struct http1_conn *hc = arg;
    if (last)
        hc->jc = NULL; /* closing below must not cancel it */
    if (hc->c != NULL && !hc->closed) {
        size_t n = 0;
        char *out = gateway_http1_chunk(data, len, hc->http_minor >= 1, last, &n);
        /* Not closed from here (the sink contract): a failed write leaves
         * the connection to its own error path. */
        if (out != NULL)
            (void)h2_conn_write_raw(hc->c, (const uint8_t *)out, n);
        free(out);
        if (last && !hc->keep_alive) {
            hc->closed = true;
            h2_conn_end(hc->c);
        }
    }
    if (last)
        request_done(hc);
}

static size_t on_pending(void *arg)
{
    struct http1_conn *hc = arg;
    return hc->c != NULL ? h2_conn_queued_bytes(hc->c) : 0;
}

static void on_abort(void *arg)
{
    /* Closed from the loop, outside this callback; the close cancels the
     * call (http1_conn_closed). Pending output goes: the client does not
     * read it. */
    struct http1_conn *hc = arg;
    if (hc->c != NULL && !hc->closed)
        h2_conn_abort_soon(hc->c);
}

static const struct json_call_sink sink = {
    .answer = on_answer, .piece = on_piece, .pending = on_pending, .abort = on_abort};

static void too_many_requests(struct http1_conn *hc)
{
    size_t len = 0;
    char *body = gateway_error_body(GRPC_STATUS_RESOURCE_EXHAUSTED,
                                    "etcdserver: too many requests", &len);
    struct gateway_response r = {.status = gateway_http_status(GRPC_STATUS_RESOURCE_EXHAUSTED),
                                 .content_type = "application/json",
                                 .body = body ? body : "",
                                 .body_len = body ? len : 0};
    hc->head = false;
    write_response(hc, &r, true);
    free(body);
}

/* Brings the budget up to date with what the buffers hold now (new_in_cap:
 * the input buffer's size about to be). false: over budget, refused. */
static bool account(struct http1_conn *hc, size_t new_in_cap)
{
    size_t now = new_in_cap + hc->parser.body_cap;
    if (!grpc_server_buffer_adjust(hc->srv, hc->accounted, now)) {
        too_many_requests(hc);
        return false;
    }
    hc->accounted = now;
    return true;
}

/* A request is complete enough to answer: the head for a streaming one,
 * the whole request otherwise. */
static void begin_request(struct http1_conn *hc, const struct http1_request *req)
{
    hc->busy = true;
    h2_conn_set_idle_timeout(hc->c, 0); /* the handler may take its time */
    hc->http_minor = req->http_minor;
    hc->keep_alive = req->keep_alive;
    hc->head = strcmp(req->method, "HEAD") == 0;
}

static void continue_100(struct http1_conn *hc)
{
    if (hc->parser.expect_continue) {
        hc->parser.expect_continue = false;
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        h2_conn_write_raw(hc->c, (const uint8_t *)cont, sizeof cont - 1);
    }
}

static void process(struct http1_conn *hc)
{
    hc->in_process = true;
    while ((!hc->busy || hc->body_in) && !hc->closed && hc->c != NULL) {
        if (hc->body_in && hc->in_len == hc->in_off)
            break; /* more body later (no bytes would mean EOF to the parser) */
        bool complete = false;
        /* hc->in is NULL while nothing is buffered. */
        const uint8_t *p = hc->in != NULL ? hc->in + hc->in_off : (const uint8_t *)"";
        long n = http1_parser_feed(&hc->parser, p, hc->in_len - hc->in_off, &complete);
        if (n < 0 && hc->body_in) {
            /* Mid-answer: no error page; the close cancels the call. */
            hc->closed = true;
            h2_conn_close(hc->c);
            break;
        }
        if (n == LSKV_ETOOLARGE) {
            plain_error(hc, 413, "request too large\n");
            break;
        }
        if (n < 0) {
            plain_error(hc, 400, "Bad Request\n");
            break;
        }
        hc->in_off += (size_t)n;
        if (hc->in_off == hc->in_len) {
            /* All parsed: an idle keep-alive connection holds no buffer
             * (h2.c note 8). */
            free(hc->in);
            hc->in = NULL;
            hc->in_off = hc->in_len = hc->in_cap = 0;
        }
        if (!account(hc, hc->in_cap))
            break;
        const struct http1_request *req = http1_parser_request(&hc->parser);
        if (!hc->busy && hc->parser.headers_ready) {
            hc->parser.headers_ready = false;
            if (json_call_streams_body(req->method, req->target)) {
                /* A streaming route: its body goes to the call as it comes
                 * (json_call.c note 1). */
                begin_request(hc, req);
                hc->body_in = true;
                if (!complete)
                    continue_100(hc);
                hc->jc = json_call_start(hc->srv, req->method, req->target, NULL, 0, false,
                                         h2_conn_peer(hc->c), token_of(req), &sink, hc);
            }
        }
        if (hc->body_in) {
            if (hc->jc != NULL && (req->body_len > 0 || complete))
                json_call_body(hc->jc, req->body, req->body_len, complete);
            http1_parser_take_body(&hc->parser);
            if (complete) {
                hc->body_in = false;
                if (hc->answered) {
                    hc->answered = false;
                    request_done(hc);
                }
            }
            continue;
        }
        if (!complete) {
            continue_100(hc);
            break;
        }
        begin_request(hc, req);
        hc->jc = json_call_start(hc->srv, hc->head ? "GET" : req->method, req->target,
                                 req->body, req->body_len, true, h2_conn_peer(hc->c),
                                 token_of(req), &sink, hc);
    }
    hc->in_process = false;
}

int http1_conn_open(grpc_server *srv, h2_conn *c, struct http1_conn **out)
{
    struct http1_conn *hc = calloc(1, sizeof *hc);
    if (hc == NULL)
        return LSKV_ENOMEM;
    hc->srv = srv;
    hc->c = c;
    size_t max = grpc_server_max_json_body(srv);
    http1_parser_init(&hc->parser, max);
    hc->in_max = max + (1u << 20);
    *out = hc;
    return 0;
}

void http1_conn_input(struct http1_conn *hc, const uint8_t *data, size_t len)
{
    if (hc->closed || hc->c == NULL || len == 0)
        return;
    if (!hc->busy)
        h2_conn_set_idle_timeout(hc->c, H1_IDLE_MS);
    if (hc->in_len - hc->in_off + len > hc->in_max) {
        plain_error(hc, 413, "request too large\n");
        return;
    }
    if (hc->in_off > 0) {
        memmove(hc->in, hc->in + hc->in_off, hc->in_len - hc->in_off);
        hc->in_len -= hc->in_off;
        hc->in_off = 0;
    }
    if (hc->in_len + len > hc->in_cap) {
        size_t cap = hc->in_cap ? hc->in_cap : 4096;
        while (cap < hc->in_len + len)
            cap *= 2;
        if (!account(hc, cap))
            return;
        uint8_t *p = realloc(hc->in, cap);
        if (p == NULL) {
            hc->closed = true;
            h2_conn_close(hc->c);
            return;
        }
        hc->in = p;
        hc->in_cap = cap;
    }
    memcpy(hc->in + hc->in_len, data, len);
    hc->in_len += len;
    if (!hc->in_process)
        process(hc);
}

void http1_conn_closed(struct http1_conn *hc)
{
    grpc_server_buffer_adjust(hc->srv, hc->accounted, 0); /* freed soon after */
    hc->accounted = 0;
    hc->c = NULL;
    hc->closed = true;
    if (hc->jc != NULL) {
        struct json_call *jc = hc->jc;
        hc->jc = NULL;
        json_call_cancel(jc);
    }
}

void http1_conn_free(struct http1_conn *hc)
{
    if (hc == NULL)
        return;
    http1_parser_free(&hc->parser);
    free(hc->in);
    free(hc);
}

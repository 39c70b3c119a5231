/* HTTP/1.x request parsing for the JSON gateway (Node's http-parser, as
 * Debian ships it): one request at a time, so pipelined requests are
 * answered in order. Keep-alive as HTTP/1.1 says (Connection header,
 * HTTP/1.0 closes by default); Content-Length and chunked bodies; the body
 * is bounded by max_body_bytes. No I/O here. */
#ifndef LSKV_HTTP_HTTP1_H
#define LSKV_HTTP_HTTP1_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP1_MAX_TARGET_BYTES 8192
#define HTTP1_MAX_AUTHORIZATION_BYTES 4096

struct http1_request {
    char method[16];                      /* "POST" */
    char target[HTTP1_MAX_TARGET_BYTES];  /* "/v3/kv/range" */
    int http_minor;                       /* 1 for HTTP/1.1, 0 for HTTP/1.0 */
    bool keep_alive;
    uint8_t *body;                        /* owned by the parser */
    size_t body_len;
    /* The Authorization header (etcd's gateway takes the auth token there),
     * NUL-terminated; "" when absent or longer than the buffer. */
    char authorization[HTTP1_MAX_AUTHORIZATION_BYTES + 1];
};

struct http1_parser {
    http_parser p;
    size_t max_body_bytes;
    struct http1_request req;
    size_t body_cap;
    size_t target_len;
    bool target_too_long;
    bool body_too_large;
    bool complete;
    bool expect_continue; /* "Expect: 100-continue" seen: answer 100 first */
    bool headers_ready;   /* the head of a request is parsed (method, target,
                           * keep_alive set; the body may be on its way):
                           * the caller clears it once seen */
    char hname[32], hvalue[HTTP1_MAX_AUTHORIZATION_BYTES];
    size_t hname_len, hvalue_len;
    bool in_value;
    int err; /* sticky */
};

void http1_parser_init(struct http1_parser *hp, size_t max_body_bytes);
void http1_parser_free(struct http1_parser *hp);

/* Consumes bytes until one request is complete (then *complete is set and
 * the rest of data is left for the next call, after http1_parser_next).
 * Returns the number of bytes consumed, or an error:
 *   LSKV_EINVAL    malformed request (answer 400 and close)
 *   LSKV_ETOOLARGE body over max_body_bytes, or a target over 8 KiB
 *   LSKV_ENOMEM
 * After an error the parser must only be freed. */
long http1_parser_feed(struct http1_parser *hp, const uint8_t *data, size_t len,
                       bool *complete);

/* The request parsed by the last feed that completed one. */
const struct http1_request *http1_parser_request(const struct http1_parser *hp);

/* Forgets the body bytes parsed so far (a caller that takes the body as it
 * arrives); max_body_bytes then bounds what comes until the next take. */
void http1_parser_take_body(struct http1_parser *hp);
/* Forgets the completed request and gets ready for the next one. */
void http1_parser_next(struct http1_parser *hp);

#endif

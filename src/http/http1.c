#include "http/http1.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/err.h"

static struct http1_parser *of(http_parser *p)
{
    return p->data;
}

static int on_message_begin(http_parser *p)
{
    struct http1_parser *hp = of(p);
    hp->target_len = 0;
    hp->req.target[0] = '\0';
    hp->req.body_len = 0;
    hp->req.authorization[0] = '\0';
    hp->expect_continue = false;
    hp->hname_len = hp->hvalue_len = 0;
    hp->in_value = false;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct http1_parser *hp = of(p);
    if (hp->target_len + len >= sizeof hp->req.target) {
        hp->target_too_long = true;
        return 1;
    }
    memcpy(hp->req.target + hp->target_len, at, len);
    hp->target_len += len;
    hp->req.target[hp->target_len] = '\0';
    return 0;
}

static bool ieq(const char *a, size_t alen, const char *b)
{
    return alen == strlen(b) && strncasecmp(a, b, alen) == 0;
}

/* One header is complete: we only care about Expect and Authorization. */
static void header_done(struct http1_parser *hp)
{
    if (hp->in_value && ieq(hp->hname, hp->hname_len, "expect") &&
        ieq(hp->hvalue, hp->hvalue_len, "100-continue"))
        hp->expect_continue = true;
    if (hp->in_value && ieq(hp->hname, hp->hname_len, "authorization") &&
        hp->hvalue_len <= HTTP1_MAX_AUTHORIZATION_BYTES) {
        memcpy(hp->req.authorization, hp->hvalue, hp->hvalue_len);
        hp->req.authorization[hp->hvalue_len] = '\0';
    }
    hp->hname_len = hp->hvalue_len = 0;
    hp->in_value = false;
}

static void append(char *buf, size_t cap, size_t *len, const char *at, size_t n)
{
    if (*len + n > cap) {
        *len = cap + 1; /* too long: matches nothing we look for */
        return;
    }
    memcpy(buf + *len, at, n);
    *len += n;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct http1_parser *hp = of(p);
    if (hp->in_value)
        header_done(hp);
    append(hp->hname, sizeof hp->hname, &hp->hname_len, at, len);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct http1_parser *hp = of(p);
    hp->in_value = true;
    append(hp->hvalue, sizeof hp->hvalue, &hp->hvalue_len, at, len);
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct http1_parser *hp = of(p);
    header_done(hp);
    snprintf(hp->req.method, sizeof hp->req.method, "%s",
             http_method_str((enum http_method)p->method));
    hp->req.http_minor = p->http_major > 1 ? 1 : p->http_minor;
    hp->req.keep_alive = http_should_keep_alive(p) != 0;
    hp->headers_ready = true;
    if (p->content_length != (uint64_t)-1 && p->content_length > hp->max_body_bytes) {
        hp->body_too_large = true;
        return -1;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct http1_parser *hp = of(p);
    if (hp->req.body_len + len > hp->max_body_bytes) {
        hp->body_too_large = true;
        return 1;
    }
    if (hp->req.body_len + len > hp->body_cap) {
        size_t cap = hp->body_cap ? hp->body_cap : 1024;
        while (cap < hp->req.body_len + len)
            cap *= 2;
        uint8_t *b = realloc(hp->req.body, cap);
        if (b == NULL) {
            hp->err = LSKV_ENOMEM;
            return 1;
        }
        hp->req.body = b;
        hp->body_cap = cap;
    }
    memcpy(hp->req.body + hp->req.body_len, at, len);
    hp->req.body_len += len;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct http1_parser *hp = of(p);
    hp->req.keep_alive = http_should_keep_alive(p) != 0;
    hp->complete = true;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void http1_parser_init(struct http1_parser *hp, size_t max_body_bytes)
{
    memset(hp, 0, sizeof *hp);
    http_parser_init(&hp->p, HTTP_REQUEST);
    hp->p.data = hp;
    hp->max_body_bytes = max_body_bytes;
}

void http1_parser_free(struct http1_parser *hp)
{
    free(hp->req.body);
    hp->req.body = NULL;
    hp->body_cap = 0;
}

long http1_parser_feed(struct http1_parser *hp, const uint8_t *data, size_t len,
                       bool *complete)
{
    *complete = false;
    if (hp->err)
        return hp->err;
    if (hp->complete) {
        *complete = true;
        return 0;
    }
    size_t n = http_parser_execute(&hp->p, &settings, (const char *)data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&hp->p);
    if (e == HPE_PAUSED) {
        http_parser_pause(&hp->p, 0);
        e = HPE_OK;
    }
    if (hp->err == 0 && e != HPE_OK)
        hp->err = hp->body_too_large || hp->target_too_long ? LSKV_ETOOLARGE : LSKV_EINVAL;
    if (hp->err == 0 && hp->p.upgrade && !hp->complete)
        hp->err = LSKV_EINVAL; /* CONNECT and friends */
    if (hp->err)
        return hp->err;
    *complete = hp->complete;
    return (long)n;
}

const struct http1_request *http1_parser_request(const struct http1_parser *hp)
{
    return &hp->req;
}

void http1_parser_take_body(struct http1_parser *hp)
{
    hp->req.body_len = 0;
}

void http1_parser_next(struct http1_parser *hp)
{
    hp->complete = false;
    hp->headers_ready = false;
    hp->req.body_len = 0;
    if (hp->body_cap > 65536) {
        free(hp->req.body);
        hp->req.body = NULL;
        hp->body_cap = 0;
    }
}

/* The one URL parser: etcd-style endpoint and listen URLs,
 * "http://HOST:PORT" (h2c) or "https://HOST:PORT" (TLS), HOST an IPv4
 * address, a bracketed IPv6 address or a name; a trailing "/" is tolerated,
 * as etcd does. Built on http_parser_parse_url. */
#ifndef LSKV_COMMON_URL_H
#define LSKV_COMMON_URL_H

#include <stdbool.h>
#include <stdint.h>

enum url_flags {
    URL_SCHEME_OPTIONAL = 1, /* "HOST:PORT" alone means http:// (etcdctl's endpoints) */
};

struct url {
    bool tls;             /* https:// */
    char host[256];       /* without brackets */
    uint16_t port;        /* 0 is allowed: "any free port" for a listener */
    char hostport[264];   /* "host:port", IPv6 hosts bracketed: an :authority */
};

/* Parses s into *out. Errors: LSKV_EINVAL, errmsg says what is wrong. */
int url_parse(const char *s, unsigned flags, struct url *out, char *errmsg);

#endif

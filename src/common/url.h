/* The one URL parser: etcd-style endpoint and listen URLs,
 * "http://HOST:PORT" (h2c) or "https://HOST:PORT" (TLS), HOST an IPv4
 * address, a bracketed IPv6 address or a name; a trailing "/" is tolerated,
 * as etcd does. Built on http_parser_parse_url. */
#ifndef LSKV_COMMON_URL_H
#define LSKV_COMMON_URL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

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

/* Resolves u's host (an address, or a name such as "localhost", looked up
 * with getaddrinfo; blocking, for start-up) to one address with u's port,
 * preferring IPv4 as Go's listeners do, so "localhost" binds 127.0.0.1 as
 * etcd's does. sa (may be NULL) gets the socket address, numeric (may be
 * NULL, size bytes) "ip:port" or "[ip6]:port".
 * Errors: LSKV_EINVAL ("resolve <host>: <why>"). */
int url_resolve(const struct url *u, struct sockaddr_storage *sa, char *numeric, size_t size,
                char *errmsg);

#endif

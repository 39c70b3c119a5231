#include "common/url.h"

#include <arpa/inet.h>
#include <http_parser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "common/err.h"

int url_parse(const char *s, unsigned flags, struct url *out, char *errmsg)
{
    memset(out, 0, sizeof *out);
    char buf[600];
    bool has_scheme = strstr(s, "://") != NULL;
    if (!has_scheme && !(flags & URL_SCHEME_OPTIONAL)) {
        errmsg_printf(errmsg, "URL %s: want http://host:port or https://host:port", s);
        return LSKV_EINVAL;
    }
    int n = snprintf(buf, sizeof buf, "%s%s", has_scheme ? "" : "http://", s);
    if (n < 0 || (size_t)n >= sizeof buf) {
        errmsg_printf(errmsg, "URL %.64s...: too long", s);
        return LSKV_EINVAL;
    }
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(buf, (size_t)n, 0, &u) != 0) {
        errmsg_printf(errmsg, "URL %s: want scheme://host:port", s);
        return LSKV_EINVAL;
    }
    const __typeof__(u.field_data[0]) *f = u.field_data;
    size_t slen = f[UF_SCHEMA].len;
    const char *scheme = buf + f[UF_SCHEMA].off;
    if (slen == 5 && strncmp(scheme, "https", 5) == 0) {
        out->tls = true;
    } else if (!(slen == 4 && strncmp(scheme, "http", 4) == 0)) {
        errmsg_printf(errmsg, "URL %s: scheme must be http:// or https://", s);
        return LSKV_EINVAL;
    }
    if (!(u.field_set & (1 << UF_PORT))) {
        errmsg_printf(errmsg, "URL %s: missing port", s);
        return LSKV_EINVAL;
    }
    if ((u.field_set & ((1 << UF_QUERY) | (1 << UF_FRAGMENT) | (1 << UF_USERINFO))) ||
        ((u.field_set & (1 << UF_PATH)) &&
         !(f[UF_PATH].len == 1 && buf[f[UF_PATH].off] == '/'))) {
        errmsg_printf(errmsg, "URL %s: nothing may follow host:port but \"/\"", s);
        return LSKV_EINVAL;
    }
    size_t hlen = f[UF_HOST].len;
    if (hlen == 0 || hlen >= sizeof out->host) {
        errmsg_printf(errmsg, "URL %s: bad host", s);
        return LSKV_EINVAL;
    }
    memcpy(out->host, buf + f[UF_HOST].off, hlen);
    out->host[hlen] = '\0';
    out->port = u.port;
    bool v6 = strchr(out->host, ':') != NULL;
    snprintf(out->hostport, sizeof out->hostport, "%s%s%s:%u", v6 ? "[" : "", out->host,
             v6 ? "]" : "", (unsigned)out->port);
    return 0;
}

int url_resolve(const struct url *u, struct sockaddr_storage *sa, char *numeric, size_t size,
                char *errmsg)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL, *pick = NULL;
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)u->port);
    int rv = getaddrinfo(u->host, port, &hints, &res);
    if (rv != 0) {
        errmsg_printf(errmsg, "resolve %s: %s", u->host, gai_strerror(rv));
        return LSKV_EINVAL;
    }
    for (struct addrinfo *a = res; a != NULL && pick == NULL; a = a->ai_next)
        if (a->ai_family == AF_INET)
            pick = a;
    for (struct addrinfo *a = res; a != NULL && pick == NULL; a = a->ai_next)
        if (a->ai_family == AF_INET6)
            pick = a;
    if (pick == NULL || pick->ai_addrlen > sizeof(struct sockaddr_storage)) {
        freeaddrinfo(res);
        errmsg_printf(errmsg, "resolve %s: no IPv4 or IPv6 address", u->host);
        return LSKV_EINVAL;
    }
    if (sa != NULL) {
        memset(sa, 0, sizeof *sa);
        memcpy(sa, pick->ai_addr, pick->ai_addrlen);
    }
    if (numeric != NULL) {
        char ip[INET6_ADDRSTRLEN] = "?";
        bool v6 = pick->ai_family == AF_INET6;
        const void *addr = v6 ? (const void *)&((struct sockaddr_in6 *)(void *)pick->ai_addr)->sin6_addr
                              : (const void *)&((struct sockaddr_in *)(void *)pick->ai_addr)->sin_addr;
        inet_ntop(pick->ai_family, addr, ip, sizeof ip);
        snprintf(numeric, size, "%s%s%s:%u", v6 ? "[" : "", ip, v6 ? "]" : "", (unsigned)u->port);
    }
    freeaddrinfo(res);
    return 0;
}

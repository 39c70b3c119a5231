#include "net/listener.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

int listener_listen(uv_tcp_t *tcp, const struct url *url,
                    uv_connection_cb cb, char *errmsg)
{
    struct sockaddr_storage ss;
    char numeric[80];
    /* Names ("localhost") resolve once, at start-up, IPv4 first (as etcd). */
    int rv = url_resolve(url, &ss, numeric, sizeof numeric, errmsg);
    if (rv != 0)
        return UV_EINVAL;
    rv = uv_tcp_bind(tcp, (const struct sockaddr *)&ss, 0);
    if (rv == 0)
        rv = uv_listen((uv_stream_t *)tcp, 511, cb);
    if (rv != 0) {
        /* names the address and the port, as etcd's "listen tcp ...: bind: ..." */
        errmsg_printf(errmsg, "listen on %s (%s): %s", url->hostport, numeric, uv_strerror(rv));
        return rv;
    }
    return 0;
}

uint16_t listener_port(const uv_tcp_t *tcp)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

void listener_peer_name(const uv_tcp_t *tcp, char *out, size_t size)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char ip[64] = "?";
    unsigned port = 0;
    snprintf(out, size, "unknown");
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        snprintf(out, size, "%s:%u", ip, port);
    } else if (ss.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
        port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        snprintf(out, size, "[%s]:%u", ip, port);
    }
}

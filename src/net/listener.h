/* Listen URLs and libuv TCP listeners for the front door.
 *
 * A listen URL is "http://HOST:PORT" (h2c, prior knowledge) or
 * "https://HOST:PORT" (TLS); HOST is an IPv4 address, a bracketed IPv6
 * address ("[::1]") or a name resolved once at bind time ("localhost"). */
#ifndef LSKV_NET_LISTENER_H
#define LSKV_NET_LISTENER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct listener_url {
    bool tls;        /* https:// */
    char host[256];  /* without brackets */
    uint16_t port;   /* 0 = any free port */
};

/* Parses url into *out. Errors: LSKV_EINVAL (errmsg says why). */
int listener_parse_url(const char *url, struct listener_url *out, char *errmsg);

/* Binds the initialised handle tcp to url and starts listening with cb.
 * Errors: negated errno from libuv (resolve, bind, listen); errmsg says
 * which. On error the handle stays initialised: the caller closes it. */
int listener_listen(uv_tcp_t *tcp, const struct listener_url *url,
                    uv_connection_cb cb, char *errmsg);

/* The port tcp is bound to, or 0. */
uint16_t listener_port(const uv_tcp_t *tcp);

/* Formats the address of a socket's peer as "ip:port" ("[ip6]:port"). */
void listener_peer_name(const uv_tcp_t *tcp, char *out, size_t size);

#endif

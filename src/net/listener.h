/* libuv TCP listeners for the front door, on listen URLs (common/url.h):
 * http:// is h2c with prior knowledge, https:// TLS; a host name is resolved
 * once at bind time ("localhost"). */
#ifndef LSKV_NET_LISTENER_H
#define LSKV_NET_LISTENER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/url.h"


/* Binds the initialised handle tcp to url and starts listening with cb.
 * Errors: negated errno from libuv (resolve, bind, listen); errmsg says
 * which. On error the handle stays initialised: the caller closes it. */
int listener_listen(uv_tcp_t *tcp, const struct url *url,
                    uv_connection_cb cb, char *errmsg);

/* The port tcp is bound to, or 0. */
uint16_t listener_port(const uv_tcp_t *tcp);

/* Formats the address of a socket's peer as "ip:port" ("[ip6]:port"). */
void listener_peer_name(const uv_tcp_t *tcp, char *out, size_t size);

#endif

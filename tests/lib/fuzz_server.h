/* What the front-door fuzz harnesses (fuzz_grpc_frame, fuzz_http1) share: a
 * server with no sockets that is fed one client's bytes through memory
 * connections, and handlers that answer at once or hold their call until
 * the connection dies. A harness aborts when a call outlives its server. */
#ifndef LSKV_TESTS_FUZZ_SERVER_H
#define LSKV_TESTS_FUZZ_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "net/grpc_server.h"

/* Calls held by fuzz_on_hold (and a harness's own streaming handlers) and
 * not finished yet; a held call has grpc_call_set_data(call, &fuzz_held). */
extern int fuzz_held;

/* Echoes the request and finishes OK. */
void fuzz_on_echo(grpc_call *call, const uint8_t *msg, size_t len, void *ctx);
/* Holds the call until on_cancel. */
void fuzz_on_hold(grpc_call *call, const uint8_t *msg, size_t len, void *ctx);
/* Finishes a held call CANCELLED, as an asynchronous handler would. */
void fuzz_on_cancel(grpc_call *call, void *ctx);

/* Opens a server with cfg (aborts if it cannot), feeds data on one memory
 * connection at once and on another in chunks of small_chunk bytes, closes
 * the server and aborts unless every call ended and every connection was
 * freed. */
void fuzz_server_run(const struct grpc_server_config *cfg, const uint8_t *data, size_t size,
                     size_t small_chunk);

#endif

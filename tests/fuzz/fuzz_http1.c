/* Fuzzes the JSON gateway's HTTP/1.x side without sockets: the input is
 * what a client sends on one connection (requests, pipelined or not, with
 * JSON bodies). It goes through a memory connection of a server with
 * json_gateway on (h2.c raw mode, http1_conn.c, json_call.c, external
 * calls in grpc_server.c), at once and in small chunks. Methods answer at
 * once, fail (with a retry-after-ms trailer), or hold their call until the connection dies. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "fuzz_server.h"
#include "net/grpc_server.h"

static void on_fail(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    (void)ctx;
    if (len > 0) /* the "not ready" answer: 202 with Retry-After */
        grpc_call_set_trailer(call, "retry-after-ms", msg[0] % 2 ? "1500" : "x");
    grpc_call_finish(call, len % 2 ? GRPC_STATUS_OUT_OF_RANGE : GRPC_STATUS_UNAVAILABLE,
                     "etcdserver: \"fuzz\" <&> \xff");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct grpc_method methods[] = {
        {.path = "/etcdserverpb.KV/Range", .on_message = fuzz_on_echo},
        {.path = "/etcdserverpb.KV/Put", .on_message = fuzz_on_hold, .on_cancel = fuzz_on_cancel},
        {.path = "/etcdserverpb.KV/Txn", .on_message = on_fail},
        {.path = "/etcdserverpb.Maintenance/Status", .on_message = fuzz_on_echo},
        {.path = "/etcdserverpb.Watch/Watch", .streaming = true, .on_message = fuzz_on_hold,
         .on_cancel = fuzz_on_cancel},
    };
    struct grpc_server_config cfg = {
        .max_recv_message_bytes = 4096,
        /* Every other input with a server-wide budget below one message:
         * refusals (grpc_server.c invariant 5) get fuzzed too. */
        .max_buffered_request_bytes = size % 2 ? 6000 : 0,
        .methods = methods,
        .n_methods = sizeof methods / sizeof methods[0],
        .json_gateway = true,
        .build_version = "fuzz",
    };
    fuzz_server_run(&cfg, data, size, 1 + size % 7);
    return 0;
}

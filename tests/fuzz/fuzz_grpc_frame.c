/* Fuzzes the front door without sockets: the input is what a client sends
 * on one connection (client preface, HTTP/2 frames, gRPC messages). It is
 * fed to a server-side connection (nghttp2 mem_recv + our gRPC framing,
 * routing and call life cycle) twice: at once, and in small chunks. Methods
 * answer at once, stream, or hold their call until the connection dies (then
 * finish it from on_cancel, as an asynchronous handler would). The raw bytes
 * also go through the deframer alone. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "net/grpc_frame.h"
#include "fuzz_server.h"
#include "net/grpc_server.h"

static void on_stream(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    (void)ctx;
    if (grpc_call_get_data(call) == NULL) {
        grpc_call_set_data(call, &fuzz_held); /* held until half-close or cancel */
        fuzz_held++;
    }
    grpc_call_send(call, msg, len);
    if (len > 0 && msg[0] == 'F') {
        fuzz_held--;
        grpc_call_set_data(call, NULL);
        grpc_call_set_trailer(call, "retry-after-ms", "7");
        grpc_call_finish(call, GRPC_STATUS_ABORTED, "finished early \xff");
    }
}

static void on_half_close(grpc_call *call, void *ctx)
{
    (void)ctx;
    if (grpc_call_get_data(call) != NULL)
        fuzz_held--;
    grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static int count(void *arg, const uint8_t *msg, size_t len)
{
    (void)msg;
    (*(size_t *)arg) += len;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct grpc_deframer d;
    size_t total = 0;
    grpc_deframer_init(&d, 64);
    grpc_deframer_push(&d, data, size, count, &total);
    grpc_deframer_free(&d);

    static const struct grpc_method methods[] = {
        {.path = "/test.Echo/Unary", .on_message = fuzz_on_echo},
        {.path = "/etcdserverpb.KV/Range", .on_message = fuzz_on_echo},
        {.path = "/test.Echo/Hold", .on_message = fuzz_on_hold, .on_cancel = fuzz_on_cancel},
        {.path = "/test.Echo/Stream",
         .streaming = true,
         .on_message = on_stream,
         .on_half_close = on_half_close,
         .on_cancel = fuzz_on_cancel},
        {.path = "/etcdserverpb.Watch/Watch",
         .streaming = true,
         .on_message = on_stream,
         .on_cancel = fuzz_on_cancel},
    };
    struct grpc_server_config cfg = {
        .max_recv_message_bytes = 4096,
        /* Every other input with a server-wide budget below one message:
         * refusals (grpc_server.c invariant 5) get fuzzed too. */
        .max_buffered_request_bytes = size % 2 ? 6000 : 0,
        .methods = methods,
        .n_methods = sizeof methods / sizeof methods[0],
    };
    fuzz_server_run(&cfg, data, size, 1 + size % 13);
    return 0;
}

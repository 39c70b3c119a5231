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
#include "net/grpc_server.h"
#include "net/h2.h"

static int n_held;

static void on_echo(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    (void)ctx;
    grpc_call_send(call, msg, len);
    grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static void on_hold(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    (void)msg;
    (void)len;
    (void)ctx;
    n_held++;
    grpc_call_set_data(call, &n_held);
}

static void on_stream(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    (void)ctx;
    if (grpc_call_get_data(call) == NULL) {
        grpc_call_set_data(call, &n_held); /* held until half-close or cancel */
        n_held++;
    }
    grpc_call_send(call, msg, len);
    if (len > 0 && msg[0] == 'F') {
        n_held--;
        grpc_call_set_data(call, NULL);
        grpc_call_finish(call, GRPC_STATUS_ABORTED, "finished early \xff");
    }
}

static void on_half_close(grpc_call *call, void *ctx)
{
    (void)ctx;
    if (grpc_call_get_data(call) != NULL)
        n_held--;
    grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static void on_cancel(grpc_call *call, void *ctx)
{
    (void)ctx;
    if (grpc_call_get_data(call) != NULL) {
        n_held--;
        grpc_call_set_data(call, NULL);
        grpc_call_finish(call, GRPC_STATUS_CANCELLED, NULL);
    }
}

static int count(void *arg, const uint8_t *msg, size_t len)
{
    (void)msg;
    (*(size_t *)arg) += len;
    return 0;
}

static void serve(grpc_server *srv, const uint8_t *data, size_t size, size_t chunk)
{
    struct h2_conn *c;
    if (grpc_server_open_mem_conn(srv, &c) != 0)
        return;
    for (size_t off = 0; off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        h2_conn_feed(c, data + off, n);
    }
    h2_conn_close(c); /* idempotent: it may have closed itself */
}

static void on_closed(void *arg)
{
    *(int *)arg = 1;
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
        {.path = "/test.Echo/Unary", .on_message = on_echo},
        {.path = "/etcdserverpb.KV/Range", .on_message = on_echo},
        {.path = "/test.Echo/Hold", .on_message = on_hold, .on_cancel = on_cancel},
        {.path = "/test.Echo/Stream",
         .streaming = true,
         .on_message = on_stream,
         .on_half_close = on_half_close,
         .on_cancel = on_cancel},
        {.path = "/etcdserverpb.Watch/Watch",
         .streaming = true,
         .on_message = on_stream,
         .on_cancel = on_cancel},
    };
    struct grpc_server_config cfg = {
        .max_recv_message_bytes = 4096,
        .methods = methods,
        .n_methods = sizeof methods / sizeof methods[0],
    };
    grpc_server *srv;
    char errmsg[256];
    if (grpc_server_open(uv_default_loop(), &cfg, &srv, errmsg) != 0)
        abort();
    serve(srv, data, size, size ? size : 1);
    serve(srv, data, size, 1 + size % 13);
    int closed = 0;
    grpc_server_close(srv, on_closed, &closed);
    if (!closed || n_held != 0)
        abort(); /* every call ended, every connection freed */
    return 0;
}

/* Fuzzes the JSON gateway's HTTP/1.x side without sockets: the input is
 * what a client sends on one connection (requests, pipelined or not, with
 * JSON bodies). It goes through a memory connection of a server with
 * json_gateway on (h2.c raw mode, http1_conn.c, json_call.c, external
 * calls in grpc_server.c), at once and in small chunks. Methods answer at
 * once, fail, or hold their call until the connection dies. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "net/grpc_server.h"
#include "net/h2.h"

static int n_held;

static void on_echo(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    (void)ctx;
    grpc_call_send(call, msg, len); /* may not render as the response type */
    grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static void on_fail(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    (void)msg;
    (void)ctx;
    grpc_call_finish(call, len % 2 ? GRPC_STATUS_OUT_OF_RANGE : GRPC_STATUS_UNAVAILABLE,
                     "etcdserver: \"fuzz\" <&> \xff");
}

static void on_hold(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    (void)msg;
    (void)len;
    (void)ctx;
    n_held++;
    grpc_call_set_data(call, &n_held);
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

static void serve(grpc_server *srv, const uint8_t *data, size_t size, size_t chunk)
{
    struct h2_conn *c;
    if (grpc_server_open_mem_conn(srv, &c) != 0)
        return;
    for (size_t off = 0; off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        h2_conn_feed(c, data + off, n);
    }
    h2_conn_close(c);
}

static void on_closed(void *arg)
{
    *(int *)arg = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct grpc_method methods[] = {
        {.path = "/etcdserverpb.KV/Range", .on_message = on_echo},
        {.path = "/etcdserverpb.KV/Put", .on_message = on_hold, .on_cancel = on_cancel},
        {.path = "/etcdserverpb.KV/Txn", .on_message = on_fail},
        {.path = "/etcdserverpb.Maintenance/Status", .on_message = on_echo},
        {.path = "/etcdserverpb.Watch/Watch", .streaming = true, .on_message = on_hold,
         .on_cancel = on_cancel},
    };
    struct grpc_server_config cfg = {
        .max_recv_message_bytes = 4096,
        .methods = methods,
        .n_methods = sizeof methods / sizeof methods[0],
        .json_gateway = true,
        .build_version = "fuzz",
    };
    grpc_server *srv;
    char errmsg[256];
    if (grpc_server_open(uv_default_loop(), &cfg, &srv, errmsg) != 0)
        abort();
    serve(srv, data, size, size ? size : 1);
    serve(srv, data, size, 1 + size % 7);
    int closed = 0;
    grpc_server_close(srv, on_closed, &closed);
    if (!closed || n_held != 0)
        abort(); /* every call ended, every connection freed */
    return 0;
}

#include "fuzz_server.h"

#include <stdlib.h>
#include <uv.h>

#include "net/h2.h"

int fuzz_held;

void fuzz_on_echo(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    (void)ctx;
    grpc_call_send(call, msg, len); /* may not render as the response type */
    grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

void fuzz_on_hold(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    (void)msg;
    (void)len;
    (void)ctx;
    fuzz_held++;
    grpc_call_set_data(call, &fuzz_held);
}

void fuzz_on_cancel(grpc_call *call, void *ctx)
{
    (void)ctx;
    if (grpc_call_get_data(call) != NULL) {
        fuzz_held--;
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
    h2_conn_close(c); /* idempotent: it may have closed itself */
}

static void on_closed(void *arg)
{
    *(int *)arg = 1;
}

void fuzz_server_run(const struct grpc_server_config *cfg, const uint8_t *data, size_t size,
                     size_t small_chunk)
{
    grpc_server *srv;
    char errmsg[256];
    if (grpc_server_open(uv_default_loop(), cfg, &srv, errmsg) != 0)
        abort();
    serve(srv, data, size, size ? size : 1);
    serve(srv, data, size, small_chunk);
    int closed = 0;
    grpc_server_close(srv, on_closed, &closed);
    /* The server's own timer (the gateway's slots) closes on the loop. */
    for (int i = 0; i < 100 && !closed; i++)
        uv_run(uv_default_loop(), UV_RUN_NOWAIT);
    if (!closed || fuzz_held != 0)
        abort(); /* every call ended, every connection freed */
}

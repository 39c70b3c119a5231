/* etcdserverpb.Watch: one bidirectional gRPC stream per watch stream of the
 * hub (watch/watch.h). As in etcd, a client that half-closes keeps its
 * watchers (etcd's recvLoop ends, its sendLoop does not); the stream ends
 * when the client cancels it or the connection goes. A timer drives the
 * catch-up of unsynced watchers and etcd's progress notifications. */
#include <stdio.h>
#include <stdlib.h>

#include "api/api.h"
#include "api/etcd_errors.h"
#include "common/arena.h"
#include "common/err.h"
#include "common/log.h"

#define SYNC_MS 10
#define SYNC_BUDGET 1000          /* revisions read per tick, all watchers */
#define PROGRESS_MS (10 * 60 * 1000) /* etcd's progress report interval */

struct watch_call {
    struct api *api;
    grpc_call *call;
    watch_stream *ws;
};

struct watch_driver {
    uv_timer_t sync, progress;
    struct api *api;
};

static int sink_send(void *arg, const uint8_t *msg, size_t len)
{
    struct watch_call *wc = arg;
    return grpc_call_send(wc->call, msg, len);
}

static size_t sink_queued(void *arg)
{
    struct watch_call *wc = arg;
    return grpc_call_pending_bytes(wc->call);
}

static void end_call(struct watch_call *wc)
{
    watch_stream_close(wc->ws);
    grpc_call_set_data(wc->call, NULL);
    free(wc);
}

/* etcd's isWatchPermitted refusal: a created-and-canceled answer with
 * watch id -1 and the reason as etcd's error text; the stream stays. */
static int refuse_create(struct api *api, grpc_call *call, int code)
{
    Etcdserverpb__WatchResponse wr = ETCDSERVERPB__WATCH_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    api_fill_header(api, &h);
    wr.header = &h;
    wr.watch_id = -1;
    wr.created = true;
    wr.canceled = true;
    /* etcd's reason is the gRPC error's text: "rpc error: code = ... desc = ..." */
    char reason[160];
    const char *status = code == LSKV_EINVALIDTOKEN                          ? "Unauthenticated"
                         : code == LSKV_EAUTHOLDREV || code == LSKV_EUSEREMPTY ? "InvalidArgument"
                                                                             : "PermissionDenied";
    if (code != LSKV_EINVALIDTOKEN && code != LSKV_EAUTHOLDREV && code != LSKV_EUSEREMPTY)
        code = LSKV_EPERMDENIED;
    snprintf(reason, sizeof reason, "rpc error: code = %s desc = %s", status,
             etcd_error_from(code).message);
    wr.cancel_reason = reason;
    uint8_t buf[256];
    size_t n = etcdserverpb__watch_response__get_packed_size(&wr);
    if (n > sizeof buf)
        return LSKV_ENOMEM;
    etcdserverpb__watch_response__pack(&wr, buf);
    return grpc_call_send(call, buf, n) == LSKV_ENOMEM ? LSKV_ENOMEM : 0;
}

static void watch_message(grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
    struct api *api = ctx;
    struct watch_call *wc = grpc_call_get_data(call);
    if (wc == NULL) {
        wc = calloc(1, sizeof *wc);
        struct watch_sink sink = {.send = sink_send, .queued = sink_queued, .arg = wc};
        if (wc == NULL || (wc->ws = watch_stream_open(api->watch, &sink)) == NULL) {
            free(wc);
            grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "lskv: out of memory");
            return;
        }
        wc->api = api;
        wc->call = call;
        grpc_call_set_data(call, wc);
    }
    struct arena a;
    arena_init(&a);
    Etcdserverpb__WatchRequest *req =
        api_decode(call, &etcdserverpb__watch_request__descriptor, msg, len, &a);
    int rv = 0;
    if (req != NULL && req->request_union_case ==
                           ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST &&
        req->create_request != NULL &&
        (rv = api_authorize_range(api, call, req->create_request->key,
                                  req->create_request->range_end)) != 0) {
        if (refuse_create(api, call, rv) != 0) {
            end_call(wc);
            grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "lskv: out of memory");
        }
    } else if (req == NULL) {
        end_call(wc); /* api_decode has answered: the stream is over */
    } else if (watch_stream_request(wc->ws, req) != 0) {
        end_call(wc);
        grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "lskv: out of memory");
    }
    arena_close(&a);
}

static void watch_half_close(grpc_call *call, void *ctx)
{
    (void)ctx;
    if (grpc_call_get_data(call) == NULL)
        grpc_call_finish(call, GRPC_STATUS_OK, NULL); /* never created a stream */
}

static void watch_cancel(grpc_call *call, void *ctx)
{
    (void)ctx;
    struct watch_call *wc = grpc_call_get_data(call);
    if (wc != NULL)
        end_call(wc);
    grpc_call_finish(call, GRPC_STATUS_CANCELLED, NULL);
}

static void on_sync(uv_timer_t *t)
{
    struct watch_driver *d = t->data;
    struct watch_stats st;
    watch_hub_stats(d->api->watch, &st);
    if (st.unsynced > 0)
        (void)watch_hub_sync(d->api->watch, SYNC_BUDGET);
}

static void on_progress(uv_timer_t *t)
{
    struct watch_driver *d = t->data;
    watch_hub_progress(d->api->watch);
}

int watch_service_start(struct api *api)
{
    struct watch_driver *d = calloc(1, sizeof *d);
    if (d == NULL)
        return LSKV_ENOMEM;
    d->api = api;
    uv_timer_init(api->loop, &d->sync);
    uv_timer_init(api->loop, &d->progress);
    d->sync.data = d->progress.data = d;
    uv_timer_start(&d->sync, on_sync, SYNC_MS, SYNC_MS);
    uv_timer_start(&d->progress, on_progress, PROGRESS_MS, PROGRESS_MS);
    api->watch_driver = d;
    return 0;
}

static void on_driver_closed(uv_handle_t *h)
{
    struct watch_driver *d = h->data;
    if (h == (uv_handle_t *)&d->progress)
        free(d);
}

void watch_service_stop(struct api *api)
{
    struct watch_driver *d = api->watch_driver;
    if (d == NULL)
        return;
    uv_close((uv_handle_t *)&d->sync, NULL);
    uv_close((uv_handle_t *)&d->progress, on_driver_closed);
    api->watch_driver = NULL;
}

size_t watch_service_methods(struct api *api, struct grpc_method *m)
{
    m[0] = (struct grpc_method){.path = "/etcdserverpb.Watch/Watch",
                                .streaming = true,
                                .on_message = watch_message,
                                .on_half_close = watch_half_close,
                                .on_cancel = watch_cancel,
                                .ctx = api};
    return 1;
}

/* One JSON gateway request: route, JSON -> protobuf, an external call into
 * the ordinary gRPC handler, protobuf -> JSON, and the HTTP answer as etcd
 * 3.4's grpc-gateway gives it. Transport independent: HTTP/1.1
 * (http1_conn.c) and HTTP/2 (grpc_server.c) both use it.
 *
 * Life cycle: a json_call lives from json_call_start until both (a) the
 * call is over (the handler finished it, or it never started) and (b) the
 * HTTP side heard the answer or cancelled.
 *
 * Notes on streaming methods (watch, lease/keepalive, and any table row
 * flagged streaming), after etcd's rpc.pb.gw.go request_Watch_Watch_0 and
 * grpc-gateway's ForwardResponseStream:
 *
 * (1) The body is a sequence of JSON values (concatenated or separated by
 *     white space; json_next_value splits it), each one request message,
 *     sent as soon as it is complete: the transports hand body bytes over
 *     as they arrive (json_call_body), as Go's decoder goroutine reads
 *     them. The first is converted before the stream opens: if it is
 *     malformed the answer is a one-shot error with code 2 (Unknown, HTTP
 *     500), the decoder's text as message, as Go gives it. A later
 *     malformed value ends the request side there (Go's decoder goroutine
 *     stops and calls CloseSend): what the handler does on half-close
 *     decides the rest (keepalive ends the stream, watch keeps it open, as
 *     in etcd); the rest of the body is read and dropped by the transport.
 * (2) Each response message is a piece {"result":<message>}\n, written as
 *     it comes; the head (200, chunked) goes with the first piece or the
 *     end. A handler that fails after a piece writes {"error":{...}}
 *     (gateway_stream_error) and ends; one that fails before any gets an
 *     ordinary one-shot error (Go's stream.Header() returns the status of a
 *     trailers-only answer). Grpc-Metadata-Content-Type is there once a
 *     message reached the server (the gateway read the header metadata).
 *     Server-streaming methods (gateway_rpc_server_stream: Snapshot,
 *     Observe) read one value as Go does: an empty body is an empty
 *     request, a malformed one 400 (code 3), the rest is not read.
 * (3) Memory: only the value in progress is held (jc->in, at most
 *     grpc_server_max_json_body, counted against the server's request
 *     budget). Answers: a transport stops reading while its socket holds
 *     H2_WRITE_HIGH_WATER_BYTES, so a client that sends requests without
 *     reading answers is slowed by TCP; the watch hub stops sending to a
 *     stream at its own per-stream limit (grpc_call_pending_bytes asks the
 *     transport); past GATEWAY_STREAM_MAX_PENDING_BYTES (an HTTP/2 client
 *     whose flow-control window stays shut) the stream is aborted: the
 *     transport resets the stream or closes the connection, and cancels
 *     the call. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "http/json.h"
#include "net/gateway_glue.h"
#include "net/grpc_frame.h"
#include "proto/rpc.pb-c.h"

struct json_call {
    grpc_server *srv;
    grpc_call *call; /* while the handler holds it */
    const struct gateway_rpc *rpc;
    bool health;
    bool health_alarms; /* /health's first read: the alarm list (etcd's order) */
    bool alarm_raised;  /* that read listed an alarm */
    const struct json_call_sink *sink;
    void *arg;
    bool in_start;
    bool finished; /* the answer is complete (or must not be: cancelled) */
    char *json;    /* the response message as JSON, from send */
    size_t json_len;
    /* Streaming methods (notes above). */
    bool streaming;
    bool head_sent; /* the head of the streamed answer */
    bool delivered; /* a request message reached the handler */
    bool aborted;   /* note 3: the transport will cancel us */
    bool opened;    /* the stream is open: jc->call, or over */
    bool send_closed; /* no more messages (half-closed or over) */
    bool body_done; /* the transport has given the whole body */
    uint8_t *in;    /* body bytes not yet taken: in[0..in_len) */
    size_t in_len, in_cap;
    size_t accounted; /* in_cap, against the server's request budget */
    char peer[80];
    char *token; /* the client's Authorization header, or NULL */
    /* --max-concurrent-streams (gateway_glue.h): the call's slot, and a
     * unary request converted while it waits for one. */
    struct gateway_slot slot;
    bool waiting_unary;
    uint8_t *waiting_pb;
    size_t waiting_len;
};

static const char text_plain[] = "text/plain; charset=utf-8";
static const char app_json[] = "application/json";

static void answer_error(struct json_call *jc, int code, const char *message, bool from_call,
                         unsigned retry_after_s);

static void answer(struct json_call *jc, const struct gateway_response *r)
{
    jc->finished = true;
    metrics_http(grpc_server_metrics(jc->srv), r->status);
    jc->sink->answer(jc->arg, r);
}

/* The head of a streamed answer (note 2), once. */
static void stream_head(struct json_call *jc, int status)
{
    if (jc->head_sent)
        return;
    jc->head_sent = true;
    struct gateway_response r = {.status = status,
                                 .content_type = app_json,
                                 .body = "",
                                 .grpc_metadata = jc->delivered,
                                 .streamed = true};
    metrics_http(grpc_server_metrics(jc->srv), status);
    jc->sink->answer(jc->arg, &r);
}

/* The end of a streamed answer: an error piece for a failed call. */
static void stream_end(struct json_call *jc, enum grpc_status status, const char *message)
{
    size_t len = 0;
    char *err = NULL;
    if (status != GRPC_STATUS_OK && !jc->head_sent) {
        /* Nothing sent: the gateway's stream.Header() fails (trailers
         * only) and the answer is an ordinary error (note 2). */
        answer_error(jc, (int)status, message ? message : "", false, 0);
        return;
    }
    if (status != GRPC_STATUS_OK) {
        err = gateway_stream_error((int)status, message ? message : "", &len);
    } else {
        stream_head(jc, 200);
    }
    jc->finished = true;
    jc->sink->piece(jc->arg, err ? err : "", err ? len : 0, true);
    free(err);
}

/* Note 3: the transport holds too much; it resets and cancels us later. */
static bool stream_overflow(struct json_call *jc)
{
    if (!jc->aborted && jc->sink->pending(jc->arg) <= GATEWAY_STREAM_MAX_PENDING_BYTES)
        return false;
    if (!jc->aborted) {
        jc->aborted = true;
        jc->sink->abort(jc->arg);
    }
    return true;
}

static void answer_text(struct json_call *jc, int status, const char *ct, const char *body)
{
    struct gateway_response r = {
        .status = status, .content_type = ct, .body = body, .body_len = strlen(body)};
    answer(jc, &r);
}

/* A gRPC-style error as grpc-gateway renders it; retry_after_s > 0 makes it
 * a 202 "not ready yet, retry" (gateway_retry_after_s). */
static void answer_error(struct json_call *jc, int code, const char *message, bool from_call,
                         unsigned retry_after_s)
{
    size_t len = 0;
    char *body = gateway_error_body(code, message, &len);
    if (body == NULL) {
        answer_text(jc, 500, app_json, "{\"error\": \"failed to marshal error message\"}");
        return;
    }
    struct gateway_response r = {.status = retry_after_s ? 202 : gateway_http_status(code),
                                 .content_type = app_json,
                                 .body = body,
                                 .body_len = len,
                                 .grpc_trailer = from_call,
                                 .retry_after_s = retry_after_s};
    answer(jc, &r);
    free(body);
}

static void jc_free(struct json_call *jc)
{
    grpc_server_gateway_release(jc->srv, &jc->slot);
    free(jc->waiting_pb);
    if (jc->accounted)
        grpc_server_buffer_adjust(jc->srv, jc->accounted, 0);
    free(jc->in);
    free(jc->json);
    free(jc->token);
    free(jc);
}

static int stream_send(struct json_call *jc, const uint8_t *msg, size_t len)
{
    if (jc->finished || stream_overflow(jc))
        return LSKV_ESHUTDOWN;
    char *out = NULL;
    size_t out_len = 0;
    int rv = json_from_pb(jc->rpc->response, msg, len, &out, &out_len);
    if (rv != 0)
        return rv;
    struct json_buf b = {0};
    json_buf_puts(&b, "{\"result\":");
    json_buf_put(&b, out, out_len);
    json_buf_puts(&b, "}\n");
    free(out);
    if (b.err) {
        free(b.p);
        return LSKV_ENOMEM;
    }
    stream_head(jc, 200);
    jc->sink->piece(jc->arg, b.p, b.len, false);
    free(b.p);
    return 0;
}

static int t_send(void *arg, const uint8_t *msg, size_t len)
{
    struct json_call *jc = arg;
    if (jc->health) {
        if (jc->health_alarms) {
            Etcdserverpb__AlarmResponse *r = etcdserverpb__alarm_response__unpack(NULL, len, msg);
            jc->alarm_raised = r == NULL || r->n_alarms > 0;
            etcdserverpb__alarm_response__free_unpacked(r, NULL);
        }
        return 0;
    }
    if (jc->streaming)
        return stream_send(jc, msg, len);
    char *out = NULL;
    size_t out_len = 0;
    int rv = json_from_pb(jc->rpc->response, msg, len, &out, &out_len);
    if (rv != 0)
        return rv;
    free(jc->json);
    jc->json = out;
    jc->json_len = out_len;
    return 0;
}

static void start_health_read(struct json_call *jc);

static void t_finish(void *arg, enum grpc_status status, const char *message,
                     const char *trailer_name, const char *trailer_value)
{
    struct json_call *jc = arg;
    jc->call = NULL;
    if (jc->streaming) {
        if (jc->aborted)
            return; /* the transport cancels us (note 3) */
        stream_end(jc, status, message);
        if (!jc->in_start)
            jc_free(jc);
        return;
    }
    if (jc->health && jc->health_alarms && status == GRPC_STATUS_OK && !jc->alarm_raised) {
        /* No alarm: the read through consensus next. jc belongs to that
         * call now (its finish answers and frees). */
        jc->health_alarms = false;
        start_health_read(jc);
        return;
    }
    if (jc->health) {
        /* etcd: {"health":"true"} or 503 {"health":"false"}; any alarm
         * (NOSPACE, CORRUPT) makes it false (etcdhttp/metrics.go). */
        if (status == GRPC_STATUS_OK && !jc->alarm_raised)
            answer_text(jc, 200, text_plain, "{\"health\":\"true\"}");
        else
            answer_text(jc, 503, text_plain, "{\"health\":\"false\"}\n"); /* http.Error's \n */
    } else if (status != GRPC_STATUS_OK) {
        answer_error(jc, (int)status, message ? message : "", true,
                     gateway_retry_after_s((int)status, trailer_name, trailer_value));
    } else {
        struct gateway_response r = {.status = 200,
                                     .content_type = app_json,
                                     .body = jc->json ? jc->json : "{}",
                                     .body_len = jc->json ? jc->json_len : 2,
                                     .grpc_metadata = true};
        answer(jc, &r);
    }
    if (!jc->in_start)
        jc_free(jc);
}

static size_t t_pending(void *arg)
{
    struct json_call *jc = arg;
    return jc->finished ? 0 : jc->sink->pending(jc->arg);
}

static const struct grpc_call_transport transport = {
    .send = t_send, .finish = t_finish, .pending = t_pending};
/* /health's reads are the server's own, as etcd's checkHealth. */
static const struct grpc_call_transport health_transport = {
    .send = t_send, .finish = t_finish, .pending = t_pending, .internal = true};

static void start_rpc(struct json_call *jc, const char *path, const uint8_t *pb, size_t len,
                      const char *peer, const char *token)
{
    size_t max = grpc_server_max_recv(jc->srv);
    if (len > max) {
        /* etcd's gateway is a gRPC client of its own server: the converted
         * message meets the server's receive limit (429, code 8). */
        char text[120];
        grpc_frame_too_large_text(text, sizeof text, len, max);
        answer_error(jc, GRPC_STATUS_RESOURCE_EXHAUSTED, text, true, 0);
        return;
    }
    grpc_call *call = NULL;
    /* a metrics listener's /health reads through the client server */
    grpc_server *of = grpc_server_metrics_of(jc->srv);
    int rv = grpc_server_call_external(of ? of : jc->srv, path, pb, len, peer, token,
                                       jc->health ? &health_transport : &transport, jc,
                                       &call);
    if (rv == 0) {
        jc->call = call;
        return;
    }
    if (jc->health) {
        answer_text(jc, 503, text_plain, "{\"health\":\"false\"}\n"); /* http.Error's \n */
        if (!jc->in_start) /* the read after the alarm list: nobody else frees */
            jc_free(jc);
        return;
    }
    char msg[300];
    if (rv == LSKV_ENOMEM) {
        answer_error(jc, GRPC_STATUS_RESOURCE_EXHAUSTED, "lskv: out of memory", false, 0);
    } else if (rv == LSKV_EUNIMPLEMENTED) {
        answer_error(jc, GRPC_STATUS_UNIMPLEMENTED,
                     "lskv: streaming methods are not served over the JSON gateway yet",
                     false, 0);
    } else {
        snprintf(msg, sizeof msg, "unknown method %s", path);
        answer_error(jc, GRPC_STATUS_UNIMPLEMENTED, msg, false, 0);
    }
}

static void start_health_read(struct json_call *jc)
{
    /* A linearizable read through consensus, as etcd's /health does. */
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    req.key.data = (uint8_t *)"health";
    req.key.len = 6;
    req.keys_only = 1;
    req.limit = 1;
    uint8_t buf[64];
    size_t n = etcdserverpb__range_request__pack(&req, buf);
    start_rpc(jc, "/etcdserverpb.KV/Range", buf, n, jc->peer, NULL);
}

static void start_health(struct json_call *jc, const char *peer)
{
    /* etcd 3.4's checkHealth: any raised alarm first, then the read. */
    Etcdserverpb__AlarmRequest req = ETCDSERVERPB__ALARM_REQUEST__INIT;
    req.action = ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET;
    uint8_t buf[32];
    size_t n = etcdserverpb__alarm_request__pack(&req, buf);
    jc->health = true;
    jc->health_alarms = true;
    snprintf(jc->peer, sizeof jc->peer, "%s", peer ? peer : "?");
    start_rpc(jc, "/etcdserverpb.Maintenance/Alarm", buf, n, peer, NULL);
}

static void start_metrics(struct json_call *jc)
{
    size_t len = 0;
    grpc_server *of = grpc_server_metrics_of(jc->srv);
    char *text = metrics_render(grpc_server_metrics(of ? of : jc->srv), &len);
    if (text == NULL) {
        answer_text(jc, 500, text_plain, "out of memory\n");
        return;
    }
    struct gateway_response r = {.status = 200,
                                 .content_type = "text/plain; version=0.0.4; charset=utf-8",
                                 .body = text,
                                 .body_len = len};
    answer(jc, &r);
    free(text);
}

/* One value of a streaming body as protobuf (note 1). Returns 0 with *pb
 * (malloc'd), or an error with errmsg set. */
static int convert(struct json_call *jc, const uint8_t *text, size_t len, uint8_t **pb,
                   size_t *pb_len, char *errmsg)
{
    int rv = json_to_pb(jc->rpc->request, (const char *)text, len, pb, pb_len, errmsg);
    if (rv == LSKV_ETOODEEP)
        rv = LSKV_EINVAL; /* errmsg has Go's text */
    if (rv == 0 && *pb_len > grpc_server_max_recv(jc->srv)) {
        grpc_frame_too_large_text(errmsg, LSKV_ERRMSG_SIZE, *pb_len, grpc_server_max_recv(jc->srv));
        free(*pb);
        *pb = NULL;
        rv = LSKV_ETOOLARGE;
    }
    return rv;
}

/* The stream cannot take the request side any further (note 1): before it
 * opened, an ordinary error; after, the stream ends with it. */
static void stream_fail(struct json_call *jc, int rv, const char *errmsg)
{
    jc->send_closed = true;
    int code = rv == LSKV_EINVAL ? (gateway_rpc_server_stream(jc->rpc)
                                        ? GRPC_STATUS_INVALID_ARGUMENT
                                        : GRPC_STATUS_UNKNOWN)
                                 : GRPC_STATUS_RESOURCE_EXHAUSTED;
    const char *msg = rv == LSKV_ENOMEM ? "lskv: out of memory" : errmsg;
    if (!jc->opened) {
        jc->opened = true;
        answer_error(jc, code, msg, false, 0);
        return;
    }
    if (jc->call != NULL) {
        grpc_call *call = jc->call;
        jc->call = NULL;
        grpc_call_detach(call);
    }
    stream_end(jc, (enum grpc_status)code, msg);
}

/* Opens the stream for the first message. false: answered instead. */
static bool stream_open(struct json_call *jc)
{
    jc->opened = true;
    jc->streaming = true;
    grpc_call *call = NULL;
    int rv = grpc_server_stream_external(jc->srv, jc->rpc->method, jc->peer, jc->token,
                                         &transport, jc,
                                         &call);
    if (rv == LSKV_ENOMEM) {
        answer_error(jc, GRPC_STATUS_RESOURCE_EXHAUSTED, "lskv: out of memory", false, 0);
        return false;
    }
    if (rv != 0) {
        /* A method we do not serve: a trailers-only UNIMPLEMENTED, as
         * grpc-go says it, is an ordinary error (note 2). */
        char msg[300];
        const char *m = jc->rpc->method + 1;
        const char *slash = strrchr(m, '/');
        snprintf(msg, sizeof msg, "unknown method %s for service %.*s", slash + 1,
                 (int)(slash - m), m);
        stream_end(jc, GRPC_STATUS_UNIMPLEMENTED, msg);
        return false;
    }
    jc->call = call;
    return true;
}

/* One request message to the stream (opening it first). false: the
 * request side is over (the call ended, or the transport aborts). */
static bool stream_deliver(struct json_call *jc, const uint8_t *pb, size_t pb_len)
{
    if (!jc->opened && !stream_open(jc))
        return false;
    if (jc->call == NULL || stream_overflow(jc))
        return false;
    jc->delivered = true;
    if (!grpc_call_external_message(jc->call, pb, pb_len) || jc->aborted)
        return false; /* over: t_finish answered (or the transport cancels) */
    if (gateway_rpc_server_stream(jc->rpc)) {
        /* One request; the rest of the body is not read (note 2). */
        jc->send_closed = true;
        (void)grpc_call_external_half_close(jc->call);
        return false;
    }
    return true;
}

static void stream_pump(struct json_call *jc);

/* A call that waited for a gateway slot starts (outside any other call's
 * callbacks); the answer may complete in here. */
static void slot_granted(void *arg)
{
    struct json_call *jc = arg;
    jc->in_start = true;
    if (jc->waiting_unary) {
        jc->waiting_unary = false;
        start_rpc(jc, jc->rpc->method, jc->waiting_pb, jc->waiting_len, jc->peer, jc->token);
        free(jc->waiting_pb);
        jc->waiting_pb = NULL;
    } else {
        stream_pump(jc);
    }
    jc->in_start = false;
    if (jc->finished && jc->call == NULL)
        jc_free(jc); /* answered: the transport let go */
}

/* Takes every complete value from jc->in (note 1). */
static void stream_pump(struct json_call *jc)
{
    /* Nothing reaches the handler before the stream has its slot; the body
     * waits in jc->in meanwhile. */
    if (!jc->opened && !grpc_server_gateway_acquire(jc->srv, &jc->slot, slot_granted, jc))
        return;
    size_t pos = 0;
    while (!jc->finished && !jc->aborted && !jc->send_closed) {
        size_t start = 0, end = 0;
        bool open_end = false;
        if (!json_next_value((const char *)jc->in, jc->in_len, pos, &start, &end, &open_end)) {
            pos = jc->in_len;
            break;
        }
        if (open_end && !jc->body_done) {
            pos = start; /* the rest of this value is still to come */
            break;
        }
        pos = end;
        char errmsg[LSKV_ERRMSG_SIZE] = "";
        uint8_t *pb = NULL;
        size_t pb_len = 0;
        int rv = convert(jc, jc->in + start, end - start, &pb, &pb_len, errmsg);
        if (rv == LSKV_EINVAL && jc->opened) {
            /* A later malformed value: Go's decoder stops, CloseSend. */
            jc->send_closed = true;
            if (jc->call != NULL)
                (void)grpc_call_external_half_close(jc->call);
            break;
        }
        if (rv != 0) {
            stream_fail(jc, rv, errmsg);
            break;
        }
        bool on = stream_deliver(jc, pb, pb_len);
        free(pb);
        if (!on)
            break;
    }
    if (jc->finished || jc->aborted || jc->send_closed) {
        jc->in_len = 0; /* nobody reads the rest */
    } else if (pos > 0) {
        memmove(jc->in, jc->in + pos, jc->in_len - pos);
        jc->in_len -= pos;
    }
    if (!jc->body_done || jc->finished || jc->aborted || jc->send_closed)
        return;
    /* The end of the body: CloseSend (an empty body still opens the
     * stream; a server stream's request is then the empty message). */
    if (!jc->opened && gateway_rpc_server_stream(jc->rpc)) {
        (void)stream_deliver(jc, (const uint8_t *)"", 0);
        return;
    }
    if (!jc->opened && !stream_open(jc))
        return;
    jc->send_closed = true;
    if (jc->call != NULL)
        (void)grpc_call_external_half_close(jc->call);
}

/* Body bytes of a streaming request; done: the body is complete. */
static void stream_body(struct json_call *jc, const uint8_t *data, size_t len, bool done)
{
    if (len > 0 && !jc->send_closed && !jc->finished && !jc->aborted) {
        size_t max = grpc_server_max_json_body(jc->srv);
        if (jc->in_len + len > max) {
            stream_fail(jc, LSKV_ETOOLARGE, "etcdserver: request is too large");
            return;
        }
        if (jc->in_len + len > jc->in_cap) {
            size_t cap = jc->in_cap ? jc->in_cap : 1024;
            while (cap < jc->in_len + len)
                cap *= 2;
            if (!grpc_server_buffer_adjust(jc->srv, jc->accounted, cap)) {
                /* grpc_server.c invariant 5. */
                stream_fail(jc, LSKV_ETOOLARGE, "etcdserver: too many requests");
                return;
            }
            jc->accounted = cap;
            uint8_t *p = realloc(jc->in, cap);
            if (p == NULL) {
                stream_fail(jc, LSKV_ENOMEM, "");
                return;
            }
            jc->in = p;
            jc->in_cap = cap;
        }
        memcpy(jc->in + jc->in_len, data, len);
        jc->in_len += len;
    }
    jc->body_done = done;
    stream_pump(jc);
    if (jc->in_len == 0 && jc->in_cap > 65536) {
        grpc_server_buffer_adjust(jc->srv, jc->accounted, 0);
        jc->accounted = 0;
        free(jc->in);
        jc->in = NULL;
        jc->in_cap = 0;
    }
}

bool json_call_streams_body(const char *method, const char *target)
{
    struct gateway_route route;
    gateway_route(method, target, &route);
    return route.kind == GATEWAY_STREAMING;
}

void json_call_body(struct json_call *jc, const uint8_t *data, size_t len, bool done)
{
    jc->in_start = true;
    stream_body(jc, data, len, done);
    jc->in_start = false;
    if (jc->finished && jc->call == NULL)
        jc_free(jc); /* the transport heard the end and let go */
}

/* Keeps a converted unary request until its slot comes (slot_granted). */
static bool wait_for_slot(struct json_call *jc, uint8_t **pb, size_t len, const char *peer,
                          const char *token)
{
    snprintf(jc->peer, sizeof jc->peer, "%s", peer ? peer : "?");
    if (token != NULL && (jc->token = strndup(token, GRPC_TOKEN_MAX)) == NULL) {
        grpc_server_gateway_release(jc->srv, &jc->slot);
        return false;
    }
    jc->waiting_unary = true;
    jc->waiting_pb = *pb;
    jc->waiting_len = len;
    *pb = NULL;
    return true;
}

struct json_call *json_call_start(grpc_server *srv, const char *method, const char *target,
                                  const uint8_t *body, size_t len, bool body_done,
                                  const char *peer, const char *token,
                                  const struct json_call_sink *sink, void *arg)
{
    struct json_call stack = {.srv = srv, .sink = sink, .arg = arg};
    struct json_call *jc = calloc(1, sizeof *jc);
    if (jc == NULL) {
        answer_text(&stack, 503, text_plain, "out of memory\n");
        return NULL;
    }
    *jc = stack;
    jc->in_start = true;
    struct gateway_route route;
    gateway_route(method, target, &route);
    /* A metrics listener serves these two only, as etcd's. */
    if (grpc_server_metrics_of(srv) != NULL && route.kind != GATEWAY_HEALTH &&
        route.kind != GATEWAY_METRICS)
        route.kind = GATEWAY_NO_ROUTE;
    switch (route.kind) {
    case GATEWAY_RPC: {
        jc->rpc = route.rpc;
        char errmsg[LSKV_ERRMSG_SIZE] = "";
        uint8_t *pb = NULL;
        size_t pb_len = 0;
        int rv = json_to_pb(route.rpc->request, (const char *)body, len, &pb, &pb_len, errmsg);
        if (rv == LSKV_ENOMEM)
            answer_error(jc, GRPC_STATUS_RESOURCE_EXHAUSTED, "lskv: out of memory", false, 0);
        else if (rv == LSKV_ETOODEEP && route.rpc->request == &etcdserverpb__txn_request__descriptor)
            /* As over gRPC (api_decode): no Txn this deep fits etcd's op budget. */
            answer_error(jc, GRPC_STATUS_INVALID_ARGUMENT,
                         "etcdserver: too many operations in txn request", false, 0);
        else if (rv != 0)
            answer_error(jc, GRPC_STATUS_INVALID_ARGUMENT, errmsg, false, 0);
        else if (grpc_server_gateway_acquire(srv, &jc->slot, slot_granted, jc))
            start_rpc(jc, route.rpc->method, pb, pb_len, peer, token);
        else if (!wait_for_slot(jc, &pb, pb_len, peer, token))
            answer_error(jc, GRPC_STATUS_RESOURCE_EXHAUSTED, "lskv: out of memory", false, 0);
        free(pb);
        break;
    }
    case GATEWAY_HEALTH:
        start_health(jc, peer);
        break;
    case GATEWAY_VERSION:
        answer_text(jc, 200, app_json, grpc_server_version_body(srv));
        break;
    case GATEWAY_METRICS:
        start_metrics(jc);
        break;
    case GATEWAY_NOT_FOUND:
        answer_text(jc, 404, text_plain, "Not Found\n");
        break;
    case GATEWAY_NO_ROUTE:
        answer_text(jc, 404, text_plain, "404 page not found\n");
        break;
    case GATEWAY_BAD_METHOD: {
        static const char text[] = "Method Not Allowed\n";
        struct gateway_response r = {.status = 405,
                                     .content_type = text_plain,
                                     .body = text,
                                     .body_len = sizeof text - 1,
                                     .allow_get = route.rpc == NULL};
        answer(jc, &r);
        break;
    }
    case GATEWAY_STREAMING:
        jc->rpc = route.rpc;
        snprintf(jc->peer, sizeof jc->peer, "%s", peer ? peer : "?");
        if (token != NULL && (jc->token = strndup(token, GRPC_TOKEN_MAX)) == NULL) {
            answer_error(jc, GRPC_STATUS_RESOURCE_EXHAUSTED, "lskv: out of memory", false, 0);
            break;
        }
        stream_body(jc, body, len, body_done);
        break;
    }
    jc->in_start = false;
    if (jc->finished && jc->call == NULL) {
        jc_free(jc);
        return NULL;
    }
    return jc;
}

void json_call_cancel(struct json_call *jc)
{
    if (jc == NULL)
        return;
    jc->finished = true;
    if (jc->call != NULL) {
        grpc_call *call = jc->call;
        jc->call = NULL;
        grpc_call_detach(call);
    }
    jc_free(jc);
}

/* lskvctl's blocking gRPC calls: one connection and one unary call on a
 * private libuv loop (client/grpc_client.h does the HTTP/2). */
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "client/grpc_client.h"
#include "common/err.h"
#include "lskvctl.h"

struct blocking {
    struct gcall call;
    struct gconn *conn;
    int err;
    char errmsg[LSKV_ERRMSG_SIZE];
    bool done;
    bool closing;
};

static void close_once(struct blocking *b)
{
    if (!b->closing) {
        b->closing = true;
        gconn_close(b->conn, NULL, NULL);
    }
}

static void on_done(struct gcall *call)
{
    struct blocking *b = call->data;
    b->done = true;
    close_once(b);
}

static void on_ready(struct gconn *c, int status, void *arg)
{
    struct blocking *b = arg;
    if (status == 0)
        status = gcall_start(c, &b->call);
    if (status != 0) {
        b->err = status;
        snprintf(b->errmsg, sizeof b->errmsg, "%s",
                 gconn_errmsg(c)[0] ? gconn_errmsg(c) : uv_strerror(status));
        b->conn = c;
        close_once(b);
    }
}

/* Undoes grpc-message percent-encoding in place. */
static void percent_decode(char *s)
{
    char *o = s;
    for (; *s; s++) {
        unsigned v;
        if (s[0] == '%' && s[1] && s[2] && sscanf(s + 1, "%2x", &v) == 1) {
            *o++ = (char)v;
            s += 2;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
}

int lskvctl_unary(const char *url, const char *path, const uint8_t *req, size_t req_len,
                  struct lskvctl_reply *out, char *errmsg)
{
    memset(out, 0, sizeof *out);
    out->grpc_status = -1;
    struct gendpoint ep;
    int rv = gendpoint_parse(url, &ep, errmsg);
    if (rv != 0)
        return LSKV_EINVAL;
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        errmsg_printf(errmsg, "uv_loop_init failed");
        return LSKV_EIO;
    }
    SSL_CTX *tls = NULL;
    if (ep.tls && gtls_ctx_new(NULL, NULL, NULL, 1, &tls, errmsg) != 0) {
        uv_loop_close(&loop);
        return LSKV_EINVAL;
    }
    struct blocking b;
    memset(&b, 0, sizeof b);
    gcall_init(&b.call);
    b.call.path = path;
    b.call.msg = req;
    b.call.msg_len = req_len;
    b.call.done = on_done;
    b.call.data = &b;
    rv = gconn_open(&loop, &ep, tls, on_ready, &b, &b.conn, errmsg);
    if (rv == 0)
        uv_run(&loop, UV_RUN_DEFAULT);
    int code = 0;
    if (rv != 0) {
        code = LSKV_EIO;
    } else if (b.err != 0 || !b.done) {
        errmsg_printf(errmsg, "%s: %s", url, b.errmsg[0] ? b.errmsg : "connection failed");
        code = LSKV_EIO;
    } else if (b.call.err != 0) {
        errmsg_printf(errmsg, "%s: call failed: %s", url, uv_strerror(b.call.err));
        code = LSKV_EIO;
    } else {
        out->grpc_status = b.call.grpc_status;
        snprintf(out->grpc_message, sizeof out->grpc_message, "%s", b.call.grpc_message);
        percent_decode(out->grpc_message);
        if (b.call.grpc_status == 0) {
            const uint8_t *m;
            size_t n;
            if (gcall_message(&b.call, &m, &n) != 0) {
                errmsg_printf(errmsg, "%s: malformed gRPC response", url);
                code = LSKV_EIO;
            } else {
                out->msg = malloc(n ? n : 1);
                if (out->msg == NULL) {
                    code = LSKV_ENOMEM;
                } else {
                    memcpy(out->msg, m, n);
                    out->len = n;
                }
            }
        }
    }
    gcall_free(&b.call);
    uv_run(&loop, UV_RUN_DEFAULT); /* let handles close */
    uv_loop_close(&loop);
    if (tls != NULL)
        SSL_CTX_free(tls);
    return code;
}

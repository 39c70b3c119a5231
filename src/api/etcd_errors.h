/* Maps lskv error codes to etcd's gRPC status codes and exact messages
 * (etcd 3.4 etcdserver/api/v3rpc/rpctypes/error.go), so clients that match
 * on them (etcdctl, clientv3's rpctypes) behave as with etcd. */
#ifndef LSKV_API_ETCD_ERRORS_H
#define LSKV_API_ETCD_ERRORS_H

#include "net/grpc_server.h"

struct etcd_error {
    enum grpc_status status;
    const char *message; /* static string */
};

/* Never fails: unknown codes map to UNKNOWN with lskv_strerror's text. */
struct etcd_error etcd_error_from(int code);

/* etcd's auth error for code as its Maintenance server answers it: the
 * auth package's own text with status UNKNOWN ("auth: permission denied"),
 * not the rpctypes one; codes that are not auth errors as etcd_error_from. */
struct etcd_error etcd_error_raw_auth(int code);

/* Finishes call with the etcd status and message for code. */
void etcd_error_finish(grpc_call *call, int code);

#endif

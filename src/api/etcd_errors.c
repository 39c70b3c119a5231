#include "api/etcd_errors.h"

#include "common/err.h"

struct etcd_error etcd_error_from(int code)
{
    switch (code) {
    case LSKV_EEMPTYKEY:
        return (struct etcd_error){GRPC_STATUS_INVALID_ARGUMENT, "etcdserver: key is not provided"};
    case LSKV_EKEYNOTFOUND:
        return (struct etcd_error){GRPC_STATUS_INVALID_ARGUMENT, "etcdserver: key not found"};
    case LSKV_EVALUEPROVIDED:
        return (struct etcd_error){GRPC_STATUS_INVALID_ARGUMENT, "etcdserver: value is provided"};
    case LSKV_ELEASEPROVIDED:
        return (struct etcd_error){GRPC_STATUS_INVALID_ARGUMENT, "etcdserver: lease is provided"};
    case LSKV_ETOOMANYOPS:
        return (struct etcd_error){GRPC_STATUS_INVALID_ARGUMENT,
                                   "etcdserver: too many operations in txn request"};
    case LSKV_EDUPKEY:
        return (struct etcd_error){GRPC_STATUS_INVALID_ARGUMENT,
                                   "etcdserver: duplicate key given in txn request"};
    case LSKV_ETOOLARGE:
        return (struct etcd_error){GRPC_STATUS_INVALID_ARGUMENT, "etcdserver: request is too large"};
    case LSKV_ECOMPACTED:
        return (struct etcd_error){GRPC_STATUS_OUT_OF_RANGE,
                                   "etcdserver: mvcc: required revision has been compacted"};
    case LSKV_EFUTUREREV:
        return (struct etcd_error){GRPC_STATUS_OUT_OF_RANGE,
                                   "etcdserver: mvcc: required revision is a future revision"};
    case LSKV_ELEASENOTFOUND:
        return (struct etcd_error){GRPC_STATUS_NOT_FOUND, "etcdserver: requested lease not found"};
    case LSKV_ELEASEEXISTS:
        return (struct etcd_error){GRPC_STATUS_FAILED_PRECONDITION,
                                   "etcdserver: lease already exists"};
    case LSKV_ELEASETTLTOOLARGE:
        return (struct etcd_error){GRPC_STATUS_OUT_OF_RANGE, "etcdserver: too large lease TTL"};
    case LSKV_ENOTLEADER:
        return (struct etcd_error){GRPC_STATUS_UNAVAILABLE, "etcdserver: no leader"};
    case LSKV_ETIMEOUT:
        return (struct etcd_error){GRPC_STATUS_UNAVAILABLE, "etcdserver: request timed out"};
    case LSKV_ELEADERONLY: /* rpctypes.ErrGRPCNotLeader */
        return (struct etcd_error){GRPC_STATUS_FAILED_PRECONDITION, "etcdserver: not leader"};
    case LSKV_EBADTRANSFEREE:
        return (struct etcd_error){GRPC_STATUS_FAILED_PRECONDITION,
                                   "etcdserver: bad leader transferee"};
    case LSKV_ETRANSFERTIMEOUT:
        return (struct etcd_error){GRPC_STATUS_UNAVAILABLE,
                                   "etcdserver: request timed out, leader transfer took too long"};
    case LSKV_ESHUTDOWN:
        return (struct etcd_error){GRPC_STATUS_UNAVAILABLE, "etcdserver: server stopped"};
    case LSKV_ETOOMANYREQUESTS: /* rpctypes.ErrGRPCTooManyRequests */
        return (struct etcd_error){GRPC_STATUS_RESOURCE_EXHAUSTED,
                                   "etcdserver: too many requests"};
    /* Membership (rpctypes.ErrGRPCMember*, ErrGRPCUnhealthy). */
    case LSKV_EMEMBERNOTFOUND:
        return (struct etcd_error){GRPC_STATUS_NOT_FOUND, "etcdserver: member not found"};
    case LSKV_EMEMBEREXIST:
        return (struct etcd_error){GRPC_STATUS_FAILED_PRECONDITION,
                                   "etcdserver: member ID already exist"};
    case LSKV_EPEERURLEXIST:
        return (struct etcd_error){GRPC_STATUS_FAILED_PRECONDITION,
                                   "etcdserver: Peer URLs already exists"};
    case LSKV_EMEMBERNOTLEARNER:
        return (struct etcd_error){GRPC_STATUS_FAILED_PRECONDITION,
                                   "etcdserver: can only promote a learner member"};
    case LSKV_ELEARNERNOTREADY:
        return (struct etcd_error){
            GRPC_STATUS_FAILED_PRECONDITION,
            "etcdserver: can only promote a learner member which is in sync with leader"};
    case LSKV_ETOOMANYLEARNERS:
        return (struct etcd_error){GRPC_STATUS_FAILED_PRECONDITION,
                                   "etcdserver: too many learner members in cluster"};
    case LSKV_EUNHEALTHY:
        return (struct etcd_error){GRPC_STATUS_UNAVAILABLE, "etcdserver: unhealthy cluster"};
    case LSKV_ENOTENOUGHSTARTED:
        return (struct etcd_error){GRPC_STATUS_FAILED_PRECONDITION,
                                   "etcdserver: re-configuration failed due to not enough "
                                   "started members"};
    case LSKV_EMEMBERBADURLS:
        return (struct etcd_error){GRPC_STATUS_INVALID_ARGUMENT,
                                   "etcdserver: given member URLs are invalid"};
    case LSKV_EREMOVED: /* rpctypes.ErrGRPCStopped after its own removal */
        return (struct etcd_error){GRPC_STATUS_UNAVAILABLE, "etcdserver: server stopped"};
    case LSKV_ECORRUPT:
        return (struct etcd_error){GRPC_STATUS_DATA_LOSS, "etcdserver: corrupt cluster"};
    case LSKV_ENOSPACE: /* the NOSPACE alarm (storage/diskspace.h) */
        return (struct etcd_error){GRPC_STATUS_RESOURCE_EXHAUSTED,
                                   "etcdserver: mvcc: database space exceeded"};
    case LSKV_EINVAL:
        return (struct etcd_error){GRPC_STATUS_INVALID_ARGUMENT, "etcdserver: invalid request"};
    /* auth: rpctypes.ErrGRPC* of etcd's auth errors */
    case LSKV_EROOTUSERNOTEXIST:
        return (struct etcd_error){GRPC_STATUS_FAILED_PRECONDITION,
                                   "etcdserver: root user does not exist"};
    case LSKV_EROOTROLENOTEXIST:
        return (struct etcd_error){GRPC_STATUS_FAILED_PRECONDITION,
                                   "etcdserver: root user does not have root role"};
    case LSKV_EUSEREXISTS:
        return (struct etcd_error){GRPC_STATUS_FAILED_PRECONDITION,
                                   "etcdserver: user name already exists"};
    case LSKV_EUSEREMPTY:
        return (struct etcd_error){GRPC_STATUS_INVALID_ARGUMENT, "etcdserver: user name is empty"};
    case LSKV_EUSERNOTFOUND:
        return (struct etcd_error){GRPC_STATUS_FAILED_PRECONDITION,
                                   "etcdserver: user name not found"};
    case LSKV_EROLEEXISTS:
        return (struct etcd_error){GRPC_STATUS_FAILED_PRECONDITION,
                                   "etcdserver: role name already exists"};
    case LSKV_EROLENOTFOUND:
        return (struct etcd_error){GRPC_STATUS_FAILED_PRECONDITION,
                                   "etcdserver: role name not found"};
    case LSKV_EROLEEMPTY:
        return (struct etcd_error){GRPC_STATUS_INVALID_ARGUMENT, "etcdserver: role name is empty"};
    case LSKV_EAUTHFAILED:
        return (struct etcd_error){GRPC_STATUS_INVALID_ARGUMENT,
                                   "etcdserver: authentication failed, invalid user ID or password"};
    case LSKV_EPERMDENIED:
        return (struct etcd_error){GRPC_STATUS_PERMISSION_DENIED, "etcdserver: permission denied"};
    case LSKV_EROLENOTGRANTED:
        return (struct etcd_error){GRPC_STATUS_FAILED_PRECONDITION,
                                   "etcdserver: role is not granted to the user"};
    case LSKV_EPERMNOTGRANTED:
        return (struct etcd_error){GRPC_STATUS_FAILED_PRECONDITION,
                                   "etcdserver: permission is not granted to the role"};
    case LSKV_EAUTHNOTENABLED:
        return (struct etcd_error){GRPC_STATUS_FAILED_PRECONDITION,
                                   "etcdserver: authentication is not enabled"};
    case LSKV_EINVALIDTOKEN:
        return (struct etcd_error){GRPC_STATUS_UNAUTHENTICATED, "etcdserver: invalid auth token"};
    case LSKV_EINVALIDAUTHMGMT:
        return (struct etcd_error){GRPC_STATUS_INVALID_ARGUMENT,
                                   "etcdserver: invalid auth management"};
    case LSKV_EAUTHOLDREV:
        return (struct etcd_error){GRPC_STATUS_INVALID_ARGUMENT,
                                   "etcdserver: revision of auth store is old"};
    case LSKV_ENOPASSWORDUSER: /* not in etcd's table: togRPCError passes its text */
        return (struct etcd_error){GRPC_STATUS_UNKNOWN,
                                   "auth: authentication failed, password was given for no "
                                   "password user"};
    case LSKV_EUNIMPLEMENTED:
        return (struct etcd_error){GRPC_STATUS_UNIMPLEMENTED, "lskv: method not implemented yet"};
    default:
        return (struct etcd_error){GRPC_STATUS_UNKNOWN, lskv_strerror(code)};
    }
}

struct etcd_error etcd_error_raw_auth(int code)
{
    switch (code) {
    case LSKV_EPERMDENIED:
        return (struct etcd_error){GRPC_STATUS_UNKNOWN, "auth: permission denied"};
    case LSKV_EUSEREMPTY:
        return (struct etcd_error){GRPC_STATUS_UNKNOWN, "auth: user name is empty"};
    case LSKV_EUSERNOTFOUND:
        return (struct etcd_error){GRPC_STATUS_UNKNOWN, "auth: user not found"};
    case LSKV_EINVALIDTOKEN:
        return (struct etcd_error){GRPC_STATUS_UNKNOWN, "auth: invalid auth token"};
    default:
        return etcd_error_from(code);
    }
}

void etcd_error_finish(grpc_call *call, int code)
{
    struct etcd_error e = etcd_error_from(code);
    grpc_call_finish(call, e.status, e.message);
}

/* One error space for lskv.
 *
 * Functions return int: 0 on success, a negated errno for system errors (so
 * libuv codes pass through unchanged), or an LSKV_E* code from the reserved
 * range below. The X-macro generates the enum, lskv_strerror() and
 * lskv_errname(); api/etcd_errors.c maps each code to etcd's gRPC status. */
#ifndef LSKV_COMMON_ERR_H
#define LSKV_COMMON_ERR_H

#include <stddef.h>

#define LSKV_ERR_MAP(X)                                                          \
    X(ECORRUPT, -10001, "integrity check failed")                                \
    X(EINVAL, -10002, "invalid argument")                                        \
    X(ENOMEM, -10003, "out of memory")                                           \
    X(ECOMPACTED, -10004, "required revision has been compacted")                \
    X(EFUTUREREV, -10005, "required revision is a future revision")              \
    X(EKEYNOTFOUND, -10006, "key not found")                                     \
    X(EEMPTYKEY, -10007, "key is not provided")                                  \
    X(ETOOMANYOPS, -10008, "too many operations in txn request")                 \
    X(EDUPKEY, -10009, "duplicate key given in txn request")                     \
    X(ELEASENOTFOUND, -10010, "requested lease not found")                       \
    X(ETOOLARGE, -10011, "request is too large")                                 \
    X(ENOTLEADER, -10012, "not the leader")                                      \
    X(ESHUTDOWN, -10013, "shutting down")                                        \
    X(EIO, -10014, "storage I/O error")                                          \
    X(EUNIMPLEMENTED, -10015, "not implemented")                                 \
    X(ENOTREADY, -10016, "not ready yet")                                        \
    X(EFORMAT, -10017, "unsupported format version")                             \
    X(ENOTFOUND, -10018, "not found")                                            \
    X(EVALUEPROVIDED, -10019, "value is provided")                               \
    X(ELEASEPROVIDED, -10020, "lease is provided")                               \
    X(ETIMEOUT, -10021, "request timed out")                                     \
    X(ETOODEEP, -10022, "message nested too deep")                               \
    X(ELEADERONLY, -10023, "only the leader does this")                          \
    X(EBADTRANSFEREE, -10024, "bad leader transferee")                           \
    X(ETRANSFERTIMEOUT, -10025, "leader transfer took too long")                 \
    X(ELEASEEXISTS, -10030, "lease already exists")                              \
    X(ELEASETTLTOOLARGE, -10031, "too large lease TTL")                          \
    X(ENOSPACE, -10040, "no space left on device")                               \
    X(ETOOMANYREQUESTS, -10050, "too many requests")                             \
    /* auth (auth/authstore.h): etcd's auth errors, one code each */             \
    X(EROOTUSERNOTEXIST, -10060, "root user does not exist")                     \
    X(EROOTROLENOTEXIST, -10061, "root user does not have root role")            \
    X(EUSEREXISTS, -10062, "user name already exists")                           \
    X(EUSEREMPTY, -10063, "user name is empty")                                  \
    X(EUSERNOTFOUND, -10064, "user name not found")                              \
    X(EROLEEXISTS, -10065, "role name already exists")                           \
    X(EROLENOTFOUND, -10066, "role name not found")                              \
    X(EROLEEMPTY, -10067, "role name is empty")                                  \
    X(EAUTHFAILED, -10068, "authentication failed, invalid user ID or password") \
    X(EPERMDENIED, -10069, "permission denied")                                  \
    X(EROLENOTGRANTED, -10070, "role is not granted to the user")                \
    X(EPERMNOTGRANTED, -10071, "permission is not granted to the role")          \
    X(EAUTHNOTENABLED, -10072, "authentication is not enabled")                  \
    X(EINVALIDTOKEN, -10073, "invalid auth token")                               \
    X(EINVALIDAUTHMGMT, -10074, "invalid auth management")                       \
    X(EAUTHOLDREV, -10075, "revision of auth store is old")                      \
    X(ENOPASSWORDUSER, -10076, "password was given for no password user")       \
    X(EMEMBERNOTFOUND, -10080, "member not found")                               \
    X(EMEMBEREXIST, -10081, "member ID already exist")                           \
    X(EPEERURLEXIST, -10082, "peer URLs already exists")                         \
    X(EMEMBERNOTLEARNER, -10083, "can only promote a learner member")            \
    X(ELEARNERNOTREADY, -10084, "learner not in sync with the leader")           \
    X(ETOOMANYLEARNERS, -10085, "too many learner members in cluster")           \
    X(EUNHEALTHY, -10086, "unhealthy cluster")                                   \
    X(EMEMBERBADURLS, -10087, "given member URLs are invalid")                   \
    X(EREMOVED, -10088, "this member was removed from the cluster")             \
    X(ENOTENOUGHSTARTED, -10089, "not enough started members")

enum lskv_err {
#define LSKV_ERR_ENUM(name, code, msg) LSKV_##name = (code),
    LSKV_ERR_MAP(LSKV_ERR_ENUM)
#undef LSKV_ERR_ENUM
};

/* Human text for any code (LSKV_E*, negated errno). Never NULL. */
const char *lskv_strerror(int code);
/* Symbolic name ("LSKV_ECORRUPT", "ENOENT"). Never NULL. */
const char *lskv_errname(int code);

/* Error message buffers: low layers format, upper layers prefix context. */
#define LSKV_ERRMSG_SIZE 512
void errmsg_printf(char *errmsg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prefix "context: " to the message already in errmsg. */
void errmsg_wrapf(char *errmsg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif

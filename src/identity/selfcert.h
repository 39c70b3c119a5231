/* --auto-tls: the self-signed client certificate etcd 3.4 makes
 * (pkg/transport SelfCert) when https:// client URLs come without
 * --cert-file/--key-file: an ECDSA P-521 key and a certificate valid for a
 * year, organisation "etcd", server auth, naming every listen host (IP
 * addresses as IP SANs, names as DNS SANs), in <dir>/cert.pem and
 * <dir>/key.pem. As etcd, a pair already there is used as it is. */
#ifndef LSKV_IDENTITY_SELFCERT_H
#define LSKV_IDENTITY_SELFCERT_H

#include <stdbool.h>
#include <stddef.h>

#define SELFCERT_PATH_MAX 4096

/* Makes dir (0700, and its parent) when missing, then the pair unless both
 * files exist. cert_path and key_path (SELFCERT_PATH_MAX) get the paths;
 * *made says whether a new pair was written. hosts are host names or IP
 * addresses without brackets or ports. Errors: negated errno, LSKV_EIO
 * (OpenSSL), LSKV_EINVAL (path too long); errmsg says which. */
int selfcert_ensure(const char *dir, const char *const *hosts, size_t n_hosts,
                    char *cert_path, char *key_path, bool *made, char *errmsg);

#endif

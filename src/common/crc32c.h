/* CRC-32C (Castagnoli): the ledger's frame checksums and etcd's HashKV.
 * Not a security control anywhere it is used. */
#ifndef LSKV_COMMON_CRC32C_H
#define LSKV_COMMON_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* crc of the bytes so far (0 to start) extended by buf, as Go's
 * crc32.Update with the Castagnoli table. */
uint32_t crc32c_update(uint32_t crc, const uint8_t *buf, size_t len);

#endif

/* Fuzzes the ledger chunk parsers (chunk header, entry frames, private
 * plaintext, signature payloads), then the verifier lskvd's open and
 * lskvctl's audit run over a chunk file (ledger/verify.c, with a fixed
 * secret so private parts are opened), and, for inputs that start with '{', the receipt JSON
 * parser and verifier lskvctl runs on files it is handed. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/arena.h"
#include "common/err.h"
#include "ledger/chunk.h"
#include "ledger/merkle.h"
#include "ledger/receipt.h"
#include "ledger/sig.h"
#include "ledger/verify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char errmsg[LSKV_ERRMSG_SIZE];
    if (size > 0 && data[0] == '{') {
        struct arena a;
        arena_init(&a);
        Lskvserverpb__Receipt *r;
        if (receipt_from_json((const char *)data, size, &a, &r, errmsg) == 0)
            receipt_verify(r, NULL, NULL, NULL, errmsg);
        arena_close(&a);
        return 0;
    }
    struct chunk_header h;
    size_t off = 0;
    merkle_tree *t = NULL;
    if (chunk_header_decode(data, size, &h, &off, errmsg) == 0)
        merkle_open(h.first_leaf, (const uint8_t(*)[MERKLE_HASH_BYTES])h.peaks, h.n_peaks, &t);
    else
        merkle_open(0, NULL, 0, &t);
    while (off < size) {
        struct chunk_entry e;
        bool trunc;
        if (chunk_entry_decode(data + off, size - off, &e, &trunc, errmsg) != 0)
            break;
        uint8_t leaf[MERKLE_HASH_BYTES];
        chunk_entry_leaf(&e, leaf);
        if (t != NULL)
            merkle_append(t, leaf);
        if (e.type == CHUNK_ENTRY_SIGNATURE) {
            struct sig_payload p;
            uint8_t root[MERKLE_HASH_BYTES];
            if (sig_payload_decode(e.public_part, e.public_len, &p, errmsg) == 0 && t != NULL &&
                p.tree_size >= merkle_base(t) && p.tree_size <= merkle_size(t) &&
                merkle_root(t, p.tree_size, root) == 0 && memcmp(root, p.root, 32) == 0)
                sig_verify(&p, NULL, errmsg);
        }
        /* The sealed bytes stand in for a plaintext here. */
        const uint8_t *ws;
        size_t wl;
        chunk_private_decode(e.sealed, e.sealed_len, &ws, &wl, errmsg);
        off += e.frame_len;
    }
    merkle_close(t);
    /* The verifier, as for a first chunk: sealed or open with a torn tail. */
    static const uint8_t secret[32] = {7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
                                       7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7};
    struct verify_config vc = {.secret = (size & 1) ? secret : NULL};
    verifier *v;
    if (verify_open(&vc, &v) == 0) {
        struct verify_chunk_result r;
        verify_chunk(v, data, size, 0, 3, size & 2, !(size & 2), &r, errmsg);
        verify_close(v);
    }
    return 0;
}

/* Fuzzes --initial-cluster parsing (config/members.c), which the peer
 * network will also meet in member lists: any text must give 0 or
 * LSKV_EINVAL with a message, never a crash or an overread; what parses
 * has members sorted by id, each with sorted peer URLs, a member id that
 * members_member_id gives again and the cluster id of those ids. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "config/members.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    struct members m;
    char errmsg[LSKV_ERRMSG_SIZE] = "";
    int rv = members_parse(text, "fuzz-token", &m, errmsg);
    if (rv != 0 && (rv != LSKV_EINVAL || errmsg[0] == '\0'))
        abort();
    if (rv == 0) {
        uint64_t ids[MEMBERS_MAX];
        for (size_t i = 0; i < m.n; i++) {
            const struct member *x = &m.m[i];
            if (i > 0 && m.m[i - 1].id >= x->id)
                abort();
            for (size_t u = 1; u < x->n_peer_urls; u++)
                if (strcmp(x->peer_urls[u - 1], x->peer_urls[u]) > 0)
                    abort();
            if (members_member_id((const char *const *)x->peer_urls, x->n_peer_urls,
                                  "fuzz-token") != x->id)
                abort();
            ids[i] = x->id;
        }
        if (members_cluster_id(ids, m.n) != m.cluster_id)
            abort();
        if (m.n > 0)
            (void)members_find_local(&m, m.m[0].name, m.m[0].peer_urls, m.m[0].n_peer_urls,
                                     NULL, errmsg);
    }
    members_free(&m);
    free(text);
    return 0;
}

/*
 * internal.h - the tables behind auth.h, shared by the parser (tokens.c)
 * and the checks (auth.c).
 *
 * A table owns its identities, their pattern strings and the sorted hash
 * index. It is immutable after parsing but for the rate buckets (atomics)
 * and its reference count.
 */
#ifndef TSE_AUTH_INTERNAL_H
#define TSE_AUTH_INTERNAL_H

#include <openssl/evp.h>
#include <stdatomic.h>

#include "auth/auth.h"

struct tse_identity {
    char name[TSE_AUTH_NAME_MAX + 1];
    char *cn; /* NULL: no certificate identity */
    char **publish;
    size_t n_publish;
    char **subscribe;
    size_t n_subscribe;
    bool admin;
    bool on_behalf;
    int64_t expires_s; /* 0: never */
    /* Token bucket as GCRA: the theoretical arrival time of the next event
     * (monotonic us); interval_us per event, burst_us of tolerance. */
    int64_t interval_us; /* 0: no rate */
    int64_t burst_us;
    atomic_int_fast64_t tat_us;
    /* Audit lines of its rate refusals: at most one per second. */
    atomic_int_fast64_t limited_line_s;
    atomic_uint_fast64_t limited_unlogged;
};

/* One token hash and the identity it proves, sorted by hash. */
typedef struct tse_auth_hash {
    uint8_t hash[TSE_AUTH_HASH_LEN];
    size_t identity;
} tse_auth_hash;

/* Orders tse_auth_hash by hash: the index's qsort and bsearch (auth.c). */
int tse_auth_hash_cmp(const void *a, const void *b);

struct tse_auth_table {
    tse_identity *ids;
    size_t n_ids;
    tse_auth_hash *hashes;
    size_t n_hashes;
    atomic_long refs; /* tse_auth: the holder's + one per acquire */
    /* SHA-256 fetched once: EVP_sha256() would look the algorithm up in
     * libcrypto's provider tables at every digest (measured 1.1 us against
     * 0.4 us fetched). */
    EVP_MD *sha256;
};

#endif

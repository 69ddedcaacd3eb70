/*
 * bench_auth.c - what the service's per-call token check costs: finding a
 * bearer token in a tokens table (SHA-256 through libcrypto + binary
 * search), then the publish permission and the rate bucket, as a call does.
 *
 *   build/bench/bench_auth [identities] [iterations]
 *
 * Prints nanoseconds per check, single-threaded, for a table of
 * `identities` (default 1000) with one token each.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/auth.h"

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* "name-<i> sha256=<hex of token-<i>> publish=sample.*,document.*\n" per i. */
static char *make_file(int n)
{
    size_t cap = (size_t)n * 200 + 1, len = 0;
    char *text = malloc(cap), token[64];
    uint8_t h[TSE_AUTH_HASH_LEN];

    if (text == NULL)
        exit(1);
    for (int i = 0; i < n; i++) {
        snprintf(token, sizeof(token), "tse_benchmark-token-%08d-abcdefghijklmnop", i);
        tse_auth_sha256(token, strlen(token), h);
        len += (size_t)snprintf(text + len, cap - len, "svc-%d sha256=", i);
        for (int k = 0; k < TSE_AUTH_HASH_LEN; k++)
            len += (size_t)snprintf(text + len, cap - len, "%02x", h[k]);
        len += (size_t)snprintf(text + len, cap - len,
                                " publish=sample.*,document.* subscribe=sample.*\n");
    }
    return text;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    long iters = argc > 2 ? atol(argv[2]) : 2000000;
    char *text = make_file(n), token[64];
    tse_auth_table *t = NULL;
    tse_error err;
    long found = 0;
    double t0, t1;

    if (n < 1 || iters < 1 || tse_auth_table_parse(text, strlen(text), &t, &err) != TSE_OK) {
        fprintf(stderr, "bench_auth: cannot build the table\n");
        return 1;
    }
    snprintf(token, sizeof(token), "tse_benchmark-token-%08d-abcdefghijklmnop", n / 2);
    t0 = now_s();
    for (long i = 0; i < iters; i++) {
        const tse_identity *id = tse_auth_table_find_token(t, token, strlen(token), 1);
        if (id != NULL && tse_identity_may_publish(id, "sample.created") &&
            tse_identity_rate_take(id, i, NULL))
            found++;
    }
    t1 = now_s();
    printf("token check (sha256 + lookup in %d identities + publish permission): %.0f ns/call "
           "(%ld calls, %ld allowed)\n",
           n, (t1 - t0) * 1e9 / (double)iters, iters, found);
    tse_auth_table_destroy(t);
    free(text);
    return found == iters ? 0 : 1;
}

/*
 * auth.c - the checks on a parsed table (token, certificate name,
 * permissions, rate) and the holder that swaps tables on reload.
 *
 * Reload without blocking readers: a reader announces itself (readers++),
 * loads the current table, takes a reference on it and leaves (readers--).
 * The reloader swaps the pointer, then waits until no reader is inside that
 * window (a few instructions long) before it drops the holder's reference
 * to the old table: any reader that saw the old pointer has its reference
 * by then, so the old table is freed only by the last release.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/internal.h"
#include "domain/subscription.h"

bool tse_auth_sha256(const void *data, size_t len, uint8_t out[TSE_AUTH_HASH_LEN])
{
    unsigned int n = 0;

    return EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) == 1 && n == TSE_AUTH_HASH_LEN;
}

size_t tse_auth_table_count(const tse_auth_table *t)
{
    return t ? t->n_ids : 0;
}

static const tse_identity *unexpired(const tse_identity *id, int64_t now_s)
{
    if (id->expires_s != 0 && now_s >= id->expires_s)
        return NULL;
    return id;
}

int tse_auth_hash_cmp(const void *a, const void *b)
{
    return memcmp(((const tse_auth_hash *)a)->hash, ((const tse_auth_hash *)b)->hash,
                  TSE_AUTH_HASH_LEN);
}

const tse_identity *tse_auth_table_find_token(const tse_auth_table *t, const char *token,
                                              size_t len, int64_t now_s)
{
    tse_auth_hash key;
    const tse_auth_hash *hit;

    if (t == NULL || token == NULL || len == 0 || t->n_hashes == 0)
        return NULL;
    if (EVP_Digest(token, len, key.hash, NULL, t->sha256, NULL) != 1)
        return NULL;
    hit = bsearch(&key, t->hashes, t->n_hashes, sizeof(key), tse_auth_hash_cmp);
    return hit ? unexpired(&t->ids[hit->identity], now_s) : NULL;
}

const tse_identity *tse_auth_table_find_cn(const tse_auth_table *t, const char *cn, size_t len,
                                           int64_t now_s)
{
    if (t == NULL || cn == NULL)
        return NULL;
    for (size_t i = 0; i < t->n_ids; i++) {
        const char *c = t->ids[i].cn;
        if (c != NULL && strlen(c) == len && memcmp(c, cn, len) == 0)
            return unexpired(&t->ids[i], now_s);
    }
    return NULL;
}

const tse_identity *tse_auth_table_find_name(const tse_auth_table *t, const char *name)
{
    if (t == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < t->n_ids; i++)
        if (strcmp(t->ids[i].name, name) == 0)
            return &t->ids[i];
    return NULL;
}

/* ---- permissions ---------------------------------------------------------- */

const char *tse_identity_name(const tse_identity *id)
{
    return id->name;
}

bool tse_identity_admin(const tse_identity *id)
{
    return id->admin;
}

bool tse_identity_on_behalf(const tse_identity *id)
{
    return id->on_behalf;
}

int64_t tse_identity_expires(const tse_identity *id)
{
    return id->expires_s;
}

bool tse_identity_may_publish(const tse_identity *id, const char *event_type)
{
    return tse_patterns_match(id->publish, id->n_publish, event_type);
}

bool tse_identity_may_subscribe(const tse_identity *id, const char *pattern)
{
    for (size_t i = 0; i < id->n_subscribe; i++)
        if (tse_pattern_within(pattern, id->subscribe[i]))
            return true;
    return false;
}

/*
 * GCRA: the bucket is the theoretical arrival time (tat) of the next event.
 * An event at now fits when tat - now <= burst; it moves tat one interval
 * on from max(tat, now). One compare-and-swap, no lock.
 */
bool tse_identity_rate_take(const tse_identity *id, int64_t now_us, int64_t *retry_after_ms)
{
    tse_identity *m = (tse_identity *)id; /* the bucket is the one mutable part */
    int_fast64_t tat = atomic_load_explicit(&m->tat_us, memory_order_relaxed), next;

    if (id->interval_us == 0)
        return true;
    do {
        int_fast64_t base = tat > now_us ? tat : now_us;
        if (base - now_us > id->burst_us) {
            if (retry_after_ms != NULL)
                *retry_after_ms = (base - now_us - id->burst_us + 999) / 1000;
            return false;
        }
        next = base + id->interval_us;
    } while (!atomic_compare_exchange_weak_explicit(&m->tat_us, &tat, next, memory_order_relaxed,
                                                    memory_order_relaxed));
    return true;
}

bool tse_identity_rate_audit(const tse_identity *id, int64_t now_us, uint64_t *unlogged)
{
    tse_identity *m = (tse_identity *)id;
    int_fast64_t now_s = now_us / 1000000, last = atomic_load(&m->limited_line_s);

    if (last == now_s || !atomic_compare_exchange_strong(&m->limited_line_s, &last, now_s)) {
        atomic_fetch_add(&m->limited_unlogged, 1);
        return false;
    }
    if (unlogged != NULL)
        *unlogged = atomic_exchange(&m->limited_unlogged, 0);
    return true;
}

/* ---- the holder ----------------------------------------------------------- */

struct tse_auth {
    char *path;
    _Atomic(tse_auth_table *) current;
    atomic_long readers;
};

#define TOKENS_FILE_MAX (16L << 20)

/* Reads the whole file at path into a new buffer (caller frees). */
static tse_status read_file(const char *path, char **out, size_t *len, tse_error *err)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0;

    if (f == NULL)
        return tse_error_set(err, TSE_UNAVAILABLE, "AUTH_TOKENS_FILE", "cannot read %s: %s", path,
                             strerror(errno));
    for (;;) {
        if (n == cap) {
            char *more = cap < TOKENS_FILE_MAX ? realloc(buf, cap ? 2 * cap : 4096) : NULL;
            if (more == NULL) {
                free(buf);
                fclose(f);
                return tse_error_set(err, TSE_INVALID, "AUTH_TOKENS_FILE",
                                     "%s is larger than 16 MiB or memory ran out", path);
            }
            buf = more;
            cap = cap ? 2 * cap : 4096;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    *out = buf;
    *len = n;
    return TSE_OK;
}

static tse_status load(const char *path, tse_auth_table **out, tse_error *err)
{
    char *text = NULL, line[32];
    size_t len = 0;
    tse_status st = read_file(path, &text, &len, err);

    if (st != TSE_OK)
        return st;
    st = tse_auth_table_parse(text, len, out, err);
    free(text);
    if (st == TSE_INVALID && err != NULL) {
        /* "line 3" -> "AUTH_TOKENS_FILE line 3": the setting to fix. */
        snprintf(line, sizeof(line), "%.24s", err->field);
        snprintf(err->field, sizeof(err->field), "AUTH_TOKENS_FILE %s", line);
    }
    return st;
}

tse_status tse_auth_create(const char *path, tse_auth **out, tse_error *err)
{
    tse_auth *a = calloc(1, sizeof(*a));
    tse_auth_table *t = NULL;
    tse_status st;

    *out = NULL;
    if (a == NULL || (a->path = strdup(path)) == NULL) {
        free(a);
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    }
    st = load(path, &t, err);
    if (st != TSE_OK) {
        free(a->path);
        free(a);
        return st;
    }
    atomic_init(&a->current, t);
    atomic_init(&a->readers, 0);
    *out = a;
    return TSE_OK;
}

const tse_auth_table *tse_auth_acquire(tse_auth *a)
{
    tse_auth_table *t;

    atomic_fetch_add(&a->readers, 1);
    t = atomic_load(&a->current);
    atomic_fetch_add(&t->refs, 1);
    atomic_fetch_sub(&a->readers, 1);
    return t;
}

bool tse_auth_is_current(tse_auth *a, const tse_auth_table *t)
{
    return atomic_load_explicit(&a->current, memory_order_acquire) == t;
}

void tse_auth_release(const tse_auth_table *t)
{
    tse_auth_table *m = (tse_auth_table *)t;

    if (m != NULL && atomic_fetch_sub(&m->refs, 1) == 1)
        tse_auth_table_destroy(m);
}

tse_status tse_auth_reload(tse_auth *a, tse_error *err)
{
    tse_auth_table *t = NULL, *old;
    tse_status st = load(a->path, &t, err);

    if (st != TSE_OK)
        return st;
    old = atomic_exchange(&a->current, t);
    while (atomic_load(&a->readers) != 0)
        sched_yield();
    tse_auth_release(old);
    return TSE_OK;
}

void tse_auth_destroy(tse_auth *a)
{
    if (a == NULL)
        return;
    tse_auth_release(atomic_load(&a->current));
    free(a->path);
    free(a);
}

/*
 * ack_id.c - parses "<stream key>/<entry id>" (see ack_id.h). Pure.
 */
#include "storage/ack_id.h"

#include <string.h>

/* The length of the run of decimal digits at s (at most max + 1 counted). */
static size_t digits(const char *s, size_t max)
{
    size_t n = 0;

    while (n <= max && s[n] >= '0' && s[n] <= '9')
        n++;
    return n;
}

/* True for "<ms>-<seq>", each 1..20 digits, and nothing after. */
static bool entry_valid(const char *e)
{
    size_t ms = digits(e, 20), seq;

    if (ms == 0 || ms > 20 || e[ms] != '-')
        return false;
    seq = digits(e + ms + 1, 20);
    return seq > 0 && seq <= 20 && e[ms + 1 + seq] == '\0';
}

bool tse_ack_id_split(const char *ack_id, char *key, size_t key_len, const char **entry)
{
    const char *slash;
    size_t n;

    if (ack_id == NULL || key == NULL || key_len == 0)
        return false;
    slash = strrchr(ack_id, '/');
    if (slash == NULL || !entry_valid(slash + 1))
        return false;
    n = (size_t)(slash - ack_id);
    if (n == 0 || n >= key_len)
        return false;
    memcpy(key, ack_id, n);
    key[n] = '\0';
    *entry = slash + 1;
    return true;
}

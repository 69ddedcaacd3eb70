/*
 * fuzz_redis_url.c - libFuzzer target for tse_redis_url_parse
 * (src/storage/redis_url.c), which reads REDIS_URL.
 *
 * Checked besides memory safety: a rejection names the field "redis_url"
 * with a non-empty message that never contains the password part of the
 * URL (the text between the scheme's "//" + user ":" and the last '@',
 * when there is one); an accepted URL yields a non-empty host, a port in
 * 1..65535 and a db >= 0, every string terminated within its buffer.
 */
#include <stdbool.h>

#include "fuzz_support.h"
#include "storage/redis_url.h"

static bool has_non_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return true;
    return false;
}

/* The raw password text of url (between the first ':' after "//" and the last
 * '@'), or NULL when there is none or it also appears elsewhere in url (then
 * a message quoting that other part would show it by coincidence). */
static char *raw_password(const char *url)
{
    const char *start = strstr(url, "//"), *at = strrchr(url, '@'), *colon;
    char *pw;

    if (start == NULL || at == NULL || at < start)
        return NULL;
    colon = memchr(start + 2, ':', (size_t)(at - start - 2));
    if (colon == NULL || at - colon - 1 < 4)
        return NULL;
    pw = fuzz_strndup((const uint8_t *)colon + 1, (size_t)(at - colon - 1));
    /* Only a password with a byte no message template has can be told
     * apart from the text of a message that happens to contain it. */
    if (strstr(url, pw) != colon + 1 || strstr(colon + 2, pw) != NULL || !has_non_ascii(pw)) {
        free(pw);
        return NULL;
    }
    return pw;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *url = fuzz_strndup(data, size);
    tse_redis_target t;
    tse_error err;

    memset(&t, 0x5a, sizeof(t));
    tse_error_clear(&err);
    if (tse_redis_url_parse(url, &t, &err) == TSE_OK) {
        FUZZ_CHECK(memchr(t.host, '\0', sizeof(t.host)) && t.host[0] != '\0', "host");
        FUZZ_CHECK(memchr(t.username, '\0', sizeof(t.username)) != NULL, "username");
        FUZZ_CHECK(memchr(t.password, '\0', sizeof(t.password)) != NULL, "password");
        FUZZ_CHECK(t.port >= 1 && t.port <= 65535, "port %d", t.port);
        FUZZ_CHECK(t.db >= 0, "db %d", t.db);
    } else {
        char *pw = raw_password(url);
        FUZZ_CHECK(err.code == TSE_INVALID && strcmp(err.field, "redis_url") == 0 &&
                       err.message[0] != '\0',
                   "error %d %s: %s", err.code, err.field, err.message);
        FUZZ_CHECK(pw == NULL || strstr(err.message, pw) == NULL,
                   "the message \"%s\" shows the password", err.message);
        free(pw);
    }
    free(url);
    return 0;
}

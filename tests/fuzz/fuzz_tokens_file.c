/*
 * fuzz_tokens_file.c - libFuzzer target for tse_auth_table_parse
 * (src/auth/tokens.c), which reads AUTH_TOKENS_FILE.
 *
 * Checked besides memory safety: a refusal is TSE_INVALID naming a line
 * ("line <n>", n within the input's lines) or the whole file, with a
 * non-empty message; an accepted table answers lookups of the input's own
 * words (as tokens, names and certificate names) without reading out of
 * bounds, and every identity it holds is found by its name.
 */
#include <stdbool.h>

#include "auth/auth.h"
#include "fuzz_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tse_auth_table *t = NULL;
    tse_error err;
    size_t lines = 1;

    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';
    tse_error_clear(&err);
    if (tse_auth_table_parse((const char *)data, size, &t, &err) != TSE_OK) {
        int n = 0;
        FUZZ_CHECK(t == NULL, "a refusal left a table");
        FUZZ_CHECK(err.code == TSE_INVALID || err.code == TSE_NOMEM, "code %d", err.code);
        FUZZ_CHECK(err.message[0] != '\0', "empty message");
        FUZZ_CHECK(strcmp(err.field, "tokens file") == 0 ||
                       (sscanf(err.field, "line %d", &n) == 1 && n >= 1 && (size_t)n <= lines),
                   "field \"%s\"", err.field);
        return 0;
    }
    char *words = fuzz_strndup(data, size > 256 ? 256 : size);
    for (char *w = strtok(words, " \t\r\n"); w != NULL; w = strtok(NULL, " \t\r\n")) {
        const tse_identity *id = tse_auth_table_find_name(t, w);
        if (id != NULL) {
            FUZZ_CHECK(strcmp(tse_identity_name(id), w) == 0, "found the wrong identity");
            (void)tse_identity_may_publish(id, "sample.created");
            (void)tse_identity_may_subscribe(id, "sample.*");
            (void)tse_identity_rate_take(id, 1000000, NULL);
        }
        (void)tse_auth_table_find_token(t, w, strlen(w), 1);
        (void)tse_auth_table_find_cn(t, w, strlen(w), 1);
    }
    free(words);
    tse_auth_table_destroy(t);
    return 0;
}

/*
 * fuzz_ack_id.c - libFuzzer target for ack id parsing (src/storage/ack_id.h):
 * every Acknowledge, Nack, Subscribe ack/nack/extend and REST ack carries
 * client-written ack ids.
 *
 * Checked besides memory safety: an accepted id is exactly
 * key + "/" + entry, the key is non-empty and fits its buffer, the entry is
 * "<digits>-<digits>"; a key buffer too small by one refuses it.
 */
#include <stdbool.h>

#include "fuzz_support.h"
#include "storage/ack_id.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *id = fuzz_strndup(data, size);
    char key[256];
    const char *entry = NULL;

    if (tse_ack_id_split(id, key, sizeof(key), &entry)) {
        size_t klen = strlen(key);
        const char *dash = strchr(entry, '-');

        FUZZ_CHECK(klen > 0 && klen < sizeof(key), "key of %zu bytes", klen);
        FUZZ_CHECK(entry == id + klen + 1 && id[klen] == '/' && memcmp(id, key, klen) == 0,
                   "\"%s\" is not key + '/' + entry", id);
        FUZZ_CHECK(dash != NULL && dash > entry && dash[1] != '\0' &&
                       strspn(entry, "0123456789") == (size_t)(dash - entry) &&
                       strspn(dash + 1, "0123456789") == strlen(dash + 1) &&
                       strlen(entry) <= TSE_ACK_ENTRY_MAX,
                   "entry \"%s\"", entry);
        FUZZ_CHECK(!tse_ack_id_split(id, key, klen, &entry), "a %zu-byte key fit %zu bytes", klen,
                   klen);
    }
    free(id);
    return 0;
}

/*
 * fuzz_redis_reply.c - libFuzzer target for the raw reading of Redis replies
 * (src/storage/resp.c's tse_resp_skip_step and cursor, group_ops.c's
 * tse_group_read_parse): the delivery engine takes XREADGROUP's reply from
 * the socket as bytes and walks them itself, so these bytes are the
 * network's.
 *
 * Checked besides memory safety: the walk gives the same answer fed a byte
 * at a time (resumed) as fed everything at once, and a complete reply's
 * length is within the input; the cursor's skip agrees with the walk; a
 * reply decoded as a read gives entries of the streams asked for only,
 * each with an id, and counts per stream no smaller than what it kept.
 */
#include <stdbool.h>

#include "fuzz_support.h"
#include "storage/group_ops.h"
#include "storage/resp.h"

static const char *const keys[] = {"s:a", "s:b"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    tse_resp_skip whole = {0}, step = {0};
    tse_resp_cursor c = {buf, buf + size};
    tse_group_entries out = {0};
    size_t per[2], kept[2] = {0, 0};
    int got = tse_resp_skip_step(&whole, buf, size), again = 0;

    /* Resumed one byte at a time: the same answer at the same place. */
    for (size_t n = 0; n <= size && again == 0; n++)
        again = tse_resp_skip_step(&step, buf, n);
    FUZZ_CHECK(again == got, "whole %d, resumed %d", got, again);
    if (got != 1)
        return 0;
    FUZZ_CHECK(whole.at == step.at && whole.at > 0 && whole.at <= size,
               "reply of %zu / %zu bytes in %zu", whole.at, step.at, size);
    FUZZ_CHECK(tse_resp_skip_value(&c) && c.p == buf + whole.at, "the cursor skipped %td bytes",
               c.p - buf);
    if (tse_group_read_parse(buf, whole.at, keys, 2, &out, per) == TSE_OK) {
        for (size_t i = 0; i < out.n; i++) {
            FUZZ_CHECK(out.v[i].stream < 2 && out.v[i].id[0] != '\0' && out.v[i].attempt == 1,
                       "entry %zu of stream %zu", i, out.v[i].stream);
            kept[out.v[i].stream]++;
        }
        FUZZ_CHECK(kept[0] <= per[0] && kept[1] <= per[1], "kept %zu/%zu of %zu/%zu", kept[0],
                   kept[1], per[0], per[1]);
    }
    tse_group_entries_cleanup(&out);
    return 0;
}

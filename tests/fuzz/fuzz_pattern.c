/*
 * fuzz_pattern.c - libFuzzer target for subscription patterns and names
 * (src/domain/subscription.h): what CreateSubscription, Subscribe and the
 * REST bridge take from a client as event_types, and what the delivery
 * engine matches against every stream it discovers.
 *
 * Input: "<pattern>\n<event type>". Checked besides memory safety: a
 * pattern that tse_pattern_valid accepts matches exactly the event types the
 * plain segment-by-segment reading of the rules says (compared with a
 * reference matcher written here the slow, obvious way); "*" matches every
 * valid type; a valid type is a valid pattern and matches itself; and
 * tse_patterns_match agrees with tse_pattern_match.
 */
#include <stdbool.h>

#include "domain/subscription.h"
#include "domain/validate.h"
#include "fuzz_support.h"

/* The n-th dot-separated segment of s as [*start, *start + *len); false past the last. */
static bool segment(const char *s, size_t n, const char **start, size_t *len)
{
    for (size_t i = 0; i < n; i++) {
        s = strchr(s, '.');
        if (s == NULL)
            return false;
        s++;
    }
    *start = s;
    *len = strcspn(s, ".");
    return true;
}

/* The rules read literally: same number of segments, each "*" or equal. */
static bool reference_match(const char *pattern, const char *type)
{
    if (strcmp(pattern, "*") == 0)
        return true;
    for (size_t i = 0;; i++) {
        const char *ps, *ts;
        size_t pl, tl;
        bool pmore = segment(pattern, i, &ps, &pl), tmore = segment(type, i, &ts, &tl);

        if (!pmore || !tmore)
            return pmore == tmore;
        if (tl == 0)
            return false;
        if (!(pl == 1 && ps[0] == '*') && (pl != tl || memcmp(ps, ts, pl) != 0))
            return false;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s[2];
    bool pattern_ok, type_ok;

    fuzz_strings(data, size, s, 2);
    pattern_ok = tse_pattern_valid(s[0]);
    type_ok = tse_event_type_valid(s[1]);
    (void)tse_subscription_name_valid(s[0], TSE_SUBSCRIPTION_NAME_MAX);
    (void)tse_subscription_name_valid(s[1], TSE_CONSUMER_NAME_MAX);
    if (type_ok) {
        FUZZ_CHECK(tse_pattern_valid(s[1]), "type \"%s\" is no pattern", s[1]);
        FUZZ_CHECK(tse_pattern_match(s[1], s[1]), "type \"%s\" does not match itself", s[1]);
        FUZZ_CHECK(tse_pattern_match("*", s[1]), "\"*\" does not match \"%s\"", s[1]);
    }
    if (pattern_ok && type_ok) {
        bool m = tse_pattern_match(s[0], s[1]);
        FUZZ_CHECK(m == reference_match(s[0], s[1]), "\"%s\" vs \"%s\": matcher says %d", s[0],
                   s[1], m);
        FUZZ_CHECK(m == tse_patterns_match(&s[0], 1, s[1]), "patterns_match disagrees");
    }
    fuzz_strings_free(s, 2);
    return 0;
}

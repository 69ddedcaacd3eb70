/*
 * test_domain_subscription.c - subscription rules: pattern syntax (valid and
 * invalid tables), pattern matching, name rules, tse_subscription_validate's
 * defaults, bounds and error fields, duplicate removal, and
 * tse_subscription_same.
 *
 * Every subscription under test is produced by protobuf-c's unpack from
 * packed bytes, so all its strings are malloc'd exactly as in the server,
 * and it is freed with protobuf_c_message_free_unpacked on every path: ASan
 * then checks that duplicate removal frees what it drops and nothing twice.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain/subscription.h"
#include "domain/validate.h"

typedef Tracseq__Events__V1__Subscription subscription;
typedef Google__Protobuf__Timestamp timestamp;

#define START_UNSPECIFIED TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_UNSPECIFIED
#define START_LATEST      TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_LATEST
#define START_EARLIEST    TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_EARLIEST
#define START_TIMESTAMP   TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_TIMESTAMP

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- building subscriptions as unpack leaves them ---------------------------- */

/* A round trip through the wire format: every string and sub-message malloc'd. */
static subscription *unpacked(const subscription *src)
{
    size_t len = protobuf_c_message_get_packed_size(&src->base);
    uint8_t *buf = malloc(len + 1);
    subscription *sub;

    assert_non_null(buf);
    assert_int_equal(protobuf_c_message_pack(&src->base, buf), len);
    sub = tracseq__events__v1__subscription__unpack(NULL, len, buf);
    free(buf);
    assert_non_null(sub);
    return sub;
}

/* Name and patterns; the other settings at their zero values. */
static subscription *make(const char *name, const char *const *patterns, size_t n)
{
    subscription s = TRACSEQ__EVENTS__V1__SUBSCRIPTION__INIT;

    s.name = (char *)name;
    s.event_types = (char **)patterns;
    s.n_event_types = n;
    return unpacked(&s);
}

static subscription *make_all(void)
{
    static const char *const all[] = {"*"};

    return make("orders", all, 1);
}

/* Sets start_time as unpack would (malloc'd), replacing any earlier one. */
static void set_start_time(subscription *sub, int64_t seconds, int32_t nanos)
{
    timestamp *ts = malloc(sizeof(*ts));

    assert_non_null(ts);
    google__protobuf__timestamp__init(ts);
    ts->seconds = seconds;
    ts->nanos = nanos;
    if (sub->start_time != NULL)
        protobuf_c_message_free_unpacked(&sub->start_time->base, NULL);
    sub->start_time = ts;
}

static void release(subscription *sub)
{
    protobuf_c_message_free_unpacked(&sub->base, NULL);
}

/* A string of n copies of c. */
static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);

    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* Validates sub expecting TSE_INVALID on field, then frees it. */
static void expect_invalid(subscription *sub, const char *field)
{
    tse_error err;

    assert_int_equal(tse_subscription_validate(sub, &err), TSE_INVALID);
    assert_int_equal(err.code, TSE_INVALID);
    assert_string_equal(err.field, field);
    assert_true(strlen(err.message) > 10);
    release(sub);
}

static void expect_valid(subscription *sub)
{
    tse_error err;

    if (tse_subscription_validate(sub, &err) != TSE_OK)
        fail_msg("refused: %s: %s", err.field, err.message);
    assert_int_equal(err.code, TSE_OK);
    assert_string_equal(err.field, "");
}

/* ---- pattern syntax ----------------------------------------------------------- */

static const char *const good_patterns[] = {
    "*",           "sample.*",   "*.completed", "a.*.c", "sample.created", "*.*",
    "*.*.*",       "a.b.c.d",    "a1_b.c2",     "x.y_",  "sequencing.*.x", "a.b",
    "z9.y8_.x7__", "*.created.*"};

static const char *const bad_patterns[] = {
    "",       "sam*.x", "sample.cr*", "**",    "**.x",   "sample.**", "*x.y",   "x*.y",
    "sample", "a",      "*x",         ".",     "a.",     ".a",        "a..b",   "A.b",
    "a.B",    "1a.b",   "_a.b",       "a-b.c", "a.b ",   " a.b",      "a.*.",   "*.",
    ".*",     "a.b\n",  "\xc3\xa9.x", "a/b.c", "a.b.*x", "*.*x",      "a.b..*", "sample.created."};

static void test_pattern_valid_accepts_whole_segment_wildcards_and_exact_types(void **state)
{
    (void)state;
    for (size_t i = 0; i < COUNT(good_patterns); i++)
        if (!tse_pattern_valid(good_patterns[i]))
            fail_msg("refused \"%s\"", good_patterns[i]);
}

static void test_pattern_valid_rejects_partial_wildcards_bad_segments_and_one_segment(void **state)
{
    (void)state;
    assert_false(tse_pattern_valid(NULL));
    for (size_t i = 0; i < COUNT(bad_patterns); i++)
        if (tse_pattern_valid(bad_patterns[i]))
            fail_msg("accepted \"%s\"", bad_patterns[i]);
}

static void test_pattern_valid_allows_128_characters_not_129(void **state)
{
    /* "a." followed by b's: a two-segment exact type of the given length. */
    char *s = repeat('b', 129);

    (void)state;
    s[0] = 'a';
    s[1] = '.';
    assert_false(tse_pattern_valid(s));
    s[128] = '\0';
    assert_true(tse_pattern_valid(s));
    s[127] = '*';
    s[126] = '.';
    assert_true(tse_pattern_valid(s));
    free(s);
}

/* Without "*", a pattern is an exact type: the same rules as tse_event_type_valid. */
static void test_pattern_without_star_follows_event_type_rules(void **state)
{
    (void)state;
    for (size_t i = 0; i < COUNT(good_patterns); i++)
        if (strchr(good_patterns[i], '*') == NULL)
            assert_true(tse_event_type_valid(good_patterns[i]));
    for (size_t i = 0; i < COUNT(bad_patterns); i++)
        if (strchr(bad_patterns[i], '*') == NULL)
            assert_false(tse_event_type_valid(bad_patterns[i]));
}

/* ---- matching ------------------------------------------------------------------- */

typedef struct match_case {
    const char *pattern;
    const char *type;
    bool match;
} match_case;

static const match_case match_cases[] = {
    {"*", "sample.created", true},
    {"*", "a.b.c.d", true},
    {"sample.*", "sample.created", true},
    {"sample.*", "sample.x", true},
    {"sample.*", "sample", false},
    {"sample.*", "sample.created.x", false},
    {"sample.*", "samples.created", false},
    {"sample.*", "sampl.created", false},
    {"sample.*", "other.created", false},
    {"sample.*", "sample.", false},
    {"*.completed", "sequencing.completed", true},
    {"*.completed", "sample.completed", true},
    {"*.completed", "completed", false},
    {"*.completed", "sample.completed.x", false},
    {"*.completed", "a.b.completed", false},
    {"*.completed", "sample.completedx", false},
    {"*.completed", "sample.complete", false},
    {"*.completed", ".completed", false},
    {"a.*.c", "a.b.c", true},
    {"a.*.c", "a.xyz.c", true},
    {"a.*.c", "a.c", false},
    {"a.*.c", "a.b.d", false},
    {"a.*.c", "a.b.c.d", false},
    {"a.*.c", "b.b.c", false},
    {"a.*.c", "a.b.b.c", false},
    {"a.*.c", "ab.b.c", false},
    {"sample.created", "sample.created", true},
    {"sample.created", "sample.create", false},
    {"sample.created", "sample.createdx", false},
    {"sample.created", "sample.created_x", false},
    {"sample.created", "sample.created.x", false},
    {"sample.created", "sample", false},
    {"sample.created", "xsample.created", false},
    {"*.*", "a.b", true},
    {"*.*", "a.b.c", false},
    {"*.*.*", "a.b", false},
    {"*.created.*", "sample.created.v2", true},
    {"*.created.*", "sample.created", false},
};

static void test_pattern_match_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < COUNT(match_cases); i++) {
        const match_case *c = &match_cases[i];

        assert_true(tse_pattern_valid(c->pattern));
        if (tse_pattern_match(c->pattern, c->type) != c->match)
            fail_msg("\"%s\" vs \"%s\": expected %s", c->pattern, c->type,
                     c->match ? "match" : "no match");
    }
}

/* An exact pattern matches exactly its own type, whatever the pair. */
static void test_exact_pattern_matches_only_the_identical_type(void **state)
{
    (void)state;
    for (size_t i = 0; i < COUNT(good_patterns); i++)
        for (size_t j = 0; j < COUNT(good_patterns); j++) {
            const char *p = good_patterns[i], *t = good_patterns[j];

            if (strchr(p, '*') != NULL || strchr(t, '*') != NULL)
                continue;
            assert_int_equal(tse_pattern_match(p, t), strcmp(p, t) == 0);
        }
}

static void test_pattern_match_null_matches_nothing(void **state)
{
    (void)state;
    assert_false(tse_pattern_match(NULL, "sample.created"));
    assert_false(tse_pattern_match("*", NULL));
}

static void test_patterns_match_any_of_the_list(void **state)
{
    char *const patterns[] = {"sample.*", "*.completed", "run.started"};

    (void)state;
    assert_true(tse_patterns_match(patterns, 3, "sample.created"));
    assert_true(tse_patterns_match(patterns, 3, "sequencing.completed"));
    assert_true(tse_patterns_match(patterns, 3, "run.started"));
    assert_false(tse_patterns_match(patterns, 3, "run.stopped"));
    /* Only the first n count. */
    assert_false(tse_patterns_match(patterns, 1, "run.started"));
    assert_false(tse_patterns_match(patterns, 0, "sample.created"));
    assert_false(tse_patterns_match(NULL, 0, "sample.created"));
}

/* ---- names ---------------------------------------------------------------------- */

static void test_name_valid_allows_letters_digits_underscore_dot_dash(void **state)
{
    char *longest = repeat('n', TSE_SUBSCRIPTION_NAME_MAX);

    (void)state;
    assert_true(tse_subscription_name_valid("orders", TSE_SUBSCRIPTION_NAME_MAX));
    assert_true(tse_subscription_name_valid("a", TSE_SUBSCRIPTION_NAME_MAX));
    assert_true(tse_subscription_name_valid("Lab-1_sample.v2", TSE_SUBSCRIPTION_NAME_MAX));
    assert_true(tse_subscription_name_valid("AZaz09_.-", TSE_SUBSCRIPTION_NAME_MAX));
    assert_true(tse_subscription_name_valid(longest, TSE_SUBSCRIPTION_NAME_MAX));
    free(longest);
}

static void test_name_valid_rejects_empty_too_long_and_other_characters(void **state)
{
    static const char *const bad[] = {"",         "has space", "slash/x", "colon:x", "star*",
                                      "\xc3\xbc", "tab\t",     "a+b",     "{x}",     "a\nb"};
    char *too_long = repeat('n', TSE_SUBSCRIPTION_NAME_MAX + 1);

    (void)state;
    assert_false(tse_subscription_name_valid(NULL, TSE_SUBSCRIPTION_NAME_MAX));
    assert_false(tse_subscription_name_valid(too_long, TSE_SUBSCRIPTION_NAME_MAX));
    for (size_t i = 0; i < COUNT(bad); i++)
        if (tse_subscription_name_valid(bad[i], TSE_SUBSCRIPTION_NAME_MAX))
            fail_msg("accepted \"%s\"", bad[i]);
    free(too_long);
}

static void test_name_valid_honours_the_given_maximum(void **state)
{
    char *consumer = repeat('c', TSE_CONSUMER_NAME_MAX);

    (void)state;
    assert_true(tse_subscription_name_valid("abc", 3));
    assert_false(tse_subscription_name_valid("abcd", 3));
    assert_true(tse_subscription_name_valid(consumer, TSE_CONSUMER_NAME_MAX));
    assert_false(tse_subscription_name_valid(consumer, TSE_SUBSCRIPTION_NAME_MAX));
    free(consumer);
}

/* ---- validation: defaults and kept values --------------------------------------- */

static void test_validate_fills_defaults(void **state)
{
    subscription *sub = make_all();
    tse_error err;

    (void)state;
    /* A stale error from an earlier call must not survive a success. */
    tse_error_set(&err, TSE_INVALID, "stale", "stale");
    assert_int_equal(tse_subscription_validate(sub, &err), TSE_OK);
    assert_int_equal(err.code, TSE_OK);
    assert_string_equal(err.field, "");
    assert_string_equal(err.message, "");
    assert_int_equal(sub->ack_deadline_ms, TSE_DEFAULT_ACK_DEADLINE_MS);
    assert_int_equal(sub->max_delivery_attempts, 0); /* 0 = unlimited, kept */
    assert_int_equal(sub->max_in_flight, TSE_DEFAULT_MAX_IN_FLIGHT);
    assert_int_equal(sub->start, START_LATEST);
    assert_null(sub->start_time);
    assert_false(sub->auto_ack);
    assert_string_equal(sub->name, "orders");
    assert_int_equal(sub->n_event_types, 1);
    assert_string_equal(sub->event_types[0], "*");
    release(sub);
}

static void test_validate_accepts_null_error(void **state)
{
    subscription *sub = make_all();

    (void)state;
    assert_int_equal(tse_subscription_validate(sub, NULL), TSE_OK);
    release(sub);
    assert_int_equal(tse_subscription_validate(NULL, NULL), TSE_INVALID);
}

static void test_validate_keeps_values_at_their_bounds(void **state)
{
    static const uint32_t deadlines[] = {TSE_MIN_ACK_DEADLINE_MS, 45000, TSE_MAX_ACK_DEADLINE_MS};
    static const uint32_t attempts[] = {1, TSE_DEFAULT_MAX_ATTEMPTS, 1000};
    static const uint32_t in_flight[] = {1, 500, TSE_MAX_IN_FLIGHT_LIMIT};

    (void)state;
    for (size_t i = 0; i < 3; i++) {
        subscription *sub = make_all();

        sub->ack_deadline_ms = deadlines[i];
        sub->max_delivery_attempts = attempts[i];
        sub->max_in_flight = in_flight[i];
        sub->auto_ack = 1;
        expect_valid(sub);
        assert_int_equal(sub->ack_deadline_ms, deadlines[i]);
        assert_int_equal(sub->max_delivery_attempts, attempts[i]);
        assert_int_equal(sub->max_in_flight, in_flight[i]);
        assert_true(sub->auto_ack);
        release(sub);
    }
}

static void test_validate_keeps_earliest_and_timestamp_starts(void **state)
{
    subscription *sub = make_all();

    (void)state;
    sub->start = START_EARLIEST;
    expect_valid(sub);
    assert_int_equal(sub->start, START_EARLIEST);
    release(sub);

    sub = make_all();
    sub->start = START_TIMESTAMP;
    set_start_time(sub, 1718704800, 999999999);
    expect_valid(sub);
    assert_int_equal(sub->start, START_TIMESTAMP);
    assert_int_equal(sub->start_time->seconds, 1718704800);
    assert_int_equal(sub->start_time->nanos, 999999999);
    release(sub);
}

static void test_validate_accepts_timestamp_range_ends(void **state)
{
    static const int64_t ends[] = {INT64_C(-62135596800), INT64_C(253402300799), 0};

    (void)state;
    for (size_t i = 0; i < COUNT(ends); i++) {
        subscription *sub = make_all();

        sub->start = START_TIMESTAMP;
        set_start_time(sub, ends[i], 0);
        expect_valid(sub);
        release(sub);
    }
}

/* ---- validation: bounds and error fields ---------------------------------------- */

static void test_validate_rejects_ack_deadline_out_of_range(void **state)
{
    static const uint32_t bad[] = {1, TSE_MIN_ACK_DEADLINE_MS - 1, TSE_MAX_ACK_DEADLINE_MS + 1,
                                   UINT32_MAX};

    (void)state;
    for (size_t i = 0; i < COUNT(bad); i++) {
        subscription *sub = make_all();

        sub->ack_deadline_ms = bad[i];
        expect_invalid(sub, "subscription.ack_deadline_ms");
    }
}

static void test_validate_rejects_max_delivery_attempts_over_1000(void **state)
{
    static const uint32_t bad[] = {1001, UINT32_MAX};

    (void)state;
    for (size_t i = 0; i < COUNT(bad); i++) {
        subscription *sub = make_all();

        sub->max_delivery_attempts = bad[i];
        expect_invalid(sub, "subscription.max_delivery_attempts");
    }
}

static void test_validate_rejects_max_in_flight_over_limit(void **state)
{
    static const uint32_t bad[] = {TSE_MAX_IN_FLIGHT_LIMIT + 1, UINT32_MAX};

    (void)state;
    for (size_t i = 0; i < COUNT(bad); i++) {
        subscription *sub = make_all();

        sub->max_in_flight = bad[i];
        expect_invalid(sub, "subscription.max_in_flight");
    }
}

static void test_validate_timestamp_start_needs_start_time(void **state)
{
    subscription *sub = make_all();

    (void)state;
    sub->start = START_TIMESTAMP;
    expect_invalid(sub, "subscription.start_time");
}

static void test_validate_rejects_start_time_out_of_range(void **state)
{
    static const struct {
        int64_t seconds;
        int32_t nanos;
    } bad[] = {{0, -1},
               {0, 1000000000},
               {INT64_C(-62135596801), 0},
               {INT64_C(253402300800), 0},
               {INT64_MAX, 0}};

    (void)state;
    for (size_t i = 0; i < COUNT(bad); i++) {
        subscription *sub = make_all();

        sub->start = START_TIMESTAMP;
        set_start_time(sub, bad[i].seconds, bad[i].nanos);
        expect_invalid(sub, "subscription.start_time");
    }
}

/* start_time without START_POSITION_TIMESTAMP is not looked at. */
static void test_validate_ignores_start_time_for_other_starts(void **state)
{
    subscription *sub = make_all();

    (void)state;
    sub->start = START_EARLIEST;
    set_start_time(sub, INT64_MAX, -5);
    expect_valid(sub);
    release(sub);
}

/* A dead-letter target is an event type the service takes as generic data. */
static void test_validate_checks_the_dead_letter_type(void **state)
{
    static const char *const bad[] = {"deadletter", "DeadLetter.x", "dead letter.x",
                                      "a..b",       "sample.*",     "sample.created"};
    subscription *sub;

    (void)state;
    for (size_t i = 0; i < COUNT(bad); i++) {
        sub = make_all();
        sub->dead_letter_type = strdup(bad[i]);
        assert_non_null(sub->dead_letter_type);
        expect_invalid(sub, "subscription.dead_letter_type");
    }
    sub = make_all();
    sub->dead_letter_type = strdup("deadletter.orders");
    assert_non_null(sub->dead_letter_type);
    expect_valid(sub);
    assert_string_equal(sub->dead_letter_type, "deadletter.orders");
    release(sub);
}

static void test_validate_rejects_unknown_start(void **state)
{
    subscription *sub = make_all();

    (void)state;
    sub->start = (Tracseq__Events__V1__StartPosition)7;
    expect_invalid(sub, "subscription.start");
}

static void test_validate_rejects_bad_names(void **state)
{
    static const char *const all[] = {"*"};
    static const char *const bad[] = {"", "has space", "orders/x", "\xc3\xbc"};
    char *too_long = repeat('n', TSE_SUBSCRIPTION_NAME_MAX + 1);
    char *longest = repeat('n', TSE_SUBSCRIPTION_NAME_MAX);
    subscription *sub;

    (void)state;
    for (size_t i = 0; i < COUNT(bad); i++)
        expect_invalid(make(bad[i], all, 1), "subscription.name");
    expect_invalid(make(too_long, all, 1), "subscription.name");
    sub = make(longest, all, 1);
    expect_valid(sub);
    release(sub);
    free(too_long);
    free(longest);
}

static void test_validate_requires_at_least_one_pattern(void **state)
{
    (void)state;
    expect_invalid(make("orders", NULL, 0), "subscription.event_types");
}

/* Builds a subscription of n patterns "p<i>.x" (distinct) or all "p0.x". */
static subscription *make_many(size_t n, bool distinct)
{
    char(*names)[32] = calloc(n, sizeof(*names));
    const char **patterns = calloc(n, sizeof(*patterns));
    subscription *sub;

    assert_non_null(names);
    assert_non_null(patterns);
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], sizeof(names[i]), "p%zu.x", distinct ? i : (size_t)0);
        patterns[i] = names[i];
    }
    sub = make("orders", patterns, n);
    free(patterns);
    free(names);
    return sub;
}

/* The hard cap; the service's own limit (MAX_SUBSCRIPTION_PATTERNS, 32 by
 * default) is checked at its boundary. */
static void test_validate_allows_the_pattern_cap_not_one_more(void **state)
{
    subscription *sub = make_many(TSE_SUBSCRIPTION_PATTERNS_MAX, true);

    (void)state;
    expect_valid(sub);
    assert_int_equal(sub->n_event_types, TSE_SUBSCRIPTION_PATTERNS_MAX);
    release(sub);
    expect_invalid(make_many(TSE_SUBSCRIPTION_PATTERNS_MAX + 1, true), "subscription.event_types");
}

/* The count is of patterns as sent, so duplicates cannot smuggle in more. */
static void test_validate_counts_patterns_before_removing_duplicates(void **state)
{
    subscription *sub = make_many(TSE_SUBSCRIPTION_PATTERNS_MAX, false);

    (void)state;
    expect_valid(sub);
    assert_int_equal(sub->n_event_types, 1);
    assert_string_equal(sub->event_types[0], "p0.x");
    release(sub);
    expect_invalid(make_many(TSE_SUBSCRIPTION_PATTERNS_MAX + 1, false), "subscription.event_types");
}

static void test_validate_names_the_bad_pattern_by_index(void **state)
{
    (void)state;
    for (size_t i = 0; i < COUNT(bad_patterns); i++) {
        const char *patterns[] = {"*", "sample.*", bad_patterns[i]};

        expect_invalid(make("orders", patterns, 3), "subscription.event_types[2]");
    }
    {
        const char *patterns[] = {"sam*.x", "sample.*"};

        expect_invalid(make("orders", patterns, 2), "subscription.event_types[0]");
    }
}

static void validate_pattern_message(const char *pattern, const char *expected)
{
    const char *patterns[] = {pattern};
    subscription *sub = make("orders", patterns, 1);
    tse_error err;

    assert_int_equal(tse_subscription_validate(sub, &err), TSE_INVALID);
    assert_string_equal(err.field, "subscription.event_types[0]");
    if (strstr(err.message, expected) == NULL)
        fail_msg("message for \"%s\" lacks \"%s\": %s", pattern, expected, err.message);
    release(sub);
}

static void test_validate_explains_one_segment_and_partial_wildcards(void **state)
{
    (void)state;
    validate_pattern_message("sample", "one segment");
    validate_pattern_message("sam*.x", "whole");
    validate_pattern_message("**", "whole");
    validate_pattern_message("Sample.x", "a-z");
}

/* Even the last check failing leaves defaults unset and duplicates in place. */
static void test_validate_changes_nothing_when_it_fails(void **state)
{
    const char *patterns[] = {"a.b", "a.b", "c.*"};
    subscription *sub = make("orders", patterns, 3);

    (void)state;
    sub->max_in_flight = TSE_MAX_IN_FLIGHT_LIMIT + 1;
    assert_int_equal(tse_subscription_validate(sub, NULL), TSE_INVALID);
    assert_int_equal(sub->n_event_types, 3);
    assert_string_equal(sub->event_types[1], "a.b");
    assert_int_equal(sub->ack_deadline_ms, 0);
    assert_int_equal(sub->start, START_UNSPECIFIED);
    expect_invalid(sub, "subscription.max_in_flight");
}

static void test_validate_reports_name_before_patterns_before_limits(void **state)
{
    subscription *sub = make("bad name", NULL, 0);

    (void)state;
    sub->ack_deadline_ms = 1;
    expect_invalid(sub, "subscription.name");
    sub = make("orders", NULL, 0);
    sub->ack_deadline_ms = 1;
    expect_invalid(sub, "subscription.event_types");
}

static void test_validate_null_subscription(void **state)
{
    tse_error err;

    (void)state;
    assert_int_equal(tse_subscription_validate(NULL, &err), TSE_INVALID);
    assert_string_equal(err.field, "subscription");
}

/* ---- validation: duplicate removal ---------------------------------------------- */

static void test_validate_removes_duplicate_patterns_keeping_first_order(void **state)
{
    const char *patterns[] = {"sample.*", "*", "sample.*", "a.b", "*", "sample.*", "a.b"};
    subscription *sub = make("orders", patterns, COUNT(patterns));

    (void)state;
    expect_valid(sub);
    assert_int_equal(sub->n_event_types, 3);
    assert_string_equal(sub->event_types[0], "sample.*");
    assert_string_equal(sub->event_types[1], "*");
    assert_string_equal(sub->event_types[2], "a.b");
    /* Freed with free_unpacked: ASan reports a leak or double free here. */
    release(sub);
}

static void test_validate_keeps_distinct_patterns_untouched(void **state)
{
    const char *patterns[] = {"*", "sample.*", "*.completed", "sample.created"};
    subscription *sub = make("orders", patterns, COUNT(patterns));

    (void)state;
    expect_valid(sub);
    assert_int_equal(sub->n_event_types, COUNT(patterns));
    for (size_t i = 0; i < COUNT(patterns); i++)
        assert_string_equal(sub->event_types[i], patterns[i]);
    release(sub);
}

/* Validating twice changes nothing more: the second pass sees a clean result. */
static void test_validate_is_idempotent(void **state)
{
    const char *patterns[] = {"a.b", "a.b", "c.*"};
    subscription *sub = make("orders", patterns, COUNT(patterns));
    subscription *copy;

    (void)state;
    expect_valid(sub);
    copy = unpacked(sub);
    expect_valid(sub);
    assert_true(tse_subscription_same(sub, copy));
    assert_int_equal(sub->n_event_types, 2);
    assert_int_equal(sub->ack_deadline_ms, copy->ack_deadline_ms);
    release(copy);
    release(sub);
}

/* ---- tse_subscription_same ------------------------------------------------------ */

static subscription *make_full(void)
{
    const char *patterns[] = {"sample.*", "*.completed", "run.started"};
    subscription *sub = make("orders", patterns, COUNT(patterns));

    sub->start = START_TIMESTAMP;
    set_start_time(sub, 1718704800, 5);
    sub->ack_deadline_ms = 60000;
    sub->max_delivery_attempts = 7;
    sub->max_in_flight = 50;
    sub->auto_ack = 1;
    return sub;
}

static void test_same_for_identical_settings_and_reordered_patterns(void **state)
{
    const char *reordered[] = {"run.started", "sample.*", "*.completed"};
    subscription *a = make_full(), *b = make_full(), *c;

    (void)state;
    assert_true(tse_subscription_same(a, b));
    assert_true(tse_subscription_same(a, a));
    c = make("orders", reordered, COUNT(reordered));
    c->start = START_TIMESTAMP;
    set_start_time(c, 1718704800, 5);
    c->ack_deadline_ms = 60000;
    c->max_delivery_attempts = 7;
    c->max_in_flight = 50;
    c->auto_ack = 1;
    assert_true(tse_subscription_same(a, c));
    assert_true(tse_subscription_same(c, a));
    release(a);
    release(b);
    release(c);
}

/* Each change to one setting of an otherwise equal pair makes them differ. */
static void test_different_when_any_one_setting_differs(void **state)
{
    const char *fewer[] = {"sample.*", "*.completed"};
    const char *other[] = {"sample.*", "*.completed", "run.stopped"};
    subscription *a = make_full();

    (void)state;
    for (int change = 0; change < 12; change++) {
        subscription *b;

        if (change == 0)
            b = make("orders", fewer, COUNT(fewer));
        else if (change == 1)
            b = make("orders", other, COUNT(other));
        else
            b = make_full();
        if (change <= 1) {
            b->start = START_TIMESTAMP;
            set_start_time(b, 1718704800, 5);
            b->ack_deadline_ms = 60000;
            b->max_delivery_attempts = 7;
            b->max_in_flight = 50;
            b->auto_ack = 1;
            /* The pattern sets differ in both directions. */
            assert_false(tse_subscription_same(b, a));
        }
        switch (change) {
        case 2:
            free(b->name);
            b->name = strdup("orders2");
            assert_non_null(b->name);
            break;
        case 3: b->start = START_EARLIEST; break;
        case 4: b->start_time->seconds++; break;
        case 5: b->start_time->nanos++; break;
        case 6: b->ack_deadline_ms++; break;
        case 7: b->max_delivery_attempts = 0; break;
        case 8: b->max_in_flight++; break;
        case 9: b->auto_ack = 0; break;
        case 10:
            protobuf_c_message_free_unpacked(&b->start_time->base, NULL);
            b->start_time = NULL;
            break;
        case 11:
            b->dead_letter_type = strdup("deadletter.orders");
            assert_non_null(b->dead_letter_type);
            break;
        default: break;
        }
        if (tse_subscription_same(a, b))
            fail_msg("change %d not noticed", change);
        release(b);
    }
    release(a);
}

static void test_same_ignores_start_time_unless_start_is_timestamp(void **state)
{
    subscription *a = make_all(), *b = make_all();

    (void)state;
    a->start = b->start = START_EARLIEST;
    set_start_time(a, 100, 0);
    assert_true(tse_subscription_same(a, b));
    set_start_time(b, 200, 0);
    assert_true(tse_subscription_same(a, b));
    a->start = b->start = START_TIMESTAMP;
    assert_false(tse_subscription_same(a, b));
    release(a);
    release(b);
}

/* A stored (validated) subscription equals a new request that left defaults unset. */
static void test_same_treats_unset_settings_as_their_defaults(void **state)
{
    subscription *stored = make_all(), *request = make_all();

    (void)state;
    expect_valid(stored);
    assert_true(tse_subscription_same(stored, request));
    assert_true(tse_subscription_same(request, stored));
    request->max_in_flight = TSE_DEFAULT_MAX_IN_FLIGHT + 1;
    assert_false(tse_subscription_same(stored, request));
    release(stored);
    release(request);
}

static void test_same_handles_null(void **state)
{
    subscription *a = make_all();

    (void)state;
    assert_true(tse_subscription_same(NULL, NULL));
    assert_false(tse_subscription_same(a, NULL));
    assert_false(tse_subscription_same(NULL, a));
    release(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pattern_valid_accepts_whole_segment_wildcards_and_exact_types),
        cmocka_unit_test(test_pattern_valid_rejects_partial_wildcards_bad_segments_and_one_segment),
        cmocka_unit_test(test_pattern_valid_allows_128_characters_not_129),
        cmocka_unit_test(test_pattern_without_star_follows_event_type_rules),
        cmocka_unit_test(test_pattern_match_table),
        cmocka_unit_test(test_exact_pattern_matches_only_the_identical_type),
        cmocka_unit_test(test_pattern_match_null_matches_nothing),
        cmocka_unit_test(test_patterns_match_any_of_the_list),
        cmocka_unit_test(test_name_valid_allows_letters_digits_underscore_dot_dash),
        cmocka_unit_test(test_name_valid_rejects_empty_too_long_and_other_characters),
        cmocka_unit_test(test_name_valid_honours_the_given_maximum),
        cmocka_unit_test(test_validate_fills_defaults),
        cmocka_unit_test(test_validate_accepts_null_error),
        cmocka_unit_test(test_validate_keeps_values_at_their_bounds),
        cmocka_unit_test(test_validate_keeps_earliest_and_timestamp_starts),
        cmocka_unit_test(test_validate_accepts_timestamp_range_ends),
        cmocka_unit_test(test_validate_rejects_ack_deadline_out_of_range),
        cmocka_unit_test(test_validate_rejects_max_delivery_attempts_over_1000),
        cmocka_unit_test(test_validate_rejects_max_in_flight_over_limit),
        cmocka_unit_test(test_validate_timestamp_start_needs_start_time),
        cmocka_unit_test(test_validate_rejects_start_time_out_of_range),
        cmocka_unit_test(test_validate_ignores_start_time_for_other_starts),
        cmocka_unit_test(test_validate_checks_the_dead_letter_type),
        cmocka_unit_test(test_validate_rejects_unknown_start),
        cmocka_unit_test(test_validate_rejects_bad_names),
        cmocka_unit_test(test_validate_requires_at_least_one_pattern),
        cmocka_unit_test(test_validate_allows_the_pattern_cap_not_one_more),
        cmocka_unit_test(test_validate_counts_patterns_before_removing_duplicates),
        cmocka_unit_test(test_validate_names_the_bad_pattern_by_index),
        cmocka_unit_test(test_validate_explains_one_segment_and_partial_wildcards),
        cmocka_unit_test(test_validate_changes_nothing_when_it_fails),
        cmocka_unit_test(test_validate_reports_name_before_patterns_before_limits),
        cmocka_unit_test(test_validate_null_subscription),
        cmocka_unit_test(test_validate_removes_duplicate_patterns_keeping_first_order),
        cmocka_unit_test(test_validate_keeps_distinct_patterns_untouched),
        cmocka_unit_test(test_validate_is_idempotent),
        cmocka_unit_test(test_same_for_identical_settings_and_reordered_patterns),
        cmocka_unit_test(test_different_when_any_one_setting_differs),
        cmocka_unit_test(test_same_ignores_start_time_unless_start_is_timestamp),
        cmocka_unit_test(test_same_treats_unset_settings_as_their_defaults),
        cmocka_unit_test(test_same_handles_null),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

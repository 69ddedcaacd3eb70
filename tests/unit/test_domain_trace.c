/*
 * test_domain_trace.c - the W3C Trace Context checks (src/domain/trace.h):
 * traceparent of version 00 and of later versions, tracestate keys, values,
 * members and lengths, the pair rule, and the trace id for logs. Examples
 * from the spec (https://www.w3.org/TR/trace-context/) where it has them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain/trace.h"

#define TP "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static tse_status parse(const char *s, tse_traceparent *out, tse_error *err)
{
    return tse_traceparent_parse(s, strlen(s), out, "traceparent", err);
}

static void expect_tp_refused(const char *s, const char *words)
{
    tse_error err;

    tse_error_clear(&err);
    if (parse(s, NULL, &err) != TSE_INVALID)
        fail_msg("\"%s\" was accepted", s);
    assert_string_equal(err.field, "traceparent");
    if (strstr(err.message, words) == NULL)
        fail_msg("\"%s\": message \"%s\" does not say \"%s\"", s, err.message, words);
}

static void expect_ts(const char *s, tse_status want)
{
    tse_error err;
    tse_status st;

    tse_error_clear(&err);
    st = tse_tracestate_check(s, strlen(s), "tracestate", &err);
    if (st != want)
        fail_msg("tracestate \"%s\": %s (%s)", s, tse_status_name(st), err.message);
    if (st != TSE_OK)
        assert_string_equal(err.field, "tracestate");
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);

    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* ---- traceparent ---------------------------------------------------------------- */

static void a_version_00_traceparent_is_parsed_into_its_parts(void **state)
{
    tse_traceparent tp;
    tse_error err;

    assert_int_equal(parse(TP, &tp, &err), TSE_OK);
    assert_int_equal(tp.version, 0);
    assert_string_equal(tp.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_equal(tp.parent_id, "00f067aa0ba902b7");
    assert_int_equal(tp.flags, 1);
    assert_int_equal(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff", &tp, &err),
                     TSE_OK);
    assert_int_equal(tp.flags, 0xff);
}

static void uppercase_hex_is_refused(void **state)
{
    expect_tp_refused("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "trace-id");
    expect_tp_refused("00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01", "parent-id");
    expect_tp_refused("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A", "trace-flags");
    expect_tp_refused("0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "version");
}

static void all_zero_ids_are_refused(void **state)
{
    expect_tp_refused("00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                      "trace-id must not be all zero");
    expect_tp_refused("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                      "parent-id must not be all zero");
}

static void version_00_is_exactly_55_characters(void **state)
{
    expect_tp_refused(TP "-", "exactly 55");
    expect_tp_refused("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1", "exactly 55");
    expect_tp_refused("", "empty");
    expect_tp_refused("0", "version");
}

static void misplaced_dashes_are_refused(void **state)
{
    expect_tp_refused("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "dashes");
    expect_tp_refused("00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01", "dashes");
    expect_tp_refused("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01", "dashes");
}

static void version_ff_is_refused(void **state)
{
    expect_tp_refused("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "ff");
}

static void a_later_version_is_read_as_version_00_with_more_after_a_dash(void **state)
{
    tse_traceparent tp;
    tse_error err;

    assert_int_equal(parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &tp, &err),
                     TSE_OK);
    assert_int_equal(tp.version, 0xcc);
    assert_int_equal(
        parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds", &tp,
              &err),
        TSE_OK);
    assert_string_equal(tp.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    expect_tp_refused("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.x", "'-'");
    expect_tp_refused("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01- x", "visible");
    expect_tp_refused("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0", "at least 55");
    /* Its first 55 characters follow version 00's rules. */
    expect_tp_refused("01-00000000000000000000000000000000-00f067aa0ba902b7-01", "all zero");
}

static void a_traceparent_over_the_limit_is_refused(void **state)
{
    char *s = repeat('a', TSE_TRACEPARENT_MAX + 1);

    memcpy(s, "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", 56);
    expect_tp_refused(s, "at most 256");
    s[TSE_TRACEPARENT_MAX] = '\0';
    assert_int_equal(parse(s, NULL, NULL), TSE_OK);
    free(s);
}

static void parsing_reads_only_len_bytes(void **state)
{
    char buf[64];
    tse_error err;

    /* No NUL: the parser must not look past the 55 bytes it was given. */
    memcpy(buf, TP, 55);
    memset(buf + 55, 'x', sizeof(buf) - 55);
    assert_int_equal(tse_traceparent_parse(buf, 55, NULL, "traceparent", &err), TSE_OK);
}

/* ---- tracestate --------------------------------------------------------------------- */

static void spec_tracestates_are_accepted(void **state)
{
    expect_ts("", TSE_OK);
    expect_ts("congo=t61rcWkgMzE", TSE_OK);
    expect_ts("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", TSE_OK);
    expect_ts("rojo=00f067aa0ba902b7 ,\tcongo=t61rcWkgMzE ", TSE_OK);
    expect_ts("fw529a3039@dt=ZjQ1MDY", TSE_OK);
    expect_ts("a=1,,b=2, ,", TSE_OK); /* empty members are allowed */
    expect_ts("k_-*/9=v a!~", TSE_OK);
    expect_ts("1tenant@sys=v", TSE_OK); /* a tenant may start with a digit */
}

static void bad_keys_are_refused(void **state)
{
    expect_ts("Congo=1", TSE_INVALID);
    expect_ts("1abc=1", TSE_INVALID);
    expect_ts("=1", TSE_INVALID);
    expect_ts("a b=1", TSE_INVALID);
    expect_ts("a@=1", TSE_INVALID);
    expect_ts("@s=1", TSE_INVALID);
    expect_ts("t@1sys=1", TSE_INVALID);
    expect_ts("t@abcdefghijklmno=1", TSE_INVALID); /* a system id of 15 */
    expect_ts("t@abcdefghijklmn=1", TSE_OK);       /* ... of 14 */
}

static void bad_values_are_refused(void **state)
{
    expect_ts("a=", TSE_INVALID);
    expect_ts("a", TSE_INVALID);
    expect_ts("a=b=c", TSE_INVALID);
    expect_ts("a=\x01", TSE_INVALID);
    expect_ts("a=\xc3\xa9", TSE_INVALID);
}

static void duplicate_keys_are_refused(void **state)
{
    expect_ts("a=1,b=2,a=3", TSE_INVALID);
    expect_ts("a=1,ab=2", TSE_OK);
}

static void at_most_32_members(void **state)
{
    char buf[400] = "";

    for (int i = 0; i < 32; i++)
        snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%sk%d=v", i ? "," : "", i);
    expect_ts(buf, TSE_OK);
    snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), ",k32=v");
    expect_ts(buf, TSE_INVALID);
}

static void a_tracestate_over_512_characters_is_refused(void **state)
{
    char *s = repeat('v', TSE_TRACESTATE_MAX + 1);

    /* a=vvv... is one member with a 256-character value at most: two. */
    memcpy(s, "a=", 2);
    s[258] = ',';
    memcpy(s + 259, "b=", 2);
    s[TSE_TRACESTATE_MAX] = '\0';
    expect_ts(s, TSE_OK);
    free(s);
    s = repeat(' ', TSE_TRACESTATE_MAX + 1);
    memcpy(s, "a=1", 3);
    expect_ts(s, TSE_INVALID);
    free(s);
}

/* ---- the pair and the trace id ------------------------------------------------------ */

static void a_tracestate_needs_a_traceparent(void **state)
{
    tse_error err;

    assert_int_equal(tse_trace_context_check(NULL, NULL, "traceparent", "tracestate", &err),
                     TSE_OK);
    assert_int_equal(tse_trace_context_check("", "", "traceparent", "tracestate", &err), TSE_OK);
    assert_int_equal(tse_trace_context_check(TP, "a=1", "traceparent", "tracestate", &err), TSE_OK);
    assert_int_equal(tse_trace_context_check("", "a=1", "traceparent", "tracestate", &err),
                     TSE_INVALID);
    assert_string_equal(err.field, "tracestate");
    assert_int_equal(tse_trace_context_check(TP, "A=1", "tp", "ts", &err), TSE_INVALID);
    assert_string_equal(err.field, "ts");
    assert_int_equal(tse_trace_context_check("00-x", NULL, "tp", "ts", &err), TSE_INVALID);
    assert_string_equal(err.field, "tp");
}

static void the_trace_id_is_read_for_logs(void **state)
{
    char id[33];

    assert_true(tse_trace_id(TP, id));
    assert_string_equal(id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_false(tse_trace_id("", id));
    assert_string_equal(id, "");
    assert_false(tse_trace_id(NULL, id));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_version_00_traceparent_is_parsed_into_its_parts),
        cmocka_unit_test(uppercase_hex_is_refused),
        cmocka_unit_test(all_zero_ids_are_refused),
        cmocka_unit_test(version_00_is_exactly_55_characters),
        cmocka_unit_test(misplaced_dashes_are_refused),
        cmocka_unit_test(version_ff_is_refused),
        cmocka_unit_test(a_later_version_is_read_as_version_00_with_more_after_a_dash),
        cmocka_unit_test(a_traceparent_over_the_limit_is_refused),
        cmocka_unit_test(parsing_reads_only_len_bytes),
        cmocka_unit_test(spec_tracestates_are_accepted),
        cmocka_unit_test(bad_keys_are_refused),
        cmocka_unit_test(bad_values_are_refused),
        cmocka_unit_test(duplicate_keys_are_refused),
        cmocka_unit_test(at_most_32_members),
        cmocka_unit_test(a_tracestate_over_512_characters_is_refused),
        cmocka_unit_test(a_tracestate_needs_a_traceparent),
        cmocka_unit_test(the_trace_id_is_read_for_logs),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_common_status.c - the tse_error helpers and status names: set/clear
 * fill every member, strings stay NUL-terminated at their bounds, a NULL err
 * is accepted everywhere, prefix_field builds dotted paths, every status
 * has its stable name, and the one status -> HTTP table (http_status.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/http_status.h"
#include "common/status.h"

/* An error filled with garbage, so a member left unset shows. */
static tse_error dirty_error(void)
{
    tse_error err;

    memset(&err, 'x', sizeof(err));
    err.code = TSE_INTERNAL;
    return err;
}

static void clear_resets_code_and_strings(void **state)
{
    tse_error err = dirty_error();

    tse_error_clear(&err);
    assert_int_equal(err.code, TSE_OK);
    assert_string_equal(err.field, "");
    assert_string_equal(err.message, "");
}

static void clear_accepts_null(void **state)
{
    tse_error_clear(NULL);
}

static void set_fills_code_field_and_formatted_message(void **state)
{
    tse_error err = dirty_error();

    assert_int_equal(
        tse_error_set(&err, TSE_INVALID, "event.priority", "priority %d not in [%d, %d]", 9, 1, 5),
        TSE_INVALID);
    assert_int_equal(err.code, TSE_INVALID);
    assert_string_equal(err.field, "event.priority");
    assert_string_equal(err.message, "priority 9 not in [1, 5]");
}

static void set_with_null_field_leaves_field_empty(void **state)
{
    tse_error err = dirty_error();

    assert_int_equal(tse_error_set(&err, TSE_UNAVAILABLE, NULL, "redis down"), TSE_UNAVAILABLE);
    assert_int_equal(err.code, TSE_UNAVAILABLE);
    assert_string_equal(err.field, "");
    assert_string_equal(err.message, "redis down");
}

static void set_with_null_err_still_returns_code(void **state)
{
    assert_int_equal(tse_error_set(NULL, TSE_NOT_FOUND, "x", "no %s", "such"), TSE_NOT_FOUND);
    assert_int_equal(tse_error_set(NULL, TSE_OK, NULL, "fine"), TSE_OK);
}

static void set_overwrites_a_previous_error(void **state)
{
    tse_error err;

    tse_error_set(&err, TSE_INVALID, "a.long.field.name", "a long first message");
    tse_error_set(&err, TSE_DEADLINE, "b", "short");
    assert_int_equal(err.code, TSE_DEADLINE);
    assert_string_equal(err.field, "b");
    assert_string_equal(err.message, "short");
}

static void set_truncates_long_field_at_bound(void **state)
{
    char longfield[TSE_ERROR_FIELD_MAX * 2];
    tse_error err = dirty_error();

    memset(longfield, 'f', sizeof(longfield) - 1);
    longfield[sizeof(longfield) - 1] = '\0';
    tse_error_set(&err, TSE_INVALID, longfield, "m");
    assert_int_equal(strlen(err.field), TSE_ERROR_FIELD_MAX - 1);
    assert_memory_equal(err.field, longfield, TSE_ERROR_FIELD_MAX - 1);
    assert_string_equal(err.message, "m");
}

static void set_keeps_field_exactly_at_bound_minus_one(void **state)
{
    char field[TSE_ERROR_FIELD_MAX];
    tse_error err;

    memset(field, 'g', sizeof(field) - 1);
    field[sizeof(field) - 1] = '\0';
    tse_error_set(&err, TSE_INVALID, field, "m");
    assert_string_equal(err.field, field);
}

static void set_truncates_long_message_at_bound(void **state)
{
    char longmsg[TSE_ERROR_MESSAGE_MAX * 2];
    tse_error err = dirty_error();

    memset(longmsg, 'm', sizeof(longmsg) - 1);
    longmsg[sizeof(longmsg) - 1] = '\0';
    tse_error_set(&err, TSE_RESOURCE_EXHAUSTED, "f", "%s", longmsg);
    assert_int_equal(strlen(err.message), TSE_ERROR_MESSAGE_MAX - 1);
    assert_memory_equal(err.message, longmsg, TSE_ERROR_MESSAGE_MAX - 1);
    assert_string_equal(err.field, "f");
}

static void prefix_joins_prefix_and_field_with_a_dot(void **state)
{
    tse_error err;

    tse_error_set(&err, TSE_INVALID, "barcode", "too long");
    tse_error_prefix_field(&err, "payload");
    assert_string_equal(err.field, "payload.barcode");
    tse_error_prefix_field(&err, "event");
    assert_string_equal(err.field, "event.payload.barcode");
    /* Only the field changes. */
    assert_int_equal(err.code, TSE_INVALID);
    assert_string_equal(err.message, "too long");
}

static void prefix_on_empty_field_becomes_the_prefix(void **state)
{
    tse_error err;

    tse_error_set(&err, TSE_INVALID, NULL, "m");
    tse_error_prefix_field(&err, "payload");
    assert_string_equal(err.field, "payload");
}

static void prefix_null_or_empty_changes_nothing(void **state)
{
    tse_error err;

    tse_error_set(&err, TSE_INVALID, "barcode", "m");
    tse_error_prefix_field(&err, NULL);
    assert_string_equal(err.field, "barcode");
    tse_error_prefix_field(&err, "");
    assert_string_equal(err.field, "barcode");
}

static void prefix_accepts_null_err(void **state)
{
    tse_error_prefix_field(NULL, "payload");
}

static void prefix_truncates_at_bound_keeping_the_front(void **state)
{
    char field[TSE_ERROR_FIELD_MAX];
    tse_error err;

    memset(field, 'f', sizeof(field) - 1);
    field[sizeof(field) - 1] = '\0';
    tse_error_set(&err, TSE_INVALID, field, "m");
    tse_error_prefix_field(&err, "payload");
    assert_int_equal(strlen(err.field), TSE_ERROR_FIELD_MAX - 1);
    assert_memory_equal(err.field, "payload.fff", 11);
    assert_int_equal(err.field[TSE_ERROR_FIELD_MAX - 2], 'f');
}

static void prefix_longer_than_bound_is_truncated(void **state)
{
    char prefix[TSE_ERROR_FIELD_MAX + 40];
    tse_error err;

    memset(prefix, 'p', sizeof(prefix) - 1);
    prefix[sizeof(prefix) - 1] = '\0';
    tse_error_set(&err, TSE_INVALID, "x", "m");
    tse_error_prefix_field(&err, prefix);
    assert_int_equal(strlen(err.field), TSE_ERROR_FIELD_MAX - 1);
    assert_memory_equal(err.field, prefix, TSE_ERROR_FIELD_MAX - 1);
}

static void every_status_has_its_stable_name(void **state)
{
    static const struct {
        tse_status code;
        const char *name;
    } names[] = {
        {TSE_OK, "OK"},
        {TSE_INVALID, "INVALID_ARGUMENT"},
        {TSE_NOT_FOUND, "NOT_FOUND"},
        {TSE_ALREADY_EXISTS, "ALREADY_EXISTS"},
        {TSE_RESOURCE_EXHAUSTED, "RESOURCE_EXHAUSTED"},
        {TSE_UNAVAILABLE, "UNAVAILABLE"},
        {TSE_DEADLINE, "DEADLINE_EXCEEDED"},
        {TSE_CANCELLED, "CANCELLED"},
        {TSE_NOMEM, "RESOURCE_EXHAUSTED"},
        {TSE_FAILED_PRECONDITION, "FAILED_PRECONDITION"},
        {TSE_UNIMPLEMENTED, "UNIMPLEMENTED"},
        {TSE_UNAUTHENTICATED, "UNAUTHENTICATED"},
        {TSE_PERMISSION_DENIED, "PERMISSION_DENIED"},
        {TSE_INTERNAL, "INTERNAL"},
    };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        assert_string_equal(tse_status_name(names[i].code), names[i].name);
}

static void unknown_status_is_named_internal(void **state)
{
    assert_string_equal(tse_status_name((tse_status)(TSE_INTERNAL + 1)), "INTERNAL");
    assert_string_equal(tse_status_name((tse_status)1000), "INTERNAL");
}

static void every_status_has_its_http_answer(void **state)
{
    static const struct {
        tse_status st;
        unsigned http;
        const char *code;
    } rows[] = {
        {TSE_OK, 200, "OK"},
        {TSE_INVALID, 422, "VALIDATION_FAILED"},
        {TSE_NOT_FOUND, 404, "NOT_FOUND"},
        {TSE_ALREADY_EXISTS, 409, "ALREADY_EXISTS"},
        {TSE_FAILED_PRECONDITION, 409, "FAILED_PRECONDITION"},
        {TSE_RESOURCE_EXHAUSTED, 429, "RESOURCE_EXHAUSTED"},
        {TSE_UNAVAILABLE, 503, "SERVICE_UNAVAILABLE"},
        {TSE_DEADLINE, 503, "SERVICE_UNAVAILABLE"},
        {TSE_CANCELLED, 503, "SERVICE_UNAVAILABLE"},
        {TSE_UNIMPLEMENTED, 501, "NOT_IMPLEMENTED"},
        {TSE_UNAUTHENTICATED, 401, "UNAUTHENTICATED"},
        {TSE_PERMISSION_DENIED, 403, "PERMISSION_DENIED"},
        {TSE_NOMEM, 500, "INTERNAL"},
        {TSE_INTERNAL, 500, "INTERNAL"},
    };
    const char *code;

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        code = NULL;
        assert_int_equal(tse_status_to_http(rows[i].st, &code), rows[i].http);
        assert_string_equal(code, rows[i].code);
    }
    assert_int_equal(tse_status_to_http(TSE_NOT_FOUND, NULL), 404);
}

static void unknown_status_is_an_internal_http_error(void **state)
{
    const char *code = NULL;

    assert_int_equal(tse_status_to_http((tse_status)1000, &code), 500);
    assert_string_equal(code, "INTERNAL");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(clear_resets_code_and_strings),
        cmocka_unit_test(clear_accepts_null),
        cmocka_unit_test(set_fills_code_field_and_formatted_message),
        cmocka_unit_test(set_with_null_field_leaves_field_empty),
        cmocka_unit_test(set_with_null_err_still_returns_code),
        cmocka_unit_test(set_overwrites_a_previous_error),
        cmocka_unit_test(set_truncates_long_field_at_bound),
        cmocka_unit_test(set_keeps_field_exactly_at_bound_minus_one),
        cmocka_unit_test(set_truncates_long_message_at_bound),
        cmocka_unit_test(prefix_joins_prefix_and_field_with_a_dot),
        cmocka_unit_test(prefix_on_empty_field_becomes_the_prefix),
        cmocka_unit_test(prefix_null_or_empty_changes_nothing),
        cmocka_unit_test(prefix_accepts_null_err),
        cmocka_unit_test(prefix_truncates_at_bound_keeping_the_front),
        cmocka_unit_test(prefix_longer_than_bound_is_truncated),
        cmocka_unit_test(every_status_has_its_stable_name),
        cmocka_unit_test(unknown_status_is_named_internal),
        cmocka_unit_test(every_status_has_its_http_answer),
        cmocka_unit_test(unknown_status_is_an_internal_http_error),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_broker_keys.c - the stream key of (event type, priority): the layout
 * docs/architecture.md documents, and safe truncation in a short buffer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "writer/broker.h"

static void key_is_prefix_type_and_priority(void **state)
{
    char buf[128];

    (void)state;
    tse_broker_stream_key("sample.created", 1, buf, sizeof(buf));
    assert_string_equal(buf, "tracseq:events:{sample.created}:p1");
    tse_broker_stream_key("storage.temperature_alert", 5, buf, sizeof(buf));
    assert_string_equal(buf, "tracseq:events:{storage.temperature_alert}:p5");
}

static void key_with_two_digit_priority_is_still_written(void **state)
{
    char buf[128];

    (void)state;
    tse_broker_stream_key("x.y", 12, buf, sizeof(buf));
    assert_string_equal(buf, "tracseq:events:{x.y}:p12");
}

static void key_in_a_short_buffer_is_truncated_and_terminated(void **state)
{
    char buf[20];

    (void)state;
    memset(buf, 'z', sizeof(buf));
    tse_broker_stream_key("sample.created", 3, buf, sizeof(buf));
    assert_int_equal(strlen(buf), sizeof(buf) - 1);
    assert_memory_equal(buf, "tracseq:events:{sam", sizeof(buf));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(key_is_prefix_type_and_priority),
        cmocka_unit_test(key_with_two_digit_priority_is_still_written),
        cmocka_unit_test(key_in_a_short_buffer_is_truncated_and_terminated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

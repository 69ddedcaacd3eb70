/*
 * test_codec_utf8.c - the codec's UTF-8 helpers (src/codec/utf8.h) that the
 * domain's tests (test_domain_validate.c, through validate.h) do not reach:
 * the sequence check within a byte bound, as the wire scan uses it, and the
 * U+FFFD repair the JSON encoder uses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "codec/utf8.h"
#include "common/alloc.h"

static size_t sequence(const char *s, size_t n)
{
    return tse_utf8_sequence((const unsigned char *)s, n);
}

static void sequence_is_bounded_by_n_not_by_nul(void **state)
{
    assert_int_equal(sequence("a", 1), 1);
    assert_int_equal(sequence("\xc3\xa9", 2), 2);
    assert_int_equal(sequence("\xe2\x82\xac", 3), 3);
    assert_int_equal(sequence("\xf0\x9f\x98\x80", 4), 4);
    assert_int_equal(sequence("\xe2\x82\xac", 2), 0); /* cut by the bound */
    assert_int_equal(sequence("\xf0\x9f\x98\x80", 3), 0);
    assert_int_equal(sequence("\xe2\x82", SIZE_MAX), 0); /* cut by the NUL */
    assert_int_equal(sequence("\xed\xa0\x80", 3), 0);    /* surrogate */
    assert_int_equal(sequence("\xc0\xaf", 2), 0);        /* overlong */
}

static void repair_replaces_each_bad_byte_with_u_fffd(void **state)
{
    char *fixed = tse_utf8_repair("a\xff"
                                  "b\xe2\x82 caf\xc3\xa9");

    assert_non_null(fixed);
    assert_string_equal(fixed, "a\xef\xbf\xbd"
                               "b\xef\xbf\xbd\xef\xbf\xbd caf\xc3\xa9");
    assert_true(tse_utf8_valid(fixed));
    tse_free(fixed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sequence_is_bounded_by_n_not_by_nul),
        cmocka_unit_test(repair_replaces_each_bad_byte_with_u_fffd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

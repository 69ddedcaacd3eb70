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
#include <string.h>

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

/* The byte-at-a-time definition of the span, to check the word-at-a-time one. */
static size_t reference_span(const unsigned char *p, size_t n)
{
    size_t i = 0;

    while (i < n && p[i] != 0) {
        size_t len = tse_utf8_sequence(p + i, n - i);
        if (len == 0)
            break;
        i += len;
    }
    return i;
}

static void text_span_stops_at_nul_or_bad_byte_at_any_offset(void **state)
{
    unsigned char buf[40];

    assert_int_equal(tse_utf8_text_span(NULL, 0), 0);
    assert_int_equal(tse_utf8_text_span((const unsigned char *)"plain ascii text, long enough", 29),
                     29);
    /* Each offset and length around the 8-byte words: a NUL, a stray
     * continuation byte, a sequence cut by the bound, a good é. */
    for (size_t at = 0; at < 24; at++) {
        for (size_t n = at + 1; n <= sizeof(buf); n++) {
            memset(buf, 'a', sizeof(buf));
            buf[at] = 0;
            assert_int_equal(tse_utf8_text_span(buf, n), at);
            buf[at] = 0x80;
            assert_int_equal(tse_utf8_text_span(buf, n), at);
            buf[at] = 0xc3;
            assert_int_equal(tse_utf8_text_span(buf, n), reference_span(buf, n));
            buf[at + 1] = 0xa9;
            assert_int_equal(tse_utf8_text_span(buf, n), reference_span(buf, n));
            assert_int_equal(tse_utf8_text_span(buf, n), at + 1 < n ? n : at);
        }
    }
}

static void text_span_matches_the_sequence_check_on_random_bytes(void **state)
{
    static const unsigned char alphabet[] = {'a',  'Z',  0,    0x7f, 0x80, 0xbf, 0xc2,
                                             0xc3, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4,
                                             0xf5, 0xa0, 0x9f, 0x90, 0x8f, 0xff};
    unsigned char buf[64];
    uint32_t x = 12345;

    for (int round = 0; round < 20000; round++) {
        size_t n = round % sizeof(buf);
        for (size_t i = 0; i < n; i++) {
            x = x * 1103515245u + 12345u;
            /* Mostly ASCII, as real text is, so the word path is taken. */
            buf[i] = (x >> 16) % 4 ? (unsigned char)('a' + (x >> 8) % 26)
                                   : alphabet[(x >> 20) % sizeof(alphabet)];
        }
        assert_int_equal(tse_utf8_text_span(buf, n), reference_span(buf, n));
    }
}

static void valid_agrees_with_the_span(void **state)
{
    assert_true(tse_utf8_valid(NULL));
    assert_true(tse_utf8_valid(""));
    assert_true(tse_utf8_valid("caf\xc3\xa9 with a long ascii tail"));
    assert_false(tse_utf8_valid("a long ascii head, then a bad byte \xff"));
    assert_false(tse_utf8_valid("cut \xe2\x82"));
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
        cmocka_unit_test(text_span_stops_at_nul_or_bad_byte_at_any_offset),
        cmocka_unit_test(text_span_matches_the_sequence_check_on_random_bytes),
        cmocka_unit_test(valid_agrees_with_the_span),
        cmocka_unit_test(repair_replaces_each_bad_byte_with_u_fffd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

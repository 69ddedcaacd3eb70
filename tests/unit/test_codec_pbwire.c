/*
 * test_codec_pbwire.c - the varint writing of src/codec/pbwire.h: sizes at
 * every length boundary, and bytes that the one wire reader
 * (tse_pbscan_next) reads back as written.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "codec/pbscan.h"
#include "codec/pbwire.h"

static void test_a_varint_takes_seven_bits_a_byte(void **state)
{
    (void)state;
    assert_int_equal(tse_pbwire_varint_size(0), 1);
    assert_int_equal(tse_pbwire_varint_size(127), 1);
    assert_int_equal(tse_pbwire_varint_size(128), 2);
    assert_int_equal(tse_pbwire_varint_size(16383), 2);
    assert_int_equal(tse_pbwire_varint_size(16384), 3);
    assert_int_equal(tse_pbwire_varint_size(UINT64_MAX), 10);
}

static void test_written_varints_read_back_as_a_field(void **state)
{
    static const uint64_t values[] = {0, 1, 127, 128, 300, 16384, UINT32_MAX, UINT64_MAX};
    uint8_t buf[16];

    (void)state;
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        /* Field 2, wire type 0, then the value. */
        uint8_t *end = tse_pbwire_put_varint(tse_pbwire_put_varint(buf, 2 << 3), values[i]);
        size_t len = (size_t)(end - buf), pos = 0;
        tse_pbscan_field f;

        assert_int_equal(len, 1 + tse_pbwire_varint_size(values[i]));
        assert_true(tse_pbscan_next(buf, len, &pos, &f));
        assert_int_equal(pos, len);
        assert_int_equal(f.id, 2);
        assert_int_equal(f.wire, 0);
        assert_true(f.varint == values[i]);
    }
    /* 300 is the protobuf documentation's example: AC 02. */
    assert_int_equal(tse_pbwire_put_varint(buf, 300) - buf, 2);
    assert_int_equal(buf[0], 0xAC);
    assert_int_equal(buf[1], 0x02);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_varint_takes_seven_bits_a_byte),
        cmocka_unit_test(test_written_varints_read_back_as_a_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

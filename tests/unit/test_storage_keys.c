/*
 * test_storage_keys.c - the key module of the storage layer
 * (src/storage/keys.c): every key name built from its parts and parsed
 * back, truncation in short buffers, and the Redis Cluster slot of a key
 * (CRC16 and hash tags) against values Redis itself computes
 * (CLUSTER KEYSLOT of a redis-server 7 with cluster-enabled yes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "storage/keys.h"

static void stream_key_is_prefix_tagged_type_and_priority(void **state)
{
    char buf[128];

    (void)state;
    tse_key_stream("sample.created", 3, buf, sizeof(buf));
    assert_string_equal(buf, TSE_EVENTS_PREFIX "{sample.created}:p3");
    tse_key_stream("x.y", 12, buf, sizeof(buf));
    assert_string_equal(buf, TSE_EVENTS_PREFIX "{x.y}:p12");
}

static void stream_key_in_a_short_buffer_is_cut_and_terminated(void **state)
{
    char buf[12];

    (void)state;
    memset(buf, 'z', sizeof(buf));
    tse_key_stream("sample.created", 3, buf, sizeof(buf));
    assert_int_equal(strlen(buf), sizeof(buf) - 1);
}

static void stream_key_parses_back_into_type_and_priority(void **state)
{
    char buf[128];
    const char *type;
    size_t type_len;
    int prio;

    (void)state;
    for (int p = 1; p <= 9; p++) {
        tse_key_stream("storage.temperature_alert", p, buf, sizeof(buf));
        assert_true(tse_key_stream_parse(buf, strlen(buf), &type, &type_len, &prio));
        assert_int_equal(type_len, strlen("storage.temperature_alert"));
        assert_memory_equal(type, "storage.temperature_alert", type_len);
        assert_int_equal(prio, p);
        assert_false(tse_key_stream_legacy_parse(buf, strlen(buf), &type, &type_len, &prio));
    }
}

static void an_old_layout_stream_key_parses_only_as_legacy(void **state)
{
    const char *key = TSE_EVENTS_PREFIX "sample.created:p4", *type;
    size_t type_len;
    int prio;

    (void)state;
    assert_false(tse_key_stream_parse(key, strlen(key), &type, &type_len, &prio));
    assert_true(tse_key_stream_legacy_parse(key, strlen(key), &type, &type_len, &prio));
    assert_int_equal(type_len, strlen("sample.created"));
    assert_memory_equal(type, "sample.created", type_len);
    assert_int_equal(prio, 4);
    /* Not a stream key of either layout. */
    key = TSE_EVENTS_PREFIX ":p4";
    assert_false(tse_key_stream_legacy_parse(key, strlen(key), &type, &type_len, &prio));
    key = TSE_DEDUP_PREFIX "a.b:p4";
    assert_false(tse_key_stream_legacy_parse(key, strlen(key), &type, &type_len, &prio));
}

static void other_keys_are_not_stream_keys(void **state)
{
    static const char *const keys[] = {
        TSE_STREAMS_KEY,
        TSE_SUBS_KEY,
        TSE_DLQ_PREFIX "orders",
        TSE_DEDUP_PREFIX "id",
        TSE_EVENTS_PREFIX ":p1",
        TSE_EVENTS_PREFIX "{}:p1",
        TSE_EVENTS_PREFIX "{a.b}:p0",
        TSE_EVENTS_PREFIX "{a.b}:q1",
        TSE_EVENTS_PREFIX "{a.b}:p12",
        TSE_EVENTS_PREFIX "{a{b}:p1",
        TSE_EVENTS_PREFIX "{a}b}:p1",
        TSE_EVENTS_PREFIX "a.b}:p1",
        TSE_EVENTS_PREFIX "a.b:p1",
        "events:{a.b}:p1",
        "",
    };
    const char *type;
    size_t type_len;
    int prio;

    (void)state;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        assert_false(tse_key_stream_parse(keys[i], strlen(keys[i]), &type, &type_len, &prio));
}

static void dedup_dead_letter_and_snapshot_keys_name_their_owner(void **state)
{
    char buf[128];

    (void)state;
    tse_key_dedup("sample.created", "3f0e1b2c-0000-4000-8000-000000000001", buf, sizeof(buf));
    assert_string_equal(buf,
                        TSE_DEDUP_PREFIX "{sample.created}:3f0e1b2c-0000-4000-8000-000000000001");
    tse_key_dlq("orders", buf, sizeof(buf));
    assert_string_equal(buf, TSE_DLQ_PREFIX "orders");
    tse_key_dlq("orders", buf, 4);
    assert_int_equal(strlen(buf), 3);
    tse_key_snapshots("orders", buf, sizeof(buf));
    assert_string_equal(buf, TSE_SNAPSHOTS_PREFIX "orders");
    tse_key_snapshots("orders", buf, 4);
    assert_int_equal(strlen(buf), 3);
}

static void crc16_is_the_xmodem_variant_redis_uses(void **state)
{
    (void)state;
    /* The check value of CRC-16/XMODEM, quoted in the Redis Cluster spec. */
    assert_int_equal(tse_key_crc16("123456789", 9), 0x31C3);
    assert_int_equal(tse_key_crc16("", 0), 0);
}

/* CRC16/XMODEM bit by bit: the definition the table-driven one must
 * match. */
static unsigned crc16_bitwise(const unsigned char *buf, size_t len)
{
    unsigned crc = 0;

    for (size_t i = 0; i < len; i++) {
        crc ^= (unsigned)buf[i] << 8;
        for (int bit = 0; bit < 8; bit++)
            crc = (crc & 0x8000) ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    return crc;
}

static void crc16_matches_the_bitwise_definition_on_every_byte_and_random_keys(void **state)
{
    unsigned char buf[64];
    uint32_t x = 0x9e3779b9u; /* xorshift32: the same keys every run */

    (void)state;
    for (unsigned b = 0; b < 256; b++) {
        buf[0] = (unsigned char)b;
        buf[1] = (unsigned char)(255 - b);
        assert_int_equal(tse_key_crc16((const char *)buf, 1), crc16_bitwise(buf, 1));
        assert_int_equal(tse_key_crc16((const char *)buf, 2), crc16_bitwise(buf, 2));
    }
    for (int i = 0; i < 2000; i++) {
        size_t len = 0;
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        len = x % sizeof(buf);
        for (size_t j = 0; j < len; j++) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            buf[j] = (unsigned char)x;
        }
        assert_int_equal(tse_key_crc16((const char *)buf, len), crc16_bitwise(buf, len));
    }
}

static unsigned slot(const char *key)
{
    return tse_key_slot(key, strlen(key));
}

static void slot_matches_redis_cluster_keyslot(void **state)
{
    (void)state;
    assert_int_equal(slot("foo"), 12182);
    assert_int_equal(slot("bar"), 5061);
    assert_int_equal(slot("hello"), 866);
    assert_int_equal(slot("123456789"), 12739);
    assert_int_equal(slot(""), 0);
    assert_int_equal(slot("tracseq:events:sample.created:p3"), 15765);
    assert_int_equal(slot("tracseq:streams"), 262);
    assert_int_equal(slot("tracseq:dedup:abc"), 2580);
}

static void slot_follows_the_hash_tag_rules(void **state)
{
    (void)state;
    /* The tag alone counts: keys sharing it share a slot. */
    assert_int_equal(slot("{user1000}.following"), 3443);
    assert_int_equal(slot("{user1000}.followers"), 3443);
    assert_int_equal(slot("tracseq:events:{sample.created}:p3"), slot("sample.created"));
    /* Only the first tag, ended by the first '}' after the '{'. */
    assert_int_equal(slot("foo{bar}{zap}"), 5061);
    assert_int_equal(slot("foo{{bar}}zap"), 4015);
    /* An empty tag or an unclosed '{': the whole key. */
    assert_int_equal(slot("foo{}{bar}"), 8363);
    assert_int_equal(slot("{"), 4092);
    assert_int_equal(slot("a{b"), 13340);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stream_key_is_prefix_tagged_type_and_priority),
        cmocka_unit_test(stream_key_in_a_short_buffer_is_cut_and_terminated),
        cmocka_unit_test(stream_key_parses_back_into_type_and_priority),
        cmocka_unit_test(an_old_layout_stream_key_parses_only_as_legacy),
        cmocka_unit_test(other_keys_are_not_stream_keys),
        cmocka_unit_test(dedup_dead_letter_and_snapshot_keys_name_their_owner),
        cmocka_unit_test(crc16_is_the_xmodem_variant_redis_uses),
        cmocka_unit_test(crc16_matches_the_bitwise_definition_on_every_byte_and_random_keys),
        cmocka_unit_test(slot_matches_redis_cluster_keyslot),
        cmocka_unit_test(slot_follows_the_hash_tag_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

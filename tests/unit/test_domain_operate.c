/*
 * test_domain_operate.c - the checks of the dead-letter, seek and snapshot
 * requests (domain/operate.h): entry ids, and refusals naming the field.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "domain/operate.h"
#include "tracseq/events/v1/service.pb-c.h"

static void entry_ids_are_two_numbers(void **state)
{
    uint64_t ms = 0, seq = 0;

    (void)state;
    assert_true(tse_entry_id_parse("1718700000000-7", &ms, &seq));
    assert_true(ms == 1718700000000ULL && seq == 7);
    assert_true(tse_entry_id_parse("0-0", NULL, NULL));
    assert_true(tse_entry_id_parse("18446744073709551615-18446744073709551615", &ms, &seq));
    assert_true(ms == UINT64_MAX && seq == UINT64_MAX);
    assert_false(tse_entry_id_parse("18446744073709551616-0", NULL, NULL));
    assert_false(tse_entry_id_parse("1-", NULL, NULL));
    assert_false(tse_entry_id_parse("-1", NULL, NULL));
    assert_false(tse_entry_id_parse("1-2-3", NULL, NULL));
    assert_false(tse_entry_id_parse("+1-2", NULL, NULL));
    assert_false(tse_entry_id_parse("", NULL, NULL));
    assert_false(tse_entry_id_parse(NULL, NULL, NULL));
}

static void expect_field(const ProtobufCMessage *msg, const char *field)
{
    tse_error err;

    tse_error_clear(&err);
    assert_int_equal(tse_operate_check(msg, 10, &err), TSE_INVALID);
    assert_string_equal(err.field, field);
    assert_true(err.message[0] != '\0');
}

static void redrive_needs_ids_or_all(void **state)
{
    Tracseq__Events__V1__RedriveDeadLettersRequest r =
        TRACSEQ__EVENTS__V1__REDRIVE_DEAD_LETTERS_REQUEST__INIT;
    char *ids[] = {"1-0", "nope"};

    (void)state;
    expect_field(&r.base, "subscription");
    r.subscription = "sub";
    expect_field(&r.base, "ids");
    r.all = true;
    assert_int_equal(tse_operate_check(&r.base, 10, NULL), TSE_OK);
    r.n_ids = 1;
    r.ids = ids;
    expect_field(&r.base, "all");
    r.all = false;
    assert_int_equal(tse_operate_check(&r.base, 10, NULL), TSE_OK);
    r.n_ids = 2;
    expect_field(&r.base, "ids[1]");
    assert_int_equal(tse_operate_check(&r.base, 1, NULL), TSE_INVALID);
}

static void seek_takes_exactly_one_target(void **state)
{
    Tracseq__Events__V1__SeekRequest r = TRACSEQ__EVENTS__V1__SEEK_REQUEST__INIT;
    Google__Protobuf__Timestamp t = GOOGLE__PROTOBUF__TIMESTAMP__INIT;

    (void)state;
    r.subscription = "sub";
    expect_field(&r.base, "position");
    r.position = TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_EARLIEST;
    assert_int_equal(tse_operate_check(&r.base, 10, NULL), TSE_OK);
    r.snapshot = "snap";
    expect_field(&r.base, "snapshot");
    r.position = TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_UNSPECIFIED;
    assert_int_equal(tse_operate_check(&r.base, 10, NULL), TSE_OK);
    r.snapshot = "bad name!";
    expect_field(&r.base, "snapshot");
    r.snapshot = "";
    r.position = TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_TIMESTAMP;
    expect_field(&r.base, "time");
    r.time = &t;
    t.seconds = 1718700000;
    assert_int_equal(tse_operate_check(&r.base, 10, NULL), TSE_OK);
    t.nanos = -1;
    expect_field(&r.base, "time");
    r.position = 42;
    expect_field(&r.base, "position");
}

static void pages_and_names(void **state)
{
    Tracseq__Events__V1__ListDeadLettersRequest l =
        TRACSEQ__EVENTS__V1__LIST_DEAD_LETTERS_REQUEST__INIT;
    Tracseq__Events__V1__CreateSnapshotRequest c =
        TRACSEQ__EVENTS__V1__CREATE_SNAPSHOT_REQUEST__INIT;
    Tracseq__Events__V1__GetDeadLetterRequest g =
        TRACSEQ__EVENTS__V1__GET_DEAD_LETTER_REQUEST__INIT;
    Tracseq__Events__V1__GetSubscriptionRequest other =
        TRACSEQ__EVENTS__V1__GET_SUBSCRIPTION_REQUEST__INIT;

    (void)state;
    l.subscription = "sub";
    l.page_size = 1001;
    expect_field(&l.base, "page_size");
    l.page_size = 0;
    l.page_token = "x";
    expect_field(&l.base, "page_token");
    l.page_token = "5-5";
    assert_int_equal(tse_operate_check(&l.base, 10, NULL), TSE_OK);
    c.subscription = "sub";
    expect_field(&c.base, "name");
    g.subscription = "sub";
    g.id = "12";
    expect_field(&g.base, "id");
    assert_false(tse_operate_is_request(other.base.descriptor));
    expect_field(&other.base, "request");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(entry_ids_are_two_numbers),
        cmocka_unit_test(redrive_needs_ids_or_all),
        cmocka_unit_test(seek_takes_exactly_one_target),
        cmocka_unit_test(pages_and_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

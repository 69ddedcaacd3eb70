/*
 * test_broker_url.c - tse_redis_url_parse: what a good redis:// URL yields
 * (defaults, credentials, percent-escapes, db, IPv6) and how each bad part is
 * rejected with a message naming it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "storage/redis_url.h"

static tse_redis_target parse_ok(const char *url)
{
    tse_redis_target t;
    tse_error err;

    memset(&t, 0x5a, sizeof(t));
    tse_error_clear(&err);
    assert_int_equal(tse_redis_url_parse(url, &t, &err), TSE_OK);
    assert_int_equal(err.code, TSE_OK);
    return t;
}

/* Asserts url is rejected with a message containing what. */
static void assert_rejected(const char *url, const char *what)
{
    tse_redis_target t = {.port = 1234};
    tse_error err;

    tse_error_clear(&err);
    assert_int_equal(tse_redis_url_parse(url, &t, &err), TSE_INVALID);
    assert_int_equal(err.code, TSE_INVALID);
    assert_string_equal(err.field, "redis_url");
    if (strstr(err.message, what) == NULL)
        fail_msg("\"%s\": message \"%s\" does not mention \"%s\"", url, err.message, what);
    assert_int_equal(t.port, 1234); /* out untouched on failure */
}

static void host_only_gets_default_port_and_db(void **state)
{
    tse_redis_target t = parse_ok("redis://localhost");

    assert_string_equal(t.host, "localhost");
    assert_int_equal(t.port, 6379);
    assert_int_equal(t.db, 0);
    assert_string_equal(t.username, "");
    assert_string_equal(t.password, "");
}

static void port_and_db_are_read(void **state)
{
    tse_redis_target t = parse_ok("redis://10.0.0.7:6380/3");

    assert_string_equal(t.host, "10.0.0.7");
    assert_int_equal(t.port, 6380);
    assert_int_equal(t.db, 3);
}

static void trailing_slash_means_db_zero(void **state)
{
    tse_redis_target t = parse_ok("redis://redis:7000/");

    assert_int_equal(t.port, 7000);
    assert_int_equal(t.db, 0);
}

static void scheme_is_case_insensitive(void **state)
{
    assert_string_equal(parse_ok("REDIS://h").host, "h");
}

static void password_only(void **state)
{
    tse_redis_target t = parse_ok("redis://:s3cret@cache:6379");

    assert_string_equal(t.username, "");
    assert_string_equal(t.password, "s3cret");
    assert_string_equal(t.host, "cache");
}

static void user_and_password(void **state)
{
    tse_redis_target t = parse_ok("redis://events:pw@cache/2");

    assert_string_equal(t.username, "events");
    assert_string_equal(t.password, "pw");
    assert_int_equal(t.db, 2);
}

static void percent_escapes_are_decoded(void **state)
{
    tse_redis_target t = parse_ok("redis://us%65r%3a1:p%40ss%2Fw%25rd@h");

    assert_string_equal(t.username, "user:1");
    assert_string_equal(t.password, "p@ss/w%rd");
}

static void raw_at_and_colon_in_password_split_at_last_at(void **state)
{
    tse_redis_target t = parse_ok("redis://u:p@ss:w@h:1");

    assert_string_equal(t.username, "u");
    assert_string_equal(t.password, "p@ss:w");
    assert_string_equal(t.host, "h");
    assert_int_equal(t.port, 1);
}

static void bracketed_ipv6_host(void **state)
{
    tse_redis_target t = parse_ok("redis://[::1]:6390/1");

    assert_string_equal(t.host, "::1");
    assert_int_equal(t.port, 6390);
    assert_int_equal(t.db, 1);
}

static void longest_parts_fit(void **state)
{
    char url[1024], host[256], pw[256];

    memset(host, 'h', 255);
    host[255] = '\0';
    memset(pw, 'p', 255);
    pw[255] = '\0';
    snprintf(url, sizeof(url), "redis://:%s@%s", pw, host);
    tse_redis_target t = parse_ok(url);
    assert_int_equal(strlen(t.host), 255);
    assert_int_equal(strlen(t.password), 255);
}

static void empty_or_null_url_is_rejected(void **state)
{
    tse_redis_target t;
    tse_error err;

    assert_rejected("", "empty");
    assert_int_equal(tse_redis_url_parse(NULL, &t, &err), TSE_INVALID);
}

static void tls_scheme_says_tls_is_unsupported(void **state)
{
    assert_rejected("rediss://cache:6380", "TLS");
}

static void other_schemes_are_rejected(void **state)
{
    assert_rejected("http://cache:6379", "scheme");
    assert_rejected("unix:///tmp/redis.sock", "scheme");
    assert_rejected("cache:6379", "scheme");
}

static void empty_host_is_rejected(void **state)
{
    assert_rejected("redis://", "host");
    assert_rejected("redis://:6379", "host");
    assert_rejected("redis://:pw@/0", "host");
    assert_rejected("redis://[]:1", "host");
    assert_rejected("redis://[::1", "host");
}

static void bad_ports_are_rejected(void **state)
{
    assert_rejected("redis://h:", "port");
    assert_rejected("redis://h:0", "port");
    assert_rejected("redis://h:65536", "port");
    assert_rejected("redis://h:12ab", "port");
    assert_rejected("redis://h:-1", "port");
    assert_rejected("redis://h:99999999999999", "port");
}

static void bad_dbs_are_rejected(void **state)
{
    assert_rejected("redis://h/x", "db");
    assert_rejected("redis://h:1/-1", "db");
    assert_rejected("redis://h/1/2", "db");
    assert_rejected("redis://h/99999999999", "db");
}

static void query_strings_are_rejected(void **state)
{
    assert_rejected("redis://h:1/0?timeout=1", "after the host");
}

static void credentials_without_colon_are_rejected(void **state)
{
    assert_rejected("redis://justapassword@h", "credentials");
}

static void bad_percent_escapes_name_their_part(void **state)
{
    assert_rejected("redis://u%zz:pw@h", "user");
    assert_rejected("redis://u:pw%4@h", "password");
    assert_rejected("redis://u:pw%00x@h", "password");
}

static void overlong_parts_are_rejected(void **state)
{
    char url[2048], big[600];

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    snprintf(url, sizeof(url), "redis://%s:6379", big);
    assert_rejected(url, "host");
    snprintf(url, sizeof(url), "redis://:%s@h", big);
    assert_rejected(url, "password");
    snprintf(url, sizeof(url), "redis://%.200s:pw@h", big);
    assert_rejected(url, "user");
}

static void messages_never_echo_the_password(void **state)
{
    tse_redis_target t;
    tse_error err;

    assert_int_equal(tse_redis_url_parse("redis://u:hunter2@h:bad", &t, &err), TSE_INVALID);
    assert_null(strstr(err.message, "hunter2"));
}

static void plain_url_is_not_cluster(void **state)
{
    tse_redis_target t = parse_ok("redis://h:1");

    assert_false(t.cluster);
    assert_int_equal(t.nseeds, 0);
}

static void cluster_seed_list_is_read(void **state)
{
    tse_redis_target t = parse_ok("redis+cluster://u:s3cret@h1:7000,10.0.0.2,[::1]:7002");

    assert_true(t.cluster);
    assert_int_equal(t.nseeds, 3);
    assert_string_equal(t.seeds[0].host, "h1");
    assert_int_equal(t.seeds[0].port, 7000);
    assert_string_equal(t.seeds[1].host, "10.0.0.2");
    assert_int_equal(t.seeds[1].port, 6379);
    assert_string_equal(t.seeds[2].host, "::1");
    assert_int_equal(t.seeds[2].port, 7002);
    /* host and port are the first seed's, for code that logs them */
    assert_string_equal(t.host, "h1");
    assert_int_equal(t.port, 7000);
    assert_string_equal(t.username, "u");
    assert_string_equal(t.password, "s3cret");
    assert_int_equal(t.db, 0);
}

static void cluster_single_seed_and_db_zero(void **state)
{
    tse_redis_target t = parse_ok("REDIS+CLUSTER://:pw@seed:7000/0");

    assert_true(t.cluster);
    assert_int_equal(t.nseeds, 1);
    assert_string_equal(t.password, "pw");
    t = parse_ok("redis+cluster://seed/");
    assert_int_equal(t.seeds[0].port, 6379);
}

static void cluster_seed_limit(void **state)
{
    char url[1024] = "redis+cluster://";

    for (int i = 0; i < TSE_REDIS_MAX_SEEDS; i++)
        snprintf(url + strlen(url), sizeof(url) - strlen(url), "%sh%d:%d", i ? "," : "", i,
                 7000 + i);
    tse_redis_target t = parse_ok(url);
    assert_int_equal(t.nseeds, TSE_REDIS_MAX_SEEDS);
    assert_int_equal(t.seeds[TSE_REDIS_MAX_SEEDS - 1].port, 7000 + TSE_REDIS_MAX_SEEDS - 1);
    strcat(url, ",one:1");
    assert_rejected(url, "at most");
}

static void bad_cluster_urls_are_rejected(void **state)
{
    assert_rejected("redis+cluster://", "host");
    assert_rejected("redis+cluster://h1:7000,", "host");
    assert_rejected("redis+cluster://h1:7000,,h2:7001", "host");
    assert_rejected("redis+cluster://h1:7000,:7001", "host");
    assert_rejected("redis+cluster://h1:7000,h2:0", "port of seed 2");
    assert_rejected("redis+cluster://h1:x", "port of seed 1");
    assert_rejected("redis+cluster://h1:7000/1", "db 0");
    assert_rejected("redis+cluster://h1:7000?x=1", "after the seed list");
    assert_rejected("redis+cluster://[::1:7000", "host");
    assert_rejected("redis+cluster://pw@h1", "credentials");
}

static void cluster_messages_never_echo_the_password(void **state)
{
    tse_redis_target t;
    tse_error err;

    assert_int_equal(tse_redis_url_parse("redis+cluster://u:hunter2@h:1,h:bad", &t, &err),
                     TSE_INVALID);
    assert_null(strstr(err.message, "hunter2"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(host_only_gets_default_port_and_db),
        cmocka_unit_test(port_and_db_are_read),
        cmocka_unit_test(trailing_slash_means_db_zero),
        cmocka_unit_test(scheme_is_case_insensitive),
        cmocka_unit_test(password_only),
        cmocka_unit_test(user_and_password),
        cmocka_unit_test(percent_escapes_are_decoded),
        cmocka_unit_test(raw_at_and_colon_in_password_split_at_last_at),
        cmocka_unit_test(bracketed_ipv6_host),
        cmocka_unit_test(longest_parts_fit),
        cmocka_unit_test(empty_or_null_url_is_rejected),
        cmocka_unit_test(tls_scheme_says_tls_is_unsupported),
        cmocka_unit_test(other_schemes_are_rejected),
        cmocka_unit_test(empty_host_is_rejected),
        cmocka_unit_test(bad_ports_are_rejected),
        cmocka_unit_test(bad_dbs_are_rejected),
        cmocka_unit_test(query_strings_are_rejected),
        cmocka_unit_test(credentials_without_colon_are_rejected),
        cmocka_unit_test(bad_percent_escapes_name_their_part),
        cmocka_unit_test(overlong_parts_are_rejected),
        cmocka_unit_test(messages_never_echo_the_password),
        cmocka_unit_test(plain_url_is_not_cluster),
        cmocka_unit_test(cluster_seed_list_is_read),
        cmocka_unit_test(cluster_single_seed_and_db_zero),
        cmocka_unit_test(cluster_seed_limit),
        cmocka_unit_test(bad_cluster_urls_are_rejected),
        cmocka_unit_test(cluster_messages_never_echo_the_password),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

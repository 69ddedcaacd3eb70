/*
 * test_auth_tokens.c - the tokens file (src/auth): what a good file yields
 * (identities, hashes, patterns, flags, rates, expiry), how each bad line is
 * refused naming the line and never the value, the permission checks, the
 * rate bucket, and the holder's reload (a bad file keeps the old table).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth/auth.h"
#include "domain/subscription.h"

/* sha256("token-a") etc., as the file holds them. */
static void hex_of(const char *token, char out[65])
{
    uint8_t h[TSE_AUTH_HASH_LEN];

    assert_true(tse_auth_sha256(token, strlen(token), h));
    for (int i = 0; i < TSE_AUTH_HASH_LEN; i++)
        snprintf(out + 2 * i, 3, "%02x", h[i]);
}

static tse_auth_table *parse_ok(const char *text)
{
    tse_auth_table *t = NULL;
    tse_error err;

    tse_error_clear(&err);
    if (tse_auth_table_parse(text, strlen(text), &t, &err) != TSE_OK)
        fail_msg("refused: %s: %s", err.field, err.message);
    return t;
}

static void assert_refused(const char *text, const char *field, const char *what)
{
    tse_auth_table *t = (tse_auth_table *)1;
    tse_error err;

    tse_error_clear(&err);
    assert_int_equal(tse_auth_table_parse(text, strlen(text), &t, &err), TSE_INVALID);
    assert_null(t);
    assert_string_equal(err.field, field);
    if (strstr(err.message, what) == NULL)
        fail_msg("\"%s\": message \"%s\" lacks \"%s\"", text, err.message, what);
}

static void test_sha256_matches_the_known_vector(void **state)
{
    char hex[65];

    (void)state;
    hex_of("abc", hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_a_good_file_yields_its_identities(void **state)
{
    char a[65], b[65], c[65], text[1024];
    tse_auth_table *t;
    const tse_identity *id;

    (void)state;
    hex_of("token-a", a);
    hex_of("token-b", b);
    hex_of("token-c", c);
    snprintf(text, sizeof(text),
             "# identities\n\n"
             "lims sha256=%s publish=sample.*,document.* subscribe=sample.*\r\n"
             "  ops sha256=%s sha256=%s admin subscribe=* publish_on_behalf publish=*\n"
             "bridge cn=rest-bridge publish=*\n",
             a, b, c);
    t = parse_ok(text);
    assert_int_equal(tse_auth_table_count(t), 3);
    id = tse_auth_table_find_token(t, "token-a", 7, 1);
    assert_non_null(id);
    assert_string_equal(tse_identity_name(id), "lims");
    assert_false(tse_identity_admin(id));
    assert_false(tse_identity_on_behalf(id));
    assert_true(tse_identity_may_publish(id, "sample.created"));
    assert_true(tse_identity_may_publish(id, "document.signed"));
    assert_false(tse_identity_may_publish(id, "auth.login"));
    assert_true(tse_identity_may_subscribe(id, "sample.*"));
    assert_true(tse_identity_may_subscribe(id, "sample.created"));
    assert_false(tse_identity_may_subscribe(id, "*"));
    assert_false(tse_identity_may_subscribe(id, "*.created"));
    id = tse_auth_table_find_token(t, "token-c", 7, 1);
    assert_non_null(id);
    assert_string_equal(tse_identity_name(id), "ops");
    assert_true(tse_identity_admin(id));
    assert_true(tse_identity_on_behalf(id));
    assert_ptr_equal(tse_auth_table_find_token(t, "token-b", 7, 1), id);
    assert_null(tse_auth_table_find_token(t, "token-d", 7, 1));
    assert_null(tse_auth_table_find_token(t, "token-a", 6, 1));
    assert_null(tse_auth_table_find_token(t, "", 0, 1));
    id = tse_auth_table_find_cn(t, "rest-bridge", 11, 1);
    assert_non_null(id);
    assert_string_equal(tse_identity_name(id), "bridge");
    assert_false(tse_identity_may_subscribe(id, "sample.*"));
    assert_null(tse_auth_table_find_cn(t, "rest-bridg", 10, 1));
    assert_ptr_equal(tse_auth_table_find_name(t, "ops"),
                     tse_auth_table_find_token(t, "token-b", 7, 1));
    assert_null(tse_auth_table_find_name(t, "nobody"));
    tse_auth_table_destroy(t);
}

static void test_an_empty_file_has_no_identity(void **state)
{
    tse_auth_table *t = parse_ok("# nobody yet\n");

    (void)state;
    assert_int_equal(tse_auth_table_count(t), 0);
    assert_null(tse_auth_table_find_token(t, "x", 1, 1));
    tse_auth_table_destroy(t);
}

static void test_expired_tokens_stop_working(void **state)
{
    char a[65], text[256];
    tse_auth_table *t;

    (void)state;
    hex_of("token-a", a);
    snprintf(text, sizeof(text),
             "lims sha256=%s expires=2030-01-01\n"
             "late sha256=%.63s0 expires=2030-01-01T12:00:00Z\n",
             a, a);
    t = parse_ok(text);
    assert_non_null(tse_auth_table_find_token(t, "token-a", 7, 1893455999));
    assert_null(tse_auth_table_find_token(t, "token-a", 7, 1893456000));
    tse_auth_table_destroy(t);
}

static void test_bad_lines_are_refused_naming_the_line(void **state)
{
    (void)state;
    assert_refused("ok\nbad/name x\n", "line 2", "identity name");
    assert_refused("a sha256=12\n", "line 1", "64 hex");
    assert_refused("a sha256=zz00000000000000000000000000000000000000000000000000000000000000\n",
                   "line 1", "64 hex");
    assert_refused("a publish=sample\n", "line 1", "publish= holds a malformed pattern");
    assert_refused("a subscribe=sample.*,\n", "line 1", "subscribe= holds a malformed pattern");
    assert_refused("a superuser\n", "line 1", "unknown flag");
    assert_refused("a colour=blue\n", "line 1", "unknown key");
    assert_refused("a rate=0\n", "line 1", "rate=");
    assert_refused("a rate=ten\n", "line 1", "rate=");
    assert_refused("a burst=5\n", "line 1", "burst= needs rate=");
    assert_refused("a expires=tomorrow\n", "line 1", "expires=");
    assert_refused("a cn=x cn=y\n", "line 1", "cn=");
    assert_refused("a\n\na\n", "line 3", "already defined");
    assert_refused("a sha256=00000000000000000000000000000000000000000000000000000000000000ff\n"
                   "b sha256=00000000000000000000000000000000000000000000000000000000000000FF\n",
                   "tokens file", "appears twice");
}

static void test_errors_never_quote_a_value(void **state)
{
    const char *text = "a sha256=secretsecretsecret\n";
    tse_auth_table *t = NULL;
    tse_error err;

    (void)state;
    assert_int_equal(tse_auth_table_parse(text, strlen(text), &t, &err), TSE_INVALID);
    assert_null(strstr(err.message, "secret"));
    assert_null(strstr(err.field, "secret"));
}

static void test_a_long_line_is_refused(void **state)
{
    size_t n = TSE_AUTH_LINE_MAX + 10;
    char *text = malloc(n + 1);

    (void)state;
    memset(text, 'a', n);
    text[n] = '\0';
    assert_refused(text, "line 1", "longer than");
    free(text);
}

static void test_pattern_within_follows_the_segments(void **state)
{
    (void)state;
    assert_true(tse_pattern_within("sample.created", "sample.*"));
    assert_true(tse_pattern_within("sample.*", "sample.*"));
    assert_true(tse_pattern_within("sample.*", "*.*"));
    assert_true(tse_pattern_within("*", "*"));
    assert_true(tse_pattern_within("a.b.c", "*"));
    assert_false(tse_pattern_within("*", "*.*"));
    assert_false(tse_pattern_within("sample.*", "sample.created"));
    assert_false(tse_pattern_within("*.created", "sample.*"));
    assert_false(tse_pattern_within("sample.created.x", "sample.*"));
    assert_false(tse_pattern_within("sample.*", "sample.*.*"));
    assert_false(tse_pattern_within("samples.created", "sample.*"));
}

static void test_the_rate_bucket_allows_a_burst_then_the_rate(void **state)
{
    char a[65], text[200];
    tse_auth_table *t;
    const tse_identity *id;
    int64_t retry = 0, now = 1000000000;

    (void)state;
    hex_of("token-a", a);
    snprintf(text, sizeof(text), "lims sha256=%s rate=10 burst=3\nfree sha256=%.63s1\n", a, a);
    t = parse_ok(text);
    id = tse_auth_table_find_token(t, "token-a", 7, 1);
    for (int i = 0; i < 3; i++)
        assert_true(tse_identity_rate_take(id, now, &retry));
    assert_false(tse_identity_rate_take(id, now, &retry));
    assert_int_equal(retry, 100);
    assert_false(tse_identity_rate_take(id, now + 50000, &retry));
    assert_int_equal(retry, 50);
    assert_true(tse_identity_rate_take(id, now + 100000, &retry));
    assert_false(tse_identity_rate_take(id, now + 100000, &retry));
    /* Its audit lines: the first refusal of each second, then a count. */
    uint64_t unlogged = 99;
    assert_true(tse_identity_rate_audit(id, now, &unlogged));
    assert_int_equal(unlogged, 0);
    assert_false(tse_identity_rate_audit(id, now + 1000, &unlogged));
    assert_false(tse_identity_rate_audit(id, now + 2000, &unlogged));
    assert_true(tse_identity_rate_audit(id, now + 1000000, &unlogged));
    assert_int_equal(unlogged, 2);
    id = tse_auth_table_find_name(t, "free");
    for (int i = 0; i < 1000; i++)
        assert_true(tse_identity_rate_take(id, now, NULL));
    tse_auth_table_destroy(t);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_reload_swaps_and_a_bad_file_keeps_the_table(void **state)
{
    char path[] = "/tmp/tse-tokens-XXXXXX", a[65], b[65], text[256];
    int fd = mkstemp(path);
    const tse_auth_table *held, *now;
    tse_auth *auth = NULL;
    tse_error err;

    (void)state;
    assert_true(fd >= 0);
    close(fd);
    hex_of("token-a", a);
    hex_of("token-b", b);
    snprintf(text, sizeof(text), "lims sha256=%s\n", a);
    write_file(path, text);
    assert_int_equal(tse_auth_create(path, &auth, &err), TSE_OK);
    held = tse_auth_acquire(auth);
    assert_non_null(tse_auth_table_find_token(held, "token-a", 7, 1));

    snprintf(text, sizeof(text), "lims sha256=%s\n", b);
    write_file(path, text);
    assert_int_equal(tse_auth_reload(auth, &err), TSE_OK);
    now = tse_auth_acquire(auth);
    assert_null(tse_auth_table_find_token(now, "token-a", 7, 1));
    assert_non_null(tse_auth_table_find_token(now, "token-b", 7, 1));
    /* The call that held the old table still reads it until it lets go. */
    assert_non_null(tse_auth_table_find_token(held, "token-a", 7, 1));
    tse_auth_release(held);

    write_file(path, "lims sha256=oops\n");
    assert_int_equal(tse_auth_reload(auth, &err), TSE_INVALID);
    assert_string_equal(err.field, "AUTH_TOKENS_FILE line 1");
    tse_auth_release(now);
    now = tse_auth_acquire(auth);
    assert_non_null(tse_auth_table_find_token(now, "token-b", 7, 1));
    tse_auth_release(now);
    tse_auth_destroy(auth);

    unlink(path);
    assert_int_equal(tse_auth_create(path, &auth, &err), TSE_UNAVAILABLE);
    assert_string_equal(err.field, "AUTH_TOKENS_FILE");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_matches_the_known_vector),
        cmocka_unit_test(test_a_good_file_yields_its_identities),
        cmocka_unit_test(test_an_empty_file_has_no_identity),
        cmocka_unit_test(test_expired_tokens_stop_working),
        cmocka_unit_test(test_bad_lines_are_refused_naming_the_line),
        cmocka_unit_test(test_errors_never_quote_a_value),
        cmocka_unit_test(test_a_long_line_is_refused),
        cmocka_unit_test(test_pattern_within_follows_the_segments),
        cmocka_unit_test(test_the_rate_bucket_allows_a_burst_then_the_rate),
        cmocka_unit_test(test_reload_swaps_and_a_bad_file_keeps_the_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

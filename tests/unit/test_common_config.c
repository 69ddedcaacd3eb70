/*
 * test_common_config.c - tse_config_load and tse_duration_parse: the default
 * of every setting, environment overrides, flags winning over the
 * environment in both "--key=value" and "--key value" forms, each kind of bad
 * value rejected with err->field naming the key and a message saying what is
 * wrong, bad command lines, --help / --version, and duration units and
 * overflow.
 *
 * The tests change the process environment: the group setup saves and
 * unsets every setting's variable, each test's teardown unsets them again,
 * and the group teardown puts the saved values back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config/config.h"
#include "obs/log.h"

static const char *const env_names[] = {
    "REDIS_URL",       "GRPC_LISTEN",           "LOG_LEVEL",        "LOG_FORMAT",
    "VALIDATION_MODE", "DEDUP_WINDOW",          "RETENTION_AGE",    "RETENTION_MAXLEN",
    "REDIS_TIMEOUT",   "REDIS_CONNECTIONS",     "GRPC_THREADS",     "MAX_MESSAGE_BYTES",
    "SHUTDOWN_GRACE",  "PUBLISH_STREAM_WINDOW", "AUTH_TOKENS_FILE", "ALLOW_UNAUTHENTICATED_REMOTE",
};

#define NENV (sizeof(env_names) / sizeof(env_names[0]))

static char *saved_env[NENV];

static void unset_all(void)
{
    for (size_t i = 0; i < NENV; i++)
        unsetenv(env_names[i]);
}

static int save_env(void **state)
{
    for (size_t i = 0; i < NENV; i++) {
        const char *v = getenv(env_names[i]);
        saved_env[i] = v ? strdup(v) : NULL;
    }
    unset_all();
    return 0;
}

static int restore_env(void **state)
{
    unset_all();
    for (size_t i = 0; i < NENV; i++) {
        if (saved_env[i] != NULL)
            setenv(env_names[i], saved_env[i], 1);
        free(saved_env[i]);
        saved_env[i] = NULL;
    }
    return 0;
}

static int clean_env(void **state)
{
    unset_all();
    return 0;
}

/* Loads with argv (NULL-terminated, argv[0] included); output goes nowhere. */
static tse_config_outcome load(tse_config *cfg, char **argv, tse_error *err)
{
    int argc = 0;

    while (argv[argc] != NULL)
        argc++;
    memset(cfg, 0x5a, sizeof(*cfg));
    tse_error_clear(err);
    return tse_config_load(cfg, argc, argv, stdout, err);
}

static void load_ok(tse_config *cfg, char **argv)
{
    tse_error err;

    if (load(cfg, argv, &err) != TSE_CONFIG_RUN)
        fail_msg("expected RUN, got error field=\"%s\" message=\"%s\"", err.field, err.message);
    assert_int_equal(err.code, TSE_OK);
}

/* Asserts the message mentions what. */
static void assert_mentions(const char *message, const char *what)
{
    if (strstr(message, what) == NULL)
        fail_msg("message \"%s\" does not mention \"%s\"", message, what);
}

/* ---- defaults and the environment ------------------------------------- */

static void defaults_fill_every_setting(void **state)
{
    char *argv[] = {"tracseq-events", NULL};
    tse_config cfg;

    load_ok(&cfg, argv);
    assert_string_equal(cfg.redis_url, "redis://127.0.0.1:6379");
    assert_string_equal(cfg.listen, "127.0.0.1:50051");
    assert_string_equal(cfg.auth_tokens_file, "");
    assert_false(cfg.allow_open_remote);
    assert_string_equal(cfg.log_level, "info");
    assert_true(cfg.log_json);
    assert_false(cfg.strict);
    assert_int_equal(cfg.dedup_window_ms, 2 * 60 * 1000);
    assert_int_equal(cfg.retention_ms, 7LL * 86400 * 1000);
    assert_int_equal(cfg.retention_maxlen, 0);
    assert_int_equal(cfg.redis_timeout_ms, 2000);
    assert_int_equal(cfg.redis_lanes, 2);
    assert_int_equal(cfg.threads, 2);
    assert_int_equal(cfg.max_message_bytes, 4 * 1024 * 1024);
    assert_int_equal(cfg.shutdown_grace_ms, 10000);
    assert_int_equal(cfg.stream_window, 4096);
}

static void defaults_need_no_argv_at_all(void **state)
{
    tse_config cfg;
    tse_error err;

    tse_error_clear(&err);
    assert_int_equal(tse_config_load(&cfg, 0, NULL, stdout, &err), TSE_CONFIG_RUN);
    assert_int_equal(cfg.threads, 2);
}

/* The values every override test sets, and a check they all arrived. */
static const char *const override_values[NENV] = {
    "redis://:secret@redis.lab:6380/2",
    "127.0.0.1:6000",
    "debug",
    "text",
    "strict",
    "90s",
    "30d",
    "100000",
    "250ms",
    "4",
    "8",
    "512KiB",
    "1m",
    "128",
    "/etc/tracseq-events/tokens",
    "true",
};

static void assert_overrides_applied(const tse_config *cfg)
{
    assert_string_equal(cfg->redis_url, "redis://:secret@redis.lab:6380/2");
    assert_string_equal(cfg->listen, "127.0.0.1:6000");
    assert_string_equal(cfg->log_level, "debug");
    assert_false(cfg->log_json);
    assert_true(cfg->strict);
    assert_int_equal(cfg->dedup_window_ms, 90000);
    assert_int_equal(cfg->retention_ms, 30LL * 86400 * 1000);
    assert_int_equal(cfg->retention_maxlen, 100000);
    assert_int_equal(cfg->redis_timeout_ms, 250);
    assert_int_equal(cfg->redis_lanes, 4);
    assert_int_equal(cfg->threads, 8);
    assert_int_equal(cfg->max_message_bytes, 512 * 1024);
    assert_int_equal(cfg->shutdown_grace_ms, 60000);
    assert_int_equal(cfg->stream_window, 128);
    assert_string_equal(cfg->auth_tokens_file, "/etc/tracseq-events/tokens");
    assert_true(cfg->allow_open_remote);
}

static void environment_overrides_every_default(void **state)
{
    char *argv[] = {"tracseq-events", NULL};
    tse_config cfg;

    for (size_t i = 0; i < NENV; i++)
        setenv(env_names[i], override_values[i], 1);
    load_ok(&cfg, argv);
    assert_overrides_applied(&cfg);
}

static void environment_lenient_and_json_are_read_too(void **state)
{
    char *argv[] = {"tracseq-events", NULL};
    tse_config cfg;

    setenv("VALIDATION_MODE", "lenient", 1);
    setenv("LOG_FORMAT", "json", 1);
    load_ok(&cfg, argv);
    assert_false(cfg.strict);
    assert_true(cfg.log_json);
}

/* ---- flags -------------------------------------------------------------- */

static const char *const flag_names[NENV] = {
    "redis-url",        "listen",
    "log-level",        "log-format",
    "validation-mode",  "dedup-window",
    "retention-age",    "retention-maxlen",
    "redis-timeout",    "redis-connections",
    "threads",          "max-message-bytes",
    "shutdown-grace",   "publish-stream-window",
    "auth-tokens-file", "allow-unauthenticated-remote",
};

static void flags_with_equals_set_every_setting(void **state)
{
    char buf[NENV][128];
    char *argv[NENV + 2];
    tse_config cfg;

    argv[0] = "tracseq-events";
    for (size_t i = 0; i < NENV; i++) {
        snprintf(buf[i], sizeof(buf[i]), "--%s=%s", flag_names[i], override_values[i]);
        argv[i + 1] = buf[i];
    }
    argv[NENV + 1] = NULL;
    load_ok(&cfg, argv);
    assert_overrides_applied(&cfg);
}

static void flags_with_separate_value_set_every_setting(void **state)
{
    char buf[NENV][64];
    char *argv[2 * NENV + 2];
    tse_config cfg;

    argv[0] = "tracseq-events";
    for (size_t i = 0; i < NENV; i++) {
        snprintf(buf[i], sizeof(buf[i]), "--%s", flag_names[i]);
        argv[2 * i + 1] = buf[i];
        argv[2 * i + 2] = (char *)override_values[i];
    }
    argv[2 * NENV + 1] = NULL;
    load_ok(&cfg, argv);
    assert_overrides_applied(&cfg);
}

static void flag_wins_over_environment(void **state)
{
    char *eq[] = {"tracseq-events", "--threads=4", "--log-format=json", NULL};
    char *sep[] = {"tracseq-events", "--threads", "5", NULL};
    tse_config cfg;

    setenv("GRPC_THREADS", "8", 1);
    setenv("LOG_FORMAT", "text", 1);
    load_ok(&cfg, eq);
    assert_int_equal(cfg.threads, 4);
    assert_true(cfg.log_json);
    load_ok(&cfg, sep);
    assert_int_equal(cfg.threads, 5);
    assert_false(cfg.log_json); /* no flag: the environment stands */
}

static void later_flag_wins_over_earlier(void **state)
{
    char *argv[] = {"tracseq-events", "--threads=3", "--threads", "7", NULL};
    tse_config cfg;

    load_ok(&cfg, argv);
    assert_int_equal(cfg.threads, 7);
}

static void value_after_first_equals_may_contain_equals(void **state)
{
    char *argv[] = {"tracseq-events", "--redis-url=redis://:pa=ss@h:1/0", NULL};
    tse_config cfg;

    load_ok(&cfg, argv);
    assert_string_equal(cfg.redis_url, "redis://:pa=ss@h:1/0");
}

static void level_warning_is_accepted_and_parses_for_the_logger(void **state)
{
    static const char *const levels[] = {"debug", "info", "warn", "warning", "error"};
    char buf[32];
    char *argv[] = {"tracseq-events", buf, NULL};
    tse_log_level level;
    tse_config cfg;

    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        snprintf(buf, sizeof(buf), "--log-level=%s", levels[i]);
        load_ok(&cfg, argv);
        assert_string_equal(cfg.log_level, levels[i]);
        /* Whatever config accepts, the logger must understand. */
        assert_true(tse_log_level_parse(cfg.log_level, &level));
    }
}

/* ---- sizes -------------------------------------------------------------- */

static void sizes_accept_bytes_and_binary_units(void **state)
{
    static const struct {
        const char *text;
        int64_t bytes;
    } ok[] = {
        {"4MiB", 4LL << 20}, {"65536", 65536},  {"2048B", 2048},       {"512KiB", 512 * 1024},
        {"64k", 64 * 1024},  {"2M", 2LL << 20}, {"64MiB", 64LL << 20}, {"1024", 1024},
    };
    char buf[64];
    char *argv[] = {"tracseq-events", buf, NULL};
    tse_config cfg;

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        snprintf(buf, sizeof(buf), "--max-message-bytes=%s", ok[i].text);
        load_ok(&cfg, argv);
        assert_int_equal(cfg.max_message_bytes, ok[i].bytes);
    }
}

/* ---- bad values --------------------------------------------------------- */

typedef struct bad_case {
    const char *env;
    const char *flag;
    const char *value;
    const char *reason; /* a phrase the message must contain */
} bad_case;

static const bad_case bad_cases[] = {
    {"DEDUP_WINDOW", "dedup-window", "5x", "not a duration"},
    {"DEDUP_WINDOW", "dedup-window", "0", "out of range"},
    {"DEDUP_WINDOW", "dedup-window", "8d", "out of range"},
    {"DEDUP_WINDOW", "dedup-window", "-5s", "not a duration"},
    {"GRPC_THREADS", "threads", "0", "out of range [1, 64]"},
    {"GRPC_THREADS", "threads", "65", "out of range [1, 64]"},
    {"GRPC_THREADS", "threads", "two", "not an integer"},
    {"GRPC_THREADS", "threads", "3.5", "not an integer"},
    {"GRPC_THREADS", "threads", "", "not an integer"},
    {"GRPC_THREADS", "threads", "99999999999999999999", "not an integer"},
    {"VALIDATION_MODE", "validation-mode", "sloppy", "lenient, strict"},
    {"VALIDATION_MODE", "validation-mode", "STRICT", "lenient, strict"},
    {"LOG_LEVEL", "log-level", "loud", "debug, info, warn, error"},
    {"LOG_LEVEL", "log-level", "", "non-empty"},
    {"LOG_FORMAT", "log-format", "xml", "json, text"},
    {"LOG_FORMAT", "log-format", "", "json, text"},
    {"MAX_MESSAGE_BYTES", "max-message-bytes", "4XB", "not a size"},
    {"MAX_MESSAGE_BYTES", "max-message-bytes", "4 MiB", "not a size"},
    {"MAX_MESSAGE_BYTES", "max-message-bytes", "512", "out of range"},
    {"MAX_MESSAGE_BYTES", "max-message-bytes", "65MiB", "out of range"},
    {"REDIS_URL", "redis-url", "", "non-empty"},
    {"GRPC_LISTEN", "listen", "", "non-empty"},
    {"REDIS_TIMEOUT", "redis-timeout", "5ms", "out of range [10, 60000]"},
    {"REDIS_TIMEOUT", "redis-timeout", "2min", "not a duration"},
    {"REDIS_CONNECTIONS", "redis-connections", "17", "out of range [1, 16]"},
    {"REDIS_MIN_REPLICAS", "redis-min-replicas", "-2", "out of range [-1, 16]"},
    {"REDIS_MIN_REPLICAS", "redis-min-replicas", "one", "not an integer"},
    {"RETENTION_AGE", "retention-age", "3651d", "out of range"},
    {"RETENTION_MAXLEN", "retention-maxlen", "-1", "out of range"},
    {"RETENTION_MAXLEN", "retention-maxlen", "10k", "not an integer"},
    {"SHUTDOWN_GRACE", "shutdown-grace", "11m", "out of range"},
    {"PUBLISH_STREAM_WINDOW", "publish-stream-window", "65537", "out of range [1, 65536]"},
    {"TLS_CLIENT_AUTH", "tls-client-auth", "sometimes", "not one of off|optional|require"},
    {"TLS_CLIENT_AUTH", "tls-client-auth", "", "not one of off|optional|require"},
};

#define NBAD (sizeof(bad_cases) / sizeof(bad_cases[0]))

/* The key, the flag, the value and the reason are all in the message. */
static void assert_names_bad_value(const bad_case *c, const tse_error *err)
{
    char flag[64];

    assert_int_equal(err->code, TSE_INVALID);
    if (strcmp(err->field, c->env) != 0)
        fail_msg("%s='%s': field \"%s\", want \"%s\"", c->env, c->value, err->field, c->env);
    snprintf(flag, sizeof(flag), "--%s", c->flag);
    assert_mentions(err->message, c->env);
    assert_mentions(err->message, flag);
    assert_mentions(err->message, c->value);
    assert_mentions(err->message, c->reason);
}

static void bad_environment_value_names_its_key(void **state)
{
    char *argv[] = {"tracseq-events", NULL};
    tse_config cfg;
    tse_error err;

    for (size_t i = 0; i < NBAD; i++) {
        setenv(bad_cases[i].env, bad_cases[i].value, 1);
        if (load(&cfg, argv, &err) != TSE_CONFIG_ERROR)
            fail_msg("%s='%s' was accepted", bad_cases[i].env, bad_cases[i].value);
        assert_names_bad_value(&bad_cases[i], &err);
        unsetenv(bad_cases[i].env);
    }
}

static void bad_flag_value_names_its_key_in_both_forms(void **state)
{
    char joined[128];
    char flag[64];
    char *eq[] = {"tracseq-events", joined, NULL};
    char *sep[] = {"tracseq-events", flag, NULL, NULL};
    tse_config cfg;
    tse_error err;

    for (size_t i = 0; i < NBAD; i++) {
        snprintf(joined, sizeof(joined), "--%s=%s", bad_cases[i].flag, bad_cases[i].value);
        if (load(&cfg, eq, &err) != TSE_CONFIG_ERROR)
            fail_msg("%s was accepted", joined);
        assert_names_bad_value(&bad_cases[i], &err);

        snprintf(flag, sizeof(flag), "--%s", bad_cases[i].flag);
        sep[2] = (char *)bad_cases[i].value;
        if (load(&cfg, sep, &err) != TSE_CONFIG_ERROR)
            fail_msg("%s '%s' was accepted", flag, bad_cases[i].value);
        assert_names_bad_value(&bad_cases[i], &err);
    }
}

/* Asserts the message gives length as the reason ("too long", "shorter"). */
static void assert_says_too_long(const char *message)
{
    if (strstr(message, "long") == NULL && strstr(message, "short") == NULL)
        fail_msg("message \"%s\" does not say the value is too long", message);
}

static void short_string_too_long_for_its_field_is_rejected(void **state)
{
    char *argv[] = {"tracseq-events", "--log-level", "debugdebugdebugdebug", NULL};
    tse_config cfg;
    tse_error err;

    assert_int_equal(load(&cfg, argv, &err), TSE_CONFIG_ERROR);
    assert_int_equal(err.code, TSE_INVALID);
    assert_string_equal(err.field, "LOG_LEVEL");
    assert_says_too_long(err.message);
}

/*
 * A value longer than the error message itself must not push the reason out
 * of the message: the reader has to learn why the value was refused.
 */
static void long_string_rejection_keeps_its_reason(void **state)
{
    char value[600];
    char *argv[] = {"tracseq-events", "--listen", value, NULL};
    tse_config cfg;
    tse_error err;

    memset(value, 'h', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';
    assert_int_equal(load(&cfg, argv, &err), TSE_CONFIG_ERROR);
    assert_int_equal(err.code, TSE_INVALID);
    assert_string_equal(err.field, "GRPC_LISTEN");
    assert_mentions(err.message, "GRPC_LISTEN");
    assert_says_too_long(err.message);
}

static void longest_string_that_fits_is_kept_whole(void **state)
{
    char value[sizeof(((tse_config *)0)->listen)];
    char *argv[] = {"tracseq-events", "--listen", value, NULL};
    tse_config cfg;

    memset(value, 'h', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';
    load_ok(&cfg, argv);
    assert_string_equal(cfg.listen, value);
}

static void bad_value_without_err_still_fails(void **state)
{
    char *argv[] = {"tracseq-events", "--threads=0", NULL};
    tse_config cfg;

    assert_int_equal(tse_config_load(&cfg, 2, argv, stdout, NULL), TSE_CONFIG_ERROR);
}

/* ---- bad command lines ------------------------------------------------- */

static void unknown_flag_is_named(void **state)
{
    char *argv[] = {"tracseq-events", "--nope", NULL};
    tse_config cfg;
    tse_error err;

    assert_int_equal(load(&cfg, argv, &err), TSE_CONFIG_ERROR);
    assert_int_equal(err.code, TSE_INVALID);
    assert_string_equal(err.field, "--nope");
    assert_mentions(err.message, "unknown option");
    assert_mentions(err.message, "--nope");
}

static void flag_prefix_is_not_a_flag(void **state)
{
    char *argv[] = {"tracseq-events", "--thread=2", NULL};
    tse_config cfg;
    tse_error err;

    assert_int_equal(load(&cfg, argv, &err), TSE_CONFIG_ERROR);
    assert_mentions(err.message, "unknown option");
}

static void flag_without_value_names_its_key(void **state)
{
    char *argv[] = {"tracseq-events", "--listen=:1", "--threads", NULL};
    tse_config cfg;
    tse_error err;

    assert_int_equal(load(&cfg, argv, &err), TSE_CONFIG_ERROR);
    assert_int_equal(err.code, TSE_INVALID);
    assert_string_equal(err.field, "GRPC_THREADS");
    assert_mentions(err.message, "--threads");
    assert_mentions(err.message, "needs a value");
}

static void positional_argument_is_rejected(void **state)
{
    char *argv[] = {"tracseq-events", "--threads=2", "extra", NULL};
    char *dash[] = {"tracseq-events", "-threads=2", NULL};
    tse_config cfg;
    tse_error err;

    assert_int_equal(load(&cfg, argv, &err), TSE_CONFIG_ERROR);
    assert_int_equal(err.code, TSE_INVALID);
    assert_string_equal(err.field, "extra");
    assert_mentions(err.message, "unexpected argument 'extra'");

    assert_int_equal(load(&cfg, dash, &err), TSE_CONFIG_ERROR);
    assert_string_equal(err.field, "-threads=2");
}

/* ---- --help and --version ---------------------------------------------- */

/* Runs tse_config_load with argv, capturing what it prints. */
static tse_config_outcome load_capture(char **argv, char **text)
{
    size_t len = 0;
    FILE *out = open_memstream(text, &len);
    tse_config cfg;
    tse_error err;
    int argc = 0;
    tse_config_outcome r;

    assert_non_null(out);
    while (argv[argc] != NULL)
        argc++;
    tse_error_clear(&err);
    r = tse_config_load(&cfg, argc, argv, out, &err);
    fclose(out);
    return r;
}

static void help_prints_every_flag_and_variable(void **state)
{
    char *argv[] = {"tracseq-events", "--threads=3", "--help", NULL};
    char *text = NULL;
    char flag[64];

    assert_int_equal(load_capture(argv, &text), TSE_CONFIG_HELP);
    assert_mentions(text, "usage: tracseq-events");
    for (size_t i = 0; i < NENV; i++) {
        snprintf(flag, sizeof(flag), "--%s", flag_names[i]);
        assert_mentions(text, flag);
        assert_mentions(text, env_names[i]);
    }
    assert_mentions(text, "--version");
    free(text);
}

static void short_h_prints_help_too(void **state)
{
    char *argv[] = {"tracseq-events", "-h", NULL};
    char *text = NULL;

    assert_int_equal(load_capture(argv, &text), TSE_CONFIG_HELP);
    assert_mentions(text, "usage: tracseq-events");
    free(text);
}

static void print_help_shows_defaults(void **state)
{
    size_t len = 0;
    char *text = NULL;
    FILE *out = open_memstream(&text, &len);

    assert_non_null(out);
    tse_config_print_help(out);
    fclose(out);
    assert_mentions(text, "redis://127.0.0.1:6379");
    assert_mentions(text, "4MiB");
    assert_mentions(text, "lenient");
    free(text);
}

static void version_prints_name_and_version(void **state)
{
    char *argv[] = {"tracseq-events", "--version", NULL};
    char *text = NULL;

    assert_int_equal(load_capture(argv, &text), TSE_CONFIG_HELP);
    assert_string_equal(text, "tracseq-events " TSE_VERSION "\n");
    free(text);
}

/*
 * --help must work whatever the environment holds: someone whose deployment
 * sets a bad value is exactly who needs the settings table.
 */
static void help_is_printed_even_when_environment_is_bad(void **state)
{
    char *argv[] = {"tracseq-events", "--help", NULL};
    char *text = NULL;

    tse_config_outcome r;
    bool printed;

    setenv("GRPC_THREADS", "0", 1);
    r = load_capture(argv, &text);
    printed = strstr(text, "usage: tracseq-events") != NULL;
    free(text);
    assert_int_equal(r, TSE_CONFIG_HELP);
    assert_true(printed);
}

/* ---- durations ---------------------------------------------------------- */

static void duration_units_are_applied(void **state)
{
    static const struct {
        const char *text;
        int64_t ms;
    } ok[] = {
        {"250ms", 250},
        {"30s", 30000},
        {"2m", 120000},
        {"1h", 3600000},
        {"7d", 604800000LL},
        {"1500", 1500},
        {"0", 0},
        {"0s", 0},
        {"007s", 7000},
        {"9223372036854775807", INT64_MAX},
        {"106751991167d", 106751991167LL * 86400000LL},
    };
    int64_t ms;

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        ms = -1;
        if (!tse_duration_parse(ok[i].text, &ms))
            fail_msg("\"%s\" was refused", ok[i].text);
        assert_int_equal(ms, ok[i].ms);
    }
}

static void bad_duration_is_refused_and_leaves_output(void **state)
{
    static const char *const bad[] = {
        "",   "5x",   "-1s",  "+5s", " 5s",  "5 s", "5S",   "s",
        "ms", "1.5s", "5ms ", "5sm", "5mss", "1w",  "0x10", "5dd",
    };
    int64_t ms = 42;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (tse_duration_parse(bad[i], &ms))
            fail_msg("\"%s\" was accepted as %lld ms", bad[i], (long long)ms);
        assert_int_equal(ms, 42);
    }
    assert_false(tse_duration_parse(NULL, &ms));
}

static void duration_overflow_is_refused(void **state)
{
    static const char *const bad[] = {
        "9223372036854775808",                            /* past INT64_MAX before any unit */
        "99999999999999999999ms", "9223372036854775807s", /* fits, times 1000 does not */
        "106751991168d",                                  /* the first day count that overflows */
        "2562047788015216h",                              /* likewise for hours */
    };
    int64_t ms = 42;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (tse_duration_parse(bad[i], &ms))
            fail_msg("\"%s\" was accepted as %lld ms", bad[i], (long long)ms);
        assert_int_equal(ms, 42);
    }
}

#define T(f) cmocka_unit_test_teardown(f, clean_env)

/* TLS: off by default; certificate and key go together; client
 * certificates need TLS and their CA; the mode reads as its index. */
static void tls_settings_make_sense_together_or_name_the_missing_key(void **state)
{
    static const struct {
        const char *args[4];
        const char *field; /* NULL: accepted */
    } cases[] = {
        {{"--tls-cert=/c.pem"}, "TLS_KEY"},
        {{"--tls-key=/k.pem"}, "TLS_CERT"},
        {{"--tls-client-auth=require"}, "TLS_CLIENT_AUTH"},
        {{"--tls-cert=/c.pem", "--tls-key=/k.pem", "--tls-client-auth=optional"}, "TLS_CLIENT_CA"},
        {{"--tls-cert=/c.pem", "--tls-key=/k.pem", "--tls-client-ca=/ca.pem"}, "TLS_CLIENT_AUTH"},
        {{"--tls-cert=/c.pem", "--tls-key=/k.pem"}, NULL},
        {{"--tls-cert=/c.pem", "--tls-key=/k.pem", "--tls-client-ca=/ca.pem",
          "--tls-client-auth=require"},
         NULL},
    };
    tse_config cfg;
    tse_error err;

    (void)state;
    load_ok(&cfg, (char *[]){"tracseq-events", NULL});
    assert_string_equal(cfg.tls_cert, "");
    assert_int_equal(cfg.tls_client_auth, TSE_TLS_CLIENT_OFF);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *argv[6] = {"tracseq-events"};
        for (int k = 0; k < 4 && cases[i].args[k]; k++)
            argv[k + 1] = (char *)cases[i].args[k];
        tse_error_clear(&err);
        if (cases[i].field == NULL) {
            load_ok(&cfg, argv);
            continue;
        }
        assert_int_equal(load(&cfg, argv, &err), TSE_CONFIG_ERROR);
        assert_string_equal(err.field, cases[i].field);
    }
    assert_int_equal(cfg.tls_client_auth, TSE_TLS_CLIENT_REQUIRE);
    assert_string_equal(cfg.tls_client_ca, "/ca.pem");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(defaults_fill_every_setting),
        T(defaults_need_no_argv_at_all),
        T(tls_settings_make_sense_together_or_name_the_missing_key),
        T(environment_overrides_every_default),
        T(environment_lenient_and_json_are_read_too),
        T(flags_with_equals_set_every_setting),
        T(flags_with_separate_value_set_every_setting),
        T(flag_wins_over_environment),
        T(later_flag_wins_over_earlier),
        T(value_after_first_equals_may_contain_equals),
        T(level_warning_is_accepted_and_parses_for_the_logger),
        T(sizes_accept_bytes_and_binary_units),
        T(bad_environment_value_names_its_key),
        T(bad_flag_value_names_its_key_in_both_forms),
        T(short_string_too_long_for_its_field_is_rejected),
        T(long_string_rejection_keeps_its_reason),
        T(longest_string_that_fits_is_kept_whole),
        T(bad_value_without_err_still_fails),
        T(unknown_flag_is_named),
        T(flag_prefix_is_not_a_flag),
        T(flag_without_value_names_its_key),
        T(positional_argument_is_rejected),
        T(help_prints_every_flag_and_variable),
        T(short_h_prints_help_too),
        T(print_help_shows_defaults),
        T(version_prints_name_and_version),
        T(help_is_printed_even_when_environment_is_bad),
        T(duration_units_are_applied),
        T(bad_duration_is_refused_and_leaves_output),
        T(duration_overflow_is_refused),
    };

    return cmocka_run_group_tests(tests, save_env, restore_env);
}

/*
 * test_common_settings_file.c - the settings file layer of the settings
 * engine (settings.c): precedence defaults < file < environment < flags;
 * which file is read (--config, then the program's config variable, then
 * the default path, which may be absent; "" reads none); the file's syntax
 * (comments, blanks, spaces, quotes); errors naming the file, the line and
 * the key for an unknown key, a bad value, a malformed or overlong line and
 * an unreadable file given explicitly; --help winning over a bad file; and
 * the event service's own table reading TRACSEQ_EVENTS_CONFIG.
 *
 * Each test writes its files in a fresh scratch folder and unsets the
 * variables it uses, before and after.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"
#include "config/settings.h"

/* A small program's settings: one of each kind that matters here. */
typedef struct demo {
    char addr[64];
    int threads;
    int64_t timeout_ms;
} demo;

static const tse_setting demo_table[] = {
    {"addr", "DEMO_ADDR", TSE_SETTING_STRING, offsetof(demo, addr), sizeof(((demo *)0)->addr), 0, 0,
     "default:1", "address"},
    {"threads", "DEMO_THREADS", TSE_SETTING_INT, offsetof(demo, threads), 0, 1, 64, "2", "threads"},
    {"timeout", "DEMO_TIMEOUT", TSE_SETTING_DURATION, offsetof(demo, timeout_ms), 0, 10, 60000,
     "2s", "timeout"},
};

static char dir[] = "/tmp/tse-settings-file-XXXXXX";
static char default_path[128];

static tse_settings demo_settings = {
    .table = demo_table,
    .n = sizeof(demo_table) / sizeof(demo_table[0]),
    .program = "demo",
    .about = "A demo program.",
    .config_env = "DEMO_CONFIG",
    .config_default = default_path,
};

static const char *const vars[] = {"DEMO_ADDR",    "DEMO_THREADS",          "DEMO_TIMEOUT",
                                   "DEMO_CONFIG",  "TRACSEQ_EVENTS_CONFIG", "REDIS_URL",
                                   "GRPC_THREADS", "SHUTDOWN_GRACE"};

static void unset_vars(void)
{
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
}

static int setup(void **state)
{
    strcpy(dir, "/tmp/tse-settings-file-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(default_path, sizeof(default_path), "%s/default.conf", dir);
    unset_vars();
    return 0;
}

static int teardown(void **state)
{
    char cmd[256];

    unset_vars();
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* Writes text to <dir>/<name>; returns its path (static buffer). */
static const char *write_file(const char *name, const char *text)
{
    static char path[160];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    return path;
}

static int argc_of(char **argv)
{
    int n = 0;

    while (argv[n] != NULL)
        n++;
    return n;
}

static tse_config_outcome load(demo *d, char **argv, tse_error *err)
{
    memset(d, 0, sizeof(*d));
    tse_error_clear(err);
    return tse_settings_load(&demo_settings, d, argc_of(argv), argv, stdout, err);
}

static void load_ok(demo *d, char **argv)
{
    tse_error err;

    if (load(d, argv, &err) != TSE_CONFIG_RUN)
        fail_msg("expected RUN, got field=\"%s\" message=\"%s\"", err.field, err.message);
}

/* Loads expecting an error whose message mentions each of what (NULL-ended). */
static void load_fails(char **argv, const char *field, ...)
{
    demo d;
    tse_error err;
    va_list ap;
    const char *what;

    assert_int_equal(load(&d, argv, &err), TSE_CONFIG_ERROR);
    if (field != NULL)
        assert_string_equal(err.field, field);
    va_start(ap, field);
    while ((what = va_arg(ap, const char *)) != NULL)
        if (strstr(err.message, what) == NULL)
            fail_msg("message \"%s\" does not mention \"%s\"", err.message, what);
    va_end(ap);
}

/* ---- precedence ------------------------------------------------------- */

static void file_value_beats_default(void **state)
{
    char *argv[] = {"demo", NULL};
    demo d;

    write_file("default.conf", "DEMO_ADDR=file:1\nDEMO_TIMEOUT=5s\n");
    load_ok(&d, argv);
    assert_string_equal(d.addr, "file:1");
    assert_int_equal(d.timeout_ms, 5000);
    assert_int_equal(d.threads, 2); /* not in the file: the default */
}

static void environment_beats_file(void **state)
{
    char *argv[] = {"demo", NULL};
    demo d;

    write_file("default.conf", "DEMO_ADDR=file:1\nDEMO_THREADS=3\n");
    setenv("DEMO_ADDR", "env:1", 1);
    load_ok(&d, argv);
    assert_string_equal(d.addr, "env:1");
    assert_int_equal(d.threads, 3);
}

static void flag_beats_environment_and_file(void **state)
{
    char *argv[] = {"demo", "--addr", "flag:1", "--threads=7", NULL};
    demo d;

    write_file("default.conf", "DEMO_ADDR=file:1\nDEMO_THREADS=3\nDEMO_TIMEOUT=9s\n");
    setenv("DEMO_ADDR", "env:1", 1);
    setenv("DEMO_THREADS", "4", 1);
    load_ok(&d, argv);
    assert_string_equal(d.addr, "flag:1");
    assert_int_equal(d.threads, 7);
    assert_int_equal(d.timeout_ms, 9000);
}

/* ---- which file ------------------------------------------------------- */

static void missing_default_file_is_no_error(void **state)
{
    char *argv[] = {"demo", NULL};
    demo d;

    load_ok(&d, argv);
    assert_string_equal(d.addr, "default:1");
}

static void config_variable_names_the_file(void **state)
{
    char *argv[] = {"demo", NULL};
    demo d;

    write_file("default.conf", "DEMO_ADDR=default-file:1\n");
    setenv("DEMO_CONFIG", write_file("other.conf", "DEMO_ADDR=other:1\n"), 1);
    load_ok(&d, argv);
    assert_string_equal(d.addr, "other:1");
}

static void config_flag_beats_config_variable(void **state)
{
    char path[160];
    demo d;

    snprintf(path, sizeof(path), "%s", write_file("flag.conf", "DEMO_ADDR=flag-file:1\n"));
    setenv("DEMO_CONFIG", write_file("env.conf", "DEMO_ADDR=env-file:1\n"), 1);
    {
        char *argv[] = {"demo", "--config", path, NULL};
        load_ok(&d, argv);
        assert_string_equal(d.addr, "flag-file:1");
    }
    {
        char arg[200];
        snprintf(arg, sizeof(arg), "--config=%s", path);
        char *argv[] = {"demo", "--threads", "5", arg, NULL};
        load_ok(&d, argv);
        assert_string_equal(d.addr, "flag-file:1");
        assert_int_equal(d.threads, 5);
    }
}

static void empty_config_reads_no_file(void **state)
{
    char *argv[] = {"demo", NULL};
    char *argv_flag[] = {"demo", "--config=", NULL};
    demo d;

    write_file("default.conf", "DEMO_ADDR=default-file:1\n");
    setenv("DEMO_CONFIG", "", 1);
    load_ok(&d, argv);
    assert_string_equal(d.addr, "default:1");
    unsetenv("DEMO_CONFIG");
    load_ok(&d, argv_flag);
    assert_string_equal(d.addr, "default:1");
}

static void missing_given_file_is_an_error(void **state)
{
    char path[160];

    snprintf(path, sizeof(path), "%s/nowhere.conf", dir);
    setenv("DEMO_CONFIG", path, 1);
    {
        char *argv[] = {"demo", NULL};
        load_fails(argv, "DEMO_CONFIG", path, "No such file", NULL);
    }
    unsetenv("DEMO_CONFIG");
    {
        char *argv[] = {"demo", "--config", path, NULL};
        load_fails(argv, "DEMO_CONFIG", path, NULL);
    }
    {
        char *argv[] = {"demo", "--config", NULL};
        load_fails(argv, "DEMO_CONFIG", "--config needs a value", NULL);
    }
}

static void unreadable_default_file_is_an_error(void **state)
{
    char *argv[] = {"demo", NULL};

    /* A folder where the file should be: present, but not readable as one. */
    assert_int_equal(mkdir(default_path, 0700), 0);
    load_fails(argv, "DEMO_CONFIG", default_path, NULL);
    assert_int_equal(rmdir(default_path), 0);
}

/* ---- syntax ------------------------------------------------------------ */

static void comments_blanks_spaces_and_quotes(void **state)
{
    char *argv[] = {"demo", NULL};
    demo d;

    write_file("default.conf", "# TracSeq demo\n"
                               "\n"
                               "   # indented comment\n"
                               "  DEMO_ADDR =  \"quoted # not a comment\"  \n"
                               "DEMO_THREADS='9'\n"
                               "\tDEMO_TIMEOUT=250ms"); /* no final newline */
    load_ok(&d, argv);
    assert_string_equal(d.addr, "quoted # not a comment");
    assert_int_equal(d.threads, 9);
    assert_int_equal(d.timeout_ms, 250);
}

static void later_line_wins(void **state)
{
    char *argv[] = {"demo", NULL};
    demo d;

    write_file("default.conf", "DEMO_THREADS=3\nDEMO_THREADS=4\n");
    load_ok(&d, argv);
    assert_int_equal(d.threads, 4);
}

/* ---- errors ------------------------------------------------------------ */

static void unknown_key_names_file_line_and_key(void **state)
{
    char *argv[] = {"demo", NULL};

    write_file("default.conf", "DEMO_ADDR=x:1\n# fine\nDEMO_THREDS=3\n");
    load_fails(argv, "DEMO_THREDS", ":3:", "unknown setting 'DEMO_THREDS'", NULL);
    assert_non_null(strstr(default_path, dir));
}

static void bad_value_names_file_line_and_key(void **state)
{
    char *argv[] = {"demo", NULL};
    char where[200];

    write_file("default.conf", "DEMO_THREADS=3\nDEMO_TIMEOUT=soon\n");
    snprintf(where, sizeof(where), "%s:2:", default_path);
    load_fails(argv, "DEMO_TIMEOUT", where, "invalid DEMO_TIMEOUT", "'soon'", NULL);
    write_file("default.conf", "DEMO_THREADS=65\n");
    load_fails(argv, "DEMO_THREADS", ":1:", "out of range", NULL);
    write_file("default.conf", "DEMO_ADDR=\n");
    load_fails(argv, "DEMO_ADDR", ":1:", "must be non-empty", NULL);
}

static void malformed_and_overlong_lines_are_errors(void **state)
{
    char *argv[] = {"demo", NULL};
    char *big = malloc(8192);

    write_file("default.conf", "DEMO_ADDR=x:1\njust words\n");
    load_fails(argv, NULL, ":2:", "expected KEY=value", NULL);
    assert_non_null(big);
    memset(big, 'a', 8191);
    big[8191] = '\0';
    memcpy(big, "DEMO_ADDR=", 10);
    write_file("default.conf", big);
    free(big);
    load_fails(argv, NULL, ":1:", "line longer than", NULL);
}

static void an_error_in_the_file_leaves_the_environment_unread(void **state)
{
    char *argv[] = {"demo", NULL};

    /* The environment would have the right value, but a broken file is
     * reported rather than silently overridden. */
    write_file("default.conf", "DEMO_THREADS=many\n");
    setenv("DEMO_THREADS", "3", 1);
    load_fails(argv, "DEMO_THREADS", ":1:", NULL);
}

static void help_wins_over_a_bad_file(void **state)
{
    char *argv[] = {"demo", "--help", NULL};
    demo d;
    tse_error err;
    char buf[4096] = "";
    FILE *out = fmemopen(buf, sizeof(buf) - 1, "w");

    write_file("default.conf", "NOPE=1\n");
    assert_non_null(out);
    memset(&d, 0, sizeof(d));
    assert_int_equal(tse_settings_load(&demo_settings, &d, 2, argv, out, &err), TSE_CONFIG_HELP);
    fclose(out);
    assert_non_null(strstr(buf, "--config"));
    assert_non_null(strstr(buf, "DEMO_CONFIG"));
    assert_non_null(strstr(buf, default_path));
}

/* ---- the event service's table ----------------------------------------- */

static void service_reads_its_settings_file(void **state)
{
    char *argv[] = {"tracseq-events", "--threads=3", NULL};
    tse_config cfg;
    tse_error err;

    setenv("TRACSEQ_EVENTS_CONFIG",
           write_file("svc.conf", "REDIS_URL=redis://10.0.0.9:6390\nGRPC_THREADS=5\n"
                                  "SHUTDOWN_GRACE=3s\n"),
           1);
    tse_error_clear(&err);
    assert_int_equal(tse_config_load(&cfg, 2, argv, stdout, &err), TSE_CONFIG_RUN);
    assert_string_equal(cfg.redis_url, "redis://10.0.0.9:6390");
    assert_int_equal(cfg.threads, 3); /* the flag wins */
    assert_int_equal(cfg.shutdown_grace_ms, 3000);
    /* Another program's key is unknown here. */
    write_file("svc.conf", "EVENT_SERVICE_ADDR=127.0.0.1:1\n");
    assert_int_equal(tse_config_load(&cfg, 1, argv, stdout, &err), TSE_CONFIG_ERROR);
    assert_string_equal(err.field, "EVENT_SERVICE_ADDR");
}

static void service_default_file_is_in_the_config_dir(void **state)
{
    char *argv[] = {"tracseq-events", "--help", NULL};
    tse_config cfg;
    tse_error err;
    char buf[16384] = "";
    FILE *out = fmemopen(buf, sizeof(buf) - 1, "w");

    assert_non_null(out);
    assert_int_equal(tse_config_load(&cfg, 2, argv, out, &err), TSE_CONFIG_HELP);
    fclose(out);
    assert_non_null(strstr(buf, "/etc/tracseq-events/tracseq-events.conf"));
    assert_non_null(strstr(buf, "TRACSEQ_EVENTS_CONFIG"));
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(file_value_beats_default),
        T(environment_beats_file),
        T(flag_beats_environment_and_file),
        T(missing_default_file_is_no_error),
        T(config_variable_names_the_file),
        T(config_flag_beats_config_variable),
        T(empty_config_reads_no_file),
        T(missing_given_file_is_an_error),
        T(unreadable_default_file_is_an_error),
        T(comments_blanks_spaces_and_quotes),
        T(later_line_wins),
        T(unknown_key_names_file_line_and_key),
        T(bad_value_names_file_line_and_key),
        T(malformed_and_overlong_lines_are_errors),
        T(an_error_in_the_file_leaves_the_environment_unread),
        T(help_wins_over_a_bad_file),
        T(service_reads_its_settings_file),
        T(service_default_file_is_in_the_config_dir),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

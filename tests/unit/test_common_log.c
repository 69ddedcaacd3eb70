/*
 * test_common_log.c - the structured logger: every JSON line is one flat
 * object with ts, level and msg first, values are escaped so the line still
 * parses, levels below the minimum are dropped, request lines carry method,
 * status, latency_us and correlation_id at the level their status calls for,
 * the text format, level names, and lines from several threads staying whole.
 *
 * The logger writes to file descriptor 2, so each test points fd 2 at a
 * temporary file while it logs and puts it back before asserting (cmocka
 * reports failures on stderr). Lines are checked with a small parser for the
 * flat string-to-string objects the logger emits; it rejects anything that
 * is not valid JSON of that shape.
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

#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "obs/log.h"

#define LINE_BOUND 4096 /* log.c builds a line in this many bytes */

/* ---- capturing fd 2 ----------------------------------------------------- */

typedef struct capture {
    FILE *file;
    int saved_fd;
} capture;

static void capture_begin(capture *c)
{
    c->file = tmpfile();
    assert_non_null(c->file);
    c->saved_fd = dup(STDERR_FILENO);
    assert_true(c->saved_fd >= 0);
    assert_true(dup2(fileno(c->file), STDERR_FILENO) >= 0);
}

/* Restores fd 2 and returns what was written (caller frees). */
static char *capture_end(capture *c)
{
    long size;
    char *text;

    dup2(c->saved_fd, STDERR_FILENO);
    close(c->saved_fd);
    /* The logger wrote through the descriptor, so the stream's end is the file's. */
    assert_int_equal(fseek(c->file, 0, SEEK_END), 0);
    size = ftell(c->file);
    assert_true(size >= 0);
    text = calloc(1, (size_t)size + 1);
    assert_non_null(text);
    rewind(c->file);
    assert_int_equal(fread(text, 1, (size_t)size, c->file), (size_t)size);
    fclose(c->file);
    return text;
}

static size_t count_lines(const char *text)
{
    size_t n = 0;

    for (; *text; text++)
        n += *text == '\n';
    return n;
}

/* ---- a parser for flat JSON objects of strings -------------------------- */

#define MAX_KEYS 16

typedef struct flat {
    size_t n;
    char key[MAX_KEYS][64];
    char value[MAX_KEYS][LINE_BOUND];
} flat;

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes one escape after the backslash at *p; false if invalid. */
static bool parse_escape(const char **p, const char *end, char *out)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *hit;
    int code = 0;

    if (*p >= end)
        return false;
    if (**p != 'u') {
        hit = strchr(from, **p);
        if (**p == '\0' || hit == NULL)
            return false;
        *out = to[hit - from];
        (*p)++;
        return true;
    }
    if (end - *p < 5)
        return false;
    for (int i = 1; i <= 4; i++) {
        int d = hex_digit((*p)[i]);
        if (d < 0)
            return false;
        code = code * 16 + d;
    }
    *out = code < 0x80 ? (char)code : '?'; /* the logger only escapes ASCII */
    *p += 5;
    return true;
}

/* Parses a JSON string at *p into out (size bytes); false if invalid. */
static bool parse_string(const char **p, const char *end, char *out, size_t size)
{
    size_t n = 0;

    if (*p >= end || **p != '"')
        return false;
    for ((*p)++; *p < end && **p != '"';) {
        unsigned char c = (unsigned char)**p;
        char decoded = (char)c;
        if (c < 0x20)
            return false;
        (*p)++;
        if (c == '\\' && !parse_escape(p, end, &decoded))
            return false;
        if (n + 1 >= size)
            return false;
        out[n++] = decoded;
    }
    if (*p >= end)
        return false; /* unterminated */
    (*p)++;
    out[n] = '\0';
    return true;
}

/* Parses exactly one line "{...}\n" of string members into f. */
static bool parse_flat_line(const char *line, size_t len, flat *f)
{
    const char *p = line, *end = line + len;

    f->n = 0;
    if (len < 3 || *p++ != '{' || line[len - 1] != '\n' || line[len - 2] != '}')
        return false;
    end = line + len - 2; /* the members end before "}\n" */
    while (p < end) {
        if (f->n == MAX_KEYS)
            return false;
        if (!parse_string(&p, end, f->key[f->n], sizeof(f->key[0])))
            return false;
        if (p >= end || *p++ != ':')
            return false;
        if (p < end && (*p == '-' || (*p >= '0' && *p <= '9'))) {
            /* A number (latency_us): kept as its text. */
            size_t n = 0;
            while (p < end && n + 1 < sizeof(f->value[0]) &&
                   (*p == '-' || (*p >= '0' && *p <= '9')))
                f->value[f->n][n++] = *p++;
            f->value[f->n][n] = '\0';
        } else if (!parse_string(&p, end, f->value[f->n], sizeof(f->value[0]))) {
            return false;
        }
        f->n++;
        if (p < end && *p++ != ',')
            return false;
        if (p == end && p[-1] == ',')
            return false;
    }
    return true;
}

static flat *flat_new(void)
{
    flat *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    return f;
}

/* Parses text, which must be exactly one JSON line; the caller frees. */
static flat *parse_one_line(const char *text)
{
    flat *f = flat_new();

    assert_int_equal(count_lines(text), 1);
    if (!parse_flat_line(text, strlen(text), f))
        fail_msg("not one flat JSON object: %s", text);
    return f;
}

/* The value of key, or NULL. */
static const char *get(const flat *f, const char *key)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->key[i], key) == 0)
            return f->value[i];
    return NULL;
}

/* Asserts "ts" is RFC 3339 UTC with microseconds and within a minute of now. */
static void assert_timestamp_is_now(const char *ts)
{
    struct tm tm = {0};
    char *rest;
    time_t t;

    assert_non_null(ts);
    assert_int_equal(strlen(ts), strlen("2024-06-18T10:31:02.123456Z"));
    rest = strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm);
    assert_non_null(rest);
    assert_true(rest[0] == '.' && rest[7] == 'Z');
    for (int i = 1; i <= 6; i++)
        assert_true(rest[i] >= '0' && rest[i] <= '9');
    t = timegm(&tm);
    assert_true(llabs((long long)(t - time(NULL))) <= 60);
}

/* ---- JSON lines --------------------------------------------------------- */

static void json_line_has_ts_level_msg_then_keys(void **state)
{
    const char *tail = "\",\"level\":\"warn\",\"msg\":\"redis unreachable\","
                       "\"error\":\"timeout\",\"attempt\":\"3\"}\n";
    capture c;
    char *text;
    flat *f;

    tse_log_setup(TSE_LOG_INFO, true);
    capture_begin(&c);
    tse_log(TSE_LOG_WARN, "redis unreachable",
            (const char *[]){"error", "timeout", "attempt", "3", NULL});
    text = capture_end(&c);

    assert_memory_equal(text, "{\"ts\":\"", 7);
    assert_string_equal(text + 7 + strlen("2024-06-18T10:31:02.123456Z"), tail);
    f = parse_one_line(text);
    assert_int_equal(f->n, 5);
    assert_string_equal(f->key[0], "ts");
    assert_string_equal(f->key[1], "level");
    assert_string_equal(f->key[2], "msg");
    assert_timestamp_is_now(get(f, "ts"));
    free(f);
    free(text);
}

static void each_level_is_named_in_the_line(void **state)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    capture c;
    char *text;
    flat *f;

    tse_log_setup(TSE_LOG_DEBUG, true);
    for (int level = TSE_LOG_DEBUG; level <= TSE_LOG_ERROR; level++) {
        capture_begin(&c);
        tse_log((tse_log_level)level, "m", NULL);
        text = capture_end(&c);
        f = parse_one_line(text);
        assert_string_equal(get(f, "level"), names[level]);
        assert_string_equal(get(f, "msg"), "m");
        free(f);
        free(text);
    }
}

static void odd_kv_list_drops_the_dangling_key(void **state)
{
    capture c;
    char *text;
    flat *f;

    tse_log_setup(TSE_LOG_INFO, true);
    capture_begin(&c);
    tse_log(TSE_LOG_INFO, "m", (const char *[]){"a", "1", "dangling", NULL});
    text = capture_end(&c);
    f = parse_one_line(text);
    assert_int_equal(f->n, 4);
    assert_string_equal(get(f, "a"), "1");
    assert_null(get(f, "dangling"));
    free(f);
    free(text);
}

static void special_characters_are_escaped(void **state)
{
    const char *msg = "say \"hi\"\\ now\nnext\ttab\rcr\x01\x1f end";
    const char *value = "line1\nline2 \"q\" back\\slash \x02\x7f";
    const char *key = "we\"ird\nkey";
    capture c;
    char *text;
    flat *f;

    tse_log_setup(TSE_LOG_INFO, true);
    capture_begin(&c);
    tse_log(TSE_LOG_ERROR, msg, (const char *[]){key, value, NULL});
    text = capture_end(&c);
    f = parse_one_line(text); /* one line: the newlines were escaped */
    assert_string_equal(get(f, "msg"), msg);
    assert_string_equal(get(f, key), value);
    assert_non_null(strstr(text, "\\u0001"));
    free(f);
    free(text);
}

static void logf_formats_the_message(void **state)
{
    capture c;
    char *text;
    flat *f;

    tse_log_setup(TSE_LOG_INFO, true);
    capture_begin(&c);
    tse_logf(TSE_LOG_INFO, "listening on %s with %d threads", "0.0.0.0:50051", 2);
    text = capture_end(&c);
    f = parse_one_line(text);
    assert_int_equal(f->n, 3);
    assert_string_equal(get(f, "msg"), "listening on 0.0.0.0:50051 with 2 threads");
    free(f);
    free(text);
}

/*
 * A value too long for one line is cut, but the line must still be one
 * complete JSON object: a consumer parsing line by line must not choke on
 * an unterminated string or a half escape.
 */
static void overlong_line_is_still_one_json_object(void **state)
{
    static const char fills[] = {'a', '\n', '\x01', '"'};
    char *value = malloc(3 * LINE_BOUND);
    char problem[128] = "";
    flat *f = flat_new();
    capture c;
    char *text;

    assert_non_null(value);
    tse_log_setup(TSE_LOG_INFO, true);
    for (size_t k = 0; k < sizeof(fills) && problem[0] == '\0'; k++) {
        memset(value, fills[k], 3 * LINE_BOUND - 1);
        value[3 * LINE_BOUND - 1] = '\0';
        capture_begin(&c);
        tse_log(TSE_LOG_WARN, "big", (const char *[]){"before", "x", "payload", value, NULL});
        text = capture_end(&c);
        /* Note the first problem and free before failing, so ASan sees no leak. */
        if (count_lines(text) != 1 || strlen(text) > LINE_BOUND)
            snprintf(problem, sizeof(problem), "fill 0x%02x: %zu lines, %zu bytes",
                     (unsigned)fills[k], count_lines(text), strlen(text));
        else if (!parse_flat_line(text, strlen(text), f))
            snprintf(problem, sizeof(problem), "fill 0x%02x: not valid JSON, ends \"%s\"",
                     (unsigned)fills[k], text + strlen(text) - 16);
        else if (strcmp(get(f, "msg"), "big") != 0 || strcmp(get(f, "before"), "x") != 0)
            snprintf(problem, sizeof(problem), "fill 0x%02x: msg or before lost",
                     (unsigned)fills[k]);
        free(text);
    }
    free(f);
    free(value);
    if (problem[0] != '\0')
        fail_msg("overlong line: %s", problem);
}

/* ---- levels ------------------------------------------------------------- */

static void lines_below_the_minimum_level_are_dropped(void **state)
{
    capture c;
    char *text;

    tse_log_setup(TSE_LOG_WARN, true);
    assert_false(tse_log_enabled(TSE_LOG_DEBUG));
    assert_false(tse_log_enabled(TSE_LOG_INFO));
    assert_true(tse_log_enabled(TSE_LOG_WARN));
    assert_true(tse_log_enabled(TSE_LOG_ERROR));
    capture_begin(&c);
    tse_log(TSE_LOG_DEBUG, "dropped-debug", NULL);
    tse_log(TSE_LOG_INFO, "dropped-info", NULL);
    tse_logf(TSE_LOG_INFO, "dropped-%s", "logf");
    tse_log(TSE_LOG_WARN, "kept-warn", NULL);
    tse_logf(TSE_LOG_ERROR, "kept-%s", "error");
    text = capture_end(&c);
    assert_int_equal(count_lines(text), 2);
    assert_null(strstr(text, "dropped"));
    assert_non_null(strstr(text, "\"msg\":\"kept-warn\""));
    assert_non_null(strstr(text, "\"msg\":\"kept-error\""));
    free(text);
}

static void debug_minimum_writes_everything_error_minimum_only_errors(void **state)
{
    capture c;
    char *text;

    tse_log_setup(TSE_LOG_DEBUG, true);
    capture_begin(&c);
    for (int level = TSE_LOG_DEBUG; level <= TSE_LOG_ERROR; level++)
        tse_log((tse_log_level)level, "m", NULL);
    text = capture_end(&c);
    assert_int_equal(count_lines(text), 4);
    free(text);

    tse_log_setup(TSE_LOG_ERROR, true);
    capture_begin(&c);
    for (int level = TSE_LOG_DEBUG; level <= TSE_LOG_ERROR; level++)
        tse_log((tse_log_level)level, "m", NULL);
    text = capture_end(&c);
    assert_int_equal(count_lines(text), 1);
    assert_non_null(strstr(text, "\"level\":\"error\""));
    free(text);
}

static void level_names_parse(void **state)
{
    static const struct {
        const char *name;
        tse_log_level level;
    } ok[] = {
        {"debug", TSE_LOG_DEBUG},  {"info", TSE_LOG_INFO},   {"warn", TSE_LOG_WARN},
        {"warning", TSE_LOG_WARN}, {"error", TSE_LOG_ERROR},
    };
    static const char *const bad[] = {"loud", "", "WARN", "Info", "err", "debug ", "trace"};
    tse_log_level level;

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        level = (tse_log_level)-1;
        assert_true(tse_log_level_parse(ok[i].name, &level));
        assert_int_equal(level, ok[i].level);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        level = TSE_LOG_ERROR;
        if (tse_log_level_parse(bad[i], &level))
            fail_msg("\"%s\" was accepted", bad[i]);
        assert_int_equal(level, TSE_LOG_ERROR);
    }
}

/* ---- request lines ------------------------------------------------------ */

static void request_line_carries_method_status_latency_and_correlation(void **state)
{
    capture c;
    char *text;
    flat *f;

    tse_log_setup(TSE_LOG_INFO, true);
    capture_begin(&c);
    tse_log_request("/tracseq.events.v1.EventService/Publish", "OK", 1234, "corr-42",
                    (const char *[]){"event_type", "sample.created", NULL});
    text = capture_end(&c);
    f = parse_one_line(text);
    assert_string_equal(get(f, "level"), "info");
    assert_string_equal(get(f, "msg"), "request");
    assert_string_equal(get(f, "method"), "/tracseq.events.v1.EventService/Publish");
    assert_string_equal(get(f, "status"), "OK");
    assert_string_equal(get(f, "latency_us"), "1234");
    assert_string_equal(get(f, "correlation_id"), "corr-42");
    assert_string_equal(get(f, "event_type"), "sample.created");
    assert_timestamp_is_now(get(f, "ts"));
    free(f);
    free(text);
}

static void request_level_follows_status(void **state)
{
    static const struct {
        const char *status;
        const char *level;
    } cases[] = {
        {"OK", "info"},
        {"INVALID_ARGUMENT", "warn"},
        {"NOT_FOUND", "warn"},
        {"ALREADY_EXISTS", "warn"},
        {"RESOURCE_EXHAUSTED", "warn"},
        {"DEADLINE_EXCEEDED", "warn"},
        {"UNAVAILABLE", "error"},
        {"INTERNAL", "error"},
    };
    capture c;
    char *text;
    flat *f;

    tse_log_setup(TSE_LOG_DEBUG, true);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        capture_begin(&c);
        tse_log_request("/m", cases[i].status, 7, "c", NULL);
        text = capture_end(&c);
        f = parse_one_line(text);
        assert_string_equal(get(f, "status"), cases[i].status);
        if (strcmp(get(f, "level"), cases[i].level) != 0)
            fail_msg("status %s logged at %s, want %s", cases[i].status, get(f, "level"),
                     cases[i].level);
        free(f);
        free(text);
    }
}

static void request_without_correlation_id_omits_the_key(void **state)
{
    capture c;
    char *text;
    flat *f;

    tse_log_setup(TSE_LOG_INFO, true);
    capture_begin(&c);
    tse_log_request("/m", "OK", 0, NULL, NULL);
    tse_log_request("/m", "OK", 0, "", NULL);
    text = capture_end(&c);
    assert_int_equal(count_lines(text), 2);
    assert_null(strstr(text, "correlation_id"));
    f = flat_new();
    assert_true(parse_flat_line(text, (size_t)(strchr(text, '\n') - text) + 1, f));
    assert_string_equal(get(f, "status"), "OK");
    assert_string_equal(get(f, "latency_us"), "0");
    free(f);
    free(text);
}

static void request_below_minimum_level_is_dropped(void **state)
{
    capture c;
    char *text;

    tse_log_setup(TSE_LOG_WARN, true);
    capture_begin(&c);
    tse_log_request("/ok", "OK", 1, "c1", NULL);
    tse_log_request("/bad", "INVALID_ARGUMENT", 2, "c2", NULL);
    text = capture_end(&c);
    assert_int_equal(count_lines(text), 1);
    assert_null(strstr(text, "\"/ok\""));
    assert_non_null(strstr(text, "\"method\":\"/bad\""));
    free(text);
}

static void request_correlation_id_is_escaped(void **state)
{
    const char *evil = "abc\"},\"level\":\"error\n{\"x\":\"";
    capture c;
    char *text;
    flat *f;

    tse_log_setup(TSE_LOG_INFO, true);
    capture_begin(&c);
    tse_log_request("/m", "OK", 5, evil, NULL);
    text = capture_end(&c);
    f = parse_one_line(text);
    assert_string_equal(get(f, "correlation_id"), evil);
    assert_string_equal(get(f, "level"), "info");
    free(f);
    free(text);
}

/* ---- text format -------------------------------------------------------- */

static void text_line_is_ts_level_msg_then_key_values(void **state)
{
    capture c;
    char *text;
    size_t ts_len = strlen("2024-06-18T10:31:02.123456Z");
    char ts[64];

    tse_log_setup(TSE_LOG_INFO, false);
    capture_begin(&c);
    tse_log(TSE_LOG_WARN, "redis unreachable", (const char *[]){"error", "timeout", NULL});
    text = capture_end(&c);
    tse_log_setup(TSE_LOG_INFO, true);

    assert_int_equal(count_lines(text), 1);
    assert_true(strlen(text) > ts_len);
    memcpy(ts, text, ts_len);
    ts[ts_len] = '\0';
    assert_timestamp_is_now(ts);
    assert_string_equal(text + ts_len, " warn redis unreachable error=timeout\n");
    free(text);
}

static void text_request_line_has_the_request_keys(void **state)
{
    capture c;
    char *text;

    tse_log_setup(TSE_LOG_INFO, false);
    capture_begin(&c);
    tse_log_request("/m", "INTERNAL", 99, "cid", NULL);
    text = capture_end(&c);
    tse_log_setup(TSE_LOG_INFO, true);
    assert_non_null(strstr(
        text, " error request method=/m status=INTERNAL latency_us=99 correlation_id=cid\n"));
    free(text);
}

/*
 * Values such as a correlation id come from clients; in the text format a
 * newline in one must not start a second, forged log line.
 */
static void text_line_stays_one_line_when_values_hold_newlines(void **state)
{
    capture c;
    char *text;
    size_t lines;

    tse_log_setup(TSE_LOG_INFO, false);
    capture_begin(&c);
    tse_log_request("/m", "OK", 1, "x\n2024-01-01T00:00:00.000000Z error forged", NULL);
    text = capture_end(&c);
    tse_log_setup(TSE_LOG_INFO, true);
    lines = count_lines(text);
    free(text);
    if (lines != 1)
        fail_msg("one text log call wrote %zu lines", lines);
}

/* ---- threads ------------------------------------------------------------ */

#define NTHREADS   4
#define PER_THREAD 200

static void *log_many(void *arg)
{
    char id[16];
    char pad[200];

    snprintf(id, sizeof(id), "t%d", *(int *)arg);
    memset(pad, 'p', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    for (int i = 0; i < PER_THREAD; i++)
        tse_log(TSE_LOG_INFO, "burst", (const char *[]){"thread", id, "pad", pad, NULL});
    return NULL;
}

static void lines_from_threads_never_interleave(void **state)
{
    pthread_t t[NTHREADS];
    int ids[NTHREADS];
    capture c;
    char *text, *line, *next;
    const char *id;
    size_t per[NTHREADS] = {0};
    flat *f = flat_new();

    tse_log_setup(TSE_LOG_INFO, true);
    capture_begin(&c);
    for (int i = 0; i < NTHREADS; i++) {
        ids[i] = i;
        if (pthread_create(&t[i], NULL, log_many, &ids[i]) != 0)
            abort();
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    text = capture_end(&c);

    assert_int_equal(count_lines(text), NTHREADS * PER_THREAD);
    for (line = text; *line; line = next) {
        next = strchr(line, '\n') + 1;
        if (!parse_flat_line(line, (size_t)(next - line), f))
            fail_msg("broken line: %.*s", (int)(next - line), line);
        id = get(f, "thread");
        assert_non_null(id);
        assert_true(id[0] == 't' && id[1] >= '0' && id[1] < '0' + NTHREADS && id[2] == '\0');
        per[id[1] - '0']++;
    }
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(per[i], PER_THREAD);
    free(f);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_line_has_ts_level_msg_then_keys),
        cmocka_unit_test(each_level_is_named_in_the_line),
        cmocka_unit_test(odd_kv_list_drops_the_dangling_key),
        cmocka_unit_test(special_characters_are_escaped),
        cmocka_unit_test(logf_formats_the_message),
        cmocka_unit_test(overlong_line_is_still_one_json_object),
        cmocka_unit_test(lines_below_the_minimum_level_are_dropped),
        cmocka_unit_test(debug_minimum_writes_everything_error_minimum_only_errors),
        cmocka_unit_test(level_names_parse),
        cmocka_unit_test(request_line_carries_method_status_latency_and_correlation),
        cmocka_unit_test(request_level_follows_status),
        cmocka_unit_test(request_without_correlation_id_omits_the_key),
        cmocka_unit_test(request_below_minimum_level_is_dropped),
        cmocka_unit_test(request_correlation_id_is_escaped),
        cmocka_unit_test(text_line_is_ts_level_msg_then_key_values),
        cmocka_unit_test(text_request_line_has_the_request_keys),
        cmocka_unit_test(text_line_stays_one_line_when_values_hold_newlines),
        cmocka_unit_test(lines_from_threads_never_interleave),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * log.c - structured JSON-lines logging; see log.h.
 *
 * A line is built in a fixed stack buffer (LINE_MAX bytes, longer values are
 * truncated) and written with a single write(2), which the kernel keeps
 * whole for pipes and terminals up to PIPE_BUF and in practice for files.
 */
#include "obs/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 4096

/* Write-once settings (see log.h). */
static tse_log_level min_level = TSE_LOG_INFO;
static bool json_format = true;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void tse_log_setup(tse_log_level level, bool json)
{
    min_level = level;
    json_format = json;
}

bool tse_log_enabled(tse_log_level level)
{
    return level >= min_level;
}

bool tse_log_level_parse(const char *s, tse_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (tse_log_level)i;
            return true;
        }
    }
    if (strcmp(s, "warning") == 0) {
        *out = TSE_LOG_WARN;
        return true;
    }
    return false;
}

/* A bounded line under construction. */
typedef struct line {
    char buf[LINE_MAX_BYTES];
    size_t len;
} line;

/* Room kept at the end of every line: a closing quote, "}" and "\n". */
#define LINE_RESERVE 3

/* Appends n bytes, or nothing when they do not all fit: a value is cut
 * between characters or escapes, never inside one. */
static bool put(line *l, const char *s, size_t n)
{
    if (l->len + n > sizeof(l->buf) - LINE_RESERVE)
        return false;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
    return true;
}

/* Closing quotes and brackets always fit: they use the reserve. */
static void put_closing(line *l, const char *s)
{
    size_t n = strlen(s);

    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static bool puts_raw(line *l, const char *s)
{
    return put(l, s, strlen(s));
}

/*
 * Appends s escaped: as the body of a JSON string, or in text format with
 * control characters escaped too, so that no value (a client's correlation
 * id, say) can start a forged line. Stops cleanly when the line is full.
 */
static void put_escaped(line *l, const char *s)
{
    char esc[8];
    bool ok = true;

    for (; ok && s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && (!json_format || (c != '"' && c != '\\'))) {
            ok = put(l, (const char *)&c, 1);
            continue;
        }
        switch (c) {
        case '"': ok = puts_raw(l, "\\\""); break;
        case '\\': ok = puts_raw(l, "\\\\"); break;
        case '\n': ok = puts_raw(l, "\\n"); break;
        case '\t': ok = puts_raw(l, "\\t"); break;
        default: snprintf(esc, sizeof(esc), "\\u%04x", c); ok = puts_raw(l, esc);
        }
    }
}

/* A key and its value; the whole pair is dropped when not even its opening
 * fits. raw: the value is a JSON number, written unquoted. */
static void put_kv_as(line *l, const char *key, const char *value, bool raw)
{
    size_t mark = l->len;

    if (!puts_raw(l, json_format ? ",\"" : " ")) {
        l->len = mark;
        return;
    }
    put_escaped(l, key);
    if (!puts_raw(l, !json_format ? "=" : raw ? "\":" : "\":\"")) {
        l->len = mark;
        return;
    }
    put_escaped(l, value);
    if (json_format && !raw)
        put_closing(l, "\"");
}

static void put_kv(line *l, const char *key, const char *value)
{
    put_kv_as(l, key, value, false);
}

static void put_head(line *l, tse_log_level level, const char *msg)
{
    struct timeval tv;
    struct tm tm;
    char ts[64];

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)tv.tv_usec);
    puts_raw(l, json_format ? "{\"ts\":\"" : "");
    puts_raw(l, ts);
    puts_raw(l, json_format ? "\",\"level\":\"" : " ");
    puts_raw(l, level_names[level]);
    puts_raw(l, json_format ? "\",\"msg\":\"" : " ");
    put_escaped(l, msg);
    if (json_format)
        put_closing(l, "\"");
}

static void finish(line *l)
{
    if (json_format)
        l->buf[l->len++] = '}';
    l->buf[l->len++] = '\n';
    /* A short write of a log line is not worth failing over. */
    if (write(STDERR_FILENO, l->buf, l->len) < 0)
        return;
}

void tse_log(tse_log_level level, const char *msg, const char *const *kv)
{
    line l;

    if (!tse_log_enabled(level))
        return;
    l.len = 0;
    put_head(&l, level, msg);
    for (int i = 0; kv && kv[i] && kv[i + 1]; i += 2)
        put_kv(&l, kv[i], kv[i + 1]);
    finish(&l);
}

void tse_logf(tse_log_level level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    if (!tse_log_enabled(level))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    tse_log(level, msg, NULL);
}

void tse_log_request(const char *method, const char *status, int64_t latency_us,
                     const char *correlation_id, const char *const *kv)
{
    tse_log_level level = TSE_LOG_INFO;
    char latency[32];
    line l;

    if (strcmp(status, "INTERNAL") == 0 || strcmp(status, "UNAVAILABLE") == 0)
        level = TSE_LOG_ERROR;
    else if (strcmp(status, "OK") != 0)
        level = TSE_LOG_WARN;
    if (!tse_log_enabled(level))
        return;
    l.len = 0;
    put_head(&l, level, "request");
    put_kv(&l, "method", method);
    put_kv(&l, "status", status);
    snprintf(latency, sizeof(latency), "%lld", (long long)latency_us);
    put_kv_as(&l, "latency_us", latency, true);
    if (correlation_id && correlation_id[0])
        put_kv(&l, "correlation_id", correlation_id);
    for (int i = 0; kv && kv[i] && kv[i + 1]; i += 2)
        put_kv(&l, kv[i], kv[i + 1]);
    finish(&l);
}

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

static void put(line *l, const char *s, size_t n)
{
    size_t room = sizeof(l->buf) - 2 - l->len; /* keep room for "}\n" */

    if (n > room)
        n = room;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void puts_raw(line *l, const char *s)
{
    put(l, s, strlen(s));
}

/* Appends s as the body of a JSON string (escaped) or as plain text. */
static void put_escaped(line *l, const char *s)
{
    char esc[8];

    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!json_format || (c >= 0x20 && c != '"' && c != '\\')) {
            put(l, (const char *)&c, 1);
            continue;
        }
        switch (c) {
        case '"': puts_raw(l, "\\\""); break;
        case '\\': puts_raw(l, "\\\\"); break;
        case '\n': puts_raw(l, "\\n"); break;
        case '\t': puts_raw(l, "\\t"); break;
        default: snprintf(esc, sizeof(esc), "\\u%04x", c); puts_raw(l, esc);
        }
    }
}

static void put_kv(line *l, const char *key, const char *value)
{
    if (json_format) {
        puts_raw(l, ",\"");
        put_escaped(l, key);
        puts_raw(l, "\":\"");
        put_escaped(l, value);
        puts_raw(l, "\"");
    } else {
        puts_raw(l, " ");
        puts_raw(l, key);
        puts_raw(l, "=");
        put_escaped(l, value);
    }
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
    if (json_format) {
        puts_raw(l, "{\"ts\":\"");
        puts_raw(l, ts);
        puts_raw(l, "\",\"level\":\"");
        puts_raw(l, level_names[level]);
        puts_raw(l, "\",\"msg\":\"");
        put_escaped(l, msg);
        puts_raw(l, "\"");
    } else {
        puts_raw(l, ts);
        puts_raw(l, " ");
        puts_raw(l, level_names[level]);
        puts_raw(l, " ");
        puts_raw(l, msg);
    }
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
    put_kv(&l, "latency_us", latency);
    if (correlation_id && correlation_id[0])
        put_kv(&l, "correlation_id", correlation_id);
    for (int i = 0; kv && kv[i] && kv[i + 1]; i += 2)
        put_kv(&l, kv[i], kv[i + 1]);
    finish(&l);
}

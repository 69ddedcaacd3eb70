/*
 * config.c - settings from defaults, environment and flags; see config.h.
 *
 * One table describes every setting (flag, environment variable, kind,
 * default, help), so parsing, validation and --help cannot disagree.
 */
#include "config/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef enum kind { K_STRING, K_DURATION, K_INT, K_BYTES, K_LEVEL, K_FORMAT, K_MODE } kind;

typedef struct setting {
    const char *flag;
    const char *env;
    kind kind;
    size_t offset;
    size_t size; /* of a string field */
    int64_t min, max;
    const char *def;
    const char *help;
} setting;

#define STR(f) offsetof(tse_config, f), sizeof(((tse_config *)0)->f)
#define NUM(f) offsetof(tse_config, f), 0

static const setting settings[] = {
    {"redis-url", "REDIS_URL", K_STRING, STR(redis_url), 0, 0, "redis://127.0.0.1:6379",
     "Redis to store events in: redis://[[user]:password@]host[:port][/db]"},
    {"listen", "GRPC_LISTEN", K_STRING, STR(listen), 0, 0, "0.0.0.0:50051",
     "gRPC listen address, host:port"},
    {"log-level", "LOG_LEVEL", K_LEVEL, STR(log_level), 0, 0, "info", "debug|info|warn|error"},
    {"log-format", "LOG_FORMAT", K_FORMAT, NUM(log_json), 0, 0, "json",
     "json (one object per line) or text"},
    {"validation-mode", "VALIDATION_MODE", K_MODE, NUM(strict), 0, 0, "lenient",
     "lenient: store misfit catalog payloads as generic data, flagged; strict: reject them"},
    {"dedup-window", "DEDUP_WINDOW", K_DURATION, NUM(dedup_window_ms), 1, 86400000LL * 7, "2m",
     "how long a client-set event id is remembered for idempotent publish"},
    {"retention-age", "RETENTION_AGE", K_DURATION, NUM(retention_ms), 0, 86400000LL * 3650, "7d",
     "trim stream entries older than this (0: keep forever)"},
    {"retention-maxlen", "RETENTION_MAXLEN", K_INT, NUM(retention_maxlen), 0, INT64_MAX, "0",
     "keep about this many entries per stream instead of trimming by age (0: off)"},
    {"redis-timeout", "REDIS_TIMEOUT", K_DURATION, NUM(redis_timeout_ms), 10, 60000, "2s",
     "bound on connecting to Redis and on every Redis reply"},
    {"redis-connections", "REDIS_CONNECTIONS", K_INT, NUM(redis_lanes), 1, 16, "2",
     "Redis writer connections (one thread each)"},
    {"threads", "GRPC_THREADS", K_INT, NUM(threads), 1, 64, "2", "gRPC completion-queue threads"},
    {"max-message-bytes", "MAX_MESSAGE_BYTES", K_BYTES, NUM(max_message_bytes), 1024, 64LL << 20,
     "4MiB", "largest request message accepted"},
    {"shutdown-grace", "SHUTDOWN_GRACE", K_DURATION, NUM(shutdown_grace_ms), 0, 600000, "10s",
     "on SIGTERM/SIGINT, how long in-flight calls may finish before they are cancelled"},
    {"publish-stream-window", "PUBLISH_STREAM_WINDOW", K_INT, NUM(stream_window), 1, 65536, "4096",
     "unanswered events one PublishStream may have in flight"},
    {"delivery-poll", "DELIVERY_POLL", K_DURATION, NUM(delivery_poll_ms), 5, 10000, "100ms",
     "how often idle subscribers look for events published by other processes (events "
     "published through this process wake them at once)"},
    {"consumer-reap-idle", "CONSUMER_REAP_IDLE", K_DURATION, NUM(consumer_reap_ms), 0,
     86400000LL * 30, "10m",
     "delete subscription consumers idle this long that hold no pending event (0: never)"},
};

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

bool tse_duration_parse(const char *s, int64_t *ms)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}, {"", 1}};
    char *end;
    long long v;

    if (s == NULL || !isdigit((unsigned char)s[0]))
        return false;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0)
        return false;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].unit) == 0) {
            if (v > INT64_MAX / units[i].ms)
                return false;
            *ms = v * units[i].ms;
            return true;
        }
    }
    return false;
}

static bool bytes_parse(const char *s, int64_t *out)
{
    static const struct {
        const char *unit;
        int64_t mul;
    } units[] = {{"", 1}, {"B", 1}, {"KiB", 1024}, {"MiB", 1 << 20}, {"k", 1024}, {"M", 1 << 20}};
    char *end;
    long long v;

    if (s == NULL || !isdigit((unsigned char)s[0]))
        return false;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0)
        return false;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].unit) == 0 && v <= INT64_MAX / units[i].mul) {
            *out = v * units[i].mul;
            return true;
        }
    }
    return false;
}

static tse_status bad(const setting *st, const char *value, const char *why, tse_error *err)
{
    /* Clip the echoed value so that the reason always fits in the message. */
    return tse_error_set(err, TSE_INVALID, st->env, "invalid %s (--%s): '%.48s%s' %s", st->env,
                         st->flag, value, strlen(value) > 48 ? "..." : "", why);
}

static tse_status check_range(const setting *st, const char *value, int64_t v, tse_error *err)
{
    if (v < st->min || v > st->max)
        return tse_error_set(err, TSE_INVALID, st->env,
                             "invalid %s (--%s): '%s' is out of range [%lld, %lld]", st->env,
                             st->flag, value, (long long)st->min, (long long)st->max);
    return TSE_OK;
}

/* Applies one textual value to its field of cfg. */
static tse_status apply(tse_config *cfg, const setting *st, const char *value, tse_error *err)
{
    char *field = (char *)cfg + st->offset;
    int64_t v = 0;
    char *end;

    switch (st->kind) {
    case K_STRING:
    case K_LEVEL:
        if (value[0] == '\0')
            return bad(st, value, "must be non-empty", err);
        if (strlen(value) >= st->size)
            return bad(st, value, "is too long", err);
        if (st->kind == K_LEVEL && strcmp(value, "debug") && strcmp(value, "info") &&
            strcmp(value, "warn") && strcmp(value, "warning") && strcmp(value, "error"))
            return bad(st, value, "is not one of debug, info, warn, error", err);
        memcpy(field, value, strlen(value) + 1);
        return TSE_OK;
    case K_FORMAT:
        if (strcmp(value, "json") && strcmp(value, "text"))
            return bad(st, value, "is not one of json, text", err);
        *(bool *)field = strcmp(value, "json") == 0;
        return TSE_OK;
    case K_MODE:
        if (strcmp(value, "lenient") && strcmp(value, "strict"))
            return bad(st, value, "is not one of lenient, strict", err);
        *(bool *)field = strcmp(value, "strict") == 0;
        return TSE_OK;
    case K_DURATION:
        if (!tse_duration_parse(value, &v))
            return bad(st, value, "is not a duration such as 500ms, 30s, 2m, 7d", err);
        break;
    case K_BYTES:
        if (!bytes_parse(value, &v))
            return bad(st, value, "is not a size such as 65536, 512KiB, 4MiB", err);
        break;
    case K_INT:
        errno = 0;
        v = strtoll(value, &end, 10);
        if (errno || end == value || *end != '\0')
            return bad(st, value, "is not an integer", err);
        break;
    }
    if (check_range(st, value, v, err) != TSE_OK)
        return err ? err->code : TSE_INVALID;
    if (st->kind == K_INT && st->max <= INT_MAX)
        *(int *)field = (int)v;
    else
        *(int64_t *)field = v;
    return TSE_OK;
}

static const setting *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (strlen(settings[i].flag) == len && strncmp(settings[i].flag, name, len) == 0)
            return &settings[i];
    return NULL;
}

void tse_config_print_help(FILE *out)
{
    fprintf(out, "usage: tracseq-events [--key=value ...]\n\n"
                 "The TracSeq event service: gRPC on --listen, events in Redis Streams.\n"
                 "Every setting is a flag or an environment variable; the flag wins.\n\n");
    for (size_t i = 0; i < NSETTINGS; i++)
        fprintf(out, "  --%-22s %-22s default %s\n      %s\n", settings[i].flag, settings[i].env,
                settings[i].def, settings[i].help);
    fprintf(out, "\n  --help, --version\n");
}

static tse_status load_defaults_and_env(tse_config *cfg, tse_error *err)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < NSETTINGS; i++) {
        const char *env = getenv(settings[i].env);
        tse_status st = apply(cfg, &settings[i], settings[i].def, err);
        if (st != TSE_OK)
            return st;
        if (env != NULL && (st = apply(cfg, &settings[i], env, err)) != TSE_OK)
            return st;
    }
    return TSE_OK;
}

/* --help and --version answer even when the environment holds a bad value. */
static bool wants_help(int argc, char **argv, FILE *out)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            tse_config_print_help(out);
            return true;
        }
        if (strcmp(argv[i], "--version") == 0) {
            fprintf(out, "tracseq-events %s\n", TSE_VERSION);
            return true;
        }
    }
    return false;
}

tse_config_outcome tse_config_load(tse_config *cfg, int argc, char **argv, FILE *out,
                                   tse_error *err)
{
    if (wants_help(argc, argv, out))
        return TSE_CONFIG_HELP;
    if (load_defaults_and_env(cfg, err) != TSE_OK)
        return TSE_CONFIG_ERROR;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *eq, *value;
        const setting *st;

        if (strncmp(arg, "--", 2) != 0) {
            tse_error_set(err, TSE_INVALID, arg, "unexpected argument '%s' (see --help)", arg);
            return TSE_CONFIG_ERROR;
        }
        eq = strchr(arg, '=');
        st = find_flag(arg + 2, eq ? (size_t)(eq - arg - 2) : strlen(arg + 2));
        if (st == NULL) {
            tse_error_set(err, TSE_INVALID, arg, "unknown option '%s' (see --help)", arg);
            return TSE_CONFIG_ERROR;
        }
        if (eq != NULL) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            tse_error_set(err, TSE_INVALID, st->env, "option --%s needs a value", st->flag);
            return TSE_CONFIG_ERROR;
        }
        if (apply(cfg, st, value, err) != TSE_OK)
            return TSE_CONFIG_ERROR;
    }
    return TSE_CONFIG_RUN;
}

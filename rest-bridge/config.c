/*
 * config.c - the bridge's settings from defaults, environment and flags; see
 * config.h.
 *
 * One table describes every setting (flag, environment variable, kind,
 * bounds, default, help), so parsing, validation and --help cannot disagree.
 * Durations reuse the service's tse_duration_parse so both processes read
 * "30s" the same way.
 */
#include "config.h"

#include "obs/log.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef enum kind { K_STRING, K_INT, K_DURATION, K_BYTES, K_LEVEL, K_FORMAT } kind;

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

#define STR(f) offsetof(tse_bridge_config, f), sizeof(((tse_bridge_config *)0)->f)
#define NUM(f) offsetof(tse_bridge_config, f), 0

static const setting settings[] = {
    {"host", "HOST", K_STRING, STR(host), 0, 0, "0.0.0.0", "address the HTTP server listens on"},
    {"port", "PORT", K_INT, NUM(port), 0, 65535, "8087", "HTTP port (0: any free port)"},
    {"event-service-addr", "EVENT_SERVICE_ADDR", K_STRING, STR(service_addr), 0, 0,
     "127.0.0.1:50051", "the event service's gRPC address, host:port"},
    {"max-body-bytes", "MAX_BODY_BYTES", K_BYTES, NUM(max_body_bytes), 1024, 64LL << 20, "1MiB",
     "largest request body accepted (413 beyond)"},
    {"max-batch-events", "MAX_BATCH_EVENTS", K_INT, NUM(max_batch), 1, 4096, "1000",
     "most events one POST /api/v1/events/batch may carry"},
    {"http-threads", "HTTP_THREADS", K_INT, NUM(threads), 0, 1024, "0",
     "HTTP worker threads (0: one per CPU); they never wait for the event service"},
    {"max-connections", "MAX_CONNECTIONS", K_INT, NUM(max_connections), 1, 1000000, "10000",
     "concurrent HTTP connections accepted"},
    {"read-timeout", "READ_TIMEOUT", K_DURATION, NUM(read_timeout_ms), 1000, 3600000, "30s",
     "a connection silent this long (headers, body or keep-alive idle) is closed"},
    {"rpc-timeout", "RPC_TIMEOUT", K_DURATION, NUM(rpc_timeout_ms), 10, 600000, "10s",
     "deadline of each call to the event service"},
    {"health-timeout", "HEALTH_TIMEOUT", K_DURATION, NUM(health_timeout_ms), 10, 60000, "1s",
     "deadline of the probes behind GET /health"},
    {"retry-after", "RETRY_AFTER", K_INT, NUM(retry_after_s), 0, 3600, "1",
     "seconds in the Retry-After header of 503 answers"},
    {"grpc-channels", "GRPC_CHANNELS", K_INT, NUM(grpc_channels), 1, 64, "2",
     "HTTP/2 connections to the event service, used round-robin (one publish stream each)"},
    {"sse-keepalive", "SSE_KEEPALIVE", K_DURATION, NUM(sse_keepalive_ms), 100, 3600000, "15s",
     "a comment line goes to idle Server-Sent Events streams this often"},
    {"log-level", "LOG_LEVEL", K_LEVEL, STR(log_level), 0, 0, "info", "debug|info|warn|error"},
    {"log-format", "LOG_FORMAT", K_FORMAT, NUM(log_json), 0, 0, "json",
     "json (one object per line) or text"},
};

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

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
    return tse_error_set(err, TSE_INVALID, st->env, "invalid %s (--%s): '%s' %s", st->env, st->flag,
                         value, why);
}

/* Parses value as a number of st's kind into *v. */
static tse_status parse_number(const setting *st, const char *value, int64_t *v, tse_error *err)
{
    char *end;

    switch (st->kind) {
    case K_DURATION:
        if (!tse_duration_parse(value, v))
            return bad(st, value, "is not a duration such as 500ms, 30s, 2m", err);
        break;
    case K_BYTES:
        if (!bytes_parse(value, v))
            return bad(st, value, "is not a size such as 65536, 512KiB, 1MiB", err);
        break;
    default:
        errno = 0;
        *v = strtoll(value, &end, 10);
        if (errno || end == value || *end != '\0')
            return bad(st, value, "is not an integer", err);
        break;
    }
    if (*v < st->min || *v > st->max)
        return tse_error_set(err, TSE_INVALID, st->env,
                             "invalid %s (--%s): '%s' is out of range [%lld, %lld]", st->env,
                             st->flag, value, (long long)st->min, (long long)st->max);
    return TSE_OK;
}

/* Applies one textual value to its field of cfg. */
static tse_status apply(tse_bridge_config *cfg, const setting *st, const char *value,
                        tse_error *err)
{
    char *field = (char *)cfg + st->offset;
    int64_t v = 0;
    tse_log_level level;

    switch (st->kind) {
    case K_LEVEL:
        if (!tse_log_level_parse(value, &level))
            return bad(st, value, "is not one of debug, info, warn, error", err);
        __attribute__((fallthrough)); /* stored as text */
    case K_STRING:
        if (value[0] == '\0' || strlen(value) >= st->size)
            return bad(st, value, "must be non-empty and shorter", err);
        memcpy(field, value, strlen(value) + 1);
        return TSE_OK;
    case K_FORMAT:
        if (strcmp(value, "json") && strcmp(value, "text"))
            return bad(st, value, "is not one of json, text", err);
        *(bool *)field = strcmp(value, "json") == 0;
        return TSE_OK;
    default: break;
    }
    if (parse_number(st, value, &v, err) != TSE_OK)
        return TSE_INVALID;
    if (st->kind == K_INT)
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

static void print_help(FILE *out)
{
    fprintf(out, "usage: tracseq-rest-bridge [--key=value ...]\n\n"
                 "The TracSeq REST bridge: JSON over HTTP/1.1 on --host:--port, translated to\n"
                 "gRPC calls on the event service at --event-service-addr.\n"
                 "Every setting is a flag or an environment variable; the flag wins.\n\n");
    for (size_t i = 0; i < NSETTINGS; i++)
        fprintf(out, "  --%-22s %-22s default %-24s\n      %s\n", settings[i].flag, settings[i].env,
                settings[i].def, settings[i].help);
    fprintf(out, "\n  --help, --version\n");
}

static tse_status load_defaults_and_env(tse_bridge_config *cfg, tse_error *err)
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

/* Handles one "--key[=value]" at argv[*i]; advances *i past a separate value. */
static tse_status apply_flag(tse_bridge_config *cfg, int argc, char **argv, int *i, tse_error *err)
{
    const char *arg = argv[*i], *eq, *value;
    const setting *st;

    if (strncmp(arg, "--", 2) != 0)
        return tse_error_set(err, TSE_INVALID, arg, "unexpected argument '%s' (see --help)", arg);
    eq = strchr(arg, '=');
    st = find_flag(arg + 2, eq ? (size_t)(eq - arg - 2) : strlen(arg + 2));
    if (st == NULL)
        return tse_error_set(err, TSE_INVALID, arg, "unknown option '%s' (see --help)", arg);
    if (eq != NULL)
        value = eq + 1;
    else if (*i + 1 < argc)
        value = argv[++*i];
    else
        return tse_error_set(err, TSE_INVALID, st->env, "option --%s needs a value", st->flag);
    return apply(cfg, st, value, err);
}

tse_config_outcome tse_bridge_config_load(tse_bridge_config *cfg, int argc, char **argv, FILE *out,
                                          tse_error *err)
{
    if (load_defaults_and_env(cfg, err) != TSE_OK)
        return TSE_CONFIG_ERROR;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_help(out);
            return TSE_CONFIG_HELP;
        }
        if (strcmp(argv[i], "--version") == 0) {
            fprintf(out, "tracseq-rest-bridge %s\n", TSE_VERSION);
            return TSE_CONFIG_HELP;
        }
        if (apply_flag(cfg, argc, argv, &i, err) != TSE_OK)
            return TSE_CONFIG_ERROR;
    }
    return TSE_CONFIG_RUN;
}

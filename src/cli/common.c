/*
 * common.c - the plumbing every eventctl command shares: option parsing
 * with the global options mixed in, argument checks that end in a usage
 * error (exit 2), connecting, and turning SDK errors into one stderr line
 * and an exit code.
 *
 * Invariant: every failure path prints exactly one diagnostic to stderr
 * (plus a hint for usage errors) and returns the exit code documented in
 * cli.h; nothing here exits the process.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#define PAYLOAD_MAX (16u * 1024u * 1024u) /* larger than any event the server takes */

const char tse_cli_global_help[] =
    "Global options (before or after the command):\n"
    "  --server HOST:PORT  the service (default: $TRACSEQ_EVENTS_SERVER, else\n"
    "                      localhost:50051)\n"
    "  --timeout MS        deadline of each call, retries included (default 10000)\n"
    "  --source NAME       source_service of published events (default:\n"
    "                      $TRACSEQ_SOURCE_SERVICE, else eventctl)\n"
    "  --token TOKEN       bearer token of the caller's identity (default:\n"
    "                      $TRACSEQ_TOKEN; prefer it: arguments show in ps)\n"
    "  --json              proto3 JSON output instead of human-readable text\n"
    "  --tls               TLS, trusting the system's CAs (implied by the next four)\n"
    "  --tls-ca FILE       PEM CA that signs the service's certificate\n"
    "                      (default: $TRACSEQ_TLS_CA)\n"
    "  --tls-cert FILE     PEM client certificate, for mutual TLS\n"
    "                      (default: $TRACSEQ_TLS_CERT)\n"
    "  --tls-key FILE      PEM private key of --tls-cert (default: $TRACSEQ_TLS_KEY)\n"
    "  --tls-server-name NAME  the name the service's certificate carries when it\n"
    "                      is not --server's host (default: $TRACSEQ_TLS_SERVER_NAME)\n"
    "  -h, --help          this help\n";

/* ---- usage errors ---- */

int tse_cli_usage_error(const tse_cli *cli, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "eventctl%s%s: ", cli->command ? " " : "", cli->command ? cli->command : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'eventctl%s%s --help'.\n", cli->command ? " " : "",
            cli->command ? cli->command : "");
    return TSE_CLI_EXIT_USAGE;
}

int tse_cli_parse_int(const tse_cli *cli, const char *option, const char *text, long min, long max,
                      long *out)
{
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(text, &end, 10);
    if (text[0] == '\0' || *end != '\0' || errno == ERANGE || v < min || v > max)
        return tse_cli_usage_error(cli, "%s must be an integer from %ld to %ld, not '%s'", option,
                                   min, max, text);
    *out = v;
    return -1;
}

/* ---- option parsing ---- */

int tse_cli_global_option(tse_cli *cli, int code, const char *arg, char *const argv[])
{
    long v = 0; /* set when rc is -1; gcc -O3 cannot see it (Release build) */
    int rc;

    switch (code) {
    case TSE_CLI_OPT_SERVER: cli->server = arg; return -1;
    case TSE_CLI_OPT_SOURCE: cli->source_service = arg; return -1;
    case TSE_CLI_OPT_JSON: cli->json = true; return -1;
    case TSE_CLI_OPT_TOKEN: cli->token = arg; return -1;
    case TSE_CLI_OPT_TLS: cli->tls = true; return -1;
    case TSE_CLI_OPT_TLS_CA: cli->tls_ca = arg; return -1;
    case TSE_CLI_OPT_TLS_CERT: cli->tls_cert = arg; return -1;
    case TSE_CLI_OPT_TLS_KEY: cli->tls_key = arg; return -1;
    case TSE_CLI_OPT_TLS_SERVER_NAME: cli->tls_server_name = arg; return -1;
    case 'h':
    case TSE_CLI_OPT_HELP: cli->help = true; return -1;
    case TSE_CLI_OPT_TIMEOUT:
        rc = tse_cli_parse_int(cli, "--timeout", arg, 1, INT_MAX, &v);
        if (rc == -1)
            cli->timeout_ms = (int)v;
        return rc;
    case ':': return tse_cli_usage_error(cli, "option '%s' needs an argument", argv[optind - 1]);
    case '?':
        if (optopt != 0)
            return tse_cli_usage_error(cli, "unknown option '-%c'", optopt);
        return tse_cli_usage_error(cli, "unknown option '%s'", argv[optind - 1]);
    default: return tse_cli_usage_error(cli, "unexpected option");
    }
}

int tse_cli_parse(tse_cli *cli, int argc, char *argv[], const struct option *table,
                  int (*on_option)(void *ctx, int code, const char *arg), void *ctx,
                  const char *help, int *first_positional)
{
    int code;
    int rc;

    /* optind = 0 makes glibc start over, so each command parses afresh. */
    optind = 0;
    opterr = 0;
    while ((code = getopt_long(argc, argv, ":h", table, NULL)) != -1) {
        if (code >= TSE_CLI_OPT_FIRST_COMMAND && on_option != NULL)
            rc = on_option(ctx, code, optarg);
        else
            rc = tse_cli_global_option(cli, code, optarg, argv);
        if (rc != -1)
            return rc;
    }
    if (cli->help) {
        printf("%s%s", help, tse_cli_global_help);
        return TSE_CLI_EXIT_OK;
    }
    *first_positional = optind;
    return -1;
}

/* ---- start positions ---- */

/* Unix milliseconds to "YYYY-MM-DDTHH:MM:SS.mmmZ". */
static bool format_unix_ms(long long ms, char *buf, size_t len)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    char base[32];

    if (gmtime_r(&secs, &tm) == NULL || strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        return false;
    return snprintf(buf, len, "%s.%03lldZ", base, ms % 1000) < (int)len;
}

/* The shape of RFC 3339: date 'T' time, optional fraction, 'Z' or ±hh:mm.
 * The SDK and the server check the values themselves. */
static bool looks_like_rfc3339(const char *s)
{
    struct tm tm;
    const char *rest;

    memset(&tm, 0, sizeof(tm));
    rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (rest == NULL)
        return false;
    if (*rest == '.') {
        rest++;
        if (*rest < '0' || *rest > '9')
            return false;
        while (*rest >= '0' && *rest <= '9')
            rest++;
    }
    if (strcmp(rest, "Z") == 0 || strcmp(rest, "z") == 0)
        return true;
    return (rest[0] == '+' || rest[0] == '-') && strlen(rest) == 6 && rest[3] == ':';
}

int tse_cli_parse_start(const tse_cli *cli, const char *option, const char *text,
                        tse_client_start *start, char *time_buf, size_t time_buf_len)
{
    char *end = NULL;
    long long ms;

    if (strcmp(text, "earliest") == 0 || strcmp(text, "latest") == 0) {
        *start = text[0] == 'e' ? TSE_CLIENT_START_EARLIEST : TSE_CLIENT_START_LATEST;
        return -1;
    }
    errno = 0;
    ms = strtoll(text, &end, 10);
    if (text[0] >= '0' && text[0] <= '9' && *end == '\0' && errno == 0) {
        if (!format_unix_ms(ms, time_buf, time_buf_len))
            return tse_cli_usage_error(cli, "%s: '%s' is out of range", option, text);
        *start = TSE_CLIENT_START_TIMESTAMP;
        return -1;
    }
    if (!looks_like_rfc3339(text) || strlen(text) >= time_buf_len)
        return tse_cli_usage_error(cli,
                                   "%s must be earliest, latest, an RFC 3339 time "
                                   "(2024-06-18T12:00:00Z) or Unix milliseconds, not '%s'",
                                   option, text);
    snprintf(time_buf, time_buf_len, "%s", text);
    *start = TSE_CLIENT_START_TIMESTAMP;
    return -1;
}

/* ---- payloads ---- */

/* Reads all of f, at most PAYLOAD_MAX bytes; NULL on error or overflow. */
static char *read_all(FILE *f)
{
    size_t cap = 4096, len = 0, n;
    char *buf = malloc(cap);
    char *bigger;

    while (buf != NULL && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (len > PAYLOAD_MAX)
            goto fail;
        if (cap - len - 1 == 0) {
            bigger = realloc(buf, cap * 2);
            if (bigger == NULL)
                goto fail;
            buf = bigger;
            cap *= 2;
        }
    }
    if (buf == NULL || ferror(f))
        goto fail;
    buf[len] = '\0';
    return buf;
fail:
    free(buf);
    return NULL;
}

int tse_cli_read_payload(const tse_cli *cli, const char *arg, char **out)
{
    FILE *f;
    char *text;
    int saved;

    if (arg[0] != '@') {
        *out = strdup(arg);
        return *out != NULL ? -1 : TSE_CLI_EXIT_INTERNAL;
    }
    if (strcmp(arg, "@-") == 0)
        f = stdin;
    else if ((f = fopen(arg + 1, "r")) == NULL)
        return tse_cli_usage_error(cli, "--payload: cannot read '%s': %s", arg + 1,
                                   strerror(errno));
    text = read_all(f);
    saved = errno;
    if (f != stdin)
        fclose(f);
    if (text == NULL)
        return tse_cli_usage_error(cli, "--payload: cannot read '%s': %s", arg + 1,
                                   saved != 0 ? strerror(saved) : "too large");
    *out = text;
    return -1;
}

/* ---- the client and its errors ---- */

/* The exit code of an SDK status. */
static int exit_code(tse_client_status status)
{
    switch (status) {
    case TSE_CLIENT_OK: return TSE_CLI_EXIT_OK;
    case TSE_CLIENT_INVALID_ARGUMENT:
    case TSE_CLIENT_NOT_FOUND:
    case TSE_CLIENT_ALREADY_EXISTS:
    case TSE_CLIENT_FAILED_PRECONDITION:
    case TSE_CLIENT_RESOURCE_EXHAUSTED:
    case TSE_CLIENT_UNAUTHENTICATED:
    case TSE_CLIENT_PERMISSION_DENIED:
    case TSE_CLIENT_UNIMPLEMENTED: return TSE_CLI_EXIT_REFUSED;
    case TSE_CLIENT_UNAVAILABLE:
    case TSE_CLIENT_DEADLINE_EXCEEDED:
    case TSE_CLIENT_CANCELLED: return TSE_CLI_EXIT_UNAVAILABLE;
    case TSE_CLIENT_INTERNAL:
    case TSE_CLIENT_NO_MEMORY:
    default: return TSE_CLI_EXIT_INTERNAL;
    }
}

int tse_cli_fail(const tse_cli *cli, tse_client_status status, const tse_client_error *err)
{
    const char *message = err != NULL && err->message[0] != '\0' ? err->message : "failed";

    fprintf(stderr, "eventctl%s%s: %s: ", cli->command ? " " : "", cli->command ? cli->command : "",
            tse_client_status_name(status));
    /* The server's messages often open with the field already. */
    if (err != NULL && err->field[0] != '\0' &&
        strncmp(message, err->field, strlen(err->field)) != 0)
        fprintf(stderr, "field \"%s\": ", err->field);
    fprintf(stderr, "%s\n", message);
    return exit_code(status);
}

/* The flag's value, else the environment's (NULL when neither is set). */
static const char *flag_or_env(const char *flag, const char *env)
{
    const char *v = getenv(env);

    return flag != NULL ? flag : v != NULL && v[0] != '\0' ? v : NULL;
}

/* The PEM file of a TLS option into *out (NULL when path is NULL). */
static int read_pem(const tse_cli *cli, const char *option, const char *path, char **out)
{
    FILE *f;
    int saved;

    *out = NULL;
    if (path == NULL)
        return -1;
    if ((f = fopen(path, "r")) == NULL)
        return tse_cli_usage_error(cli, "%s: cannot read '%s': %s", option, path, strerror(errno));
    *out = read_all(f);
    saved = errno;
    fclose(f);
    if (*out == NULL)
        return tse_cli_usage_error(cli, "%s: cannot read '%s': %s", option, path,
                                   saved != 0 ? strerror(saved) : "too large");
    return -1;
}

/* The TLS options into o; the PEM texts go to pem[3] (caller frees). */
static int tls_options(const tse_cli *cli, tse_client_options *o, char *pem[3])
{
    const char *ca = flag_or_env(cli->tls_ca, "TRACSEQ_TLS_CA");
    const char *cert = flag_or_env(cli->tls_cert, "TRACSEQ_TLS_CERT");
    const char *key = flag_or_env(cli->tls_key, "TRACSEQ_TLS_KEY");
    int rc;

    if ((cert == NULL) != (key == NULL))
        return tse_cli_usage_error(cli, "--tls-cert and --tls-key go together");
    if ((rc = read_pem(cli, "--tls-ca", ca, &pem[0])) != -1 ||
        (rc = read_pem(cli, "--tls-cert", cert, &pem[1])) != -1 ||
        (rc = read_pem(cli, "--tls-key", key, &pem[2])) != -1)
        return rc;
    o->tls = cli->tls;
    o->tls_root_certs_pem = pem[0];
    o->tls_cert_pem = pem[1];
    o->tls_key_pem = pem[2];
    o->tls_server_name = flag_or_env(cli->tls_server_name, "TRACSEQ_TLS_SERVER_NAME");
    return -1;
}

int tse_cli_connect(const tse_cli *cli, tse_client **out)
{
    tse_client_options o;
    tse_client_error err;
    tse_client_status st;
    const char *env_source = getenv("TRACSEQ_SOURCE_SERVICE");
    const char *env_token = getenv("TRACSEQ_TOKEN");
    char *pem[3] = {NULL, NULL, NULL};
    int rc;

    tse_client_options_init(&o);
    o.target = cli->server;
    o.timeout_ms = cli->timeout_ms;
    if (cli->token != NULL)
        o.token = cli->token;
    else if (env_token != NULL && env_token[0] != '\0')
        o.token = env_token;
    /* Events published by hand say so, unless the environment names a source. */
    if (cli->source_service != NULL)
        o.source_service = cli->source_service;
    else if (env_source == NULL || env_source[0] == '\0')
        o.source_service = "eventctl";
    rc = tls_options(cli, &o, pem);
    if (rc == -1) {
        st = tse_client_connect(&o, out, &err); /* copies the PEM texts */
        if (st != TSE_CLIENT_OK)
            rc = tse_cli_fail(cli, st, &err);
    }
    if (pem[2] != NULL)
        memset(pem[2], 0, strlen(pem[2])); /* the key: no copy left behind */
    for (int i = 0; i < 3; i++)
        free(pem[i]);
    return rc;
}

/* ---- JSON answers ---- */

json_t *tse_cli_parse_answer(const tse_cli *cli, const char *json_text)
{
    json_error_t jerr;
    json_t *v = json_loads(json_text != NULL ? json_text : "", 0, &jerr);

    if (v == NULL)
        fprintf(stderr, "eventctl %s: INTERNAL: undecodable answer: %s\n",
                cli->command ? cli->command : "", jerr.text);
    return v;
}

int tse_cli_show_answer(const tse_cli *cli, tse_client_status st, const tse_client_error *err,
                        char *json_text, void (*render)(const json_t *))
{
    json_t *v;
    int rc = TSE_CLI_EXIT_OK;

    if (st != TSE_CLIENT_OK) {
        rc = tse_cli_fail(cli, st, err);
    } else if ((v = tse_cli_parse_answer(cli, json_text)) == NULL) {
        rc = TSE_CLI_EXIT_INTERNAL;
    } else {
        if (cli->json) {
            json_dumpf(v, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
            fputc('\n', stdout);
        } else {
            render(v);
        }
        json_decref(v);
    }
    tse_client_free(json_text);
    return rc;
}

const char *tse_cli_scalar(const json_t *v, char *buf, size_t len)
{
    if (v == NULL)
        return "";
    switch (json_typeof(v)) {
    case JSON_STRING: return json_string_value(v);
    case JSON_INTEGER: snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v)); break;
    case JSON_REAL: snprintf(buf, len, "%g", json_real_value(v)); break;
    case JSON_TRUE: return "yes";
    case JSON_FALSE: return "no";
    default: return "";
    }
    return buf;
}

size_t tse_cli_print_text(const char *s)
{
    const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");
    size_t n = 0;

    for (; *p != '\0'; p++) {
        if (*p == '\n')
            n += (size_t)printf("\\n");
        else if (*p == '\t')
            n += (size_t)printf("\\t");
        else if (*p == '\r')
            n += (size_t)printf("\\r");
        else if (*p < 0x20 || *p == 0x7F)
            n += (size_t)printf("\\u%04X", *p);
        else if (p[0] == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F)
            n += (size_t)printf("\\u00%02X", *++p);
        else
            n += fputc(*p, stdout) != EOF;
    }
    return n;
}

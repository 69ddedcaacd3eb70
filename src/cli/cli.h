/*
 * cli.h - what the files of eventctl share: the invocation (global options),
 * exit codes, option parsing helpers, error reporting and JSON rendering.
 *
 * eventctl is a thin shell over the public client SDK (tracseq/client.h):
 * every request goes through it, nothing here speaks gRPC or protobuf.
 *
 * Exit codes (documented in `eventctl --help`; tests rely on them):
 *   0  success
 *   1  refused: the server (or the SDK's own checks) rejected the request,
 *      e.g. an invalid field, an unknown subscription, a conflict
 *   2  usage: bad command line (unknown command or option, missing or
 *      malformed argument, unreadable @file)
 *   3  unavailable: the server is unreachable, or not serving, or did not
 *      answer in time
 *   4  internal: a bug, an undecodable answer, out of memory
 *
 * Ownership: every char * returned here is malloc'd and freed by the caller
 * with free(); json_t references follow jansson's rules.
 */
#ifndef TSE_CLI_H
#define TSE_CLI_H

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "tracseq/client.h"

enum {
    TSE_CLI_EXIT_OK = 0,
    TSE_CLI_EXIT_REFUSED = 1,
    TSE_CLI_EXIT_USAGE = 2,
    TSE_CLI_EXIT_UNAVAILABLE = 3,
    TSE_CLI_EXIT_INTERNAL = 4,
    /* publish --strict: the event was stored, but as generic data because
     * its payload did not fit its catalog schema (schema_valid=false) */
    TSE_CLI_EXIT_SCHEMA_INVALID = 5
};

/* One run of eventctl: the global options, wherever they were given. */
typedef struct tse_cli {
    const char *command;        /* e.g. "publish", "subscriptions create" */
    const char *server;         /* --server; NULL: the SDK's env default */
    const char *source_service; /* --source; NULL: env or "eventctl" */
    int timeout_ms;             /* --timeout; 0: the SDK's default */
    const char *token;          /* --token; NULL: $TRACSEQ_TOKEN or none */
    bool json;                  /* --json */
    bool help;                  /* --help was given */
    /* TLS files (--tls-ca, --tls-cert, --tls-key; else $TRACSEQ_TLS_CA,
     * ...); any of them, or --tls, turns TLS on. */
    bool tls;
    const char *tls_ca, *tls_cert, *tls_key, *tls_server_name;
} tse_cli;

/*
 * Global options, accepted before the command and after it. Commands list
 * TSE_CLI_GLOBAL_OPTIONS first in their getopt table and hand every code
 * they do not know to tse_cli_global_option.
 */
enum {
    TSE_CLI_OPT_SERVER = 1000,
    TSE_CLI_OPT_TIMEOUT,
    TSE_CLI_OPT_SOURCE,
    TSE_CLI_OPT_JSON,
    TSE_CLI_OPT_HELP,
    TSE_CLI_OPT_TOKEN,
    TSE_CLI_OPT_TLS,
    TSE_CLI_OPT_TLS_CA,
    TSE_CLI_OPT_TLS_CERT,
    TSE_CLI_OPT_TLS_KEY,
    TSE_CLI_OPT_TLS_SERVER_NAME,
    TSE_CLI_OPT_FIRST_COMMAND /* commands number their options from here */
};

#define TSE_CLI_GLOBAL_OPTIONS                                                                     \
    {"server", required_argument, NULL, TSE_CLI_OPT_SERVER},                                       \
        {"timeout", required_argument, NULL, TSE_CLI_OPT_TIMEOUT},                                 \
        {"source", required_argument, NULL, TSE_CLI_OPT_SOURCE},                                   \
        {"json", no_argument, NULL, TSE_CLI_OPT_JSON},                                             \
        {"token", required_argument, NULL, TSE_CLI_OPT_TOKEN},                                     \
        {"tls", no_argument, NULL, TSE_CLI_OPT_TLS},                                               \
        {"tls-ca", required_argument, NULL, TSE_CLI_OPT_TLS_CA},                                   \
        {"tls-cert", required_argument, NULL, TSE_CLI_OPT_TLS_CERT},                               \
        {"tls-key", required_argument, NULL, TSE_CLI_OPT_TLS_KEY},                                 \
        {"tls-server-name", required_argument, NULL, TSE_CLI_OPT_TLS_SERVER_NAME},                 \
    {                                                                                              \
        "help", no_argument, NULL, TSE_CLI_OPT_HELP                                                \
    }

/* The help text of the global options, for every command's --help. */
extern const char tse_cli_global_help[];

/*
 * Handles one getopt_long result that is not a command option: a global
 * option, '?' (unknown option) or ':' (missing argument). Returns -1 when it
 * was handled, else the exit code to end with (usage errors are printed).
 */
int tse_cli_global_option(tse_cli *cli, int code, const char *arg, char *const argv[]);

/*
 * Parses argv (argv[0] is the command name) with getopt_long and the
 * command's table; calls on_option(ctx, code, optarg) for command options
 * (it returns -1 to go on, or an exit code). With --help, prints help and
 * the global options and returns 0. Otherwise returns -1 and sets
 * *first_positional to the index of the first non-option argument (they
 * are moved to the end, in order).
 */
int tse_cli_parse(tse_cli *cli, int argc, char *argv[], const struct option *table,
                  int (*on_option)(void *ctx, int code, const char *arg), void *ctx,
                  const char *help, int *first_positional);

/* Prints "eventctl <command>: <message>" and a hint to stderr; returns 2. */
int tse_cli_usage_error(const tse_cli *cli, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Strict decimal integer in [min, max], else a usage error naming option. */
int tse_cli_parse_int(const tse_cli *cli, const char *option, const char *text, long min, long max,
                      long *out);

/*
 * A start position: "earliest", "latest", an RFC 3339 time or Unix
 * milliseconds. Sets *start and, for a time, writes its RFC 3339 form into
 * time_buf. Returns -1 on success, else a usage error's exit code.
 */
int tse_cli_parse_start(const tse_cli *cli, const char *option, const char *text,
                        tse_client_start *start, char *time_buf, size_t time_buf_len);

/*
 * The argument of --payload: the text itself, "@path" (the file's content)
 * or "@-" (standard input). Returns -1 with *out set (caller frees), else
 * a usage error's exit code.
 */
int tse_cli_read_payload(const tse_cli *cli, const char *arg, char **out);

/* Connects a client with the global options; returns -1 or an exit code. */
int tse_cli_connect(const tse_cli *cli, tse_client **out);

/*
 * Reports an SDK failure on stderr ("eventctl <command>: STATUS: field
 * "<field>": <message>") and returns the exit code for status.
 */
int tse_cli_fail(const tse_cli *cli, tse_client_status status, const tse_client_error *err);

/* Parses an SDK JSON answer; NULL (reported, exit 4 is the caller's) when
 * it does not parse. */
json_t *tse_cli_parse_answer(const tse_cli *cli, const char *json_text);

/*
 * The end of a call that answers JSON text (status st, err): reports a
 * failure, else prints the answer, as is with --json, otherwise through
 * render. Frees json_text; returns the exit code.
 */
int tse_cli_show_answer(const tse_cli *cli, tse_client_status st, const tse_client_error *err,
                        char *json_text, void (*render)(const json_t *));

/* A scalar JSON value as text (numbers, proto3's quoted 64-bit integers,
 * booleans as yes/no); "" for null and containers. Borrows v. */
const char *tse_cli_scalar(const json_t *v, char *buf, size_t len);

/*
 * Prints text from the service for a terminal: C0 and C1 control
 * characters and DEL as \n, \t, \r or \u00HH, everything else (UTF-8
 * included) as is; JSON text stays JSON (those are its own escapes). So an answer never moves the
 * cursor, rings the bell or splits a one-line record over two lines.
 * Returns the bytes written.
 */
size_t tse_cli_print_text(const char *s);

/* The commands: argv[0] is the command's name. Each returns an exit code. */
int tse_cli_cmd_publish(tse_cli *cli, int argc, char *argv[]);
int tse_cli_cmd_tail(tse_cli *cli, int argc, char *argv[]);
int tse_cli_cmd_subscriptions(tse_cli *cli, int argc, char *argv[]);
int tse_cli_cmd_stats(tse_cli *cli, int argc, char *argv[]);
int tse_cli_cmd_types(tse_cli *cli, int argc, char *argv[]);
int tse_cli_cmd_health(tse_cli *cli, int argc, char *argv[]);
int tse_cli_cmd_token(tse_cli *cli, int argc, char *argv[]);
int tse_cli_cmd_dead_letters(tse_cli *cli, int argc, char *argv[]);
int tse_cli_cmd_seek(tse_cli *cli, int argc, char *argv[]);
int tse_cli_cmd_snapshots(tse_cli *cli, int argc, char *argv[]);

/* Human rendering of answers (render.c). */
/* obj's string member key; "" when absent or not a string. */
const char *tse_cli_str(const json_t *obj, const char *key);
void tse_cli_render_subscription(const json_t *sub);
void tse_cli_render_subscription_list(const json_t *answer);
void tse_cli_render_stats(const json_t *stats);
void tse_cli_render_types(const json_t *answer, const char *only_type);

#endif

/*
 * cmd_info.c - the read-only commands: `stats` (GetStats), `types`
 * (ListEventTypes, optionally one type's fields) and `health`
 * (grpc.health.v1 Check). Each prints human text, or the server's answer
 * as proto3 JSON with --json.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char stats_help[] =
    "Usage: eventctl stats [--json]\n"
    "\n"
    "The service's counters: events published, consumed, acked, nacked,\n"
    "failed, redelivered and dead-lettered; events per type; stream lengths;\n"
    "the latency histograms (publish, Redis round trip, publish to delivery);\n"
    "subscriptions with their backlog, pending, oldest unacked age and\n"
    "consumers; uptime and whether Redis is connected.\n"
    "\n";

static const char types_help[] =
    "Usage: eventctl types [TYPE] [--json]\n"
    "\n"
    "The event type catalog: every typed event type with its payload message,\n"
    "schema version and description. With TYPE (e.g. sample.created): that\n"
    "type's payload fields (name, type, required, format); exit 1 when TYPE is\n"
    "not in the catalog. Other well-formed types are accepted with a generic\n"
    "JSON payload.\n"
    "\n";

static const char health_help[] =
    "Usage: eventctl health [--service NAME] [--json]\n"
    "\n"
    "Asks the server's grpc.health.v1 service whether it is serving (it is\n"
    "only while it reaches Redis). Prints SERVING, NOT_SERVING or\n"
    "SERVICE_UNKNOWN. Exit 0 when serving, 3 when not serving or\n"
    "unreachable, 1 when the service name is unknown.\n"
    "\n"
    "Options:\n"
    "  --service NAME  the service to check (default: the server as a whole;\n"
    "                  e.g. tracseq.events.v1.EventService)\n"
    "\n";

static const struct option plain_options[] = {TSE_CLI_GLOBAL_OPTIONS, {NULL, 0, NULL, 0}};

/* Parses a command that takes at most max_args positionals; -1 to go on. */
static int parse_simple(tse_cli *cli, int argc, char *argv[], const struct option *table,
                        int (*on_option)(void *, int, const char *), void *ctx, const char *help,
                        int max_args, int *first)
{
    int rc = tse_cli_parse(cli, argc, argv, table, on_option, ctx, help, first);

    if (rc != -1)
        return rc;
    if (argc - *first > max_args)
        return tse_cli_usage_error(cli, "unexpected argument '%s'", argv[*first + max_args]);
    return -1;
}

/* Calls fetch, then prints its answer: JSON as is, or through render. */
static int fetch_and_show(tse_cli *cli,
                          tse_client_status (*fetch)(tse_client *, char **, tse_client_error *),
                          void (*render)(const json_t *))
{
    tse_client *client = NULL;
    tse_client_error err;
    tse_client_status st;
    char *text = NULL;
    int rc;

    rc = tse_cli_connect(cli, &client);
    if (rc != -1)
        return rc;
    st = fetch(client, &text, &err);
    rc = tse_cli_show_answer(cli, st, &err, text, render);
    tse_client_destroy(client);
    return rc;
}

/* ---- stats ---- */

int tse_cli_cmd_stats(tse_cli *cli, int argc, char *argv[])
{
    int first;
    int rc = parse_simple(cli, argc, argv, plain_options, NULL, NULL, stats_help, 0, &first);

    if (rc != -1)
        return rc;
    return fetch_and_show(cli, tse_client_stats, tse_cli_render_stats);
}

/* ---- types ---- */

/* The entry of type in a ListEventTypes answer, or NULL. */
static const json_t *find_type(const json_t *answer, const char *type)
{
    const json_t *types = json_object_get(answer, "event_types");
    const json_t *t;
    size_t i;

    json_array_foreach(types, i, t)
    {
        const char *name = json_string_value(json_object_get(t, "event_type"));

        if (name != NULL && strcmp(name, type) == 0)
            return t;
    }
    return NULL;
}

static void render_all_types(const json_t *answer)
{
    tse_cli_render_types(answer, NULL);
}

/* `types TYPE`: fetched, then looked up here (the catalog is small). */
static int show_one_type(tse_cli *cli, const char *type)
{
    tse_client *client = NULL;
    tse_client_error err;
    tse_client_status st;
    char *text = NULL;
    json_t *v = NULL;
    int rc;

    rc = tse_cli_connect(cli, &client);
    if (rc != -1)
        return rc;
    st = tse_client_event_types(client, &text, &err);
    if (st != TSE_CLIENT_OK) {
        rc = tse_cli_fail(cli, st, &err);
        goto out;
    }
    v = tse_cli_parse_answer(cli, text);
    if (v == NULL) {
        rc = TSE_CLI_EXIT_INTERNAL;
        goto out;
    }
    if (find_type(v, type) == NULL) {
        fprintf(stderr,
                "eventctl types: NOT_FOUND: %s is not in the catalog (other well-formed "
                "types are published with a generic JSON payload)\n",
                type);
        rc = TSE_CLI_EXIT_REFUSED;
        goto out;
    }
    if (cli->json) {
        json_dumpf(find_type(v, type), stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
    } else {
        tse_cli_render_types(v, type);
    }
    rc = TSE_CLI_EXIT_OK;
out:
    json_decref(v);
    tse_client_free(text);
    tse_client_destroy(client);
    return rc;
}

int tse_cli_cmd_types(tse_cli *cli, int argc, char *argv[])
{
    int first;
    int rc = parse_simple(cli, argc, argv, plain_options, NULL, NULL, types_help, 1, &first);

    if (rc != -1)
        return rc;
    if (first < argc)
        return show_one_type(cli, argv[first]);
    return fetch_and_show(cli, tse_client_event_types, render_all_types);
}

/* ---- health ---- */

enum { OPT_SERVICE = TSE_CLI_OPT_FIRST_COMMAND };

static const struct option health_options[] = {
    TSE_CLI_GLOBAL_OPTIONS,
    {"service", required_argument, NULL, OPT_SERVICE},
    {NULL, 0, NULL, 0},
};

static int on_health_option(void *ctx, int code, const char *arg)
{
    *(const char **)ctx = arg;
    return -1;
}

static const char *serving_name(tse_client_serving s)
{
    switch (s) {
    case TSE_CLIENT_SERVING: return "SERVING";
    case TSE_CLIENT_NOT_SERVING: return "NOT_SERVING";
    case TSE_CLIENT_SERVICE_UNKNOWN: return "SERVICE_UNKNOWN";
    default: return "UNKNOWN";
    }
}

int tse_cli_cmd_health(tse_cli *cli, int argc, char *argv[])
{
    const char *service = NULL;
    tse_client_serving serving = TSE_CLIENT_SERVING_UNKNOWN;
    tse_client *client = NULL;
    tse_client_error err;
    tse_client_status st;
    int first;
    int rc = parse_simple(cli, argc, argv, health_options, on_health_option, &service, health_help,
                          0, &first);

    if (rc != -1)
        return rc;
    rc = tse_cli_connect(cli, &client);
    if (rc != -1)
        return rc;
    st = tse_client_health(client, service, &serving, &err);
    tse_client_destroy(client);
    if (st != TSE_CLIENT_OK)
        return tse_cli_fail(cli, st, &err);
    if (cli->json)
        printf("{\"status\":\"%s\"}\n", serving_name(serving));
    else
        printf("%s\n", serving_name(serving));
    if (serving == TSE_CLIENT_SERVING)
        return TSE_CLI_EXIT_OK;
    return serving == TSE_CLIENT_SERVICE_UNKNOWN ? TSE_CLI_EXIT_REFUSED : TSE_CLI_EXIT_UNAVAILABLE;
}

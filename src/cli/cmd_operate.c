/*
 * cmd_operate.c - `eventctl dead-letters`, `eventctl seek` and `eventctl
 * snapshots`: the levers on a subscription's state, each one EventService
 * call made through the SDK's tse_client_call_json (the request built here
 * as JSON, the answer printed as JSON with --json or as text).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char dead_letters_help[] =
    "Usage: eventctl dead-letters ACTION SUBSCRIPTION [ARGS] [OPTIONS]\n"
    "\n"
    "The events a subscription gave up on (delivered max-attempts times and\n"
    "never acked), each with its original event, stream, attempts and reason.\n"
    "Needs the subscription's owner or an admin when the service checks\n"
    "identities.\n"
    "\n"
    "Actions:\n"
    "  list SUB [--page-size N] [--page-token T]\n"
    "                     a page of dead letters, oldest first\n"
    "  get SUB ID         one dead letter with its event\n"
    "  redrive SUB ID... | --all\n"
    "                     deliver them to the subscription again (attempts\n"
    "                     count from 1) and remove them from the store\n"
    "  purge SUB ID... | --all\n"
    "                     delete them for good\n"
    "\n"
    "Examples:\n"
    "  eventctl dead-letters list lims-samples\n"
    "  eventctl dead-letters redrive lims-samples 1718700000000-0\n"
    "  eventctl dead-letters purge lims-samples --all\n"
    "\n";

static const char seek_help[] =
    "Usage: eventctl seek SUBSCRIPTION (earliest | latest | TIME | --snapshot NAME)\n"
    "\n"
    "Moves an existing subscription, keeping its name, settings and\n"
    "subscribers: to the earliest retained event, the latest (skip the\n"
    "backlog), a publish TIME (RFC 3339 or Unix milliseconds), or a snapshot.\n"
    "Pending deliveries are settled: events before the new position count as\n"
    "acknowledged, events after it are delivered again.\n"
    "\n"
    "Examples:\n"
    "  eventctl seek lims-samples earliest\n"
    "  eventctl seek lims-samples 2024-06-18T12:00:00Z\n"
    "  eventctl seek lims-samples --snapshot before-upgrade\n"
    "\n";

static const char snapshots_help[] =
    "Usage: eventctl snapshots ACTION SUBSCRIPTION [NAME]\n"
    "\n"
    "A snapshot records a subscription's acknowledged position under a name,\n"
    "to seek back to (eventctl seek SUB --snapshot NAME).\n"
    "\n"
    "Actions:\n"
    "  create SUB NAME    record the position now\n"
    "  list SUB           the subscription's snapshots\n"
    "  delete SUB NAME    delete one\n"
    "\n";

enum { OPT_ALL = TSE_CLI_OPT_FIRST_COMMAND, OPT_PAGE_SIZE, OPT_PAGE_TOKEN, OPT_SNAPSHOT };

static const struct option options[] = {
    TSE_CLI_GLOBAL_OPTIONS,
    {"all", no_argument, NULL, OPT_ALL},
    {"page-size", required_argument, NULL, OPT_PAGE_SIZE},
    {"page-token", required_argument, NULL, OPT_PAGE_TOKEN},
    {"snapshot", required_argument, NULL, OPT_SNAPSHOT},
    {NULL, 0, NULL, 0},
};

typedef struct op_args {
    tse_cli *cli;
    bool all;
    long page_size; /* -1: not given */
    const char *page_token, *snapshot;
    char time_buf[64];
} op_args;

static int on_option(void *ctx, int code, const char *arg)
{
    op_args *a = ctx;

    switch (code) {
    case OPT_ALL: a->all = true; return -1;
    case OPT_PAGE_SIZE:
        return tse_cli_parse_int(a->cli, "--page-size", arg, 1, 1000, &a->page_size);
    case OPT_PAGE_TOKEN: a->page_token = arg; return -1;
    case OPT_SNAPSHOT: a->snapshot = arg; return -1;
    default: return TSE_CLI_EXIT_USAGE;
    }
}

/* ---- rendering ---- */

static void render_dead_letter_row(const json_t *dl)
{
    const json_t *ev = json_object_get(dl, "event");
    char attempts[32];

    printf("%-22s %-8s %-24s %-40s %s\n", tse_cli_str(dl, "id"),
           tse_cli_scalar(json_object_get(dl, "attempts"), attempts, sizeof(attempts)),
           tse_cli_str(dl, "reason"), tse_cli_str(dl, "stream"), tse_cli_str(ev, "event_type"));
}

static void render_dead_letters(const json_t *answer)
{
    const json_t *list = json_object_get(answer, "dead_letters");
    size_t i;
    json_t *dl;
    char total[32];

    printf("%-22s %-8s %-24s %-40s %s\n", "ID", "ATTEMPTS", "REASON", "STREAM", "EVENT TYPE");
    json_array_foreach(list, i, dl) render_dead_letter_row(dl);
    printf("%zu shown, %s in the store\n", json_array_size(list),
           tse_cli_scalar(json_object_get(answer, "total"), total, sizeof(total)));
    if (tse_cli_str(answer, "next_page_token")[0] != '\0')
        printf("next page: --page-token %s\n", tse_cli_str(answer, "next_page_token"));
}

static void render_json(const json_t *answer)
{
    json_dumpf(answer, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
}

static void render_counts(const json_t *answer)
{
    const char *keys[] = {"redriven", "purged", "streams", "pending_cleared"};
    const char *lists[] = {"unknown_ids", "expired_ids"};
    char buf[32];

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (json_object_get(answer, keys[i]) != NULL)
            printf("%s: %s\n", keys[i],
                   tse_cli_scalar(json_object_get(answer, keys[i]), buf, sizeof(buf)));
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        const json_t *l = json_object_get(answer, lists[i]), *v;
        size_t k;
        if (json_array_size(l) == 0)
            continue;
        printf("%s:", lists[i]);
        json_array_foreach(l, k, v) printf(" %s", json_string_value(v));
        fputc('\n', stdout);
    }
}

static void render_snapshots(const json_t *answer)
{
    const json_t *list = json_object_get(answer, "snapshots"), *s;
    size_t i;

    printf("%-32s %-30s %s\n", "NAME", "CREATED", "STREAMS");
    json_array_foreach(list, i, s)
        printf("%-32s %-30s %zu\n", tse_cli_str(s, "name"), tse_cli_str(s, "created_at"),
               json_object_size(json_object_get(s, "positions")));
}

static void render_deleted(const json_t *answer)
{
    (void)answer;
    printf("deleted\n");
}

/* ---- the call ---- */

/* Calls method with request (taken), prints the answer with render. */
static int call(op_args *a, const char *method, json_t *request, void (*render)(const json_t *))
{
    tse_client *client = NULL;
    tse_client_error err;
    tse_client_status st;
    char *text = json_dumps(request, JSON_COMPACT), *answer = NULL;
    int rc;

    json_decref(request);
    if (text == NULL)
        return TSE_CLI_EXIT_INTERNAL;
    rc = tse_cli_connect(a->cli, &client);
    if (rc == -1) {
        st = tse_client_call_json(client, method, text, &answer, &err);
        rc = tse_cli_show_answer(a->cli, st, &err, answer, render);
        tse_client_destroy(client);
    }
    free(text);
    return rc;
}

/* A request {"subscription": sub, "ids": [args...]} or {"all": true}. */
static json_t *ids_request(const op_args *a, const char *sub, int n, char *const *ids)
{
    json_t *req = json_pack("{s:s}", "subscription", sub), *list = json_array();

    for (int i = 0; i < n; i++)
        json_array_append_new(list, json_string(ids[i]));
    json_object_set_new(req, "ids", list);
    if (a->all)
        json_object_set_new(req, "all", json_true());
    return req;
}

/* Parses options and returns -1 with *first the first positional, or the
 * exit code; prints help when asked. */
int tse_cli_cmd_dead_letters(tse_cli *cli, int argc, char *argv[])
{
    op_args a = {.cli = cli, .page_size = -1};
    const char *action, *sub;
    int first,
        rc = tse_cli_parse(cli, argc, argv, options, on_option, &a, dead_letters_help, &first), n;
    bool many;
    json_t *req;

    if (rc != -1)
        return rc;
    if (argc - first < 2)
        return tse_cli_usage_error(cli, "an ACTION and a SUBSCRIPTION are required "
                                        "(list, get, redrive, purge)");
    action = argv[first];
    sub = argv[first + 1];
    n = argc - first - 2;
    many = strcmp(action, "redrive") == 0 || strcmp(action, "purge") == 0;
    if (a.snapshot != NULL || (!many && a.all) ||
        (strcmp(action, "list") != 0 && (a.page_size >= 0 || a.page_token)))
        return tse_cli_usage_error(cli, "--all goes with redrive and purge, --page-size and "
                                        "--page-token with list");
    if (strcmp(action, "list") == 0) {
        if (n != 0)
            return tse_cli_usage_error(cli, "list takes one SUBSCRIPTION");
        req = json_pack("{s:s}", "subscription", sub);
        if (a.page_size >= 0)
            json_object_set_new(req, "page_size", json_integer(a.page_size));
        if (a.page_token)
            json_object_set_new(req, "page_token", json_string(a.page_token));
        return call(&a, "ListDeadLetters", req, render_dead_letters);
    }
    if (strcmp(action, "get") == 0) {
        if (n != 1)
            return tse_cli_usage_error(cli, "get takes a SUBSCRIPTION and one ID");
        req = json_pack("{s:s, s:s}", "subscription", sub, "id", argv[first + 2]);
        return call(&a, "GetDeadLetter", req, render_json);
    }
    if (!many)
        return tse_cli_usage_error(cli, "unknown action '%s' (list, get, redrive, purge)", action);
    if ((n == 0) == !a.all)
        return tse_cli_usage_error(cli, "%s takes IDs or --all (not both)", action);
    req = ids_request(&a, sub, n, argv + first + 2);
    return call(&a, action[0] == 'r' ? "RedriveDeadLetters" : "PurgeDeadLetters", req,
                render_counts);
}

int tse_cli_cmd_seek(tse_cli *cli, int argc, char *argv[])
{
    op_args a = {.cli = cli, .page_size = -1};
    tse_client_start start;
    int first, rc = tse_cli_parse(cli, argc, argv, options, on_option, &a, seek_help, &first), n;
    json_t *req;

    if (rc != -1)
        return rc;
    n = argc - first;
    if (a.all || a.page_size >= 0 || a.page_token)
        return tse_cli_usage_error(cli, "seek takes SUBSCRIPTION and a target only");
    if (n != (a.snapshot ? 1 : 2))
        return tse_cli_usage_error(cli, "seek takes a SUBSCRIPTION and one target: earliest, "
                                        "latest, a TIME, or --snapshot NAME");
    req = json_pack("{s:s}", "subscription", argv[first]);
    if (a.snapshot) {
        json_object_set_new(req, "snapshot", json_string(a.snapshot));
        return call(&a, "Seek", req, render_counts);
    }
    rc =
        tse_cli_parse_start(cli, "target", argv[first + 1], &start, a.time_buf, sizeof(a.time_buf));
    if (rc != -1) {
        json_decref(req);
        return rc;
    }
    json_object_set_new(req, "position",
                        json_string(start == TSE_CLIENT_START_EARLIEST ? "START_POSITION_EARLIEST"
                                    : start == TSE_CLIENT_START_LATEST
                                        ? "START_POSITION_LATEST"
                                        : "START_POSITION_TIMESTAMP"));
    if (start == TSE_CLIENT_START_TIMESTAMP)
        json_object_set_new(req, "time", json_string(a.time_buf));
    return call(&a, "Seek", req, render_counts);
}

int tse_cli_cmd_snapshots(tse_cli *cli, int argc, char *argv[])
{
    op_args a = {.cli = cli, .page_size = -1};
    const char *action;
    int first, rc = tse_cli_parse(cli, argc, argv, options, on_option, &a, snapshots_help, &first),
               n;

    if (rc != -1)
        return rc;
    if (a.all || a.page_size >= 0 || a.page_token || a.snapshot)
        return tse_cli_usage_error(cli, "snapshots takes no options of its own");
    if (argc - first < 2)
        return tse_cli_usage_error(cli, "an ACTION and a SUBSCRIPTION are required "
                                        "(create, list, delete)");
    action = argv[first];
    n = argc - first - 2;
    if (strcmp(action, "list") == 0 && n == 0)
        return call(&a, "ListSnapshots", json_pack("{s:s}", "subscription", argv[first + 1]),
                    render_snapshots);
    if ((strcmp(action, "create") == 0 || strcmp(action, "delete") == 0) && n == 1)
        return call(
            &a, action[0] == 'c' ? "CreateSnapshot" : "DeleteSnapshot",
            json_pack("{s:s, s:s}", "subscription", argv[first + 1], "name", argv[first + 2]),
            action[0] == 'c' ? render_json : render_deleted);
    return tse_cli_usage_error(cli, "snapshots create SUB NAME | list SUB | delete SUB NAME");
}

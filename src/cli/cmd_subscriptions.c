/*
 * cmd_subscriptions.c - `eventctl subscriptions list|create|get|delete`:
 * the durable subscriptions of the service, through the SDK's admin calls.
 *
 * All actions share one option table, so global options may sit anywhere
 * (even before the action); options of `create` given to another action
 * are a usage error rather than silently ignored.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_PATTERNS 64

static const char help[] =
    "Usage: eventctl subscriptions ACTION [ARGS] [OPTIONS]\n"
    "\n"
    "Durable subscriptions: named consumer groups over every event type matching\n"
    "their patterns. Events wait in a subscription until a subscriber acks them.\n"
    "\n"
    "Actions:\n"
    "  list               every subscription with its lag and pending counts\n"
    "  create NAME --types PATTERN[,PATTERN...] [OPTIONS]\n"
    "                     create one (accepted when it exists with the same\n"
    "                     settings; ALREADY_EXISTS, exit 1, otherwise)\n"
    "  get NAME           one subscription with its statistics (exit 1 when\n"
    "                     unknown)\n"
    "  delete NAME        delete it and end its subscribers (exit 1 when\n"
    "                     unknown)\n"
    "\n"
    "Options of create:\n"
    "  --types PATTERNS   patterns, comma-separated or repeated (required):\n"
    "                     \"*\", \"sample.*\", \"*.completed\", exact types\n"
    "  --from earliest|latest|TIME  start position (default latest); TIME is\n"
    "                     RFC 3339 or Unix milliseconds\n"
    "  --ack-deadline MS  redeliver an unacked event after MS (default 30000)\n"
    "  --max-attempts N   deliveries before dead-lettering (default 5;\n"
    "                     0 = unlimited)\n"
    "  --max-in-flight N  unacked deliveries per subscriber (default 100)\n"
    "  --auto-ack         the server acks on send (at-most-once)\n"
    "  --min-backoff MS   retry policy: a nacked or expired delivery waits MS,\n"
    "                     doubled per attempt, before it comes again (default 0)\n"
    "  --max-backoff MS   the most it waits (default 600000 with --min-backoff)\n"
    "  --dead-letter-type TYPE  publish events given up on as events of TYPE\n"
    "                     (carrying the original, its stream, attempts and\n"
    "                     reason) instead of keeping them in the dead-letter store\n"
    "\n"
    "Examples:\n"
    "  eventctl subscriptions create lims-samples --types 'sample.*' --from earliest\n"
    "  eventctl subscriptions create lims-retry --types 'sample.*' --min-backoff 1000 \\\n"
    "      --max-backoff 60000 --dead-letter-type deadletter.lims\n"
    "  eventctl subscriptions get lims-samples --json\n"
    "  eventctl subscriptions delete lims-samples\n"
    "\n";

enum {
    OPT_TYPES = TSE_CLI_OPT_FIRST_COMMAND,
    OPT_FROM,
    OPT_ACK_DEADLINE,
    OPT_MAX_ATTEMPTS,
    OPT_MAX_IN_FLIGHT,
    OPT_AUTO_ACK,
    OPT_MIN_BACKOFF,
    OPT_MAX_BACKOFF,
    OPT_DEAD_LETTER_TYPE
};

static const struct option options[] = {
    TSE_CLI_GLOBAL_OPTIONS,
    {"types", required_argument, NULL, OPT_TYPES},
    {"from", required_argument, NULL, OPT_FROM},
    {"ack-deadline", required_argument, NULL, OPT_ACK_DEADLINE},
    {"max-attempts", required_argument, NULL, OPT_MAX_ATTEMPTS},
    {"max-in-flight", required_argument, NULL, OPT_MAX_IN_FLIGHT},
    {"auto-ack", no_argument, NULL, OPT_AUTO_ACK},
    {"min-backoff", required_argument, NULL, OPT_MIN_BACKOFF},
    {"max-backoff", required_argument, NULL, OPT_MAX_BACKOFF},
    {"dead-letter-type", required_argument, NULL, OPT_DEAD_LETTER_TYPE},
    {NULL, 0, NULL, 0},
};

typedef struct subs_args {
    tse_cli *cli;
    tse_client_subscription_spec spec;
    const char *from;
    char *types_copy[MAX_PATTERNS]; /* strdup'd --types arguments, split in place */
    size_t n_copies;
    const char *patterns[MAX_PATTERNS];
    bool create_options; /* any option only create takes */
    char time_buf[64];
} subs_args;

/* Splits "a,b,c" into patterns; empty items are a usage error. */
static int add_types(subs_args *a, const char *arg)
{
    char *copy, *item, *save = NULL;

    if (a->n_copies == MAX_PATTERNS || (copy = strdup(arg)) == NULL)
        return tse_cli_usage_error(a->cli, "too many --types");
    a->types_copy[a->n_copies++] = copy;
    if (copy[0] == '\0' || copy[0] == ',' || copy[strlen(copy) - 1] == ',' || strstr(copy, ",,"))
        return tse_cli_usage_error(a->cli, "--types has an empty pattern: '%s'", arg);
    for (item = strtok_r(copy, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
        if (a->spec.n_event_types == MAX_PATTERNS)
            return tse_cli_usage_error(a->cli, "at most %d patterns", MAX_PATTERNS);
        a->patterns[a->spec.n_event_types++] = item;
    }
    return -1;
}

static int int_option(subs_args *a, const char *name, const char *arg, long min, int *out)
{
    long v;
    int rc = tse_cli_parse_int(a->cli, name, arg, min, INT_MAX, &v);

    if (rc == -1)
        *out = (int)v;
    return rc;
}

static int on_option(void *ctx, int code, const char *arg)
{
    subs_args *a = ctx;
    int rc;

    a->create_options = true;
    switch (code) {
    case OPT_TYPES: return add_types(a, arg);
    case OPT_FROM: a->from = arg; return -1;
    case OPT_AUTO_ACK: a->spec.auto_ack = true; return -1;
    case OPT_ACK_DEADLINE: return int_option(a, "--ack-deadline", arg, 1, &a->spec.ack_deadline_ms);
    case OPT_MAX_IN_FLIGHT: return int_option(a, "--max-in-flight", arg, 1, &a->spec.max_in_flight);
    case OPT_MIN_BACKOFF: return int_option(a, "--min-backoff", arg, 0, &a->spec.min_backoff_ms);
    case OPT_MAX_BACKOFF: return int_option(a, "--max-backoff", arg, 0, &a->spec.max_backoff_ms);
    case OPT_DEAD_LETTER_TYPE: a->spec.dead_letter_type = arg; return -1;
    case OPT_MAX_ATTEMPTS:
        rc = int_option(a, "--max-attempts", arg, 0, &a->spec.max_delivery_attempts);
        /* The SDK's "unlimited" is negative; 0 is its "default". */
        if (rc == -1 && a->spec.max_delivery_attempts == 0)
            a->spec.max_delivery_attempts = -1;
        return rc;
    default: return TSE_CLI_EXIT_USAGE;
    }
}

/* ---- actions ---- */

static int do_create(subs_args *a, tse_client *client, const char *name)
{
    tse_client_error err;
    tse_client_status st;
    char *json = NULL;

    a->spec.name = name;
    a->spec.event_types = a->patterns;
    st = tse_client_subscription_create(client, &a->spec, &json, &err);
    if (st == TSE_CLIENT_OK && !a->cli->json)
        printf("subscription %s is ready\n", name);
    return tse_cli_show_answer(a->cli, st, &err, json, tse_cli_render_subscription);
}

static int do_get(subs_args *a, tse_client *client, const char *name)
{
    tse_client_error err;
    char *json = NULL;
    tse_client_status st = tse_client_subscription_get(client, name, &json, &err);

    return tse_cli_show_answer(a->cli, st, &err, json, tse_cli_render_subscription);
}

static int do_list(subs_args *a, tse_client *client)
{
    tse_client_error err;
    char *json = NULL;
    tse_client_status st = tse_client_subscription_list(client, &json, &err);

    return tse_cli_show_answer(a->cli, st, &err, json, tse_cli_render_subscription_list);
}

static int do_delete(subs_args *a, tse_client *client, const char *name)
{
    tse_client_error err;
    tse_client_status st;

    st = tse_client_subscription_delete(client, name, &err);
    if (st != TSE_CLIENT_OK)
        return tse_cli_fail(a->cli, st, &err);
    if (a->cli->json) {
        json_t *o = json_pack("{s:s, s:b}", "name", name, "deleted", 1);

        json_dumpf(o, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
        json_decref(o);
    } else
        printf("deleted subscription %s\n", name);
    return TSE_CLI_EXIT_OK;
}

/* The settings of create that need checking before any call. */
static int check_create(subs_args *a)
{
    int rc = -1;

    if (a->spec.n_event_types == 0)
        return tse_cli_usage_error(a->cli, "--types is required");
    if (a->from != NULL)
        rc = tse_cli_parse_start(a->cli, "--from", a->from, &a->spec.start, a->time_buf,
                                 sizeof(a->time_buf));
    if (a->spec.start == TSE_CLIENT_START_TIMESTAMP)
        a->spec.start_time = a->time_buf;
    return rc;
}

/* Checks the arguments of action; returns -1 when they fit. */
static int check_args(subs_args *a, const char *action, int n_args)
{
    bool is_list = strcmp(action, "list") == 0;
    bool is_create = strcmp(action, "create") == 0;

    if (!is_list && !is_create && strcmp(action, "get") != 0 && strcmp(action, "delete") != 0)
        return tse_cli_usage_error(a->cli, "unknown action '%s' (list, create, get, delete)",
                                   action);
    if (is_list && n_args != 0)
        return tse_cli_usage_error(a->cli, "list takes no arguments");
    if (!is_list && n_args != 1)
        return tse_cli_usage_error(a->cli, "%s needs exactly one subscription NAME", action);
    if (!is_create && a->create_options)
        return tse_cli_usage_error(a->cli, "only create takes --types, --from, --ack-deadline, "
                                           "--max-attempts, --max-in-flight, --auto-ack, "
                                           "--min-backoff, --max-backoff, --dead-letter-type");
    return is_create ? check_create(a) : -1;
}

static int run_action(subs_args *a, const char *action, const char *name)
{
    tse_client *client = NULL;
    int rc;

    rc = tse_cli_connect(a->cli, &client);
    if (rc != -1)
        return rc;
    if (strcmp(action, "list") == 0)
        rc = do_list(a, client);
    else if (strcmp(action, "create") == 0)
        rc = do_create(a, client, name);
    else if (strcmp(action, "get") == 0)
        rc = do_get(a, client, name);
    else
        rc = do_delete(a, client, name);
    tse_client_destroy(client);
    return rc;
}

int tse_cli_cmd_subscriptions(tse_cli *cli, int argc, char *argv[])
{
    subs_args a = {.cli = cli};
    char command[64];
    size_t i;
    int first, rc;

    rc = tse_cli_parse(cli, argc, argv, options, on_option, &a, help, &first);
    if (rc != -1)
        goto out;
    if (first >= argc) {
        rc = tse_cli_usage_error(cli, "an ACTION is required (list, create, get, delete)");
        goto out;
    }
    snprintf(command, sizeof(command), "subscriptions %s", argv[first]);
    rc = check_args(&a, argv[first], argc - first - 1);
    if (rc != -1)
        goto out;
    cli->command = command;
    rc = run_action(&a, argv[first], first + 1 < argc ? argv[first + 1] : NULL);
    cli->command = "subscriptions";
out:
    for (i = 0; i < a.n_copies; i++)
        free(a.types_copy[i]);
    return rc;
}

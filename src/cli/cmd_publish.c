/*
 * cmd_publish.c - `eventctl publish TYPE --payload JSON|@file`: builds the
 * event with the SDK (which encodes catalog types as their typed message
 * and names any bad field) and publishes it, blocking until it is in Redis.
 *
 * Invariant: an event is sent only when the whole command line parsed;
 * a usage error never reaches the server.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_METADATA 64

static const char help[] =
    "Usage: eventctl publish TYPE --payload JSON|@FILE|@- [OPTIONS]\n"
    "\n"
    "Publishes one event of type TYPE (e.g. sample.created) and waits until the\n"
    "service stored it. Catalog types are checked against their schema; any\n"
    "other well-formed type carries its payload as generic JSON.\n"
    "\n"
    "Options:\n"
    "  --payload JSON|@FILE|@-  the payload: a JSON object, a file holding one,\n"
    "                           or standard input (required)\n"
    "  --subject TEXT           e.g. sample-42\n"
    "  --priority N             1 (highest) .. 5; default 3\n"
    "  --correlation-id UUID    ties the events of one workflow together\n"
    "  --causation-id ID        the id of the event that caused this one\n"
    "  --id UUID                the event's id (a retry with the same id is\n"
    "                           stored once); default: a new one\n"
    "  --metadata KEY=VALUE     envelope metadata; repeatable\n"
    "  --traceparent TP         W3C Trace Context of the publishing span,\n"
    "                           00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>\n"
    "  --tracestate TS          its W3C tracestate (vendor key=value list)\n"
    "  --strict                 exit 5 when the service answers schema_valid=false\n"
    "                           (the event is stored all the same)\n"
    "\n"
    "Prints the event id and the stream entry id, or with --json the result as\n"
    "{\"event_id\", \"stream_id\", \"duplicate\", \"published_at\", \"schema_valid\"}.\n"
    "\n"
    "A lenient service stores a catalog-type payload that does not fit its schema\n"
    "as generic data (metadata schema_valid=false and schema_error) and answers\n"
    "schema_valid=false: eventctl then prints a warning on stderr and exits 0, or\n"
    "with --strict prints an error and exits 5. Either way the event is already\n"
    "stored and delivered to subscribers of its type; a strict service refuses\n"
    "such a payload instead (exit 1).\n"
    "\n"
    "Example:\n"
    "  eventctl publish sample.created --subject sample-42 --payload \\\n"
    "    '{\"sample_id\":\"123e4567-e89b-12d3-a456-426614174000\",\"barcode\":\"SAM-1\",...}'\n"
    "\n";

enum {
    OPT_PAYLOAD = TSE_CLI_OPT_FIRST_COMMAND,
    OPT_SUBJECT,
    OPT_PRIORITY,
    OPT_CORRELATION,
    OPT_CAUSATION,
    OPT_ID,
    OPT_METADATA,
    OPT_STRICT,
    OPT_TRACEPARENT,
    OPT_TRACESTATE
};

static const struct option options[] = {
    TSE_CLI_GLOBAL_OPTIONS,
    {"payload", required_argument, NULL, OPT_PAYLOAD},
    {"subject", required_argument, NULL, OPT_SUBJECT},
    {"priority", required_argument, NULL, OPT_PRIORITY},
    {"correlation-id", required_argument, NULL, OPT_CORRELATION},
    {"causation-id", required_argument, NULL, OPT_CAUSATION},
    {"id", required_argument, NULL, OPT_ID},
    {"metadata", required_argument, NULL, OPT_METADATA},
    {"strict", no_argument, NULL, OPT_STRICT},
    {"traceparent", required_argument, NULL, OPT_TRACEPARENT},
    {"tracestate", required_argument, NULL, OPT_TRACESTATE},
    {NULL, 0, NULL, 0},
};

typedef struct publish_args {
    tse_cli *cli;
    const char *payload_arg;
    bool strict; /* schema_valid=false is an error (exit 5), not a warning */
    tse_client_publish_opts opts;
    /* Metadata keys are copied (the '=' is cut); values point into them. */
    char *md_keys[MAX_METADATA];
    tse_client_metadata md[MAX_METADATA];
} publish_args;

static int add_metadata(publish_args *a, const char *arg)
{
    char *copy, *eq;

    if (a->opts.n_metadata == MAX_METADATA)
        return tse_cli_usage_error(a->cli, "at most %d --metadata options", MAX_METADATA);
    eq = strchr(arg, '=');
    if (eq == NULL || eq == arg)
        return tse_cli_usage_error(a->cli, "--metadata must be KEY=VALUE, not '%s'", arg);
    copy = strdup(arg);
    if (copy == NULL)
        return TSE_CLI_EXIT_INTERNAL;
    copy[eq - arg] = '\0';
    a->md_keys[a->opts.n_metadata] = copy;
    a->md[a->opts.n_metadata].key = copy;
    a->md[a->opts.n_metadata].value = copy + (eq - arg) + 1;
    a->opts.n_metadata++;
    return -1;
}

static int on_option(void *ctx, int code, const char *arg)
{
    publish_args *a = ctx;
    long v;
    int rc;

    switch (code) {
    case OPT_PAYLOAD: a->payload_arg = arg; return -1;
    case OPT_SUBJECT: a->opts.subject = arg; return -1;
    case OPT_CORRELATION: a->opts.correlation_id = arg; return -1;
    case OPT_CAUSATION: a->opts.causation_id = arg; return -1;
    case OPT_ID: a->opts.event_id = arg; return -1;
    case OPT_METADATA: return add_metadata(a, arg);
    case OPT_STRICT: a->strict = true; return -1;
    case OPT_TRACEPARENT: a->opts.traceparent = arg; return -1;
    case OPT_TRACESTATE: a->opts.tracestate = arg; return -1;
    case OPT_PRIORITY:
        /* Only the syntax is ours to check: the range is the SDK's rule. */
        rc = tse_cli_parse_int(a->cli, "--priority", arg, -1000, 1000, &v);
        if (rc == -1)
            a->opts.priority = (int)v;
        return rc;
    default: return TSE_CLI_EXIT_USAGE;
    }
}

static void print_result(const tse_cli *cli, const tse_client_publish_result *r)
{
    json_t *o;

    if (!cli->json) {
        printf("published %s (stream entry %s)%s\n", r->event_id, r->stream_id,
               r->duplicate ? ", a duplicate of an earlier publish" : "");
        return;
    }
    o = json_pack("{s:s, s:s, s:b, s:{s:I, s:i}, s:b}", "event_id", r->event_id, "stream_id",
                  r->stream_id, "duplicate", r->duplicate, "published_at", "seconds",
                  (json_int_t)r->published_at_seconds, "nanos", (int)r->published_at_nanos,
                  "schema_valid", r->schema_valid);
    if (o != NULL) {
        json_dumpf(o, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
    }
    json_decref(o);
}

/*
 * schema_valid=false: a lenient service stored the payload as generic data
 * (it did not fit type's catalog schema). The event is in its stream
 * already, so even --strict can only report it.
 */
static int schema_check(const publish_args *a, const char *type, const tse_client_publish_result *r)
{
    if (r->schema_valid)
        return TSE_CLI_EXIT_OK;
    fprintf(stderr,
            "eventctl publish: %s: the %s payload did not match its catalog schema; the service "
            "stored event %s as generic data (metadata schema_valid=false, schema_error says "
            "why)%s\n",
            a->strict ? "error" : "warning", type, r->event_id,
            a->strict ? "; it is stored and delivered all the same" : "");
    return a->strict ? TSE_CLI_EXIT_SCHEMA_INVALID : TSE_CLI_EXIT_OK;
}

static int publish(publish_args *a, const char *type, const char *payload)
{
    tse_client *client = NULL;
    tse_client_publish_result result;
    tse_client_error err;
    tse_client_status st;
    int rc;

    rc = tse_cli_connect(a->cli, &client);
    if (rc != -1)
        return rc;
    a->opts.metadata = a->md;
    st = tse_client_publish_json(client, type, payload, &a->opts, &result, &err);
    if (st == TSE_CLIENT_OK) {
        print_result(a->cli, &result);
        rc = schema_check(a, type, &result);
    } else {
        rc = tse_cli_fail(a->cli, st, &err);
    }
    tse_client_destroy(client);
    return rc;
}

int tse_cli_cmd_publish(tse_cli *cli, int argc, char *argv[])
{
    publish_args a = {.cli = cli};
    char *payload = NULL;
    size_t i;
    int first, rc;

    rc = tse_cli_parse(cli, argc, argv, options, on_option, &a, help, &first);
    if (rc != -1)
        goto out;
    if (argc - first != 1) {
        rc = tse_cli_usage_error(cli, argc - first == 0 ? "an event TYPE is required"
                                                        : "exactly one event TYPE is expected");
        goto out;
    }
    if (a.payload_arg == NULL) {
        rc = tse_cli_usage_error(cli, "--payload is required (JSON, @FILE or @-)");
        goto out;
    }
    rc = tse_cli_read_payload(cli, a.payload_arg, &payload);
    if (rc != -1)
        goto out;
    rc = publish(&a, argv[first], payload);
out:
    free(payload);
    for (i = 0; i < a.opts.n_metadata; i++)
        free(a.md_keys[i]);
    return rc;
}

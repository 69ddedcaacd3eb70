/*
 * cmd_tail.c - `eventctl tail PATTERN...`: prints matching events as they
 * are published, one line each, and acks each one once its line is out.
 *
 * Without --subscription it creates a temporary subscription of its own
 * (a unique name) and deletes it on every way out: --count reached,
 * SIGINT/SIGTERM, or an error after creation. With --subscription NAME it
 * joins that durable subscription, creating it first when PATTERNs are
 * given, and leaves it in place.
 *
 * Signals: SIGINT and SIGTERM are blocked in every thread (gRPC's included,
 * since they inherit the mask of the thread that makes them) and taken by
 * one watcher thread with sigwait, which asks the subscriber to stop. So no
 * handler ever races with the subscriber's destruction.
 *
 * Invariant: an event is acked only after its line was written and flushed;
 * an event that could not be printed, or arrived after --count was reached,
 * is nacked so a durable subscription gets it again.
 *
 * Acks go on the Subscribe stream (no round trip per event); when the
 * subscriber stops (--count reached, Ctrl-C) the SDK acks the last ones
 * again with a unary Acknowledge, so printed events do not come back to a
 * durable subscription.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define MAX_PATTERNS 64

static const char help[] =
    "Usage: eventctl tail [PATTERN...] [OPTIONS]\n"
    "\n"
    "Prints events whose type matches a PATTERN as they are published, and\n"
    "acks each one after printing it. Patterns: \"*\" (everything), \"sample.*\"\n"
    "(one domain), \"*.completed\", or exact types. Ctrl-C or SIGTERM ends it\n"
    "cleanly (exit 0).\n"
    "\n"
    "Options:\n"
    "  --from earliest|latest|TIME  where a new subscription starts: every\n"
    "                      retained event, only new ones (default), or events\n"
    "                      published at or after TIME (RFC 3339 such as\n"
    "                      2024-06-18T12:00:00Z, or Unix milliseconds)\n"
    "  --subscription NAME use the durable subscription NAME (created from the\n"
    "                      PATTERNs if it does not exist; PATTERNs may be left\n"
    "                      out when it exists). Without it a temporary\n"
    "                      subscription is made and deleted on exit.\n"
    "  --count N           exit after N events\n"
    "  --json              one proto3 JSON object (the whole event) per line\n"
    "\n"
    "Default output, one line per event:\n"
    "  TIME TYPE pPRIORITY id=ID [subject=..] [correlation=..] [causation=..]\n"
    "  [traceparent=.. [tracestate=..]] source=.. [[KEY=VALUE ...]] PAYLOAD\n"
    "\n"
    "Examples:\n"
    "  eventctl tail 'sample.*' 'storage.temperature_alert'\n"
    "  eventctl tail '*' --from earliest --count 10 --json\n"
    "\n";

enum { OPT_FROM = TSE_CLI_OPT_FIRST_COMMAND, OPT_SUBSCRIPTION, OPT_COUNT };

static const struct option options[] = {
    TSE_CLI_GLOBAL_OPTIONS,
    {"from", required_argument, NULL, OPT_FROM},
    {"subscription", required_argument, NULL, OPT_SUBSCRIPTION},
    {"count", required_argument, NULL, OPT_COUNT},
    {NULL, 0, NULL, 0},
};

typedef struct tail_args {
    tse_cli *cli;
    const char *from;
    const char *subscription; /* NULL: a temporary one */
    long count;               /* 0: no limit */
} tail_args;

/* What the delivery callback needs; it runs on the thread calling run. */
typedef struct tail_state {
    const tse_cli *cli;
    tse_client_subscriber *sub;
    long count;
    long printed;
    int write_errno; /* set when stdout failed: the run ends */
    bool bad_event;  /* an event that could not be rendered */
} tail_state;

/* The signal watcher: the only thread that takes SIGINT and SIGTERM. */
typedef struct signal_watch {
    pthread_t thread;
    sigset_t set;
    pthread_mutex_t lock;
    tse_client_subscriber *sub; /* guarded by lock; NULL while none runs */
    bool signalled;             /* guarded by lock */
} signal_watch;

static int on_option(void *ctx, int code, const char *arg)
{
    tail_args *a = ctx;

    switch (code) {
    case OPT_FROM: a->from = arg; return -1;
    case OPT_SUBSCRIPTION: a->subscription = arg; return -1;
    case OPT_COUNT: return tse_cli_parse_int(a->cli, "--count", arg, 1, 1000000000, &a->count);
    default: return TSE_CLI_EXIT_USAGE;
    }
}

/* ---- signals ---- */

static void *watch_signals(void *arg)
{
    signal_watch *w = arg;
    int sig;

    for (;;) {
        if (sigwait(&w->set, &sig) != 0)
            continue;
        pthread_mutex_lock(&w->lock);
        w->signalled = true;
        if (w->sub != NULL)
            tse_client_subscriber_stop(w->sub);
        pthread_mutex_unlock(&w->lock);
    }
    return NULL;
}

static bool watch_start(signal_watch *w)
{
    sigemptyset(&w->set);
    sigaddset(&w->set, SIGINT);
    sigaddset(&w->set, SIGTERM);
    w->sub = NULL;
    w->signalled = false;
    if (pthread_sigmask(SIG_BLOCK, &w->set, NULL) != 0)
        return false;
    pthread_mutex_init(&w->lock, NULL);
    if (pthread_create(&w->thread, NULL, watch_signals, w) != 0) {
        pthread_mutex_destroy(&w->lock);
        return false;
    }
    return true;
}

/* Points the watcher at sub (or NULL); returns whether a signal came. */
static bool watch_set(signal_watch *w, tse_client_subscriber *sub)
{
    bool signalled;

    pthread_mutex_lock(&w->lock);
    w->sub = sub;
    signalled = w->signalled;
    pthread_mutex_unlock(&w->lock);
    return signalled;
}

/* Ends the watcher (sigwait is a cancellation point; the lock is free
 * there). Signals stay blocked: the process is about to exit. */
static void watch_stop(signal_watch *w)
{
    pthread_cancel(w->thread);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->lock);
}

/* ---- printing ---- */

static void format_time(int64_t secs, int32_t nanos, char *buf, size_t len)
{
    time_t t = (time_t)secs;
    struct tm tm;
    char base[32] = "?";

    if (gmtime_r(&t, &tm) != NULL)
        strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%03dZ", base, (int)(nanos / 1000000));
}

/* " name=value" with value printed safe (see tse_cli_print_text). */
static void print_pair(const char *name, const char *value)
{
    printf(" %s=", name);
    tse_cli_print_text(value);
}

/* One line per event, whatever the event holds: every text from it is
 * printed safe, so a newline or a terminal escape in a subject, a metadata
 * value or a payload string can neither split the line nor reach the
 * terminal. */
static bool print_pretty(const tse_client_event_view *ev)
{
    char when[48];
    size_t i;

    format_time(ev->timestamp_seconds, ev->timestamp_nanos, when, sizeof(when));
    printf("%s ", when);
    tse_cli_print_text(ev->event_type);
    printf(" p%d", ev->priority);
    print_pair("id", ev->id);
    if (ev->subject[0] != '\0')
        print_pair("subject", ev->subject);
    if (ev->correlation_id[0] != '\0')
        print_pair("correlation", ev->correlation_id);
    if (ev->causation_id[0] != '\0')
        print_pair("causation", ev->causation_id);
    if (ev->traceparent[0] != '\0')
        print_pair("traceparent", ev->traceparent);
    if (ev->tracestate[0] != '\0')
        print_pair("tracestate", ev->tracestate);
    print_pair("source", ev->source_service);
    for (i = 0; i < ev->n_metadata; i++) {
        printf("%s", i == 0 ? " [" : " ");
        tse_cli_print_text(ev->metadata[i].key);
        putchar('=');
        tse_cli_print_text(ev->metadata[i].value);
        printf("%s", i + 1 == ev->n_metadata ? "]" : "");
    }
    putchar(' ');
    tse_cli_print_text(ev->payload_json);
    putchar('\n');
    return true;
}

/* The whole envelope on one line: re-encoded compactly, so a multi-line
 * answer from the SDK can never split an event over lines. */
static bool print_json(const tse_client_event_view *ev)
{
    char *text = tse_client_envelope_json(ev->envelope, ev->envelope_len);
    json_t *v = text != NULL ? json_loads(text, 0, NULL) : NULL;
    bool ok = v != NULL;

    if (ok) {
        json_dumpf(v, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
    }
    json_decref(v);
    tse_client_free(text);
    return ok;
}

/* Acks one printed event (see the file comment). */
static void ack(tse_client_delivery *d, const tse_client_event_view *ev)
{
    if (tse_client_delivery_ack(d) != TSE_CLIENT_OK)
        fprintf(stderr, "eventctl tail: could not ack %s (it will come back)\n", ev->id);
}

static void on_delivery(void *arg, const tse_client_event_view *ev, tse_client_delivery *d)
{
    tail_state *s = arg;
    bool ok;

    if (s->write_errno != 0 || s->bad_event || (s->count > 0 && s->printed >= s->count)) {
        tse_client_delivery_nack(d, 0);
        return;
    }
    ok = s->cli->json ? print_json(ev) : print_pretty(ev);
    if (!ok) {
        s->bad_event = true;
    } else if (fflush(stdout) != 0 || ferror(stdout)) {
        s->write_errno = errno != 0 ? errno : EIO;
    } else {
        ack(d, ev);
        s->printed++;
        if (s->count == 0 || s->printed < s->count)
            return;
    }
    if (!ok || s->write_errno != 0)
        tse_client_delivery_nack(d, 0);
    tse_client_subscriber_stop(s->sub);
}

/* ---- the subscription ---- */

static int fill_spec(tail_args *a, tse_client_subscription_spec *spec, char *time_buf,
                     size_t time_len)
{
    int rc = -1;

    spec->start = TSE_CLIENT_START_LATEST;
    if (a->from != NULL)
        rc = tse_cli_parse_start(a->cli, "--from", a->from, &spec->start, time_buf, time_len);
    if (spec->start == TSE_CLIENT_START_TIMESTAMP)
        spec->start_time = time_buf;
    return rc;
}

/* A name no other tail shares: eventctl-tail-<host>-<pid>-<nanoseconds>. */
static void temporary_name(char *buf, size_t len)
{
    char host[24] = "host";
    struct timespec ts;
    size_t i;

    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    for (i = 0; host[i] != '\0'; i++)
        if (!((host[i] >= 'a' && host[i] <= 'z') || (host[i] >= 'A' && host[i] <= 'Z') ||
              (host[i] >= '0' && host[i] <= '9') || host[i] == '-'))
            host[i] = '-';
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(buf, len, "eventctl-tail-%s-%ld-%09ld", host, (long)getpid(), (long)ts.tv_nsec);
}

/*
 * Makes sure the subscription to read exists: creates the temporary one,
 * or the durable one when patterns were given (the server accepts an
 * existing one with the same settings). *created tells whether the caller
 * must delete it.
 */
static int prepare(tail_args *a, tse_client *client, const tse_client_subscription_spec *spec,
                   bool *created)
{
    tse_client_error err;
    tse_client_status st;

    *created = false;
    if (spec->n_event_types == 0)
        return -1; /* joining an existing durable subscription by name */
    st = tse_client_subscription_create(client, spec, NULL, &err);
    if (st != TSE_CLIENT_OK)
        return tse_cli_fail(a->cli, st, &err);
    *created = a->subscription == NULL;
    return -1;
}

static int receive(tail_args *a, tse_client *client, const char *name, signal_watch *w)
{
    tse_client_subscriber_options so = {.subscription = name, .ack_mode = TSE_CLIENT_ACK_MANUAL};
    tail_state s = {.cli = a->cli, .count = a->count};
    tse_client_error err;
    tse_client_status st;
    int rc = TSE_CLI_EXIT_OK;

    st = tse_client_subscriber_create(client, &so, on_delivery, &s, &s.sub, &err);
    if (st != TSE_CLIENT_OK)
        return tse_cli_fail(a->cli, st, &err);
    if (watch_set(w, s.sub))
        goto out; /* Ctrl-C while we were setting up */
    st = tse_client_subscriber_run(s.sub, &err);
    watch_set(w, NULL);
    if (st != TSE_CLIENT_OK && st != TSE_CLIENT_CANCELLED)
        rc = tse_cli_fail(a->cli, st, &err);
    else if (s.bad_event)
        rc = tse_cli_fail(a->cli, TSE_CLIENT_INTERNAL,
                          &(tse_client_error){.message = "an event could not be rendered"});
    else if (s.write_errno != 0 && s.write_errno != EPIPE) {
        fprintf(stderr, "eventctl tail: cannot write: %s\n", strerror(s.write_errno));
        rc = TSE_CLI_EXIT_INTERNAL;
    }
out:
    watch_set(w, NULL);
    tse_client_subscriber_destroy(s.sub);
    return rc;
}

static void delete_temporary(tse_client *client, const char *name)
{
    tse_client_error err;

    if (tse_client_subscription_delete(client, name, &err) != TSE_CLIENT_OK)
        fprintf(stderr, "eventctl tail: could not delete temporary subscription %s: %s\n", name,
                err.message);
}

static int tail(tail_args *a, char *patterns[], size_t n_patterns)
{
    tse_client_subscription_spec spec = {0};
    char time_buf[64], temp_name[96];
    tse_client *client = NULL;
    signal_watch w;
    bool created = false;
    int rc;

    rc = fill_spec(a, &spec, time_buf, sizeof(time_buf));
    if (rc != -1)
        return rc;
    temporary_name(temp_name, sizeof(temp_name));
    spec.name = a->subscription != NULL ? a->subscription : temp_name;
    spec.event_types = (const char *const *)patterns;
    spec.n_event_types = n_patterns;
    if (!watch_start(&w))
        return tse_cli_fail(a->cli, TSE_CLIENT_INTERNAL, NULL);
    rc = tse_cli_connect(a->cli, &client);
    if (rc != -1)
        goto out_watch;
    rc = prepare(a, client, &spec, &created);
    if (rc == -1)
        rc = receive(a, client, spec.name, &w);
    if (created)
        delete_temporary(client, spec.name);
    tse_client_destroy(client);
out_watch:
    watch_stop(&w);
    return rc;
}

int tse_cli_cmd_tail(tse_cli *cli, int argc, char *argv[])
{
    tail_args a = {.cli = cli};
    size_t n;
    int first, rc;

    rc = tse_cli_parse(cli, argc, argv, options, on_option, &a, help, &first);
    if (rc != -1)
        return rc;
    n = (size_t)(argc - first);
    if (n == 0 && a.subscription == NULL)
        return tse_cli_usage_error(cli, "at least one PATTERN is required (\"*\" for all)");
    if (n > MAX_PATTERNS)
        return tse_cli_usage_error(cli, "at most %d PATTERNs", MAX_PATTERNS);
    if (n == 0 && a.from != NULL)
        return tse_cli_usage_error(cli, "--from applies to a new subscription: give PATTERNs");
    return tail(&a, argv + first, n);
}

/*
 * temperature_monitor.c - a consumer from the design document's storage
 * scenario: it subscribes to `storage.temperature_alert` and reacts to each
 * alert by printing one line (where a real monitor would page someone),
 * then the SDK acks it.
 *
 * The subscription is durable (default name "temperature-monitor"): alerts
 * raised while the monitor is down wait for it. Run several monitors with
 * the same subscription and each alert goes to exactly one of them.
 *
 * Usage: temperature_monitor [--server HOST:PORT] [--subscription NAME]
 *                            [--count N]
 * Prints "monitoring ..." once it is subscribed (from then on no alert is
 * missed), then one line per alert. Ends after N alerts with --count, or on
 * Ctrl-C / SIGTERM; exits 0 then, 1 when the service refused the
 * subscription, 3 when it was unreachable.
 *
 * Signals: SIGINT and SIGTERM are blocked before the SDK starts any thread
 * (threads inherit the mask), and one watcher thread takes them with
 * sigwait and asks the subscriber to stop; so no signal handler ever runs.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tracseq/client.h"

typedef struct monitor {
    tse_client_subscriber *sub;
    long count; /* 0: until stopped */
    long seen;
} monitor;

typedef struct watcher {
    pthread_t thread;
    sigset_t signals;
    tse_client_subscriber *sub;
} watcher;

/* The alert's payload fields (proto3 JSON of TemperatureAlert). */
static void react(const tse_client_event_view *ev)
{
    json_t *p = json_loads(ev->payload_json, 0, NULL);
    double current = json_number_value(json_object_get(p, "current_temperature"));
    double target = json_number_value(json_object_get(p, "target_temperature"));
    const char *zone = json_string_value(json_object_get(p, "zone_name"));
    const char *location = json_string_value(json_object_get(p, "location_id"));
    const char *threshold = json_string_value(json_object_get(p, "threshold_type"));
    const char *sensor = json_string_value(json_object_get(p, "sensor_id"));
    double off = current > target ? current - target : target - current;

    /* Ten degrees off target spoils samples: that one wakes someone up. */
    printf("ALERT %s location=%s zone=%s current=%.1fC target=%.1fC off_by=%.1fC threshold=%s "
           "sensor=%s priority=%d event=%s\n",
           off >= 10.0 ? "CRITICAL" : "WARNING", location ? location : "?", zone ? zone : "?",
           current, target, off, threshold ? threshold : "?", sensor ? sensor : "?", ev->priority,
           ev->id);
    fflush(stdout);
    json_decref(p);
}

/* Runs on the subscriber's thread; the SDK acks when it returns. */
static void on_alert(void *arg, const tse_client_event_view *ev, tse_client_delivery *d)
{
    monitor *m = arg;

    if (m->count > 0 && m->seen >= m->count) {
        /* Beyond --count: leave it to the next monitor, right away. */
        tse_client_delivery_nack(d, 0);
        return;
    }
    react(ev);
    if (++m->seen == m->count)
        tse_client_subscriber_stop(m->sub);
}

static void *watch(void *arg)
{
    watcher *w = arg;
    int sig;

    sigwait(&w->signals, &sig);
    tse_client_subscriber_stop(w->sub);
    return NULL;
}

static int exit_code(tse_client_status st)
{
    if (st == TSE_CLIENT_OK || st == TSE_CLIENT_CANCELLED)
        return 0;
    return st == TSE_CLIENT_UNAVAILABLE || st == TSE_CLIENT_DEADLINE_EXCEEDED ? 3 : 1;
}

static int fail(const char *what, tse_client_status st, const tse_client_error *err)
{
    fprintf(stderr, "temperature_monitor: %s: %s: %s\n", what, tse_client_status_name(st),
            err->message);
    return exit_code(st);
}

/* Subscribes, then receives on this thread until stopped. */
static int monitor_alerts(tse_client *client, const char *name, monitor *m, watcher *w)
{
    static const char *const types[] = {"storage.temperature_alert"};
    tse_client_subscription_spec spec = {.event_types = types, .n_event_types = 1};
    tse_client_subscriber_options so = {
        .subscription = name, .create = &spec, .ack_mode = TSE_CLIENT_ACK_AUTO};
    tse_client_error err;
    tse_client_status st;

    st = tse_client_subscriber_create(client, &so, on_alert, m, &m->sub, &err);
    if (st != TSE_CLIENT_OK)
        return fail("subscribe", st, &err);
    printf("monitoring storage.temperature_alert on subscription %s\n", name);
    fflush(stdout);
    w->sub = m->sub;
    if (pthread_create(&w->thread, NULL, watch, w) != 0) {
        tse_client_subscriber_destroy(m->sub);
        return 1;
    }
    st = tse_client_subscriber_run(m->sub, &err);
    /* Wake the watcher (it takes this thread-directed signal), then free. */
    pthread_kill(w->thread, SIGTERM);
    pthread_join(w->thread, NULL);
    tse_client_subscriber_destroy(m->sub);
    return st == TSE_CLIENT_OK || st == TSE_CLIENT_CANCELLED ? 0 : fail("receive", st, &err);
}

static int usage(void)
{
    fprintf(stderr,
            "usage: temperature_monitor [--server HOST:PORT] [--subscription NAME] [--count N]\n");
    return 2;
}

int main(int argc, char *argv[])
{
    const char *name = "temperature-monitor";
    monitor m = {0};
    watcher w;
    tse_client_options o;
    tse_client *client = NULL;
    tse_client_error err;
    tse_client_status st;
    int i, rc;

    tse_client_options_init(&o);
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--server") == 0 && i + 1 < argc)
            o.target = argv[++i];
        else if (strcmp(argv[i], "--subscription") == 0 && i + 1 < argc)
            name = argv[++i];
        else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc && atol(argv[i + 1]) > 0)
            m.count = atol(argv[++i]);
        else
            return usage();
    }
    sigemptyset(&w.signals);
    sigaddset(&w.signals, SIGINT);
    sigaddset(&w.signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &w.signals, NULL);

    st = tse_client_connect(&o, &client, &err);
    if (st != TSE_CLIENT_OK)
        return fail("connect", st, &err);
    rc = monitor_alerts(client, name, &m, &w);
    tse_client_destroy(client);
    return rc;
}

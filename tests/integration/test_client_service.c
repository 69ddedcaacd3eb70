/*
 * test_client_sdk.c - the client SDK against a real redis-server and the
 * real tracseq-events binary: typed helpers round-trip to an SDK
 * subscriber with every field intact, pipelined publishing (order, errors,
 * volume checked in Redis), publishing to a stopped service, a subscriber
 * surviving a service restart, manual acks and redelivery, pull / ack,
 * subscription management, stats, types and health.
 *
 * Invariants of this file: every test uses its own subscription names and
 * event types (or a correlation id of its own), so tests sharing one
 * service never see each other's events; tests that stop or restart a
 * service start their own. Waits are bounded and generous for a loaded
 * machine, but never accept a lost or reordered event.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "sdk_world.h"
#include "tracseq/client.h"
#include "wait.h"

#define WAIT_MS 20000

typedef tse_test_sdk_world world;

static world *W;

static tse_client *client_for(const char *addr, int timeout_ms)
{
    return tse_test_sdk_client(addr, "sdk-test", timeout_ms);
}

static int world_up(void **state)
{
    static const char *const args[] = {"--redis-timeout=500ms", NULL};

    W = tse_test_sdk_world_start(true, args, "sdk-test");
    return 0;
}

static int world_down(void **state)
{
    tse_test_sdk_world_stop(W);
    W = NULL;
    return 0;
}

static void create_sub(const char *name, const char *pattern, int ack_deadline_ms)
{
    const char *patterns[] = {pattern};
    tse_client_subscription_spec spec = {.name = name,
                                         .event_types = patterns,
                                         .n_event_types = 1,
                                         .ack_deadline_ms = ack_deadline_ms};
    tse_client_error err;

    if (tse_client_subscription_create(W->client, &spec, NULL, &err) != TSE_CLIENT_OK)
        fail_msg("create %s: %s", name, err.message);
}

/* ============================== a collecting subscriber =================== */

#define MAX_GOT 64

typedef struct got_event {
    char type[64], subject[64], corr[64], cause[64], source[64], id[40];
    int priority;
    unsigned attempt;
    char md_lane[16];
    json_t *payload;
} got_event;

typedef struct collector {
    pthread_mutex_t mu;
    got_event ev[MAX_GOT];
    int n;
    bool ack_all;          /* manual mode: ack everything but "noack" subjects */
    const char *only_corr; /* keep only this correlation id */
} collector;

static void on_delivery(void *arg, const tse_client_event_view *v, tse_client_delivery *d)
{
    collector *c = arg;
    got_event *g;

    if (c->ack_all && strcmp(v->subject, "noack") != 0)
        assert_int_equal(tse_client_delivery_ack(d), TSE_CLIENT_OK);
    if (c->only_corr != NULL && strcmp(v->correlation_id, c->only_corr) != 0)
        return;
    pthread_mutex_lock(&c->mu);
    if (c->n < MAX_GOT) {
        g = &c->ev[c->n++];
        snprintf(g->type, sizeof(g->type), "%s", v->event_type);
        snprintf(g->subject, sizeof(g->subject), "%s", v->subject);
        snprintf(g->corr, sizeof(g->corr), "%s", v->correlation_id);
        snprintf(g->cause, sizeof(g->cause), "%s", v->causation_id);
        snprintf(g->source, sizeof(g->source), "%s", v->source_service);
        snprintf(g->id, sizeof(g->id), "%s", v->id);
        g->priority = v->priority;
        g->attempt = v->delivery_attempt;
        for (size_t i = 0; i < v->n_metadata; i++)
            if (strcmp(v->metadata[i].key, "lane") == 0)
                snprintf(g->md_lane, sizeof(g->md_lane), "%s", v->metadata[i].value);
        g->payload = json_loads(v->payload_json, 0, NULL);
    }
    pthread_mutex_unlock(&c->mu);
}

static int collected(collector *c)
{
    int n;

    pthread_mutex_lock(&c->mu);
    n = c->n;
    pthread_mutex_unlock(&c->mu);
    return n;
}

static bool wait_collected(collector *c, int n, int timeout_ms)
{
    tse_test_waiter waiter;

    tse_test_waiter_init(&waiter, timeout_ms);
    while (collected(c) < n && tse_test_waiter_poll(&waiter)) {
    }
    return collected(c) >= n;
}

static void collector_free(collector *c)
{
    for (int i = 0; i < c->n; i++)
        json_decref(c->ev[i].payload);
    pthread_mutex_destroy(&c->mu);
}

static tse_client_subscriber *subscribe(tse_client *client, const char *name, collector *c,
                                        tse_client_ack_mode mode)
{
    tse_client_subscriber_options o = {.subscription = name, .ack_mode = mode};
    tse_client_subscriber *s = NULL;
    tse_client_error err;

    if (tse_client_subscriber_create(client, &o, on_delivery, c, &s, &err) != TSE_CLIENT_OK)
        fail_msg("subscriber: %s", err.message);
    assert_int_equal(tse_client_subscriber_start(s, NULL), TSE_CLIENT_OK);
    return s;
}

/* ============================== typed helpers ============================= */

#define CORR  "6f1c8a52-3f8e-4a59-9f57-0d6c2b7f1a10"
#define UUID1 "0b5e7f8a-91c2-4d3e-8f60-1a2b3c4d5e6f"
#define UUID2 "1c6f8a9b-a2d3-4e4f-9071-2b3c4d5e6f70"
#define UUID3 "2d7a9bac-b3e4-4f50-a182-3c4d5e6f7081"

/* What each helper was given, as the payload JSON the subscriber must see. */
static const struct {
    const char *type;
    const char *payload;
} expected[] = {
    {"sample.created", "{\"sample_id\":\"" UUID1 "\",\"barcode\":\"BC-1\",\"sample_type\":"
                       "\"blood\",\"submitter_id\":\"" UUID2 "\",\"lab_id\":\"" UUID3 "\"}"},
    {"sample.validated", "{\"sample_id\":\"" UUID1 "\",\"barcode\":\"BC-1\",\"validator_id\":"
                         "\"v-1\",\"validation_status\":\"passed\",\"validation_notes\":\"ok\"}"},
    {"sample.status_changed",
     "{\"sample_id\":\"" UUID1 "\",\"barcode\":\"BC-1\",\"old_status\":\"received\","
     "\"new_status\":\"stored\",\"changed_by\":\"tech\",\"reason\":\"routine\"}"},
    {"sample.stored", "{\"sample_id\":\"" UUID1 "\",\"barcode\":\"BC-1\",\"location_id\":\"f-2\","
                      "\"storage_zone\":\"-80C\",\"position\":\"A1\",\"stored_by\":\"tech\"}"},
    {"sample.assigned_to_sequencing",
     "{\"sample_id\":\"" UUID1 "\",\"barcode\":\"BC-1\",\"sequencing_job_id\":\"job-9\","
     "\"assigned_by\":\"planner\"}"},
    {"sample.completed", "{\"sample_id\":\"" UUID1 "\",\"barcode\":\"BC-1\",\"completion_status\":"
                         "\"done\",\"results_location\":\"s3://r\",\"completed_by\":\"tech\"}"},
    {"storage.temperature_alert",
     "{\"location_id\":\"f-1\",\"zone_name\":\"z-a\",\"current_temperature\":-60.5,"
     "\"target_temperature\":-80.0,\"threshold_type\":\"high\",\"sensor_id\":\"s-7\"}"},
    {"storage.capacity_warning",
     "{\"location_id\":\"r-1\",\"location_name\":\"Rack\",\"current_capacity\":95,"
     "\"max_capacity\":100,\"utilization_percent\":95.0}"},
    {"storage.sensor_data_received",
     "{\"sensor_id\":\"s-1\",\"location_id\":\"room\",\"sensor_type\":\"climate\","
     "\"measurements\":{\"temperature\":21.5}}"},
    {"auth.user_logged_in", "{\"user_id\":\"u-1\",\"username\":\"ada\",\"session_id\":\"x-1\","
                            "\"ip_address\":\"10.0.0.1\"}"},
    {"auth.user_logged_out", "{\"user_id\":\"u-1\",\"username\":\"ada\",\"session_id\":\"x-1\","
                             "\"logout_reason\":\"timeout\"}"},
    {"auth.login_failed",
     "{\"username\":\"eve\",\"failure_reason\":\"locked\",\"ip_address\":\"10.6.6.6\"}"},
    {"document.uploaded", "{\"document_id\":\"d-1\",\"filename\":\"f.pdf\",\"file_type\":\"pdf\","
                          "\"file_size\":\"5000000000\",\"uploaded_by\":\"ada\"}"},
    {"document.processing_completed",
     "{\"document_id\":\"d-1\",\"filename\":\"f.pdf\",\"processing_status\":\"ok\","
     "\"extracted_data\":{\"pages\":3},\"confidence_score\":0.5}"},
    {"document.information_extracted",
     "{\"document_id\":\"d-1\",\"extraction_type\":\"ocr\",\"extracted_fields\":{\"name\":"
     "\"Ada\"},\"confidence_scores\":{\"name\":0.75}}"},
    {"sequencing.job_created",
     "{\"job_id\":\"j-1\",\"job_name\":\"Run\",\"job_type\":\"wgs\",\"priority\":2,"
     "\"samples\":[\"" UUID1 "\",\"" UUID2 "\"],\"created_by\":\"planner\"}"},
    {"sequencing.job_status_changed",
     "{\"job_id\":\"j-1\",\"job_name\":\"Run\",\"old_status\":\"queued\",\"new_status\":"
     "\"running\",\"progress_percent\":12.5}"},
    {"sequencing.job_completed",
     "{\"job_id\":\"j-1\",\"job_name\":\"Run\",\"completion_status\":\"success\","
     "\"total_samples\":10,\"successful_samples\":9,\"failed_samples\":1}"},
};

#define N_TYPES ((int)(sizeof(expected) / sizeof(expected[0])))

/* Calls every blocking helper once, with the arguments `expected` lists. */
static void publish_every_type(tse_client *c, const tse_client_publish_opts *o)
{
    tse_client_number m[] = {{"temperature", 21.5}}, sc[] = {{"name", 0.75}};
    const char *samples[] = {UUID1, UUID2};
    tse_client_status st[N_TYPES];
    tse_client_error err;
    int i = 0;

    st[i++] =
        tse_client_publish_sample_created(c, UUID1, "BC-1", "blood", UUID2, UUID3, o, NULL, &err);
    st[i++] =
        tse_client_publish_sample_validated(c, UUID1, "BC-1", "v-1", "passed", "ok", o, NULL, &err);
    st[i++] = tse_client_publish_sample_status_changed(c, UUID1, "BC-1", "received", "stored",
                                                       "tech", "routine", o, NULL, &err);
    st[i++] = tse_client_publish_sample_stored(c, UUID1, "BC-1", "f-2", "-80C", "A1", "tech", o,
                                               NULL, &err);
    st[i++] = tse_client_publish_sample_assigned_to_sequencing(c, UUID1, "BC-1", "job-9", "planner",
                                                               o, NULL, &err);
    st[i++] = tse_client_publish_sample_completed(c, UUID1, "BC-1", "done", "s3://r", "tech", o,
                                                  NULL, &err);
    st[i++] = tse_client_publish_temperature_alert(c, "f-1", "z-a", -60.5, -80.0, "high", "s-7", o,
                                                   NULL, &err);
    st[i++] = tse_client_publish_capacity_warning(c, "r-1", "Rack", 95, 100, 95.0, o, NULL, &err);
    st[i++] =
        tse_client_publish_sensor_data_received(c, "s-1", "room", "climate", m, 1, o, NULL, &err);
    st[i++] = tse_client_publish_user_logged_in(c, "u-1", "ada", "x-1", "10.0.0.1", o, NULL, &err);
    st[i++] = tse_client_publish_user_logged_out(c, "u-1", "ada", "x-1", "timeout", o, NULL, &err);
    st[i++] = tse_client_publish_login_failed(c, "eve", "locked", "10.6.6.6", o, NULL, &err);
    st[i++] = tse_client_publish_document_uploaded(c, "d-1", "f.pdf", "pdf", 5000000000ULL, "ada",
                                                   o, NULL, &err);
    st[i++] = tse_client_publish_document_processing_completed(c, "d-1", "f.pdf", "ok",
                                                               "{\"pages\":3}", 0.5, o, NULL, &err);
    st[i++] = tse_client_publish_document_information_extracted(
        c, "d-1", "ocr", "{\"name\":\"Ada\"}", sc, 1, o, NULL, &err);
    st[i++] = tse_client_publish_sequencing_job_created(c, "j-1", "Run", "wgs", 2, samples, 2,
                                                        "planner", o, NULL, &err);
    st[i++] = tse_client_publish_sequencing_job_status_changed(c, "j-1", "Run", "queued", "running",
                                                               12.5, o, NULL, &err);
    st[i++] = tse_client_publish_sequencing_job_completed(c, "j-1", "Run", "success", 10, 9, 1, o,
                                                          NULL, &err);
    for (i = 0; i < N_TYPES; i++)
        if (st[i] != TSE_CLIENT_OK)
            fail_msg("publishing %s: %s", expected[i].type, tse_client_status_name(st[i]));
}

/* JSON numbers compare by value: the codec may write -80.0 as -80. */
static bool same_value(json_t *a, json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b);
    return json_equal(a, b);
}

static const got_event *find_type(collector *c, const char *type)
{
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->ev[i].type, type) == 0)
            return &c->ev[i];
    return NULL;
}

static void test_every_typed_helper_round_trips_to_a_subscriber(void **state)
{
    const char *patterns[] = {"sample.*", "storage.*", "auth.*", "document.*", "sequencing.*"};
    tse_client_subscription_spec spec = {.event_types = patterns, .n_event_types = 5};
    tse_client_subscriber_options so = {.subscription = "sdk-typed", .create = &spec};
    tse_client_metadata md[] = {{"lane", "7"}};
    tse_client_publish_opts o = {.subject = "sample-42",
                                 .priority = 2,
                                 .correlation_id = CORR,
                                 .causation_id = "cause-1",
                                 .metadata = md,
                                 .n_metadata = 1};
    collector col = {.mu = PTHREAD_MUTEX_INITIALIZER, .only_corr = CORR};
    tse_client_subscriber *sub = NULL;

    assert_int_equal(tse_client_subscriber_create(W->client, &so, on_delivery, &col, &sub, NULL),
                     TSE_CLIENT_OK);
    assert_int_equal(tse_client_subscriber_start(sub, NULL), TSE_CLIENT_OK);
    publish_every_type(W->client, &o);
    assert_true(wait_collected(&col, N_TYPES, WAIT_MS));
    tse_client_subscriber_destroy(sub);
    for (int i = 0; i < N_TYPES; i++) {
        const got_event *g = find_type(&col, expected[i].type);
        json_t *want = json_loads(expected[i].payload, 0, NULL), *value;
        const char *key;

        if (g == NULL)
            fail_msg("%s never arrived", expected[i].type);
        assert_non_null(want);
        assert_string_equal(g->subject, "sample-42");
        assert_string_equal(g->corr, CORR);
        assert_string_equal(g->cause, "cause-1");
        assert_string_equal(g->source, "sdk-test");
        assert_string_equal(g->md_lane, "7");
        assert_int_equal(g->priority, 2);
        assert_int_equal(g->attempt, 1);
        json_object_foreach(want, key, value)
        {
            if (!same_value(value, json_object_get(g->payload, key)))
                fail_msg("%s: field %s differs", expected[i].type, key);
        }
        json_decref(want);
    }
    assert_int_equal(col.n, N_TYPES); /* auto acks: nothing came twice */
    collector_free(&col);
}

/* ============================== pipelined publish ========================= */

typedef struct pipe_state {
    pthread_mutex_t mu;
    uintptr_t next; /* the user_data expected next */
    long ok, errors, out_of_order;
    uintptr_t bad; /* the event expected to fail */
    tse_client_status bad_status;
    char bad_field[128];
} pipe_state;

static void on_result(void *arg, const tse_client_publish_outcome *o)
{
    pipe_state *p = arg;
    uintptr_t i = (uintptr_t)o->user_data;

    pthread_mutex_lock(&p->mu);
    if (i != p->next)
        p->out_of_order++;
    p->next = i + 1;
    if (o->status == TSE_CLIENT_OK && o->result->stream_id[0] != '\0' &&
        strchr(o->result->stream_id, '-') != NULL)
        p->ok++;
    else {
        p->errors++;
        if (i == p->bad && o->error != NULL) {
            p->bad_status = o->status;
            snprintf(p->bad_field, sizeof(p->bad_field), "%s", o->error->field);
        }
    }
    pthread_mutex_unlock(&p->mu);
}

/* Entries of every priority lane of one event type, from Redis itself. */
static long stream_entries(const char *type)
{
    long total = 0;

    for (int p = 1; p <= 5; p++) {
        char *r = tse_test_redis_cmd(W->redis, "XLEN tracseq:events:{%s}:p%d", type, p);
        assert_non_null(r);
        total += atol(r);
        free(r);
    }
    return total;
}

static void test_pipelined_10000_events_get_10000_callbacks_in_order(void **state)
{
    pipe_state ps = {.mu = PTHREAD_MUTEX_INITIALIZER, .bad = (uintptr_t)-1};
    tse_client_publisher *pub = NULL;
    tse_client_event *ev = NULL;
    tse_client_error err;

    assert_int_equal(
        tse_client_event_from_json("sdk.pipe", "{\"n\":1,\"note\":\"pipelined\"}", NULL, &ev, NULL),
        TSE_CLIENT_OK);
    assert_int_equal(tse_client_publisher_create(W->client, NULL, on_result, &ps, &pub, NULL),
                     TSE_CLIENT_OK);
    for (uintptr_t i = 0; i < 10000; i++)
        if (tse_client_publisher_publish(pub, ev, (void *)i, &err) != TSE_CLIENT_OK)
            fail_msg("publish %lu: %s", (unsigned long)i, err.message);
    assert_int_equal(tse_client_publisher_flush(pub, 60000, &err), TSE_CLIENT_OK);
    tse_client_publisher_destroy(pub);
    tse_client_event_destroy(ev);
    assert_int_equal(ps.ok, 10000);
    assert_int_equal(ps.errors, 0);
    assert_int_equal(ps.out_of_order, 0);
    assert_int_equal(stream_entries("sdk.pipe"), 10000);
}

/* Calls of EVALSHA Redis has served (INFO commandstats). */
static long evalsha_calls(void)
{
    char *r = tse_test_redis_cmd(W->redis, "INFO commandstats");
    const char *at;
    long n = 0;

    assert_non_null(r);
    if ((at = strstr(r, "cmdstat_evalsha:calls=")) != NULL)
        n = atol(at + strlen("cmdstat_evalsha:calls="));
    free(r);
    return n;
}

/*
 * Batching: no message carries more than batch_size events (every batch
 * with client ids is one script call, so at least 95 / 10 calls), events
 * published while earlier ones are in flight share messages (far fewer
 * calls than events), and every result comes back, in order.
 */
static void test_publisher_batches_up_to_batch_size(void **state)
{
    pipe_state ps = {.mu = PTHREAD_MUTEX_INITIALIZER, .bad = (uintptr_t)-1};
    tse_client_publisher *pub = NULL;
    tse_client_event *ev = NULL;
    long before = evalsha_calls(), calls;

    assert_int_equal(tse_client_event_from_json("sdk.batched", "{\"n\":1}", NULL, &ev, NULL),
                     TSE_CLIENT_OK);
    assert_int_equal(tse_client_publisher_create(
                         W->client,
                         &(tse_client_publisher_options){.batch_size = 10, .linger_ms = 1000},
                         on_result, &ps, &pub, NULL),
                     TSE_CLIENT_OK);
    for (uintptr_t i = 0; i < 95; i++)
        assert_int_equal(tse_client_publisher_publish(pub, ev, (void *)i, NULL), TSE_CLIENT_OK);
    assert_int_equal(tse_client_publisher_flush(pub, 30000, NULL), TSE_CLIENT_OK);
    tse_client_publisher_destroy(pub);
    tse_client_event_destroy(ev);
    calls = evalsha_calls() - before;
    assert_int_equal(ps.ok, 95);
    assert_int_equal(ps.out_of_order, 0);
    assert_int_equal(stream_entries("sdk.batched"), 95);
    if (calls < 10 || calls > 50)
        fail_msg("%ld script calls for 95 events in batches of at most 10", calls);
}

/*
 * publish_many: a burst goes out in full messages of batch_size (95 events
 * in batches of 10: exactly 10 messages, each one script call, where
 * publish() one by one starts with a message of one on an idle stream),
 * every result in order with its user_data; a NULL event queues nothing.
 */
static void test_publish_many_sends_full_batches(void **state)
{
    pipe_state ps = {.mu = PTHREAD_MUTEX_INITIALIZER, .bad = (uintptr_t)-1};
    tse_client_publisher *pub = NULL;
    tse_client_event *ev = NULL;
    const tse_client_event *evs[95];
    void *data[95];
    size_t queued = 7;
    tse_client_error err;
    long before, calls;

    assert_int_equal(tse_client_event_from_json("sdk.many", "{\"n\":1}", NULL, &ev, NULL),
                     TSE_CLIENT_OK);
    assert_int_equal(tse_client_publisher_create(W->client,
                                                 &(tse_client_publisher_options){.batch_size = 10},
                                                 on_result, &ps, &pub, NULL),
                     TSE_CLIENT_OK);
    for (uintptr_t i = 0; i < 95; i++) {
        evs[i] = ev;
        data[i] = (void *)i;
    }
    before = evalsha_calls();
    assert_int_equal(tse_client_publisher_publish_many(pub, evs, data, 95, &queued, &err),
                     TSE_CLIENT_OK);
    assert_int_equal(queued, 95);
    assert_int_equal(tse_client_publisher_flush(pub, 30000, NULL), TSE_CLIENT_OK);
    calls = evalsha_calls() - before;
    evs[3] = NULL;
    assert_int_equal(tse_client_publisher_publish_many(pub, evs, data, 95, &queued, &err),
                     TSE_CLIENT_INVALID_ARGUMENT);
    assert_int_equal(queued, 0);
    assert_string_equal(err.field, "events");
    tse_client_publisher_destroy(pub);
    tse_client_event_destroy(ev);
    assert_int_equal(ps.ok, 95);
    assert_int_equal(ps.out_of_order, 0);
    assert_int_equal(stream_entries("sdk.many"), 95);
    assert_int_equal(calls, 10);
}

/* The blocking batch: one call, a result or an error per event, in order. */
static void test_blocking_batch_answers_each_event(void **state)
{
    tse_client_event *good = NULL, *bad = NULL;
    const tse_client_event *events[3];
    tse_client_status statuses[3];
    tse_client_publish_result results[3];
    tse_client_error errors[3], err;

    assert_int_equal(
        tse_client_event_from_json("sdk.blocking_batch", "{\"n\":1}", NULL, &good, NULL),
        TSE_CLIENT_OK);
    assert_int_equal(
        tse_client_event_from_json(
            "sdk.blocking_batch", "{\"n\":2}",
            &(tse_client_publish_opts){.metadata = &(tse_client_metadata){"schema_valid", "yes"},
                                       .n_metadata = 1},
            &bad, NULL),
        TSE_CLIENT_OK);
    events[0] = good;
    events[1] = bad;
    events[2] = good;
    assert_int_equal(
        tse_client_publish_batch(W->client, events, 3, statuses, results, errors, &err),
        TSE_CLIENT_OK);
    assert_int_equal(statuses[0], TSE_CLIENT_OK);
    assert_int_equal(statuses[1], TSE_CLIENT_INVALID_ARGUMENT);
    assert_string_equal(errors[1].field, "events[1].metadata.schema_valid");
    assert_int_equal(statuses[2], TSE_CLIENT_OK);
    assert_string_not_equal(results[0].event_id, results[2].event_id);
    assert_true(strlen(results[2].stream_id) > 0);
    assert_int_equal(stream_entries("sdk.blocking_batch"), 2);
    assert_int_equal(tse_client_publish_batch(W->client, events, 0, NULL, NULL, NULL, &err),
                     TSE_CLIENT_INVALID_ARGUMENT);
    assert_string_equal(err.field, "events");
    tse_client_event_destroy(good);
    tse_client_event_destroy(bad);
}

/* batch_size 1: PublishStream, one event per message, as before batches. */
static void test_publisher_without_batches_uses_publish_stream(void **state)
{
    pipe_state ps = {.mu = PTHREAD_MUTEX_INITIALIZER, .bad = (uintptr_t)-1};
    tse_client_publisher *pub = NULL;
    tse_client_event *ev = NULL;

    assert_int_equal(tse_client_event_from_json("sdk.unbatched", "{\"n\":1}", NULL, &ev, NULL),
                     TSE_CLIENT_OK);
    assert_int_equal(tse_client_publisher_create(W->client,
                                                 &(tse_client_publisher_options){.batch_size = 1},
                                                 on_result, &ps, &pub, NULL),
                     TSE_CLIENT_OK);
    for (uintptr_t i = 0; i < 200; i++)
        assert_int_equal(tse_client_publisher_publish(pub, ev, (void *)i, NULL), TSE_CLIENT_OK);
    assert_int_equal(tse_client_publisher_flush(pub, 30000, NULL), TSE_CLIENT_OK);
    tse_client_publisher_destroy(pub);
    tse_client_event_destroy(ev);
    assert_int_equal(ps.ok, 200);
    assert_int_equal(ps.out_of_order, 0);
    assert_int_equal(stream_entries("sdk.unbatched"), 200);
}

static void test_bad_event_in_the_pipeline_fails_alone(void **state)
{
    pipe_state ps = {.mu = PTHREAD_MUTEX_INITIALIZER, .bad = 50};
    tse_client_publisher *pub = NULL;
    tse_client_event *good = NULL, *bad = NULL;

    assert_int_equal(tse_client_event_from_json("sdk.mixed", "{\"ok\":true}", NULL, &good, NULL),
                     TSE_CLIENT_OK);
    /* Metadata keys starting with "schema_" are the server's: it refuses
     * the event, naming the key. */
    assert_int_equal(
        tse_client_event_from_json(
            "sdk.mixed", "{\"ok\":false}",
            &(tse_client_publish_opts){.metadata = &(tse_client_metadata){"schema_valid", "yes"},
                                       .n_metadata = 1},
            &bad, NULL),
        TSE_CLIENT_OK);
    assert_int_equal(tse_client_publisher_create(W->client,
                                                 &(tse_client_publisher_options){.window = 16},
                                                 on_result, &ps, &pub, NULL),
                     TSE_CLIENT_OK);
    for (uintptr_t i = 0; i < 100; i++)
        assert_int_equal(tse_client_publisher_publish(pub, i == 50 ? bad : good, (void *)i, NULL),
                         TSE_CLIENT_OK);
    assert_int_equal(tse_client_publisher_flush(pub, 30000, NULL), TSE_CLIENT_OK);
    tse_client_publisher_destroy(pub);
    assert_int_equal(ps.ok, 99);
    assert_int_equal(ps.errors, 1);
    assert_int_equal(ps.out_of_order, 0);
    assert_int_equal(ps.bad_status, TSE_CLIENT_INVALID_ARGUMENT);
    assert_non_null(strstr(ps.bad_field, "metadata.schema_valid"));
    assert_int_equal(stream_entries("sdk.mixed"), 99);
    tse_client_event_destroy(good);
    tse_client_event_destroy(bad);
}

/* ============================== failures ================================== */

static void test_publish_to_a_stopped_service_is_unavailable_within_the_timeout(void **state)
{
    tse_test_service *s = tse_test_service_start(W->redis, NULL);
    tse_client *c;
    tse_client_error err;
    long long t0, took;

    assert_non_null(s);
    c = client_for(s->addr, 1500);
    assert_int_equal(tse_test_service_stop(s), 0);
    t0 = tse_test_now_ms();
    assert_int_equal(tse_client_publish_json(c, "sdk.down", "{}", NULL, NULL, &err),
                     TSE_CLIENT_UNAVAILABLE);
    took = tse_test_now_ms() - t0;
    assert_true(took <= 1500 + 1000);
    assert_int_equal(err.status, TSE_CLIENT_UNAVAILABLE);
    assert_true(strlen(err.message) > 0);
    tse_client_destroy(c);
}

/* A service of our own on a fixed port, so a restart keeps the address. */
static tse_test_service *service_on(int port)
{
    static const char *const args[] = {"--log-level=warn", NULL};
    tse_test_service *s = tse_test_service_start_on(W->redis, port, args);

    if (s == NULL)
        fail_msg("the service did not start on port %d", port);
    return s;
}

static void test_subscriber_reconnects_after_a_service_restart(void **state)
{
    int port = tse_test_free_port();
    tse_test_service *svc = service_on(port);
    collector col = {.mu = PTHREAD_MUTEX_INITIALIZER};
    char addr[64];
    tse_client *c;
    tse_client_subscriber *sub;
    tse_client_error err;

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    c = client_for(addr, 15000);
    create_sub("sdk-restart", "sdk.restart", 0);
    sub = subscribe(c, "sdk-restart", &col, TSE_CLIENT_ACK_AUTO);
    assert_int_equal(tse_client_publish_json(c, "sdk.restart", "{\"n\":1}",
                                             &(tse_client_publish_opts){.subject = "before"}, NULL,
                                             NULL),
                     TSE_CLIENT_OK);
    assert_true(wait_collected(&col, 1, WAIT_MS));
    tse_test_service_stop(svc);
    usleep(300000); /* the outage under test: the client retries meanwhile */
    svc = service_on(port);
    /* The blocking publish retries until the new service answers. */
    if (tse_client_publish_json(c, "sdk.restart", "{\"n\":2}",
                                &(tse_client_publish_opts){.subject = "after"}, NULL,
                                &err) != TSE_CLIENT_OK)
        fail_msg("publish after the restart: %s", err.message);
    assert_true(wait_collected(&col, 2, WAIT_MS));
    assert_string_equal(col.ev[1].subject, "after");
    tse_client_subscriber_destroy(sub);
    tse_client_destroy(c);
    tse_test_service_stop(svc);
    collector_free(&col);
}

/*
 * Two publishers of one client (one shared thread, a connection each) keep
 * publishing across a service restart: the events the dead stream left
 * unanswered are resent on a new one, each is stored exactly once (client
 * ids), and every callback comes, in order, OK.
 */
static void test_publishers_resend_across_a_service_restart(void **state)
{
    int port = tse_test_free_port();
    tse_test_service *svc = service_on(port);
    pipe_state ps[2] = {{.mu = PTHREAD_MUTEX_INITIALIZER, .bad = UINTPTR_MAX},
                        {.mu = PTHREAD_MUTEX_INITIALIZER, .bad = UINTPTR_MAX}};
    tse_client_publisher *pub[2];
    tse_client_event *ev[2];
    const char *types[2] = {"sdk.resend_a", "sdk.resend_b"};
    char addr[64];
    tse_client *c;

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    c = client_for(addr, 15000);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(tse_client_event_from_json(types[k], "{\"x\":1}", NULL, &ev[k], NULL),
                         TSE_CLIENT_OK);
        assert_int_equal(tse_client_publisher_create(c, NULL, on_result, &ps[k], &pub[k], NULL),
                         TSE_CLIENT_OK);
    }
    for (uintptr_t i = 0; i < 200; i++) {
        if (i == 100) {
            for (int k = 0; k < 2; k++)
                assert_int_equal(tse_client_publisher_flush(pub[k], WAIT_MS, NULL), TSE_CLIENT_OK);
            tse_test_service_stop(svc);
        }
        for (int k = 0; k < 2; k++)
            assert_int_equal(tse_client_publisher_publish(pub[k], ev[k], (void *)i, NULL),
                             TSE_CLIENT_OK);
    }
    usleep(300000); /* the outage under test: the publishers hold their events */
    svc = service_on(port);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(tse_client_publisher_flush(pub[k], 15000, NULL), TSE_CLIENT_OK);
        assert_int_equal(ps[k].ok, 200);
        assert_int_equal(ps[k].errors, 0);
        assert_int_equal(ps[k].out_of_order, 0);
        assert_int_equal(stream_entries(types[k]), 200);
        tse_client_publisher_destroy(pub[k]);
        tse_client_event_destroy(ev[k]);
    }
    tse_client_destroy(c);
    tse_test_service_stop(svc);
}

/* ============================== acks ====================================== */

static void test_unacked_delivery_comes_back_with_attempt_2_acked_one_does_not(void **state)
{
    collector col = {.mu = PTHREAD_MUTEX_INITIALIZER, .ack_all = true};
    tse_client_subscriber *sub;
    int attempts_noack = 0, seen_ack = 0;

    create_sub("sdk-manual", "sdk.manual", 1000);
    sub = subscribe(W->client, "sdk-manual", &col, TSE_CLIENT_ACK_MANUAL);
    assert_int_equal(tse_client_publish_json(W->client, "sdk.manual", "{}",
                                             &(tse_client_publish_opts){.subject = "ack"}, NULL,
                                             NULL),
                     TSE_CLIENT_OK);
    assert_int_equal(tse_client_publish_json(W->client, "sdk.manual", "{}",
                                             &(tse_client_publish_opts){.subject = "noack"}, NULL,
                                             NULL),
                     TSE_CLIENT_OK);
    assert_true(wait_collected(&col, 3, WAIT_MS));
    usleep(1500000); /* past another deadline: an acked event would be back */
    tse_client_subscriber_destroy(sub);
    for (int i = 0; i < col.n; i++) {
        if (strcmp(col.ev[i].subject, "noack") == 0)
            assert_int_equal(col.ev[i].attempt, (unsigned)++attempts_noack);
        else
            seen_ack++;
    }
    assert_true(attempts_noack >= 2);
    assert_int_equal(seen_ack, 1);
    collector_free(&col);
}

/* Stops its subscriber from the callback at the stop_at-th delivery. */
typedef struct stopper {
    tse_client_subscriber *sub;
    atomic_int seen;
    int stop_at;
} stopper;

static void stop_after(void *arg, const tse_client_event_view *v, tse_client_delivery *d)
{
    stopper *st = arg;

    (void)v, (void)d;
    if (atomic_fetch_add(&st->seen, 1) + 1 == st->stop_at)
        tse_client_subscriber_stop(st->sub);
}

/* The subscription's pending count as GetSubscription reports it. */
static long long pending_of(const char *name)
{
    char *json = NULL;
    json_t *root, *stats;
    long long pending = -1;

    if (tse_client_subscription_get(W->client, name, &json, NULL) != TSE_CLIENT_OK)
        return -1;
    root = json_loads(json, 0, NULL);
    stats = json_object_get(root, "stats");
    if (json_is_string(json_object_get(stats, "pending")))
        pending = atoll(json_string_value(json_object_get(stats, "pending")));
    else if (json_is_integer(json_object_get(stats, "pending")))
        pending = json_integer_value(json_object_get(stats, "pending"));
    json_decref(root);
    tse_client_free(json);
    return pending;
}

/* A stop right after the callbacks must not drop the auto-acks they queued:
 * with a 30 s deadline, a lost ack would leave the event pending. */
static void test_auto_acks_queued_before_stop_reach_the_server(void **state)
{
    tse_client_subscriber_options o = {.subscription = "sdk-stop", .ack_mode = TSE_CLIENT_ACK_AUTO};
    stopper st = {.stop_at = 50};
    long long pending = -1;

    create_sub("sdk-stop", "sdk.stop", 30000);
    for (int i = 0; i < st.stop_at; i++)
        assert_int_equal(tse_client_publish_json(W->client, "sdk.stop", "{}", NULL, NULL, NULL),
                         TSE_CLIENT_OK);
    assert_int_equal(tse_client_subscriber_create(W->client, &o, stop_after, &st, &st.sub, NULL),
                     TSE_CLIENT_OK);
    assert_int_equal(tse_client_subscriber_start(st.sub, NULL), TSE_CLIENT_OK);
    assert_int_equal(tse_client_subscriber_wait(st.sub, NULL), TSE_CLIENT_OK);
    assert_int_equal(atomic_load(&st.seen), st.stop_at);
    tse_client_subscriber_destroy(st.sub);
    TSE_TEST_AWAIT((pending = pending_of("sdk-stop")) == 0, 10000,
                   "sdk-stop to have nothing pending (%lld)", pending);
}

static void test_pull_then_acknowledge_empties_the_subscription(void **state)
{
    tse_client_batch *b = NULL;
    const char *ids[3];
    unsigned done = 0;

    create_sub("sdk-pull", "sdk.pull", 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(
            tse_client_publish_json(W->client, "sdk.pull", "{\"i\":1}", NULL, NULL, NULL),
            TSE_CLIENT_OK);
    assert_int_equal(tse_client_pull(W->client, "sdk-pull", 10, 2000, NULL, &b, NULL),
                     TSE_CLIENT_OK);
    assert_int_equal(tse_client_batch_count(b), 3);
    for (size_t i = 0; i < 3; i++) {
        const tse_client_event_view *v = tse_client_batch_event(b, i);
        assert_string_equal(v->event_type, "sdk.pull");
        assert_string_equal(v->payload_json, "{\"i\":1}");
        assert_int_equal(v->delivery_attempt, 1);
        ids[i] = v->ack_id;
    }
    assert_null(tse_client_batch_event(b, 3));
    assert_int_equal(tse_client_acknowledge(W->client, "sdk-pull", ids, 3, &done, NULL),
                     TSE_CLIENT_OK);
    assert_int_equal(done, 3);
    tse_client_batch_destroy(b);
    assert_int_equal(tse_client_pull(W->client, "sdk-pull", 10, 0, NULL, &b, NULL), TSE_CLIENT_OK);
    assert_int_equal(tse_client_batch_count(b), 0);
    tse_client_batch_destroy(b);
}

/* ============================== management ================================ */

static void test_subscription_create_get_list_delete(void **state)
{
    const char *patterns[] = {"sdk.crud.*"}, *other[] = {"sdk.other"};
    tse_client_subscription_spec spec = {.name = "sdk-crud",
                                         .event_types = patterns,
                                         .n_event_types = 1,
                                         .start = TSE_CLIENT_START_EARLIEST,
                                         .ack_deadline_ms = 5000};
    tse_client_error err;
    char *json = NULL;
    json_t *j;

    assert_int_equal(tse_client_subscription_create(W->client, &spec, &json, &err), TSE_CLIENT_OK);
    j = json_loads(json, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "sdk-crud");
    assert_int_equal(json_integer_value(json_object_get(j, "ack_deadline_ms")), 5000);
    assert_int_equal(json_integer_value(json_object_get(j, "max_delivery_attempts")), 5);
    json_decref(j);
    tse_client_free(json);
    /* The same settings again are accepted; other settings conflict. */
    assert_int_equal(tse_client_subscription_create(W->client, &spec, NULL, NULL), TSE_CLIENT_OK);
    spec.event_types = other;
    assert_int_equal(tse_client_subscription_create(W->client, &spec, NULL, &err),
                     TSE_CLIENT_ALREADY_EXISTS);
    assert_int_equal(tse_client_subscription_get(W->client, "sdk-crud", &json, NULL),
                     TSE_CLIENT_OK);
    assert_non_null(strstr(json, "\"stats\""));
    tse_client_free(json);
    assert_int_equal(tse_client_subscription_list(W->client, &json, NULL), TSE_CLIENT_OK);
    assert_non_null(strstr(json, "\"sdk-crud\""));
    tse_client_free(json);
    assert_int_equal(tse_client_subscription_delete(W->client, "sdk-crud", NULL), TSE_CLIENT_OK);
    assert_int_equal(tse_client_subscription_get(W->client, "sdk-crud", NULL, &err),
                     TSE_CLIENT_NOT_FOUND);
    assert_int_equal(err.grpc_code, 5);
    assert_int_equal(tse_client_subscription_delete(W->client, "sdk-crud", NULL),
                     TSE_CLIENT_NOT_FOUND);
    /* A bad spec is refused by the server, naming the field. */
    spec.name = "bad name!";
    assert_int_equal(tse_client_subscription_create(W->client, &spec, NULL, &err),
                     TSE_CLIENT_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "name"));
    /* A subscriber on an unknown subscription fails at once. */
    assert_int_equal(tse_client_subscriber_create(
                         W->client, &(tse_client_subscriber_options){.subscription = "sdk-missing"},
                         on_delivery, NULL, &(tse_client_subscriber *){NULL}, &err),
                     TSE_CLIENT_NOT_FOUND);
}

static void test_stats_types_and_health_answer(void **state)
{
    tse_client_serving serving = TSE_CLIENT_SERVING_UNKNOWN;
    tse_client_error err;
    char *json = NULL;
    json_t *j;

    assert_int_equal(tse_client_publish_json(W->client, "sdk.stats", "{}", NULL, NULL, NULL),
                     TSE_CLIENT_OK);
    assert_int_equal(tse_client_stats(W->client, &json, NULL), TSE_CLIENT_OK);
    j = json_loads(json, 0, NULL);
    assert_non_null(j);
    assert_true(atol(json_string_value(json_object_get(j, "events_published"))) >= 1);
    assert_true(json_is_true(json_object_get(j, "redis_connected")));
    json_decref(j);
    tse_client_free(json);
    assert_int_equal(tse_client_event_types(W->client, &json, NULL), TSE_CLIENT_OK);
    j = json_loads(json, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(j, "event_types")), 18);
    json_decref(j);
    tse_client_free(json);
    assert_int_equal(tse_client_health(W->client, NULL, &serving, NULL), TSE_CLIENT_OK);
    assert_int_equal(serving, TSE_CLIENT_SERVING);
    assert_int_equal(tse_client_health(W->client, "tracseq.events.v1.EventService", &serving, NULL),
                     TSE_CLIENT_OK);
    assert_int_equal(serving, TSE_CLIENT_SERVING);
    assert_int_equal(tse_client_health(W->client, "no.such.Service", &serving, &err),
                     TSE_CLIENT_NOT_FOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_typed_helper_round_trips_to_a_subscriber),
        cmocka_unit_test(test_pipelined_10000_events_get_10000_callbacks_in_order),
        cmocka_unit_test(test_bad_event_in_the_pipeline_fails_alone),
        cmocka_unit_test(test_publisher_batches_up_to_batch_size),
        cmocka_unit_test(test_publish_many_sends_full_batches),
        cmocka_unit_test(test_blocking_batch_answers_each_event),
        cmocka_unit_test(test_publisher_without_batches_uses_publish_stream),
        cmocka_unit_test(test_publish_to_a_stopped_service_is_unavailable_within_the_timeout),
        cmocka_unit_test(test_subscriber_reconnects_after_a_service_restart),
        cmocka_unit_test(test_publishers_resend_across_a_service_restart),
        cmocka_unit_test(test_unacked_delivery_comes_back_with_attempt_2_acked_one_does_not),
        cmocka_unit_test(test_auto_acks_queued_before_stop_reach_the_server),
        cmocka_unit_test(test_pull_then_acknowledge_empties_the_subscription),
        cmocka_unit_test(test_subscription_create_get_list_delete),
        cmocka_unit_test(test_stats_types_and_health_answer),
    };

    if (getenv("TSE_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("TSE_TEST_FILTER"));
    return cmocka_run_group_tests_name("client sdk (real service)", tests, world_up, world_down);
}

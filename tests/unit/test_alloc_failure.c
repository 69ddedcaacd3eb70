/*
 * test_alloc_failure.c - allocation failure injection, after curl's torture
 * tests: every unit-testable operation that allocates (JSON <-> protobuf
 * codec, the wire unpack of client requests, event and subscription
 * validation, the broker's helpers) runs once counting its allocations,
 * then once more for each of them with that one allocation failing: it
 * must not crash, must report the failure cleanly (TSE_NOMEM, or NULL where
 * that is the documented failure) and must leave nothing allocated.
 *
 * Allocations are counted and failed through our allocator
 * (common/alloc.h: tse_malloc and friends, protobuf-c's unpack through
 * tse_pb_unpack) and jansson's (json_set_alloc_funcs). Leaks are caught
 * per attempt by comparing glibc's heap in use before and after (so plain
 * `make test` finds them, naming the allocation), and at exit by valgrind
 * (make test-valgrind) and LeakSanitizer (make test-sanitize).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/pbjson.h"
#include "codec/pbunpack.h"
#include "common/alloc.h"
#include "domain/subscription.h"
#include "domain/validate.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "reflection/reflection.h"
#include "storage/ack_id.h"
#include "tracseq/events/v1/event.pb-c.h"
#include "tracseq/events/v1/service.pb-c.h"
#include "writer/broker.h"
#include "writer/internal.h"

#define UUID_A "7d444840-9dc0-11d1-b245-5ffdce74fad2"
#define UUID_B "e902893a-9d22-3c7e-a7b8-d6e313b71d9f"
#define UUID_C "4c3b4e0a-1bb4-4e4b-8f1e-2f8f3d9b0e11"

/* Linked in from the build: generated/tracseq_events.desc as bytes. */
extern const unsigned char tse_descriptor_set[];
extern const size_t tse_descriptor_set_len;

/* ===========================================================================
 * The failing allocator
 * ======================================================================== */

/* Counting is on between arm() and disarm() only: setups and checks outside
 * the operation under test neither count nor fail. */
static struct {
    bool counting;
    unsigned long count;   /* allocations while counting */
    unsigned long fail_at; /* 1-based: which one fails; 0 = none */
    bool failed;           /* the chosen one was refused */
} torture;

/* True when this allocation is to fail. */
static bool refuse(void)
{
    if (!torture.counting)
        return false;
    if (++torture.count != torture.fail_at)
        return false;
    torture.failed = true;
    return true;
}

static void *t_malloc(size_t size)
{
    return refuse() ? NULL : malloc(size);
}

static void *t_calloc(size_t count, size_t size)
{
    return refuse() ? NULL : calloc(count, size);
}

static void *t_realloc(void *ptr, size_t size)
{
    return refuse() ? NULL : realloc(ptr, size);
}

static void arm(unsigned long fail_at)
{
    torture.count = 0;
    torture.fail_at = fail_at;
    torture.failed = false;
    torture.counting = true;
}

static void disarm(void)
{
    torture.counting = false;
}

/* ===========================================================================
 * The sweep
 * ======================================================================== */

/*
 * One operation: setup builds its input (not counted), run performs it
 * (counted, may be failed) and returns TSE_OK or its failure, teardown
 * releases input and output whatever run returned.
 */
typedef struct op {
    const char *name;
    const void *arg;
    void *(*setup)(const void *arg);
    tse_status (*run)(void *ctx);
    void (*teardown)(void *ctx);
} op;

/*
 * Bytes of glibc's heap in use, or 0 when that cannot tell a leak: with
 * glibc's per-thread cache on, freed small blocks still count as in use (ctest
 * runs this test with GLIBC_TUNABLES=glibc.malloc.tcache_count=0), and under
 * ASan or valgrind glibc's heap is not the one used.
 */
static bool heap_counts;

static size_t heap_in_use(void)
{
    return heap_counts ? mallinfo2().uordblks : 0;
}

static void probe_heap(void)
{
    size_t before = mallinfo2().uordblks, during;
    void *volatile p = malloc(40);

    during = mallinfo2().uordblks;
    free(p);
    heap_counts = during > before && mallinfo2().uordblks == before;
    if (!heap_counts)
        print_message("heap in use not measurable here: leaks are left to valgrind and ASan\n");
}

static int install(void **state)
{
    static const tse_alloc_funcs funcs = {t_malloc, t_calloc, t_realloc, free};

    (void)state;
    probe_heap();
    tse_alloc_set(&funcs);
    json_set_alloc_funcs(t_malloc, free);
    return 0;
}

static void attempt(const op *o, unsigned long fail_at, tse_status *rc, size_t *leaked)
{
    void *ctx;
    size_t before;

    before = heap_in_use();
    ctx = o->setup(o->arg);
    arm(fail_at);
    *rc = o->run(ctx);
    disarm();
    o->teardown(ctx);
    *leaked = heap_in_use() - before;
}

static void sweep(const op *o)
{
    unsigned long n;
    tse_status rc;
    size_t leaked;

    /* Twice unhindered: the first may warm caches (jansson's hash seed). */
    attempt(o, 0, &rc, &leaked);
    attempt(o, 0, &rc, &leaked);
    if (rc != TSE_OK)
        fail_msg("%s: fails with no allocation failing (%s)", o->name, tse_status_name(rc));
    if (leaked != 0)
        fail_msg("%s: leaks %zu bytes with no allocation failing", o->name, leaked);
    n = torture.count;
    for (unsigned long i = 1; i <= n; i++) {
        attempt(o, i, &rc, &leaked);
        if (!torture.failed)
            fail_msg("%s: allocation %lu of %lu never came", o->name, i, n);
        if (rc != TSE_NOMEM)
            fail_msg("%s: allocation %lu of %lu failing gave %s, not NOMEM", o->name, i, n,
                     tse_status_name(rc));
        if (leaked != 0)
            fail_msg("%s: allocation %lu of %lu failing leaks %zu bytes", o->name, i, n, leaked);
    }
    print_message("%s: %lu allocations, each failed in turn\n", o->name, n);
}

/* ===========================================================================
 * Inputs
 * ======================================================================== */

static const char publish_typed_json[] =
    "{\"event\":{\"id\":\"" UUID_A "\",\"event_type\":\"sample.created\","
    "\"source_service\":\"lims\",\"version\":\"1.0\",\"timestamp\":\"2024-06-18T10:00:00.5Z\","
    "\"correlation_id\":\"" UUID_B "\",\"subject\":\"sample/1\",\"priority\":2,"
    "\"metadata\":{\"site\":\"north\",\"shift\":\"night\",\"é\":\"ü\"},"
    "\"sample_created\":{\"sample_id\":\"" UUID_A "\",\"barcode\":\"SAM-1\","
    "\"sample_type\":\"DNA\",\"submitter_id\":\"" UUID_B "\",\"lab_id\":\"" UUID_C "\","
    "\"metadata\":{\"volume\":1.5,\"tags\":[\"a\",\"b\",{\"c\":[null,true,3]}],\"ok\":false}}}}";

static const char publish_generic_json[] =
    "{\"event\":{\"event_type\":\"storage.thing_moved\",\"source_service\":\"robot\","
    "\"priority\":4,\"metadata\":{\"x\":\"y\"},"
    "\"data\":{\"from\":{\"rack\":\"R1\",\"slots\":[1,2,{\"deep\":[[\"z\"]]}]},"
    "\"to\":\"R2\",\"when\":null,\"moved\":true,\"weight\":0.25}}}";

/* A catalog type sent as generic data that fits its schema (converted). */
static const char publish_fitting_data_json[] =
    "{\"event\":{\"event_type\":\"sample.created\",\"source_service\":\"lims\","
    "\"data\":{\"sample_id\":\"" UUID_A "\",\"barcode\":\"SAM-2\",\"sample_type\":\"RNA\","
    "\"submitter_id\":\"" UUID_B "\",\"lab_id\":\"" UUID_C "\",\"metadata\":{\"k\":[1,2]}}}}";

/* A catalog type whose data misfits (lenient: kept as data and flagged). */
static const char publish_misfit_data_json[] =
    "{\"event\":{\"event_type\":\"sample.created\",\"source_service\":\"lims\","
    "\"metadata\":{\"a\":\"b\"},\"data\":{\"sample_id\":\"not-a-uuid\",\"extra\":[1,{\"x\":2}]}}}";

static const char create_subscription_json[] =
    "{\"subscription\":{\"name\":\"orders\",\"event_types\":[\"sample.*\",\"storage.*\","
    "\"sample.*\",\"order.placed\",\"storage.*\"],\"ack_deadline_ms\":1500,"
    "\"max_delivery_attempts\":3}}";

static const char acknowledge_json[] =
    "{\"subscription\":\"orders\",\"ack_ids\":[\"tracseq:events:{a.b}:p1/1-0\","
    "\"tracseq:events:{a.b}:p2/2-0\",\"x\"]}";

static const char subscribe_json[] =
    "{\"subscription\":{\"name\":\"s\",\"event_types\":[\"a.*\"]},\"consumer_name\":\"c1\"}";

static const ProtobufCMessageDescriptor *const publish_desc =
    &tracseq__events__v1__publish_request__descriptor;

static json_t *load(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);

    if (j == NULL)
        fail_msg("bad test JSON: %s", jerr.text);
    return j;
}

/* A message decoded from JSON text with the codec (not counted). */
static ProtobufCMessage *message_of(const ProtobufCMessageDescriptor *desc, const char *text)
{
    ProtobufCMessage *m = NULL;
    json_t *j = load(text);
    tse_error err;

    if (tse_pbjson_to_message(j, desc, 0, &m, &err) != TSE_OK)
        fail_msg("bad test message: %s: %s", err.field, err.message);
    json_decref(j);
    return m;
}

/* ===========================================================================
 * Codec: JSON -> protobuf
 * ======================================================================== */

typedef struct decode_arg {
    const ProtobufCMessageDescriptor *desc;
    const char *json;
    unsigned flags;
} decode_arg;

typedef struct decode_ctx {
    const decode_arg *arg;
    json_t *json;
    ProtobufCMessage *out;
} decode_ctx;

static void *decode_setup(const void *arg)
{
    decode_ctx *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    c->arg = arg;
    c->json = load(c->arg->json);
    return c;
}

static tse_status decode_run(void *ctx)
{
    decode_ctx *c = ctx;
    tse_error err;
    tse_status rc = tse_pbjson_to_message(c->json, c->arg->desc, c->arg->flags, &c->out, &err);

    if (rc != TSE_OK && c->out != NULL)
        fail_msg("decoding failed (%s) yet left a message", err.message);
    return rc;
}

static void decode_teardown(void *ctx)
{
    decode_ctx *c = ctx;

    if (c->out != NULL)
        protobuf_c_message_free_unpacked(c->out, NULL);
    json_decref(c->json);
    free(c);
}

static void json_to_message_fails_cleanly(void **state)
{
    static const decode_arg args[] = {
        {&tracseq__events__v1__publish_request__descriptor, publish_typed_json, 0},
        {&tracseq__events__v1__publish_request__descriptor, publish_generic_json, 0},
        {&tracseq__events__v1__create_subscription_request__descriptor, create_subscription_json,
         0},
        {&tracseq__events__v1__acknowledge_request__descriptor, acknowledge_json, 0},
        {&tracseq__events__v1__subscribe_request__descriptor, subscribe_json, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(args) / sizeof(args[0]); i++) {
        op o = {args[i].desc->name, &args[i], decode_setup, decode_run, decode_teardown};
        sweep(&o);
    }
}

/* ===========================================================================
 * Codec: protobuf -> JSON
 * ======================================================================== */

typedef struct encode_ctx {
    ProtobufCMessage *msg;
    unsigned flags;
    json_t *out;
} encode_ctx;

static void *encode_setup(const void *arg)
{
    encode_ctx *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    c->msg = message_of(publish_desc, arg);
    c->flags = TSE_PBJSON_CAMEL_CASE | TSE_PBJSON_EMIT_DEFAULTS;
    return c;
}

static tse_status encode_run(void *ctx)
{
    encode_ctx *c = ctx;

    c->out = tse_pbjson_from_message(c->msg, c->flags);
    return c->out != NULL ? TSE_OK : TSE_NOMEM;
}

static void encode_teardown(void *ctx)
{
    encode_ctx *c = ctx;

    json_decref(c->out);
    protobuf_c_message_free_unpacked(c->msg, NULL);
    free(c);
}

static void message_to_json_fails_cleanly(void **state)
{
    static const char *const inputs[] = {publish_typed_json, publish_generic_json};

    (void)state;
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        op o = {"tse_pbjson_from_message", inputs[i], encode_setup, encode_run, encode_teardown};
        sweep(&o);
    }
}

/* ===========================================================================
 * Codec: a client's protobuf bytes (scan + unpack)
 * ======================================================================== */

typedef struct unpack_arg {
    const ProtobufCMessageDescriptor *desc;
    const char *json;
} unpack_arg;

typedef struct unpack_ctx {
    const unpack_arg *arg;
    uint8_t *bytes;
    size_t len;
    ProtobufCMessage *out;
} unpack_ctx;

static void *unpack_setup(const void *arg)
{
    unpack_ctx *c = calloc(1, sizeof(*c));
    ProtobufCMessage *m;

    assert_non_null(c);
    c->arg = arg;
    m = message_of(c->arg->desc, c->arg->json);
    c->len = protobuf_c_message_get_packed_size(m);
    c->bytes = malloc(c->len + 1);
    assert_non_null(c->bytes);
    protobuf_c_message_pack(m, c->bytes);
    protobuf_c_message_free_unpacked(m, NULL);
    return c;
}

static tse_status unpack_run(void *ctx)
{
    unpack_ctx *c = ctx;
    tse_error err;
    tse_status rc;

    rc = tse_pb_unpack(c->arg->desc, c->bytes, c->len, TSE_PBJSON_MAX_DEPTH, &c->out, &err);
    if (rc != TSE_OK && c->out != NULL)
        fail_msg("unpacking failed (%s) yet left a message", err.message);
    if (rc != TSE_OK && err.code != rc)
        fail_msg("unpacking returned %s, its error says %s", tse_status_name(rc),
                 tse_status_name(err.code));
    return rc;
}

static void unpack_teardown(void *ctx)
{
    unpack_ctx *c = ctx;

    if (c->out != NULL)
        protobuf_c_message_free_unpacked(c->out, NULL);
    free(c->bytes);
    free(c);
}

static void request_unpack_fails_cleanly(void **state)
{
    static const unpack_arg args[] = {
        {&tracseq__events__v1__publish_request__descriptor, publish_typed_json},
        {&tracseq__events__v1__publish_request__descriptor, publish_generic_json},
        {&tracseq__events__v1__create_subscription_request__descriptor, create_subscription_json},
        {&tracseq__events__v1__acknowledge_request__descriptor, acknowledge_json},
        {&tracseq__events__v1__subscribe_request__descriptor, subscribe_json},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(args) / sizeof(args[0]); i++) {
        op o = {args[i].desc->name, &args[i], unpack_setup, unpack_run, unpack_teardown};
        sweep(&o);
    }
}

/* ===========================================================================
 * Domain: event preparation (validation, defaults, payload conversion)
 * ======================================================================== */

typedef struct prepare_arg {
    const char *json;
    tse_validation_mode mode;
} prepare_arg;

typedef struct prepare_ctx {
    const prepare_arg *arg;
    Tracseq__Events__V1__PublishRequest *req;
} prepare_ctx;

static void *prepare_setup(const void *arg)
{
    prepare_ctx *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    c->arg = arg;
    c->req = (Tracseq__Events__V1__PublishRequest *)message_of(publish_desc, c->arg->json);
    return c;
}

static tse_status prepare_run(void *ctx)
{
    prepare_ctx *c = ctx;
    tse_prepare_result r;
    tse_error err;

    return tse_event_prepare(c->req->event, c->arg->mode, 1718704800, 500000000, UUID_C, &r, &err);
}

static void prepare_teardown(void *ctx)
{
    prepare_ctx *c = ctx;

    protobuf_c_message_free_unpacked(&c->req->base, NULL);
    free(c);
}

static void event_prepare_fails_cleanly(void **state)
{
    static const prepare_arg args[] = {
        {publish_typed_json, TSE_VALIDATION_STRICT},
        {publish_generic_json, TSE_VALIDATION_STRICT},
        {publish_fitting_data_json, TSE_VALIDATION_STRICT},
        {publish_misfit_data_json, TSE_VALIDATION_LENIENT},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(args) / sizeof(args[0]); i++) {
        op o = {"tse_event_prepare", &args[i], prepare_setup, prepare_run, prepare_teardown};
        sweep(&o);
    }
}

/* ===========================================================================
 * Domain: subscriptions
 * ======================================================================== */

static void *subscription_setup(const void *arg)
{
    return message_of(&tracseq__events__v1__create_subscription_request__descriptor, arg);
}

static tse_status subscription_run(void *ctx)
{
    Tracseq__Events__V1__CreateSubscriptionRequest *req = ctx;
    tse_error err;
    tse_status rc = tse_subscription_validate(req->subscription, &err);

    if (rc == TSE_OK && !tse_subscription_same(req->subscription, req->subscription))
        fail_msg("a subscription differs from itself");
    if (rc == TSE_OK && !tse_patterns_match(req->subscription->event_types,
                                            req->subscription->n_event_types, "order.placed"))
        fail_msg("order.placed does not match");
    return rc;
}

static void subscription_teardown(void *ctx)
{
    protobuf_c_message_free_unpacked(ctx, NULL);
}

static void subscription_validate_fails_cleanly(void **state)
{
    op o = {"tse_subscription_validate", create_subscription_json, subscription_setup,
            subscription_run, subscription_teardown};

    (void)state;
    sweep(&o);
}

/* ===========================================================================
 * Broker helpers
 * ======================================================================== */

static void *no_setup(const void *arg)
{
    return (void *)arg;
}

static void no_teardown(void *ctx)
{
    (void)ctx;
}

static tse_status keyset_run(void *ctx)
{
    tse_keyset set = {0};
    char key[64];
    tse_status rc = TSE_OK;

    (void)ctx;
    /* Enough keys to grow the table a few times. */
    for (int i = 0; i < 40 && rc == TSE_OK; i++) {
        tse_broker_stream_key(i % 2 ? "sample.created" : "storage.moved", i, key, sizeof(key));
        if (!tse_keyset_add(&set, key))
            rc = TSE_NOMEM;
        else if (!tse_keyset_contains(&set, key))
            fail_msg("%s added but not contained", key);
    }
    tse_keyset_clear(&set);
    return rc;
}

static tse_status job_run(void *ctx)
{
    static const char envelope[] = "\x0a\x03"
                                   "abc";
    tse_broker_options opts = {.dedup_window_ms = 60000, .retention_ms = 3600000};
    tse_publish_msg msg = {.event_id = UUID_A,
                           .event_type = "sample.created",
                           .priority = 2,
                           .source_service = "lims",
                           .correlation_id = UUID_B,
                           .timestamp_sec = 1718704800,
                           .envelope = (const uint8_t *)envelope,
                           .envelope_len = sizeof(envelope) - 1,
                           .dedup = *(const bool *)ctx};
    const char *argv[] = {"XACK", "tracseq:events:{a.b}:p1", "group", "1-0"};
    const size_t lens[] = {4, 21, 5, 3};
    tse_job *job;
    char *resp;
    size_t len;

    job = tse_job_create(&opts, "0123456789abcdef0123456789abcdef01234567", &msg);
    if (job == NULL)
        return TSE_NOMEM;
    tse_job_free(job);
    job = tse_job_create_trim(&opts, "tracseq:events:{a.b}:p1", 1718704800000);
    if (job == NULL)
        return TSE_NOMEM;
    tse_job_free(job);
    job = tse_job_create_command(4, argv, NULL);
    if (job == NULL)
        return TSE_NOMEM;
    tse_job_free(job);
    resp = tse_resp_format(4, argv, lens, &len);
    if (resp == NULL)
        return TSE_NOMEM;
    free(resp);
    return TSE_OK;
}

static tse_status parsers_run(void *ctx)
{
    tse_redis_target t;
    tse_error err;
    char key[128];
    const char *entry;

    (void)ctx;
    if (tse_redis_url_parse("redis://us%40er:p%3Ass@redis.example:6380/2", &t, &err) != TSE_OK)
        fail_msg("redis URL refused: %s", err.message);
    if (!tse_ack_id_split("tracseq:events:{a.b}:p1/1718704800000-0", key, sizeof(key), &entry))
        fail_msg("ack id refused");
    return TSE_OK;
}

static void broker_helpers_fail_cleanly(void **state)
{
    static const bool no = false, yes = true;
    const op ops[] = {
        {"tse_keyset_add", NULL, no_setup, keyset_run, no_teardown},
        {"tse_job_create (XADD)", &no, no_setup, job_run, no_teardown},
        {"tse_job_create (dedup)", &yes, no_setup, job_run, no_teardown},
        {"tse_redis_url_parse, tse_ack_id_split", NULL, no_setup, parsers_run, no_teardown},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        sweep(&ops[i]);
}

/* ===========================================================================
 * Server reflection (its index, and its answer to a client's request)
 * ======================================================================== */

static const char *const announced[] = {"tracseq.events.v1.EventService", "grpc.health.v1.Health",
                                        NULL};

static tse_status reflection_create_run(void *ctx)
{
    tse_error err;
    tse_reflection *r =
        tse_reflection_create(tse_descriptor_set, tse_descriptor_set_len, announced, &err);

    (void)ctx;
    if (r == NULL)
        return err.code;
    tse_reflection_destroy(r);
    return TSE_OK;
}

typedef struct reflection_arg {
    int which; /* the v1alpha question */
    const char *what;
} reflection_arg;

typedef struct reflection_ctx {
    tse_reflection *r;
    uint8_t *request;
    size_t len;
} reflection_ctx;

static void *reflection_setup(const void *arg)
{
    const reflection_arg *a = arg;
    Grpc__Reflection__V1alpha__ServerReflectionRequest req =
        GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__INIT;
    reflection_ctx *c = calloc(1, sizeof(*c));
    tse_error err;

    assert_non_null(c);
    c->r = tse_reflection_create(tse_descriptor_set, tse_descriptor_set_len, announced, &err);
    assert_non_null(c->r);
    req.host = "localhost";
    req.message_request_case = a->which;
    req.file_containing_symbol = (char *)a->what; /* every question shares the union */
    c->len = grpc__reflection__v1alpha__server_reflection_request__get_packed_size(&req);
    c->request = malloc(c->len + 1);
    assert_non_null(c->request);
    grpc__reflection__v1alpha__server_reflection_request__pack(&req, c->request);
    return c;
}

static tse_status reflection_answer_run(void *ctx)
{
    reflection_ctx *c = ctx;
    uint8_t *out = NULL;
    size_t out_len = 0;
    tse_error err;
    tse_status rc = tse_reflection_answer(c->r, TSE_REFLECTION_V1ALPHA, c->request, c->len, &out,
                                          &out_len, &err);

    if (rc != TSE_OK && out != NULL)
        fail_msg("answering failed (%s) yet left an answer", err.message);
    free(out);
    return rc;
}

static void reflection_teardown(void *ctx)
{
    reflection_ctx *c = ctx;

    tse_reflection_destroy(c->r);
    free(c->request);
    free(c);
}

static void reflection_fails_cleanly(void **state)
{
    static const reflection_arg args[] = {
        {GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES, "*"},
        {GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL,
         "tracseq.events.v1.EventService"},
    };
    const op create = {"tse_reflection_create", NULL, no_setup, reflection_create_run, no_teardown};

    (void)state;
    sweep(&create);
    for (size_t i = 0; i < sizeof(args) / sizeof(args[0]); i++) {
        op o = {"tse_reflection_answer", &args[i], reflection_setup, reflection_answer_run,
                reflection_teardown};
        sweep(&o);
    }
}

/* The sweep itself: the leak of an error path is seen. */
static void *leaked_block; /* what leaky_run lost, freed by the test */

static tse_status leaky_run(void *ctx)
{
    char *a = tse_malloc(16);
    char *b;

    (void)ctx;
    if (a == NULL)
        return TSE_NOMEM;
    b = tse_malloc(16);
    if (b == NULL) {
        leaked_block = a; /* "forgets" a when b fails */
        return TSE_NOMEM;
    }
    tse_free(a);
    tse_free(b);
    return TSE_OK;
}

static void sweep_finds_a_leak_on_an_error_path(void **state)
{
    op o = {"leaky", NULL, no_setup, leaky_run, no_teardown};
    tse_status rc;
    size_t leaked;

    (void)state;
    attempt(&o, 0, &rc, &leaked);
    assert_int_equal(rc, TSE_OK);
    assert_int_equal(torture.count, 2);
    assert_int_equal(leaked, 0);
    attempt(&o, 1, &rc, &leaked);
    assert_int_equal(rc, TSE_NOMEM);
    assert_int_equal(leaked, 0);
    attempt(&o, 2, &rc, &leaked);
    assert_int_equal(rc, TSE_NOMEM);
    if (heap_counts)
        assert_true(leaked >= 16);
    free(leaked_block);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_to_message_fails_cleanly),
        cmocka_unit_test(message_to_json_fails_cleanly),
        cmocka_unit_test(request_unpack_fails_cleanly),
        cmocka_unit_test(event_prepare_fails_cleanly),
        cmocka_unit_test(subscription_validate_fails_cleanly),
        cmocka_unit_test(broker_helpers_fail_cleanly),
        cmocka_unit_test(reflection_fails_cleanly),
        cmocka_unit_test(sweep_finds_a_leak_on_an_error_path),
    };

    return cmocka_run_group_tests(tests, install, NULL);
}

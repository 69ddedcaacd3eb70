/*
 * test_service_auth.c - identities and permissions end to end (issue 12):
 * a real redis-server and the real tracseq-events binary with a tokens
 * file, called over loopback with bearer tokens.
 *
 * The identities of every test:
 *   lims     publish sample.*, subscribe sample.*
 *   monitor  subscribe sequencing.*, publishes nothing
 *   ops      admin, publish_on_behalf, publish and subscribe *
 *   slow     publish * at 2 events/s (burst 2)
 * What this file holds the service to: a call without a known token is
 * UNAUTHENTICATED (health excepted); each identity publishes only its types
 * as itself (ops on behalf of others); a subscription's patterns lie within
 * its creator's subscribe permissions, for types first seen later too; only
 * its owner or an admin uses or deletes it; stats need admin; the rate is a
 * token bucket answered RESOURCE_EXHAUSTED with when to retry; a token
 * removed from the file stops working at SIGHUP; every denial is audited
 * and no token appears in the log. Without a tokens file the service keeps
 * to loopback unless told otherwise.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "auth/auth.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc_client.h"
#include "harness.h"
#include "http_client.h"
#include "tracseq/events/v1/service.pb-c.h"
#include "wait.h"

#define SERVICE     "/tracseq.events.v1.EventService/"
#define M_PUBLISH   SERVICE "Publish"
#define M_CREATE    SERVICE "CreateSubscription"
#define M_GET       SERVICE "GetSubscription"
#define M_LIST      SERVICE "ListSubscriptions"
#define M_DELETE    SERVICE "DeleteSubscription"
#define M_PULL      SERVICE "Pull"
#define M_ACK       SERVICE "Acknowledge"
#define M_STATS     SERVICE "GetStats"
#define M_TYPES     SERVICE "ListEventTypes"
#define M_SUBSCRIBE SERVICE "Subscribe"
#define M_HEALTH    "/grpc.health.v1.Health/Check"
#define TIMEOUT_MS  10000

/* The tokens: secrets the log must never show. */
#define TOKEN_LIMS    "tse_lims-9d1f0c7e2b5a4e8f"
#define TOKEN_MONITOR "tse_monitor-4c2e8a1b9f7d3e6a"
#define TOKEN_OPS     "tse_ops-7b3d9e1f5a2c8e4d"
#define TOKEN_SLOW    "tse_slow-1a2b3c4d5e6f7a8b"

typedef Tracseq__Events__V1__Event Event;
typedef Tracseq__Events__V1__Subscription Subscription;

typedef struct world {
    tse_test_redis *redis;
    tse_test_service *service;
    tse_client *ch;
    char tokens[64];
} world;

static void hex_of(const char *token, char out[65])
{
    uint8_t h[TSE_AUTH_HASH_LEN];

    assert_true(tse_auth_sha256(token, strlen(token), h));
    for (int i = 0; i < TSE_AUTH_HASH_LEN; i++)
        snprintf(out + 2 * i, 3, "%02x", h[i]);
}

/* How lims appears in the tokens file. */
typedef enum lims_line {
    LIMS_GONE = 0, /* its line removed: the token is revoked */
    LIMS_ON,       /* publish and subscribe sample.* */
    LIMS_EXPIRED,  /* the same, expired long ago */
    LIMS_NARROWED, /* subscribe sample.received only */
} lims_line;

/* Writes the tokens file with lims as given. */
static void write_tokens(const char *path, lims_line lims)
{
    char h[4][65];
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    hex_of(TOKEN_LIMS, h[0]);
    hex_of(TOKEN_MONITOR, h[1]);
    hex_of(TOKEN_OPS, h[2]);
    hex_of(TOKEN_SLOW, h[3]);
    fprintf(f, "# test identities\n");
    if (lims == LIMS_ON)
        fprintf(f, "lims sha256=%s publish=sample.* subscribe=sample.*\n", h[0]);
    else if (lims == LIMS_EXPIRED)
        fprintf(f, "lims sha256=%s publish=sample.* subscribe=sample.* expires=2001-01-01\n", h[0]);
    else if (lims == LIMS_NARROWED)
        fprintf(f, "lims sha256=%s publish=sample.* subscribe=sample.received\n", h[0]);
    fprintf(f, "monitor sha256=%s subscribe=sequencing.*\n", h[1]);
    fprintf(f, "ops sha256=%s admin publish_on_behalf publish=* subscribe=*\n", h[2]);
    fprintf(f, "slow sha256=%s publish=* rate=2 burst=2\n", h[3]);
    fclose(f);
}

static int world_up(void **state)
{
    world *w = calloc(1, sizeof(*w));
    char arg[96];

    assert_non_null(w);
    snprintf(w->tokens, sizeof(w->tokens), "/tmp/tse-tokens-%d", (int)getpid());
    write_tokens(w->tokens, LIMS_ON);
    w->redis = tse_test_redis_start(false);
    assert_non_null(w->redis);
    snprintf(arg, sizeof(arg), "--auth-tokens-file=%s", w->tokens);
    w->service = tse_test_service_start(w->redis, (const char *const[]){arg, NULL});
    assert_non_null(w->service);
    w->ch = tse_test_channel(w->service->addr);
    *state = w;
    return 0;
}

static int world_down(void **state)
{
    world *w = *state;

    tse_test_channel_destroy(w->ch);
    assert_int_equal(tse_test_service_stop(w->service), 0);
    tse_test_redis_stop(w->redis);
    unlink(w->tokens);
    free(w);
    return 0;
}

/* ---- calls ---- */

static const char *bearer(const char *token, char *buf, size_t len)
{
    if (token == NULL)
        return NULL;
    snprintf(buf, len, "Bearer %s", token);
    return buf;
}

/* One unary call as token (NULL: none); the status, details in *st. */
static grpc_status_code call_as(world *w, const char *token, const char *method,
                                const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
                                ProtobufCMessage **resp, tse_test_status *st)
{
    char auth[128];
    ProtobufCMessage *mine = NULL;
    grpc_status_code code;

    code = tse_test_unary(w->ch, method, req, desc, resp ? resp : &mine, st, TIMEOUT_MS,
                          token ? "authorization" : NULL, bearer(token, auth, sizeof(auth)));
    if (mine != NULL)
        protobuf_c_message_free_unpacked(mine, NULL);
    return code;
}

static grpc_status_code publish_as(world *w, const char *token, const char *type,
                                   const char *source, tse_test_status *st)
{
    Tracseq__Events__V1__PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
    Event ev = TRACSEQ__EVENTS__V1__EVENT__INIT;
    Google__Protobuf__Struct data = GOOGLE__PROTOBUF__STRUCT__INIT;

    ev.event_type = (char *)type;
    ev.source_service = (char *)source;
    ev.payload_case = TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA;
    ev.data = &data;
    req.event = &ev;
    return call_as(w, token, M_PUBLISH, &req.base,
                   &tracseq__events__v1__publish_response__descriptor, NULL, st);
}

static grpc_status_code create_as(world *w, const char *token, const char *name,
                                  const char *pattern, tse_test_status *st)
{
    Tracseq__Events__V1__CreateSubscriptionRequest req =
        TRACSEQ__EVENTS__V1__CREATE_SUBSCRIPTION_REQUEST__INIT;
    Subscription sub = TRACSEQ__EVENTS__V1__SUBSCRIPTION__INIT;
    char *patterns[1] = {(char *)pattern};

    sub.name = (char *)name;
    sub.n_event_types = 1;
    sub.event_types = patterns;
    sub.max_delivery_attempts = 5;
    req.subscription = &sub;
    return call_as(w, token, M_CREATE, &req.base, &tracseq__events__v1__subscription__descriptor,
                   NULL, st);
}

static grpc_status_code by_name_as(world *w, const char *token, const char *method,
                                   const char *name, tse_test_status *st)
{
    Tracseq__Events__V1__GetSubscriptionRequest get =
        TRACSEQ__EVENTS__V1__GET_SUBSCRIPTION_REQUEST__INIT;
    Tracseq__Events__V1__DeleteSubscriptionRequest del =
        TRACSEQ__EVENTS__V1__DELETE_SUBSCRIPTION_REQUEST__INIT;
    Tracseq__Events__V1__PullRequest pull = TRACSEQ__EVENTS__V1__PULL_REQUEST__INIT;
    Tracseq__Events__V1__AcknowledgeRequest ack = TRACSEQ__EVENTS__V1__ACKNOWLEDGE_REQUEST__INIT;
    char *ids[1] = {"tracseq:events:{sample.created}:p3/1-0"};

    if (strcmp(method, M_GET) == 0) {
        get.name = (char *)name;
        return call_as(w, token, M_GET, &get.base, &tracseq__events__v1__subscription__descriptor,
                       NULL, st);
    }
    if (strcmp(method, M_DELETE) == 0) {
        del.name = (char *)name;
        return call_as(w, token, M_DELETE, &del.base,
                       &tracseq__events__v1__delete_subscription_response__descriptor, NULL, st);
    }
    if (strcmp(method, M_PULL) == 0) {
        pull.subscription = (char *)name;
        pull.max_events = 1;
        return call_as(w, token, M_PULL, &pull.base,
                       &tracseq__events__v1__pull_response__descriptor, NULL, st);
    }
    ack.subscription = (char *)name;
    ack.n_ack_ids = 1;
    ack.ack_ids = ids;
    return call_as(w, token, M_ACK, &ack.base,
                   &tracseq__events__v1__acknowledge_response__descriptor, NULL, st);
}

static size_t list_as(world *w, const char *token)
{
    Tracseq__Events__V1__ListSubscriptionsRequest req =
        TRACSEQ__EVENTS__V1__LIST_SUBSCRIPTIONS_REQUEST__INIT;
    Tracseq__Events__V1__ListSubscriptionsResponse *resp = NULL;
    tse_test_status st;
    size_t n;

    assert_int_equal(call_as(w, token, M_LIST, &req.base,
                             &tracseq__events__v1__list_subscriptions_response__descriptor,
                             (ProtobufCMessage **)&resp, &st),
                     GRPC_STATUS_OK);
    n = resp->n_subscriptions;
    for (size_t i = 0; i < n; i++)
        if (token != NULL && strcmp(token, TOKEN_OPS) != 0)
            assert_string_equal(resp->subscriptions[i]->owner,
                                strcmp(token, TOKEN_LIMS) == 0 ? "lims" : "monitor");
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return n;
}

#define EXPECT(call, code)                                                                         \
    do {                                                                                           \
        tse_test_status st_;                                                                       \
        memset(&st_, 0, sizeof(st_));                                                              \
        grpc_status_code got_ = (call);                                                            \
        (void)st_;                                                                                 \
        if (got_ != (code))                                                                        \
            fail_msg("%s: status %d, want %d", #call, got_, (code));                               \
    } while (0)

static char *read_log(const world *w)
{
    FILE *f = fopen(w->service->log, "r");
    char *buf = calloc(1, 4 << 20);
    size_t n;

    assert_non_null(f);
    assert_non_null(buf);
    n = fread(buf, 1, (4 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* ---- tests ---- */

static void calls_without_a_known_token_are_unauthenticated(void **state)
{
    world *w = *state;
    tse_test_status st;
    Tracseq__Events__V1__ListEventTypesRequest types =
        TRACSEQ__EVENTS__V1__LIST_EVENT_TYPES_REQUEST__INIT;
    Grpc__Health__V1__HealthCheckRequest health = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;

    assert_int_equal(publish_as(w, NULL, "sample.created", "lims", &st),
                     GRPC_STATUS_UNAUTHENTICATED);
    assert_non_null(strstr(st.details, "authentication required"));
    assert_int_equal(publish_as(w, "tse_not-a-token", "sample.created", "lims", &st),
                     GRPC_STATUS_UNAUTHENTICATED);
    assert_int_equal(call_as(w, NULL, M_TYPES, &types.base,
                             &tracseq__events__v1__list_event_types_response__descriptor, NULL,
                             &st),
                     GRPC_STATUS_UNAUTHENTICATED);
    assert_int_equal(call_as(w, TOKEN_MONITOR, M_TYPES, &types.base,
                             &tracseq__events__v1__list_event_types_response__descriptor, NULL,
                             &st),
                     GRPC_STATUS_OK);
    /* Probes carry no token. */
    assert_int_equal(call_as(w, NULL, M_HEALTH, &health.base,
                             &grpc__health__v1__health_check_response__descriptor, NULL, &st),
                     GRPC_STATUS_OK);
}

static void each_identity_publishes_only_its_types_as_itself(void **state)
{
    world *w = *state;
    static const struct {
        const char *token, *type, *source;
        grpc_status_code want;
    } rows[] = {
        {TOKEN_LIMS, "sample.created", "lims", GRPC_STATUS_OK},
        {TOKEN_LIMS, "sample.received", "lims", GRPC_STATUS_OK},
        {TOKEN_LIMS, "sequencing.run_started", "lims", GRPC_STATUS_PERMISSION_DENIED},
        {TOKEN_LIMS, "auth.login", "lims", GRPC_STATUS_PERMISSION_DENIED},
        /* A spoofed source_service. */
        {TOKEN_LIMS, "sample.created", "ops", GRPC_STATUS_PERMISSION_DENIED},
        {TOKEN_MONITOR, "sequencing.run_started", "monitor", GRPC_STATUS_PERMISSION_DENIED},
        {TOKEN_MONITOR, "sample.created", "monitor", GRPC_STATUS_PERMISSION_DENIED},
        /* publish_on_behalf. */
        {TOKEN_OPS, "auth.login", "ops", GRPC_STATUS_OK},
        {TOKEN_OPS, "sample.created", "lims", GRPC_STATUS_OK},
    };
    tse_test_status st;

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        grpc_status_code got = publish_as(w, rows[i].token, rows[i].type, rows[i].source, &st);
        if (got != rows[i].want)
            fail_msg("row %zu (%s as %s): status %d '%s', want %d", i, rows[i].type, rows[i].source,
                     got, st.details, rows[i].want);
    }
}

static void subscription_patterns_lie_within_the_creators_permissions(void **state)
{
    world *w = *state;
    tse_test_status st;

    assert_int_equal(create_as(w, TOKEN_LIMS, "auth-lims-samples", "sample.*", &st),
                     GRPC_STATUS_OK);
    assert_int_equal(create_as(w, TOKEN_LIMS, "auth-lims-created", "sample.created", &st),
                     GRPC_STATUS_OK);
    /* Wildcards that would reach a type lims may not read, such as a
     * "*.created" type first published later. */
    assert_int_equal(create_as(w, TOKEN_LIMS, "auth-lims-all", "*", &st),
                     GRPC_STATUS_PERMISSION_DENIED);
    assert_int_equal(create_as(w, TOKEN_LIMS, "auth-lims-created-anywhere", "*.created", &st),
                     GRPC_STATUS_PERMISSION_DENIED);
    assert_int_equal(create_as(w, TOKEN_MONITOR, "auth-monitor-samples", "sample.*", &st),
                     GRPC_STATUS_PERMISSION_DENIED);
    assert_int_equal(create_as(w, TOKEN_MONITOR, "auth-monitor-runs", "sequencing.*", &st),
                     GRPC_STATUS_OK);
    assert_int_equal(create_as(w, TOKEN_OPS, "auth-ops-all", "*", &st), GRPC_STATUS_OK);
    /* Joining another identity's subscription by name and settings. */
    assert_int_equal(create_as(w, TOKEN_MONITOR, "auth-lims-samples", "sample.*", &st),
                     GRPC_STATUS_PERMISSION_DENIED);
}

static void a_subscription_belongs_to_its_creator_or_an_admin(void **state)
{
    world *w = *state;
    static const char *const methods[] = {M_GET, M_PULL, M_ACK};
    tse_test_status st;

    assert_int_equal(create_as(w, TOKEN_LIMS, "auth-owned", "sample.*", &st), GRPC_STATUS_OK);
    for (size_t i = 0; i < 3; i++) {
        EXPECT(by_name_as(w, TOKEN_LIMS, methods[i], "auth-owned", &st_), GRPC_STATUS_OK);
        EXPECT(by_name_as(w, TOKEN_OPS, methods[i], "auth-owned", &st_), GRPC_STATUS_OK);
        EXPECT(by_name_as(w, TOKEN_MONITOR, methods[i], "auth-owned", &st_),
               GRPC_STATUS_PERMISSION_DENIED);
        EXPECT(by_name_as(w, NULL, methods[i], "auth-owned", &st_), GRPC_STATUS_UNAUTHENTICATED);
    }
    assert_int_equal(by_name_as(w, TOKEN_MONITOR, M_DELETE, "auth-owned", &st),
                     GRPC_STATUS_PERMISSION_DENIED);
    assert_int_equal(by_name_as(w, TOKEN_LIMS, M_GET, "auth-owned", &st), GRPC_STATUS_OK);
    assert_int_equal(by_name_as(w, TOKEN_OPS, M_DELETE, "auth-owned", &st), GRPC_STATUS_OK);
    assert_int_equal(by_name_as(w, TOKEN_LIMS, M_GET, "auth-owned", &st), GRPC_STATUS_NOT_FOUND);

    /* Listing: one's own, or everything for an admin. */
    assert_int_equal(create_as(w, TOKEN_LIMS, "auth-listed", "sample.*", &st), GRPC_STATUS_OK);
    assert_int_equal(create_as(w, TOKEN_MONITOR, "auth-listed-runs", "sequencing.*", &st),
                     GRPC_STATUS_OK);
    size_t all = list_as(w, TOKEN_OPS), lims = list_as(w, TOKEN_LIMS),
           monitor = list_as(w, TOKEN_MONITOR);
    assert_true(lims >= 1 && monitor >= 1);
    assert_true(all >= lims + monitor);
}

static void a_subscribe_stream_checks_patterns_and_owner(void **state)
{
    world *w = *state;
    Tracseq__Events__V1__SubscribeRequest req = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    Subscription sub = TRACSEQ__EVENTS__V1__SUBSCRIPTION__INIT;
    char *patterns[1] = {"*"};
    tse_test_status st;
    tse_test_stream *s;

    sub.name = "auth-stream-all";
    sub.n_event_types = 1;
    sub.event_types = patterns;
    req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION;
    req.subscription = &sub;
    s = tse_test_stream_open(w->ch, M_SUBSCRIBE, TIMEOUT_MS, "authorization", "Bearer " TOKEN_LIMS);
    assert_true(tse_test_stream_send(s, &req.base));
    assert_int_equal(tse_test_stream_finish(s, &st), GRPC_STATUS_PERMISSION_DENIED);

    /* By name: someone else's. */
    assert_int_equal(create_as(w, TOKEN_OPS, "auth-stream-ops", "*", &st), GRPC_STATUS_OK);
    req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION_NAME;
    req.subscription_name = "auth-stream-ops";
    s = tse_test_stream_open(w->ch, M_SUBSCRIBE, TIMEOUT_MS, "authorization", "Bearer " TOKEN_LIMS);
    assert_true(tse_test_stream_send(s, &req.base));
    assert_int_equal(tse_test_stream_finish(s, &st), GRPC_STATUS_PERMISSION_DENIED);
}

/* Dead letters, seek and snapshots: the owner or an admin, like the rest. */
static void operations_need_the_owner_or_an_admin(void **state)
{
    world *w = *state;
    const char *const tokens[] = {TOKEN_LIMS, TOKEN_OPS, TOKEN_MONITOR, NULL};
    const grpc_status_code want[] = {GRPC_STATUS_OK, GRPC_STATUS_OK, GRPC_STATUS_PERMISSION_DENIED,
                                     GRPC_STATUS_UNAUTHENTICATED};
    Tracseq__Events__V1__ListDeadLettersRequest list =
        TRACSEQ__EVENTS__V1__LIST_DEAD_LETTERS_REQUEST__INIT;
    Tracseq__Events__V1__PurgeDeadLettersRequest purge =
        TRACSEQ__EVENTS__V1__PURGE_DEAD_LETTERS_REQUEST__INIT;
    Tracseq__Events__V1__SeekRequest seek = TRACSEQ__EVENTS__V1__SEEK_REQUEST__INIT;
    Tracseq__Events__V1__ListSnapshotsRequest snaps =
        TRACSEQ__EVENTS__V1__LIST_SNAPSHOTS_REQUEST__INIT;
    tse_test_status st;

    assert_int_equal(create_as(w, TOKEN_LIMS, "auth-ops", "sample.*", &st), GRPC_STATUS_OK);
    list.subscription = purge.subscription = seek.subscription = snaps.subscription = "auth-ops";
    purge.all = true;
    seek.position = TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_LATEST;
    for (size_t i = 0; i < 4; i++) {
        EXPECT(call_as(w, tokens[i], SERVICE "ListDeadLetters", &list.base,
                       &tracseq__events__v1__list_dead_letters_response__descriptor, NULL, &st_),
               want[i]);
        EXPECT(call_as(w, tokens[i], SERVICE "PurgeDeadLetters", &purge.base,
                       &tracseq__events__v1__purge_dead_letters_response__descriptor, NULL, &st_),
               want[i]);
        EXPECT(call_as(w, tokens[i], SERVICE "Seek", &seek.base,
                       &tracseq__events__v1__seek_response__descriptor, NULL, &st_),
               want[i]);
        EXPECT(call_as(w, tokens[i], SERVICE "ListSnapshots", &snaps.base,
                       &tracseq__events__v1__list_snapshots_response__descriptor, NULL, &st_),
               want[i]);
    }
}

static void stats_of_everything_need_admin(void **state)
{
    world *w = *state;
    Tracseq__Events__V1__GetStatsRequest req = TRACSEQ__EVENTS__V1__GET_STATS_REQUEST__INIT;
    tse_test_status st;

    assert_int_equal(call_as(w, TOKEN_LIMS, M_STATS, &req.base,
                             &tracseq__events__v1__stats__descriptor, NULL, &st),
                     GRPC_STATUS_PERMISSION_DENIED);
    assert_int_equal(call_as(w, TOKEN_OPS, M_STATS, &req.base,
                             &tracseq__events__v1__stats__descriptor, NULL, &st),
                     GRPC_STATUS_OK);
}

static void the_publish_rate_is_a_token_bucket(void **state)
{
    world *w = *state;
    tse_test_status st;
    int ok = 0, limited = 0;

    /* Burst 2 at 2 events/s: of five at once, at most three pass (one may
     * refill while they go out on a slow machine). */
    for (int i = 0; i < 5; i++) {
        grpc_status_code code = publish_as(w, TOKEN_SLOW, "sample.created", "slow", &st);
        if (code == GRPC_STATUS_OK) {
            ok++;
        } else {
            assert_int_equal(code, GRPC_STATUS_RESOURCE_EXHAUSTED);
            assert_non_null(strstr(st.details, "retry after "));
            limited++;
        }
    }
    assert_true(ok >= 2 && ok <= 3);
    assert_true(limited >= 2);
    usleep(1100 * 1000);
    assert_int_equal(publish_as(w, TOKEN_SLOW, "sample.created", "slow", &st), GRPC_STATUS_OK);
}

static void a_token_removed_from_the_file_stops_at_sighup(void **state)
{
    world *w = *state;
    tse_test_status st;
    char *log;

    assert_int_equal(publish_as(w, TOKEN_LIMS, "sample.created", "lims", &st), GRPC_STATUS_OK);
    write_tokens(w->tokens, LIMS_GONE);
    assert_int_equal(kill(w->service->pid, SIGHUP), 0);
    for (int i = 0; i < 100; i++) {
        if (publish_as(w, TOKEN_LIMS, "sample.created", "lims", &st) == GRPC_STATUS_UNAUTHENTICATED)
            break;
        usleep(50 * 1000);
    }
    assert_int_equal(publish_as(w, TOKEN_LIMS, "sample.created", "lims", &st),
                     GRPC_STATUS_UNAUTHENTICATED);
    assert_int_equal(publish_as(w, TOKEN_OPS, "sample.created", "lims", &st), GRPC_STATUS_OK);
    log = read_log(w);
    assert_non_null(strstr(log, "tokens file reloaded"));
    free(log);
    /* A broken file keeps the identities in use. */
    FILE *f = fopen(w->tokens, "w");
    fputs("ops sha256=broken\n", f);
    fclose(f);
    assert_int_equal(kill(w->service->pid, SIGHUP), 0);
    usleep(300 * 1000);
    assert_int_equal(publish_as(w, TOKEN_OPS, "sample.created", "lims", &st), GRPC_STATUS_OK);
    write_tokens(w->tokens, LIMS_ON);
    assert_int_equal(kill(w->service->pid, SIGHUP), 0);
    for (int i = 0; i < 100; i++) {
        if (publish_as(w, TOKEN_LIMS, "sample.created", "lims", &st) == GRPC_STATUS_OK)
            break;
        usleep(50 * 1000);
    }
    assert_int_equal(publish_as(w, TOKEN_LIMS, "sample.created", "lims", &st), GRPC_STATUS_OK);
}

/* How many reloads of the tokens file the service has logged. */
static int reloads_logged(const world *w)
{
    char *log = read_log(w), *p = log;
    int n = 0;

    while ((p = strstr(p, "tokens file reloaded")) != NULL) {
        n++;
        p++;
    }
    free(log);
    return n;
}

/* Rewrites the tokens file with lims as given and waits until the service
 * has reloaded it (SIGHUP). */
static void reload_tokens(world *w, lims_line lims)
{
    int before = reloads_logged(w);

    write_tokens(w->tokens, lims);
    assert_int_equal(kill(w->service->pid, SIGHUP), 0);
    for (int i = 0; i < 200 && reloads_logged(w) == before; i++)
        usleep(50 * 1000);
    assert_true(reloads_logged(w) > before);
}

/*
 * A Subscribe stream opened by lims on its own subscription gets an event;
 * then lims's line becomes `lims` and the file is reloaded: the stream gets
 * no further event but ends with `want` at its next delivery, and unary
 * calls with the token answer `unary` (OK: still a known identity).
 */
static void stream_after_reload(world *w, const char *name, lims_line lims, grpc_status_code want,
                                grpc_status_code unary)
{
    Tracseq__Events__V1__SubscribeRequest req = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    tse_test_status st;
    tse_test_stream *s;
    ProtobufCMessage *got;

    assert_int_equal(create_as(w, TOKEN_LIMS, name, "sample.*", &st), GRPC_STATUS_OK);
    req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION_NAME;
    req.subscription_name = (char *)name;
    s = tse_test_stream_open(w->ch, M_SUBSCRIBE, 30000, "authorization", "Bearer " TOKEN_LIMS);
    assert_true(tse_test_stream_send(s, &req.base));
    assert_int_equal(publish_as(w, TOKEN_OPS, "sample.created", "lims", &st), GRPC_STATUS_OK);
    got = tse_test_stream_recv(s, &tracseq__events__v1__delivery__descriptor, TIMEOUT_MS, NULL);
    assert_non_null(got);
    protobuf_c_message_free_unpacked(got, NULL);

    reload_tokens(w, lims);
    assert_int_equal(publish_as(w, TOKEN_LIMS, "sample.created", "lims", &st), unary);
    assert_int_equal(publish_as(w, TOKEN_OPS, "sample.created", "lims", &st), GRPC_STATUS_OK);
    got = tse_test_stream_recv(s, &tracseq__events__v1__delivery__descriptor, TIMEOUT_MS, NULL);
    if (got != NULL)
        fail_msg("%s: a delivery after the reload", name);
    assert_int_equal(tse_test_stream_finish(s, &st), want);
    reload_tokens(w, LIMS_ON);
}

static void an_open_stream_ends_when_its_token_is_revoked(void **state)
{
    world *w = *state;

    stream_after_reload(w, "auth-revoked-stream", LIMS_GONE, GRPC_STATUS_UNAUTHENTICATED,
                        GRPC_STATUS_UNAUTHENTICATED);
}

static void an_open_stream_ends_when_its_token_has_expired(void **state)
{
    world *w = *state;

    stream_after_reload(w, "auth-expired-stream", LIMS_EXPIRED, GRPC_STATUS_UNAUTHENTICATED,
                        GRPC_STATUS_UNAUTHENTICATED);
}

static void an_open_stream_ends_when_its_permission_narrows(void **state)
{
    world *w = *state;

    stream_after_reload(w, "auth-narrowed-stream", LIMS_NARROWED, GRPC_STATUS_PERMISSION_DENIED,
                        GRPC_STATUS_OK);
}

/* A PublishStream opened before the token was revoked: its next message
 * gets an UNAUTHENTICATED error answer and is not stored. */
static void an_open_publish_stream_stops_when_its_token_is_revoked(void **state)
{
    world *w = *state;
    Tracseq__Events__V1__PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
    Tracseq__Events__V1__PublishResponse *resp;
    Event ev = TRACSEQ__EVENTS__V1__EVENT__INIT;
    Google__Protobuf__Struct data = GOOGLE__PROTOBUF__STRUCT__INIT;
    tse_test_status st;
    tse_test_stream *s;
    grpc_status_code code;

    ev.event_type = "sample.created";
    ev.source_service = "lims";
    ev.payload_case = TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA;
    ev.data = &data;
    req.event = &ev;
    s = tse_test_stream_open(w->ch, SERVICE "PublishStream", 30000, "authorization",
                             "Bearer " TOKEN_LIMS);
    assert_true(tse_test_stream_send(s, &req.base));
    resp = (Tracseq__Events__V1__PublishResponse *)tse_test_stream_recv(
        s, &tracseq__events__v1__publish_response__descriptor, TIMEOUT_MS, NULL);
    assert_non_null(resp);
    assert_true(resp->event_id[0] != '\0');
    protobuf_c_message_free_unpacked(&resp->base, NULL);

    reload_tokens(w, LIMS_GONE);
    (void)tse_test_stream_send(s, &req.base);
    resp = (Tracseq__Events__V1__PublishResponse *)tse_test_stream_recv(
        s, &tracseq__events__v1__publish_response__descriptor, TIMEOUT_MS, NULL);
    assert_non_null(resp);
    assert_non_null(resp->error);
    assert_int_equal(resp->error->code, GRPC_STATUS_UNAUTHENTICATED);
    assert_true(resp->event_id[0] == '\0');
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    tse_test_stream_close_send(s);
    code = tse_test_stream_finish(s, &st);
    assert_true(code == GRPC_STATUS_OK || code == GRPC_STATUS_UNAUTHENTICATED);
    reload_tokens(w, LIMS_ON);
}

static void denials_are_audited_and_no_token_is_logged(void **state)
{
    world *w = *state;
    Tracseq__Events__V1__PublishRequest empty = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
    tse_test_status st;
    char *log;

    assert_int_equal(tse_test_unary(w->ch, M_PUBLISH, &empty.base,
                                    &tracseq__events__v1__publish_response__descriptor, NULL, &st,
                                    TIMEOUT_MS, "x-correlation-id", "audit-corr-42"),
                     GRPC_STATUS_UNAUTHENTICATED);
    assert_int_equal(publish_as(w, TOKEN_MONITOR, "sample.created", "monitor", &st),
                     GRPC_STATUS_PERMISSION_DENIED);
    log = read_log(w);
    assert_non_null(strstr(log, "\"msg\":\"audit\""));
    assert_non_null(strstr(log, "audit-corr-42"));
    assert_non_null(strstr(log, "\"identity\":\"monitor\""));
    assert_non_null(strstr(log, "\"decision\":\"denied\""));
    assert_non_null(strstr(log, "\"decision\":\"allowed as admin\""));
    static const char *const secrets[] = {TOKEN_LIMS, TOKEN_MONITOR,      TOKEN_OPS,
                                          TOKEN_SLOW, "9d1f0c7e2b5a4e8f", "7b3d9e1f5a2c8e4d"};
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
        if (strstr(log, secrets[i]) != NULL)
            fail_msg("the log shows a token (%s)", secrets[i]);
    free(log);
}

/* ---- the SDK's token option ---- */

/* Counts a publisher's outcomes by status. */
static void count_outcome(void *arg, const tse_client_publish_outcome *o)
{
    int *counts = arg;

    __atomic_add_fetch(&counts[o->status == TSE_CLIENT_OK ? 0 : 1], 1, __ATOMIC_SEQ_CST);
}

static void the_sdk_token_option_is_honoured(void **state)
{
    world *w = *state;
    tse_client_options o;
    tse_client *lims = NULL, *nobody = NULL;
    tse_client_publisher *pub = NULL;
    tse_client_event *ev = NULL;
    tse_client_error err;
    int counts[2] = {0, 0};

    tse_client_options_init(&o);
    o.target = w->service->addr;
    o.source_service = "lims";
    assert_int_equal(tse_client_connect(&o, &nobody, &err), TSE_CLIENT_OK);
    o.token = TOKEN_LIMS;
    assert_int_equal(tse_client_connect(&o, &lims, &err), TSE_CLIENT_OK);
    /* Blocking publish: with and without the token. */
    assert_int_equal(tse_client_publish_json(lims, "sample.created", "{}", NULL, NULL, &err),
                     TSE_CLIENT_OK);
    assert_int_equal(tse_client_publish_json(nobody, "sample.created", "{}", NULL, NULL, &err),
                     TSE_CLIENT_UNAUTHENTICATED);
    assert_int_equal(tse_client_publish_json(lims, "auth.login", "{}", NULL, NULL, &err),
                     TSE_CLIENT_PERMISSION_DENIED);
    /* The pipelined publisher's stream carries it too. */
    assert_int_equal(tse_client_publisher_create(lims, NULL, count_outcome, counts, &pub, &err),
                     TSE_CLIENT_OK);
    assert_int_equal(tse_client_event_from_json("sample.created", "{}", NULL, &ev, &err),
                     TSE_CLIENT_OK);
    for (int i = 0; i < 20; i++)
        assert_int_equal(tse_client_publisher_publish(pub, ev, NULL, &err), TSE_CLIENT_OK);
    assert_int_equal(tse_client_publisher_flush(pub, TIMEOUT_MS, &err), TSE_CLIENT_OK);
    assert_int_equal(counts[0], 20);
    assert_int_equal(counts[1], 0);
    tse_client_event_destroy(ev);
    tse_client_publisher_destroy(pub);
    tse_client_destroy(lims);
    tse_client_destroy(nobody);
}

/* ---- the REST bridge: the caller's token, never its own rights ---- */

/* One request to the bridge as token (NULL: no header); the response. */
static void http_as(int port, const char *token, const char *method, const char *path,
                    const char *body, tse_test_http_resp *r)
{
    char headers[256] = "";
    int fd = tse_test_http_connect(port);

    if (token != NULL)
        snprintf(headers, sizeof(headers), "Authorization: Bearer %s\r\n", token);
    tse_test_http_send(fd, method, path, body ? "application/json" : NULL, headers, body,
                       body ? strlen(body) : 0, true);
    assert_true(tse_test_http_read(fd, r));
    close(fd);
}

static void expect_http(int port, const char *token, const char *method, const char *path,
                        const char *body, int want, const char *code)
{
    tse_test_http_resp r;

    memset(&r, 0, sizeof(r));
    http_as(port, token, method, path, body, &r);
    /* Refusals: the JSON error body, {"error":"...","code":"<CODE>",...}. */
    if (r.status != want || (code != NULL && (r.body == NULL || strstr(r.body, code) == NULL)) ||
        (want >= 400 && (r.body == NULL || strstr(r.body, "{\"error\":") == NULL ||
                         strstr(r.body, "\"code\":\"") == NULL)))
        fail_msg("%s %s as %s: %d %s, want %d %s", method, path, token ? token : "nobody", r.status,
                 r.body ? r.body : "", want, code ? code : "");
    free(r.body);
}

#define EVENT_BODY(type, source)                                                                   \
    "{\"event_type\":\"" type "\",\"source_service\":\"" source "\",\"payload\":{}}"

static void the_bridge_forwards_the_callers_token(void **state)
{
    world *w = *state;
    tse_test_service *bridge = tse_test_bridge_start(w->service->addr, NULL);
    tse_test_http_resp r;
    int port, limited = 0;
    tse_test_status st;
    char log_path[256], *log;
    FILE *f;

    assert_non_null(bridge);
    port = bridge->port;
    tse_test_http_await_healthy(port, 30000); /* health needs no token */
    expect_http(port, NULL, "POST", "/api/v1/events/publish", EVENT_BODY("sample.created", "lims"),
                401, "UNAUTHENTICATED");
    expect_http(port, "tse_wrong", "POST", "/api/v1/events/publish",
                EVENT_BODY("sample.created", "lims"), 401, "UNAUTHENTICATED");
    expect_http(port, TOKEN_LIMS, "POST", "/api/v1/events/publish",
                EVENT_BODY("sample.created", "lims"), 200, "event_id");
    expect_http(port, TOKEN_LIMS, "POST", "/api/v1/events/publish",
                EVENT_BODY("auth.login", "lims"), 403, "PERMISSION_DENIED");
    /* The bridge cannot widen the caller: no publishing as someone else. */
    expect_http(port, TOKEN_LIMS, "POST", "/api/v1/events/publish",
                EVENT_BODY("sample.created", "ops"), 403, "PERMISSION_DENIED");
    expect_http(port, TOKEN_MONITOR, "POST", "/api/v1/events/batch",
                "{\"events\":[" EVENT_BODY("sample.created", "monitor") "]}", 403,
                "PERMISSION_DENIED");
    expect_http(port, TOKEN_LIMS, "POST", "/api/v1/events/batch",
                "{\"events\":[" EVENT_BODY("sample.created", "lims") "]}", 200, "\"published\":1");
    /* Reads and admin calls. */
    expect_http(port, NULL, "GET", "/api/v1/subscriptions", NULL, 401, "UNAUTHENTICATED");
    expect_http(port, TOKEN_LIMS, "GET", "/api/v1/stats", NULL, 403, "PERMISSION_DENIED");
    expect_http(port, TOKEN_OPS, "GET", "/api/v1/stats", NULL, 200, NULL);
    assert_int_equal(create_as(w, TOKEN_LIMS, "auth-bridge-owned", "sample.*", &st),
                     GRPC_STATUS_OK);
    expect_http(port, TOKEN_MONITOR, "GET", "/api/v1/subscriptions/auth-bridge-owned", NULL, 403,
                "PERMISSION_DENIED");
    expect_http(port, TOKEN_MONITOR, "GET", "/api/v1/subscriptions/auth-bridge-owned/events", NULL,
                403, "PERMISSION_DENIED");
    expect_http(port, NULL, "GET", "/api/v1/subscriptions/auth-bridge-owned/events", NULL, 401,
                "UNAUTHENTICATED");
    expect_http(port, TOKEN_MONITOR, "DELETE", "/api/v1/subscriptions/auth-bridge-owned", NULL, 403,
                "PERMISSION_DENIED");
    expect_http(port, TOKEN_LIMS, "GET", "/api/v1/subscriptions/auth-bridge-owned", NULL, 200,
                "\"owner\":\"lims\"");
    /* The rate: 429 with Retry-After. */
    for (int i = 0; i < 6 && limited == 0; i++) {
        memset(&r, 0, sizeof(r));
        http_as(port, TOKEN_SLOW, "POST", "/api/v1/events/publish",
                EVENT_BODY("sample.created", "slow"), &r);
        if (r.status == 429) {
            limited++;
            assert_non_null(strstr(r.head, "Retry-After: 1"));
            assert_non_null(strstr(r.body, "RESOURCE_EXHAUSTED"));
        } else {
            assert_int_equal(r.status, 200);
        }
        free(r.body);
    }
    assert_int_equal(limited, 1);
    snprintf(log_path, sizeof(log_path), "%s", bridge->log);
    assert_int_equal(tse_test_service_stop(bridge), 0);
    /* The bridge's log has no token either. */
    f = fopen(log_path, "r");
    assert_non_null(f);
    log = calloc(1, 1 << 20);
    assert_non_null(log);
    (void)!fread(log, 1, (1 << 20) - 1, f);
    fclose(f);
    assert_null(strstr(log, TOKEN_LIMS));
    assert_null(strstr(log, TOKEN_MONITOR));
    assert_null(strstr(log, TOKEN_SLOW));
    free(log);
}

/* ---- eventctl ---- */

/* Runs eventctl against the world's service with env; exit status, output. */
static int eventctl(const world *w, const char *env, const char *args, char *out, size_t len)
{
    char cmd[1024];
    FILE *p;
    size_t n;

    snprintf(cmd, sizeof(cmd), "env %s '%s' --server %s %s 2>&1", env, getenv("TSE_EVENTCTL_BIN"),
             w->service->addr, args);
    p = popen(cmd, "r");
    assert_non_null(p);
    n = fread(out, 1, len - 1, p);
    out[n] = '\0';
    return tse_test_exit_code(pclose(p));
}

static void eventctl_issues_tokens_and_sends_them(void **state)
{
    world *w = *state;
    char out[4096], token[128], line[256], env[256];
    FILE *f;

    /* A new identity: its token and line, appended, reloaded. */
    assert_int_equal(eventctl(w, "", "token fresh", out, sizeof(out)), 0);
    assert_int_equal(sscanf(out, "%127s %255[^\n]", token, line), 2);
    assert_memory_equal(token, "tse_", 4);
    assert_memory_equal(line, "fresh sha256=", 13);
    f = fopen(w->tokens, "a");
    assert_non_null(f);
    fprintf(f, "%s publish=sample.*\n", line);
    fclose(f);
    assert_int_equal(kill(w->service->pid, SIGHUP), 0);

    snprintf(env, sizeof(env), "TRACSEQ_TOKEN=%s", token);
    for (int i = 0; i < 100; i++) {
        if (eventctl(w, env, "--source fresh publish sample.created --payload '{}'", out,
                     sizeof(out)) == 0)
            break;
        usleep(50 * 1000);
    }
    assert_int_equal(
        eventctl(w, env, "--source fresh publish sample.created --payload '{}'", out, sizeof(out)),
        0);
    /* --token wins over the environment. */
    snprintf(line, sizeof(line), "--token %s --source fresh publish sample.created --payload '{}'",
             token);
    assert_int_equal(eventctl(w, "TRACSEQ_TOKEN=tse_wrong", line, out, sizeof(out)), 0);
    assert_int_equal(eventctl(w, "TRACSEQ_TOKEN=tse_wrong", "publish sample.created --payload '{}'",
                              out, sizeof(out)),
                     1);
    assert_non_null(strstr(out, "UNAUTHENTICATED"));
    assert_int_equal(
        eventctl(w, env, "--source fresh publish auth.login --payload '{}'", out, sizeof(out)), 1);
    assert_non_null(strstr(out, "PERMISSION_DENIED"));
    assert_null(strstr(out, token));
}

/* ---- without a tokens file ---- */

/* Runs the service binary with args and env; its exit status and output. */
static int run_service(const char *env, const char *args, char *out, size_t len)
{
    char cmd[1024];
    FILE *p;
    size_t n;

    snprintf(cmd, sizeof(cmd), "env %s '%s' %s 2>&1", env, getenv("TSE_SERVICE_BIN"), args);
    p = popen(cmd, "r");
    assert_non_null(p);
    n = fread(out, 1, len - 1, p);
    out[n] = '\0';
    return tse_test_exit_code(pclose(p));
}

static void without_tokens_the_port_stays_on_loopback(void **state)
{
    world *w = *state;
    char out[8192], arg[256];
    tse_test_service *open_svc;
    int port = tse_test_free_port();

    snprintf(arg, sizeof(arg), "--listen=0.0.0.0:%d --redis-url=%s", port, w->redis->url);
    assert_int_equal(run_service("", arg, out, sizeof(out)), 2);
    assert_non_null(strstr(out, "refusing to listen on 0.0.0.0"));

    snprintf(arg, sizeof(arg), "--listen=0.0.0.0:%d", port);
    open_svc = tse_test_service_start_on(
        w->redis, port, (const char *const[]){arg, "--allow-unauthenticated-remote=true", NULL});
    assert_non_null(open_svc);
    assert_int_equal(tse_test_service_stop(open_svc), 0);
}

static void secrets_are_not_in_help_or_errors(void **state)
{
    world *w = *state;
    char out[16384], env[512];

    (void)w;
    snprintf(env, sizeof(env),
             "REDIS_URL=redis://svc:Pw-s3cr3t-x9@127.0.0.1:1/0 AUTH_TOKENS_FILE=/nonexistent");
    assert_int_equal(run_service(env, "--help", out, sizeof(out)), 0);
    assert_null(strstr(out, "Pw-s3cr3t-x9"));
    /* Start errors: a tokens file that cannot be read, a bad REDIS_URL. */
    assert_int_equal(run_service(env, "", out, sizeof(out)), 2);
    assert_null(strstr(out, "Pw-s3cr3t-x9"));
    assert_non_null(strstr(out, "AUTH_TOKENS_FILE"));
    snprintf(env, sizeof(env), "REDIS_URL=redis://svc:Pw-s3cr3t-x9@127.0.0.1:99999999/0");
    assert_int_equal(run_service(env, "", out, sizeof(out)), 2);
    assert_null(strstr(out, "Pw-s3cr3t-x9"));
}

static void a_redis_password_is_used_and_never_logged(void **state)
{
    world *w = *state;
    char url[256], arg[300], path[256], *log;
    tse_test_service *svc;
    tse_client *ch;
    tse_test_status st;
    Tracseq__Events__V1__PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
    Event ev = TRACSEQ__EVENTS__V1__EVENT__INIT;
    Google__Protobuf__Struct data = GOOGLE__PROTOBUF__STRUCT__INIT;
    FILE *f;

    free(tse_test_redis_cmd(w->redis, "ACL SETUSER svc on >Rd-pa55-w0rd-77 ~* &* +@all"));
    snprintf(url, sizeof(url), "redis://svc:Rd-pa55-w0rd-77@127.0.0.1:%d", w->redis->port);
    snprintf(arg, sizeof(arg), "--redis-url=%s", url);
    svc = tse_test_service_start(w->redis, (const char *const[]){arg, "--log-level=debug", NULL});
    assert_non_null(svc);
    ch = tse_test_channel(svc->addr);
    ev.event_type = "sample.created";
    ev.source_service = "lims";
    ev.payload_case = TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA;
    ev.data = &data;
    req.event = &ev;
    assert_int_equal(tse_test_unary(ch, M_PUBLISH, &req.base,
                                    &tracseq__events__v1__publish_response__descriptor, NULL, &st,
                                    TIMEOUT_MS, NULL, NULL),
                     GRPC_STATUS_OK);
    tse_test_channel_destroy(ch);
    snprintf(path, sizeof(path), "%s", svc->log);
    assert_int_equal(tse_test_service_stop(svc), 0);
    f = fopen(path, "r");
    assert_non_null(f);
    log = calloc(1, 1 << 20);
    assert_non_null(log);
    (void)!fread(log, 1, (1 << 20) - 1, f);
    fclose(f);
    assert_non_null(strstr(log, "redis connected"));
    assert_null(strstr(log, "Rd-pa55-w0rd-77"));
    free(log);
    free(tse_test_redis_cmd(w->redis, "ACL DELUSER svc"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(calls_without_a_known_token_are_unauthenticated),
        cmocka_unit_test(each_identity_publishes_only_its_types_as_itself),
        cmocka_unit_test(subscription_patterns_lie_within_the_creators_permissions),
        cmocka_unit_test(a_subscription_belongs_to_its_creator_or_an_admin),
        cmocka_unit_test(a_subscribe_stream_checks_patterns_and_owner),
        cmocka_unit_test(operations_need_the_owner_or_an_admin),
        cmocka_unit_test(stats_of_everything_need_admin),
        cmocka_unit_test(the_publish_rate_is_a_token_bucket),
        cmocka_unit_test(a_token_removed_from_the_file_stops_at_sighup),
        cmocka_unit_test(an_open_stream_ends_when_its_token_is_revoked),
        cmocka_unit_test(an_open_stream_ends_when_its_token_has_expired),
        cmocka_unit_test(an_open_stream_ends_when_its_permission_narrows),
        cmocka_unit_test(an_open_publish_stream_stops_when_its_token_is_revoked),
        cmocka_unit_test(denials_are_audited_and_no_token_is_logged),
        cmocka_unit_test(eventctl_issues_tokens_and_sends_them),
        cmocka_unit_test(the_sdk_token_option_is_honoured),
        cmocka_unit_test(the_bridge_forwards_the_callers_token),
        cmocka_unit_test(without_tokens_the_port_stays_on_loopback),
        cmocka_unit_test(secrets_are_not_in_help_or_errors),
        cmocka_unit_test(a_redis_password_is_used_and_never_logged),
    };
    return cmocka_run_group_tests(tests, world_up, world_down);
}

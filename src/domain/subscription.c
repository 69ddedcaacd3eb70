/*
 * subscription.c - pattern syntax and matching, and the validation and
 * defaults of a subscription's settings. See subscription.h.
 *
 * Invariants: tse_pattern_match allocates nothing and reads each string once,
 * left to right, because the broker calls it for every (subscription, stream
 * key) pair it discovers. tse_subscription_validate checks everything before
 * it changes anything, so a refused subscription is left as it came, and it
 * only ever frees (removed duplicates), never allocates, so it cannot fail
 * for lack of memory.
 */
#include "domain/subscription.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "domain/catalog.h"
#include "domain/validate.h"

typedef Tracseq__Events__V1__Subscription subscription;

#define START_UNSPECIFIED TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_UNSPECIFIED
#define START_LATEST      TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_LATEST
#define START_EARLIEST    TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_EARLIEST
#define START_TIMESTAMP   TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_TIMESTAMP

/* google.protobuf.Timestamp's range: 0001-01-01T00:00:00Z..9999-12-31T23:59:59Z. */
#define TIMESTAMP_SECONDS_MIN INT64_C(-62135596800)
#define TIMESTAMP_SECONDS_MAX INT64_C(253402300799)
#define NANOS_MAX             999999999

#define STRINGIFY(x)  #x
#define XSTRINGIFY(x) STRINGIFY(x)

/* ---- patterns --------------------------------------------------------------- */

#define PARTIAL_STAR "a \"*\" must be a whole dot-separated segment (\"sample.*\"), not part of one"
#define BAD_SEGMENT                                                                                \
    "pattern segments must be \"*\" or start with a-z followed by a-z, 0-9 or '_', "               \
    "separated by single dots"

static bool ends_segment(char c)
{
    return c == '.' || c == '\0';
}

/*
 * Why pattern is malformed, as one sentence for a client, or NULL when it is
 * well-formed. Shared by tse_pattern_valid and the subscription validation,
 * so that both apply exactly the same rules. The one-segment case gets its
 * own sentence: "sample" looks reasonable but could never match, since every
 * event type has at least two segments.
 */
static const char *pattern_problem(const char *pattern)
{
    const char *p = pattern;
    size_t segments = 0;

    if (pattern == NULL || pattern[0] == '\0')
        return "pattern must not be empty";
    if (strnlen(pattern, TSE_PATTERN_MAX + 1) > TSE_PATTERN_MAX)
        return "pattern must be at most " XSTRINGIFY(TSE_PATTERN_MAX) " characters";
    if (strcmp(pattern, "*") == 0)
        return NULL;
    for (;;) {
        if (*p == '*') {
            p++;
            if (!ends_segment(*p))
                return PARTIAL_STAR;
        } else if (tse_segment_start(*p)) {
            for (p++; tse_segment_char(*p); p++)
                ;
            if (*p == '*')
                return PARTIAL_STAR;
        } else {
            return BAD_SEGMENT;
        }
        segments++;
        if (*p == '\0')
            break;
        if (*p != '.')
            return BAD_SEGMENT;
        p++;
    }
    if (segments < 2)
        return "pattern has one segment but event types have at least two, so it could "
               "never match; use \"<domain>.*\" or \"*\"";
    return NULL;
}

bool tse_pattern_valid(const char *pattern)
{
    return pattern_problem(pattern) == NULL;
}

/*
 * Walks both strings one segment at a time. A "*" segment swallows one
 * non-empty segment of the type; a literal segment must equal the type's
 * segment exactly. Both must then stand on the same separator: both on a dot
 * (go on) or both at the end (match). Stops at either string's NUL, so even
 * malformed input is read within bounds.
 */
bool tse_pattern_match(const char *pattern, const char *event_type)
{
    const char *p = pattern, *t = event_type;

    if (p == NULL || t == NULL)
        return false;
    if (p[0] == '*' && p[1] == '\0')
        return true;
    for (;;) {
        if (*p == '*') {
            p++;
            if (ends_segment(*t))
                return false;
            while (!ends_segment(*t))
                t++;
        } else {
            for (; !ends_segment(*p); p++, t++)
                if (*p != *t)
                    return false;
        }
        if (*p != *t)
            return false;
        if (*p == '\0')
            return true;
        p++;
        t++;
    }
}

/*
 * One allowed pattern covers all of pattern exactly when it does segment by
 * segment: a type built from pattern with a fresh word in place of each "*"
 * is matched by allowed only where allowed has "*" too. So a union of
 * allowed patterns covers pattern only when one of them does.
 */
bool tse_pattern_within(const char *pattern, const char *allowed)
{
    const char *p = pattern, *a = allowed;

    if (p == NULL || a == NULL)
        return false;
    if (a[0] == '*' && a[1] == '\0')
        return true;
    if (p[0] == '*' && p[1] == '\0')
        return false;
    for (;;) {
        if (*a == '*') {
            a++;
            while (!ends_segment(*p))
                p++;
        } else {
            for (; !ends_segment(*a); a++, p++)
                if (*a != *p)
                    return false;
        }
        if (*a != *p)
            return false;
        if (*a == '\0')
            return true;
        a++;
        p++;
    }
}

bool tse_patterns_match(char *const *patterns, size_t n, const char *event_type)
{
    for (size_t i = 0; i < n; i++)
        if (tse_pattern_match(patterns[i], event_type))
            return true;
    return false;
}

/* ---- names ------------------------------------------------------------------ */

static bool is_name_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

bool tse_subscription_name_valid(const char *name, size_t max)
{
    size_t len;

    if (name == NULL)
        return false;
    /* max + 1 to tell "too long" from "exactly max"; SIZE_MAX must not wrap to 0. */
    len = strnlen(name, max < SIZE_MAX ? max + 1 : max);
    if (len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_name_char(name[i]))
            return false;
    return true;
}

/* ---- checks ----------------------------------------------------------------- */

tse_status tse_subscription_name_check(const char *name, const char *field, const char *what,
                                       tse_error *err)
{
    if (name == NULL || name[0] == '\0')
        return tse_error_set(err, TSE_INVALID, field, "a %s name is required", what);
    if (!tse_subscription_name_valid(name, TSE_SUBSCRIPTION_NAME_MAX))
        return tse_error_set(err, TSE_INVALID, field,
                             "a %s name is 1 to %d characters of A-Z a-z 0-9 _ . -", what,
                             TSE_SUBSCRIPTION_NAME_MAX);
    return TSE_OK;
}

static tse_status check_name(const subscription *sub, tse_error *err)
{
    return tse_subscription_name_check(sub->name, "subscription.name", "subscription", err);
}

/* The count is checked as sent, before deduplication, to bound the work. */
static tse_status check_patterns(const subscription *sub, tse_error *err)
{
    char field[TSE_ERROR_FIELD_MAX];
    const char *problem;

    if (sub->n_event_types == 0)
        return tse_error_set(err, TSE_INVALID, "subscription.event_types",
                             "subscription.event_types needs at least one pattern (\"*\" for "
                             "every event type)");
    if (sub->n_event_types > TSE_SUBSCRIPTION_PATTERNS_MAX)
        return tse_error_set(err, TSE_INVALID, "subscription.event_types",
                             "subscription.event_types may hold at most %d patterns",
                             TSE_SUBSCRIPTION_PATTERNS_MAX);
    for (size_t i = 0; i < sub->n_event_types; i++) {
        problem = pattern_problem(sub->event_types[i]);
        if (problem != NULL) {
            snprintf(field, sizeof(field), "subscription.event_types[%zu]", i);
            return tse_error_set(err, TSE_INVALID, field, "%s", problem);
        }
    }
    return TSE_OK;
}

static tse_status check_start(const subscription *sub, tse_error *err)
{
    const Google__Protobuf__Timestamp *ts = sub->start_time;

    switch (sub->start) {
    case START_UNSPECIFIED:
    case START_LATEST:
    case START_EARLIEST: return TSE_OK;
    case START_TIMESTAMP: break;
    default:
        return tse_error_set(err, TSE_INVALID, "subscription.start",
                             "subscription.start must be LATEST, EARLIEST or TIMESTAMP");
    }
    if (ts == NULL)
        return tse_error_set(err, TSE_INVALID, "subscription.start_time",
                             "subscription.start_time is required when start is TIMESTAMP");
    if (ts->seconds < TIMESTAMP_SECONDS_MIN || ts->seconds > TIMESTAMP_SECONDS_MAX ||
        ts->nanos < 0 || ts->nanos > NANOS_MAX)
        return tse_error_set(err, TSE_INVALID, "subscription.start_time",
                             "subscription.start_time must be a valid time between years 1 "
                             "and 9999");
    return TSE_OK;
}

static tse_status check_limits(const subscription *sub, tse_error *err)
{
    if (sub->ack_deadline_ms != 0 && (sub->ack_deadline_ms < TSE_MIN_ACK_DEADLINE_MS ||
                                      sub->ack_deadline_ms > TSE_MAX_ACK_DEADLINE_MS))
        return tse_error_set(err, TSE_INVALID, "subscription.ack_deadline_ms",
                             "subscription.ack_deadline_ms must be 0 (default %d) or between "
                             "%d and %d",
                             TSE_DEFAULT_ACK_DEADLINE_MS, TSE_MIN_ACK_DEADLINE_MS,
                             TSE_MAX_ACK_DEADLINE_MS);
    if (sub->max_delivery_attempts > TSE_MAX_DELIVERY_ATTEMPTS_LIMIT)
        return tse_error_set(err, TSE_INVALID, "subscription.max_delivery_attempts",
                             "subscription.max_delivery_attempts must be 0 (unlimited) or at "
                             "most %d",
                             TSE_MAX_DELIVERY_ATTEMPTS_LIMIT);
    if (sub->max_in_flight > TSE_MAX_IN_FLIGHT_LIMIT)
        return tse_error_set(err, TSE_INVALID, "subscription.max_in_flight",
                             "subscription.max_in_flight must be 0 (default %d) or at most %d",
                             TSE_DEFAULT_MAX_IN_FLIGHT, TSE_MAX_IN_FLIGHT_LIMIT);
    if (sub->min_backoff_ms > TSE_MAX_BACKOFF_MS)
        return tse_error_set(err, TSE_INVALID, "subscription.min_backoff_ms",
                             "subscription.min_backoff_ms must be at most %d", TSE_MAX_BACKOFF_MS);
    if (sub->max_backoff_ms > TSE_MAX_BACKOFF_MS)
        return tse_error_set(err, TSE_INVALID, "subscription.max_backoff_ms",
                             "subscription.max_backoff_ms must be at most %d", TSE_MAX_BACKOFF_MS);
    if (sub->max_backoff_ms != 0 && sub->max_backoff_ms < sub->min_backoff_ms)
        return tse_error_set(err, TSE_INVALID, "subscription.max_backoff_ms",
                             "subscription.max_backoff_ms must not be below min_backoff_ms");
    return TSE_OK;
}

/* The dead-letter target is republished as a generic event, so it must be
 * an event type the service would accept as generic data: well-formed and
 * outside the catalog (a catalog type would need its typed payload). */
static tse_status check_dead_letter_type(const subscription *sub, tse_error *err)
{
    const char *t = sub->dead_letter_type;

    if (t == NULL || t[0] == '\0')
        return TSE_OK;
    if (!tse_event_type_valid(t))
        return tse_error_set(err, TSE_INVALID, "subscription.dead_letter_type",
                             "subscription.dead_letter_type must be an event type: dot-separated "
                             "lower-case segments, at least two, at most %d characters",
                             TSE_EVENT_TYPE_MAX);
    if (tse_catalog_find(t) != NULL)
        return tse_error_set(err, TSE_INVALID, "subscription.dead_letter_type",
                             "subscription.dead_letter_type must not be a catalog type (its "
                             "events carry generic data), e.g. \"deadletter.%s\"",
                             "<subscription>");
    return TSE_OK;
}

typedef tse_status (*check_fn)(const subscription *sub, tse_error *err);

/* In field order, so the first culprit a client sees is the first it sent. */
static const check_fn checks[] = {check_name, check_patterns, check_start, check_limits,
                                  check_dead_letter_type};

/* ---- defaults --------------------------------------------------------------- */

static void free_string(char *s)
{
    if (s != NULL && s != protobuf_c_empty_string)
        tse_free(s);
}

static bool seen_before(char *const *patterns, size_t n, const char *pattern)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(patterns[i], pattern) == 0)
            return true;
    return false;
}

/*
 * Keeps the first of each pattern, in order, compacting the array. The array
 * itself keeps its size; free_unpacked frees it and the n_event_types
 * strings left in it, so the removed ones are freed here.
 */
static void remove_duplicates(subscription *sub)
{
    size_t kept = 0;

    for (size_t i = 0; i < sub->n_event_types; i++) {
        if (seen_before(sub->event_types, kept, sub->event_types[i]))
            free_string(sub->event_types[i]);
        else
            sub->event_types[kept++] = sub->event_types[i];
    }
    for (size_t i = kept; i < sub->n_event_types; i++)
        sub->event_types[i] = NULL;
    sub->n_event_types = kept;
}

static Tracseq__Events__V1__StartPosition effective_start(const subscription *sub)
{
    return sub->start == START_UNSPECIFIED ? START_LATEST : sub->start;
}

static uint32_t effective_ack_deadline(const subscription *sub)
{
    return sub->ack_deadline_ms == 0 ? TSE_DEFAULT_ACK_DEADLINE_MS : sub->ack_deadline_ms;
}

static uint32_t effective_max_in_flight(const subscription *sub)
{
    return sub->max_in_flight == 0 ? TSE_DEFAULT_MAX_IN_FLIGHT : sub->max_in_flight;
}

static uint32_t effective_max_backoff(const subscription *sub)
{
    return sub->max_backoff_ms == 0 && sub->min_backoff_ms > 0 ? TSE_MAX_BACKOFF_MS
                                                               : sub->max_backoff_ms;
}

static void fill_defaults(subscription *sub)
{
    sub->max_backoff_ms = effective_max_backoff(sub);
    sub->start = effective_start(sub);
    sub->ack_deadline_ms = effective_ack_deadline(sub);
    sub->max_in_flight = effective_max_in_flight(sub);
    remove_duplicates(sub);
}

tse_status tse_subscription_validate(Tracseq__Events__V1__Subscription *sub, tse_error *err)
{
    tse_status st;

    tse_error_clear(err);
    if (sub == NULL)
        return tse_error_set(err, TSE_INVALID, "subscription", "subscription is required");
    for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
        st = checks[i](sub, err);
        if (st != TSE_OK)
            return st;
    }
    fill_defaults(sub);
    return TSE_OK;
}

/* ---- comparison ------------------------------------------------------------- */

/* Every pattern of a is among b's; duplicates make no difference. */
static bool patterns_within(const subscription *a, const subscription *b)
{
    for (size_t i = 0; i < a->n_event_types; i++)
        if (!seen_before(b->event_types, b->n_event_types, a->event_types[i]))
            return false;
    return true;
}

static bool same_string(const char *a, const char *b)
{
    return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

static bool same_start(const subscription *a, const subscription *b)
{
    const Google__Protobuf__Timestamp *ta = a->start_time, *tb = b->start_time;

    if (effective_start(a) != effective_start(b))
        return false;
    if (effective_start(a) != START_TIMESTAMP || ta == tb)
        return true;
    if (ta == NULL || tb == NULL)
        return false;
    return ta->seconds == tb->seconds && ta->nanos == tb->nanos;
}

bool tse_subscription_same(const Tracseq__Events__V1__Subscription *a,
                           const Tracseq__Events__V1__Subscription *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return same_string(a->name, b->name) && patterns_within(a, b) && patterns_within(b, a) &&
           same_start(a, b) && effective_ack_deadline(a) == effective_ack_deadline(b) &&
           a->max_delivery_attempts == b->max_delivery_attempts &&
           effective_max_in_flight(a) == effective_max_in_flight(b) &&
           !a->auto_ack == !b->auto_ack && a->min_backoff_ms == b->min_backoff_ms &&
           effective_max_backoff(a) == effective_max_backoff(b) &&
           same_string(a->dead_letter_type, b->dead_letter_type);
}

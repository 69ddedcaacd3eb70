/*
 * fuzz_bridge_event_reader.c - libFuzzer target comparing the REST bridge's
 * fast publish-body reader (rest-bridge/event_reader.c) with the reference
 * it stands in for: jansson's parse (json_loadb, flags 0, as
 * tsb_parse_body) and tsb_event_from_json.
 *
 * The property: whenever the fast reader accepts a body, the reference
 * accepts it too (jansson parses it, every event converts, a batch has 1..max
 * events) and each event's bytes from tsb_read_event_encode are exactly
 * protobuf_c_message_pack of the reference's Event, after the request's
 * defaults (correlation id, trace headers) are applied to both as the
 * bridge applies them. A body the fast reader declines is answered by the
 * reference itself, so every refusal (status, field, message) is the
 * reference's by construction; tests/unit/test_bridge_event_reader.c checks
 * that the bodies clients send are not declined.
 *
 * Input: one byte (bit 0: a batch body; bits 1-2: which defaults), then the
 * body.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain/validate.h"
#include "event_reader.h"
#include "fuzz_support.h"

typedef Tracseq__Events__V1__Event Event;

#define MAX_BATCH 4

static const tsb_event_defaults defaults[4] = {
    {NULL, NULL, NULL},
    {"7c9e6679-7425-40de-944b-e07fc1f90ae7", NULL, NULL},
    {NULL, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "rojo=00f067aa0ba902b7"},
    {"7c9e6679-7425-40de-944b-e07fc1f90ae7",
     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", NULL},
};

static void dump(const char *what, const uint8_t *p, size_t n)
{
    fprintf(stderr, "%s (%zu bytes):", what, n);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, " %02x", p[i]);
    fprintf(stderr, "\n");
}

static const char *or_empty(const char *s)
{
    return s != NULL ? s : "";
}

/* The reference's event for one entry, with d applied as publish.c's
 * adopt_correlation and adopt_trace do; NULL when it does not convert. */
static Event *reference_event(const json_t *entry, const tsb_event_defaults *d)
{
    Event *ev = NULL;
    tse_error err;

    if (tsb_event_from_json(entry, &ev, &err) != TSE_OK)
        return NULL;
    if (d->correlation_id != NULL && or_empty(ev->correlation_id)[0] == '\0') {
        if (ev->correlation_id != protobuf_c_empty_string)
            free(ev->correlation_id);
        if ((ev->correlation_id = strdup(d->correlation_id)) == NULL)
            abort();
    }
    if (d->traceparent != NULL &&
        tse_event_adopt_trace(ev, d->traceparent, strlen(d->traceparent), d->tracestate,
                              d->tracestate ? strlen(d->tracestate) : 0, &err) != TSE_OK)
        abort();
    return ev;
}

/* Event i of evs equals the reference's event for entry, else abort. */
static void same_event(const tsb_read_events *evs, size_t i, const json_t *entry,
                       const tsb_event_defaults *d)
{
    Event *ev;
    tsb_bytes fast = {0};
    uint8_t *ref;
    size_t len;
    tse_error err;
    Event *plain = NULL;

    if (tsb_event_from_json(entry, &plain, &err) != TSE_OK) {
        fprintf(stderr, "fast reader accepted event %zu; the reference refused it: %s: %s\n", i,
                err.field, err.message);
        abort();
    }
    /* The event's own values, before any default. */
    if (strcmp(tsb_read_event_string(evs, i, TSB_READ_CORRELATION_ID),
               or_empty(plain->correlation_id)) != 0 ||
        strcmp(tsb_read_event_string(evs, i, TSB_READ_TRACEPARENT), or_empty(plain->traceparent)) !=
            0 ||
        strcmp(tsb_read_event_string(evs, i, TSB_READ_TRACESTATE), or_empty(plain->tracestate)) !=
            0)
        abort();
    protobuf_c_message_free_unpacked(&plain->base, NULL);

    if ((ev = reference_event(entry, d)) == NULL)
        abort();
    len = protobuf_c_message_get_packed_size(&ev->base);
    if ((ref = malloc(len ? len : 1)) == NULL)
        abort();
    protobuf_c_message_pack(&ev->base, ref);
    tsb_read_event_encode(evs, i, d, &fast);
    if (fast.failed || fast.len != len || memcmp(fast.p, ref, len) != 0) {
        fprintf(stderr, "event %zu differs\n", i);
        dump("reference", ref, len);
        dump("fast", fast.p, fast.len);
        abort();
    }
    free(ref);
    tsb_bytes_cleanup(&fast);
    protobuf_c_message_free_unpacked(&ev->base, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tsb_read_events evs = {0};
    const tsb_event_defaults *d;
    const char *body;
    json_t *json, *arr;
    json_error_t jerr;
    bool batch;

    if (size < 1)
        return 0;
    batch = data[0] & 1;
    d = &defaults[(data[0] >> 1) & 3];
    body = (const char *)data + 1;
    size--;
    if (!(batch ? tsb_read_batch_body(body, size, MAX_BATCH, &evs)
                : tsb_read_event_body(body, size, &evs)))
        return 0;
    if ((json = json_loadb(body, size, 0, &jerr)) == NULL) {
        fprintf(stderr, "fast reader accepted what jansson refuses: %s\n", jerr.text);
        abort();
    }
    if (!batch) {
        if (evs.n != 1)
            abort();
        same_event(&evs, 0, json, d);
    } else {
        arr = json_object_get(json, "events");
        if (!json_is_array(arr) || json_array_size(arr) != evs.n || evs.n == 0 ||
            evs.n > MAX_BATCH) {
            fprintf(stderr, "fast reader read %zu events; the reference sees another batch\n",
                    evs.n);
            abort();
        }
        for (size_t i = 0; i < evs.n; i++)
            same_event(&evs, i, json_array_get(arr, i), d);
    }
    json_decref(json);
    tsb_read_events_cleanup(&evs);
    return 0;
}

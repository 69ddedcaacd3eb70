/*
 * fuzz_bridge_cloudevents_binary.c - libFuzzer target for CloudEvents in
 * the REST bridge beyond structured mode (src/domain/cloudevent.c):
 *
 *   first byte even: HTTP binary mode. The rest is "<Name>: <value>\n"
 *     header lines (ce-* attributes, Content-Type), an empty line and the
 *     body, POSTed to /api/v1/events/publish through the real handler
 *     (bridge_harness.h); a ce-specversion header is added when the input
 *     has none, so the binary-mode parser always runs.
 *   first byte odd: the round trip. The rest is a CloudEvent in the JSON
 *     format; when the bridge accepts it (tse_ce_to_envelope), the Event it
 *     becomes is written back as a CloudEvent (tse_ce_from_event), which
 *     must be accepted again with the same event id, and in binary mode
 *     (tse_ce_to_binary), whose headers must read back (tse_ce_binary_header).
 */
#include <jansson.h>
#include <stdbool.h>

#include "bridge.h"
#include "bridge_harness.h"
#include "codec/pbjson.h"
#include "domain/cloudevent.h"
#include "fuzz_support.h"

static void binary_request(const uint8_t *data, size_t size)
{
    const uint8_t *end = data + size, *nl;
    fuzz_bridge_request r = {.method = "POST", .target = "/api/v1/events/publish"};
    char *lines[FUZZ_BRIDGE_HEADERS_MAX - 1] = {0}, *body;
    size_t n = 0;
    bool spec = false;

    while (n < FUZZ_BRIDGE_HEADERS_MAX - 1 && (nl = memchr(data, '\n', (size_t)(end - data)))) {
        size_t len = (size_t)(nl - data);
        data = nl + 1;
        if (len == 0)
            break;
        lines[n++] = fuzz_strndup(nl - len, len);
    }
    body = fuzz_strndup(data, (size_t)(end - data));
    for (size_t i = 0; i < n; i++) {
        char *colon = strchr(lines[i], ':');
        if (colon == NULL)
            continue;
        *colon++ = '\0';
        while (*colon == ' ')
            colon++;
        spec = spec || strcasecmp(lines[i], "ce-specversion") == 0;
        r.headers[r.n_headers][0] = lines[i];
        r.headers[r.n_headers++][1] = colon;
    }
    if (!spec) {
        r.headers[r.n_headers][0] = "ce-specversion";
        r.headers[r.n_headers++][1] = "1.0";
    }
    r.body = body;
    r.body_len = (size_t)(end - data);
    fuzz_bridge_run(&r);
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    free(body);
}

/* The envelope of a CloudEvent the bridge accepted, as an Event. */
static Tracseq__Events__V1__Event *event_of(const json_t *env)
{
    json_t *j = json_deep_copy(env);
    ProtobufCMessage *msg = NULL;

    /* publish.c sends the payload as the Event's `data` Struct. */
    json_object_set(j, "data", json_object_get(j, "payload"));
    json_object_del(j, "payload");
    if (tse_pbjson_to_message(j, &tracseq__events__v1__event__descriptor, 0, &msg, NULL) != TSE_OK)
        msg = NULL;
    json_decref(j);
    return (Tracseq__Events__V1__Event *)msg;
}

static void round_trip(const uint8_t *data, size_t size)
{
    json_t *in = json_loadb((const char *)data, size, 0, NULL), *env = NULL, *env2 = NULL;
    json_t *out = NULL, *headers = NULL, *back = NULL;
    Tracseq__Events__V1__Event *ev = NULL;
    const char *ctype, *name;
    tse_error err;
    char *body = NULL;
    size_t len;
    json_t *v;

    if (in == NULL || tse_ce_to_envelope(in, &env, &err) != TSE_OK)
        goto out;
    if ((ev = event_of(env)) == NULL) /* e.g. a priority the Event cannot hold */
        goto out;
    if ((out = tse_ce_from_event(ev)) == NULL)
        abort();
    if (tse_ce_to_envelope(out, &env2, &err) != TSE_OK) {
        fprintf(stderr, "the bridge refuses its own CloudEvent: %s: %s\n", err.field, err.message);
        abort();
    }
    /* (The data goes through a protobuf Struct, where numbers are doubles.) */
    if (!json_equal(json_object_get(env, "id"), json_object_get(env2, "id"))) {
        fprintf(stderr, "the round trip changed the event id\n");
        abort();
    }
    headers = json_object();
    back = json_object();
    if (tse_ce_to_binary(out, headers, &body, &len, &ctype) != TSE_OK)
        abort();
    json_object_foreach(headers, name, v) if (tse_ce_binary_header(back, name, json_string_value(v),
                                                                   &err) != TSE_OK)
    {
        fprintf(stderr, "binary mode refuses its own header %s: %s\n", name, err.message);
        abort();
    }
out:
    free(body);
    json_decref(back);
    json_decref(headers);
    json_decref(out);
    if (ev != NULL)
        protobuf_c_message_free_unpacked(&ev->base, NULL);
    json_decref(env2);
    json_decref(env);
    json_decref(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] & 1)
        round_trip(data + 1, size - 1);
    else
        binary_request(data + 1, size - 1);
    return 0;
}

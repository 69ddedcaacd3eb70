/*
 * fuzz_bridge_cloudevents.c - libFuzzer target for CloudEvents structured
 * mode in the REST bridge (src/domain/cloudevent.c): the input is the body of
 * POST /api/v1/events/publish (a CloudEvent) and of POST
 * /api/v1/events/batch (a CloudEvents batch, a JSON array) with Content-Type
 * application/cloudevents+json, run through the real handlers
 * (bridge_harness.h). The low bit of the first byte picks the endpoint; the
 * rest is the body.
 */
#include "bridge_harness.h"
#include "fuzz_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_bridge_request r = {.method = "POST"};
    char *body;

    if (size == 0)
        return 0;
    r.target = data[0] & 1 ? "/api/v1/events/batch" : "/api/v1/events/publish";
    r.headers[0][0] = "Content-Type";
    r.headers[0][1] = data[0] & 2 ? "application/cloudevents+json; charset=utf-8"
                                  : "application/cloudevents+json";
    r.n_headers = 1;
    body = fuzz_strndup(data + 1, size - 1);
    r.body = body;
    r.body_len = size - 1;
    fuzz_bridge_run(&r);
    free(body);
    return 0;
}

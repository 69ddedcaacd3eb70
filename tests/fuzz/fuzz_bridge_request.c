/*
 * fuzz_bridge_request.c - libFuzzer target for a whole REST request as the
 * bridge handles it (bridge_harness.h): routing, headers (Content-Type,
 * Accept), query parameters, the JSON body of every endpoint (publish,
 * batch, subscribe, ack, nack) and its conversion to the protobuf message
 * sent to the service, CloudEvents included.
 *
 * Input, like an HTTP/1.1 request head:
 *   "<METHOD> <path>[?a=b&c=d]\n" then "<Name>: <value>\n" lines, an empty
 *   line, and the body (the rest, may hold NULs).
 */
#include "bridge_harness.h"
#include "fuzz_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *end = data + size, *nl;
    fuzz_bridge_request r = {0};
    char *lines[1 + FUZZ_BRIDGE_HEADERS_MAX] = {0}, *body, *sp;
    size_t n = 0;

    /* The head: lines up to the first empty one. */
    while (n < 1 + FUZZ_BRIDGE_HEADERS_MAX && (nl = memchr(data, '\n', (size_t)(end - data)))) {
        size_t len = (size_t)(nl - data);
        data = nl + 1;
        if (len == 0)
            break;
        lines[n++] = fuzz_strndup(nl - len, len);
    }
    body = fuzz_strndup(data, (size_t)(end - data));
    if (n == 0 || (sp = strchr(lines[0], ' ')) == NULL)
        goto out;
    *sp = '\0';
    r.method = lines[0];
    r.target = sp + 1;
    for (size_t i = 1; i < n; i++) {
        char *colon = strchr(lines[i], ':');
        if (colon == NULL)
            continue;
        *colon++ = '\0';
        while (*colon == ' ')
            colon++;
        r.headers[r.n_headers][0] = lines[i];
        r.headers[r.n_headers++][1] = colon;
    }
    r.body = body;
    r.body_len = (size_t)(end - data);
    fuzz_bridge_run(&r);
out:
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    free(body);
    return 0;
}

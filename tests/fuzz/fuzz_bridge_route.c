/*
 * fuzz_bridge_route.c - libFuzzer target for the REST bridge's route matcher
 * (tsb_route_find, rest-bridge/routes.c): "<method>\n<path>" only, the
 * handler is not run. Checked besides memory safety: a match sets a route
 * index below tsb_route_count() and, for a route with a {name} segment, a
 * non-empty parameter without '/' that appears in the path; no match is an
 * answered 404 or 405 (the latter with an Allow header) with a JSON error.
 */
#include <jansson.h>

#include "bridge.h"
#include "fuzz_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s[2];
    tsb_bridge bridge = {0};
    tsb_request req = {.bridge = &bridge};
    tsb_response resp = {.status = 500};
    size_t route;
    tsb_handler fn;

    fuzz_strings(data, size, s, 2);
    req.method = s[0];
    req.path = s[1];
    fn = tsb_route_find(&req, &resp, &route);
    if (fn != NULL) {
        const char *name = tsb_route_name(route);
        FUZZ_CHECK(route < tsb_route_count() && req.route == route, "route %zu", route);
        if (strstr(name, "{name}") != NULL)
            FUZZ_CHECK(req.param[0] != '\0' && strchr(req.param, '/') == NULL &&
                           strstr(req.path, req.param) != NULL,
                       "param \"%s\" of \"%s\"", req.param, req.path);
        FUZZ_CHECK(resp.body == NULL, "a matched route answered");
    } else {
        json_t *j = json_loadb(resp.body ? resp.body : "", resp.len, 0, NULL);
        FUZZ_CHECK(route == tsb_route_count(), "route %zu without handler", route);
        FUZZ_CHECK(resp.status == 404 || (resp.status == 405 && resp.allow != NULL), "status %u",
                   resp.status);
        FUZZ_CHECK(json_is_string(json_object_get(j, "error")), "error body");
        json_decref(j);
    }
    free(resp.body);
    fuzz_strings_free(s, 2);
    return 0;
}

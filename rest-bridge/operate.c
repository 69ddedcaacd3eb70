/*
 * operate.c - the endpoints that operate on a subscription's state: its
 * dead letters (list, get, redrive, purge), seek, and its snapshots
 * (create, list, delete). Each is one EventService call, named by its
 * route; the request is the JSON body (POST) read as that call's request
 * message (codec/pbjson.h: a bad field is a 400 naming it), with the
 * path's {name} as its subscription and a second path segment (dead-letter
 * id, snapshot name) in the field the route names.
 *
 * Seek's "position" may be given short: "earliest", "latest", "timestamp"
 * (any case) for START_POSITION_EARLIEST and so on.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "codec/pbjson.h"

static void then_json(tsb_request *req, tsb_response *resp, const tsb_calls_status *st,
                      ProtobufCMessage *out)
{
    (void)req;
    (void)st;
    tsb_reply_ok(resp, tsb_json_from_message(out));
}

/* "earliest" -> "START_POSITION_EARLIEST" (a full name is kept). */
static void expand_position(json_t *body)
{
    const char *v = json_string_value(json_object_get(body, "position"));
    char full[64] = "START_POSITION_";
    size_t n = strlen(full);

    if (v == NULL || strncmp(v, full, n) == 0 || strlen(v) >= sizeof(full) - n)
        return;
    for (; *v; v++)
        full[n++] = (char)toupper((unsigned char)*v);
    full[n] = '\0';
    json_object_set_new(body, "position", json_string(full));
}

/* ?page_size= and ?page_token= of ListDeadLetters; false when answered. */
static bool page_query(tsb_request *req, tsb_response *resp, json_t *body)
{
    const char *size = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "page_size");
    const char *token = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "page_token");
    char *end;

    if (size != NULL) {
        long v = strtol(size, &end, 10);
        if (end == size || *end != '\0' || v < 0 || v > 1000) {
            tsb_reply_error(resp, TSE_INVALID, "page_size",
                            "Invalid page_size: must be an integer from 0 to 1000.");
            return false;
        }
        json_object_set_new(body, "page_size", json_integer(v));
    }
    if (token != NULL)
        json_object_set_new(body, "page_token", json_string(token));
    return true;
}

void tsb_handle_operate(tsb_request *req, tsb_response *resp)
{
    const ProtobufCMethodDescriptor *m = protobuf_c_service_descriptor_get_method_by_name(
        &tracseq__events__v1__event_service__descriptor, tsb_route_rpc(req->route));
    const char *field = tsb_route_field(req->route);
    ProtobufCMessage *in = NULL;
    /* Only a POST carries the request; a GET's fields come from the path. */
    json_t *body = strcmp(req->method, "POST") == 0 ? tsb_object_body(req, resp) : json_object();
    tse_error err;

    if (body == NULL)
        return;
    if (m == NULL) {
        tsb_reply_error(resp, TSE_INTERNAL, NULL, "No such method.");
        goto out;
    }
    json_object_set_new(body, "subscription", json_string(req->param));
    if (field != NULL)
        json_object_set_new(body, field, json_string(req->param2));
    if (strcmp(m->name, "ListDeadLetters") == 0 && !page_query(req, resp, body))
        goto out;
    expand_position(body);
    if (tse_pbjson_to_message(body, m->input, 0, &in, &err) != TSE_OK) {
        tsb_reply_error(resp, err.code, err.field, "Invalid %s: %s",
                        err.field[0] ? err.field : "body", err.message);
        goto out;
    }
    tsb_request_call(req, resp, m->name, in, 0, 0, then_json);
    protobuf_c_message_free_unpacked(in, NULL);
out:
    json_decref(body);
}

/*
 * reply.c - how the bridge answers: JSON bodies and the error shape every
 * failure uses. An error's HTTP status and machine code are decided in one
 * place, tsb_http_of: a tse_status through the one status -> HTTP table
 * (common/http_status.h), HTTP's own refusals (a body that is not JSON, a
 * media type not accepted, ...) through the small table here.
 *
 * Error bodies are {"error": "<sentence>", "code": "<MACHINE_CODE>",
 * "details": [{"field": ..., "problem": ...}]} (rest-api.md, "Errors").
 * Fields the service names under the Event ("event.payload.barcode") are
 * reported as the client wrote them ("payload.barcode").
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge.h"
#include "codec/pbjson.h"
#include "common/http_status.h"
#include "obs/log.h"

void tsb_reply_json(tsb_response *resp, unsigned status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;

    json_decref(body);
    free(resp->body);
    resp->body = text;
    resp->len = text ? strlen(text) : 0;
    resp->content_type = "application/json";
    resp->status = text ? status : tse_status_to_http(TSE_NOMEM, NULL);
    if (resp->code == NULL || status < 400)
        resp->code = "OK";
}

/* s as valid UTF-8 in buf: a client's bytes quoted in a sentence (a path,
 * a method, a header) may be anything, and JSON strings must be UTF-8. */
static const char *utf8_text(const char *s, char *buf, size_t len)
{
    snprintf(buf, len, "%s", s);
    tse_utf8_scrub(buf);
    return buf;
}

static json_t *error_object(const char *code, const char *field, const char *sentence,
                            const char *problem)
{
    json_t *details = json_array();
    char f[TSE_ERROR_FIELD_MAX], sent[512], prob[512];

    sentence = utf8_text(sentence, sent, sizeof(sent));
    problem = utf8_text(problem, prob, sizeof(prob));
    if (field != NULL && field[0] != '\0')
        json_array_append_new(
            details,
            json_pack("{s:s, s:s}", "field", utf8_text(field, f, sizeof(f)), "problem", problem));
    return json_pack("{s:s, s:s, s:o}", "error", sentence, "code", code, "details", details);
}

/* HTTP's own answers, which no tse_status describes. */
static const struct {
    int why;
    unsigned http;
    const char *code;
} refusals[] = {
    {TSB_INVALID_JSON, 400, "INVALID_JSON"},
    {TSB_INVALID_HEADER, 400, "INVALID_HEADER"},
    {TSB_INVALID_CLOUDEVENT, 400, "INVALID_CLOUDEVENT"},
    {TSB_METHOD_NOT_ALLOWED, 405, "METHOD_NOT_ALLOWED"},
    {TSB_HEADER_TIMEOUT, 408, "HEADER_TIMEOUT"},
    {TSB_BODY_TIMEOUT, 408, "BODY_TIMEOUT"},
    {TSB_PAYLOAD_TOO_LARGE, 413, "PAYLOAD_TOO_LARGE"},
    {TSB_UNSUPPORTED_MEDIA_TYPE, 415, "UNSUPPORTED_MEDIA_TYPE"},
    {TSB_HEADERS_TOO_LARGE, 431, "HEADERS_TOO_LARGE"},
    {TSB_CLIENT_CLOSED, 499, "CLIENT_CLOSED"},
    {TSB_SHUTTING_DOWN, 503, "SHUTTING_DOWN"},
    {TSB_NO_CONTENT, 204, "OK"},
};

unsigned tsb_http_of(int why, const char **code)
{
    for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
        if (refusals[i].why == why) {
            if (code != NULL)
                *code = refusals[i].code;
            return refusals[i].http;
        }
    }
    return tse_status_to_http((tse_status)why, code);
}

void tsb_reply_ok(tsb_response *resp, json_t *body)
{
    tsb_reply_json(resp, tsb_http_of(TSE_OK, NULL), body);
}

void tsb_reply_status(tsb_response *resp, int why)
{
    resp->status = tsb_http_of(why, &resp->code);
}

void tsb_reply_error(tsb_response *resp, int why, const char *field, const char *fmt, ...)
{
    char sentence[512];
    unsigned status = tsb_http_of(why, &resp->code);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sentence, sizeof(sentence), fmt, ap);
    va_end(ap);
    tsb_reply_json(resp, status, error_object(resp->code, field, sentence, sentence));
}

json_t *tsb_refusal_json(int why, const char *field, const char *message, unsigned *status)
{
    const char *code;
    char sentence[640];

    *status = tsb_http_of(why, &code);
    snprintf(sentence, sizeof(sentence), "%s", message);
    if (sentence[0] != '\0')
        sentence[0] = (char)toupper((unsigned char)sentence[0]);
    if (strlen(sentence) + 1 < sizeof(sentence) && sentence[0] != '\0' &&
        sentence[strlen(sentence) - 1] != '.')
        strcat(sentence, ".");
    return error_object(code, field, sentence, message);
}

void tsb_reply_nomem(tsb_response *resp)
{
    tsb_reply_error(resp, TSE_NOMEM, NULL, "Out of memory.");
}

/* What an SDK status stands for. */
static tse_status status_of(tse_client_status s)
{
    switch (s) {
    case TSE_CLIENT_OK: return TSE_OK;
    case TSE_CLIENT_INVALID_ARGUMENT: return TSE_INVALID;
    case TSE_CLIENT_NOT_FOUND: return TSE_NOT_FOUND;
    case TSE_CLIENT_ALREADY_EXISTS: return TSE_ALREADY_EXISTS;
    case TSE_CLIENT_FAILED_PRECONDITION: return TSE_FAILED_PRECONDITION;
    case TSE_CLIENT_RESOURCE_EXHAUSTED: return TSE_RESOURCE_EXHAUSTED;
    case TSE_CLIENT_UNAVAILABLE: return TSE_UNAVAILABLE;
    case TSE_CLIENT_DEADLINE_EXCEEDED: return TSE_DEADLINE;
    case TSE_CLIENT_CANCELLED: return TSE_CANCELLED;
    case TSE_CLIENT_UNIMPLEMENTED: return TSE_UNIMPLEMENTED;
    case TSE_CLIENT_NO_MEMORY: return TSE_NOMEM;
    case TSE_CLIENT_UNAUTHENTICATED: return TSE_UNAUTHENTICATED;
    case TSE_CLIENT_PERMISSION_DENIED: return TSE_PERMISSION_DENIED;
    default: return TSE_INTERNAL;
    }
}

/* The field comes apart (the SDK's, from the service's BadRequest), so
 * only the problem is kept of the message. */
void tsb_calls_status_set(tsb_calls_status *st, tse_client_status status,
                          const tse_client_error *err)
{
    st->code = status_of(status);
    st->field[0] = st->message[0] = '\0';
    if (status == TSE_CLIENT_OK)
        return;
    snprintf(st->field, sizeof(st->field), "%s", err->field);
    snprintf(st->message, sizeof(st->message), "%s", tse_client_error_problem(err));
}

void tsb_calls_status_fail(tsb_calls_status *st, tse_status code, const char *message)
{
    st->code = code;
    st->field[0] = '\0';
    snprintf(st->message, sizeof(st->message), "%s", message);
}

/* Drops the "event." the service puts before envelope fields ("events[i]."
 * in a batch, which is how the shared publishers send: the REST result says
 * its index itself), and renames the first segment for clients that spell
 * it otherwise. */
static void client_field(char *field, size_t len, const char *(*rename)(const char *))
{
    char rest[256];
    const char *dot;
    const char *first;
    char head[128];

    const char *close;

    if (strncmp(field, "events[", 7) == 0 && (close = strchr(field, ']')) != NULL) {
        if (close[1] == '.')
            memmove(field, close + 2, strlen(close + 2) + 1);
        else if (close[1] == '\0')
            snprintf(field, len, "event");
    }
    if (strncmp(field, "event.", 6) == 0)
        memmove(field, field + 6, strlen(field + 6) + 1);
    if (strcmp(field, "x-correlation-id") == 0) /* the service's name for our header */
        snprintf(field, len, "X-Correlation-ID");
    if (rename == NULL || field[0] == '\0')
        return;
    dot = strchr(field, '.');
    snprintf(head, sizeof(head), "%.*s", dot ? (int)(dot - field) : (int)strlen(field), field);
    snprintf(rest, sizeof(rest), "%s", dot ? dot : "");
    first = rename(head);
    if (first != NULL)
        snprintf(field, len, "%s%s", first, rest);
}

/* msg with a capital first letter and a final period. */
static void as_sentence(const char *msg, char *out, size_t len)
{
    size_t n;

    snprintf(out, len, "%s", msg);
    out[0] = (char)toupper((unsigned char)out[0]);
    n = strlen(out);
    if (n > 0 && n + 1 < len && out[n - 1] != '.')
        snprintf(out + n, len - n, ".");
}

json_t *tsb_error_json(tse_status code, const char *field, const char *message,
                       const char *(*rename)(const char *), unsigned *status)
{
    char path[256], sentence[640];
    const char *machine;

    *status = tse_status_to_http(code, &machine);
    snprintf(path, sizeof(path), "%s", field != NULL ? field : "");
    client_field(path, sizeof(path), rename);
    switch (code) {
    case TSE_UNAVAILABLE:
    case TSE_DEADLINE:
    case TSE_CANCELLED:
        snprintf(sentence, sizeof(sentence), "The event service is unavailable (%s); retry later.",
                 message);
        break;
    case TSE_UNIMPLEMENTED:
        snprintf(sentence, sizeof(sentence), "Not implemented by the event service yet (%s).",
                 message);
        break;
    case TSE_NOMEM:
    case TSE_INTERNAL: snprintf(sentence, sizeof(sentence), "Internal error (%s).", message); break;
    default:
        if (code == TSE_INVALID && path[0] != '\0')
            snprintf(sentence, sizeof(sentence), "Invalid %s: %s", path, message);
        else
            as_sentence(message, sentence, sizeof(sentence));
    }
    return error_object(machine, path, sentence, message);
}

void tsb_reply_failed(tsb_response *resp, const tsb_request *req, const tsb_calls_status *st,
                      const char *(*rename)(const char *))
{
    unsigned status;
    json_t *body = tsb_error_json(st->code, st->field, st->message, rename, &status);

    if (st->code == TSE_INTERNAL || st->code == TSE_NOMEM)
        tse_log(TSE_LOG_ERROR, "event service call failed",
                (const char *[]){"path", req->path, "error", st->message, "correlation_id",
                                 req->correlation_id, NULL});
    tse_status_to_http(st->code, &resp->code);
    /* The service says when a refused publish may be retried (its rate). */
    if (st->code == TSE_RESOURCE_EXHAUSTED) {
        long long ms = tse_retry_after_ms(st->message);
        if (ms >= 0)
            resp->retry_after_s = (int)(ms / 1000 + 1);
    }
    tsb_reply_json(resp, status, body);
}

json_t *tsb_parse_body(const tsb_request *req, tsb_response *resp)
{
    json_error_t jerr;
    json_t *json;

    if (req->body_len == 0) {
        tsb_reply_error(resp, TSB_INVALID_JSON, "body",
                        "The body is empty; a JSON object is expected.");
        return NULL;
    }
    json = json_loadb(req->body, req->body_len, 0, &jerr);
    if (json == NULL) {
        char sentence[300];
        unsigned status = tsb_http_of(TSB_INVALID_JSON, &resp->code);
        json_t *err, *d;

        snprintf(sentence, sizeof(sentence),
                 "The body is not valid JSON: %s at line %d, column %d.", jerr.text, jerr.line,
                 jerr.column);
        err = error_object(resp->code, "body", sentence, jerr.text);
        d = json_array_get(json_object_get(err, "details"), 0);
        json_object_set_new(d, "line", json_integer(jerr.line));
        json_object_set_new(d, "column", json_integer(jerr.column));
        json_object_set_new(d, "position", json_integer(jerr.position));
        tsb_reply_json(resp, status, err);
    }
    return json;
}

json_t *tsb_object_body(const tsb_request *req, tsb_response *resp)
{
    json_t *body;

    if (req->body_len == 0)
        return json_object();
    if (!tsb_media_is(req, "application/json")) {
        tsb_reply_unsupported(req, resp, "application/json");
        return NULL;
    }
    if ((body = tsb_parse_body(req, resp)) == NULL)
        return NULL;
    if (!json_is_object(body)) {
        tsb_reply_error(resp, TSE_INVALID, "body", "The body must be a JSON object.");
        json_decref(body);
        return NULL;
    }
    return body;
}

bool tsb_media_is(const tsb_request *req, const char *type)
{
    const char *ct = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Content-Type");
    size_t n = strlen(type);

    if (ct == NULL)
        return false;
    while (*ct == ' ')
        ct++;
    if (strncasecmp(ct, type, n) != 0)
        return false;
    ct += n;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
}

void tsb_reply_unsupported(const tsb_request *req, tsb_response *resp, const char *accepted)
{
    const char *ct = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Content-Type");

    tsb_reply_error(resp, TSB_UNSUPPORTED_MEDIA_TYPE, "Content-Type",
                    "Content-Type %s is not supported here; send %s.", ct ? ct : "(none)",
                    accepted);
}

/* ---- protobuf -> JSON with 64-bit integers as numbers ---- */

static void fix_int64(json_t *obj, const ProtobufCMessageDescriptor *d);

static bool is_int64(ProtobufCType t)
{
    return t == PROTOBUF_C_TYPE_INT64 || t == PROTOBUF_C_TYPE_SINT64 ||
           t == PROTOBUF_C_TYPE_SFIXED64 || t == PROTOBUF_C_TYPE_UINT64 ||
           t == PROTOBUF_C_TYPE_FIXED64;
}

/* A new number for a 64-bit value written as a string; NULL to keep v. */
static json_t *fixed(json_t *v, const ProtobufCFieldDescriptor *f)
{
    const ProtobufCMessageDescriptor *md;
    unsigned long long u;
    char *end;

    if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
        md = f->descriptor;
        if (json_is_object(v) && strncmp(md->name, "google.protobuf.", 16) != 0)
            fix_int64(v, md);
        return NULL;
    }
    if (!is_int64(f->type) || !json_is_string(v))
        return NULL;
    if (json_string_value(v)[0] == '-')
        return json_integer((json_int_t)strtoll(json_string_value(v), &end, 10));
    u = strtoull(json_string_value(v), &end, 10);
    return u <= (unsigned long long)INT64_MAX ? json_integer((json_int_t)u) : NULL;
}

static bool is_map(const ProtobufCFieldDescriptor *f)
{
    return f->type == PROTOBUF_C_TYPE_MESSAGE && f->label == PROTOBUF_C_LABEL_REPEATED &&
           tse_pbjson_is_map_entry(f->descriptor);
}

static void fix_int64(json_t *obj, const ProtobufCMessageDescriptor *d)
{
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        json_t *v = json_object_get(obj, f->name), *n, *item;
        const char *key;
        size_t idx;

        if (v == NULL)
            continue;
        if (is_map(f) && json_is_object(v)) {
            const ProtobufCFieldDescriptor *vf =
                &((const ProtobufCMessageDescriptor *)f->descriptor)->fields[1];
            json_object_foreach(v, key, item)
            {
                if ((n = fixed(item, vf)) != NULL)
                    json_object_set_new(v, key, n);
            }
        } else if (json_is_array(v)) {
            json_array_foreach(v, idx, item)
            {
                if ((n = fixed(item, f)) != NULL)
                    json_array_set_new(v, idx, n);
            }
        } else if ((n = fixed(v, f)) != NULL) {
            json_object_set_new(obj, f->name, n);
        }
    }
}

json_t *tsb_json_from_message(const ProtobufCMessage *msg)
{
    json_t *json = tse_pbjson_from_message(msg, TSE_PBJSON_EMIT_DEFAULTS);

    if (json != NULL && json_is_object(json))
        fix_int64(json, msg->descriptor);
    return json;
}

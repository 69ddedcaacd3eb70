/*
 * cloudevent.c - CloudEvents 1.0 (JSON format, HTTP binary mode, protobuf
 * format) to the REST envelope and back; the mapping is described in
 * cloudevent.h.
 *
 * Checked here, refused naming the attribute: what the CloudEvents
 * spec itself requires (specversion "1.0"; id, source, type present and
 * non-empty strings; attribute names a-z0-9; time RFC 3339; source a
 * URI-reference, dataschema a URI; data and data_base64 not both;
 * data_base64 base64) and the bounds the envelope imposes (source fits
 * source_service, an extension fits a metadata value). What the domain
 * decides (the event type's pattern, priority's range, UUIDs of
 * correlationid, the payload's schema) stays with the Event's validation
 * (validate.c: 422 over REST), the same as for any event.
 */
#include <ctype.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec/base64.h"
#include "codec/pbjson.h"
#include "codec/utf8.h"
#include "common/hex.h"
#include "domain/cloudevent.h"
#include "domain/validate.h"

typedef Tracseq__Events__V1__Event Event;

/* ---- small checks ---------------------------------------------------------- */

/* [a-z0-9]{1,20}: a CloudEvents attribute name. */
static bool attribute_name(const char *s)
{
    size_t n = strlen(s);

    return n >= 1 && n <= TSE_CE_NAME_MAX && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789") == n;
}

static bool has_control(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return true;
    return false;
}

/* RFC 3986 URI-reference, loosely: its characters only, %XX escapes
 * well-formed. scheme: an absolute URI (a scheme and ':') is required. */
static bool uri_text(const char *s, bool scheme)
{
    static const char allowed[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                  "-._~:/?#[]@!$&'()*+,;=";
    size_t n;

    if (s[0] == '\0')
        return false;
    for (const char *p = s; *p; p++) {
        if (*p == '%') {
            if (!isxdigit((unsigned char)p[1]) || !isxdigit((unsigned char)p[2]))
                return false;
            p += 2;
        } else if (strchr(allowed, *p) == NULL) {
            return false;
        }
    }
    if (!scheme)
        return true;
    n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-");
    return n > 0 && isalpha((unsigned char)s[0]) && s[n] == ':';
}

/* Standard base64, padded (what CloudEvents' data_base64 is). */
static bool base64_text(const char *s, size_t len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t pad = 0;

    if (len % 4 != 0)
        return false;
    while (pad < 2 && pad < len && s[len - 1 - pad] == '=')
        pad++;
    for (size_t i = 0; i < len - pad; i++)
        if (s[i] == '\0' || strchr(alphabet, s[i]) == NULL)
            return false;
    return true;
}

/* A media type as a datacontenttype: printable ASCII, at most 256. */
static bool media_text(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 256)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

/* True when media (a Content-Type, parameters allowed) is JSON:
 * application/json or any +json type. */
static bool media_is_json(const char *media)
{
    size_t n;

    if (media == NULL)
        return false;
    n = strcspn(media, ";");
    while (n > 0 && media[n - 1] == ' ')
        n--;
    if (n == 16 && strncasecmp(media, "application/json", 16) == 0)
        return true;
    return n > 5 && strncasecmp(media + n - 5, "+json", 5) == 0;
}

/* ---- the UUID of an id ---------------------------------------------------- */

/* UUID v5 (RFC 4122 4.3) of source NUL id in TSE_CE_ID_NAMESPACE; false
 * when libcrypto fails (out of memory). */
static bool id_uuid(const char *source, const char *id, char out[37])
{
    const char *ns = TSE_CE_ID_NAMESPACE;
    unsigned char h[EVP_MAX_MD_SIZE], nsb[16];
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    size_t k = 0;
    bool ok;

    for (size_t i = 0; ns[i] && k < 16; i++)
        if (ns[i] != '-') {
            nsb[k++] = (unsigned char)(tse_hex_value(ns[i]) << 4 | tse_hex_value(ns[i + 1]));
            i++;
        }
    ok = c != NULL && EVP_DigestInit_ex(c, EVP_sha1(), NULL) == 1 &&
         EVP_DigestUpdate(c, nsb, sizeof(nsb)) == 1 &&
         EVP_DigestUpdate(c, source, strlen(source) + 1) == 1 && /* with its NUL: unambiguous */
         EVP_DigestUpdate(c, id, strlen(id)) == 1 && EVP_DigestFinal_ex(c, h, NULL) == 1;
    EVP_MD_CTX_free(c);
    if (!ok)
        return false;
    h[6] = (unsigned char)((h[6] & 0x0f) | 0x50);
    h[8] = (unsigned char)((h[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", h[0],
             h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11], h[12], h[13],
             h[14], h[15]);
    return true;
}

/* ---- CloudEvent -> envelope ---------------------------------------------- */

/* The attributes with a field of their own in the envelope. */
static const struct {
    const char *ce, *ours;
} fields[] = {
    {"type", "event_type"},
    {"subject", "subject"},
    {"correlationid", "correlation_id"},
    {"causationid", "causation_id"},
    {"priority", "priority"},
    {"tracseqversion", "version"},
    /* The distributed-tracing extension: W3C Trace Context (docs/tracing.md). */
    {"traceparent", "traceparent"},
    {"tracestate", "tracestate"},
};

#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

/* The attributes kept in metadata under their own name. */
static const char *const kept[] = {"time", "datacontenttype", "dataschema"};

/* Handled by name, not as extensions. */
static bool special(const char *name)
{
    static const char *const names[] = {"specversion", "id", "source", "data", "data_base64"};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(names[i], name) == 0)
            return true;
    for (size_t i = 0; i < NFIELDS; i++)
        if (strcmp(fields[i].ce, name) == 0)
            return true;
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
        if (strcmp(kept[i], name) == 0)
            return true;
    return false;
}

static const json_t *attr(const json_t *ce, const char *name)
{
    const json_t *v = json_object_get(ce, name);
    return json_is_null(v) ? NULL : v;
}

/* A string attribute: NULL (absent) or a checked string. */
static tse_status string_attr(const json_t *ce, const char *name, bool required, size_t max,
                              const char **out, tse_error *err)
{
    const json_t *v = attr(ce, name);

    *out = NULL;
    if (v == NULL)
        return required ? tse_error_set(err, TSE_INVALID, name, "%s is required", name) : TSE_OK;
    if (!json_is_string(v))
        return tse_error_set(err, TSE_INVALID, name, "%s must be a string", name);
    if (json_string_length(v) == 0)
        return tse_error_set(err, TSE_INVALID, name, "%s must not be empty", name);
    if (tse_utf8_length(json_string_value(v)) > max)
        return tse_error_set(err, TSE_INVALID, name, "%s must be at most %zu characters", name,
                             max);
    if (has_control(json_string_value(v), json_string_length(v)))
        return tse_error_set(err, TSE_INVALID, name, "%s must not contain control characters",
                             name);
    *out = json_string_value(v);
    return TSE_OK;
}

static void meta_set(json_t *env, const char *name, json_t *value)
{
    char key[64];
    json_t *meta = json_object_get(env, "metadata");

    snprintf(key, sizeof(key), TSE_CE_META "%s", name);
    json_object_set_new(meta, key, value);
}

/* specversion, id, source. */
static tse_status required_attrs(const json_t *ce, json_t *env, tse_error *err)
{
    const char *spec, *id, *source;
    tse_status st;
    char uuid[37];

    if ((st = string_attr(ce, "specversion", true, 16, &spec, err)) != TSE_OK)
        return st;
    if (strcmp(spec, "1.0") != 0)
        return tse_error_set(err, TSE_INVALID, "specversion", "specversion must be \"1.0\"");
    if ((st = string_attr(ce, "id", true, TSE_CE_ID_MAX, &id, err)) != TSE_OK ||
        (st = string_attr(ce, "source", true, TSE_CE_SOURCE_MAX, &source, err)) != TSE_OK)
        return st;
    if (!uri_text(source, false))
        return tse_error_set(err, TSE_INVALID, "source",
                             "source must be a URI-reference (RFC 3986), e.g. \"lims\" or "
                             "\"https://lab.example/lims\"");
    json_object_set_new(env, "source_service", json_string(source));
    if (tse_uuid_valid(id)) {
        json_object_set_new(env, "id", json_string(id));
    } else {
        if (!id_uuid(source, id, uuid))
            return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
        json_object_set_new(env, "id", json_string(uuid));
        meta_set(env, "id", json_string(id));
    }
    return TSE_OK;
}

/* time, datacontenttype, dataschema: checked, kept in metadata. */
static tse_status kept_attrs(const json_t *ce, json_t *env, tse_error *err)
{
    const char *v;
    tse_status st;
    int64_t s;
    int32_t ns;

    if ((st = string_attr(ce, "time", false, 64, &v, err)) != TSE_OK)
        return st;
    if (v != NULL && tse_rfc3339_parse(v, &s, &ns) != TSE_OK)
        return tse_error_set(err, TSE_INVALID, "time",
                             "time must be an RFC 3339 timestamp, e.g. 2024-06-18T10:00:00Z");
    if (v != NULL)
        meta_set(env, "time", json_string(v));
    if ((st = string_attr(ce, "datacontenttype", false, 256, &v, err)) != TSE_OK)
        return st;
    if (v != NULL && !media_text(v))
        return tse_error_set(err, TSE_INVALID, "datacontenttype",
                             "datacontenttype must be a media type (RFC 2046)");
    if (v != NULL)
        meta_set(env, "datacontenttype", json_string(v));
    if ((st = string_attr(ce, "dataschema", false, TSE_CE_VALUE_MAX, &v, err)) != TSE_OK)
        return st;
    if (v != NULL && !uri_text(v, true))
        return tse_error_set(err, TSE_INVALID, "dataschema",
                             "dataschema must be an absolute URI (RFC 3986)");
    if (v != NULL)
        meta_set(env, "dataschema", json_string(v));
    return TSE_OK;
}

/* type, subject and our extensions with an envelope field. */
static tse_status field_attrs(const json_t *ce, json_t *env, tse_error *err)
{
    for (size_t i = 0; i < NFIELDS; i++) {
        const json_t *v = attr(ce, fields[i].ce);
        const char *s;
        tse_status st;
        char *end;
        long p;

        if (strcmp(fields[i].ce, "priority") == 0) {
            if (v == NULL)
                continue;
            /* A CloudEvents integer, or its canonical string form ("2"). */
            s = json_string_value(v);
            if (s != NULL && (p = strtol(s, &end, 10), end != s && *end == '\0'))
                json_object_set_new(env, "priority", json_integer(p));
            else if (json_is_integer(v))
                json_object_set(env, "priority", (json_t *)v);
            else
                return tse_error_set(err, TSE_INVALID, "priority",
                                     "priority must be an integer from 1 to 5");
            continue;
        }
        if ((st = string_attr(ce, fields[i].ce, strcmp(fields[i].ce, "type") == 0, TSE_CE_VALUE_MAX,
                              &s, err)) != TSE_OK)
            return st;
        if (s != NULL)
            json_object_set_new(env, fields[i].ours, json_string(s));
    }
    return TSE_OK;
}

/* An extension's canonical string form: strings, integers, booleans. */
static tse_status extension(const char *name, const json_t *v, json_t *env, tse_error *err)
{
    char text[32];

    if (!attribute_name(name))
        return tse_error_set(err, TSE_INVALID, name,
                             "not a CloudEvents attribute: names are 1 to %d characters a-z or "
                             "0-9",
                             TSE_CE_NAME_MAX);
    if (json_is_string(v)) {
        if (tse_utf8_length(json_string_value(v)) > TSE_CE_VALUE_MAX ||
            has_control(json_string_value(v), json_string_length(v)))
            return tse_error_set(err, TSE_INVALID, name,
                                 "%s must be at most %d characters, without control characters",
                                 name, TSE_CE_VALUE_MAX);
        meta_set(env, name, json_string(json_string_value(v)));
        return TSE_OK;
    }
    if (json_is_integer(v))
        snprintf(text, sizeof(text), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_boolean(v))
        snprintf(text, sizeof(text), "%s", json_is_true(v) ? "true" : "false");
    else
        return tse_error_set(err, TSE_INVALID, name,
                             "an extension attribute must be a string, an integer or a boolean");
    meta_set(env, name, json_string(text));
    return TSE_OK;
}

static tse_status extension_attrs(const json_t *ce, json_t *env, tse_error *err)
{
    const char *name;
    json_t *v;
    size_t n = 0;

    json_object_foreach((json_t *)ce, name, v)
    {
        tse_status st;
        if (json_is_null(v) || special(name))
            continue;
        if (++n > TSE_CE_EXTENSIONS_MAX)
            return tse_error_set(err, TSE_INVALID, name, "at most %d extension attributes",
                                 TSE_CE_EXTENSIONS_MAX);
        if ((st = extension(name, v, env, err)) != TSE_OK)
            return st;
    }
    return TSE_OK;
}

/* data or data_base64 -> payload (+ metadata ce.data saying which form). */
static tse_status data_attrs(const json_t *ce, json_t *env, tse_error *err)
{
    const json_t *data = attr(ce, "data"), *b64 = attr(ce, "data_base64");

    if (data != NULL && b64 != NULL)
        return tse_error_set(err, TSE_INVALID, "data_base64",
                             "a CloudEvent carries data or data_base64, not both");
    if (b64 != NULL) {
        if (!json_is_string(b64) || !base64_text(json_string_value(b64), json_string_length(b64)))
            return tse_error_set(err, TSE_INVALID, "data_base64",
                                 "data_base64 must be standard base64 (RFC 4648), padded");
        json_object_set_new(env, "payload", json_pack("{s:O}", "value", b64));
        meta_set(env, "data", json_string("base64"));
    } else if (json_is_object(data)) {
        json_object_set(env, "payload", (json_t *)data);
    } else if (data != NULL) {
        json_object_set_new(env, "payload", json_pack("{s:O}", "value", data));
        meta_set(env, "data", json_string("value"));
    } else {
        json_object_set_new(env, "payload", json_object());
        meta_set(env, "data", json_string("none"));
    }
    return TSE_OK;
}

tse_status tse_ce_to_envelope(const json_t *ce, json_t **out, tse_error *err)
{
    json_t *env;
    tse_status st;

    *out = NULL;
    if (!json_is_object(ce))
        return tse_error_set(err, TSE_INVALID, "body", "a CloudEvent must be a JSON object");
    if ((env = json_pack("{s:o}", "metadata", json_object())) == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    if ((st = required_attrs(ce, env, err)) != TSE_OK ||
        (st = field_attrs(ce, env, err)) != TSE_OK || (st = kept_attrs(ce, env, err)) != TSE_OK ||
        (st = data_attrs(ce, env, err)) != TSE_OK ||
        (st = extension_attrs(ce, env, err)) != TSE_OK) {
        json_decref(env);
        return st;
    }
    if (json_object_size(json_object_get(env, "metadata")) == 0)
        json_object_del(env, "metadata");
    *out = env;
    return TSE_OK;
}

/* ---- binary mode in ----------------------------------------------------- */

/* Percent-decodes s (the HTTP binding's encoding of header values). */
static char *percent_decode(const char *s, size_t *len)
{
    size_t n = strlen(s), o = 0;
    char *out = malloc(n + 1);

    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        if (!isxdigit((unsigned char)s[i + 1]) || !isxdigit((unsigned char)s[i + 2])) {
            free(out);
            *len = (size_t)-1;
            return NULL;
        }
        out[o++] = (char)(tse_hex_value(s[i + 1]) << 4 | tse_hex_value(s[i + 2]));
        i += 2;
    }
    out[o] = '\0';
    *len = o;
    return out;
}

tse_status tse_ce_binary_header(json_t *ce, const char *name, const char *value, tse_error *err)
{
    char attrname[TSE_CE_NAME_MAX + 2], *text;
    size_t n, len = 0;
    json_t *s;

    if (name == NULL || strncasecmp(name, "ce-", 3) != 0)
        return TSE_OK;
    n = strlen(name + 3);
    snprintf(attrname, sizeof(attrname), "%s", name + 3);
    for (char *p = attrname; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    if (n > TSE_CE_NAME_MAX || !attribute_name(attrname))
        return tse_error_set(err, TSE_INVALID, attrname,
                             "not a CloudEvents attribute header: ce- and 1 to %d characters "
                             "a-z or 0-9",
                             TSE_CE_NAME_MAX);
    if (strcmp(attrname, "data") == 0 || strcmp(attrname, "datacontenttype") == 0)
        return tse_error_set(err, TSE_INVALID, attrname,
                             "in binary mode the data is the body and its Content-Type the "
                             "datacontenttype");
    if (json_object_get(ce, attrname) != NULL)
        return tse_error_set(err, TSE_INVALID, attrname, "ce-%s given twice", attrname);
    if ((text = percent_decode(value ? value : "", &len)) == NULL)
        return len == (size_t)-1
                   ? tse_error_set(err, TSE_INVALID, attrname,
                                   "ce-%s: a %% not followed by two hex digits", attrname)
                   : tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    s = json_stringn(text, len); /* NULL unless UTF-8 */
    free(text);
    if (s == NULL)
        return tse_error_set(err, TSE_INVALID, attrname, "ce-%s must be UTF-8 once decoded",
                             attrname);
    json_object_set_new(ce, attrname, s);
    return TSE_OK;
}

/* text/...: the media types whose body is kept as a string. */
static bool media_is_text(const char *media)
{
    return strncasecmp(media, "text/", 5) == 0;
}

tse_status tse_ce_binary_body(json_t *ce, const char *content_type, const char *body, size_t len,
                              tse_error *err)
{
    json_t *data = NULL;
    json_error_t jerr;
    char *b64;

    if (content_type != NULL) {
        if (!media_text(content_type))
            return tse_error_set(err, TSE_INVALID, "datacontenttype",
                                 "Content-Type must be a media type (RFC 2046)");
        json_object_set_new(ce, "datacontenttype", json_string(content_type));
    }
    if (len == 0)
        return TSE_OK;
    if (media_is_json(content_type)) {
        if ((data = json_loadb(body, len, JSON_DECODE_ANY, &jerr)) == NULL)
            return tse_error_set(err, TSE_INVALID, "data",
                                 "the body is not the JSON its Content-Type says (line %d, "
                                 "column %d): %s",
                                 jerr.line, jerr.column, jerr.text);
        json_object_set_new(ce, "data", data);
    } else if (content_type != NULL && media_is_text(content_type) &&
               tse_utf8_text_span((const unsigned char *)body, len) == len) {
        json_object_set_new(ce, "data", json_stringn(body, len));
    } else {
        if ((b64 = tse_base64_encode((const uint8_t *)body, len)) == NULL)
            return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
        json_object_set_new(ce, "data_base64", json_string(b64));
        free(b64);
    }
    return TSE_OK;
}

/* ---- Event -> CloudEvent ------------------------------------------------- */

/* metadata "ce.<name>" of the event's JSON, or NULL. */
static json_t *meta_get(const json_t *plain, const char *name)
{
    char key[64];

    snprintf(key, sizeof(key), TSE_CE_META "%s", name);
    return json_object_get(json_object_get(plain, "metadata"), key);
}

/* Sets ce[name] to plain[from] when that is a non-empty string or a number. */
static void copy_attr(json_t *ce, const json_t *plain, const char *from, const char *name)
{
    json_t *v = json_object_get(plain, from);

    if ((json_is_string(v) && json_string_length(v) > 0) ||
        (json_is_integer(v) && json_integer_value(v) != 0)) /* priority 0: the default */
        json_object_set(ce, name, v);
}

/* The payload back as data / data_base64 (per metadata ce.data). */
static void data_out(json_t *ce, const json_t *plain)
{
    const char *form = json_string_value(meta_get(plain, "data"));
    json_t *payload = json_object_get(plain, "payload"), *value = json_object_get(payload, "value");

    if (form != NULL && strcmp(form, "none") == 0)
        return;
    if (form != NULL && strcmp(form, "base64") == 0 && json_is_string(value)) {
        json_object_set(ce, "data_base64", value);
        return;
    }
    if (form != NULL && strcmp(form, "value") == 0 && value != NULL)
        json_object_set(ce, "data", value);
    else if (payload != NULL)
        json_object_set(ce, "data", payload);
    if (json_object_get(ce, "datacontenttype") == NULL)
        json_object_set_new(ce, "datacontenttype", json_string("application/json"));
}

static void extensions_out(json_t *ce, const json_t *plain)
{
    const char *key;
    json_t *v;

    json_object_foreach(json_object_get(plain, "metadata"), key, v)
    {
        const char *name = key + strlen(TSE_CE_META);
        if (strncmp(key, TSE_CE_META, strlen(TSE_CE_META)) != 0 || !attribute_name(name) ||
            special(name) || !json_is_string(v))
            continue;
        json_object_set(ce, name, v);
    }
}

json_t *tse_event_json_payload(json_t *j)
{
    const ProtobufCMessageDescriptor *d = &tracseq__events__v1__event__descriptor;

    for (unsigned i = 0; j != NULL && i < d->n_fields; i++) {
        json_t *v;
        if (d->fields[i].id < 20 || (v = json_object_get(j, d->fields[i].name)) == NULL)
            continue;
        json_object_set(j, "payload", v);
        json_object_del(j, d->fields[i].name);
    }
    return j;
}

/* The event as the REST API reads it: its fields (defaults written). */
static json_t *event_json(const Event *ev)
{
    return tse_event_json_payload(ev ? tse_pbjson_from_message(&ev->base, TSE_PBJSON_EMIT_DEFAULTS)
                                     : NULL);
}

json_t *tse_ce_from_event(const Event *ev)
{
    json_t *plain = event_json(ev), *ce, *v;

    if (plain == NULL)
        return NULL;
    ce = json_pack("{s:s}", "specversion", "1.0");
    if (ce == NULL) {
        json_decref(plain);
        return NULL;
    }
    copy_attr(ce, plain, "id", "id");
    if ((v = meta_get(plain, "id")) != NULL && json_is_string(v))
        json_object_set(ce, "id", v);
    copy_attr(ce, plain, "source_service", "source");
    copy_attr(ce, plain, "event_type", "type");
    copy_attr(ce, plain, "timestamp", "time");
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
        if ((v = meta_get(plain, kept[i])) != NULL && json_is_string(v))
            json_object_set(ce, kept[i], v);
    for (size_t i = 1; i < NFIELDS; i++) /* after type */
        copy_attr(ce, plain, fields[i].ours, fields[i].ce);
    extensions_out(ce, plain);
    data_out(ce, plain);
    json_decref(plain);
    return ce;
}

/* ---- binary mode out ------------------------------------------------------- */

/* The HTTP binding's encoding of a header value: printable ASCII but '"'
 * and '%' as is, everything else %XX. */
static char *percent_encode(const char *s)
{
    char *out = malloc(strlen(s) * 3 + 1), *o;

    if (out == NULL)
        return NULL;
    o = out;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p >= 0x21 && *p <= 0x7e && *p != '"' && *p != '%')
            *o++ = (char)*p;
        else
            o += sprintf(o, "%%%02X", *p);
    }
    *o = '\0';
    return out;
}

static tse_status header_out(json_t *headers, const char *name, const json_t *v)
{
    char key[TSE_CE_NAME_MAX + 8], num[32], *enc;
    const char *text = json_string_value(v);

    if (text == NULL && json_is_integer(v)) {
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        text = num;
    } else if (text == NULL && json_is_boolean(v)) {
        text = json_is_true(v) ? "true" : "false";
    }
    if (text == NULL)
        return TSE_OK;
    snprintf(key, sizeof(key), "ce-%s", name);
    if ((enc = percent_encode(text)) == NULL)
        return TSE_NOMEM;
    json_object_set_new(headers, key, json_string(enc));
    free(enc);
    return TSE_OK;
}

tse_status tse_ce_to_binary(const json_t *ce, json_t *headers, char **body, size_t *len,
                            const char **content_type)
{
    const json_t *data = json_object_get(ce, "data"), *b64 = json_object_get(ce, "data_base64");
    const char *name;
    json_t *v;

    *body = NULL;
    *len = 0;
    *content_type = json_string_value(json_object_get(ce, "datacontenttype"));
    if (*content_type != NULL && !media_text(*content_type)) /* not fit for a header */
        *content_type = "application/octet-stream";
    json_object_foreach((json_t *)ce, name, v)
    {
        if (strcmp(name, "data") == 0 || strcmp(name, "data_base64") == 0 ||
            strcmp(name, "datacontenttype") == 0)
            continue;
        if (header_out(headers, name, v) != TSE_OK)
            return TSE_NOMEM;
    }
    if (json_is_string(b64)) {
        /* The text was checked (base64_text): only memory can fail. An
         * empty one leaves the body NULL, as no data does. */
        if (tse_base64_decode(json_string_value(b64), json_string_length(b64), (uint8_t **)body,
                              len) != 0)
            return TSE_NOMEM;
        if (*content_type == NULL)
            *content_type = "application/octet-stream";
    } else if (json_is_string(data) && !media_is_json(*content_type)) {
        if ((*body = strdup(json_string_value(data))) == NULL)
            return TSE_NOMEM;
        *len = json_string_length(data);
    } else if (data != NULL) {
        if ((*body = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL)
            return TSE_NOMEM;
        *len = strlen(*body);
        if (*content_type == NULL)
            *content_type = "application/json";
    }
    return TSE_OK;
}

/* ---- the protobuf format in ---------------------------------------------- */

typedef Io__Cloudevents__V1__CloudEvent__CloudEventAttributeValue AttrValue;

/* An attribute's value in the JSON format; NULL when unset or not UTF-8. */
static json_t *attr_value_json(const AttrValue *v)
{
    char ts[48], *b64;
    json_t *j;

    switch (v->attr_case) {
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_BOOLEAN:
        return json_boolean(v->ce_boolean);
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_INTEGER:
        return json_integer(v->ce_integer);
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_STRING:
        return json_string(v->ce_string);
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_URI:
        return json_string(v->ce_uri);
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_URI_REF:
        return json_string(v->ce_uri_ref);
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_BYTES:
        if ((b64 = tse_base64_encode(v->ce_bytes.data, v->ce_bytes.len)) == NULL)
            return NULL;
        j = json_string(b64);
        free(b64);
        return j;
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_TIMESTAMP:
        if (v->ce_timestamp == NULL)
            return NULL;
        tse_rfc3339_format(v->ce_timestamp->seconds, v->ce_timestamp->nanos, ts, sizeof(ts));
        return json_string(ts);
    default: return NULL;
    }
}

/* A required string of the message: absent when empty (proto3 cannot tell). */
static tse_status core_attr(json_t *ce, const char *name, const char *value, tse_error *err)
{
    json_t *s;

    if (value == NULL || value[0] == '\0')
        return TSE_OK;
    if ((s = json_string(value)) == NULL)
        return tse_error_set(err, TSE_INVALID, name, "%s must be UTF-8", name);
    json_object_set_new(ce, name, s);
    return TSE_OK;
}

static tse_status proto_attributes(const Io__Cloudevents__V1__CloudEvent *pb, json_t *ce,
                                   tse_error *err)
{
    static const char *const own[] = {"id", "source", "specversion", "type", "data", "data_base64"};

    for (size_t i = 0; i < pb->n_attributes; i++) {
        const Io__Cloudevents__V1__CloudEvent__AttributesEntry *a = pb->attributes[i];
        const char *key = a && a->key ? a->key : "";
        json_t *v;

        for (size_t k = 0; k < sizeof(own) / sizeof(own[0]); k++)
            if (strcmp(key, own[k]) == 0)
                return tse_error_set(err, TSE_INVALID, key,
                                     "%s has its own field, not an attribute entry", key);
        if (a == NULL || a->value == NULL || (v = attr_value_json(a->value)) == NULL)
            return tse_error_set(err, TSE_INVALID,
                                 key[0] && tse_utf8_valid(key) ? key : "attributes",
                                 "an attribute needs a value (UTF-8 text)");
        if (!tse_utf8_valid(key) || json_object_set_new(ce, key, v) != 0)
            return tse_error_set(err, TSE_INVALID, "attributes",
                                 "attribute names are a-z or 0-9 (UTF-8)");
    }
    return TSE_OK;
}

static tse_status proto_data(const Io__Cloudevents__V1__CloudEvent *pb, json_t *ce, tse_error *err)
{
    const char *ctype = json_string_value(json_object_get(ce, "datacontenttype"));
    json_error_t jerr;
    json_t *data;
    char *b64;

    switch (pb->data_case) {
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_TEXT_DATA:
        if (media_is_json(ctype))
            data = json_loads(pb->text_data ? pb->text_data : "", JSON_DECODE_ANY, &jerr);
        else
            data = json_string(pb->text_data ? pb->text_data : "");
        if (data == NULL)
            return tse_error_set(err, TSE_INVALID, "text_data",
                                 "text_data must be UTF-8, and JSON when datacontenttype says so");
        json_object_set_new(ce, "data", data);
        return TSE_OK;
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_BINARY_DATA:
        if ((b64 = tse_base64_encode(pb->binary_data.data, pb->binary_data.len)) == NULL)
            return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
        json_object_set_new(ce, "data_base64", json_string(b64));
        free(b64);
        return TSE_OK;
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_PROTO_DATA:
        return tse_error_set(err, TSE_INVALID, "proto_data",
                             "proto_data is not supported: send the packed message as binary_data "
                             "with datacontenttype application/protobuf and its type in "
                             "dataschema");
    default: return TSE_OK;
    }
}

tse_status tse_ce_from_proto(const Io__Cloudevents__V1__CloudEvent *pb, json_t **out,
                             tse_error *err)
{
    json_t *ce = json_object();
    tse_status st;

    *out = NULL;
    if (ce == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    if ((st = core_attr(ce, "specversion", pb->spec_version, err)) != TSE_OK ||
        (st = core_attr(ce, "id", pb->id, err)) != TSE_OK ||
        (st = core_attr(ce, "source", pb->source, err)) != TSE_OK ||
        (st = core_attr(ce, "type", pb->type, err)) != TSE_OK ||
        (st = proto_attributes(pb, ce, err)) != TSE_OK ||
        (st = proto_data(pb, ce, err)) != TSE_OK) {
        json_decref(ce);
        return st;
    }
    *out = ce;
    return TSE_OK;
}

tse_status tse_ce_envelope_event(const json_t *env, Event **out, tse_error *err)
{
    json_t *j = json_copy((json_t *)env), *payload;
    ProtobufCMessage *msg = NULL;
    tse_status st;

    *out = NULL;
    if (j == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    /* The payload travels as the generic Struct; the service fits it to
     * its catalog type, as for a REST event. */
    if ((payload = json_object_get(j, "payload")) != NULL) {
        json_object_set(j, "data", payload);
        json_object_del(j, "payload");
    }
    st = tse_pbjson_to_message(j, &tracseq__events__v1__event__descriptor, 0, &msg, err);
    json_decref(j);
    if (st == TSE_OK)
        *out = (Event *)msg;
    return st;
}

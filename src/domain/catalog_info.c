/*
 * catalog_info.c - the catalog as ListEventTypes describes it: each entry's
 * type, message, version, description, domain and payload field, and for
 * every field of its payload message the proto name, the proto3 JSON name,
 * a short type name, whether it is required and its format. See catalog.h.
 *
 * Everything is read from the constant catalog and its descriptors, so the
 * answer cannot drift from proto/. It is built into a packed
 * ListEventTypesResponse in one pass; the message tree used to pack it
 * points into the catalog, the descriptors and the scratch arrays below,
 * all of which are freed before returning.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain/catalog.h"
#include "domain/validate.h"
#include "tracseq/events/v1/service.pb-c.h"

typedef Tracseq__Events__V1__EventTypeInfo EventTypeInfo;
typedef Tracseq__Events__V1__FieldInfo FieldInfo;

/* "sample_id" -> "sampleId", the proto3 JSON name. */
static void json_name(const char *name, char *out, size_t len)
{
    size_t j = 0;
    bool upper = false;

    for (size_t i = 0; name[i] && j + 1 < len; i++) {
        if (name[i] == '_') {
            upper = true;
            continue;
        }
        out[j++] = upper && name[i] >= 'a' && name[i] <= 'z' ? (char)(name[i] - 32) : name[i];
        upper = false;
    }
    out[j] = '\0';
}

static const char *scalar_name(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32: return "int32";
    case PROTOBUF_C_TYPE_SINT32: return "sint32";
    case PROTOBUF_C_TYPE_SFIXED32: return "sfixed32";
    case PROTOBUF_C_TYPE_INT64: return "int64";
    case PROTOBUF_C_TYPE_SINT64: return "sint64";
    case PROTOBUF_C_TYPE_SFIXED64: return "sfixed64";
    case PROTOBUF_C_TYPE_UINT32: return "uint32";
    case PROTOBUF_C_TYPE_FIXED32: return "fixed32";
    case PROTOBUF_C_TYPE_UINT64: return "uint64";
    case PROTOBUF_C_TYPE_FIXED64: return "fixed64";
    case PROTOBUF_C_TYPE_FLOAT: return "float";
    case PROTOBUF_C_TYPE_DOUBLE: return "double";
    case PROTOBUF_C_TYPE_BOOL: return "bool";
    case PROTOBUF_C_TYPE_ENUM: return "enum";
    case PROTOBUF_C_TYPE_STRING: return "string";
    case PROTOBUF_C_TYPE_BYTES: return "bytes";
    case PROTOBUF_C_TYPE_MESSAGE: return "message";
    }
    return "unknown";
}

/* A short type name for a message-typed field: Timestamp, Value, Struct. */
static const char *message_name(const ProtobufCMessageDescriptor *d)
{
    if (strcmp(d->name, "google.protobuf.Timestamp") == 0)
        return "timestamp";
    return d->short_name;
}

static void field_type(const ProtobufCFieldDescriptor *f, char *out, size_t len)
{
    const ProtobufCMessageDescriptor *md = f->descriptor;

    if (f->type == PROTOBUF_C_TYPE_MESSAGE && md->n_fields == 2 &&
        strcmp(md->fields[0].name, "key") == 0 && strcmp(md->fields[1].name, "value") == 0 &&
        f->label == PROTOBUF_C_LABEL_REPEATED) {
        const ProtobufCFieldDescriptor *v = &md->fields[1];
        snprintf(out, len, "map<%s,%s>", scalar_name(md->fields[0].type),
                 v->type == PROTOBUF_C_TYPE_MESSAGE ? message_name(v->descriptor)
                                                    : scalar_name(v->type));
        return;
    }
    snprintf(out, len, "%s%s", f->label == PROTOBUF_C_LABEL_REPEATED ? "repeated " : "",
             f->type == PROTOBUF_C_TYPE_MESSAGE ? message_name(md) : scalar_name(f->type));
}

/* The scratch a description points into while it is packed. */
typedef struct scratch {
    EventTypeInfo *infos;
    EventTypeInfo **info_ptrs;
    FieldInfo *fields;
    FieldInfo **field_ptrs;
    char (*json)[64];
    char (*type)[64];
    char (*domains)[64];
} scratch;

static void scratch_free(scratch *s)
{
    free(s->infos);
    free(s->info_ptrs);
    free(s->fields);
    free(s->field_ptrs);
    free(s->json);
    free(s->type);
    free(s->domains);
}

static bool scratch_alloc(scratch *s, size_t n, size_t total)
{
    s->infos = calloc(n, sizeof(*s->infos));
    s->info_ptrs = calloc(n, sizeof(*s->info_ptrs));
    s->fields = calloc(total, sizeof(*s->fields));
    s->field_ptrs = calloc(total, sizeof(*s->field_ptrs));
    s->json = calloc(total, sizeof(*s->json));
    s->type = calloc(total, sizeof(*s->type));
    s->domains = calloc(n, sizeof(*s->domains));
    return s->infos && s->info_ptrs && s->fields && s->field_ptrs && s->json && s->type &&
           s->domains;
}

/* Field k of the flat arrays describes field f of entry e. */
static void describe_field(scratch *s, size_t k, const tse_catalog_entry *e,
                           const ProtobufCFieldDescriptor *f)
{
    tse_field_rule rule = tse_catalog_field_rule(e, f->name);
    FieldInfo *fi = &s->fields[k];

    tracseq__events__v1__field_info__init(fi);
    fi->name = (char *)f->name;
    json_name(f->name, s->json[k], sizeof(s->json[k]));
    fi->json_name = s->json[k];
    field_type(f, s->type[k], sizeof(s->type[k]));
    fi->type = s->type[k];
    fi->required = rule == TSE_FIELD_REQUIRED || rule == TSE_FIELD_UUID;
    fi->format = rule == TSE_FIELD_UUID || rule == TSE_FIELD_UUID_LIST ? "uuid" : "";
    fi->number = (int32_t)f->id;
    s->field_ptrs[k] = fi;
}

/* Entry i, whose fields start at k of the flat arrays. */
static void describe_entry(scratch *s, size_t i, size_t k, const tse_catalog_entry *e)
{
    EventTypeInfo *info = &s->infos[i];

    tracseq__events__v1__event_type_info__init(info);
    info->event_type = (char *)e->event_type;
    info->message = (char *)e->descriptor->name;
    info->version = (char *)e->version;
    info->description = (char *)e->description;
    info->payload_field = (char *)e->payload_field;
    snprintf(s->domains[i], sizeof(s->domains[i]), "%.*s", (int)strcspn(e->event_type, "."),
             e->event_type);
    info->domain = s->domains[i];
    info->fields = &s->field_ptrs[k];
    for (unsigned j = 0; j < e->descriptor->n_fields; j++)
        describe_field(s, k + j, e, &e->descriptor->fields[j]);
    info->n_fields = e->descriptor->n_fields;
    s->info_ptrs[i] = info;
}

uint8_t *tse_catalog_describe(size_t *len)
{
    Tracseq__Events__V1__ListEventTypesResponse out =
        TRACSEQ__EVENTS__V1__LIST_EVENT_TYPES_RESPONSE__INIT;
    size_t n, total = 0, k = 0;
    const tse_catalog_entry *entries = tse_catalog_entries(&n);
    scratch s = {0};
    uint8_t *buf = NULL;

    for (size_t i = 0; i < n; i++)
        total += entries[i].descriptor->n_fields;
    if (!scratch_alloc(&s, n, total))
        goto out;
    for (size_t i = 0; i < n; i++) {
        describe_entry(&s, i, k, &entries[i]);
        k += entries[i].descriptor->n_fields;
    }
    out.n_event_types = n;
    out.event_types = s.info_ptrs;
    out.generic_type_pattern = TSE_EVENT_TYPE_PATTERN;
    *len = protobuf_c_message_get_packed_size(&out.base);
    buf = malloc(*len ? *len : 1);
    if (buf != NULL)
        protobuf_c_message_pack(&out.base, buf);
out:
    scratch_free(&s);
    return buf;
}

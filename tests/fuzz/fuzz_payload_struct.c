/*
 * fuzz_payload_struct.c - libFuzzer target comparing the fast Struct-to-
 * catalog-message path (src/domain/payload_struct.c) with the general one it
 * stands in for: tse_pbjson_from_struct, then tse_pbjson_to_message (flags
 * 0), as payload.c's struct_via_json.
 *
 * The properties, for a random Struct and a random catalog type:
 * - whenever the fast path accepts, the general path accepts too and
 *   protobuf_c_message_pack of the two messages is byte-identical (a Struct
 *   the fast path declines goes through the general path itself, so every
 *   refusal, with its status, field and message, is the general path's by
 *   construction);
 * - tse_event_prepare_payload (strict) on an event carrying the Struct then
 *   answers as the general path's message would: the same status, field and
 *   message from the schema rules, and on success the same payload bytes
 *   after stamping.
 *
 * Input: one byte choosing the catalog type, then a stream of small
 * instructions that build the Struct (see build_struct), biased towards the
 * type's own field names so that most inputs reach the fast path.
 */
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/pbjson.h"
#include "domain/catalog.h"
#include "domain/payload_struct.h"
#include "domain/validate.h"
#include "fuzz_support.h"

typedef Google__Protobuf__Struct Struct;
typedef Google__Protobuf__Value Value;

typedef struct reader {
    const uint8_t *p;
    size_t n;
} reader;

static unsigned next(reader *r)
{
    if (r->n == 0)
        return 0;
    r->n--;
    return *r->p++;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n != 0 ? n : 1, size);

    if (p == NULL)
        abort();
    return p;
}

/* A string of up to 15 raw bytes (any bytes: invalid UTF-8 included). */
static char *raw_string(reader *r)
{
    size_t len = next(r) % 16;
    char *s = xcalloc(len + 1, 1);

    for (size_t i = 0; i < len; i++)
        s[i] = (char)(next(r) | 1u); /* no NUL: a C string would end early */
    return s;
}

static const char *const samples[] = {
    "",
    "123e4567-e89b-42d3-a456-426614174000",
    "SAM-1",
    "DNA",
    "RNA",
    "2024-06-18T10:00:00Z",
    "42",
    "aGVsbG8=",
    "SAMPLE_TYPE_DNA",
    "é",
    "null",
};

static char *sample_string(reader *r)
{
    const char *s = samples[next(r) % (sizeof(samples) / sizeof(samples[0]))];
    char *d = strdup(s);

    if (d == NULL)
        abort();
    return d;
}

static Struct *build_struct(reader *r, const ProtobufCMessageDescriptor *desc, int depth);

static Value *build_value(reader *r, const ProtobufCMessageDescriptor *desc, int depth)
{
    unsigned op = next(r);
    Value *v = xcalloc(1, sizeof(*v));

    google__protobuf__value__init(v);
    switch (op % 10) {
    case 0: v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE; break;
    case 1: {
        static const double nums[] = {0, 1, -1, 2.5, 1e300, -0.0, 9007199254740993.0, 4294967296.0};
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
        v->number_value = (op >> 4) == 15 ? NAN : (op >> 4) == 14 ? INFINITY : nums[next(r) % 8];
        break;
    }
    case 2:
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
        v->bool_value = op & 16;
        break;
    case 3:
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
        v->struct_value = build_struct(r, desc, depth + 1);
        break;
    case 4:
    case 5: {
        size_t n = next(r) % 4;
        Google__Protobuf__ListValue *l = xcalloc(1, sizeof(*l));

        google__protobuf__list_value__init(l);
        l->values = xcalloc(n, sizeof(*l->values));
        for (size_t i = 0; i < n; i++) {
            l->values[i] = build_value(r, desc, depth + 1);
            l->n_values++;
        }
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
        v->list_value = l;
        break;
    }
    case 6:
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
        v->string_value = raw_string(r);
        break;
    default:
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
        v->string_value = sample_string(r);
        break;
    }
    if (depth > 3 && (v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE ||
                      v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE)) {
        protobuf_c_message_free_unpacked(&v->base, NULL);
        v = xcalloc(1, sizeof(*v));
        google__protobuf__value__init(v);
    }
    return v;
}

/* A key: a field's proto name (mostly), its JSON name, or raw bytes. */
static char *build_key(reader *r, const ProtobufCMessageDescriptor *desc)
{
    unsigned op = next(r);
    const ProtobufCFieldDescriptor *f = &desc->fields[next(r) % desc->n_fields];
    char *k;

    size_t j = 0;

    if (op % 8 == 7)
        return raw_string(r);
    k = strdup(f->name);
    if (k == NULL)
        abort();
    if (op % 8 != 6)
        return k;
    for (size_t i = 0; f->name[i] != '\0'; i++) { /* its JSON name: sample_id -> sampleId */
        if (f->name[i] == '_' && f->name[i + 1] >= 'a' && f->name[i + 1] <= 'z')
            k[j++] = (char)(f->name[++i] - 'a' + 'A');
        else
            k[j++] = f->name[i];
    }
    k[j] = '\0';
    return k;
}

static Struct *build_struct(reader *r, const ProtobufCMessageDescriptor *desc, int depth)
{
    Struct *s = xcalloc(1, sizeof(*s));
    size_t n = depth == 0 ? 1 + next(r) % 12 : next(r) % 3;

    google__protobuf__struct__init(s);
    s->fields = xcalloc(n, sizeof(*s->fields));
    for (size_t i = 0; i < n && (depth == 0 || r->n > 0); i++) {
        Google__Protobuf__Struct__FieldsEntry *fe = xcalloc(1, sizeof(*fe));

        google__protobuf__struct__fields_entry__init(fe);
        fe->key = build_key(r, desc);
        fe->value = build_value(r, desc, depth);
        s->fields[s->n_fields++] = fe;
    }
    return s;
}

static uint8_t *packed(const ProtobufCMessage *m, size_t *len)
{
    uint8_t *buf;

    *len = protobuf_c_message_get_packed_size(m);
    buf = xcalloc(*len, 1);
    protobuf_c_message_pack(m, buf);
    return buf;
}

static void same_bytes(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
    size_t na, nb;
    uint8_t *pa = packed(a, &na), *pb = packed(b, &nb);

    FUZZ_CHECK(na == nb && memcmp(pa, pb, na) == 0, "packed %zu vs %zu bytes differ", na, nb);
    free(pa);
    free(pb);
}

/* The general path's message for s, or NULL when it refuses s. */
static ProtobufCMessage *general(const Struct *s, const ProtobufCMessageDescriptor *desc)
{
    ProtobufCMessage *typed = NULL;
    json_t *json = tse_pbjson_from_struct(s);
    tse_error err;

    if (json == NULL)
        abort();
    if (tse_pbjson_to_message(json, desc, 0, &typed, &err) != TSE_OK)
        typed = NULL;
    json_decref(json);
    return typed;
}

/* A malloc'd deep copy of s, as the service holds one: prepare frees it. */
static Struct *copy_struct(const Struct *s)
{
    size_t len;
    uint8_t *buf = packed(&s->base, &len);
    Struct *c = google__protobuf__struct__unpack(NULL, len, buf);

    if (c == NULL)
        abort();
    free(buf);
    return c;
}

/* The event's payload message, whatever its case. */
static ProtobufCMessage *payload_of(const Tracseq__Events__V1__Event *ev)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(
        &tracseq__events__v1__event__descriptor, (unsigned)ev->payload_case);

    return *(ProtobufCMessage *const *)((const char *)ev + f->offset);
}

/* tse_event_prepare_payload on an event carrying s answers as ref would. */
static void same_prepare(const tse_catalog_entry *e, const Struct *s, ProtobufCMessage *ref)
{
    Tracseq__Events__V1__Event ev = TRACSEQ__EVENTS__V1__EVENT__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    tse_prepare_result result;
    tse_error err, ref_err;
    tse_status st, ref_st;
    char type[64];

    tse_error_clear(&err);
    tse_error_clear(&ref_err);
    if (tse_message_check_text(&s->base, "payload", &ref_err) != TSE_OK)
        return; /* refused before any conversion, by one shared check */
    snprintf(type, sizeof(type), "%s", e->event_type);
    ts.seconds = 1718704800;
    ts.nanos = 5;
    ev.event_type = type;
    ev.timestamp = &ts;
    ev.payload_case = TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA;
    ev.data = copy_struct(s);
    ref_st = tse_payload_check(e, ref, &ref_err);
    if (ref_st == TSE_OK)
        ref_st = tse_payload_stamp(e, ref, ts.seconds, ts.nanos, &ref_err);
    st = tse_event_prepare_payload(&ev, TSE_VALIDATION_STRICT, &result, &err);
    FUZZ_CHECK(st == ref_st, "status %d vs %d", (int)st, (int)ref_st);
    FUZZ_CHECK(strcmp(err.field, ref_err.field) == 0, "field %s vs %s", err.field, ref_err.field);
    FUZZ_CHECK(strcmp(err.message, ref_err.message) == 0, "message %s vs %s", err.message,
               ref_err.message);
    if (st == TSE_OK) {
        FUZZ_CHECK(ev.payload_case == e->payload_case, "payload case %d", (int)ev.payload_case);
        same_bytes(payload_of(&ev), ref);
    }
    protobuf_c_message_free_unpacked(payload_of(&ev), NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t count;
    const tse_catalog_entry *entries = tse_catalog_entries(&count);
    reader r = {data, size};
    const tse_catalog_entry *e;
    ProtobufCMessage *fast, *ref;
    Struct *s;

    if (size == 0 || count == 0)
        return 0;
    e = &entries[next(&r) % count];
    s = build_struct(&r, e->descriptor, 0);
    FUZZ_CHECK(tse_payload_struct_fast(s, e->descriptor, &fast) == TSE_OK, "out of memory");
    ref = general(s, e->descriptor);
    if (fast != NULL) {
        FUZZ_CHECK(ref != NULL, "the fast path accepts what the general path refuses");
        same_bytes(fast, ref);
        protobuf_c_message_free_unpacked(fast, NULL);
    }
    if (ref != NULL) {
        same_prepare(e, s, ref);
        protobuf_c_message_free_unpacked(ref, NULL);
    }
    protobuf_c_message_free_unpacked(&s->base, NULL);
    return 0;
}

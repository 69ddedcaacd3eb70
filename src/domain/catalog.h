/*
 * catalog.h - the schema catalog: every typed laboratory event type, the
 * protobuf message that carries its payload, and the rules its fields obey
 * beyond their protobuf types (required, UUID format).
 *
 * The catalog is a constant table: read-only, safe from any thread, nothing
 * to create or free. Field lists come from the protobuf-c descriptors, so
 * the catalog cannot drift from proto/.
 */
#ifndef TSE_DOMAIN_CATALOG_H
#define TSE_DOMAIN_CATALOG_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tracseq/events/v1/event.pb-c.h"

/* A payload field's checked rule. */
typedef enum tse_field_rule {
    TSE_FIELD_FREE = 0,  /* any value, may be absent */
    TSE_FIELD_REQUIRED,  /* a non-empty string */
    TSE_FIELD_UUID,      /* a non-empty string holding a UUID */
    TSE_FIELD_UUID_LIST, /* repeated string, each a UUID (may be empty) */
    TSE_FIELD_STAMP      /* Timestamp; the event's publish time when unset */
} tse_field_rule;

typedef struct tse_field_spec {
    const char *name; /* proto field name */
    tse_field_rule rule;
} tse_field_spec;

typedef struct tse_catalog_entry {
    const char *event_type;                       /* "sample.created" */
    const ProtobufCMessageDescriptor *descriptor; /* its payload message */
    Tracseq__Events__V1__Event__PayloadCase payload_case;
    const char *payload_field; /* Event field: "sample_created" */
    const char *version;       /* "1.0" */
    const char *description;
    const tse_field_spec *fields; /* fields with a rule; NULL-name terminated */
} tse_catalog_entry;

/* Every entry, in catalog order; *count receives the number. */
const tse_catalog_entry *tse_catalog_entries(size_t *count);

/* The entry of an event type, or NULL for a type outside the catalog. */
const tse_catalog_entry *tse_catalog_find(const char *event_type);

/* The entry whose payload travels in Event field case c, or NULL. */
const tse_catalog_entry *tse_catalog_find_case(Tracseq__Events__V1__Event__PayloadCase c);

/* The rule of one field of an entry (TSE_FIELD_FREE when none). */
tse_field_rule tse_catalog_field_rule(const tse_catalog_entry *e, const char *field);

/*
 * The catalog as ListEventTypes answers it, packed (a
 * tracseq.events.v1.ListEventTypesResponse): every entry in catalog order
 * with its payload fields (proto and JSON names, type, required, format) and
 * the generic type pattern (catalog_info.c). The catalog being constant, a
 * caller builds it once and sends it as is. A malloc'd buffer the caller
 * frees with free(), its length in *len; NULL when out of memory.
 */
uint8_t *tse_catalog_describe(size_t *len);

#endif

/*
 * introspect.c - GetStats and ListEventTypes: answered from memory (the
 * stats counters and the constant schema catalog), so they never wait on
 * Redis.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "domain/catalog.h"
#include "domain/validate.h"
#include "tracseq/events/v1/service.pb-c.h"
#include "transport/internal.h"

/* ===================== GetStats ========================================= */

typedef struct type_counts {
    Tracseq__Events__V1__Stats__PublishedByTypeEntry *entries;
    Tracseq__Events__V1__Stats__PublishedByTypeEntry **ptrs;
    size_t n, cap;
} type_counts;

static void add_type(void *arg, const char *type, uint64_t count)
{
    type_counts *tc = arg;

    if (tc->n == tc->cap)
        return;
    Tracseq__Events__V1__Stats__PublishedByTypeEntry *e = &tc->entries[tc->n];
    tracseq__events__v1__stats__published_by_type_entry__init(e);
    e->key = (char *)type;
    e->value = count;
    tc->ptrs[tc->n++] = e;
}

/* Every registered stream with its length, in one round trip. */
static const char stream_lengths_script[] =
    "local out = {}\n"
    "for _, k in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
    "  out[#out + 1] = k\n"
    "  out[#out + 1] = redis.call('XLEN', k)\n"
    "end\n"
    "return out\n";

#define STREAM_PREFIX "tracseq:events:"

typedef struct length_map {
    Tracseq__Events__V1__Stats__StreamLengthsEntry *entries;
    Tracseq__Events__V1__Stats__StreamLengthsEntry **ptrs;
    char (*types)[TSE_EVENT_TYPE_MAX + 1];
    size_t n, cap;
} length_map;

/* Adds a stream's length to its event type's total (priorities summed). */
static void add_length(length_map *m, const char *key, size_t key_len, uint64_t len)
{
    size_t plen = strlen(STREAM_PREFIX), tlen;
    const char *colon;

    if (key_len <= plen || strncmp(key, STREAM_PREFIX, plen) != 0)
        return;
    colon = memrchr(key + plen, ':', key_len - plen);
    tlen = colon ? (size_t)(colon - key) - plen : key_len - plen;
    if (tlen == 0 || tlen > TSE_EVENT_TYPE_MAX)
        return;
    for (size_t i = 0; i < m->n; i++) {
        if (strlen(m->types[i]) == tlen && memcmp(m->types[i], key + plen, tlen) == 0) {
            m->entries[i].value += len;
            return;
        }
    }
    if (m->n == m->cap)
        return;
    memcpy(m->types[m->n], key + plen, tlen);
    m->types[m->n][tlen] = '\0';
    tracseq__events__v1__stats__stream_lengths_entry__init(&m->entries[m->n]);
    m->entries[m->n].key = m->types[m->n];
    m->entries[m->n].value = len;
    m->ptrs[m->n] = &m->entries[m->n];
    m->n++;
}

/* Answers GetStats from the counters plus, when reply is non-NULL, the
 * stream lengths Redis reported. */
static void answer_stats(tse_call *c, const redisReply *reply)
{
    tse_server *s = c->server;
    tse_stats *st = s->stats;
    Tracseq__Events__V1__Stats out = TRACSEQ__EVENTS__V1__STATS__INIT;
    tse_latency_summary lat = tse_stats_latency(st);
    type_counts tc = {0};
    length_map lm = {0};
    size_t streams = reply && reply->type == REDIS_REPLY_ARRAY ? reply->elements / 2 : 0;

    tc.cap = 4097;
    tc.entries = calloc(tc.cap, sizeof(*tc.entries));
    tc.ptrs = calloc(tc.cap, sizeof(*tc.ptrs));
    if (tc.entries && tc.ptrs)
        tse_stats_each_type(st, add_type, &tc);
    lm.cap = streams;
    lm.entries = calloc(streams + 1, sizeof(*lm.entries));
    lm.ptrs = calloc(streams + 1, sizeof(*lm.ptrs));
    lm.types = calloc(streams + 1, sizeof(*lm.types));
    for (size_t i = 0; lm.entries && lm.ptrs && lm.types && i < streams; i++) {
        const redisReply *k = reply->element[2 * i], *v = reply->element[2 * i + 1];
        if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_INTEGER)
            add_length(&lm, k->str, k->len, (uint64_t)v->integer);
    }
    out.events_published = tse_stats_get(st, TSE_STAT_PUBLISHED);
    out.events_consumed = tse_stats_get(st, TSE_STAT_CONSUMED);
    out.events_failed =
        tse_stats_get(st, TSE_STAT_INVALID) + tse_stats_get(st, TSE_STAT_UNAVAILABLE);
    out.handlers_registered = tse_stats_get(st, TSE_STAT_SUBSCRIBERS);
    out.events_acked = tse_stats_get(st, TSE_STAT_ACKED);
    out.events_redelivered = tse_stats_get(st, TSE_STAT_REDELIVERED);
    out.events_dead_lettered = tse_stats_get(st, TSE_STAT_DEAD_LETTERED);
    out.events_duplicate = tse_stats_get(st, TSE_STAT_DUPLICATE);
    out.events_schema_invalid = tse_stats_get(st, TSE_STAT_SCHEMA_INVALID);
    out.events_invalid = tse_stats_get(st, TSE_STAT_INVALID);
    out.events_unavailable = tse_stats_get(st, TSE_STAT_UNAVAILABLE);
    out.active_subscribers = (uint32_t)tse_stats_get(st, TSE_STAT_SUBSCRIBERS);
    out.n_published_by_type = tc.n;
    out.published_by_type = tc.ptrs;
    out.n_stream_lengths = lm.n;
    out.stream_lengths = lm.ptrs;
    out.publish_latency_p50_us = lat.p50_us;
    out.publish_latency_p99_us = lat.p99_us;
    out.publish_latency_max_us = lat.max_us;
    out.uptime_seconds = tse_stats_uptime(st);
    out.redis_connected = reply != NULL && tse_broker_is_up(s->broker);
    out.validation_mode = s->config->strict ? "strict" : "lenient";
    out.version = TSE_VERSION;
    tse_call_finish_unary(c, &out.base, GRPC_STATUS_OK, NULL);
    free(tc.entries);
    free(tc.ptrs);
    free(lm.entries);
    free(lm.ptrs);
    free(lm.types);
}

static void on_stream_lengths(void *arg, tse_status status, const redisReply *reply,
                              const char *message)
{
    tse_call *c = arg;

    /* Redis down or an error reply: the counters still answer. */
    if (status != TSE_OK || reply->type == REDIS_REPLY_ERROR)
        reply = NULL;
    answer_stats(c, reply);
}

static void get_stats_start(tse_call *c)
{
    tse_broker *b = c->server->broker;
    const char *argv[] = {"EVAL", stream_lengths_script, "1", "tracseq:streams"};

    /* Stream lengths live in Redis: ask a lane, answer from its callback. */
    if (tse_broker_command(b, tse_broker_pick_lane(b), 4, argv, NULL, on_stream_lengths, c) !=
        TSE_OK)
        answer_stats(c, NULL);
}

const tse_method tse_method_get_stats = {
    .path = "/tracseq.events.v1.EventService/GetStats",
    .name = "GetStats",
    .streaming_in = false,
    .backlog = 4,
    .call_size = sizeof(tse_call),
    .start = get_stats_start,
};

/* ===================== ListEventTypes =================================== */

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

/* The response owns nothing but the arrays and the name buffers below. */
typedef struct field_strings {
    char json[64];
    char type[64];
} field_strings;

static void list_types_start(tse_call *c)
{
    Tracseq__Events__V1__ListEventTypesResponse out =
        TRACSEQ__EVENTS__V1__LIST_EVENT_TYPES_RESPONSE__INIT;
    size_t n, total = 0, k = 0;
    const tse_catalog_entry *entries = tse_catalog_entries(&n);

    for (size_t i = 0; i < n; i++)
        total += entries[i].descriptor->n_fields;
    Tracseq__Events__V1__EventTypeInfo *infos = calloc(n, sizeof(*infos));
    Tracseq__Events__V1__EventTypeInfo **info_ptrs = calloc(n, sizeof(*info_ptrs));
    Tracseq__Events__V1__FieldInfo *fields = calloc(total, sizeof(*fields));
    Tracseq__Events__V1__FieldInfo **field_ptrs = calloc(total, sizeof(*field_ptrs));
    field_strings *strs = calloc(total, sizeof(*strs));
    char(*domains)[64] = calloc(n, sizeof(*domains));

    if (!infos || !info_ptrs || !fields || !field_ptrs || !strs || !domains) {
        tse_call_finish_unary(c, NULL, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const tse_catalog_entry *e = &entries[i];
        Tracseq__Events__V1__EventTypeInfo *info = &infos[i];

        tracseq__events__v1__event_type_info__init(info);
        info->event_type = (char *)e->event_type;
        info->message = (char *)e->descriptor->name;
        info->version = (char *)e->version;
        info->description = (char *)e->description;
        info->payload_field = (char *)e->payload_field;
        snprintf(domains[i], sizeof(domains[i]), "%.*s", (int)strcspn(e->event_type, "."),
                 e->event_type);
        info->domain = domains[i];
        info->fields = &field_ptrs[k];
        for (unsigned j = 0; j < e->descriptor->n_fields; j++, k++) {
            const ProtobufCFieldDescriptor *f = &e->descriptor->fields[j];
            tse_field_rule rule = tse_catalog_field_rule(e, f->name);
            Tracseq__Events__V1__FieldInfo *fi = &fields[k];

            tracseq__events__v1__field_info__init(fi);
            fi->name = (char *)f->name;
            json_name(f->name, strs[k].json, sizeof(strs[k].json));
            fi->json_name = strs[k].json;
            field_type(f, strs[k].type, sizeof(strs[k].type));
            fi->type = strs[k].type;
            fi->required = rule == TSE_FIELD_REQUIRED || rule == TSE_FIELD_UUID;
            fi->format = rule == TSE_FIELD_UUID || rule == TSE_FIELD_UUID_LIST ? "uuid" : "";
            fi->number = (int32_t)f->id;
            field_ptrs[k] = fi;
        }
        info->n_fields = e->descriptor->n_fields;
        info_ptrs[i] = info;
    }
    out.n_event_types = n;
    out.event_types = info_ptrs;
    out.generic_type_pattern = TSE_EVENT_TYPE_PATTERN;
    tse_call_finish_unary(c, &out.base, GRPC_STATUS_OK, NULL);
out:
    free(infos);
    free(info_ptrs);
    free(fields);
    free(field_ptrs);
    free(strs);
    free(domains);
}

const tse_method tse_method_list_event_types = {
    .path = "/tracseq.events.v1.EventService/ListEventTypes",
    .name = "ListEventTypes",
    .streaming_in = false,
    .backlog = 2,
    .call_size = sizeof(tse_call),
    .start = list_types_start,
};

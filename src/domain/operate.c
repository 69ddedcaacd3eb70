/*
 * operate.c - checks of the requests that operate on a subscription's state
 * (dead letters, seek, snapshots). See operate.h.
 *
 * Every request of this family has the subscription's name in field 1
 * ("subscription"); the rest is checked per request type. Each refusal
 * names the field the client must fix.
 */
#include <stdio.h>
#include <string.h>

#include "domain/operate.h"
#include "domain/subscription.h"
#include "tracseq/events/v1/service.pb-c.h"

/* ===================== entry ids ======================================== */

/* Up to 20 decimal digits into *out; the end of them, or NULL. */
static const char *parse_u64(const char *p, uint64_t *out)
{
    uint64_t v = 0;
    size_t n = 0;

    for (; *p >= '0' && *p <= '9'; p++, n++) {
        unsigned digit = (unsigned)(*p - '0');
        if (n == 20 || v > (UINT64_MAX - digit) / 10)
            return NULL;
        v = v * 10 + digit;
    }
    if (n == 0)
        return NULL;
    *out = v;
    return p;
}

bool tse_entry_id_parse(const char *id, uint64_t *ms, uint64_t *seq)
{
    uint64_t a, b;
    const char *p;

    if (id == NULL || (p = parse_u64(id, &a)) == NULL || *p != '-' ||
        (p = parse_u64(p + 1, &b)) == NULL || *p != '\0')
        return false;
    if (ms)
        *ms = a;
    if (seq)
        *seq = b;
    return true;
}

/* ===================== the requests ===================================== */

static const ProtobufCMessageDescriptor *const requests[] = {
    &tracseq__events__v1__list_dead_letters_request__descriptor,
    &tracseq__events__v1__get_dead_letter_request__descriptor,
    &tracseq__events__v1__redrive_dead_letters_request__descriptor,
    &tracseq__events__v1__purge_dead_letters_request__descriptor,
    &tracseq__events__v1__seek_request__descriptor,
    &tracseq__events__v1__create_snapshot_request__descriptor,
    &tracseq__events__v1__list_snapshots_request__descriptor,
    &tracseq__events__v1__delete_snapshot_request__descriptor,
};

bool tse_operate_is_request(const ProtobufCMessageDescriptor *desc)
{
    for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++)
        if (requests[i] == desc)
            return true;
    return false;
}

const char *tse_operate_subscription(const ProtobufCMessage *msg)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, "subscription");

    return f ? *(const char *const *)(const void *)((const char *)msg + f->offset) : NULL;
}

static tse_status check_entry_id(const char *id, const char *field, tse_error *err)
{
    if (strnlen(id, TSE_ENTRY_ID_MAX + 1) > TSE_ENTRY_ID_MAX || !tse_entry_id_parse(id, NULL, NULL))
        return tse_error_set(err, TSE_INVALID, field,
                             "not a dead-letter id (a stream entry id such as "
                             "\"1718700000000-0\")");
    return TSE_OK;
}

/* ids or all, exactly one of them, each id an entry id. */
static tse_status check_ids(char *const *ids, size_t n, bool all, size_t max, tse_error *err)
{
    char element[TSE_ERROR_FIELD_MAX];

    if (all && n > 0)
        return tse_error_set(err, TSE_INVALID, "all", "give either ids or all, not both");
    if (!all && n == 0)
        return tse_error_set(err, TSE_INVALID, "ids", "at least one id is required (or all)");
    if (n > max)
        return tse_error_set(err, TSE_INVALID, "ids", "%zu ids; at most %zu per request", n, max);
    for (size_t i = 0; i < n; i++) {
        snprintf(element, sizeof(element), "ids[%zu]", i);
        if (check_entry_id(ids[i], element, err) != TSE_OK)
            return TSE_INVALID;
    }
    return TSE_OK;
}

static tse_status check_list(const Tracseq__Events__V1__ListDeadLettersRequest *r, tse_error *err)
{
    if (r->page_size > TSE_DEAD_LETTER_PAGE_MAX)
        return tse_error_set(err, TSE_INVALID, "page_size", "at most %d", TSE_DEAD_LETTER_PAGE_MAX);
    if (r->page_token[0] != '\0' && !tse_entry_id_parse(r->page_token, NULL, NULL))
        return tse_error_set(err, TSE_INVALID, "page_token",
                             "not a page token of this subscription's dead letters");
    return TSE_OK;
}

static tse_status check_seek(const Tracseq__Events__V1__SeekRequest *r, tse_error *err)
{
    bool snapshot = r->snapshot[0] != '\0';

    switch (r->position) {
    case TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_UNSPECIFIED:
        if (!snapshot)
            return tse_error_set(err, TSE_INVALID, "position",
                                 "a target is required: position EARLIEST, LATEST or TIMESTAMP "
                                 "(with time), or a snapshot");
        if (r->time != NULL)
            return tse_error_set(err, TSE_INVALID, "time", "time goes with position TIMESTAMP");
        return tse_subscription_name_check(r->snapshot, "snapshot", "snapshot", err);
    case TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_LATEST:
    case TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_EARLIEST:
        if (r->time != NULL)
            return tse_error_set(err, TSE_INVALID, "time", "time goes with position TIMESTAMP");
        break;
    case TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_TIMESTAMP:
        if (r->time == NULL)
            return tse_error_set(err, TSE_INVALID, "time", "required with position TIMESTAMP");
        if (r->time->seconds < 0 || r->time->nanos < 0 || r->time->nanos > 999999999 ||
            r->time->seconds > INT64_C(253402300799))
            return tse_error_set(err, TSE_INVALID, "time",
                                 "not a valid time (from 1970 to 9999, nanos below 1e9)");
        break;
    default: return tse_error_set(err, TSE_INVALID, "position", "unknown position %d", r->position);
    }
    if (snapshot)
        return tse_error_set(err, TSE_INVALID, "snapshot", "give either a position or a snapshot");
    return TSE_OK;
}

tse_status tse_operate_check(const ProtobufCMessage *msg, size_t max_ids, tse_error *err)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;

    if (!tse_operate_is_request(d))
        return tse_error_set(err, TSE_INVALID, "request", "not an operation request");
    if (tse_subscription_name_check(tse_operate_subscription(msg), "subscription", "subscription",
                                    err) != TSE_OK)
        return TSE_INVALID;
    if (d == &tracseq__events__v1__list_dead_letters_request__descriptor)
        return check_list((const void *)msg, err);
    if (d == &tracseq__events__v1__get_dead_letter_request__descriptor)
        return check_entry_id(((const Tracseq__Events__V1__GetDeadLetterRequest *)msg)->id, "id",
                              err);
    if (d == &tracseq__events__v1__redrive_dead_letters_request__descriptor) {
        const Tracseq__Events__V1__RedriveDeadLettersRequest *r = (const void *)msg;
        return check_ids(r->ids, r->n_ids, r->all, max_ids, err);
    }
    if (d == &tracseq__events__v1__purge_dead_letters_request__descriptor) {
        const Tracseq__Events__V1__PurgeDeadLettersRequest *r = (const void *)msg;
        return check_ids(r->ids, r->n_ids, r->all, max_ids, err);
    }
    if (d == &tracseq__events__v1__seek_request__descriptor)
        return check_seek((const void *)msg, err);
    if (d == &tracseq__events__v1__create_snapshot_request__descriptor)
        return tse_subscription_name_check(
            ((const Tracseq__Events__V1__CreateSnapshotRequest *)msg)->name, "name", "snapshot",
            err);
    if (d == &tracseq__events__v1__delete_snapshot_request__descriptor)
        return tse_subscription_name_check(
            ((const Tracseq__Events__V1__DeleteSnapshotRequest *)msg)->name, "name", "snapshot",
            err);
    return TSE_OK; /* ListSnapshots: the name alone */
}

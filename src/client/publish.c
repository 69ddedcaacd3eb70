/*
 * publish.c - blocking publish: one Publish call per event (or one
 * PublishBatch call per batch, tse_client_publish_batch), retried with
 * backoff on UNAVAILABLE (or the server's CANCELLED) until the client's
 * timeout, and the blocking helpers of every catalog type.
 *
 * Invariant: every attempt of one publish sends the same bytes, hence the
 * same event id (the SDK's when the caller gave none), so however many
 * attempts reached Redis the event is stored once within the dedup window.
 *
 * A blocking publish never cancels its own call, so CANCELLED comes from
 * the server's side and is retried like UNAVAILABLE: gRPC core answers it
 * to a call that reaches a server whose shutdown began (no handler saw it,
 * grpc/grpc#41785), so every rolling restart failed a few publishes so.
 */
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"
#include "domain/limits.h"

#define EXPORT __attribute__((visibility("default")))

/* How long to wait before the next attempt: the backoff, but never past the
 * deadline; -1 when no attempt fits any more. */
static int next_delay(long long deadline_ms, int backoff_ms)
{
    long long left = deadline_ms - tse_clock_ms();

    if (left <= 0)
        return -1;
    return backoff_ms < left ? backoff_ms : (int)left;
}

/* What an attempt's answer decodes into: one result, or a batch's. */
typedef struct answer {
    tse_client_publish_result *result; /* Publish */
    size_t n;                          /* PublishBatch: the events */
    tse_client_status *statuses;
    tse_client_publish_result *results;
    tse_client_error *errors;
} answer;

/* A PublishBatchResponse into a (every array may be NULL). */
static tse_client_status batch_response(const grpc_slice resp, const answer *a,
                                        tse_client_error *err)
{
    Tracseq__Events__V1__PublishBatchResponse *r =
        tracseq__events__v1__publish_batch_response__unpack(NULL, GRPC_SLICE_LENGTH(resp),
                                                            GRPC_SLICE_START_PTR(resp));
    tse_client_status st = TSE_CLIENT_OK;

    if (r == NULL || r->n_results != a->n) {
        st = tse_client_fail(err, TSE_CLIENT_INTERNAL, -1, NULL,
                             "a PublishBatchResponse that does not answer its request");
        goto out;
    }
    for (size_t i = 0; i < a->n; i++) {
        uint8_t *bytes = malloc(protobuf_c_message_get_packed_size(&r->results[i]->base) + 1);
        tse_client_publish_result res;
        tse_client_error one;
        tse_client_status s1;
        size_t len;

        if (bytes == NULL) {
            st = tse_client_fail(err, TSE_CLIENT_NO_MEMORY, -1, NULL, "out of memory");
            goto out;
        }
        len = protobuf_c_message_pack(&r->results[i]->base, bytes);
        tse_client_error_clear(&one);
        s1 = tse_client_publish_response(bytes, len, &res, &one);
        free(bytes);
        if (a->statuses != NULL)
            a->statuses[i] = s1;
        if (a->results != NULL && s1 == TSE_CLIENT_OK)
            a->results[i] = res;
        if (a->errors != NULL)
            a->errors[i] = one;
    }
out:
    if (r != NULL)
        tracseq__events__v1__publish_batch_response__free_unpacked(r, NULL);
    return st;
}

static tse_client_status publish_attempts(tse_client *c, const char *method, grpc_slice req,
                                          const answer *a, tse_client_error *err)
{
    long long deadline_ms = tse_clock_ms() + c->opt.timeout_ms;
    gpr_timespec deadline = tse_client_deadline(c->opt.timeout_ms);
    int backoff = c->opt.reconnect_initial_ms, attempts = 0;
    tse_client_error last;
    tse_client_status st;

    for (;;) {
        grpc_slice resp = grpc_empty_slice();
        int delay;

        attempts++;
        st = tse_client_unary_raw(c, method, req, deadline, &resp, &last);
        if (st == TSE_CLIENT_OK && a->n == 0)
            st = tse_client_publish_response(GRPC_SLICE_START_PTR(resp), GRPC_SLICE_LENGTH(resp),
                                             a->result, &last);
        else if (st == TSE_CLIENT_OK)
            st = batch_response(resp, a, &last);
        grpc_slice_unref(resp);
        if (st == TSE_CLIENT_OK)
            return TSE_CLIENT_OK;
        /* A deadline met while the service was unreachable is unavailability. */
        if (st == TSE_CLIENT_DEADLINE_EXCEEDED && attempts > 1)
            break;
        if ((st != TSE_CLIENT_UNAVAILABLE && st != TSE_CLIENT_CANCELLED) ||
            (delay = next_delay(deadline_ms, backoff)) < 0) {
            if (err != NULL)
                *err = last;
            return st;
        }
        tse_client_sleep_ms(delay, NULL);
        backoff = tse_client_backoff_next(c, backoff);
    }
    return tse_client_fail(err, TSE_CLIENT_UNAVAILABLE, last.grpc_code, NULL,
                           "the service stayed unavailable for %d ms (%d attempts; last: %s)",
                           c->opt.timeout_ms, attempts, last.message);
}

EXPORT tse_client_status tse_client_publish_event(tse_client *client, const tse_client_event *ev,
                                                  tse_client_publish_result *result,
                                                  tse_client_error *err)
{
    char id[37];
    grpc_slice req;
    tse_client_status st;

    tse_client_error_clear(err);
    if (client == NULL || ev == NULL)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, client ? "event" : "client",
                               "%s is NULL", client ? "event" : "client");
    if (!ev->has_id)
        tse_uuid_seq_next(&client->ids, id);
    req = tse_client_request_slice(client, ev, ev->has_id ? NULL : id);
    st = publish_attempts(client, TSE_CLIENT_METHOD("Publish"), req, &(answer){.result = result},
                          err);
    grpc_slice_unref(req);
    return st;
}

EXPORT tse_client_status tse_client_publish_batch(tse_client *client,
                                                  const tse_client_event *const *events, size_t n,
                                                  tse_client_status *statuses,
                                                  tse_client_publish_result *results,
                                                  tse_client_error *errors, tse_client_error *err)
{
    answer a = {.n = n, .statuses = statuses, .results = results, .errors = errors};
    grpc_slice *parts, req;
    size_t total = 0, at = 0;
    tse_client_status st;

    tse_client_error_clear(err);
    if (client == NULL || events == NULL)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, client ? "events" : "client",
                               "%s is NULL", client ? "events" : "client");
    if (n < 1 || n > TSE_PUBLISH_BATCH_MAX_EVENTS)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "events",
                               "a batch holds 1 to %d events", TSE_PUBLISH_BATCH_MAX_EVENTS);
    if ((parts = calloc(n, sizeof(*parts))) == NULL)
        return tse_client_fail(err, TSE_CLIENT_NO_MEMORY, -1, NULL, "out of memory");
    /* Each event's PublishRequest; concatenated they are the
     * PublishBatchRequest. Ids are made once: every attempt sends them. */
    for (size_t i = 0; i < n; i++) {
        char id[37];
        if (events[i] == NULL) {
            for (size_t j = 0; j < i; j++)
                grpc_slice_unref(parts[j]);
            free(parts);
            return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "events",
                                   "event %zu is NULL", i);
        }
        if (!events[i]->has_id)
            tse_uuid_seq_next(&client->ids, id);
        parts[i] = tse_client_request_slice(client, events[i], events[i]->has_id ? NULL : id);
        total += GRPC_SLICE_LENGTH(parts[i]);
    }
    req = grpc_slice_malloc(total);
    for (size_t i = 0; i < n; i++) {
        memcpy(GRPC_SLICE_START_PTR(req) + at, GRPC_SLICE_START_PTR(parts[i]),
               GRPC_SLICE_LENGTH(parts[i]));
        at += GRPC_SLICE_LENGTH(parts[i]);
        grpc_slice_unref(parts[i]);
    }
    free(parts);
    st = publish_attempts(client, TSE_CLIENT_METHOD("PublishBatch"), req, &a, err);
    grpc_slice_unref(req);
    return st;
}

/* Publishes an event a builder just made (st is the builder's status). */
static tse_client_status publish_built(tse_client *client, tse_client_status st,
                                       tse_client_event *ev, tse_client_publish_result *result,
                                       tse_client_error *err)
{
    if (st == TSE_CLIENT_OK)
        st = tse_client_publish_event(client, ev, result, err);
    tse_client_event_destroy(ev);
    return st;
}

EXPORT tse_client_status tse_client_publish_json(tse_client *client, const char *event_type,
                                                 const char *payload_json,
                                                 const tse_client_publish_opts *opts,
                                                 tse_client_publish_result *result,
                                                 tse_client_error *err)
{
    tse_client_event *ev = NULL;
    tse_client_status st = tse_client_event_from_json(event_type, payload_json, opts, &ev, err);

    return publish_built(client, st, ev, result, err);
}

/* ---- one blocking helper per catalog type ---- */

#define UNPAREN(...) __VA_ARGS__

/*
 * Defines tse_client_publish_<type>(client, <params>, opts, result, err):
 * the builder tse_client_event_<type>(&ev, <args>, opts, err), then
 * tse_client_publish_event. params and args, in parentheses, are the
 * builder's arguments between `out` and `opts`, declared and named.
 */
#define PUBLISH_HELPER(type, params, args)                                                         \
    EXPORT tse_client_status tse_client_publish_##type(                                            \
        tse_client *client, UNPAREN params, const tse_client_publish_opts *opts,                   \
        tse_client_publish_result *result, tse_client_error *err)                                  \
    {                                                                                              \
        tse_client_event *ev = NULL;                                                               \
        tse_client_status st = tse_client_event_##type(&ev, UNPAREN args, opts, err);              \
                                                                                                   \
        return publish_built(client, st, ev, result, err);                                         \
    }

PUBLISH_HELPER(sample_created,
               (const char *sample_id, const char *barcode, const char *sample_type,
                const char *submitter_id, const char *lab_id),
               (sample_id, barcode, sample_type, submitter_id, lab_id))

PUBLISH_HELPER(sample_validated,
               (const char *sample_id, const char *barcode, const char *validator_id,
                const char *validation_status, const char *validation_notes),
               (sample_id, barcode, validator_id, validation_status, validation_notes))

PUBLISH_HELPER(sample_status_changed,
               (const char *sample_id, const char *barcode, const char *old_status,
                const char *new_status, const char *changed_by, const char *reason),
               (sample_id, barcode, old_status, new_status, changed_by, reason))

PUBLISH_HELPER(sample_stored,
               (const char *sample_id, const char *barcode, const char *location_id,
                const char *storage_zone, const char *position, const char *stored_by),
               (sample_id, barcode, location_id, storage_zone, position, stored_by))

PUBLISH_HELPER(sample_assigned_to_sequencing,
               (const char *sample_id, const char *barcode, const char *sequencing_job_id,
                const char *assigned_by),
               (sample_id, barcode, sequencing_job_id, assigned_by))

PUBLISH_HELPER(sample_completed,
               (const char *sample_id, const char *barcode, const char *completion_status,
                const char *results_location, const char *completed_by),
               (sample_id, barcode, completion_status, results_location, completed_by))

PUBLISH_HELPER(temperature_alert,
               (const char *location_id, const char *zone_name, double current_temperature,
                double target_temperature, const char *threshold_type, const char *sensor_id),
               (location_id, zone_name, current_temperature, target_temperature, threshold_type,
                sensor_id))

PUBLISH_HELPER(capacity_warning,
               (const char *location_id, const char *location_name, int32_t current_capacity,
                int32_t max_capacity, double utilization_percent),
               (location_id, location_name, current_capacity, max_capacity, utilization_percent))

PUBLISH_HELPER(sensor_data_received,
               (const char *sensor_id, const char *location_id, const char *sensor_type,
                const tse_client_number *measurements, size_t n_measurements),
               (sensor_id, location_id, sensor_type, measurements, n_measurements))

PUBLISH_HELPER(user_logged_in,
               (const char *user_id, const char *username, const char *session_id,
                const char *ip_address),
               (user_id, username, session_id, ip_address))

PUBLISH_HELPER(user_logged_out,
               (const char *user_id, const char *username, const char *session_id,
                const char *logout_reason),
               (user_id, username, session_id, logout_reason))

PUBLISH_HELPER(login_failed,
               (const char *username, const char *failure_reason, const char *ip_address),
               (username, failure_reason, ip_address))

PUBLISH_HELPER(document_uploaded,
               (const char *document_id, const char *filename, const char *file_type,
                uint64_t file_size, const char *uploaded_by),
               (document_id, filename, file_type, file_size, uploaded_by))

PUBLISH_HELPER(document_processing_completed,
               (const char *document_id, const char *filename, const char *processing_status,
                const char *extracted_data_json, double confidence_score),
               (document_id, filename, processing_status, extracted_data_json, confidence_score))

PUBLISH_HELPER(document_information_extracted,
               (const char *document_id, const char *extraction_type,
                const char *extracted_fields_json, const tse_client_number *confidence_scores,
                size_t n_confidence_scores),
               (document_id, extraction_type, extracted_fields_json, confidence_scores,
                n_confidence_scores))

PUBLISH_HELPER(sequencing_job_created,
               (const char *job_id, const char *job_name, const char *job_type, uint32_t priority,
                const char *const *samples, size_t n_samples, const char *created_by),
               (job_id, job_name, job_type, priority, samples, n_samples, created_by))

PUBLISH_HELPER(sequencing_job_status_changed,
               (const char *job_id, const char *job_name, const char *old_status,
                const char *new_status, double progress_percent),
               (job_id, job_name, old_status, new_status, progress_percent))

PUBLISH_HELPER(sequencing_job_completed,
               (const char *job_id, const char *job_name, const char *completion_status,
                int32_t total_samples, int32_t successful_samples, int32_t failed_samples),
               (job_id, job_name, completion_status, total_samples, successful_samples,
                failed_samples))

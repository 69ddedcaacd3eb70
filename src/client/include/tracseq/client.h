/*
 * tracseq/client.h - the C client SDK of TracSeq Events: publish laboratory
 * events (blocking, or pipelined on one PublishStream), subscribe to them
 * with acks, pull, and manage and inspect the service over gRPC.
 *
 * Everything public starts with tse_client_. The header exposes no gRPC or
 * protobuf-c type; link with `pkg-config --cflags --libs tracseq-client`.
 *
 * Errors: every fallible function returns a tse_client_status; when it is
 * not TSE_CLIENT_OK and the caller passed a tse_client_error, that holds the
 * same status, the gRPC code the server answered (-1 when the failure
 * happened before or without a call), the offending field when the SDK or
 * the server names one, and one bounded, NUL-terminated message (for server
 * errors: the server's details, which name the bad field). Every error
 * argument may be NULL. On failure, out-parameters are left untouched
 * unless said otherwise.
 *
 * Ownership: strings passed in are borrowed for the duration of the call
 * (the SDK copies what it keeps). Strings the SDK returns through `char **`
 * are the caller's, released with tse_client_free(). Views handed to
 * callbacks are valid only until the callback returns.
 *
 * Thread-safety: a tse_client may be used from any number of threads at
 * once (every blocking call has its own completion queue). A publisher's
 * publish and flush may be called from several threads; its result
 * callback runs on the client's publisher thread (one per client, shared
 * by its publishers and its asynchronous calls' callbacks), in publish
 * order. A subscriber's callback runs on the subscriber's thread (or the thread
 * calling tse_client_subscriber_run); tse_client_subscriber_stop may be
 * called from any thread, a signal handler included. Callbacks must not
 * block for long: they hold up every later result or delivery.
 *
 * Lifetime: destroy every publisher and subscriber before their client.
 * Every destroy accepts NULL.
 */
#ifndef TRACSEQ_CLIENT_H
#define TRACSEQ_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(TSE_CLIENT_BUILDING) && defined(__GNUC__)
#define TSE_CLIENT_API __attribute__((visibility("default")))
#else
#define TSE_CLIENT_API
#endif

/* ============================== errors ===================================== */

typedef enum tse_client_status {
    TSE_CLIENT_OK = 0,
    TSE_CLIENT_INVALID_ARGUMENT,    /* bad input; the error names the field */
    TSE_CLIENT_NOT_FOUND,           /* unknown subscription */
    TSE_CLIENT_ALREADY_EXISTS,      /* subscription exists with other settings */
    TSE_CLIENT_FAILED_PRECONDITION, /* not allowed in this state */
    TSE_CLIENT_RESOURCE_EXHAUSTED,  /* over a size or count limit; window full */
    TSE_CLIENT_UNAVAILABLE,         /* service or Redis unreachable: retryable */
    TSE_CLIENT_DEADLINE_EXCEEDED,   /* the call timeout passed */
    TSE_CLIENT_CANCELLED,           /* stopped or destroyed before an answer */
    TSE_CLIENT_UNAUTHENTICATED,     /* missing or bad token */
    TSE_CLIENT_PERMISSION_DENIED,
    TSE_CLIENT_UNIMPLEMENTED, /* the server does not know the call */
    TSE_CLIENT_INTERNAL,      /* a bug, or an answer that could not be decoded */
    TSE_CLIENT_NO_MEMORY
} tse_client_status;

#define TSE_CLIENT_ERROR_FIELD_MAX   128
#define TSE_CLIENT_ERROR_MESSAGE_MAX 512

typedef struct tse_client_error {
    tse_client_status status;
    int grpc_code; /* the server's gRPC status code; -1 when no call answered */
    char field[TSE_CLIENT_ERROR_FIELD_MAX];     /* e.g. "payload.barcode"; may be "" */
    char message[TSE_CLIENT_ERROR_MESSAGE_MAX]; /* one sentence */
} tse_client_error;

/* A stable upper-case name, e.g. "UNAVAILABLE"; "UNKNOWN" for other values. */
TSE_CLIENT_API const char *tse_client_status_name(tse_client_status status);

/*
 * What is wrong, without the field it is wrong with: when err->message opens
 * with err->field and ": " (as the service writes a refusal, "payload.barcode:
 * barcode is required"), the rest ("barcode is required"); else the whole
 * message. Points into err->message; "" when err is NULL.
 */
TSE_CLIENT_API const char *tse_client_error_problem(const tse_client_error *err);

/* The library version, e.g. "0.1.0". */
TSE_CLIENT_API const char *tse_client_version(void);

/* Releases a string (or any memory) the SDK returned. NULL is a no-op. */
TSE_CLIENT_API void tse_client_free(void *p);

/* ============================== connecting ================================= */

/*
 * Connection options. Zero (or NULL) means the default for every field, so
 * `tse_client_options o = {0};` is valid; tse_client_options_init does the
 * same.
 */
typedef struct tse_client_options {
    /* host:port; default $TRACSEQ_EVENTS_SERVER, else "localhost:50051". */
    const char *target;
    /* Stamped on every event this client publishes (1-64 characters);
     * default $TRACSEQ_SOURCE_SERVICE, else "tracseq-client". */
    const char *source_service;
    /* Deadline of every blocking call, retries included; default 10000. */
    int timeout_ms;
    /* TLS: true uses the system roots unless tls_root_certs_pem is set;
     * a non-NULL tls_root_certs_pem (PEM text, not a path: the CA that signs
     * the service's certificate) turns TLS on by itself. Copied by
     * connect. */
    bool tls;
    const char *tls_root_certs_pem;
    /* Sent as "authorization: Bearer <token>" on every call; NULL: none. */
    const char *token;
    /* Backoff between reconnection attempts (the channel's, the stream
     * reopen of publishers and subscribers, and publish retries): starts at
     * the initial delay and doubles up to the maximum. Defaults 100, 5000. */
    int reconnect_initial_ms;
    int reconnect_max_ms;
    /* Connections for calls (blocking and asynchronous; each publisher has
     * its own), 1..64, used in turn, a ready one first; default 1. More
     * than one for a gateway whose calls wait long (a server allows 1,000
     * concurrent calls per connection). */
    int channels;
    /* Mutual TLS: the client's certificate chain and private key, PEM text
     * (not paths), both or neither; either turns TLS on. Copied by
     * connect. */
    const char *tls_cert_pem;
    const char *tls_key_pem;
    /* The name the service's certificate must carry when it is not the
     * target's host (a target by IP address, a test CA): gRPC's
     * ssl_target_name_override. NULL: the target's host. */
    const char *tls_server_name;
} tse_client_options;

/* Fills o with the defaults (all zero). */
TSE_CLIENT_API void tse_client_options_init(tse_client_options *o);

typedef struct tse_client tse_client;

/*
 * Creates a client. The connection is made lazily (on the first call);
 * connect fails only on bad options (INVALID_ARGUMENT, naming the option)
 * or out of memory. options may be NULL (all defaults). Release with
 * tse_client_destroy.
 */
TSE_CLIENT_API tse_client_status tse_client_connect(const tse_client_options *options,
                                                    tse_client **out, tse_client_error *err);

/* Closes the connection and frees the client. Destroy its publishers and
 * subscribers first. NULL is a no-op. */
TSE_CLIENT_API void tse_client_destroy(tse_client *client);

/* The resolved target (after defaults), owned by the client. */
TSE_CLIENT_API const char *tse_client_target(const tse_client *client);

/* ============================== events ===================================== */

typedef struct tse_client_metadata {
    const char *key;
    const char *value;
} tse_client_metadata;

/* Envelope fields of a published event beyond its type and payload. NULL
 * or zero means "not set" for every field; opts itself may be NULL. */
typedef struct tse_client_publish_opts {
    const char *subject;        /* e.g. "sample-<id>" */
    int priority;               /* 1 (highest) .. 5; 0 = default 3 */
    const char *correlation_id; /* UUID tying one workflow's events */
    const char *causation_id;   /* id of the event that caused this one */
    /* The event's id (a UUID). When NULL the SDK makes one, so a retried
     * publish is deduplicated by the server within its dedup window. */
    const char *event_id;
    const tse_client_metadata *metadata;
    size_t n_metadata;
    /* W3C Trace Context of the publishing span (docs/tracing.md): the
     * `traceparent` header value, "00-<32 hex trace-id>-<16 hex
     * parent-id>-<2 hex flags>", and its optional `tracestate`; subscribers
     * get both back (tse_client_event_view). Checked here and by the
     * server: INVALID_ARGUMENT naming "traceparent" or "tracestate". */
    const char *traceparent;
    const char *tracestate;
} tse_client_publish_opts;

/*
 * A built event: its type, payload and envelope options, encoded once.
 * Both the blocking and the pipelined publish accept it, and may publish it
 * any number of times (each publish without opts.event_id gets a new id).
 * Immutable once built: safe to share between threads. Release with
 * tse_client_event_destroy.
 */
typedef struct tse_client_event tse_client_event;

/*
 * Builds an event of any type from a JSON object payload. A catalog type's
 * payload is encoded as its typed message (proto3 JSON mapping: snake_case
 * or lowerCamel names; timestamps as RFC 3339); any other well-formed type
 * is carried as generic data. Fails with INVALID_ARGUMENT naming the field:
 * "event_type", "payload" (not JSON, or not an object), "payload.<path>"
 * (e.g. "payload.created_at"), or one of the opts fields.
 */
TSE_CLIENT_API tse_client_status tse_client_event_from_json(const char *event_type,
                                                            const char *payload_json,
                                                            const tse_client_publish_opts *opts,
                                                            tse_client_event **out,
                                                            tse_client_error *err);

/*
 * An event from an encoded tracseq.events.v1.Event (e.g. one a gateway
 * built from its own input). It is published exactly as given: the SDK adds
 * neither an id nor its source_service, so the server stamps what is
 * missing and validates the rest, as for any other publisher. The bytes
 * are copied. INVALID_ARGUMENT ("envelope") when they are not an Event.
 */
TSE_CLIENT_API tse_client_status tse_client_event_from_envelope(const void *envelope, size_t len,
                                                                tse_client_event **out,
                                                                tse_client_error *err);

/* The event's type, e.g. "sample.created". */
TSE_CLIENT_API const char *tse_client_event_type(const tse_client_event *ev);

/* Bytes of the encoded envelope (without the id and source the SDK adds). */
TSE_CLIENT_API size_t tse_client_event_size(const tse_client_event *ev);

TSE_CLIENT_API void tse_client_event_destroy(tse_client_event *ev);

/* A name and a number: the map<string,double> fields. */
typedef struct tse_client_number {
    const char *name;
    double value;
} tse_client_number;

/*
 * One builder per catalog type, with the payload's fields as arguments.
 * Optional fields (marked "?" in the catalog) may be NULL. Timestamps
 * (created_at, alert_at, ...) are left for the server to stamp with the
 * publish time; publish through tse_client_event_from_json to set them.
 * map<string,Value> fields take a JSON object text (NULL: empty).
 * Required fields are checked by the server, which names the missing one.
 */
/* clang-format off */
TSE_CLIENT_API tse_client_status tse_client_event_sample_created(tse_client_event **out,
    const char *sample_id, const char *barcode, const char *sample_type, const char *submitter_id,
    const char *lab_id, const tse_client_publish_opts *opts, tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_event_sample_validated(tse_client_event **out,
    const char *sample_id, const char *barcode, const char *validator_id,
    const char *validation_status, const char *validation_notes,
    const tse_client_publish_opts *opts, tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_event_sample_status_changed(tse_client_event **out,
    const char *sample_id, const char *barcode, const char *old_status, const char *new_status,
    const char *changed_by, const char *reason, const tse_client_publish_opts *opts,
    tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_event_sample_stored(tse_client_event **out,
    const char *sample_id, const char *barcode, const char *location_id, const char *storage_zone,
    const char *position, const char *stored_by, const tse_client_publish_opts *opts,
    tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_event_sample_assigned_to_sequencing(
    tse_client_event **out, const char *sample_id, const char *barcode,
    const char *sequencing_job_id, const char *assigned_by, const tse_client_publish_opts *opts,
    tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_event_sample_completed(tse_client_event **out,
    const char *sample_id, const char *barcode, const char *completion_status,
    const char *results_location, const char *completed_by, const tse_client_publish_opts *opts,
    tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_event_temperature_alert(tse_client_event **out,
    const char *location_id, const char *zone_name, double current_temperature,
    double target_temperature, const char *threshold_type, const char *sensor_id,
    const tse_client_publish_opts *opts, tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_event_capacity_warning(tse_client_event **out,
    const char *location_id, const char *location_name, int32_t current_capacity,
    int32_t max_capacity, double utilization_percent, const tse_client_publish_opts *opts,
    tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_event_sensor_data_received(tse_client_event **out,
    const char *sensor_id, const char *location_id, const char *sensor_type,
    const tse_client_number *measurements, size_t n_measurements,
    const tse_client_publish_opts *opts, tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_event_user_logged_in(tse_client_event **out,
    const char *user_id, const char *username, const char *session_id, const char *ip_address,
    const tse_client_publish_opts *opts, tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_event_user_logged_out(tse_client_event **out,
    const char *user_id, const char *username, const char *session_id, const char *logout_reason,
    const tse_client_publish_opts *opts, tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_event_login_failed(tse_client_event **out,
    const char *username, const char *failure_reason, const char *ip_address,
    const tse_client_publish_opts *opts, tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_event_document_uploaded(tse_client_event **out,
    const char *document_id, const char *filename, const char *file_type, uint64_t file_size,
    const char *uploaded_by, const tse_client_publish_opts *opts, tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_event_document_processing_completed(
    tse_client_event **out, const char *document_id, const char *filename,
    const char *processing_status, const char *extracted_data_json, double confidence_score,
    const tse_client_publish_opts *opts, tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_event_document_information_extracted(
    tse_client_event **out, const char *document_id, const char *extraction_type,
    const char *extracted_fields_json, const tse_client_number *confidence_scores,
    size_t n_confidence_scores, const tse_client_publish_opts *opts, tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_event_sequencing_job_created(tse_client_event **out,
    const char *job_id, const char *job_name, const char *job_type, uint32_t priority,
    const char *const *samples, size_t n_samples, const char *created_by,
    const tse_client_publish_opts *opts, tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_event_sequencing_job_status_changed(
    tse_client_event **out, const char *job_id, const char *job_name, const char *old_status,
    const char *new_status, double progress_percent, const tse_client_publish_opts *opts,
    tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_event_sequencing_job_completed(tse_client_event **out,
    const char *job_id, const char *job_name, const char *completion_status, int32_t total_samples,
    int32_t successful_samples, int32_t failed_samples, const tse_client_publish_opts *opts,
    tse_client_error *err);
/* clang-format on */

/* ============================== blocking publish =========================== */

typedef struct tse_client_publish_result {
    char event_id[40];            /* the event's id (the SDK's unless opts gave one) */
    char stream_id[48];           /* the Redis stream entry id, e.g. "1718700000000-0" */
    bool duplicate;               /* already published within the dedup window */
    int64_t published_at_seconds; /* the envelope's timestamp (Unix time) */
    int32_t published_at_nanos;
    /* false when a lenient server stored a catalog-type payload that did
     * not fit its schema as generic data */
    bool schema_valid;
} tse_client_publish_result;

/*
 * Publishes one event and waits until it is durably in Redis. On
 * UNAVAILABLE (service unreachable or Redis down), or CANCELLED by the
 * server (a call reaching a service that is stopping), the SDK retries with
 * backoff until the client's timeout; every attempt carries the same event
 * id, so the server stores the event once. Returns UNAVAILABLE when the
 * service stayed unreachable for the whole timeout. result may be NULL.
 */
TSE_CLIENT_API tse_client_status tse_client_publish_event(tse_client *client,
                                                          const tse_client_event *ev,
                                                          tse_client_publish_result *result,
                                                          tse_client_error *err);

/*
 * Publishes events[0..n) (1..1000) in one PublishBatch call and waits until
 * every stored one is durably in Redis. The call is retried as
 * tse_client_publish_event's is, with the same ids (the SDK's where an event
 * has none), so each event is stored once. OK means the batch was
 * answered: then statuses[i] says what became of event i (a bad event
 * fails alone), results[i] holds its result when OK and errors[i] its error
 * otherwise; any of the three arrays (n entries each) may be NULL. Any
 * other status is the call's, and nothing is known of the events.
 */
TSE_CLIENT_API tse_client_status tse_client_publish_batch(tse_client *client,
                                                          const tse_client_event *const *events,
                                                          size_t n, tse_client_status *statuses,
                                                          tse_client_publish_result *results,
                                                          tse_client_error *errors,
                                                          tse_client_error *err);

/* tse_client_event_from_json + tse_client_publish_event. */
TSE_CLIENT_API tse_client_status tse_client_publish_json(tse_client *client, const char *event_type,
                                                         const char *payload_json,
                                                         const tse_client_publish_opts *opts,
                                                         tse_client_publish_result *result,
                                                         tse_client_error *err);

/* One blocking helper per catalog type: the builder of the same name, then
 * tse_client_publish_event. */
/* clang-format off */
TSE_CLIENT_API tse_client_status tse_client_publish_sample_created(tse_client *client,
    const char *sample_id, const char *barcode, const char *sample_type, const char *submitter_id,
    const char *lab_id, const tse_client_publish_opts *opts, tse_client_publish_result *result,
    tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_publish_sample_validated(tse_client *client,
    const char *sample_id, const char *barcode, const char *validator_id,
    const char *validation_status, const char *validation_notes,
    const tse_client_publish_opts *opts, tse_client_publish_result *result, tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_publish_sample_status_changed(tse_client *client,
    const char *sample_id, const char *barcode, const char *old_status, const char *new_status,
    const char *changed_by, const char *reason, const tse_client_publish_opts *opts,
    tse_client_publish_result *result, tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_publish_sample_stored(tse_client *client,
    const char *sample_id, const char *barcode, const char *location_id, const char *storage_zone,
    const char *position, const char *stored_by, const tse_client_publish_opts *opts,
    tse_client_publish_result *result, tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_publish_sample_assigned_to_sequencing(
    tse_client *client, const char *sample_id, const char *barcode, const char *sequencing_job_id,
    const char *assigned_by, const tse_client_publish_opts *opts, tse_client_publish_result *result,
    tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_publish_sample_completed(tse_client *client,
    const char *sample_id, const char *barcode, const char *completion_status,
    const char *results_location, const char *completed_by, const tse_client_publish_opts *opts,
    tse_client_publish_result *result, tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_publish_temperature_alert(tse_client *client,
    const char *location_id, const char *zone_name, double current_temperature,
    double target_temperature, const char *threshold_type, const char *sensor_id,
    const tse_client_publish_opts *opts, tse_client_publish_result *result, tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_publish_capacity_warning(tse_client *client,
    const char *location_id, const char *location_name, int32_t current_capacity,
    int32_t max_capacity, double utilization_percent, const tse_client_publish_opts *opts,
    tse_client_publish_result *result, tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_publish_sensor_data_received(tse_client *client,
    const char *sensor_id, const char *location_id, const char *sensor_type,
    const tse_client_number *measurements, size_t n_measurements,
    const tse_client_publish_opts *opts, tse_client_publish_result *result, tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_publish_user_logged_in(tse_client *client,
    const char *user_id, const char *username, const char *session_id, const char *ip_address,
    const tse_client_publish_opts *opts, tse_client_publish_result *result, tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_publish_user_logged_out(tse_client *client,
    const char *user_id, const char *username, const char *session_id, const char *logout_reason,
    const tse_client_publish_opts *opts, tse_client_publish_result *result, tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_publish_login_failed(tse_client *client,
    const char *username, const char *failure_reason, const char *ip_address,
    const tse_client_publish_opts *opts, tse_client_publish_result *result, tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_publish_document_uploaded(tse_client *client,
    const char *document_id, const char *filename, const char *file_type, uint64_t file_size,
    const char *uploaded_by, const tse_client_publish_opts *opts, tse_client_publish_result *result,
    tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_publish_document_processing_completed(
    tse_client *client, const char *document_id, const char *filename,
    const char *processing_status, const char *extracted_data_json, double confidence_score,
    const tse_client_publish_opts *opts, tse_client_publish_result *result, tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_publish_document_information_extracted(
    tse_client *client, const char *document_id, const char *extraction_type,
    const char *extracted_fields_json, const tse_client_number *confidence_scores,
    size_t n_confidence_scores, const tse_client_publish_opts *opts,
    tse_client_publish_result *result, tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_publish_sequencing_job_created(tse_client *client,
    const char *job_id, const char *job_name, const char *job_type, uint32_t priority,
    const char *const *samples, size_t n_samples, const char *created_by,
    const tse_client_publish_opts *opts, tse_client_publish_result *result, tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_publish_sequencing_job_status_changed(
    tse_client *client, const char *job_id, const char *job_name, const char *old_status,
    const char *new_status, double progress_percent, const tse_client_publish_opts *opts,
    tse_client_publish_result *result, tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_publish_sequencing_job_completed(tse_client *client,
    const char *job_id, const char *job_name, const char *completion_status, int32_t total_samples,
    int32_t successful_samples, int32_t failed_samples, const tse_client_publish_opts *opts,
    tse_client_publish_result *result, tse_client_error *err);
/* clang-format on */

/* ============================== pipelined publish ========================== */

/*
 * A publisher pipelines events on one PublishBatchStream call, batching
 * them by itself (batch_size, linger_ms below): publish returns
 * as soon as the event is queued, and the result arrives later through the
 * callback, on the client's publisher thread, strictly in publish order.
 * Every publisher has its own connection; all publishers of one client
 * share that one thread (a slow callback delays the others).
 *
 * The window bounds events published but not yet answered. When it is
 * full, publish blocks until a quarter of the window has been answered (so
 * queued events go out in batches), at most the client's timeout, then
 * returns DEADLINE_EXCEEDED (UNAVAILABLE while the stream is down). Called
 * from a publisher callback, publish never blocks: a full window returns
 * RESOURCE_EXHAUSTED there. Do not destroy a publisher from a callback.
 *
 * When the stream breaks (UNAVAILABLE, a reset, a server restart) the
 * publisher reopens it with backoff and resends every unanswered event.
 * Each carries its client-made id, so the server stores it once (within its
 * dedup window; the result then has duplicate set). Unanswered events are
 * retried until answered or the publisher is destroyed. A per-event error
 * (an invalid event, Redis unavailable for that event) is that event's
 * result; the events after it go on.
 */
typedef struct tse_client_publisher tse_client_publisher;

/* What the callback receives for each published event; valid only during
 * the callback. */
typedef struct tse_client_publish_outcome {
    void *user_data;                         /* as passed to publish */
    tse_client_status status;                /* OK, or why this event failed */
    const tse_client_publish_result *result; /* when OK; NULL otherwise */
    const tse_client_error *error;           /* when not OK; NULL otherwise */
} tse_client_publish_outcome;

typedef void (*tse_client_publish_cb)(void *cb_arg, const tse_client_publish_outcome *outcome);

typedef struct tse_client_publisher_options {
    /* Unanswered events, 1..4000; default 1024. */
    int window;
    /* true: send events without a client id, so the server assigns one.
     * Faster (the server skips its dedup check) but a resend after a broken
     * stream may store an event twice. Default false. */
    bool server_assigned_ids;
    /* true: when the stream breaks, every unanswered event fails with the
     * stream's status (UNAVAILABLE, DEADLINE_EXCEEDED, ...; it may or may
     * not have been stored) instead of being resent, and the next publish
     * opens a new stream at once. For callers that answer someone else
     * now rather than retry: a gateway. Default false. */
    bool fail_on_break;
    /* > 0: when the oldest unanswered event waited this long, the stream
     * is ended with DEADLINE_EXCEEDED (then resent, or failed with
     * fail_on_break). 0: no bound. */
    int answer_timeout_ms;
    /* Events per message (PublishBatchStream), 1..1000; default 100. A full
     * batch is sent at once; a partial one as soon as the stream is not
     * writing (at once when idle, so a lone event waits for nothing; under
     * load it carries what gathered while the previous message was
     * written). 1: PublishStream, one event per message (for services
     * older than PublishBatchStream). Like Kafka's batch.size. */
    int batch_size;
    /* 0..1000 ms, default 0: how long a partial batch may wait to fill
     * while earlier messages are unanswered (never when nothing is in
     * flight). Trades latency for larger batches, like Kafka's linger.ms. */
    int linger_ms;
} tse_client_publisher_options;

/*
 * Creates a publisher on client and opens its stream. cb may be NULL (results
 * are then only counted by flush). options may be NULL. Release with
 * tse_client_publisher_destroy.
 */
TSE_CLIENT_API tse_client_status tse_client_publisher_create(
    tse_client *client, const tse_client_publisher_options *options, tse_client_publish_cb cb,
    void *cb_arg, tse_client_publisher **out, tse_client_error *err);

/*
 * Queues ev (borrowed: it may be destroyed once this returns); user_data is
 * handed back in the outcome. On success the callback will be called
 * exactly once for this event; on failure it will not.
 */
TSE_CLIENT_API tse_client_status tse_client_publisher_publish(tse_client_publisher *pub,
                                                              const tse_client_event *ev,
                                                              void *user_data,
                                                              tse_client_error *err);

/*
 * Queues evs[0..n-1] in order, as n calls of tse_client_publisher_publish
 * would, handed to the stream together: they go out in as few messages as
 * batch_size allows, where events published one by one on an idle stream
 * start with a message of one (publish sends a lone event at once). For a
 * caller holding a burst, such as a REST batch. user_data[i] (user_data
 * may be NULL) is handed back with event i. The events are borrowed.
 * *queued (may be NULL) says how many were queued, from the first: those
 * get their callback exactly once; the rest (from *queued on, after a
 * failure such as a closing publisher or a window full for the client's
 * timeout) never do. A NULL event fails the call before any is queued.
 */
TSE_CLIENT_API tse_client_status tse_client_publisher_publish_many(
    tse_client_publisher *pub, const tse_client_event *const *evs, void *const *user_data, size_t n,
    size_t *queued, tse_client_error *err);

/* Waits until every event published so far has had its callback; returns
 * DEADLINE_EXCEEDED after timeout_ms (< 0: wait for ever). */
TSE_CLIENT_API tse_client_status tse_client_publisher_flush(tse_client_publisher *pub,
                                                            int timeout_ms, tse_client_error *err);

/*
 * Ends the publisher's work without freeing it (e.g. a server that stops
 * while its threads may still publish): publish fails with CANCELLED from
 * now on, the stream is cancelled, and every event still unanswered gets
 * its callback with CANCELLED (it may or may not have been stored) before
 * this returns. Any thread but the publisher thread. NULL is a no-op.
 */
TSE_CLIENT_API void tse_client_publisher_cancel(tse_client_publisher *pub);

/*
 * Stops the publisher without waiting: events still unanswered get their
 * callback with CANCELLED (they may or may not have been stored). Call
 * flush first to wait for them. NULL is a no-op.
 */
TSE_CLIENT_API void tse_client_publisher_destroy(tse_client_publisher *pub);

/* ============================== receiving ================================== */

/* One delivered event, decoded. Strings are never NULL ("" when unset). */
typedef struct tse_client_event_view {
    const char *id;
    const char *event_type;
    const char *source_service;
    const char *version;
    const char *subject;
    const char *correlation_id;
    const char *causation_id;
    int priority; /* 1..5 (the server stores 3 for "default") */
    int64_t timestamp_seconds;
    int32_t timestamp_nanos;
    const tse_client_metadata *metadata;
    size_t n_metadata;
    /* The payload message (typed, or the generic data) as proto3 JSON text
     * with the .proto field names, e.g. {"sample_id":"...","barcode":"..."}. */
    const char *payload_json;
    /* The raw encoded tracseq.events.v1.Event. */
    const void *envelope;
    size_t envelope_len;
    /* Delivery: */
    const char *ack_id;
    uint32_t delivery_attempt; /* 1 on first delivery */
    const char *subscription;
    const char *stream_id;
    /* W3C Trace Context the publisher gave ("" when none): continue its
     * trace with a span whose parent is traceparent's parent-id. */
    const char *traceparent;
    const char *tracestate;
} tse_client_event_view;

/* The whole envelope (raw Event bytes, e.g. view->envelope) as proto3 JSON
 * text; NULL when undecodable. Caller frees with tse_client_free. */
TSE_CLIENT_API char *tse_client_envelope_json(const void *envelope, size_t len);

/* ============================== subscriptions ============================== */

typedef enum tse_client_start {
    TSE_CLIENT_START_LATEST = 0, /* only events published after creation */
    TSE_CLIENT_START_EARLIEST,   /* every retained event */
    TSE_CLIENT_START_TIMESTAMP   /* events published at or after start_time */
} tse_client_start;

/* A durable subscription's settings. Zero means the default throughout. */
typedef struct tse_client_subscription_spec {
    const char *name;               /* [A-Za-z0-9_.-]{1,64}; required */
    const char *const *event_types; /* patterns: "*", "sample.*", exact types */
    size_t n_event_types;           /* at least one */
    tse_client_start start;
    const char *start_time;    /* RFC 3339, with TSE_CLIENT_START_TIMESTAMP */
    int ack_deadline_ms;       /* default 30000 */
    int max_delivery_attempts; /* default 5; < 0: unlimited */
    int max_in_flight;         /* default 100 */
    bool auto_ack;             /* server acks on send: at-most-once */
    /* Retry policy: a nacked or expired delivery waits min_backoff_ms,
     * doubled per attempt, at most max_backoff_ms (0 with min set:
     * 600000), before it comes again. 0: no backoff. At most 600000. */
    int min_backoff_ms;
    int max_backoff_ms;
    /* Dead-letter target: events given up on are published again as events
     * of this type (not a catalog type) instead of going to the
     * subscription's dead-letter store. NULL or "": the store. */
    const char *dead_letter_type;
} tse_client_subscription_spec;

/*
 * Creates a subscription (accepted when one of that name exists with the
 * same settings; ALREADY_EXISTS otherwise). The answers below are the
 * server's messages as proto3 JSON text (.proto field names, defaults
 * included); json_out may be NULL, else the caller frees *json_out with
 * tse_client_free.
 */
TSE_CLIENT_API tse_client_status
tse_client_subscription_create(tse_client *client, const tse_client_subscription_spec *spec,
                               char **json_out, tse_client_error *err);
/* One subscription with its statistics; NOT_FOUND when unknown. */
TSE_CLIENT_API tse_client_status tse_client_subscription_get(tse_client *client, const char *name,
                                                             char **json_out,
                                                             tse_client_error *err);
/* {"subscriptions":[...]}. */
TSE_CLIENT_API tse_client_status tse_client_subscription_list(tse_client *client, char **json_out,
                                                              tse_client_error *err);
/* Deletes it and ends its subscribers; NOT_FOUND when unknown. */
TSE_CLIENT_API tse_client_status tse_client_subscription_delete(tse_client *client,
                                                                const char *name,
                                                                tse_client_error *err);

/*
 * Any unary EventService method by name (e.g. "ListDeadLetters", "Seek",
 * "CreateSnapshot"), its request given as proto3 JSON text (NULL or "":
 * an empty request) and its answer returned as JSON in *json_out (may be
 * NULL; caller frees with tse_client_free). A request that is not valid
 * JSON or does not fit the method's request is INVALID_ARGUMENT naming
 * the field; an unknown or streaming method is INVALID_ARGUMENT "method".
 */
TSE_CLIENT_API tse_client_status tse_client_call_json(tse_client *client, const char *method,
                                                      const char *request_json, char **json_out,
                                                      tse_client_error *err);

/* ============================== subscriber ================================= */

typedef enum tse_client_ack_mode {
    /* The SDK acks each delivery when the callback returns, unless the
     * callback acked or nacked it itself: at-least-once. */
    TSE_CLIENT_ACK_AUTO = 0,
    /* The application acks (or nacks); an unacked delivery comes back after
     * the ack deadline with delivery_attempt + 1. */
    TSE_CLIENT_ACK_MANUAL,
    /* The server acks each delivery as it sends it: at-most-once. Needs a
     * subscription created with auto_ack. */
    TSE_CLIENT_ACK_NONE
} tse_client_ack_mode;

/* The handle of the delivery being handled, valid during the callback. */
typedef struct tse_client_delivery tse_client_delivery;

typedef void (*tse_client_delivery_cb)(void *cb_arg, const tse_client_event_view *event,
                                       tse_client_delivery *delivery);

typedef struct tse_client_subscriber_options {
    /* The subscription to receive from. Required. */
    const char *subscription;
    /* When non-NULL: create the subscription with these settings if it is
     * missing (its name is `subscription`; spec->name is ignored). */
    const tse_client_subscription_spec *create;
    tse_client_ack_mode ack_mode;
    /* This subscriber's consumer name; NULL: the server makes one. */
    const char *consumer_name;
    /* Batched delivery: the most deliveries the server may pack into one
     * stream message, 1..1000; 0: the default, 100. 1 turns batching off
     * (one delivery per message). The server packs only what is ready at
     * once (a backlog), never waiting for more, and the callback sees one
     * delivery at a time either way. A server older than batched delivery
     * ignores it and sends one per message. */
    int max_deliveries_per_message;
} tse_client_subscriber_options;

typedef struct tse_client_subscriber tse_client_subscriber;

/*
 * Creates a subscriber and checks its subscription synchronously: it is
 * created first when options->create is set, else looked up, so a bad spec
 * (INVALID_ARGUMENT), a conflict (ALREADY_EXISTS) or an unknown name
 * (NOT_FOUND) is reported here. Once this returned OK every event published
 * to a matching type is delivered, even before run/start. Delivery starts
 * with tse_client_subscriber_run or _start. Release with
 * tse_client_subscriber_destroy.
 *
 * Delivery is at-least-once: a delivery not acked by its deadline, or not
 * acked when the stream broke, comes back (delivery_attempt counts). After
 * UNAVAILABLE or a broken stream the subscriber reconnects with the
 * client's backoff and goes on; NOT_FOUND (subscription deleted),
 * PERMISSION_DENIED, UNAUTHENTICATED and INVALID_ARGUMENT end it.
 */
TSE_CLIENT_API tse_client_status tse_client_subscriber_create(
    tse_client *client, const tse_client_subscriber_options *options, tse_client_delivery_cb cb,
    void *cb_arg, tse_client_subscriber **out, tse_client_error *err);

/*
 * Receives on the calling thread until stopped (returns OK) or until an
 * error that ends the subscriber (returns it). Call run or start once.
 */
TSE_CLIENT_API tse_client_status tse_client_subscriber_run(tse_client_subscriber *sub,
                                                           tse_client_error *err);

/* Receives on a new thread; the final status is kept for _wait. */
TSE_CLIENT_API tse_client_status tse_client_subscriber_start(tse_client_subscriber *sub,
                                                             tse_client_error *err);

/*
 * Asks the subscriber to stop: it cancels its stream within about 100 ms
 * and run returns. Async-signal-safe (it only sets a flag); callable from
 * any thread and from the callback.
 */
TSE_CLIENT_API void tse_client_subscriber_stop(tse_client_subscriber *sub);

/* After start: waits for the subscriber's thread to end (stop, or an error
 * that ended it) and returns its final status. */
TSE_CLIENT_API tse_client_status tse_client_subscriber_wait(tse_client_subscriber *sub,
                                                            tse_client_error *err);

/* Deliveries handed to the callback so far (any thread). */
TSE_CLIENT_API uint64_t tse_client_subscriber_delivered(const tse_client_subscriber *sub);

/* Stops, waits and frees. NULL is a no-op. */
TSE_CLIENT_API void tse_client_subscriber_destroy(tse_client_subscriber *sub);

/*
 * Ack, nack (redeliver after delay_ms) or extend (new deadline from now) the
 * delivery being handled. At most one of ack / nack counts; a later one is
 * INVALID_ARGUMENT. They are queued on the stream and sent in batches;
 * RESOURCE_EXHAUSTED never happens here.
 */
TSE_CLIENT_API tse_client_status tse_client_delivery_ack(tse_client_delivery *d);
TSE_CLIENT_API tse_client_status tse_client_delivery_nack(tse_client_delivery *d,
                                                          uint32_t delay_ms);
TSE_CLIENT_API tse_client_status tse_client_delivery_extend(tse_client_delivery *d,
                                                            uint32_t deadline_ms);

/*
 * Ack or nack by ack id (from event->ack_id) later, from any thread, on the
 * subscriber's stream. Acks of a stream that broke meanwhile may be refused
 * by the server: the event then comes back.
 */
TSE_CLIENT_API tse_client_status tse_client_subscriber_ack(tse_client_subscriber *sub,
                                                           const char *ack_id);
TSE_CLIENT_API tse_client_status tse_client_subscriber_nack(tse_client_subscriber *sub,
                                                            const char *ack_id, uint32_t delay_ms);

/* ============================== pull ======================================= */

/* The deliveries of one pull. */
typedef struct tse_client_batch tse_client_batch;

/*
 * Pulls up to max_events (0: 10; at most 1000) deliveries from a
 * subscription, waiting up to wait_ms for the first one (0: answer at
 * once). An empty batch is success. Ack them with tse_client_acknowledge
 * before the subscription's ack deadline. consumer_name may be NULL.
 */
TSE_CLIENT_API tse_client_status tse_client_pull(tse_client *client, const char *subscription,
                                                 unsigned max_events, unsigned wait_ms,
                                                 const char *consumer_name, tse_client_batch **out,
                                                 tse_client_error *err);
TSE_CLIENT_API size_t tse_client_batch_count(const tse_client_batch *batch);
/* Delivery i (< count), valid until the batch is destroyed. */
TSE_CLIENT_API const tse_client_event_view *tse_client_batch_event(const tse_client_batch *batch,
                                                                   size_t i);
TSE_CLIENT_API void tse_client_batch_destroy(tse_client_batch *batch);

/* Acks (or nacks, redelivering after delay_ms) deliveries by ack id; *done
 * (may be NULL) receives how many were pending and are now acked/nacked. */
TSE_CLIENT_API tse_client_status tse_client_acknowledge(tse_client *client,
                                                        const char *subscription,
                                                        const char *const *ack_ids,
                                                        size_t n_ack_ids, unsigned *done,
                                                        tse_client_error *err);
TSE_CLIENT_API tse_client_status tse_client_nack(tse_client *client, const char *subscription,
                                                 const char *const *ack_ids, size_t n_ack_ids,
                                                 uint32_t delay_ms, unsigned *done,
                                                 tse_client_error *err);
/* Rejects deliveries: they are dead-lettered at once (reason REJECTED),
 * whatever attempts are left; *done (may be NULL) receives how many. */
TSE_CLIENT_API tse_client_status tse_client_reject(tse_client *client, const char *subscription,
                                                   const char *const *ack_ids, size_t n_ack_ids,
                                                   unsigned *done, tse_client_error *err);

/* ============================== inspection ================================= */

/* The service's counters (GetStats) as proto3 JSON text. */
TSE_CLIENT_API tse_client_status tse_client_stats(tse_client *client, char **json_out,
                                                  tse_client_error *err);

/* The schema catalog (ListEventTypes) as proto3 JSON text. */
TSE_CLIENT_API tse_client_status tse_client_event_types(tse_client *client, char **json_out,
                                                        tse_client_error *err);

typedef enum tse_client_serving {
    TSE_CLIENT_SERVING_UNKNOWN = 0,
    TSE_CLIENT_SERVING,
    TSE_CLIENT_NOT_SERVING, /* e.g. the service cannot reach Redis */
    TSE_CLIENT_SERVICE_UNKNOWN
} tse_client_serving;

/*
 * grpc.health.v1 Check of service (NULL or "": the server as a whole;
 * "tracseq.events.v1.EventService": the event service). An unreachable
 * server is UNAVAILABLE; an unknown service name NOT_FOUND.
 */
TSE_CLIENT_API tse_client_status tse_client_health(tse_client *client, const char *service,
                                                   tse_client_serving *out, tse_client_error *err);

/* ============================== asynchronous calls ========================= */

/*
 * Any unary RPC of the server (tracseq.events.v1.EventService,
 * grpc.health.v1.Health) started without waiting, with the request and
 * response as encoded protobuf bytes: for gateways and programs with their
 * own event loop. The callback runs on the client's call thread (the one
 * its publishers share; started with the first call or publisher) and must
 * not block. A call fails fast: while the server is unreachable it ends
 * UNAVAILABLE at once (no retry; that is the caller's choice here).
 */
typedef struct tse_client_call tse_client_call;

typedef struct tse_client_call_options {
    /* Deadline from the start: 0 means the client's timeout_ms, < 0 none. */
    int timeout_ms;
    /* Request metadata sent with this call beside the client's own (e.g.
     * "x-correlation-id", or the caller's "authorization" instead of the
     * client's token); keys lower-case. Copied. */
    const tse_client_metadata *metadata;
    size_t n_metadata;
} tse_client_call_options;

/*
 * The end of a call: status OK with the response bytes (valid only during
 * the callback), or the error (err->grpc_code is the server's code, or the
 * one of the cancel).
 */
typedef void (*tse_client_call_cb)(void *cb_arg, tse_client_status status,
                                   const tse_client_error *err, const void *response, size_t len);

/*
 * Starts method, a full path ("/tracseq.events.v1.EventService/Pull"), with
 * request bytes (copied). On OK the callback will be called exactly once,
 * and *out (when out is not NULL) is a handle for tse_client_call_cancel,
 * valid until tse_client_call_release. On failure the callback will not be
 * called. Calls still running when the client is destroyed are cancelled
 * (CANCELLED) and their callbacks run before destroy returns.
 */
TSE_CLIENT_API tse_client_status tse_client_call_start(tse_client *client, const char *method,
                                                       const void *request, size_t len,
                                                       const tse_client_call_options *options,
                                                       tse_client_call_cb cb, void *cb_arg,
                                                       tse_client_call **out,
                                                       tse_client_error *err);

/*
 * Ends the call now if it is still running: its callback comes with status
 * (e.g. CANCELLED, UNAVAILABLE; its gRPC code) and why as the message. A
 * no-op once the call ended. Any thread, the callback included.
 */
TSE_CLIENT_API void tse_client_call_cancel(tse_client_call *call, tse_client_status status,
                                           const char *why);

/* Lets go of the handle (the call itself runs on). NULL is a no-op. */
TSE_CLIENT_API void tse_client_call_release(tse_client_call *call);

/*
 * A streaming RPC (e.g. Subscribe) the same way: the first request at the
 * start, more with tse_client_stream_send, each response to on_message.
 * Handlers run on the client's call thread, never at once, and may send,
 * pause or cancel.
 */
typedef struct tse_client_stream tse_client_stream;

typedef struct tse_client_stream_handlers {
    /* One response (bytes valid during the call). The next one is asked
     * for when this returns, unless the stream is paused. */
    void (*on_message)(void *cb_arg, const void *response, size_t len);
    /* The end, exactly once and after every on_message: OK when the server
     * ended the stream with OK, else why (as for a call). */
    void (*on_end)(void *cb_arg, tse_client_status status, const tse_client_error *err);
} tse_client_stream_handlers;

/*
 * Starts method with first (copied) as its first request; options as for a
 * call (timeout_ms < 0: no deadline, usual for a stream). On OK on_end
 * will be called exactly once and *out (when out is not NULL) is a handle
 * valid until tse_client_stream_release; on failure no handler is called.
 * Streams still running when the client is destroyed are cancelled.
 */
TSE_CLIENT_API tse_client_status tse_client_stream_start(tse_client *client, const char *method,
                                                         const void *first, size_t len,
                                                         const tse_client_call_options *options,
                                                         const tse_client_stream_handlers *handlers,
                                                         void *cb_arg, tse_client_stream **out,
                                                         tse_client_error *err);

/* Queues one more request (copied), sent after those before it.
 * FAILED_PRECONDITION after tse_client_stream_close_send, always (even once
 * the stream has ended since); else CANCELLED after tse_client_stream_cancel
 * or once the stream has ended. Any thread. */
TSE_CLIENT_API tse_client_status tse_client_stream_send(tse_client_stream *stream, const void *msg,
                                                        size_t len);

/* Half-closes the stream: the server sees the end of the requests once
 * those queued are sent, and may go on answering (a PublishStream answers
 * what it received, then ends with its status). Later sends are refused.
 * OK again when already asked (even once the stream has ended since: a
 * repeated close never races the server's end); CANCELLED when the stream
 * was cancelled or ended before it was first asked. Any thread. */
TSE_CLIENT_API tse_client_status tse_client_stream_close_send(tse_client_stream *stream);

/* Whether a request of the stream (the first one included) is still queued
 * or being written: a send now would wait behind it. For a sender that
 * coalesces: while busy, gather what it has to send into one later
 * message. What an ended stream never sent keeps it busy (on_end says it
 * ended). Any thread. */
TSE_CLIENT_API bool tse_client_stream_busy(tse_client_stream *stream);

/* Flow control: a paused stream asks for no further response (the server
 * is held back by HTTP/2 flow control) until resumed. Any thread. */
TSE_CLIENT_API void tse_client_stream_pause(tse_client_stream *stream, bool paused);

/* Ends the stream now if it still runs: on_end comes with status and why,
 * as for tse_client_call_cancel. Later sends and a first close_send are
 * CANCELLED at once, before on_end. Any thread. */
TSE_CLIENT_API void tse_client_stream_cancel(tse_client_stream *stream, tse_client_status status,
                                             const char *why);

/* Lets go of the handle. NULL is a no-op. */
TSE_CLIENT_API void tse_client_stream_release(tse_client_stream *stream);

#ifdef __cplusplus
}
#endif

#endif

/*
 * internal.h - internal to the transport layer: the server object, one
 * object per in-flight gRPC call, the tags that route completion-queue
 * events to it, and the helpers every handler uses to read and answer.
 *
 * Ownership: a call object owns everything its ops point into (metadata
 * arrays, received and sent byte buffers, status details). It holds one
 * reference per batch or broker job in flight plus one for its handler until
 * the call is DONE; the last tse_call_unref releases the grpc_call and frees
 * the object. Every grpc_call_start_batch on a call is made with c->lock
 * held, so batches started by a worker and by a broker lane thread never
 * race.
 *
 * The call invariant, kept here for every RPC: a call is answered exactly
 * once, and nothing is started on it after its answer. Every call ends
 * through tse_call_finish_locked (the status, the last thing sent), which
 * moves it ACTIVE -> FINISHING; the completion of that batch moves it to
 * DONE and drops the handler's reference. A second finish, or any batch
 * once the call left ACTIVE, is a bug: logged at error and ignored in
 * release builds, an assertion failure in debug and sanitizer builds.
 */
#ifndef TSE_TRANSPORT_INTERNAL_H
#define TSE_TRANSPORT_INTERNAL_H

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/clock.h"
#include "transport/server.h"

/* A completion-queue tag: the event's handler, embedded in its owner. */
typedef struct tse_tag {
    void (*fn)(struct tse_tag *tag, bool ok);
} tse_tag;

#define TSE_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

typedef struct tse_call tse_call;

/* A method: its path, how its request arrives, and its handler. */
typedef struct tse_method {
    const char *path;  /* "/tracseq.events.v1.EventService/Publish" */
    const char *name;  /* for logs: "Publish" */
    bool streaming_in; /* client streams: no payload read at arrival */
    int backlog;       /* requests kept posted per worker */
    size_t call_size;  /* sizeof the handler's call struct (>= sizeof(tse_call)) */
    /* The request message. Unless streaming_in or reads_payload, the server decodes it
     * (tse_decode) into c->request before start, and answers a request
     * that does not decode INVALID_ARGUMENT without calling start. */
    const ProtobufCMessageDescriptor *request;
    /* Non-zero: field 1 of the request is a batch of at most this many
     * entries (tse_decode_bounded). */
    size_t max_entries;
    bool keeps_bytes;    /* the request's bytes stay in c->request_bytes until the call is freed */
    bool reads_payload;  /* the handler decodes c->payload itself (the server does not) */
    bool counts_invalid; /* a refused request counts as an invalid event */
    bool open;           /* needs no identity when authentication is on (health) */
    /* Called on a worker when the call arrives; must eventually finish it. */
    void (*start)(tse_call *c);
    /* Frees the handler's own state when the call is released (may be NULL). */
    void (*release)(tse_call *c);
} tse_method;

/* Where a call is in its life (see the invariant above). */
typedef enum tse_call_state {
    TSE_CALL_POSTED = 0, /* a request is posted; no call arrived yet */
    TSE_CALL_ACTIVE,     /* arrived: the handler may start batches */
    TSE_CALL_FINISHING,  /* the status batch is started: nothing more may be */
    TSE_CALL_DONE        /* the status batch completed (or was refused) */
} tse_call_state;

#define TSE_CORRELATION_MAX 128
#define TSE_LOG_KV_MAX      4

struct tse_call {
    tse_server *server;
    const tse_method *method;
    int worker; /* index of the completion queue */
    grpc_call *call;
    grpc_call_details details; /* unregistered calls only */
    grpc_metadata_array metadata;
    grpc_byte_buffer *payload; /* unary/server-streaming request, as received */
    ProtobufCMessage *request; /* ... decoded (method->request), freed with the call */
    grpc_slice request_bytes;  /* ... its bytes, when method->keeps_bytes (else empty) */
    gpr_timespec deadline;
    tse_tag arrived;
    pthread_mutex_t lock;
    int refs;
    int64_t start_us;
    char correlation_id[TSE_CORRELATION_MAX]; /* from x-correlation-id, or "" */
    /* W3C traceparent / tracestate metadata (publish applies them to events
     * without their own): into `metadata`, so valid for the call's life;
     * NULL when absent. Not NUL-terminated. */
    const char *md_traceparent;
    size_t md_traceparent_len;
    const char *md_tracestate;
    size_t md_tracestate_len;
    const tse_auth_table *auth_table; /* referenced from arrival to free (auth on) */
    const tse_identity *identity;     /* the caller, in auth_table; NULL: auth off */
    void (*access_next)(tse_call *c); /* subscribe.c: what follows its owner check */

    /* The finish: the last message and the status live here until sent. */
    tse_call_state state; /* under lock */
    tse_tag finished;
    grpc_byte_buffer *response;
    grpc_slice status_details;
    grpc_metadata trailer; /* grpc-status-details-bin, when the error names a field */
    grpc_status_code status;
    int cancelled;      /* RECV_CLOSE_ON_SERVER's answer */
    bool close_started; /* RECV_CLOSE_ON_SERVER is started (tse_call_watch_close_locked) */
    bool md_sent;       /* initial metadata is sent (call.c) */
    const char *log_kv[2 * TSE_LOG_KV_MAX + 1]; /* extra request-log pairs */
    char log_buf[TSE_LOG_KV_MAX][160];
    tse_call *next_live; /* a stream in one of the server's lists, under watch_lock */
};

/* A list of open streams, linked through tse_call.next_live, under the
 * server's watch_lock. */
typedef struct tse_call_list {
    tse_call *head;
    int n;
} tse_call_list;

typedef struct tse_tls tse_tls;

struct tse_server {
    const tse_config *config;
    tse_auth *auth; /* NULL: authentication off */
    tse_broker *broker;
    tse_delivery *delivery;
    tse_stats *stats;
    const tse_reflection *reflection;
    uint8_t *catalog_answer; /* ListEventTypes, packed once (tse_catalog_describe) */
    size_t catalog_answer_len;
    grpc_server *grpc;
    tse_tls *tls; /* NULL: plaintext */
    int port;
    int nworkers;
    grpc_completion_queue **cqs;
    pthread_t *threads;
    bool started;
    void **method_handles; /* per entry of tse_methods */

    atomic_bool shutting_down;
    atomic_bool serving;
    pthread_mutex_t calls_lock;
    pthread_cond_t calls_cond;
    int live_calls;

    atomic_uint_fast64_t next_pull_id; /* names Pull calls for the delivery engine */

    /* The open streams, linked through next_live (tse_call_open_stream_locked). */
    pthread_mutex_t watch_lock;    /* guards the lists below */
    tse_call_list watches;         /* Health.Watch */
    tse_call_list subscribers;     /* Subscribe (MAX_SUBSCRIBER_STREAMS) */
    tse_call_list publish_streams; /* PublishStream, PublishBatchStream */
};

/* ---- tls.c: the certificate of the gRPC port, reloadable ---- */

/* Reads TLS_CERT, TLS_KEY and TLS_CLIENT_CA (cfg borrowed, must outlive
 * the result); errors name the key. Release with tse_tls_destroy, after
 * the gRPC server that uses its credentials. */
tse_status tse_tls_create(const tse_config *cfg, tse_tls **out, tse_error *err);
/* Server credentials that fetch t's certificate before each handshake;
 * the caller releases them (gRPC keeps its own reference). */
grpc_server_credentials *tse_tls_credentials(tse_tls *t);
/* Re-reads the files; new connections get them. On failure the
 * certificate in use stays. */
tse_status tse_tls_reload(tse_tls *t, tse_error *err);
void tse_tls_destroy(tse_tls *t);

/* Every method the server registers, NULL-terminated (server.c). */
extern const tse_method *const tse_methods[];

/* Handlers (one file each). */
extern const tse_method tse_method_publish;
extern const tse_method tse_method_publish_cloudevent;
extern const tse_method tse_method_publish_stream;
extern const tse_method tse_method_publish_batch;
extern const tse_method tse_method_publish_batch_stream;
extern const tse_method tse_method_health_check;
extern const tse_method tse_method_health_watch;
extern const tse_method tse_method_reflection_v1alpha;
extern const tse_method tse_method_reflection_v1;
extern const tse_method tse_method_get_stats;
extern const tse_method tse_method_list_event_types;
extern const tse_method tse_method_unimplemented;
extern const tse_method tse_method_subscribe;
extern const tse_method tse_method_create_subscription;
extern const tse_method tse_method_get_subscription;
extern const tse_method tse_method_list_subscriptions;
extern const tse_method tse_method_delete_subscription;
extern const tse_method tse_method_acknowledge;
extern const tse_method tse_method_nack;
extern const tse_method tse_method_pull;
extern const tse_method tse_method_list_dead_letters;
extern const tse_method tse_method_get_dead_letter;
extern const tse_method tse_method_redrive_dead_letters;
extern const tse_method tse_method_purge_dead_letters;
extern const tse_method tse_method_seek;
extern const tse_method tse_method_create_snapshot;
extern const tse_method tse_method_list_snapshots;
extern const tse_method tse_method_delete_snapshot;

/* ---- call helpers (call.c) ---- */

/* Drops a reference (takes c->lock); the last frees the call. */
void tse_call_unref(tse_call *c);

/* Whether the call is ACTIVE (not yet finished). With c->lock held. */
bool tse_call_active_locked(const tse_call *c);

/* Starts RECV_CLOSE_ON_SERVER on tag (its answer in c->cancelled), so a
 * handler hears of a cancel before it answers. False when refused. With
 * c->lock held. */
bool tse_call_watch_close_locked(tse_call *c, tse_tag *tag);

/* Starts RECV_MESSAGE into *buf on tag. False when refused. With c->lock held. */
bool tse_call_recv_locked(tse_call *c, grpc_byte_buffer **buf, tse_tag *tag);

/*
 * Starts SEND_MESSAGE of msg on tag, after the initial metadata when not yet
 * sent; msg stays the caller's until the tag fires. more: another message
 * is ready behind this one, so the write may be buffered (never the first
 * message, which must flush). False when refused. With c->lock held.
 */
bool tse_call_send_locked(tse_call *c, grpc_byte_buffer *msg, bool more, tse_tag *tag);

/*
 * Opens a stream: watches its close on close_tag (tse_call_watch_close_locked)
 * and links it into *list, one of the server's (NULL: none). With c->lock
 * held, and watch_lock before it when listed (the lock order everywhere).
 * False when the call could not start: then it is finished UNAVAILABLE.
 */
bool tse_call_open_stream_locked(tse_call *c, tse_call_list *list, tse_tag *close_tag);

/* Unlinks c from *list when listed (takes watch_lock). */
void tse_call_unlist(tse_call *c, tse_call_list *list);

/* Cancels every stream of *list UNAVAILABLE with why (the server stops;
 * takes watch_lock). */
void tse_call_cancel_all(tse_server *s, const tse_call_list *list, const char *why);

/*
 * Decodes a byte buffer (NULL: an empty message) as a message of desc, the
 * one way every request is read. The wire bytes are scanned first
 * (codec/pbscan.h): nesting deeper than TSE_PBJSON_MAX_DEPTH or a string
 * that is not UTF-8 is refused before protobuf-c unpacks anything
 * (codec/pbunpack.h). NULL with err TSE_INVALID naming the field, or
 * "request" when the bytes are no such message, or TSE_NOMEM. Caller frees
 * with protobuf_c_message_free_unpacked.
 */
ProtobufCMessage *tse_decode(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc,
                             tse_error *err);

/* tse_decode, refusing (TSE_INVALID naming field 1) a message whose field 1
 * occurs more than max_entries times (0: no bound) before anything is
 * unpacked, so a batch's limit also bounds what decoding it allocates. */
ProtobufCMessage *tse_decode_bounded(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc,
                                     size_t max_entries, tse_error *err);

/* tse_decode_bounded, also handing the message's bytes to *bytes (caller
 * unrefs; NULL: not kept), so that the handler can reuse what the client
 * packed (publish: domain/envelope.h), when it decoded and no singular
 * message field occurs twice in one message of it (protobuf-c keeps the
 * last, the protobuf spec merges them: such bytes are never stored as they
 * came, pbscan.h). *bytes is untouched otherwise. */
ProtobufCMessage *tse_decode_keeping(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc,
                                     size_t max_entries, grpc_slice *bytes, tse_error *err);

/*
 * A batch request (field 1: a repeated message, e.g. PublishBatchRequest's
 * events) whose entries are unpacked one at a time, each freed before the
 * next is unpacked: the allocations of one entry are then reused by the
 * next (glibc keeps a few freed chunks per size and thread at hand), where
 * a whole batch unpacked at once went through malloc's slow paths for
 * every one (~9k instructions per event, docs/benchmarks.md).
 *
 * Decoding agrees with tse_decode_bounded: tse_batch_open refuses what it
 * refuses before unpacking (over the bound, the scan, an entry not
 * length-delimited), and an entry that does not unpack makes
 * tse_batch_next fail with the error the whole request's unpacking gives
 * ("request": "not a valid <request>", or TSE_NOMEM). A caller that acts on
 * entries must hold back anything it cannot undo until every entry
 * unpacked. Owned by its caller, one thread at a time.
 */
typedef struct tse_batch_reader {
    const ProtobufCMessageDescriptor *request; /* the request's type */
    const ProtobufCMessageDescriptor *entry;   /* field 1's message type */
    grpc_slice bytes;                          /* the request's bytes (owned) */
    size_t n;                                  /* entries */
    size_t pos;                                /* where the next entry's search starts */
    bool reusable; /* the entries' bytes may be stored as they came (tse_decode_keeping) */
} tse_batch_reader;

/* Opens bb as a desc of at most max entries (0: no bound); false (nothing
 * to close) with err set as tse_decode_bounded would set it. */
bool tse_batch_open(tse_batch_reader *r, grpc_byte_buffer *bb,
                    const ProtobufCMessageDescriptor *desc, size_t max, tse_error *err);

/* The next entry (r->n in all), unpacked into *out (caller frees with
 * protobuf_c_message_free_unpacked), its bytes in *wire, *wire_len (into
 * r's bytes). TSE_INVALID, TSE_NOMEM: see above; *out NULL. */
tse_status tse_batch_next(tse_batch_reader *r, ProtobufCMessage **out, const uint8_t **wire,
                          size_t *wire_len, tse_error *err);

/* Releases r's bytes; a reader never opened (zeroed) or closed is a no-op. */
void tse_batch_close(tse_batch_reader *r);

/* tse_decode's scan alone, for a handler that unpacks the bytes itself
 * (reflection): false with err set as tse_decode sets it. */
bool tse_scan_request(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                      tse_error *err);

/* Encodes msg into a new byte buffer (caller destroys). */
grpc_byte_buffer *tse_encode(const ProtobufCMessage *msg);

/* msg packed into a new slice (caller unrefs). */
grpc_slice tse_pack_slice(const ProtobufCMessage *msg);

/* A byte buffer of slice, taking the caller's reference to it. */
grpc_byte_buffer *tse_byte_buffer_take(grpc_slice slice);

/* Adds one key/value pair to the request's log line (value copied). */
void tse_call_log_kv(tse_call *c, const char *key, const char *value);

/*
 * The one way every call ends (unary and streaming): sends initial metadata
 * when not yet sent, msg when non-NULL and the call succeeds (ownership
 * taken in every case), the status, and RECV_CLOSE_ON_SERVER when not yet
 * started; writes the request's log line. The status is err's: NULL is OK
 * with no message; otherwise its code (tse_status_to_grpc, TSE_OK for a
 * success with a message) and its text "field: message"
 * (tse_error_describe), plus the google.rpc.Status details when err names a
 * field (tse_status_details_bin). ACTIVE -> FINISHING; the batch's completion
 * makes the call DONE and drops the handler's reference. A call that is not
 * ACTIVE is left alone (a second answer is a bug: logged at error, asserted
 * in debug builds). With c->lock held, by a caller holding a reference of
 * its own (a tag's, a job's, the arrival's) across the call.
 */
void tse_call_finish_locked(tse_call *c, grpc_byte_buffer *msg, const tse_error *err);

/* tse_call_finish_locked from any thread, without c->lock (taken here). */
void tse_call_finish(tse_call *c, grpc_byte_buffer *msg, const tse_error *err);

/* tse_call_finish with resp encoded (when non-NULL and err is NULL or OK). */
void tse_call_finish_unary(tse_call *c, const ProtobufCMessage *resp, const tse_error *err);

/* Ends a unary call with err (a refusal): tse_call_finish(c, NULL, err). */
void tse_call_fail(tse_call *c, const tse_error *err);

/* ---- status mapping (grpc_status.c): the one place that picks codes ---- */
grpc_status_code tse_status_to_grpc(tse_status st);
const char *tse_grpc_code_name(grpc_status_code code);

/* Whether err travels with google.rpc.Status details: a refusal
 * (TSE_INVALID) that names a field. */
bool tse_error_has_details(const tse_error *err);

/*
 * The value of `grpc-status-details-bin` for err (tse_error_has_details): a
 * packed google.rpc.Status with err's gRPC code, text (the status message,
 * as sent) and one google.rpc.BadRequest field violation (err->field,
 * err->message). Caller unrefs the slice.
 */
grpc_slice tse_status_details_bin(const tse_error *err, const char *text);

/* Formats "field: message" (or just the message) into buf. */
void tse_error_describe(const tse_error *err, char *buf, size_t len);

/* ---- identities and permissions (access.c) ----
 * With authentication off (server->auth NULL) every check allows. A denial
 * returns TSE_PERMISSION_DENIED in err and writes the audit line. */

/* Proves the arriving call's identity; false (call answered
 * UNAUTHENTICATED, audited) when it needs one and has none. On a worker. */
bool tse_call_authenticate(tse_call *c);

/*
 * For calls that stay open: when the tokens file was reloaded since the
 * call's identity was proven, or that identity has expired, proves it again
 * from the call's token or certificate against the current table and takes
 * that table (*renewed true, may be NULL: the caller checks its permissions
 * again). TSE_UNAUTHENTICATED (audited) when the credentials prove no one
 * any more. Cheap while nothing changed (one atomic load, one clock read).
 * Not thread-safe per call: under the call's lock or from its one reader.
 */
tse_status tse_access_recheck(tse_call *c, bool *renewed, tse_error *err);

/* The caller's identity name; NULL when authentication is off. */
const char *tse_call_identity(const tse_call *c);

/* Refuses with PERMISSION_DENIED and the formatted reason (audited). */
tse_status tse_access_deny(tse_call *c, const char *target, tse_error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The admin right (stats of everything, others' subscriptions). */
tse_status tse_access_admin(tse_call *c, const char *target, tse_error *err);

/* True (and audited) when the caller has the admin right and uses it on target. */
bool tse_access_admin_used(tse_call *c, const char *target);

/* Publishing event_type as source: the type among its publish patterns,
 * source its own name unless publish_on_behalf, within its rate
 * (RESOURCE_EXHAUSTED with TSE_RETRY_AFTER_TEXT otherwise). */
tse_status tse_access_publish(tse_call *c, const char *event_type, const char *source,
                              tse_error *err);

/* Every pattern within the caller's subscribe permissions. */
tse_status tse_access_patterns(tse_call *c, const char *target, char *const *patterns, size_t n,
                               tse_error *err);

/* Whether the caller is owner (always with authentication off). */
bool tse_access_owns(const tse_call *c, const char *owner);

/* A stored subscription: the caller owns it or is admin, and may read
 * every one of its patterns. */
tse_status tse_access_subscription(tse_call *c, const char *name, const char *owner,
                                   char *const *patterns, size_t n, tse_error *err);

/* ---- health (health.c) ---- */
void tse_health_notify(tse_server *s);
/* Ends every Watch stream with UNAVAILABLE (server shutting down). */
void tse_health_shutdown(tse_server *s);

/* ---- publishing (publish.c) ---- */
/* Tells every PublishStream to wind down (server shutting down): no more
 * requests are accepted; what was accepted is answered, what arrives later
 * is drained unanswered, and once nothing arrived for a moment the stream
 * ends with UNAVAILABLE so the client resends the rest elsewhere. Called
 * again while the server waits for its calls: it ends the streams that went
 * quiet since. */
void tse_publish_shutdown(tse_server *s);

/* ---- subscriptions (subscribe.c) ---- */
/* Runs next(c) once the caller may use subscription name: its owner or an
 * admin, with every pattern within the caller's subscribe permissions (at
 * once with authentication off). Otherwise c is answered with the refusal
 * (PERMISSION_DENIED, or NOT_FOUND for an unknown subscription). */
void tse_subscription_access(tse_call *c, const char *name, void (*next)(tse_call *c));

/* Ends every Subscribe stream with UNAVAILABLE (server shutting down). */
void tse_subscribe_shutdown(tse_server *s);

#endif

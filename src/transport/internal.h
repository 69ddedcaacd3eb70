/*
 * internal.h - internal to the transport layer: the server object, one
 * object per in-flight gRPC call, the tags that route completion-queue
 * events to it, and the helpers every handler uses to read and answer.
 *
 * Ownership: a call object owns everything its ops point into (metadata
 * arrays, received and sent byte buffers, status details). It holds one
 * reference per batch or broker job in flight plus one for its handler until
 * the handler finishes it; the last tse_call_unref releases the grpc_call and
 * frees the object. Every grpc_call_start_batch on a call is made with
 * c->lock held, so batches started by a worker and by a broker lane thread
 * never race.
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
    /* Called on a worker when the call arrives; must eventually finish it. */
    void (*start)(tse_call *c);
    /* Frees the handler's own state when the call is released (may be NULL). */
    void (*release)(tse_call *c);
} tse_method;

#define TSE_CORRELATION_MAX 128
#define TSE_LOG_KV_MAX      4

struct tse_call {
    tse_server *server;
    const tse_method *method;
    int worker; /* index of the completion queue */
    grpc_call *call;
    grpc_call_details details; /* unregistered calls only */
    grpc_metadata_array metadata;
    grpc_byte_buffer *payload; /* unary/server-streaming request */
    gpr_timespec deadline;
    tse_tag arrived;
    pthread_mutex_t lock;
    int refs;
    int64_t start_us;
    char correlation_id[TSE_CORRELATION_MAX]; /* from x-correlation-id, or "" */

    /* The unary finish: response and status live here until sent. */
    tse_tag finished;
    grpc_byte_buffer *response;
    grpc_slice status_details;
    grpc_status_code status;
    int cancelled;
    bool close_started; /* the handler started RECV_CLOSE_ON_SERVER itself */
    const char *log_kv[2 * TSE_LOG_KV_MAX + 1]; /* extra request-log pairs */
    char log_buf[TSE_LOG_KV_MAX][160];
};

#define TSE_HEALTH_SERVICES 3

/* A Watch stream (health.c); linked into the server's list. */
typedef struct tse_health_watch tse_health_watch;

struct sub_call;

struct tse_server {
    const tse_config *config;
    tse_broker *broker;
    tse_delivery *delivery;
    tse_stats *stats;
    const tse_reflection *reflection;
    grpc_server *grpc;
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

    pthread_mutex_t watch_lock; /* guards the watch and subscriber lists */
    tse_health_watch *watches;
    struct sub_call *subscribers; /* live Subscribe streams */
};

/* Every method the server registers, NULL-terminated (server.c). */
extern const tse_method *const tse_methods[];

/* Handlers (one file each). */
extern const tse_method tse_method_publish;
extern const tse_method tse_method_publish_stream;
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

/* ---- call helpers (call.c) ---- */

/* Microseconds on the monotonic clock. */
int64_t tse_now_us(void);

void tse_call_ref(tse_call *c);   /* takes c->lock */
void tse_call_unref(tse_call *c); /* takes c->lock; frees on last */

/*
 * Starts a batch with c->lock held by the caller; takes a reference that the
 * tag's handler must drop. Returns false (and drops it) when the call
 * refused the batch: then the tag never fires.
 */
bool tse_call_start_batch_locked(tse_call *c, const grpc_op *ops, size_t n, tse_tag *tag);

/* Decodes a byte buffer as a message of desc; NULL when it does not parse.
 * Caller frees with protobuf_c_message_free_unpacked(msg, NULL). */
ProtobufCMessage *tse_decode(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc);

/* Encodes msg into a new byte buffer (caller destroys); NULL on failure. */
grpc_byte_buffer *tse_encode(const ProtobufCMessage *msg);

/* Adds one key/value pair to the request's log line (value copied). */
void tse_call_log_kv(tse_call *c, const char *key, const char *value);

/*
 * Finishes a unary call: sends initial metadata, the response (when resp is
 * non-NULL and code is OK), and the status. Logs the request line. Drops the
 * handler's reference once sent. Callable from any thread, without c->lock.
 */
void tse_call_finish_unary(tse_call *c, const ProtobufCMessage *resp, grpc_status_code code,
                           const char *details);

/* Finishes with the gRPC code and message of a tse_error. */
void tse_call_fail(tse_call *c, const tse_error *err);

/* ---- status mapping (grpc_status.c): the one place that picks codes ---- */
grpc_status_code tse_status_to_grpc(tse_status st);
const char *tse_grpc_code_name(grpc_status_code code);

/* Formats "field: message" (or just the message) into buf. */
void tse_error_describe(const tse_error *err, char *buf, size_t len);

/* ---- health (health.c) ---- */
void tse_health_notify(tse_server *s);
/* Ends every Watch stream with UNAVAILABLE (server shutting down). */
void tse_health_shutdown(tse_server *s);

/* ---- subscriptions (subscribe.c) ---- */
/* Ends every Subscribe stream with UNAVAILABLE (server shutting down). */
void tse_subscribe_shutdown(tse_server *s);

#endif

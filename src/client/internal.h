/*
 * internal.h - what the client SDK's files share and its unit tests reach:
 * the client and event structs, error mapping, the wire form of a publish
 * request, blocking calls, and delivery decoding. Not installed.
 *
 * Invariants: a tse_client's fields are written once by connect and read-only
 * afterwards, so every thread may read them without a lock. An event's bytes
 * are the packed Event without id (unless the caller gave one) and without
 * source_service: both are prefixed per publish, which protobuf allows (a
 * field may come before the others), so nothing is repacked per publish.
 * An event made from an envelope (`raw`) is sent as it is: its bytes say
 * everything, so neither is prefixed.
 */
#ifndef TSE_CLIENT_INTERNAL_H
#define TSE_CLIENT_INTERNAL_H

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <protobuf-c/protobuf-c.h>
#include <pthread.h>
#include <stdatomic.h>

#include "common/clock.h"
#include "common/status.h"
#include "domain/validate.h"
#include "tracseq/client.h"
#include "tracseq/events/v1/service.pb-c.h"

#define TSE_CLIENT_DEFAULT_TARGET  "localhost:50051"
#define TSE_CLIENT_DEFAULT_SOURCE  "tracseq-client"
#define TSE_CLIENT_DEFAULT_TIMEOUT 10000
#define TSE_CLIENT_DEFAULT_BACKOFF 100
#define TSE_CLIENT_DEFAULT_MAX_BO  5000
#define TSE_CLIENT_SOURCE_MAX      64
#define TSE_CLIENT_METHOD(m)       "/tracseq.events.v1.EventService/" m

struct tse_client_pump; /* publisher.c */

/* A completion on the client's shared queue: embedded in the object whose
 * batch it ends (its address is the batch's tag); runs on the pump thread. */
typedef struct tse_client_tag {
    void (*done)(struct tse_client_tag *tag, bool ok);
} tse_client_tag;

#define TSE_CLIENT_MAX_CHANNELS 64

struct tse_client {
    grpc_channel *channels[TSE_CLIENT_MAX_CHANNELS]; /* opt.channels of them */
    atomic_size_t next_channel;                      /* round robin */
    grpc_channel_credentials *creds;                 /* for the publishers' own channels */
    /* The publishers' shared completion-queue thread, made with the first
     * publisher, stopped by tse_client_destroy. */
    pthread_mutex_t pump_mu;
    struct tse_client_pump *pump;
    /* The asynchronous streams (and calls, which are streams) in flight
     * (stream.c), for destroy to cancel. */
    pthread_mutex_t calls_mu;
    struct tse_client_stream *streams;
    tse_client_options opt; /* resolved; strings point into the fields below */
    char *target;
    char *tls_server_name; /* NULL: the target's host */
    char *source_service;
    char *authorization;   /* "Bearer <token>", or NULL */
    uint8_t *source_field; /* packed Event.source_service field */
    size_t source_field_len;
    tse_uuid_seq ids; /* this client's event ids */
};

struct tse_client_event {
    uint8_t *bytes; /* packed Event, see the file comment */
    size_t len;
    bool has_id; /* opts.event_id was given: it is inside bytes */
    bool raw;    /* from_envelope: published as is (no id, no source added) */
    char *event_type;
};

/* A new channel (its own TCP connection) with the client's target,
 * credentials and reconnect settings; NULL on failure. */
grpc_channel *tse_client_open_channel(const tse_client *c);

/* The channel for the next call: the next in turn that is ready, else the
 * next in turn (and every channel is asked to connect). */
grpc_channel *tse_client_pick_channel(tse_client *c);

/* The client's shared completion queue (publishers, asynchronous calls),
 * its thread started on first use; NULL when it cannot start. */
grpc_completion_queue *tse_client_queue(tse_client *c);

/* Stops the pump thread, if any (publisher.c), once every batch on its
 * queue completed. Every publisher must have been destroyed. */
void tse_client_pump_stop(tse_client *c);

/* Cancels the asynchronous calls and streams in flight (stream.c); their
 * callbacks run on the pump thread, CANCELLED. */
void tse_client_streams_cancel(tse_client *c);

/* How tse_client_stream_open starts a stream, beyond what the public
 * tse_client_stream_start says; zero for the same. */
typedef struct tse_client_stream_how {
    bool close;            /* no request after the first (a unary call, call.c) */
    bool no_first;         /* the initial metadata alone; requests come with send */
    grpc_channel *channel; /* borrowed; NULL: tse_client_pick_channel's */
    /* Called (on the pump thread, without the stream's lock, may send) when
     * a message was written and none is queued behind it: the moment a
     * batching sender hands over what gathered meanwhile. May be NULL. */
    void (*on_drained)(void *arg);
} tse_client_stream_how;

/* A stream as tse_client_stream_start starts it, the way how says. */
tse_client_status tse_client_stream_open(tse_client *client, const char *method, const void *first,
                                         size_t len, const tse_client_call_options *options,
                                         const tse_client_stream_handlers *handlers, void *arg,
                                         const tse_client_stream_how *how, tse_client_stream **out,
                                         tse_client_error *err);

/* tse_client_stream_send without the copy: takes a reference to bytes. */
tse_client_status tse_client_stream_send_slice(tse_client_stream *s, grpc_slice bytes);

/* ---- errors (error.c) ---- */

/* Sets err (may be NULL) and returns status. grpc_code -1: no call. */
tse_client_status tse_client_fail(tse_client_error *err, tse_client_status status, int grpc_code,
                                  const char *field, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void tse_client_error_clear(tse_client_error *err);
tse_client_status tse_client_status_from_grpc(grpc_status_code code);
grpc_status_code tse_client_grpc_from_status(tse_client_status status);
/* Errors that no reconnection can fix: a new stream would meet them again. */
bool tse_client_status_fatal(tse_client_status st);
/* Copies a layer error into err, field prefixed (when prefix != NULL). */
tse_client_status tse_client_from_tse_error(const tse_error *e, const char *prefix,
                                            tse_client_error *err);
/* A failed call's status into err: the message is details (the status
 * text), the field that of the google.rpc.BadRequest in trailing's
 * grpc-status-details-bin (trailing may be NULL), else read from the text. */
tse_client_status tse_client_from_grpc_status(grpc_status_code code, const char *details,
                                              size_t len, const grpc_metadata_array *trailing,
                                              tse_client_error *err);

/* ---- options (client.c) ---- */

/* Fills out from in (may be NULL) with defaults and environment applied;
 * checks ranges. Strings in out borrow in's or static ones. */
tse_client_status tse_client_options_resolve(const tse_client_options *in, tse_client_options *out,
                                             tse_client_error *err);

/* ---- the wire ---- */

/* PublishRequest{event = [id field] + [source field] + ev->bytes}. id is
 * NULL when ev has its own. The caller unrefs the slice. */
grpc_slice tse_client_request_slice(const tse_client *c, const tse_client_event *ev,
                                    const char *id);

/* Decodes a PublishResponse into result (or its per-event error into err). */
tse_client_status tse_client_publish_response(const uint8_t *data, size_t len,
                                              tse_client_publish_result *result,
                                              tse_client_error *err);

/* An absolute monotonic deadline timeout_ms from now (< 0: none). */
gpr_timespec tse_client_deadline(int timeout_ms);
/* Sleeps ms, or until *stop turns true (stop may be NULL). */
void tse_client_sleep_ms(int ms, const atomic_bool *stop);
/* The reconnect backoff after one of ms: doubled, at most reconnect_max_ms. */
int tse_client_backoff_next(const tse_client *c, int ms);

/*
 * What the ops of one call point into and the call's object owns (a
 * stream's, a blocking unary call's): the message in flight each way, both
 * metadata arrays, the status. init before the first batch, cleanup once no
 * batch is in flight (frees what is left in it).
 */
typedef struct tse_client_call_io {
    grpc_byte_buffer *send_buf, *recv_buf;
    grpc_metadata_array initial_md, trailing_md;
    grpc_status_code code;
    grpc_slice details;
} tse_client_call_io;

void tse_client_call_io_init(tse_client_call_io *io);
void tse_client_call_io_cleanup(tse_client_call_io *io);
/* The op receiving io's status and trailing metadata into *op. */
void tse_client_status_op(tse_client_call_io *io, grpc_op *op);
/* A whole unary call in one batch into ops[6]: md (n_md pairs), request
 * (now io->send_buf, owned by io), the half-close, and receiving the
 * initial metadata, the response (io->recv_buf) and the status. */
void tse_client_unary_ops(tse_client_call_io *io, grpc_metadata *md, size_t n_md,
                          grpc_byte_buffer *request, grpc_op ops[6]);
/* The call's status as the SDK's, into err unless OK (the status arrived). */
tse_client_status tse_client_call_io_status(const tse_client_call_io *io, tse_client_error *err);

/* One unary call with request bytes; *resp (caller frees with gpr_free)
 * receives the response bytes on OK. */
tse_client_status tse_client_unary_raw(tse_client *c, const char *method, grpc_slice req,
                                       gpr_timespec deadline, grpc_slice *resp,
                                       tse_client_error *err);
/* One unary call with messages; caller frees *resp with
 * protobuf_c_message_free_unpacked. */
tse_client_status tse_client_unary(tse_client *c, const char *method, const ProtobufCMessage *req,
                                   const ProtobufCMessageDescriptor *resp_desc,
                                   ProtobufCMessage **resp, tse_client_error *err);
/* msg as proto3 JSON text (snake_case, defaults emitted) into *json_out. */
tse_client_status tse_client_message_json(const ProtobufCMessage *msg, char **json_out,
                                          tse_client_error *err);

/* ---- subscriptions (admin.c) ---- */

/* CreateSubscription from spec, named name (NULL: spec->name); json_out may
 * be NULL. */
tse_client_status tse_client_create_subscription(tse_client *c,
                                                 const tse_client_subscription_spec *spec,
                                                 const char *name, char **json_out,
                                                 tse_client_error *err);

/* ---- events (event.c) ---- */

/* ---- deliveries (view.c) ---- */

typedef struct tse_client_decoded {
    tse_client_event_view view;
    Tracseq__Events__V1__Delivery *delivery;
    tse_client_metadata *metadata;
    char *payload_json;
} tse_client_decoded;

/* Delivery.more (field 6): further deliveries of a batched message. */
#define TSE_CLIENT_DELIVERY_MORE 6

/*
 * Splits a packed Delivery that may carry further deliveries in `more`
 * (batched delivery): its other fields, in order, are the first delivery,
 * copied to first (room for the *first_len of a counting call, or len;
 * NULL: only counted) with their length in *first_len; each element of `more` goes to more (may be
 * NULL) in order, and a false from it stops the split. False when the bytes do not scan.
 */
bool tse_client_delivery_split(const uint8_t *data, size_t len, uint8_t *first, size_t *first_len,
                               bool (*more)(void *arg, const uint8_t *p, size_t n), void *arg);

/* Decodes one packed Delivery into d (cleanup with _decoded_cleanup). */
tse_client_status tse_client_delivery_decode(const uint8_t *data, size_t len, tse_client_decoded *d,
                                             tse_client_error *err);
void tse_client_decoded_cleanup(tse_client_decoded *d);
/* The payload member of ev as compact proto3 JSON text; NULL on failure. */
char *tse_client_payload_json(const Tracseq__Events__V1__Event *ev);

/* A batch of the deliveries of a packed PullResponse; takes bytes (unref'd
 * by tse_client_batch_destroy, or here on failure). */
tse_client_status tse_client_batch_make(grpc_slice bytes, tse_client_batch **out,
                                        tse_client_error *err);

/* Finds length-delimited field `number` occurrences in a packed message:
 * calls fn for each; false when the bytes are malformed. */
bool tse_client_wire_each(const uint8_t *data, size_t len, uint32_t number,
                          bool (*fn)(void *arg, const uint8_t *p, size_t n), void *arg);

#endif

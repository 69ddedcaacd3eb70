/*
 * grpc_client.h - blocking unary calls and streams for the integration
 * tests and the torture, with protobuf-c messages or raw bytes: a thin
 * wrapper of the client SDK's asynchronous calls and streams
 * (tse_client_call_*, tse_client_stream_*), so the tests use the one gRPC
 * client runtime of the tree rather than their own.
 *
 * A "channel" is an SDK client (one connection). A stream keeps at most one
 * response read ahead: it asks the server for the next one only when recv
 * waits for it (tse_client_stream_pause), so a test that stops reading holds
 * the server back by HTTP/2 flow control, as a raw client would.
 *
 * Not thread-safe per stream; different streams and calls may be used from
 * different threads, on one channel or several.
 */
#ifndef TSE_TEST_GRPC_CLIENT_H
#define TSE_TEST_GRPC_CLIENT_H

#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>

#include "tracseq/client.h"

/* A client of addr, plaintext, connected lazily; aborts the test program
 * when the SDK refuses the address. Release with tse_test_channel_destroy,
 * after every stream of it finished. */
tse_client *tse_test_channel(const char *addr);

/* The same, reconnecting after initial_ms, doubling up to max_ms (a service
 * that restarts on the same port). */
tse_client *tse_test_channel_backoff(const char *addr, int initial_ms, int max_ms);

/* The same over TLS trusting roots_pem (NULL: plaintext), every call
 * carrying `authorization: Bearer <token>` (NULL: none); gRPC's default
 * backoff as tse_test_channel. */
tse_client *tse_test_channel_secure(const char *addr, const char *roots_pem, const char *token);
/* Cancels what still runs on ch and frees it. NULL is a no-op. */
void tse_test_channel_destroy(tse_client *ch);

typedef struct tse_test_status {
    grpc_status_code code;
    char details[512];
} tse_test_status;

/*
 * One unary call. *resp (when non-NULL on return) is a message of resp_desc;
 * free with protobuf_c_message_free_unpacked(*resp, NULL). md_key/md_value:
 * optional metadata pair (NULL for none). timeout_ms < 0: no deadline.
 * Returns the status code.
 */
grpc_status_code tse_test_unary(tse_client *ch, const char *method, const ProtobufCMessage *req,
                                const ProtobufCMessageDescriptor *resp_desc,
                                ProtobufCMessage **resp, tse_test_status *status, int timeout_ms,
                                const char *md_key, const char *md_value);

/* tse_test_unary with n_md metadata pairs (md may be NULL when 0). */
grpc_status_code tse_test_unary_md(tse_client *ch, const char *method, const ProtobufCMessage *req,
                                   const ProtobufCMessageDescriptor *resp_desc,
                                   ProtobufCMessage **resp, tse_test_status *status, int timeout_ms,
                                   const tse_client_metadata *md, size_t n_md);

/* tse_test_unary with the request given as raw bytes. */
grpc_status_code tse_test_unary_raw(tse_client *ch, const char *method, const void *data,
                                    size_t len, const ProtobufCMessageDescriptor *resp_desc,
                                    ProtobufCMessage **resp, tse_test_status *status,
                                    int timeout_ms);

typedef struct tse_test_stream tse_test_stream;

/* Prepares a stream (client and server streaming both work); the call
 * starts with the first send, which every stream must make before any
 * other operation but cancel. */
tse_test_stream *tse_test_stream_open(tse_client *ch, const char *method, int timeout_ms,
                                      const char *md_key, const char *md_value);
/* Metadata pairs a stream may carry (tse_test_stream_add_metadata). */
#define TSE_TEST_STREAM_MD_MAX 4

/* One more metadata pair (copied), before the first send. */
void tse_test_stream_add_metadata(tse_test_stream *s, const char *key, const char *value);

/* Queues one message; false when the stream has ended (or could not
 * start). */
bool tse_test_stream_send(tse_test_stream *s, const ProtobufCMessage *msg);
/* Sends len bytes as one message, whatever they hold (hostile-input tests). */
bool tse_test_stream_send_raw(tse_test_stream *s, const void *data, size_t len);
/* Half-closes the sending side after the queued messages. */
bool tse_test_stream_close_send(tse_test_stream *s);
/* Receives one message; NULL at end of stream or on error (or after
 * timeout_ms, when >= 0: then *timed_out is set if non-NULL, and the next
 * recv gets the message that was asked for). */
ProtobufCMessage *tse_test_stream_recv(tse_test_stream *s, const ProtobufCMessageDescriptor *desc,
                                       int timeout_ms, bool *timed_out);
/* Waits for the final status (reading and dropping what was not received)
 * and frees the stream. */
grpc_status_code tse_test_stream_finish(tse_test_stream *s, tse_test_status *status);
/* Cancels and frees the stream. */
void tse_test_stream_cancel(tse_test_stream *s);

#endif

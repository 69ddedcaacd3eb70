/*
 * grpc_client.h - a small blocking gRPC client on the C core API for
 * integration tests: unary calls and bidi/server streams, each call on its
 * own pluck completion queue.
 *
 * Not thread-safe per stream; different streams may be used from different
 * threads.
 */
#ifndef TSE_TEST_GRPC_CLIENT_H
#define TSE_TEST_GRPC_CLIENT_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>

/* Connects (lazily) to addr, plaintext. Release with grpc_channel_destroy. */
grpc_channel *tse_test_channel(const char *addr);

typedef struct tse_test_status {
    grpc_status_code code;
    char details[512];
} tse_test_status;

/*
 * One unary call. *resp (when non-NULL on return) is a message of resp_desc;
 * free with protobuf_c_message_free_unpacked(*resp, NULL). md_key/md_value:
 * optional metadata pair (NULL for none). Returns the status code.
 */
grpc_status_code tse_test_unary(grpc_channel *ch, const char *method, const ProtobufCMessage *req,
                                const ProtobufCMessageDescriptor *resp_desc,
                                ProtobufCMessage **resp, tse_test_status *status, int timeout_ms,
                                const char *md_key, const char *md_value);

/* tse_test_unary with the request given as raw bytes. resp must not be
 * NULL when the call may answer a message: the status comes only after it
 * was read. */
grpc_status_code tse_test_unary_raw(grpc_channel *ch, const char *method, const void *data,
                                    size_t len, const ProtobufCMessageDescriptor *resp_desc,
                                    ProtobufCMessage **resp, tse_test_status *status,
                                    int timeout_ms);

typedef struct tse_test_stream tse_test_stream;

/* Opens a stream (client and server streaming both work). */
tse_test_stream *tse_test_stream_open(grpc_channel *ch, const char *method, int timeout_ms,
                                      const char *md_key, const char *md_value);
/* Sends one message; false when the stream is broken. */
bool tse_test_stream_send(tse_test_stream *s, const ProtobufCMessage *msg);
/* Sends len bytes as one message, whatever they hold (hostile-input tests). */
bool tse_test_stream_send_raw(tse_test_stream *s, const void *data, size_t len);
/* Half-closes the sending side. */
bool tse_test_stream_close_send(tse_test_stream *s);
/* Receives one message; NULL at end of stream or on error (or after
 * timeout_ms, when >= 0: then *timed_out is set if non-NULL). */
ProtobufCMessage *tse_test_stream_recv(tse_test_stream *s, const ProtobufCMessageDescriptor *desc,
                                       int timeout_ms, bool *timed_out);
/* Waits for the final status and frees the stream. */
grpc_status_code tse_test_stream_finish(tse_test_stream *s, tse_test_status *status);
/* Cancels and frees the stream. */
void tse_test_stream_cancel(tse_test_stream *s);

#endif

/*
 * reflection.h - the answers of gRPC server reflection (grpc.reflection.v1
 * and v1alpha), computed from a serialized FileDescriptorSet.
 *
 * This module does no I/O: it turns one serialized ServerReflectionRequest
 * into one serialized ServerReflectionResponse. The transport owns the
 * stream. The index is built once at start and is read-only afterwards, so
 * any number of threads may answer from it at once.
 */
#ifndef TSE_REFLECTION_REFLECTION_H
#define TSE_REFLECTION_REFLECTION_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct tse_reflection tse_reflection;

typedef enum tse_reflection_version {
    TSE_REFLECTION_V1ALPHA,
    TSE_REFLECTION_V1
} tse_reflection_version;

/*
 * Indexes the descriptor set (borrowed; must outlive the index) and the list
 * of services to announce (copied; NULL-terminated array of full names).
 * Returns NULL with err set when the set does not parse.
 * Release with tse_reflection_destroy.
 */
tse_reflection *tse_reflection_create(const uint8_t *descriptor_set, size_t len,
                                      const char *const *services, tse_error *err);
void tse_reflection_destroy(tse_reflection *r); /* NULL is a no-op */

/*
 * Answers one request. On TSE_OK *out is a malloc'd serialized
 * ServerReflectionResponse of the given version (caller frees with free);
 * a request naming an unknown file or symbol is answered with an
 * error_response (NOT_FOUND), not a failure. Fails with TSE_INVALID only when
 * the request bytes do not parse.
 */
tse_status tse_reflection_answer(const tse_reflection *r, tse_reflection_version version,
                                 const uint8_t *request, size_t request_len, uint8_t **out,
                                 size_t *out_len, tse_error *err);

#endif

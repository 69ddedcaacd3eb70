/*
 * pbunpack.c - scan, then unpack through our allocator; see pbunpack.h.
 */
#include "codec/pbunpack.h"

#include <stdbool.h>
#include <stdio.h>

#include "codec/pbscan.h"
#include "common/alloc.h"

/* One unpack's allocator state: whether an allocation failed. */
typedef struct unpack_state {
    bool out_of_memory;
} unpack_state;

static void *unpack_alloc(void *data, size_t size)
{
    unpack_state *st = data;
    void *p = tse_malloc(size);

    if (p == NULL)
        st->out_of_memory = true;
    return p;
}

static void unpack_free(void *data, void *ptr)
{
    (void)data;
    tse_free(ptr);
}

static tse_status check(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                        unsigned max_depth, tse_pbscan_info *info, tse_error *err)
{
    char why[TSE_ERROR_MESSAGE_MAX];

    switch (tse_pbscan_with(desc, data, len, max_depth, info, err)) {
    case TSE_PBSCAN_OK: return TSE_OK;
    case TSE_PBSCAN_MALFORMED:
        if (err != NULL) {
            snprintf(why, sizeof(why), "%s", err->message);
            tse_error_set(err, TSE_INVALID, "request", "not a valid %s (%s)", desc->name, why);
        }
        return TSE_INVALID;
    default: return TSE_INVALID; /* err names the field */
    }
}

tse_status tse_pb_check(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                        unsigned max_depth, tse_error *err)
{
    return check(desc, data, len, max_depth, NULL, err);
}

tse_status tse_pb_check_with(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                             size_t len, unsigned max_depth, tse_pbscan_info *info, tse_error *err)
{
    return check(desc, data, len, max_depth, info, err);
}

tse_status tse_pb_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                         unsigned max_depth, ProtobufCMessage **out, tse_error *err)
{
    return tse_pb_unpack_with(desc, data, len, max_depth, out, NULL, err);
}

tse_status tse_pb_unpack_with(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                              size_t len, unsigned max_depth, ProtobufCMessage **out,
                              tse_pbscan_info *info, tse_error *err)
{
    tse_status rc;

    *out = NULL;
    /* Nesting is bounded before protobuf-c recurses into it. */
    rc = check(desc, data, len, max_depth, info, err);
    if (rc != TSE_OK)
        return rc;
    return tse_pb_unpack_scanned(desc, data, len, out, err);
}

tse_status tse_pb_unpack_scanned(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                                 size_t len, ProtobufCMessage **out, tse_error *err)
{
    unpack_state st = {false};
    ProtobufCAllocator allocator = {unpack_alloc, unpack_free, &st};
    static const uint8_t empty[1];

    *out = protobuf_c_message_unpack(desc, &allocator, len, data != NULL ? data : empty);
    if (*out != NULL)
        return TSE_OK;
    if (st.out_of_memory)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory decoding a %s", desc->name);
    return tse_error_set(err, TSE_INVALID, "request", "not a valid %s", desc->name);
}

/*
 * pbjson_decode_scalar.c - JSON -> the non-message values of a field:
 * integers (as numbers or decimal strings, range-checked for their type),
 * floats and doubles ("NaN" and "Infinity" included), bools, enums (by name
 * or number), strings and base64 bytes.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codec/base64.h"
#include "codec/pbjson_internal.h"
#include "common/alloc.h"

static const char *const type_names[] = {
    "int32",   "sint32", "sfixed32", "int64", "sint64", "sfixed64", "uint32", "fixed32", "uint64",
    "fixed64", "float",  "double",   "bool",  "enum",   "string",   "bytes",  "message",
};

const char *tse_pbj_type_name(ProtobufCType t)
{
    return (unsigned)t < sizeof(type_names) / sizeof(type_names[0]) ? type_names[t] : "value";
}

int tse_pbj_parse_integer_text(const char *s, int *neg, uint64_t *mag)
{
    uint64_t v = 0;

    *neg = *s == '-';
    s += *neg;
    if (!is_digit(*s))
        return 0;
    for (; is_digit(*s); s++) {
        unsigned digit = (unsigned)(*s - '0');

        if (v > (UINT64_MAX - digit) / 10)
            return 0;
        v = v * 10 + digit;
    }
    *mag = v;
    return *s == '\0';
}

/* A JSON number, or a string holding a decimal integer, as sign+magnitude. */
static int json_integer_parts(const json_t *j, int *neg, uint64_t *mag)
{
    if (json_is_integer(j)) {
        json_int_t v = json_integer_value(j);

        *neg = v < 0;
        *mag = v < 0 ? (uint64_t)(-(v + 1)) + 1 : (uint64_t)v;
        return 1;
    }
    if (json_is_real(j)) {
        double v = json_real_value(j);

        if (!isfinite(v) || v != floor(v) || fabs(v) >= 18446744073709551616.0)
            return 0;
        *neg = v < 0;
        *mag = (uint64_t)fabs(v);
        return 1;
    }
    if (json_is_string(j) && strlen(json_string_value(j)) == json_string_length(j))
        return tse_pbj_parse_integer_text(json_string_value(j), neg, mag);
    return 0;
}

int tse_pbj_store_integer(ProtobufCType t, int neg, uint64_t mag, void *dst)
{
    int64_t sv = neg && mag > 0 ? -(int64_t)(mag - 1) - 1 : (int64_t)mag;

    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        if (mag > (neg ? 2147483648u : 2147483647u))
            return -1;
        *(int32_t *)dst = (int32_t)sv;
        return 0;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if ((neg && mag > 0) || mag > UINT32_MAX)
            return -1;
        *(uint32_t *)dst = (uint32_t)mag;
        return 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (mag > (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX))
            return -1;
        *(int64_t *)dst = sv;
        return 0;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if (neg && mag > 0)
            return -1;
        *(uint64_t *)dst = mag;
        return 0;
    default: return -1;
    }
}

static tse_status decode_integer(decoder *d, ProtobufCType t, const json_t *j, void *dst)
{
    uint64_t mag;
    int neg;

    if (!json_integer_parts(j, &neg, &mag))
        return tse_pbj_invalid(d, "must be an integer (%s), as a number or a decimal string",
                               tse_pbj_type_name(t));
    if (tse_pbj_store_integer(t, neg, mag, dst) != 0)
        return tse_pbj_invalid(d, "is out of range for %s", tse_pbj_type_name(t));
    return TSE_OK;
}

/* True for text in JSON's number grammar (strtod alone takes hex, "inf"...). */
static int is_json_number(const char *s)
{
    s += *s == '-';
    if (*s == '0')
        s++;
    else if (is_digit(*s))
        while (is_digit(*s))
            s++;
    else
        return 0;
    if (*s == '.') {
        if (!is_digit(*++s))
            return 0;
        while (is_digit(*s))
            s++;
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        s += *s == '+' || *s == '-';
        if (!is_digit(*s))
            return 0;
        while (is_digit(*s))
            s++;
    }
    return *s == '\0';
}

static tse_status read_number_text(decoder *d, const char *s, double *v)
{
    if (strcmp(s, "NaN") == 0)
        *v = NAN;
    else if (strcmp(s, "Infinity") == 0)
        *v = INFINITY;
    else if (strcmp(s, "-Infinity") == 0)
        *v = -INFINITY;
    else if (!is_json_number(s))
        return tse_pbj_invalid(d, "must be a number or \"NaN\", \"Infinity\", \"-Infinity\"");
    else if (!isfinite(*v = strtod(s, NULL)))
        return tse_pbj_invalid(d, "is out of range for double");
    return TSE_OK;
}

static tse_status read_number(decoder *d, const json_t *j, double *v)
{
    if (json_is_integer(j))
        *v = (double)json_integer_value(j);
    else if (json_is_real(j))
        *v = json_real_value(j);
    else if (json_is_string(j))
        return read_number_text(d, json_string_value(j), v);
    else
        return tse_pbj_invalid(d, "must be a number");
    return TSE_OK;
}

static tse_status decode_float(decoder *d, const json_t *j, float *dst)
{
    double v;
    tse_status st = read_number(d, j, &v);

    if (st != TSE_OK)
        return st;
    if (isfinite(v) && fabs(v) > FLT_MAX)
        return tse_pbj_invalid(d, "is out of range for float");
    *dst = (float)v;
    return TSE_OK;
}

tse_status tse_pbj_copy_string(decoder *d, const char *s, size_t len, char **dst)
{
    char *copy;

    if (strlen(s) != len)
        return tse_pbj_invalid(d, "must not contain NUL characters");
    copy = tse_malloc(len + 1);
    if (copy == NULL)
        return tse_pbj_nomem(d);
    memcpy(copy, s, len + 1);
    *dst = copy;
    return TSE_OK;
}

static tse_status decode_string(decoder *d, const json_t *j, char **dst)
{
    if (!json_is_string(j))
        return tse_pbj_invalid(d, "must be a string");
    return tse_pbj_copy_string(d, json_string_value(j), json_string_length(j), dst);
}

static tse_status decode_bytes(decoder *d, const json_t *j, ProtobufCBinaryData *dst)
{
    uint8_t *data;
    size_t len;
    int rc;

    if (!json_is_string(j))
        return tse_pbj_invalid(d, "must be a base64 string");
    rc = tse_base64_decode(json_string_value(j), json_string_length(j), &data, &len);
    if (rc == -2)
        return tse_pbj_nomem(d);
    if (rc != 0)
        return tse_pbj_invalid(d, "must be base64 (standard or URL-safe alphabet)");
    dst->data = data;
    dst->len = len;
    return TSE_OK;
}

static tse_status decode_enum(decoder *d, const ProtobufCEnumDescriptor *ed, const json_t *j,
                              int *dst)
{
    const ProtobufCEnumValue *ev;
    int32_t n;
    tse_status st;

    if (json_is_null(j) && ed == &google__protobuf__null_value__descriptor) {
        *dst = 0;
        return TSE_OK;
    }
    if (json_is_string(j)) {
        ev = protobuf_c_enum_descriptor_get_value_by_name(ed, json_string_value(j));
        if (ev == NULL)
            return tse_pbj_invalid(d, "\"%.64s\" is not a value of %s", json_string_value(j),
                                   ed->name);
        *dst = ev->value;
        return TSE_OK;
    }
    if (!json_is_number(j))
        return tse_pbj_invalid(d, "must be a %s name or number", ed->name);
    st = decode_integer(d, PROTOBUF_C_TYPE_INT32, j, &n);
    if (st != TSE_OK)
        return st;
    if (protobuf_c_enum_descriptor_get_value(ed, n) == NULL)
        return tse_pbj_invalid(d, "%d is not a value of %s", (int)n, ed->name);
    *dst = n;
    return TSE_OK;
}

tse_status tse_pbj_decode_scalar(decoder *d, const ProtobufCFieldDescriptor *f, const json_t *j,
                                 void *dst)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_FLOAT: return decode_float(d, j, dst);
    case PROTOBUF_C_TYPE_DOUBLE: return read_number(d, j, dst);
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(j))
            return tse_pbj_invalid(d, "must be true or false");
        *(protobuf_c_boolean *)dst = json_is_true(j);
        return TSE_OK;
    case PROTOBUF_C_TYPE_ENUM: return decode_enum(d, f->descriptor, j, dst);
    case PROTOBUF_C_TYPE_STRING: return decode_string(d, j, dst);
    case PROTOBUF_C_TYPE_BYTES: return decode_bytes(d, j, dst);
    case PROTOBUF_C_TYPE_MESSAGE:
        return tse_error_set(d->err, TSE_INTERNAL, d->path, "message decoded as a scalar");
    default: return decode_integer(d, f->type, j, dst);
    }
}

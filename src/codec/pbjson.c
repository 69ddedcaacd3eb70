/*
 * pbjson.c - the generic JSON <-> protobuf transcoder; see pbjson.h.
 *
 * Everything is driven by protobuf-c descriptors; the only types known by
 * name are the well-known ones with a special JSON form (Timestamp, Struct,
 * Value, ListValue, NullValue).
 *
 * Invariants:
 * - Every message built here is one malloc'ed block set up with
 *   protobuf_c_message_init, and everything it points to (strings, arrays,
 *   bytes, submessages) is malloc'ed on its own. A repeated field's count is
 *   raised only once its element is complete, and a oneof case or has_ flag
 *   only once its value is stored. So protobuf_c_message_free_unpacked(msg,
 *   NULL) frees a message whole at every step, half-built ones included,
 *   which is how every failure path cleans up.
 * - JSON nesting (objects and arrays) never exceeds TSE_PBJSON_MAX_DEPTH in
 *   either direction, so recursion depth is bounded whatever the input.
 * - Decoding errors name the culprit by its path: proto field names (never
 *   the lowerCamel spelling the client may have used) joined by ".", map and
 *   Struct keys appended as ".key", array elements as "[i]".
 */
#include "codec/pbjson.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the Timestamp range. */
#define TS_MIN_SECONDS  (-62135596800LL)
#define TS_MAX_SECONDS  253402300799LL
#define SECONDS_PER_DAY 86400
/* Days from 0001-01-01 to 1970-01-01. */
#define EPOCH_DAY       719162

/* Doubles in this range are integers exactly and print as such. */
#define MAX_EXACT_INT 9007199254740992.0

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_message(const ProtobufCFieldDescriptor *f, const ProtobufCMessageDescriptor *desc)
{
    return f->type == PROTOBUF_C_TYPE_MESSAGE && f->descriptor == desc;
}

/* ===========================================================================
 * Field names
 * ======================================================================== */

/*
 * Matches text against name with protoc's camel-casing (drop each '_' and
 * upper-case the letter after it; upper_first also upper-cases the first).
 * Returns the rest of text after the match, or NULL when it differs.
 */
static const char *camel_prefix(const char *name, const char *text, int upper_first)
{
    int upper = upper_first;

    for (; *name != '\0'; name++) {
        char c = *name;

        if (c == '_') {
            upper = 1;
            continue;
        }
        if (upper && c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        upper = 0;
        if (*text++ != c)
            return NULL;
    }
    return text;
}

/* The lowerCamel json_name of name in buf, or name itself if buf is short. */
static const char *json_name(const char *name, char *buf, size_t len)
{
    size_t n = 0;
    int upper = 0;

    for (const char *p = name; *p != '\0'; p++) {
        if (*p == '_') {
            upper = 1;
            continue;
        }
        if (n + 1 >= len)
            return name;
        buf[n++] = (upper && *p >= 'a' && *p <= 'z') ? (char)(*p - 'a' + 'A') : *p;
        upper = 0;
    }
    buf[n] = '\0';
    return buf;
}

/* The field key names: its proto name or its lowerCamel json_name. */
static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *desc,
                                                  const char *key)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(desc, key);
    const char *rest;

    if (f != NULL)
        return f;
    for (unsigned i = 0; i < desc->n_fields; i++) {
        rest = camel_prefix(desc->fields[i].name, key, 0);
        if (rest != NULL && *rest == '\0')
            return &desc->fields[i];
    }
    return NULL;
}

/*
 * protobuf-c has no map flag: a map is a repeated message whose type is the
 * synthetic entry protoc makes, "<CamelFieldName>Entry" with key = 1 and
 * value = 2. All four must hold, so an ordinary message cannot pass for one.
 */
static int is_map_field(const ProtobufCFieldDescriptor *f)
{
    const ProtobufCMessageDescriptor *e = f->descriptor;
    const char *rest;

    if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE)
        return 0;
    if (e->n_fields != 2 || e->fields[0].id != 1 || e->fields[1].id != 2)
        return 0;
    if (strcmp(e->fields[0].name, "key") != 0 || strcmp(e->fields[1].name, "value") != 0)
        return 0;
    rest = camel_prefix(f->name, e->short_name, 1);
    return rest != NULL && strcmp(rest, "Entry") == 0;
}

/* ===========================================================================
 * RFC 3339
 * ======================================================================== */

/* Days before each month (index = month - 1), common and leap years. */
static const int16_t days_before_month[2][13] = {
    {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365},
    {0, 31, 60, 91, 121, 152, 182, 213, 244, 274, 305, 335, 366},
};

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 0001-01-01 to January 1st of year y (y >= 1). */
static int64_t days_before_year(int64_t y)
{
    y -= 1;
    return y * 365 + y / 4 - y / 100 + y / 400;
}

/* Splits a day count from 0001-01-01 (>= 0) into a civil date. */
static void civil_from_days(int64_t days, int *year, int *month, int *day)
{
    int64_t y = days / 366 + 1; /* a lower bound; at most ~30 steps short */
    int leap, m = 1;
    int64_t doy;

    while (days_before_year(y + 1) <= days)
        y++;
    doy = days - days_before_year(y);
    leap = is_leap(y);
    while (m < 12 && days_before_month[leap][m] <= doy)
        m++;
    *year = (int)y;
    *month = m;
    *day = (int)(doy - days_before_month[leap][m - 1]) + 1;
}

void tse_rfc3339_format(int64_t seconds, int32_t nanos, char *buf, size_t len)
{
    char frac[11] = "";
    int64_t since_min;
    int y, mo, d, sod;

    if (buf == NULL || len == 0)
        return;
    /* Out-of-range values cannot be written in RFC 3339; clamp them. */
    seconds = seconds < TS_MIN_SECONDS ? TS_MIN_SECONDS : seconds;
    seconds = seconds > TS_MAX_SECONDS ? TS_MAX_SECONDS : seconds;
    nanos = nanos < 0 ? 0 : nanos > 999999999 ? 999999999 : nanos;

    since_min = seconds - TS_MIN_SECONDS;
    civil_from_days(since_min / SECONDS_PER_DAY, &y, &mo, &d);
    sod = (int)(since_min % SECONDS_PER_DAY);
    if (nanos % 1000000 == 0 && nanos != 0)
        snprintf(frac, sizeof(frac), ".%03d", (int)(nanos / 1000000));
    else if (nanos % 1000 == 0 && nanos != 0)
        snprintf(frac, sizeof(frac), ".%06d", (int)(nanos / 1000));
    else if (nanos != 0)
        snprintf(frac, sizeof(frac), ".%09d", (int)nanos);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d%sZ", y, mo, d, sod / 3600, sod / 60 % 60,
             sod % 60, frac);
}

/* Reads exactly n decimal digits at p; stops safely at the terminator. */
static int read_digits(const char *p, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (!is_digit(p[i]))
            return 0;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 1;
}

/* Reads ".d{1,9}" at *p, if any, as nanoseconds; advances *p. */
static int read_fraction(const char **p, int32_t *nanos)
{
    const char *s = *p;
    int32_t v = 0;
    int n = 0;

    if (*s != '.')
        return 1;
    for (s++; is_digit(*s) && n < 9; s++, n++)
        v = v * 10 + (*s - '0');
    if (n == 0 || is_digit(*s))
        return 0;
    for (; n < 9; n++)
        v *= 10;
    *nanos = v;
    *p = s;
    return 1;
}

/* Reads "Z" or "+HH:MM" / "-HH:MM" at *p as seconds east of UTC. */
static int read_offset(const char **p, int *offset)
{
    const char *s = *p;
    int h, m;

    if (*s == 'Z' || *s == 'z') {
        *offset = 0;
        *p = s + 1;
        return 1;
    }
    if (*s != '+' && *s != '-')
        return 0;
    if (!read_digits(s + 1, 2, &h) || s[3] != ':' || !read_digits(s + 4, 2, &m))
        return 0;
    if (h > 23 || m > 59)
        return 0;
    *offset = (*s == '-' ? -1 : 1) * (h * 3600 + m * 60);
    *p = s + 6;
    return 1;
}

tse_status tse_rfc3339_parse(const char *text, int64_t *seconds, int32_t *nanos)
{
    const char *p = text;
    int y, mo, d, h, mi, s, offset, leap;
    int32_t ns = 0;
    int64_t days, secs;

    if (text == NULL || !read_digits(p, 4, &y) || p[4] != '-' || !read_digits(p + 5, 2, &mo) ||
        p[7] != '-' || !read_digits(p + 8, 2, &d) || (p[10] != 'T' && p[10] != 't') ||
        !read_digits(p + 11, 2, &h) || p[13] != ':' || !read_digits(p + 14, 2, &mi) ||
        p[16] != ':' || !read_digits(p + 17, 2, &s))
        return TSE_INVALID;
    p += 19;
    if (!read_fraction(&p, &ns) || !read_offset(&p, &offset) || *p != '\0')
        return TSE_INVALID;
    if (y < 1 || mo < 1 || mo > 12 || h > 23 || mi > 59 || s > 59)
        return TSE_INVALID;
    leap = is_leap(y);
    if (d < 1 || d > days_before_month[leap][mo] - days_before_month[leap][mo - 1])
        return TSE_INVALID;
    days = days_before_year(y) - EPOCH_DAY + days_before_month[leap][mo - 1] + d - 1;
    secs = days * SECONDS_PER_DAY + h * 3600 + mi * 60 + s - offset;
    /* An offset can carry a valid local time out of the UTC range. */
    if (secs < TS_MIN_SECONDS || secs > TS_MAX_SECONDS)
        return TSE_INVALID;
    if (seconds != NULL)
        *seconds = secs;
    if (nanos != NULL)
        *nanos = ns;
    return TSE_OK;
}

/* ===========================================================================
 * Base64 and UTF-8
 * ======================================================================== */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The 6-bit value of c in the standard or the URL-safe alphabet, or -1. */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Standard base64 with padding, NUL-terminated; caller frees. */
static char *base64_encode(const uint8_t *data, size_t len)
{
    char *out = malloc((len + 2) / 3 * 4 + 1);
    size_t o = 0;

    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;

        if (i + 1 < len)
            v |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < len)
            v |= data[i + 2];
        out[o++] = b64_alphabet[v >> 18 & 63];
        out[o++] = b64_alphabet[v >> 12 & 63];
        out[o++] = i + 1 < len ? b64_alphabet[v >> 6 & 63] : '=';
        out[o++] = i + 2 < len ? b64_alphabet[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

/*
 * Decodes base64 in either alphabet, padded or not, into a new buffer (NULL
 * when empty). Returns 0, -1 for malformed text, -2 when out of memory.
 */
static int base64_decode(const char *s, size_t len, uint8_t **out, size_t *out_len)
{
    size_t core = len, pad = 0, n, o = 0;
    uint32_t acc = 0;
    uint8_t *buf;

    while (core > 0 && s[core - 1] == '=' && pad < 2) {
        core--;
        pad++;
    }
    if (core % 4 == 1 || (pad > 0 && (len % 4 != 0 || core % 4 != 4 - pad)))
        return -1;
    n = core / 4 * 3 + (core % 4 ? core % 4 - 1 : 0);
    *out = NULL;
    *out_len = 0;
    if (n == 0)
        return 0;
    buf = malloc(n);
    if (buf == NULL)
        return -2;
    for (size_t i = 0; i < core; i++) {
        int v = b64_value((unsigned char)s[i]);

        if (v < 0) {
            free(buf);
            return -1;
        }
        acc = acc << 6 | (uint32_t)v;
        if (i % 4 == 3) {
            buf[o++] = (uint8_t)(acc >> 16);
            buf[o++] = (uint8_t)(acc >> 8);
            buf[o++] = (uint8_t)acc;
        }
    }
    if (core % 4 >= 2)
        buf[o++] = (uint8_t)(acc >> (core % 4 == 2 ? 4 : 10));
    if (core % 4 == 3)
        buf[o++] = (uint8_t)(acc >> 2);
    *out = buf;
    *out_len = n;
    return 0;
}

/* Length of the valid UTF-8 sequence at s (no overlongs, no surrogates). */
static size_t utf8_sequence(const unsigned char *s)
{
    uint32_t cp;
    size_t n;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        n = 2, cp = s[0] & 0x1Fu;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        n = 3, cp = s[0] & 0x0Fu;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
        n = 4, cp = s[0] & 0x07u;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) /* also stops at the terminator */
            return 0;
        cp = cp << 6 | (s[i] & 0x3Fu);
    }
    if (n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF)))
        return 0;
    if (n == 4 && (cp < 0x10000 || cp > 0x10FFFF))
        return 0;
    return n;
}

static int utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p != '\0') {
        size_t n = utf8_sequence(p);

        if (n == 0)
            return 0;
        p += n;
    }
    return 1;
}

/* A copy of s with every invalid byte replaced by U+FFFD; caller frees. */
static char *utf8_repair(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    char *out = malloc(strlen(s) * 3 + 1);
    size_t o = 0;

    if (out == NULL)
        return NULL;
    while (*p != '\0') {
        size_t n = utf8_sequence(p);

        if (n == 0) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            p++;
            continue;
        }
        memcpy(out + o, p, n);
        o += n;
        p += n;
    }
    out[o] = '\0';
    return out;
}

/* ===========================================================================
 * Decoding: context, paths, errors
 * ======================================================================== */

typedef struct decoder {
    unsigned flags;
    tse_error *err;
    int depth;
    size_t len;     /* strlen(path) */
    char path[256]; /* longer paths are cut; err->field is shorter anyway */
} decoder;

static void path_append(decoder *d, const char *s, size_t n)
{
    size_t room = sizeof(d->path) - 1 - d->len;

    if (n > room)
        n = room;
    memcpy(d->path + d->len, s, n);
    d->len += n;
    d->path[d->len] = '\0';
}

/* Appends ".name" (just "name" at the top); returns the length to pop to. */
static size_t path_push(decoder *d, const char *name, size_t n)
{
    size_t old = d->len;

    if (old > 0)
        path_append(d, ".", 1);
    path_append(d, name, n);
    return old;
}

static size_t path_push_index(decoder *d, size_t i)
{
    char buf[32];
    size_t old = d->len;
    int n = snprintf(buf, sizeof(buf), "[%zu]", i);

    path_append(d, buf, (size_t)n);
    return old;
}

static void path_pop(decoder *d, size_t old)
{
    d->len = old;
    d->path[old] = '\0';
}

static tse_status invalid(decoder *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static tse_status invalid(decoder *d, const char *fmt, ...)
{
    char msg[TSE_ERROR_MESSAGE_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return tse_error_set(d->err, TSE_INVALID, d->path, "%s", msg);
}

static tse_status nomem(decoder *d)
{
    return tse_error_set(d->err, TSE_NOMEM, d->path, "out of memory");
}

static tse_status enter(decoder *d)
{
    if (d->depth >= TSE_PBJSON_MAX_DEPTH)
        return invalid(d, "nests deeper than %d levels", TSE_PBJSON_MAX_DEPTH);
    d->depth++;
    return TSE_OK;
}

static void leave(decoder *d)
{
    d->depth--;
}

static ProtobufCMessage *new_message(const ProtobufCMessageDescriptor *desc)
{
    ProtobufCMessage *m = malloc(desc->sizeof_message);

    if (m != NULL)
        protobuf_c_message_init(desc, m);
    return m;
}

static void *member(void *msg, unsigned offset)
{
    return (char *)msg + offset;
}

static const void *cmember(const void *msg, unsigned offset)
{
    return (const char *)msg + offset;
}

/* ===========================================================================
 * Decoding: scalars
 * ======================================================================== */

static const char *const type_names[] = {
    "int32",   "sint32", "sfixed32", "int64", "sint64", "sfixed64", "uint32", "fixed32", "uint64",
    "fixed64", "float",  "double",   "bool",  "enum",   "string",   "bytes",  "message",
};

static const char *type_name(ProtobufCType t)
{
    return (unsigned)t < sizeof(type_names) / sizeof(type_names[0]) ? type_names[t] : "value";
}

/* Parses -?[0-9]+ as sign and magnitude; 0 when malformed or >= 2^64. */
static int parse_integer_text(const char *s, int *neg, uint64_t *mag)
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
        return parse_integer_text(json_string_value(j), neg, mag);
    return 0;
}

/* Stores sign+magnitude as integer type t at dst; -1 when out of range. */
static int store_integer(ProtobufCType t, int neg, uint64_t mag, void *dst)
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
        return invalid(d, "must be an integer (%s), as a number or a decimal string", type_name(t));
    if (store_integer(t, neg, mag, dst) != 0)
        return invalid(d, "is out of range for %s", type_name(t));
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
        return invalid(d, "must be a number or \"NaN\", \"Infinity\", \"-Infinity\"");
    else if (!isfinite(*v = strtod(s, NULL)))
        return invalid(d, "is out of range for double");
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
        return invalid(d, "must be a number");
    return TSE_OK;
}

static tse_status decode_float(decoder *d, const json_t *j, float *dst)
{
    double v;
    tse_status st = read_number(d, j, &v);

    if (st != TSE_OK)
        return st;
    if (isfinite(v) && fabs(v) > FLT_MAX)
        return invalid(d, "is out of range for float");
    *dst = (float)v;
    return TSE_OK;
}

static tse_status copy_string(decoder *d, const char *s, size_t len, char **dst)
{
    char *copy;

    if (strlen(s) != len)
        return invalid(d, "must not contain NUL characters");
    copy = malloc(len + 1);
    if (copy == NULL)
        return nomem(d);
    memcpy(copy, s, len + 1);
    *dst = copy;
    return TSE_OK;
}

static tse_status decode_string(decoder *d, const json_t *j, char **dst)
{
    if (!json_is_string(j))
        return invalid(d, "must be a string");
    return copy_string(d, json_string_value(j), json_string_length(j), dst);
}

static tse_status decode_bytes(decoder *d, const json_t *j, ProtobufCBinaryData *dst)
{
    uint8_t *data;
    size_t len;
    int rc;

    if (!json_is_string(j))
        return invalid(d, "must be a base64 string");
    rc = base64_decode(json_string_value(j), json_string_length(j), &data, &len);
    if (rc == -2)
        return nomem(d);
    if (rc != 0)
        return invalid(d, "must be base64 (standard or URL-safe alphabet)");
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
            return invalid(d, "\"%.64s\" is not a value of %s", json_string_value(j), ed->name);
        *dst = ev->value;
        return TSE_OK;
    }
    if (!json_is_number(j))
        return invalid(d, "must be a %s name or number", ed->name);
    st = decode_integer(d, PROTOBUF_C_TYPE_INT32, j, &n);
    if (st != TSE_OK)
        return st;
    if (protobuf_c_enum_descriptor_get_value(ed, n) == NULL)
        return invalid(d, "%d is not a value of %s", (int)n, ed->name);
    *dst = n;
    return TSE_OK;
}

/* Decodes a non-message value of field f's type into dst. */
static tse_status decode_scalar(decoder *d, const ProtobufCFieldDescriptor *f, const json_t *j,
                                void *dst)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_FLOAT: return decode_float(d, j, dst);
    case PROTOBUF_C_TYPE_DOUBLE: return read_number(d, j, dst);
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(j))
            return invalid(d, "must be true or false");
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

/* ===========================================================================
 * Decoding: Timestamp, Struct, Value, ListValue
 * ======================================================================== */

static tse_status decode_message(decoder *d, const json_t *j,
                                 const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out);
static tse_status decode_value(decoder *d, const json_t *j, Google__Protobuf__Value **out);

static tse_status decode_timestamp(decoder *d, const json_t *j, ProtobufCMessage **out)
{
    Google__Protobuf__Timestamp *ts;
    int64_t seconds;
    int32_t nanos;

    if (!json_is_string(j) || strlen(json_string_value(j)) != json_string_length(j) ||
        tse_rfc3339_parse(json_string_value(j), &seconds, &nanos) != TSE_OK)
        return invalid(d, "must be an RFC 3339 time between years 0001 and 9999, "
                          "e.g. \"2024-06-18T10:00:00Z\"");
    ts = (Google__Protobuf__Timestamp *)new_message(&google__protobuf__timestamp__descriptor);
    if (ts == NULL)
        return nomem(d);
    ts->seconds = seconds;
    ts->nanos = nanos;
    *out = &ts->base;
    return TSE_OK;
}

static tse_status decode_struct_entry(decoder *d, const char *key, size_t key_len, const json_t *j,
                                      Google__Protobuf__Struct__FieldsEntry **out)
{
    Google__Protobuf__Struct__FieldsEntry *e;
    tse_status st;

    e = (void *)new_message(&google__protobuf__struct__fields_entry__descriptor);
    if (e == NULL)
        return nomem(d);
    st = copy_string(d, key, key_len, &e->key);
    if (st == TSE_OK)
        st = decode_value(d, j, &e->value);
    if (st != TSE_OK) {
        protobuf_c_message_free_unpacked(&e->base, NULL);
        return st;
    }
    *out = e;
    return TSE_OK;
}

static tse_status fill_struct(decoder *d, const json_t *j, Google__Protobuf__Struct *s)
{
    size_t n = json_object_size(j), key_len, old;
    const char *key;
    json_t *v;
    tse_status st;

    if (n == 0)
        return TSE_OK;
    s->fields = calloc(n, sizeof(*s->fields));
    if (s->fields == NULL)
        return nomem(d);
    json_object_keylen_foreach((json_t *)j, key, key_len, v)
    {
        old = path_push(d, key, key_len);
        st = decode_struct_entry(d, key, key_len, v, &s->fields[s->n_fields]);
        path_pop(d, old);
        if (st != TSE_OK)
            return st;
        s->n_fields++;
    }
    return TSE_OK;
}

static tse_status decode_struct(decoder *d, const json_t *j, Google__Protobuf__Struct **out)
{
    Google__Protobuf__Struct *s;
    tse_status st;

    if (!json_is_object(j))
        return invalid(d, "must be a JSON object");
    st = enter(d);
    if (st != TSE_OK)
        return st;
    s = (Google__Protobuf__Struct *)new_message(&google__protobuf__struct__descriptor);
    st = s == NULL ? nomem(d) : fill_struct(d, j, s);
    leave(d);
    if (st != TSE_OK) {
        protobuf_c_message_free_unpacked((ProtobufCMessage *)s, NULL);
        return st;
    }
    *out = s;
    return TSE_OK;
}

static tse_status fill_list(decoder *d, const json_t *j, Google__Protobuf__ListValue *l)
{
    size_t n = json_array_size(j), old;
    tse_status st;

    if (n == 0)
        return TSE_OK;
    l->values = calloc(n, sizeof(*l->values));
    if (l->values == NULL)
        return nomem(d);
    for (size_t i = 0; i < n; i++) {
        old = path_push_index(d, i);
        st = decode_value(d, json_array_get(j, i), &l->values[i]);
        path_pop(d, old);
        if (st != TSE_OK)
            return st;
        l->n_values++;
    }
    return TSE_OK;
}

static tse_status decode_list(decoder *d, const json_t *j, Google__Protobuf__ListValue **out)
{
    Google__Protobuf__ListValue *l;
    tse_status st;

    if (!json_is_array(j))
        return invalid(d, "must be a JSON array");
    st = enter(d);
    if (st != TSE_OK)
        return st;
    l = (Google__Protobuf__ListValue *)new_message(&google__protobuf__list_value__descriptor);
    st = l == NULL ? nomem(d) : fill_list(d, j, l);
    leave(d);
    if (st != TSE_OK) {
        protobuf_c_message_free_unpacked((ProtobufCMessage *)l, NULL);
        return st;
    }
    *out = l;
    return TSE_OK;
}

static tse_status fill_value(decoder *d, const json_t *j, Google__Protobuf__Value *v)
{
    tse_status st = TSE_OK;

    switch (json_typeof(j)) {
    case JSON_NULL: v->null_value = GOOGLE__PROTOBUF__NULL_VALUE__NULL_VALUE; break;
    case JSON_TRUE:
    case JSON_FALSE: v->bool_value = json_is_true(j); break;
    case JSON_INTEGER: v->number_value = (double)json_integer_value(j); break;
    case JSON_REAL:
        v->number_value = json_real_value(j);
        if (!isfinite(v->number_value))
            return invalid(d, "must be a finite number");
        break;
    case JSON_STRING:
        st = copy_string(d, json_string_value(j), json_string_length(j), &v->string_value);
        break;
    case JSON_OBJECT: st = decode_struct(d, j, &v->struct_value); break;
    case JSON_ARRAY: st = decode_list(d, j, &v->list_value); break;
    }
    return st;
}

/* The Value kind each JSON type maps to. */
static Google__Protobuf__Value__KindCase value_kind(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_NULL: return GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE;
    case JSON_TRUE:
    case JSON_FALSE: return GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
    case JSON_INTEGER:
    case JSON_REAL: return GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
    case JSON_STRING: return GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    case JSON_OBJECT: return GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
    case JSON_ARRAY: return GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
    }
    return GOOGLE__PROTOBUF__VALUE__KIND__NOT_SET;
}

static tse_status decode_value(decoder *d, const json_t *j, Google__Protobuf__Value **out)
{
    Google__Protobuf__Value *v;
    tse_status st;

    v = (Google__Protobuf__Value *)new_message(&google__protobuf__value__descriptor);
    if (v == NULL)
        return nomem(d);
    st = fill_value(d, j, v);
    if (st != TSE_OK) {
        protobuf_c_message_free_unpacked(&v->base, NULL);
        return st;
    }
    /* Set last: free_unpacked follows the case into the union. */
    v->kind_case = value_kind(j);
    *out = v;
    return TSE_OK;
}

/* ===========================================================================
 * Decoding: messages, fields, repeated fields and maps
 * ======================================================================== */

/* JSON null sets a Value (or NullValue) field instead of leaving it unset. */
static int null_is_value(const ProtobufCFieldDescriptor *f)
{
    return is_message(f, &google__protobuf__value__descriptor) ||
           (f->type == PROTOBUF_C_TYPE_ENUM &&
            f->descriptor == &google__protobuf__null_value__descriptor);
}

/* Records that singular field f of msg now holds a value. */
static void mark_present(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        *(uint32_t *)member(msg, f->quantifier_offset) = f->id;
    else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
             f->type != PROTOBUF_C_TYPE_MESSAGE)
        *(protobuf_c_boolean *)member(msg, f->quantifier_offset) = 1;
}

/* Decodes one element or singular value of f's type into slot. */
static tse_status decode_into(decoder *d, const ProtobufCFieldDescriptor *f, const json_t *j,
                              void *slot)
{
    if (f->type == PROTOBUF_C_TYPE_MESSAGE)
        return decode_message(d, j, f->descriptor, slot);
    return decode_scalar(d, f, j, slot);
}

static tse_status decode_singular(decoder *d, const ProtobufCFieldDescriptor *f, const json_t *j,
                                  ProtobufCMessage *msg)
{
    tse_status st = decode_into(d, f, j, member(msg, f->offset));

    if (st == TSE_OK)
        mark_present(msg, f);
    return st;
}

/* Size of one element of a repeated field, as protobuf-c lays arrays out. */
static size_t element_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: return sizeof(uint64_t);
    case PROTOBUF_C_TYPE_FLOAT: return sizeof(float);
    case PROTOBUF_C_TYPE_DOUBLE: return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
    default: return sizeof(uint32_t);
    }
}

static tse_status fill_array(decoder *d, const ProtobufCFieldDescriptor *f, const json_t *j,
                             ProtobufCMessage *msg)
{
    size_t n = json_array_size(j), size = element_size(f->type), old;
    size_t *count = member(msg, f->quantifier_offset);
    char *arr;
    tse_status st;

    if (n == 0)
        return TSE_OK;
    arr = calloc(n, size);
    if (arr == NULL)
        return nomem(d);
    *(void **)member(msg, f->offset) = arr;
    for (size_t i = 0; i < n; i++) {
        const json_t *el = json_array_get(j, i);

        old = path_push_index(d, i);
        if (json_is_null(el) && !null_is_value(f))
            st = invalid(d, "must not be null");
        else
            st = decode_into(d, f, el, arr + i * size);
        path_pop(d, old);
        if (st != TSE_OK)
            return st;
        (*count)++;
    }
    return TSE_OK;
}

static tse_status decode_map_key(decoder *d, const ProtobufCFieldDescriptor *kf, const char *key,
                                 size_t key_len, ProtobufCMessage *entry)
{
    void *dst = member(entry, kf->offset);
    uint64_t mag;
    int neg;

    if (kf->type == PROTOBUF_C_TYPE_STRING)
        return copy_string(d, key, key_len, dst);
    if (strlen(key) != key_len)
        return invalid(d, "map key must not contain NUL characters");
    if (kf->type == PROTOBUF_C_TYPE_BOOL) {
        if (strcmp(key, "true") != 0 && strcmp(key, "false") != 0)
            return invalid(d, "map key must be \"true\" or \"false\"");
        *(protobuf_c_boolean *)dst = key[0] == 't';
        return TSE_OK;
    }
    if (!parse_integer_text(key, &neg, &mag) || store_integer(kf->type, neg, mag, dst) != 0)
        return invalid(d, "map key must be a %s in decimal", type_name(kf->type));
    return TSE_OK;
}

static tse_status decode_map_entry(decoder *d, const ProtobufCMessageDescriptor *ed,
                                   const char *key, size_t key_len, const json_t *j,
                                   ProtobufCMessage **out)
{
    const ProtobufCFieldDescriptor *vf = &ed->fields[1];
    ProtobufCMessage *e = new_message(ed);
    tse_status st;

    if (e == NULL)
        return nomem(d);
    st = decode_map_key(d, &ed->fields[0], key, key_len, e);
    if (st == TSE_OK && json_is_null(j) && !null_is_value(vf))
        st = invalid(d, "must not be null");
    else if (st == TSE_OK)
        st = decode_singular(d, vf, j, e);
    if (st != TSE_OK) {
        protobuf_c_message_free_unpacked(e, NULL);
        return st;
    }
    *out = e;
    return TSE_OK;
}

static tse_status fill_map(decoder *d, const ProtobufCFieldDescriptor *f, const json_t *j,
                           ProtobufCMessage *msg)
{
    size_t n = json_object_size(j), key_len, old;
    size_t *count = member(msg, f->quantifier_offset);
    ProtobufCMessage **entries;
    const char *key;
    json_t *v;
    tse_status st;

    if (n == 0)
        return TSE_OK;
    entries = calloc(n, sizeof(*entries));
    if (entries == NULL)
        return nomem(d);
    *(ProtobufCMessage ***)member(msg, f->offset) = entries;
    json_object_keylen_foreach((json_t *)j, key, key_len, v)
    {
        old = path_push(d, key, key_len);
        st = decode_map_entry(d, f->descriptor, key, key_len, v, &entries[*count]);
        path_pop(d, old);
        if (st != TSE_OK)
            return st;
        (*count)++;
    }
    return TSE_OK;
}

static tse_status decode_repeated(decoder *d, const ProtobufCFieldDescriptor *f, const json_t *j,
                                  ProtobufCMessage *msg)
{
    int map = is_map_field(f);
    tse_status st;

    if (map ? !json_is_object(j) : !json_is_array(j))
        return invalid(d, map ? "must be a JSON object" : "must be a JSON array");
    st = enter(d);
    if (st != TSE_OK)
        return st;
    st = map ? fill_map(d, f, j, msg) : fill_array(d, f, j, msg);
    leave(d);
    return st;
}

/* The name of the oneof member already set in msg, for f's oneof. */
static const char *oneof_member_set(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    const ProtobufCMessageDescriptor *desc = msg->descriptor;
    uint32_t set = *(const uint32_t *)cmember(msg, f->quantifier_offset);

    for (unsigned i = 0; set != 0 && i < desc->n_fields; i++) {
        if (desc->fields[i].id == set)
            return desc->fields[i].name;
    }
    return NULL;
}

/* Decodes the value j of field f; the path already names f. */
static tse_status decode_field(decoder *d, const ProtobufCFieldDescriptor *f, const json_t *j,
                               ProtobufCMessage *msg)
{
    const char *other;

    if (json_is_null(j) && (f->label == PROTOBUF_C_LABEL_REPEATED || !null_is_value(f)))
        return TSE_OK; /* null means unset */
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return decode_repeated(d, f, j, msg);
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        other = oneof_member_set(msg, f);
        if (other != NULL)
            return invalid(d, "cannot be set together with \"%s\" (one of them only)", other);
    }
    return decode_singular(d, f, j, msg);
}

/* Decodes one key of a message object; seen[i] marks fields already given. */
static tse_status decode_member(decoder *d, const char *key, size_t key_len, const json_t *j,
                                ProtobufCMessage *msg, unsigned char *seen)
{
    const ProtobufCFieldDescriptor *f = NULL;
    size_t old;
    tse_status st;

    if (strlen(key) == key_len)
        f = find_field(msg->descriptor, key);
    if (f == NULL && (d->flags & TSE_PBJSON_IGNORE_UNKNOWN))
        return TSE_OK;
    old = path_push(d, f != NULL ? f->name : key, f != NULL ? strlen(f->name) : strlen(key));
    if (f == NULL)
        st = invalid(d, "unknown field \"%.64s\" in %s", key, msg->descriptor->name);
    else if (seen[f - msg->descriptor->fields]++)
        st = invalid(d, "is given twice (by its proto and its JSON name)");
    else
        st = decode_field(d, f, j, msg);
    path_pop(d, old);
    return st;
}

static tse_status fill_message(decoder *d, const json_t *j, ProtobufCMessage *msg)
{
    unsigned char *seen = calloc(msg->descriptor->n_fields + 1u, 1);
    size_t key_len;
    const char *key;
    json_t *v;
    tse_status st = TSE_OK;

    if (seen == NULL)
        return nomem(d);
    json_object_keylen_foreach((json_t *)j, key, key_len, v)
    {
        st = decode_member(d, key, key_len, v, msg, seen);
        if (st != TSE_OK)
            break;
    }
    free(seen);
    return st;
}

static tse_status decode_object(decoder *d, const json_t *j, const ProtobufCMessageDescriptor *desc,
                                ProtobufCMessage **out)
{
    ProtobufCMessage *msg;
    tse_status st;

    if (!json_is_object(j))
        return invalid(d, "must be a JSON object");
    st = enter(d);
    if (st != TSE_OK)
        return st;
    msg = new_message(desc);
    st = msg == NULL ? nomem(d) : fill_message(d, j, msg);
    leave(d);
    if (st != TSE_OK) {
        protobuf_c_message_free_unpacked(msg, NULL);
        return st;
    }
    *out = msg;
    return TSE_OK;
}

/* Builds a message of type desc from j; on failure *out is untouched. */
static tse_status decode_message(decoder *d, const json_t *j,
                                 const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out)
{
    tse_status st;

    if (desc == &google__protobuf__timestamp__descriptor)
        return decode_timestamp(d, j, out);
    if (desc == &google__protobuf__struct__descriptor) {
        Google__Protobuf__Struct *s = NULL;

        st = decode_struct(d, j, &s);
        if (st == TSE_OK)
            *out = &s->base;
        return st;
    }
    if (desc == &google__protobuf__list_value__descriptor) {
        Google__Protobuf__ListValue *l = NULL;

        st = decode_list(d, j, &l);
        if (st == TSE_OK)
            *out = &l->base;
        return st;
    }
    if (desc == &google__protobuf__value__descriptor) {
        Google__Protobuf__Value *v = NULL;

        st = decode_value(d, j, &v);
        if (st == TSE_OK)
            *out = &v->base;
        return st;
    }
    return decode_object(d, j, desc, out);
}

static void decoder_init(decoder *d, unsigned flags, tse_error *err)
{
    d->flags = flags;
    d->err = err;
    d->depth = 0;
    d->len = 0;
    d->path[0] = '\0';
    tse_error_clear(err);
}

tse_status tse_pbjson_to_message(const json_t *json, const ProtobufCMessageDescriptor *desc,
                                 unsigned flags, ProtobufCMessage **out, tse_error *err)
{
    decoder d;
    ProtobufCMessage *msg = NULL;
    tse_status st;

    decoder_init(&d, flags, err);
    if (json == NULL || desc == NULL || out == NULL)
        return tse_error_set(err, TSE_INVALID, NULL, "no JSON or no message type given");
    st = decode_message(&d, json, desc, &msg);
    if (st == TSE_OK)
        *out = msg;
    return st;
}

tse_status tse_pbjson_to_struct(const json_t *obj, Google__Protobuf__Struct **out, tse_error *err)
{
    decoder d;
    Google__Protobuf__Struct *s = NULL;
    tse_status st;

    decoder_init(&d, 0, err);
    if (obj == NULL || out == NULL)
        return tse_error_set(err, TSE_INVALID, NULL, "no JSON given");
    st = decode_struct(&d, obj, &s);
    if (st == TSE_OK)
        *out = s;
    return st;
}

tse_status tse_pbjson_to_value(const json_t *json, Google__Protobuf__Value **out, tse_error *err)
{
    decoder d;
    Google__Protobuf__Value *v = NULL;
    tse_status st;

    decoder_init(&d, 0, err);
    if (json == NULL || out == NULL)
        return tse_error_set(err, TSE_INVALID, NULL, "no JSON given");
    st = decode_value(&d, json, &v);
    if (st == TSE_OK)
        *out = v;
    return st;
}

/* ===========================================================================
 * Encoding: scalars
 * ======================================================================== */

typedef struct encoder {
    unsigned flags;
    int depth;
} encoder;

static int enc_enter(encoder *e)
{
    if (e->depth >= TSE_PBJSON_MAX_DEPTH)
        return -1;
    e->depth++;
    return 0;
}

/* A JSON string of s, repairing invalid UTF-8 that the wire may carry. */
static json_t *string_json(const char *s)
{
    char *fixed;
    json_t *j;

    if (s == NULL)
        return json_string("");
    if (utf8_valid(s))
        return json_string_nocheck(s);
    fixed = utf8_repair(s);
    j = fixed != NULL ? json_string_nocheck(fixed) : NULL;
    free(fixed);
    return j;
}

/* Sets obj[key] = v (stealing v), repairing invalid UTF-8 in key. */
static int set_key(json_t *obj, const char *key, json_t *v)
{
    char *fixed;
    int rc;

    if (v == NULL)
        return -1;
    if (utf8_valid(key))
        return json_object_set_new_nocheck(obj, key, v);
    fixed = utf8_repair(key);
    if (fixed == NULL) {
        json_decref(v);
        return -1;
    }
    rc = json_object_set_new_nocheck(obj, fixed, v);
    free(fixed);
    return rc;
}

/*
 * A finite number: integral values within 2^53 become JSON integers, so
 * 3 goes out as 3 rather than 3.0 (as JavaScript would print it).
 */
static json_t *finite_json(double v)
{
    if (v == floor(v) && fabs(v) <= MAX_EXACT_INT && !(v == 0 && signbit(v)))
        return json_integer((json_int_t)v);
    return json_real(v);
}

static json_t *double_json(double v)
{
    if (isnan(v))
        return json_string("NaN");
    if (isinf(v))
        return json_string(v > 0 ? "Infinity" : "-Infinity");
    return finite_json(v);
}

/* A float as the shortest decimal that reads back as the same float. */
static json_t *float_json(float f)
{
    char buf[32];

    if (!isfinite(f))
        return double_json(f);
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f)
            break;
    }
    return finite_json(strtod(buf, NULL));
}

static json_t *bytes_json(const ProtobufCBinaryData *b)
{
    char *text = base64_encode(b->data, b->data != NULL ? b->len : 0);
    json_t *j = text != NULL ? json_string_nocheck(text) : NULL;

    free(text);
    return j;
}

static json_t *enum_json(const ProtobufCEnumDescriptor *ed, int v)
{
    const ProtobufCEnumValue *ev;

    if (ed == &google__protobuf__null_value__descriptor)
        return json_null();
    ev = protobuf_c_enum_descriptor_get_value(ed, v);
    return ev != NULL ? json_string(ev->name) : json_integer(v);
}

static json_t *int64_json(const void *p, int is_signed)
{
    char buf[32];

    if (is_signed)
        snprintf(buf, sizeof(buf), "%" PRId64, *(const int64_t *)p);
    else
        snprintf(buf, sizeof(buf), "%" PRIu64, *(const uint64_t *)p);
    return json_string(buf);
}

/* The JSON form of the non-message value of f's type at p. */
static json_t *encode_scalar(const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32: return json_integer(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: return json_integer(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: return int64_json(p, 1);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: return int64_json(p, 0);
    case PROTOBUF_C_TYPE_FLOAT: return float_json(*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE: return double_json(*(const double *)p);
    case PROTOBUF_C_TYPE_BOOL: return json_boolean(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_ENUM: return enum_json(f->descriptor, *(const int *)p);
    case PROTOBUF_C_TYPE_STRING: return string_json(*(char *const *)p);
    case PROTOBUF_C_TYPE_BYTES: return bytes_json(p);
    case PROTOBUF_C_TYPE_MESSAGE: break;
    }
    return NULL;
}

/* True when the proto3 value of type t at p is its type's default. */
static int is_default(ProtobufCType t, const void *p)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: return *(const uint64_t *)p == 0;
    case PROTOBUF_C_TYPE_FLOAT: return *(const float *)p == 0;
    case PROTOBUF_C_TYPE_DOUBLE: return *(const double *)p == 0;
    case PROTOBUF_C_TYPE_BOOL: return !*(const protobuf_c_boolean *)p;
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;

        return s == NULL || s[0] == '\0';
    }
    case PROTOBUF_C_TYPE_BYTES: return ((const ProtobufCBinaryData *)p)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE: return *(void *const *)p == NULL;
    default: return *(const uint32_t *)p == 0;
    }
}

/* ===========================================================================
 * Encoding: messages
 * ======================================================================== */

static json_t *encode_message(encoder *e, const ProtobufCMessage *m,
                              const ProtobufCMessageDescriptor *desc);
static json_t *encode_value(encoder *e, const Google__Protobuf__Value *v);

static json_t *encode_struct(encoder *e, const Google__Protobuf__Struct *s)
{
    json_t *obj;

    if (enc_enter(e) != 0)
        return NULL;
    obj = json_object();
    for (size_t i = 0; obj != NULL && s != NULL && i < s->n_fields; i++) {
        const Google__Protobuf__Struct__FieldsEntry *fe = s->fields[i];

        if (fe == NULL)
            continue;
        if (set_key(obj, fe->key != NULL ? fe->key : "", encode_value(e, fe->value)) != 0) {
            json_decref(obj);
            obj = NULL;
        }
    }
    e->depth--;
    return obj;
}

static json_t *encode_list(encoder *e, const Google__Protobuf__ListValue *l)
{
    json_t *arr;

    if (enc_enter(e) != 0)
        return NULL;
    arr = json_array();
    for (size_t i = 0; arr != NULL && l != NULL && i < l->n_values; i++) {
        if (json_array_append_new(arr, encode_value(e, l->values[i])) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    e->depth--;
    return arr;
}

/* JSON has no NaN or infinity; a Value holding one goes out as null. */
static json_t *encode_value(encoder *e, const Google__Protobuf__Value *v)
{
    if (v == NULL)
        return json_null();
    switch (v->kind_case) {
    case GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE:
        return isfinite(v->number_value) ? finite_json(v->number_value) : json_null();
    case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE: return string_json(v->string_value);
    case GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE: return json_boolean(v->bool_value);
    case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE: return encode_struct(e, v->struct_value);
    case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE: return encode_list(e, v->list_value);
    default: return json_null();
    }
}

static json_t *encode_timestamp(const Google__Protobuf__Timestamp *ts)
{
    char buf[40];

    tse_rfc3339_format(ts->seconds, ts->nanos, buf, sizeof(buf));
    return json_string(buf);
}

/* The value of singular field f of m (or of a map entry's key/value). */
static json_t *encode_singular(encoder *e, const ProtobufCMessage *m,
                               const ProtobufCFieldDescriptor *f)
{
    const void *p = cmember(m, f->offset);

    if (f->type == PROTOBUF_C_TYPE_MESSAGE)
        return encode_message(e, *(const ProtobufCMessage *const *)p, f->descriptor);
    return encode_scalar(f, p);
}

/* A map key as JSON object key text, in buf unless it is a string. */
static const char *map_key_text(const ProtobufCMessage *entry, char *buf, size_t len)
{
    const ProtobufCFieldDescriptor *kf = &entry->descriptor->fields[0];
    const void *p = cmember(entry, kf->offset);

    switch (kf->type) {
    case PROTOBUF_C_TYPE_STRING: return *(char *const *)p != NULL ? *(char *const *)p : "";
    case PROTOBUF_C_TYPE_BOOL: return *(const protobuf_c_boolean *)p ? "true" : "false";
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: snprintf(buf, len, "%" PRId64, *(const int64_t *)p); break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: snprintf(buf, len, "%" PRIu64, *(const uint64_t *)p); break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: snprintf(buf, len, "%" PRIu32, *(const uint32_t *)p); break;
    default: snprintf(buf, len, "%" PRId32, *(const int32_t *)p); break;
    }
    return buf;
}

static json_t *encode_map(encoder *e, const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    size_t n = *(const size_t *)cmember(m, f->quantifier_offset);
    ProtobufCMessage *const *entries = *(ProtobufCMessage *const *const *)cmember(m, f->offset);
    char buf[32];
    json_t *obj;

    if (enc_enter(e) != 0)
        return NULL;
    obj = json_object();
    for (size_t i = 0; obj != NULL && i < n; i++) {
        const ProtobufCMessage *en = entries[i];

        if (en == NULL)
            continue;
        if (set_key(obj, map_key_text(en, buf, sizeof(buf)),
                    encode_singular(e, en, &en->descriptor->fields[1])) != 0) {
            json_decref(obj);
            obj = NULL;
        }
    }
    e->depth--;
    return obj;
}

static json_t *encode_array(encoder *e, const ProtobufCMessage *m,
                            const ProtobufCFieldDescriptor *f)
{
    size_t n = *(const size_t *)cmember(m, f->quantifier_offset), size = element_size(f->type);
    const char *arr = *(const char *const *)cmember(m, f->offset);
    json_t *out, *v;

    if (enc_enter(e) != 0)
        return NULL;
    out = json_array();
    for (size_t i = 0; out != NULL && i < n; i++) {
        const void *p = arr + i * size;

        if (f->type == PROTOBUF_C_TYPE_MESSAGE)
            v = encode_message(e, *(const ProtobufCMessage *const *)p, f->descriptor);
        else
            v = encode_scalar(f, p);
        if (json_array_append_new(out, v) != 0) {
            json_decref(out);
            out = NULL;
        }
    }
    e->depth--;
    return out;
}

/* Whether singular, non-oneof field f of m holds a value worth writing. */
static int is_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    const void *p = cmember(m, f->offset);

    switch (f->label) {
    case PROTOBUF_C_LABEL_REQUIRED: return 1;
    case PROTOBUF_C_LABEL_OPTIONAL:
        if (f->type == PROTOBUF_C_TYPE_STRING)
            return *(char *const *)p != NULL && *(char *const *)p != f->default_value;
        if (f->type == PROTOBUF_C_TYPE_MESSAGE)
            return *(void *const *)p != NULL;
        return *(const protobuf_c_boolean *)cmember(m, f->quantifier_offset);
    default: return !is_default(f->type, p);
    }
}

/*
 * The JSON value of field f of m, or NULL with *skip set when f is left
 * out: oneof members not chosen, and defaults unless EMIT_DEFAULTS (which
 * writes an unset submessage as null).
 */
static json_t *encode_field(encoder *e, const ProtobufCMessage *m,
                            const ProtobufCFieldDescriptor *f, int *skip)
{
    int emit_all = (e->flags & TSE_PBJSON_EMIT_DEFAULTS) != 0;

    *skip = 0;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        if (*(const uint32_t *)cmember(m, f->quantifier_offset) == f->id)
            return encode_singular(e, m, f);
    } else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        if (emit_all || *(const size_t *)cmember(m, f->quantifier_offset) > 0)
            return is_map_field(f) ? encode_map(e, m, f) : encode_array(e, m, f);
    } else if (is_present(m, f)) {
        return encode_singular(e, m, f);
    } else if (emit_all) {
        return f->type == PROTOBUF_C_TYPE_MESSAGE ? json_null() : encode_singular(e, m, f);
    }
    *skip = 1;
    return NULL;
}

static json_t *encode_object(encoder *e, const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *desc = m->descriptor;
    char name[128];
    json_t *obj;

    if (enc_enter(e) != 0)
        return NULL;
    obj = json_object();
    for (unsigned i = 0; obj != NULL && i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        int skip;
        json_t *v = encode_field(e, m, f, &skip);
        const char *key = f->name;

        if (skip)
            continue;
        if (e->flags & TSE_PBJSON_CAMEL_CASE)
            key = json_name(f->name, name, sizeof(name));
        if (v == NULL || json_object_set_new(obj, key, v) != 0) {
            json_decref(obj);
            obj = NULL;
        }
    }
    e->depth--;
    return obj;
}

/* A submessage that is chosen but absent goes out as its default. */
static json_t *encode_default(encoder *e, const ProtobufCMessageDescriptor *desc)
{
    ProtobufCMessage *m = new_message(desc);
    json_t *j;

    if (m == NULL)
        return NULL;
    j = encode_message(e, m, desc);
    protobuf_c_message_free_unpacked(m, NULL);
    return j;
}

static json_t *encode_message(encoder *e, const ProtobufCMessage *m,
                              const ProtobufCMessageDescriptor *desc)
{
    if (m == NULL)
        return encode_default(e, desc);
    desc = m->descriptor;
    if (desc == &google__protobuf__timestamp__descriptor)
        return encode_timestamp((const Google__Protobuf__Timestamp *)m);
    if (desc == &google__protobuf__struct__descriptor)
        return encode_struct(e, (const Google__Protobuf__Struct *)m);
    if (desc == &google__protobuf__list_value__descriptor)
        return encode_list(e, (const Google__Protobuf__ListValue *)m);
    if (desc == &google__protobuf__value__descriptor)
        return encode_value(e, (const Google__Protobuf__Value *)m);
    return encode_object(e, m);
}

json_t *tse_pbjson_from_message(const ProtobufCMessage *msg, unsigned flags)
{
    encoder e = {flags, 0};

    if (msg == NULL)
        return NULL;
    return encode_message(&e, msg, msg->descriptor);
}

json_t *tse_pbjson_from_struct(const Google__Protobuf__Struct *s)
{
    encoder e = {0, 0};

    return encode_struct(&e, s);
}

json_t *tse_pbjson_from_value(const Google__Protobuf__Value *v)
{
    encoder e = {0, 0};

    return encode_value(&e, v);
}

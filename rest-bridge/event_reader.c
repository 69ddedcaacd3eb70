/*
 * event_reader.c - a publish body to an Event: the reference through a
 * jansson tree, and the fast reader from the body's bytes; see
 * event_reader.h.
 *
 * The fast reader's invariant: it accepts a body only when the reference
 * accepts it and builds the Event it writes. It checks the body as strictly
 * as jansson's parser does (whitespace, literals, numbers that fit a
 * long long or a finite double, strings of well-formed UTF-8 with valid
 * escapes and surrogate pairs and no NUL) and stricter wherever matching
 * jansson exactly would take more code than the case is worth: a key given
 * twice in one object (jansson keeps the last value in the first key's
 * place), more than MAX_KEYS keys in an object, nesting beyond MAX_DEPTH,
 * numbers longer than NUMBER_MAX characters, integers of more than 18
 * digits. Those decline, and the reference reads the body.
 *
 * What it builds, field by field, is what tsb_event_from_json and
 * protobuf-c make of the same body: string fields packed when not empty,
 * priority only as an integer 1..5 (anything else declines: the reference
 * refuses or converts it), metadata as map entries whose empty key or
 * value is left out, the payload as a Struct (a Value's number as a
 * double: an integer converted from its long long, as jansson stores it,
 * so "-0" is +0.0; a Value's string always packed, even when empty, as a
 * set oneof member is).
 */
#include "event_reader.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codec/pbjson.h"
#include "codec/pbwire.h"
#include "codec/utf8.h"
#include "common/alloc.h"
#include "common/hex.h"
#include "domain/limits.h"

typedef Tracseq__Events__V1__Event Event;

/* ===========================================================================
 * The reference: jansson tree -> Event
 * ======================================================================== */

static const char *const envelope_keys[] = {
    "id",      "event_type", "source_service", "version",     "correlation_id", "causation_id",
    "subject", "priority",   "metadata",       "traceparent", "tracestate",
};

static bool present(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return v != NULL && !json_is_null(v);
}

/* Local checks the Event's types cannot express; the service checks the rest. */
static tse_status check_envelope(const json_t *body, tse_error *err)
{
    static const char *const required[] = {"event_type", "source_service", "payload"};
    const json_t *prio = json_object_get(body, "priority");

    if (!json_is_object(body))
        return tse_error_set(err, TSE_INVALID, "body", "the event must be a JSON object");
    for (size_t i = 0; i < 3; i++)
        if (!present(body, required[i]))
            return tse_error_set(err, TSE_INVALID, required[i], "%s is required", required[i]);
    if (json_is_integer(prio) && (json_integer_value(prio) < TSE_PRIORITY_MIN ||
                                  json_integer_value(prio) > TSE_PRIORITY_MAX))
        return tse_error_set(err, TSE_INVALID, "priority",
                             "priority must be an integer from %d (highest) to %d",
                             TSE_PRIORITY_MIN, TSE_PRIORITY_MAX);
    return TSE_OK;
}

/* Sets err->field to head + rest, cut to fit. */
static void set_field(tse_error *err, const char *head, const char *rest)
{
    char tmp[TSE_ERROR_FIELD_MAX * 2];
    size_t n;

    n = (size_t)snprintf(tmp, sizeof(tmp), "%s%s", head, rest);
    if (n >= sizeof(err->field))
        n = sizeof(err->field) - 1;
    memcpy(err->field, tmp, n);
    err->field[n] = '\0';
}

/* The JSON form of the Event: envelope keys copied, payload as `data`. */
static json_t *event_json(const json_t *body)
{
    json_t *env = json_object(), *payload = json_object_get(body, "payload");

    for (size_t i = 0; i < sizeof(envelope_keys) / sizeof(envelope_keys[0]); i++)
        if (present(body, envelope_keys[i]))
            json_object_set(env, envelope_keys[i], json_object_get(body, envelope_keys[i]));
    if (json_is_object(payload))
        json_object_set(env, "data", payload);
    else
        json_object_set_new(env, "data", json_pack("{s:O}", "value", payload));
    return env;
}

tse_status tsb_event_from_json(const json_t *body, Event **out, tse_error *err)
{
    ProtobufCMessage *msg = NULL;
    json_t *env;
    tse_status st;

    if ((st = check_envelope(body, err)) != TSE_OK)
        return st;
    env = event_json(body);
    st = tse_pbjson_to_message(env, &tracseq__events__v1__event__descriptor, 0, &msg, err);
    json_decref(env);
    if (st != TSE_OK) {
        if (err != NULL && strncmp(err->field, "data", 4) == 0) {
            char rest[TSE_ERROR_FIELD_MAX];
            snprintf(rest, sizeof(rest), "%s", err->field + 4);
            set_field(err, "payload", rest);
        }
        return st;
    }
    *out = (Event *)msg;
    return TSE_OK;
}

/* ===========================================================================
 * Bytes
 * ======================================================================== */

/* Room for n more bytes; false (b->failed) when there is none. */
static bool reserve(tsb_bytes *b, size_t n)
{
    if (b->failed)
        return false;
    if (!TSE_GROW(realloc, b->p, b->cap, b->len + n, 512))
        b->failed = true;
    return !b->failed;
}

void tsb_bytes_add(tsb_bytes *b, const void *s, size_t n)
{
    if (n > 0 && reserve(b, n)) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
    }
}

uint8_t *tsb_bytes_extend(tsb_bytes *b, size_t n)
{
    if (!reserve(b, n))
        return NULL;
    b->len += n;
    return b->p + b->len - n;
}

static void add_byte(tsb_bytes *b, uint8_t c)
{
    if (reserve(b, 1))
        b->p[b->len++] = c;
}

static void add_varint(tsb_bytes *b, uint64_t v)
{
    if (reserve(b, 10))
        b->len = (size_t)(tse_pbwire_put_varint(b->p + b->len, v) - b->p);
}

void tsb_bytes_cleanup(tsb_bytes *b)
{
    free(b->p);
    *b = (tsb_bytes){0};
}

/*
 * A length-delimited field whose length is known only once its content is
 * written: open_len writes the tag and one byte for the length and returns
 * where the content starts; close_len writes the length, moving the
 * content when it needs a longer varint.
 */
static size_t open_len(tsb_bytes *b, uint8_t tag)
{
    add_byte(b, tag);
    add_byte(b, 0);
    return b->len;
}

static void close_len(tsb_bytes *b, size_t start)
{
    size_t n, k;

    if (b->failed)
        return;
    n = b->len - start;
    k = tse_pbwire_varint_size(n);
    if (k > 1) {
        if (!reserve(b, k - 1))
            return;
        memmove(b->p + start + k - 1, b->p + start, n);
        b->len += k - 1;
    }
    tse_pbwire_put_varint(b->p + start - 1, n);
}

/* ===========================================================================
 * The fast reader: JSON lexing as strict as jansson's
 * ======================================================================== */

/* Deepest nesting read (the body's object is 1); jansson allows 2048, the
 * transcoder 64 (counted its way), so anything the reader takes fits both. */
#define MAX_DEPTH  32
/* Keys of one object whose duplicates are looked for; more declines. */
#define MAX_KEYS   64
/* Bytes of those keys, all levels together; more declines. */
#define KEYS_BYTES 4096
/* The longest number token read. */
#define NUMBER_MAX 64

typedef struct reader {
    const unsigned char *p, *end;
    tsb_bytes *out;
    /* The keys of the objects being read, innermost last, each as a
     * length byte and its bytes: the duplicate check. */
    unsigned char keys[KEYS_BYTES];
    size_t keys_len;
} reader;

static void skip_ws(reader *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

/* The next byte after whitespace is c: consumed. */
static bool eat(reader *r, unsigned char c)
{
    skip_ws(r);
    if (r->p < r->end && *r->p == c) {
        r->p++;
        return true;
    }
    return false;
}

static bool peek(reader *r, unsigned char c)
{
    skip_ws(r);
    return r->p < r->end && *r->p == c;
}

static bool literal(reader *r, const char *word, size_t n)
{
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0)
        return false;
    r->p += n;
    return true;
}

/* The 4 hex digits of a \u escape at p (p[0] = '\\', p[1] = 'u'); -1 if none. */
static long hex4(const reader *r, const unsigned char *p)
{
    long v = 0;

    if (r->end - p < 6 || p[0] != '\\' || p[1] != 'u')
        return -1;
    for (int i = 2; i < 6; i++) {
        int d = tse_hex_value((char)p[i]);
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static void add_utf8(tsb_bytes *b, unsigned long cp)
{
    uint8_t s[4];
    size_t n;

    if (cp < 0x80) {
        s[0] = (uint8_t)cp;
        n = 1;
    } else if (cp < 0x800) {
        s[0] = (uint8_t)(0xC0 | (cp >> 6));
        s[1] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        s[0] = (uint8_t)(0xE0 | (cp >> 12));
        s[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        s[2] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        s[0] = (uint8_t)(0xF0 | (cp >> 18));
        s[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        s[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        s[3] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 4;
    }
    tsb_bytes_add(b, s, n);
}

/* A \u escape at r->p (one code point, or a surrogate pair): its UTF-8.
 * NUL and lone surrogates decline, as jansson refuses them. */
static bool unicode_escape(reader *r)
{
    long cp = hex4(r, r->p), lo;

    if (cp <= 0 || (cp >= 0xDC00 && cp <= 0xDFFF))
        return false;
    r->p += 6;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        lo = hex4(r, r->p);
        if (lo < 0xDC00 || lo > 0xDFFF)
            return false;
        r->p += 6;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    add_utf8(r->out, (unsigned long)cp);
    return true;
}

static bool escape(reader *r)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *c;

    if (r->end - r->p < 2)
        return false;
    if (r->p[1] == 'u')
        return unicode_escape(r);
    if (r->p[1] == '\0' || (c = strchr(from, r->p[1])) == NULL)
        return false;
    add_byte(r->out, (uint8_t)to[c - from]);
    r->p += 2;
    return true;
}

/*
 * Whether none of the 8 bytes at p ends or escapes a string or needs a
 * closer look: no '"', no '\\', nothing below 0x20 or above 0x7F. The
 * "has a zero byte" tests on the word (bytes XORed with '"' and '\\',
 * bytes less than 0x20): they may flag a plain byte only above a flagged
 * one, never miss one, so true is exact.
 */
static bool plain_word(const unsigned char *p)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t w, q, b;

    memcpy(&w, p, sizeof(w));
    q = w ^ (ones * '"');
    b = w ^ (ones * '\\');
    return ((((w - ones * 0x20) & ~w) | ((q - ones) & ~q) | ((b - ones) & ~b) | w) & highs) == 0;
}

/* The string at r->p (its opening quote) decoded and appended to r->out. */
static bool string(reader *r)
{
    const unsigned char *run;
    size_t n;

    if (r->p >= r->end || *r->p != '"')
        return false;
    r->p++;
    for (;;) {
        run = r->p;
        while (r->end - r->p >= 8 && plain_word(r->p))
            r->p += 8;
        for (; r->p < r->end && *r->p >= 0x20 && *r->p < 0x80 && *r->p != '"' && *r->p != '\\';
             r->p++)
            ;
        tsb_bytes_add(r->out, run, (size_t)(r->p - run));
        if (r->p >= r->end || *r->p < 0x20)
            return false;
        if (*r->p == '"') {
            r->p++;
            return !r->out->failed;
        }
        if (*r->p == '\\') {
            if (!escape(r))
                return false;
            continue;
        }
        if ((n = tse_utf8_sequence(r->p, (size_t)(r->end - r->p))) == 0)
            return false;
        tsb_bytes_add(r->out, r->p, n);
        r->p += n;
    }
}

/*
 * A number as jansson reads it: an integer (no fraction, no exponent) is a
 * long long, converted to double; anything else strtod's double, refused
 * when infinite. Integers of more than 18 digits decline rather than
 * check jansson's range, and so do tokens beyond NUMBER_MAX.
 */
static bool number(reader *r, double *v, bool *is_integer)
{
    const unsigned char *start = r->p, *digits;
    char text[NUMBER_MAX + 1], *end;
    bool integer = true;
    size_t n;

    if (r->p < r->end && *r->p == '-')
        r->p++;
    digits = r->p;
    if (r->p < r->end && *r->p == '0')
        r->p++;
    else
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
            r->p++;
    if (r->p == digits || (r->p < r->end && *r->p >= '0' && *r->p <= '9'))
        return false; /* no digit, or a leading zero */
    if (r->p < r->end && *r->p == '.') {
        integer = false;
        if (++r->p >= r->end || *r->p < '0' || *r->p > '9')
            return false;
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
            r->p++;
    }
    if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
        integer = false;
        r->p++;
        if (r->p < r->end && (*r->p == '+' || *r->p == '-'))
            r->p++;
        if (r->p >= r->end || *r->p < '0' || *r->p > '9')
            return false;
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
            r->p++;
    }
    n = (size_t)(r->p - start);
    if (n > NUMBER_MAX || (integer && (size_t)(r->p - digits) > 18))
        return false;
    memcpy(text, start, n);
    text[n] = '\0';
    if (is_integer != NULL)
        *is_integer = integer;
    if (integer) {
        *v = (double)strtoll(text, &end, 10);
    } else {
        *v = strtod(text, &end);
        if (isinf(*v))
            return false;
    }
    return end == text + n;
}

/* ---- keys ---- */

/*
 * Decodes the key at r->p (then the colon) into r->out and records it
 * among the keys of the object whose keys start at r->keys[base]; false
 * when it is not read or the object has it already. *key_off, *key_len:
 * its bytes in r->out.
 */
static bool key(reader *r, size_t base, size_t *count, size_t *key_off, size_t *key_len)
{
    size_t off = r->out->len, n;
    const unsigned char *k;

    if (!string(r) || !eat(r, ':'))
        return false;
    n = r->out->len - off;
    k = r->out->p + off;
    if (++*count > MAX_KEYS || n > 255 || r->keys_len + 1 + n > KEYS_BYTES)
        return false;
    for (size_t i = base; i < r->keys_len; i += 1 + r->keys[i])
        if (r->keys[i] == n && memcmp(r->keys + i + 1, k, n) == 0)
            return false;
    r->keys[r->keys_len] = (unsigned char)n;
    memcpy(r->keys + r->keys_len + 1, k, n);
    r->keys_len += 1 + n;
    *key_off = off;
    *key_len = n;
    return true;
}

/*
 * Reads the members of an object (r->p at its '{'), calling member() for
 * each with the key decoded at the end of r->out; member reads the value.
 */
typedef bool (*member_fn)(reader *r, void *ctx, size_t key_off, size_t key_len, unsigned depth);

static bool object(reader *r, unsigned depth, member_fn member, void *ctx)
{
    size_t base = r->keys_len, count = 0, off, len;
    bool ok = true;

    if (depth > MAX_DEPTH || !eat(r, '{'))
        return false;
    if (eat(r, '}'))
        return true;
    do {
        skip_ws(r);
        ok = key(r, base, &count, &off, &len) && member(r, ctx, off, len, depth);
    } while (ok && eat(r, ','));
    r->keys_len = base;
    return ok && eat(r, '}');
}

/* ===========================================================================
 * The payload: JSON values to google.protobuf.Value / Struct / ListValue
 * ======================================================================== */

/* Value's fields: null_value 1 (varint), number_value 2 (64-bit),
 * string_value 3, bool_value 4, struct_value 5, list_value 6. */
#define VALUE_NULL   0x08
#define VALUE_NUMBER 0x11
#define VALUE_STRING 0x1a
#define VALUE_BOOL   0x20
#define VALUE_STRUCT 0x2a
#define VALUE_LIST   0x32
/* Struct.fields 1 (entries: key 1, value 2); ListValue.values 1. */
#define TAG_1        0x0a
#define TAG_2        0x12

static bool value(reader *r, unsigned depth);

/*
 * Makes the key just decoded at key_off (key_len bytes) the first field of
 * a map entry: the entry's tag and a length byte, then the key's tag and
 * length (nothing for an empty key, which protobuf-c leaves out) go before
 * it. Returns where the entry's content starts, for close_len; 0 for a key
 * of 128 bytes or more (declined: its length would take two bytes).
 */
static size_t entry_with_key(tsb_bytes *b, uint8_t tag, size_t key_off, size_t key_len)
{
    uint8_t head[4] = {tag, 0, TAG_1, (uint8_t)key_len};
    size_t head_len = key_len > 0 ? 4 : 2;

    if (key_len >= 128 || !reserve(b, head_len))
        return 0;
    memmove(b->p + key_off + head_len, b->p + key_off, key_len);
    memcpy(b->p + key_off, head, head_len);
    b->len = key_off + head_len + key_len;
    return key_off + 2;
}

/* A Struct member: an entry {key, value}. */
static bool struct_member(reader *r, void *ctx, size_t key_off, size_t key_len, unsigned depth)
{
    tsb_bytes *b = r->out;
    size_t entry, v;

    (void)ctx;
    if ((entry = entry_with_key(b, TAG_1, key_off, key_len)) == 0)
        return false;
    v = open_len(b, TAG_2);
    if (!value(r, depth + 1))
        return false;
    close_len(b, v);
    close_len(b, entry);
    return !b->failed;
}

/* An array's elements as ListValue.values. */
static bool list(reader *r, unsigned depth)
{
    size_t v;

    if (depth > MAX_DEPTH || !eat(r, '['))
        return false;
    if (eat(r, ']'))
        return true;
    do {
        v = open_len(r->out, TAG_1);
        if (!value(r, depth + 1))
            return false;
        close_len(r->out, v);
    } while (eat(r, ','));
    return eat(r, ']');
}

/* The JSON value at r->p as a Value's fields. depth: the value's own
 * nesting level were it an object or array. */
static bool value(reader *r, unsigned depth)
{
    tsb_bytes *b = r->out;
    size_t start;
    double d;
    uint64_t bits;
    uint8_t le[8];

    skip_ws(r);
    if (r->p >= r->end)
        return false;
    switch (*r->p) {
    case '{':
        start = open_len(b, VALUE_STRUCT);
        if (!object(r, depth, struct_member, NULL))
            return false;
        close_len(b, start);
        break;
    case '[':
        start = open_len(b, VALUE_LIST);
        if (!list(r, depth))
            return false;
        close_len(b, start);
        break;
    case '"':
        start = open_len(b, VALUE_STRING);
        if (!string(r))
            return false;
        close_len(b, start);
        break;
    case 't':
    case 'f':
        bits = literal(r, "true", 4);
        if (!bits && !literal(r, "false", 5))
            return false;
        add_byte(b, VALUE_BOOL);
        add_byte(b, (uint8_t)bits);
        break;
    case 'n':
        if (!literal(r, "null", 4))
            return false;
        add_byte(b, VALUE_NULL);
        add_byte(b, 0);
        break;
    default:
        if (!number(r, &d, NULL))
            return false;
        memcpy(&bits, &d, sizeof(bits));
        for (int i = 0; i < 8; i++)
            le[i] = (uint8_t)(bits >> (8 * i));
        add_byte(b, VALUE_NUMBER);
        tsb_bytes_add(b, le, sizeof(le));
    }
    return !b->failed;
}

/* ===========================================================================
 * The envelope
 * ======================================================================== */

/* The body's keys copied into the Event, as tsb_event_from_json copies
 * them; strings[] in TSB_READ_* order. */
static const struct {
    const char *key;
    size_t len;
    uint8_t tag; /* the Event field's wire tag (length-delimited) */
} strings[TSB_READ_STRINGS] = {
    {"id", 2, 0x0a},      {"event_type", 10, 0x12},     {"source_service", 14, 0x1a},
    {"version", 7, 0x22}, {"correlation_id", 14, 0x32}, {"causation_id", 12, 0x3a},
    {"subject", 7, 0x42}, {"traceparent", 11, 0x5a},    {"tracestate", 10, 0x62},
};
#define TAG_PRIORITY 0x48 /* 9, varint */
#define TAG_METADATA 0x52 /* 10 */
/* data is field 20: tag (20 << 3) | 2 = 162, two varint bytes. */
static const uint8_t tag_data[2] = {0xa2, 0x01};

/* Keys of the envelope beyond strings[]: bit numbers in envelope.given. */
enum { K_PRIORITY = TSB_READ_STRINGS, K_METADATA, K_PAYLOAD };

typedef struct envelope {
    tsb_read_event *ev;
    unsigned given; /* keys given a value other than null (bits: TSB_READ_*, K_*) */
} envelope;

/* A metadata entry: the key, and a string value (left out when empty). */
static bool metadata_member(reader *r, void *ctx, size_t key_off, size_t key_len, unsigned depth)
{
    tsb_bytes *b = r->out;
    size_t entry, v;

    (void)ctx;
    (void)depth;
    if (!peek(r, '"') || (entry = entry_with_key(b, TAG_METADATA, key_off, key_len)) == 0)
        return false;
    v = open_len(b, TAG_2);
    if (!string(r))
        return false;
    if (b->len == v)
        b->len -= 2;
    else
        close_len(b, v);
    close_len(b, entry);
    return !b->failed;
}

/* A string field's value: decoded, NUL-terminated; null is none. */
static bool envelope_string(reader *r, envelope *e, int which)
{
    tsb_read_event *ev = e->ev;
    size_t off = r->out->len;

    if (literal(r, "null", 4))
        return true;
    if (!string(r))
        return false;
    e->given |= 1u << which;
    ev->off[which] = off;
    ev->len[which] = r->out->len - off;
    add_byte(r->out, 0);
    return !r->out->failed;
}

/* priority: an integer 1..5 or null; anything else (a real such as 3.0,
 * a string, a number out of range) is the reference's. */
static bool envelope_priority(reader *r, tsb_read_event *ev)
{
    bool integer;
    double d;

    if (literal(r, "null", 4))
        return true;
    if (r->p >= r->end || (*r->p != '-' && (*r->p < '0' || *r->p > '9')))
        return false;
    if (!number(r, &d, &integer) || !integer || d < TSE_PRIORITY_MIN || d > TSE_PRIORITY_MAX)
        return false;
    ev->priority = (int32_t)d;
    return true;
}

/* The payload: an object is the Struct; any other value is {"value": v}. */
static bool envelope_payload(reader *r, tsb_read_event *ev, unsigned depth)
{
    tsb_bytes *b = r->out;
    size_t entry, v;

    if (peek(r, 'n'))
        return false; /* null: "payload is required" */
    ev->data_off = b->len;
    if (peek(r, '{')) {
        if (!object(r, depth, struct_member, NULL))
            return false;
    } else {
        entry = open_len(b, TAG_1);
        add_byte(b, TAG_1);
        add_byte(b, 5);
        tsb_bytes_add(b, "value", 5);
        v = open_len(b, TAG_2);
        /* The wrapper is one more level to the transcoder. */
        if (!value(r, depth + 1))
            return false;
        close_len(b, v);
        close_len(b, entry);
    }
    ev->data_len = b->len - ev->data_off;
    return !b->failed;
}

static bool envelope_member(reader *r, void *ctx, size_t key_off, size_t key_len, unsigned depth)
{
    envelope *e = ctx;
    tsb_bytes *b = r->out;
    const char *k = (const char *)b->p + key_off;
    int which = -1;
    size_t skip;

    for (int i = 0; i < TSB_READ_STRINGS && which < 0; i++)
        if (strings[i].len == key_len && memcmp(strings[i].key, k, key_len) == 0)
            which = i;
    if (which < 0 && key_len == 8 && memcmp(k, "priority", 8) == 0)
        which = K_PRIORITY;
    else if (which < 0 && key_len == 8 && memcmp(k, "metadata", 8) == 0)
        which = K_METADATA;
    else if (which < 0 && key_len == 7 && memcmp(k, "payload", 7) == 0)
        which = K_PAYLOAD;
    b->len = key_off; /* the key is not kept */
    skip_ws(r);
    if (which < 0) { /* an unknown key: read (it must be valid) and dropped */
        skip = b->len;
        if (!value(r, depth + 1))
            return false;
        b->len = skip;
        return true;
    }
    /* object() has refused a key given twice. */
    if (which < TSB_READ_STRINGS)
        return envelope_string(r, e, which);
    if (which == K_PRIORITY)
        return envelope_priority(r, e->ev);
    if (which == K_PAYLOAD) {
        e->given |= 1u << K_PAYLOAD;
        return envelope_payload(r, e->ev, depth + 1);
    }
    if (literal(r, "null", 4))
        return true;
    e->ev->meta_off = b->len;
    if (!object(r, depth + 1, metadata_member, NULL))
        return false;
    e->ev->meta_len = b->len - e->ev->meta_off;
    return true;
}

/* One event object at r->p, appended to evs. */
static bool event(reader *r, tsb_read_events *evs, unsigned depth)
{
    const unsigned required =
        1u << TSB_READ_EVENT_TYPE | 1u << TSB_READ_SOURCE_SERVICE | 1u << K_PAYLOAD;
    envelope e = {0};

    if (!TSE_GROW(realloc, evs->ev, evs->cap, evs->n + 1, 8))
        return false;
    e.ev = &evs->ev[evs->n];
    *e.ev = (tsb_read_event){0};
    /* Required, as check_envelope says (an empty string is the service's
     * to refuse). */
    if (!object(r, depth, envelope_member, &e) || (e.given & required) != required)
        return false;
    evs->n++;
    return true;
}

/* A batch body's members: "events", an array of event objects; any other
 * key read and dropped. */
typedef struct batch_body {
    tsb_read_events *evs;
    size_t max;
    bool events; /* "events" was read */
} batch_body;

static bool batch_member(reader *r, void *ctx, size_t key_off, size_t key_len, unsigned depth)
{
    batch_body *bb = ctx;
    tsb_bytes *b = r->out;
    bool events = key_len == 6 && memcmp(b->p + key_off, "events", 6) == 0;

    b->len = key_off;
    if (!events) {
        if (!value(r, depth + 1))
            return false;
        b->len = key_off;
        return true;
    }
    /* An empty array, a non-object entry, more than max: the reference's. */
    if (depth + 1 > MAX_DEPTH || !eat(r, '['))
        return false;
    do {
        if (bb->evs->n >= bb->max || !peek(r, '{') || !event(r, bb->evs, depth + 2))
            return false;
    } while (eat(r, ','));
    bb->events = true;
    return eat(r, ']');
}

/* Reads a whole body: an event object, or with member a batch object;
 * nothing but whitespace after it. */
static bool read_body(const char *body, size_t len, tsb_read_events *out, member_fn member,
                      void *ctx)
{
    reader r;
    bool ok;

    tsb_read_events_cleanup(out);
    r.p = (const unsigned char *)body;
    r.end = r.p + len;
    r.out = &out->buf;
    r.keys_len = 0;
    /* What is written is about as long as the body: one allocation, and
     * r.out->p is never NULL (a key decoded first may be empty). */
    if (!reserve(r.out, len + 64))
        return false;
    ok = member != NULL ? object(&r, 1, member, ctx) : event(&r, out, 1);
    skip_ws(&r);
    return ok && r.p == r.end && !out->buf.failed;
}

bool tsb_read_event_body(const char *body, size_t len, tsb_read_events *out)
{
    if (read_body(body, len, out, NULL, NULL))
        return true;
    tsb_read_events_cleanup(out);
    return false;
}

bool tsb_read_batch_body(const char *body, size_t len, size_t max, tsb_read_events *out)
{
    batch_body bb = {.evs = out, .max = max};

    if (read_body(body, len, out, batch_member, &bb) && bb.events)
        return true;
    tsb_read_events_cleanup(out);
    return false;
}

void tsb_read_events_cleanup(tsb_read_events *evs)
{
    tsb_bytes_cleanup(&evs->buf);
    free(evs->ev);
    *evs = (tsb_read_events){0};
}

const char *tsb_read_event_string(const tsb_read_events *evs, size_t i, int which)
{
    const tsb_read_event *ev = &evs->ev[i];

    return ev->len[which] > 0 ? (const char *)evs->buf.p + ev->off[which] : "";
}

/* ===========================================================================
 * Encoding
 * ======================================================================== */

static void add_string_field(tsb_bytes *out, uint8_t tag, const void *s, size_t n)
{
    if (n == 0)
        return;
    add_byte(out, tag);
    add_varint(out, n);
    tsb_bytes_add(out, s, n);
}

void tsb_read_event_encode(const tsb_read_events *evs, size_t i, const tsb_event_defaults *d,
                           tsb_bytes *out)
{
    const tsb_read_event *ev = &evs->ev[i];
    const uint8_t *buf = evs->buf.p;
    bool own_trace = ev->len[TSB_READ_TRACEPARENT] > 0 || ev->len[TSB_READ_TRACESTATE] > 0;
    bool adopt_trace = !own_trace && d != NULL && d->traceparent != NULL && d->traceparent[0];

    for (int f = 0; f < TSB_READ_STRINGS; f++) {
        const char *s = (const char *)buf + ev->off[f];
        size_t n = ev->len[f];

        if (f == TSB_READ_CORRELATION_ID && n == 0 && d != NULL && d->correlation_id != NULL) {
            s = d->correlation_id;
            n = strlen(s);
        } else if (f == TSB_READ_TRACEPARENT && adopt_trace) {
            s = d->traceparent;
            n = strlen(s);
        } else if (f == TSB_READ_TRACESTATE && adopt_trace && d->tracestate != NULL) {
            s = d->tracestate;
            n = strlen(s);
        }
        if (f == TSB_READ_TRACEPARENT) { /* priority and metadata come between */
            if (ev->priority != 0) {
                add_byte(out, TAG_PRIORITY);
                add_varint(out, (uint64_t)(int64_t)ev->priority);
            }
            tsb_bytes_add(out, buf + ev->meta_off, ev->meta_len);
        }
        add_string_field(out, strings[f].tag, s, n);
    }
    tsb_bytes_add(out, tag_data, sizeof(tag_data));
    add_varint(out, ev->data_len);
    tsb_bytes_add(out, buf + ev->data_off, ev->data_len);
}

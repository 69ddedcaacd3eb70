/*
 * render.c - human-readable text for the service's answers (the proto3
 * JSON the SDK returns, parsed with jansson): aligned "key  value" lines
 * for one object, tables for lists.
 *
 * Rendering never fails: a field the server left out prints as empty, and
 * fields this file does not know still print through the generic path, so
 * a newer server's additions show up without a new eventctl.
 *
 * Field names are labels ("dead_lettered" prints "dead lettered"); the keys
 * of a map are data (event types such as "storage.temperature_alert") and
 * print exactly as they are, however long. Text from the service goes
 * through tse_cli_print_text, so no answer can hold terminal controls.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define KEY_WIDTH 26

/* The map fields of the answers rendered here: their keys are data. */
static const char *const map_fields[] = {"published_by_type", "stream_lengths", "metadata",
                                         "dead_lettered_by_reason"};

static bool is_map_field(const char *key)
{
    for (size_t i = 0; i < sizeof(map_fields) / sizeof(map_fields[0]); i++)
        if (strcmp(key, map_fields[i]) == 0)
            return true;
    return false;
}

/* A string value, "" when absent or not a string (printf never sees NULL). */
static const char *str_value(const json_t *v)
{
    const char *s = json_string_value(v);

    return s != NULL ? s : "";
}

const char *tse_cli_str(const json_t *obj, const char *key)
{
    return str_value(json_object_get(obj, key));
}

/* A field name as a label ("dead_lettered" -> "dead lettered"), or a map
 * key as it is (data: never relabelled, never cut). Returns the width. */
static size_t print_label(const char *key, bool map_key)
{
    size_t n = 0;

    if (map_key)
        return tse_cli_print_text(key);
    for (const char *p = key; *p != '\0'; p++, n++)
        putchar(*p == '_' ? ' ' : *p);
    return n;
}

static void print_key(const char *key, int indent, bool map_key)
{
    size_t width;

    printf("%*s", indent, "");
    width = print_label(key, map_key);
    printf("%*s ", width < (size_t)(KEY_WIDTH - indent) ? (int)(KEY_WIDTH - indent - width) : 0,
           "");
}

/* Scalars of an array, comma-separated. */
static void print_list(const json_t *arr)
{
    const json_t *item;
    char buf[64];
    size_t i;

    json_array_foreach(arr, i, item)
    {
        printf("%s", i > 0 ? ", " : "");
        tse_cli_print_text(tse_cli_scalar(item, buf, sizeof(buf)));
    }
}

/* "START_POSITION_EARLIEST" -> "earliest". */
static const char *start_name(const json_t *v, char *buf, size_t len)
{
    const char *s = json_string_value(v);
    size_t i;

    if (s == NULL)
        return "latest";
    if (strncmp(s, "START_POSITION_", 15) == 0)
        s += 15;
    snprintf(buf, len, "%s", s);
    for (i = 0; buf[i] != '\0'; i++)
        buf[i] = (char)tolower((unsigned char)buf[i]);
    return strcmp(buf, "unspecified") == 0 ? "latest" : buf;
}

static void render_object(const json_t *obj, int indent, bool map);

/* key: a field name, or a map key when map_key. */
static void render_value(const char *key, const json_t *v, int indent, bool map_key)
{
    char buf[64];

    if (v == NULL || json_is_null(v))
        return; /* unset (e.g. start_time of a "latest" subscription) */
    if (json_is_object(v)) {
        printf("%*s", indent, "");
        print_label(key, map_key);
        printf(":\n");
        if (json_object_size(v) == 0)
            printf("%*s(none)\n", indent + 2, "");
        render_object(v, indent + 2, !map_key && is_map_field(key));
        return;
    }
    print_key(key, indent, map_key);
    if (json_is_array(v))
        print_list(v);
    else if (!map_key && strcmp(key, "start") == 0)
        printf("%s", start_name(v, buf, sizeof(buf)));
    else
        tse_cli_print_text(tse_cli_scalar(v, buf, sizeof(buf)));
    printf("\n");
}

/* map: obj is a map, its keys are data. */
static void render_object(const json_t *obj, int indent, bool map)
{
    const char *key;
    json_t *v;

    json_object_foreach((json_t *)obj, key, v)
    {
        render_value(key, v, indent, map);
    }
}

/* ---- subscriptions ---- */

void tse_cli_render_subscription(const json_t *sub)
{
    render_object(sub, 0, false);
}

static const char *stat_of(const json_t *sub, const char *name, char *buf, size_t len)
{
    return tse_cli_scalar(json_object_get(json_object_get(sub, "stats"), name), buf, len);
}

/* The oldest unacked delivery's age in seconds ("-" when none is pending). */
static const char *oldest_of(const json_t *sub, char *buf, size_t len)
{
    const json_t *v = json_object_get(json_object_get(sub, "stats"), "oldest_unacked_age_ms");
    const char *ms = json_string_value(v);
    double value = ms != NULL ? strtod(ms, NULL) : json_number_value(v);

    if (value <= 0)
        return "-";
    snprintf(buf, len, "%.1f", value / 1000.0);
    return buf;
}

static void subscription_row(const json_t *sub)
{
    char types[256] = "", b1[32], b2[32], b3[32], b4[32], b5[32], b6[32], b7[32];
    const json_t *t;
    size_t i, used = 0;

    json_array_foreach(json_object_get(sub, "event_types"), i, t)
    {
        used += (size_t)snprintf(types + used, used < sizeof(types) ? sizeof(types) - used : 0,
                                 "%s%s", i > 0 ? "," : "", str_value(t));
        if (used >= sizeof(types)) {
            /* Cut: say so, rather than show a shorter pattern that would
             * read as another one ("sample.*" cut to "sam"). */
            memcpy(types + sizeof(types) - 4, "...", 4);
            break;
        }
    }
    printf("%-32s %-24s %-9s %8s %8s %9s %6s %9s %11s\n", tse_cli_str(sub, "name"), types,
           start_name(json_object_get(sub, "start"), b1, sizeof(b1)),
           stat_of(sub, "lag", b3, sizeof(b3)), stat_of(sub, "pending", b2, sizeof(b2)),
           oldest_of(sub, b6, sizeof(b6)), stat_of(sub, "dead_lettered", b4, sizeof(b4)),
           stat_of(sub, "consumers", b7, sizeof(b7)),
           stat_of(sub, "active_subscribers", b5, sizeof(b5)));
}

static void subscription_table(const json_t *subs)
{
    const json_t *sub;
    size_t i;

    if (json_array_size(subs) == 0) {
        printf("no subscriptions\n");
        return;
    }
    printf("%-32s %-24s %-9s %8s %8s %9s %6s %9s %11s\n", "NAME", "TYPES", "START", "BACKLOG",
           "PENDING", "OLDEST(s)", "DEAD", "CONSUMERS", "SUBSCRIBERS");
    json_array_foreach(subs, i, sub)
    {
        subscription_row(sub);
    }
}

void tse_cli_render_subscription_list(const json_t *answer)
{
    subscription_table(json_object_get(answer, "subscriptions"));
}

/* ---- stats ---- */

/* A JSON number or a proto3 JSON 64-bit integer (a string). */
static double number_of(const json_t *v)
{
    const char *s = json_string_value(v);

    return s != NULL ? strtod(s, NULL) : json_number_value(v);
}

/* The bound (seconds) under which a fraction q of a histogram's
 * observations fall: "<= 0.5 ms"; "> the last bound" past it. */
static void print_quantile(const json_t *h, const char *name, double q)
{
    const json_t *bounds = json_object_get(h, "bounds");
    const json_t *counts = json_object_get(h, "cumulative_counts");
    double total = number_of(json_object_get(h, "count"));
    size_t n = json_array_size(bounds);

    for (size_t i = 0; i < n; i++) {
        if (number_of(json_array_get(counts, i)) >= q * total) {
            printf(", %s <= %g ms", name, number_of(json_array_get(bounds, i)) * 1e3);
            return;
        }
    }
    printf(", %s > %g ms", name, n > 0 ? number_of(json_array_get(bounds, n - 1)) * 1e3 : 0.0);
}

/* A Histogram on one line: count, mean, and the buckets of p50 and p99. */
static void render_histogram(const char *key, const json_t *h)
{
    double count = number_of(json_object_get(h, "count"));

    print_key(key, 0, false);
    printf("count %.0f", count);
    if (count > 0) {
        printf(", mean %.3f ms", number_of(json_object_get(h, "sum_seconds")) * 1e3 / count);
        print_quantile(h, "p50", 0.5);
        print_quantile(h, "p99", 0.99);
    }
    printf("\n");
}

static bool is_histogram(const json_t *v)
{
    return json_is_object(v) && json_object_get(v, "cumulative_counts") != NULL;
}

void tse_cli_render_stats(const json_t *stats)
{
    const char *key;
    json_t *v;

    /* Scalars first, then the maps and the subscription table. */
    json_object_foreach((json_t *)stats, key, v)
    {
        if (!json_is_object(v) && !json_is_array(v))
            render_value(key, v, 0, false);
    }
    json_object_foreach((json_t *)stats, key, v)
    {
        if (is_histogram(v))
            render_histogram(key, v);
    }
    json_object_foreach((json_t *)stats, key, v)
    {
        if (json_is_object(v) && !is_histogram(v))
            render_value(key, v, 0, false);
    }
    printf("subscriptions:\n");
    subscription_table(json_object_get(stats, "subscription_stats"));
}

/* ---- event types ---- */

static void render_fields(const json_t *type)
{
    const json_t *f;
    size_t i;

    printf("%-28s %-20s %-9s %s\n", "FIELD", "TYPE", "REQUIRED", "FORMAT");
    json_array_foreach(json_object_get(type, "fields"), i, f)
    {
        printf("%-28s %-20s %-9s %s\n", tse_cli_str(f, "name"), tse_cli_str(f, "type"),
               json_is_true(json_object_get(f, "required")) ? "yes" : "no",
               tse_cli_str(f, "format"));
    }
}

static void render_one_type(const json_t *t)
{
    const char *keys[] = {"event_type", "message",       "version",
                          "domain",     "payload_field", "description"};
    size_t i;

    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        render_value(keys[i], json_object_get(t, keys[i]), 0, false);
    printf("\n");
    render_fields(t);
}

void tse_cli_render_types(const json_t *answer, const char *only_type)
{
    const json_t *types = json_object_get(answer, "event_types");
    const json_t *t;
    const char *name;
    size_t i;

    if (only_type == NULL)
        printf("%-32s %-42s %-7s %s\n", "TYPE", "MESSAGE", "VERSION", "DESCRIPTION");
    json_array_foreach(types, i, t)
    {
        name = tse_cli_str(t, "event_type");
        if (only_type != NULL) {
            if (name != NULL && strcmp(name, only_type) == 0)
                render_one_type(t);
            continue;
        }
        printf("%-32s %-42s %-7s %s\n", name, tse_cli_str(t, "message"), tse_cli_str(t, "version"),
               tse_cli_str(t, "description"));
    }
    if (only_type == NULL)
        printf("\nAny other type matching %s is published with a generic JSON payload.\n",
               tse_cli_str(answer, "generic_type_pattern"));
}

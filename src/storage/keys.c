/*
 * keys.c - builds and parses the Redis key names of keys.h, and the Redis
 * Cluster slot of a key.
 *
 * Pure. The slot function follows Redis's own keyHashSlot (cluster.c): the
 * hash tag is the bytes between the first '{' and the first '}' after it,
 * used only when not empty; CRC16 is the XMODEM variant, bit by bit (keys are short).
 */
#include "storage/keys.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

void tse_key_stream(const char *event_type, int priority, char *buf, size_t len)
{
    static const char prefix[] = TSE_EVENTS_PREFIX "{";
    size_t plen = sizeof(prefix) - 1, tlen = strlen(event_type);

    if (priority < 1 || priority > 9 || plen + tlen + 5 > len) {
        snprintf(buf, len, TSE_EVENTS_PREFIX "{%s}:p%d", event_type, priority);
        return;
    }
    memcpy(buf, prefix, plen);
    memcpy(buf + plen, event_type, tlen);
    memcpy(buf + plen + tlen, "}:p", 3);
    buf[plen + tlen + 3] = (char)('0' + priority);
    buf[plen + tlen + 4] = '\0';
}

/* The ":p<digit>" ending a stream key of either layout, after at least min
 * bytes; false without it. */
static bool priority_suffix(const char *key, size_t key_len, size_t min, int *priority)
{
    if (key_len < min + 3 || key[key_len - 3] != ':' || key[key_len - 2] != 'p' ||
        key[key_len - 1] < '1' || key[key_len - 1] > '9')
        return false;
    *priority = key[key_len - 1] - '0';
    return true;
}

bool tse_key_stream_parse(const char *key, size_t key_len, const char **type, size_t *type_len,
                          int *priority)
{
    size_t plen = sizeof(TSE_EVENTS_PREFIX) - 1;

    /* "<prefix>{<type>}:p<digit>" with a type of at least one byte and no
     * brace in it. */
    if (key_len < plen + 6 || memcmp(key, TSE_EVENTS_PREFIX, plen) != 0 || key[plen] != '{' ||
        key[key_len - 4] != '}' || !priority_suffix(key, key_len, plen + 3, priority))
        return false;
    *type = key + plen + 1;
    *type_len = key_len - plen - 5;
    return memchr(*type, '{', *type_len) == NULL && memchr(*type, '}', *type_len) == NULL;
}

bool tse_key_stream_legacy_parse(const char *key, size_t key_len, const char **type,
                                 size_t *type_len, int *priority)
{
    size_t plen = sizeof(TSE_EVENTS_PREFIX) - 1;

    /* "<prefix><type>:p<digit>": event types never hold a brace, so a key
     * with one is not of this layout. */
    if (key_len < plen + 4 || memcmp(key, TSE_EVENTS_PREFIX, plen) != 0 ||
        memchr(key, '{', key_len) != NULL || memchr(key, '}', key_len) != NULL ||
        !priority_suffix(key, key_len, plen + 1, priority))
        return false;
    *type = key + plen;
    *type_len = key_len - plen - 3;
    return true;
}

void tse_key_stream_current(const char *key, char *buf, size_t len)
{
    const char *type;
    size_t tlen;
    int prio;

    if (tse_key_stream_legacy_parse(key, strlen(key), &type, &tlen, &prio))
        snprintf(buf, len, TSE_EVENTS_PREFIX "{%.*s}:p%d", (int)tlen, type, prio);
    else
        snprintf(buf, len, "%s", key);
}

void tse_key_dedup(const char *event_type, const char *event_id, char *buf, size_t len)
{
    snprintf(buf, len, TSE_DEDUP_PREFIX "{%s}:%s", event_type, event_id);
}

void tse_key_dlq(const char *subscription, char *buf, size_t len)
{
    snprintf(buf, len, TSE_DLQ_PREFIX "%s", subscription);
}

void tse_key_snapshots(const char *subscription, char *buf, size_t len)
{
    snprintf(buf, len, TSE_SNAPSHOTS_PREFIX "%s", subscription);
}

unsigned tse_key_crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;

    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((uint16_t)(unsigned char)buf[i] << 8);
        for (int bit = 0; bit < 8; bit++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

unsigned tse_key_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len), *close;

    if (open != NULL) {
        size_t rest = len - (size_t)(open - key) - 1;

        close = memchr(open + 1, '}', rest);
        /* "{}" or no '}': the whole key, as Redis does. */
        if (close != NULL && close > open + 1)
            return tse_key_crc16(open + 1, (size_t)(close - open - 1)) & (TSE_KEY_SLOTS - 1);
    }
    return tse_key_crc16(key, len) & (TSE_KEY_SLOTS - 1);
}

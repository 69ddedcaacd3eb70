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

/*
 * CRC16/XMODEM a byte at a time: entry b is the CRC of the byte b alone
 * (polynomial 0x1021, no reflection), the table Redis's crc16.c holds.
 * A slot is computed for every published event on a cluster (the writer
 * routes each job by it); bit by bit it cost ~70 instructions a byte, ~1k
 * per event, 2.5 % of the service's instructions per event
 * (docs/benchmarks.md, "Redis Cluster and two instances"). The unit test
 * checks the table against the bit-by-bit definition.
 */
static const uint16_t crc16_table[256] = {
    0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50a5, 0x60c6, 0x70e7, 0x8108, 0x9129, 0xa14a, 0xb16b,
    0xc18c, 0xd1ad, 0xe1ce, 0xf1ef, 0x1231, 0x0210, 0x3273, 0x2252, 0x52b5, 0x4294, 0x72f7, 0x62d6,
    0x9339, 0x8318, 0xb37b, 0xa35a, 0xd3bd, 0xc39c, 0xf3ff, 0xe3de, 0x2462, 0x3443, 0x0420, 0x1401,
    0x64e6, 0x74c7, 0x44a4, 0x5485, 0xa56a, 0xb54b, 0x8528, 0x9509, 0xe5ee, 0xf5cf, 0xc5ac, 0xd58d,
    0x3653, 0x2672, 0x1611, 0x0630, 0x76d7, 0x66f6, 0x5695, 0x46b4, 0xb75b, 0xa77a, 0x9719, 0x8738,
    0xf7df, 0xe7fe, 0xd79d, 0xc7bc, 0x48c4, 0x58e5, 0x6886, 0x78a7, 0x0840, 0x1861, 0x2802, 0x3823,
    0xc9cc, 0xd9ed, 0xe98e, 0xf9af, 0x8948, 0x9969, 0xa90a, 0xb92b, 0x5af5, 0x4ad4, 0x7ab7, 0x6a96,
    0x1a71, 0x0a50, 0x3a33, 0x2a12, 0xdbfd, 0xcbdc, 0xfbbf, 0xeb9e, 0x9b79, 0x8b58, 0xbb3b, 0xab1a,
    0x6ca6, 0x7c87, 0x4ce4, 0x5cc5, 0x2c22, 0x3c03, 0x0c60, 0x1c41, 0xedae, 0xfd8f, 0xcdec, 0xddcd,
    0xad2a, 0xbd0b, 0x8d68, 0x9d49, 0x7e97, 0x6eb6, 0x5ed5, 0x4ef4, 0x3e13, 0x2e32, 0x1e51, 0x0e70,
    0xff9f, 0xefbe, 0xdfdd, 0xcffc, 0xbf1b, 0xaf3a, 0x9f59, 0x8f78, 0x9188, 0x81a9, 0xb1ca, 0xa1eb,
    0xd10c, 0xc12d, 0xf14e, 0xe16f, 0x1080, 0x00a1, 0x30c2, 0x20e3, 0x5004, 0x4025, 0x7046, 0x6067,
    0x83b9, 0x9398, 0xa3fb, 0xb3da, 0xc33d, 0xd31c, 0xe37f, 0xf35e, 0x02b1, 0x1290, 0x22f3, 0x32d2,
    0x4235, 0x5214, 0x6277, 0x7256, 0xb5ea, 0xa5cb, 0x95a8, 0x8589, 0xf56e, 0xe54f, 0xd52c, 0xc50d,
    0x34e2, 0x24c3, 0x14a0, 0x0481, 0x7466, 0x6447, 0x5424, 0x4405, 0xa7db, 0xb7fa, 0x8799, 0x97b8,
    0xe75f, 0xf77e, 0xc71d, 0xd73c, 0x26d3, 0x36f2, 0x0691, 0x16b0, 0x6657, 0x7676, 0x4615, 0x5634,
    0xd94c, 0xc96d, 0xf90e, 0xe92f, 0x99c8, 0x89e9, 0xb98a, 0xa9ab, 0x5844, 0x4865, 0x7806, 0x6827,
    0x18c0, 0x08e1, 0x3882, 0x28a3, 0xcb7d, 0xdb5c, 0xeb3f, 0xfb1e, 0x8bf9, 0x9bd8, 0xabbb, 0xbb9a,
    0x4a75, 0x5a54, 0x6a37, 0x7a16, 0x0af1, 0x1ad0, 0x2ab3, 0x3a92, 0xfd2e, 0xed0f, 0xdd6c, 0xcd4d,
    0xbdaa, 0xad8b, 0x9de8, 0x8dc9, 0x7c26, 0x6c07, 0x5c64, 0x4c45, 0x3ca2, 0x2c83, 0x1ce0, 0x0cc1,
    0xef1f, 0xff3e, 0xcf5d, 0xdf7c, 0xaf9b, 0xbfba, 0x8fd9, 0x9ff8, 0x6e17, 0x7e36, 0x4e55, 0x5e74,
    0x2e93, 0x3eb2, 0x0ed1, 0x1ef0,
};

unsigned tse_key_crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;

    for (size_t i = 0; i < len; i++)
        crc = (uint16_t)((crc << 8) ^ crc16_table[((crc >> 8) ^ (unsigned char)buf[i]) & 0xff]);
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

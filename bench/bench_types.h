/*
 * bench_types.h - the event type names of a load spread over N types: the
 * --types option of bench_publish, bench_sdk_publish and bench_subscribe
 * (bench/run_cluster.sh uses it to load every master of a Redis Cluster).
 *
 * An event type is the hash tag of its streams (storage/keys.h), so all of
 * a type's events live on one slot, hence on one master. To load N parts of
 * the slot space alike (redis-cli --cluster create gives each master an
 * equal run of slots), type i is "<base>.t<k>" for the smallest k whose slot
 * falls in [i * 16384 / N, (i + 1) * 16384 / N). With N == 1 the one type
 * is base itself, so the benches' default load is unchanged.
 *
 * The slot is Redis Cluster's: CRC16 (XMODEM) of the tag, modulo 16384. It
 * is computed here rather than taken from storage/ so that the benches keep
 * linking the client SDK only. Header-only; pure, no allocation.
 */
#ifndef TSE_BENCH_TYPES_H
#define TSE_BENCH_TYPES_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Most types of one run: a subscription lists at most 32 patterns by
 * default (MAX_SUBSCRIPTION_PATTERNS). */
#define BENCH_TYPES_MAX 32
/* Room for one name: an event type is at most 128 bytes (domain/limits.h),
 * so base is at most 128 bytes alone or 120 before ".t<k>". */
#define BENCH_TYPE_LEN  129

/* Redis Cluster's slot of a key without '{' (the whole name is hashed). */
static inline unsigned bench_type_slot(const char *name)
{
    uint16_t crc = 0;

    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
        crc ^= (uint16_t)(*p << 8);
        for (int bit = 0; bit < 8; bit++)
            crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc % 16384u;
}

/* Fills names[0 .. n - 1] as above; false when n is out of 1..
 * BENCH_TYPES_MAX or base too long. */
static inline bool bench_type_names(const char *base, int n, char names[][BENCH_TYPE_LEN])
{
    if (n < 1 || n > BENCH_TYPES_MAX || strlen(base) > (n == 1 ? 128u : 120u))
        return false;
    if (n == 1) {
        snprintf(names[0], BENCH_TYPE_LEN, "%s", base);
        return true;
    }
    for (int i = 0; i < n; i++) {
        unsigned lo = (unsigned)(i * 16384 / n), hi = (unsigned)((i + 1) * 16384 / n);
        for (unsigned k = 0;; k++) { /* ends: ~16384 / n tries on average */
            unsigned slot;
            snprintf(names[i], BENCH_TYPE_LEN, "%s.t%u", base, k);
            slot = bench_type_slot(names[i]);
            if (slot >= lo && slot < hi)
                break;
        }
    }
    return true;
}

#endif

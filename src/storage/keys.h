/*
 * keys.h - the Redis key names of TracSeq Events (the key layout is in
 * docs/architecture.md).
 */
#ifndef TSE_STORAGE_KEYS_H
#define TSE_STORAGE_KEYS_H

/* The set of every stream key. */
#define TSE_STREAMS_KEY "tracseq:streams"

#endif

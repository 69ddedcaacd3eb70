/*
 * slot_groups.h - which keys of a multi-key read can share one command on a
 * Redis Cluster (slot_groups.c): one command may not cross hash slots, so
 * a read over streams of several event types (a wildcard subscription)
 * becomes one command per slot, pipelined. This is the bookkeeping alone:
 * group_ops.c builds and sends the commands.
 *
 * Pure: no I/O, no state, no allocation; reentrant.
 */
#ifndef TSE_STORAGE_SLOT_GROUPS_H
#define TSE_STORAGE_SLOT_GROUPS_H

#include <stddef.h>

/*
 * Groups k keys by their slots[0..k) (tse_key_slot of each key). order
 * (room for k) receives the key indices group by group: groups in the order
 * of their first key, the keys of a group in the order given. start (room
 * for k + 1) receives where each group begins in order, and start[groups]
 * = k. Returns the number of groups (0 when k is 0). Time O(k * groups).
 */
size_t tse_slot_groups(const unsigned *slots, size_t k, size_t *order, size_t *start);

#endif

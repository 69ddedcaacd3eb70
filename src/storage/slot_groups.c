/*
 * slot_groups.c - keys grouped by hash slot (slot_groups.h). Invariant of
 * the loop: order[0..placed) holds every key of the groups found so far,
 * and a key is placed exactly when a key before it, or itself, opened the
 * group of its slot.
 */
#include "storage/slot_groups.h"

#include <stdbool.h>

/* Whether one of the groups found so far has slot s (the slot of its
 * first key): then the key was placed with it. */
static bool grouped(const unsigned *slots, const size_t *order, const size_t *start, size_t groups,
                    unsigned s)
{
    for (size_t g = 0; g < groups; g++)
        if (slots[order[start[g]]] == s)
            return true;
    return false;
}

size_t tse_slot_groups(const unsigned *slots, size_t k, size_t *order, size_t *start)
{
    size_t groups = 0, placed = 0;

    for (size_t i = 0; i < k; i++) {
        if (grouped(slots, order, start, groups, slots[i]))
            continue;
        start[groups++] = placed;
        for (size_t j = i; j < k; j++)
            if (slots[j] == slots[i])
                order[placed++] = j;
    }
    start[groups] = placed;
    return groups;
}

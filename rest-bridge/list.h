/*
 * list.h - the bridge's intrusive doubly linked lists (calls in flight,
 * event streams, watched connections): a node is any struct with `prev`
 * and `next` pointers to its own type, a list a pointer to its first node
 * (NULL: empty). Not thread-safe: the caller holds its list's lock. The
 * arguments are plain lvalues, each evaluated more than once.
 */
#ifndef TSB_BRIDGE_LIST_H
#define TSB_BRIDGE_LIST_H

/* Puts node first in the list head. */
#define TSB_LIST_PUSH(head, node)                                                                  \
    do {                                                                                           \
        (node)->prev = NULL;                                                                       \
        (node)->next = (head);                                                                     \
        if ((head) != NULL)                                                                        \
            (head)->prev = (node);                                                                 \
        (head) = (node);                                                                           \
    } while (0)

/* Takes node, which is on the list head, off it. */
#define TSB_LIST_UNLINK(head, node)                                                                \
    do {                                                                                           \
        if ((node)->prev != NULL)                                                                  \
            (node)->prev->next = (node)->next;                                                     \
        else                                                                                       \
            (head) = (node)->next;                                                                 \
        if ((node)->next != NULL)                                                                  \
            (node)->next->prev = (node)->prev;                                                     \
    } while (0)

#endif

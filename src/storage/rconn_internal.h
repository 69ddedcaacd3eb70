/*
 * rconn_internal.h - the pure bookkeeping of rconn.c's pipelines, exposed
 * for its unit test only (tests/unit/test_storage_rconn.c).
 */
#ifndef TSE_STORAGE_RCONN_INTERNAL_H
#define TSE_STORAGE_RCONN_INTERNAL_H

#include <stddef.h>

/*
 * Groups the n commands of a round by the node each goes to (node_of[i] in
 * 0..nnodes-1; negative: not sent this round), keeping their order within a
 * node, so each node's replies, read in that order, answer them in turn:
 * order[start[k]..start[k+1]) are the indices of node k's commands,
 * ascending. order holds n entries, start nnodes + 1. Returns how many
 * commands were placed (start[nnodes]).
 */
size_t tse_rconn_plan(const int *node_of, size_t n, size_t nnodes, size_t *order, size_t *start);

#endif

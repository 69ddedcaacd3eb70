/*
 * command_keys.h - where the keys of a Redis command are among its
 * arguments, and so which hash slot of a Redis Cluster the command must go
 * to (command_keys.c). The cluster connection (rconn.h) routes by it.
 *
 * Only the commands the service sends are known (streams, sets, hashes,
 * scripts, a few plain key commands); an unknown command is refused rather
 * than guessed, and the caller then names the slot itself. A command whose
 * keys hash to different slots is refused too: a cluster node would answer
 * CROSSSLOT, and a single Redis would run what a cluster cannot.
 *
 * Pure: no I/O, no state, no allocation; reentrant.
 */
#ifndef TSE_STORAGE_COMMAND_KEYS_H
#define TSE_STORAGE_COMMAND_KEYS_H

#include <stddef.h>

#include "common/status.h"

/* The slot of a command that touches no key: any node may run it. */
#define TSE_SLOT_ANY (-1)

/* The keys of a command: count arguments from argv[first], every step-th. */
typedef struct tse_key_range {
    int first;
    int count;
    int step;
} tse_key_range;

/*
 * The keys of argv[0..argc) (lens NULL: NUL-terminated strings; the command
 * name is case-insensitive). count 0 for a command without keys (PING,
 * SCRIPT LOAD, EVALSHA with numkeys 0, ...). TSE_INVALID, field "command",
 * for an unknown command or arguments that do not say where the keys are
 * (XREADGROUP without STREAMS, EVALSHA numkeys beyond the arguments).
 */
tse_status tse_command_keys(int argc, const char *const *argv, const size_t *lens,
                            tse_key_range *out, tse_error *err);

/*
 * The one slot (0..16383) every key of the command hashes to, or
 * TSE_SLOT_ANY when it has none. TSE_INVALID, field "command", for keys in
 * different slots (naming two of them) or as tse_command_keys.
 */
tse_status tse_command_slot(int argc, const char *const *argv, const size_t *lens, int *slot,
                            tse_error *err);

#endif

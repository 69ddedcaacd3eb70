/*
 * command_keys.c - the key positions of the Redis commands the service
 * sends, and the one slot they hash to (command_keys.h).
 *
 * Three shapes: fixed positions (a table: first key, how many, step; -1
 * for "to the end"), keys after a subcommand (XGROUP, XINFO), and keys
 * whose number an argument says (XREAD/XREADGROUP's STREAMS, the scripts'
 * numkeys). The table follows Redis's own key specs (COMMAND INFO).
 */
#include "storage/command_keys.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "storage/keys.h"

/* A command with keys at fixed positions: count -1 runs to the last
 * argument (every step-th). */
typedef struct fixed_keys {
    const char *name;
    int first, count, step;
} fixed_keys;

static const fixed_keys fixed[] = {
    /* streams */
    {"XADD", 1, 1, 1},
    {"XACK", 1, 1, 1},
    {"XCLAIM", 1, 1, 1},
    {"XAUTOCLAIM", 1, 1, 1},
    {"XPENDING", 1, 1, 1},
    {"XRANGE", 1, 1, 1},
    {"XREVRANGE", 1, 1, 1},
    {"XDEL", 1, 1, 1},
    {"XLEN", 1, 1, 1},
    {"XTRIM", 1, 1, 1},
    {"XSETID", 1, 1, 1},
    /* sets */
    {"SADD", 1, 1, 1},
    {"SREM", 1, 1, 1},
    {"SMEMBERS", 1, 1, 1},
    {"SCARD", 1, 1, 1},
    {"SISMEMBER", 1, 1, 1},
    {"SMISMEMBER", 1, 1, 1},
    {"SSCAN", 1, 1, 1},
    /* hashes */
    {"HGET", 1, 1, 1},
    {"HSET", 1, 1, 1},
    {"HSETNX", 1, 1, 1},
    {"HMSET", 1, 1, 1},
    {"HMGET", 1, 1, 1},
    {"HGETALL", 1, 1, 1},
    {"HDEL", 1, 1, 1},
    {"HLEN", 1, 1, 1},
    {"HEXISTS", 1, 1, 1},
    {"HKEYS", 1, 1, 1},
    {"HVALS", 1, 1, 1},
    {"HINCRBY", 1, 1, 1},
    {"HSCAN", 1, 1, 1},
    /* plain keys */
    {"GET", 1, 1, 1},
    {"SET", 1, 1, 1},
    {"GETDEL", 1, 1, 1},
    {"INCR", 1, 1, 1},
    {"INCRBY", 1, 1, 1},
    {"EXPIRE", 1, 1, 1},
    {"PEXPIRE", 1, 1, 1},
    {"EXPIREAT", 1, 1, 1},
    {"PEXPIREAT", 1, 1, 1},
    {"PERSIST", 1, 1, 1},
    {"TTL", 1, 1, 1},
    {"PTTL", 1, 1, 1},
    {"TYPE", 1, 1, 1},
    {"DEL", 1, -1, 1},
    {"UNLINK", 1, -1, 1},
    {"EXISTS", 1, -1, 1},
    {"TOUCH", 1, -1, 1},
    {"MGET", 1, -1, 1},
    {"MSET", 1, -1, 2},
    /* no key: any node */
    {"PING", 0, 0, 1},
    {"ECHO", 0, 0, 1},
    {"SCRIPT", 0, 0, 1},
    {"INFO", 0, 0, 1},
    {"CLUSTER", 0, 0, 1},
    {"TIME", 0, 0, 1},
    {"DBSIZE", 0, 0, 1},
};

/* Commands whose key follows a subcommand (argv[2]); these subcommands
 * have none. */
static const char *const subcommand_keys[] = {"XGROUP", "XINFO"};
static const char *const keyless_subcommands[] = {"HELP"};

/* Scripts and functions: argv[2] says how many keys follow it. */
static const char *const numkeys_commands[] = {"EVAL",       "EVALSHA", "EVAL_RO",
                                               "EVALSHA_RO", "FCALL",   "FCALL_RO"};

static size_t arg_len(const char *const *argv, const size_t *lens, int i)
{
    return lens != NULL ? lens[i] : strlen(argv[i]);
}

/* The command's name for a message: at most 32 bytes, NUL or not. */
#define NAME(argv, lens) (int)(arg_len(argv, lens, 0) < 32 ? arg_len(argv, lens, 0) : 32), argv[0]

/* Whether argument i is word (ASCII, case-insensitive). */
static bool arg_is(const char *const *argv, const size_t *lens, int i, const char *word)
{
    size_t n = strlen(word);

    return arg_len(argv, lens, i) == n && strncasecmp(argv[i], word, n) == 0;
}

static bool in_list(const char *const *argv, const size_t *lens, int i, const char *const *list,
                    size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (arg_is(argv, lens, i, list[k]))
            return true;
    return false;
}

#define IN_LIST(argv, lens, i, list) in_list(argv, lens, i, list, sizeof(list) / sizeof(list[0]))

static tse_status set_range(tse_key_range *out, int first, int count, int step)
{
    out->first = first;
    out->count = count;
    out->step = step;
    return TSE_OK;
}

/* XREAD [COUNT n] [BLOCK ms] STREAMS k... id..., and XREADGROUP GROUP g c
 * [COUNT n] [BLOCK ms] [NOACK] STREAMS k... id...: as many keys as ids. */
static tse_status streams_keys(int argc, const char *const *argv, const size_t *lens, int from,
                               tse_key_range *out, tse_error *err)
{
    for (int i = from; i < argc; i++) {
        if (arg_is(argv, lens, i, "STREAMS")) {
            int rest = argc - i - 1;

            if (rest == 0 || rest % 2 != 0)
                break;
            return set_range(out, i + 1, rest / 2, 1);
        }
        if (arg_is(argv, lens, i, "COUNT") || arg_is(argv, lens, i, "BLOCK"))
            i++;
        else if (!arg_is(argv, lens, i, "NOACK"))
            break;
    }
    return tse_error_set(err, TSE_INVALID, "command",
                         "%.*s: no STREAMS followed by as many ids as keys", NAME(argv, lens));
}

/* EVALSHA sha numkeys key... arg...: numkeys in 0..argc-3. */
static tse_status numkeys_keys(int argc, const char *const *argv, const size_t *lens,
                               tse_key_range *out, tse_error *err)
{
    char num[16], *end;
    size_t len;
    long n;

    if (argc < 3 || (len = arg_len(argv, lens, 2)) == 0 || len >= sizeof(num))
        goto bad;
    memcpy(num, argv[2], len);
    num[len] = '\0';
    n = strtol(num, &end, 10);
    if (*end != '\0' || n < 0 || n > argc - 3)
        goto bad;
    return set_range(out, 3, (int)n, 1);
bad:
    return tse_error_set(err, TSE_INVALID, "command",
                         "%.*s: numkeys is not a number of the arguments that follow it",
                         NAME(argv, lens));
}

tse_status tse_command_keys(int argc, const char *const *argv, const size_t *lens,
                            tse_key_range *out, tse_error *err)
{
    if (argc < 1)
        return tse_error_set(err, TSE_INVALID, "command", "an empty command");
    for (size_t k = 0; k < sizeof(fixed) / sizeof(fixed[0]); k++) {
        const fixed_keys *f = &fixed[k];

        if (!arg_is(argv, lens, 0, f->name))
            continue;
        if (f->count == 0)
            return set_range(out, 0, 0, 1);
        if (argc <= f->first)
            return tse_error_set(err, TSE_INVALID, "command", "%s: no key", f->name);
        if (f->count > 0)
            return set_range(out, f->first, f->count, f->step);
        return set_range(out, f->first, (argc - f->first + f->step - 1) / f->step, f->step);
    }
    if (IN_LIST(argv, lens, 0, subcommand_keys)) {
        if (argc >= 2 && IN_LIST(argv, lens, 1, keyless_subcommands))
            return set_range(out, 0, 0, 1);
        if (argc < 3)
            return tse_error_set(err, TSE_INVALID, "command", "%.*s: no key", NAME(argv, lens));
        return set_range(out, 2, 1, 1);
    }
    if (arg_is(argv, lens, 0, "XREAD"))
        return streams_keys(argc, argv, lens, 1, out, err);
    if (arg_is(argv, lens, 0, "XREADGROUP")) {
        if (argc < 4 || !arg_is(argv, lens, 1, "GROUP"))
            return tse_error_set(err, TSE_INVALID, "command",
                                 "XREADGROUP: not GROUP <group> <consumer> ...");
        return streams_keys(argc, argv, lens, 4, out, err);
    }
    if (IN_LIST(argv, lens, 0, numkeys_commands))
        return numkeys_keys(argc, argv, lens, out, err);
    return tse_error_set(err, TSE_INVALID, "command",
                         "%.*s: unknown command, its keys (and so its slot) cannot be found",
                         NAME(argv, lens));
}

/* The refusal of a command whose keys a and b hash to different slots. */
static tse_status cross_slot(const char *const *argv, const size_t *lens, int a, int b,
                             tse_error *err)
{
    size_t alen = arg_len(argv, lens, a), blen = arg_len(argv, lens, b);

    return tse_error_set(err, TSE_INVALID, "command",
                         "%.*s: keys in different slots (%.*s: %u, %.*s: %u); a cluster runs a "
                         "command on one slot only",
                         NAME(argv, lens), (int)(alen < 48 ? alen : 48), argv[a],
                         tse_key_slot(argv[a], alen), (int)(blen < 48 ? blen : 48), argv[b],
                         tse_key_slot(argv[b], blen));
}

tse_status tse_command_slot(int argc, const char *const *argv, const size_t *lens, int *slot,
                            tse_error *err)
{
    tse_key_range r;
    tse_status st = tse_command_keys(argc, argv, lens, &r, err);
    int first = -1;

    if (st != TSE_OK)
        return st;
    *slot = TSE_SLOT_ANY;
    for (int k = 0, i = r.first; k < r.count; k++, i += r.step) {
        int s = (int)tse_key_slot(argv[i], arg_len(argv, lens, i));

        if (first < 0) {
            first = i;
            *slot = s;
        } else if (s != *slot) {
            *slot = TSE_SLOT_ANY;
            return cross_slot(argv, lens, first, i, err);
        }
    }
    return TSE_OK;
}

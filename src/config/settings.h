/*
 * settings.h - the engine behind every process's settings: one table per
 * program describes each setting (flag, environment variable, kind,
 * bounds, default, help), and one loader fills a struct from defaults,
 * then the environment, then the command line ("--key=value" or
 * "--key value"; a flag wins), validating each value with an error that
 * names the setting's environment variable. Parsing, validation and
 * --help cannot disagree because they read the same table.
 *
 * Precedence, lowest first: the table's defaults < the settings file <
 * the environment < the command line. The settings file is the path of
 * --config, else of the program's config environment variable, else its
 * default path (read only when present; "" means no file). It holds
 * "KEY=value" lines keyed by the environment variables' names, with '#'
 * comments, blank lines and optionally quoted values, so that the same file
 * also works as a systemd EnvironmentFile; an unknown key or a bad value is
 * an error naming the file, the line and the key.
 *
 * Used by the event service (config.c) and the REST bridge
 * (rest-bridge/config.c). Stateless; thread-safe.
 */
#ifndef TSE_CONFIG_SETTINGS_H
#define TSE_CONFIG_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/status.h"

typedef enum tse_config_outcome {
    TSE_CONFIG_RUN,  /* settings valid: run */
    TSE_CONFIG_HELP, /* --help or --version was printed: exit 0 */
    TSE_CONFIG_ERROR /* err names the bad key: exit 2 */
} tse_config_outcome;

typedef enum tse_setting_kind {
    TSE_SETTING_STRING,   /* char[size], non-empty */
    TSE_SETTING_INT,      /* int when max <= INT_MAX, else int64_t; within [min, max] */
    TSE_SETTING_DURATION, /* int64_t ms: "250ms", "30s", "2m", "1h", "7d", bare ms */
    TSE_SETTING_BYTES,    /* int64_t: "65536", "512KiB", "4MiB" */
    TSE_SETTING_LEVEL,    /* char[size]: debug|info|warn|warning|error */
    TSE_SETTING_FORMAT,   /* bool: json (true) | text */
    TSE_SETTING_MODE,     /* bool: strict (true) | lenient */
    TSE_SETTING_OPTIONAL, /* char[size], may be empty (a file path that is not required) */
    TSE_SETTING_BOOL,     /* bool: true | false */
    TSE_SETTING_CHOICE    /* int: the index of the value among def's ("off|on": the first is
                           * the default) */
} tse_setting_kind;

typedef struct tse_setting {
    const char *flag; /* "redis-url": --redis-url */
    const char *env;  /* "REDIS_URL" */
    tse_setting_kind kind;
    size_t offset; /* of the field in the program's settings struct */
    size_t size;   /* of a string field */
    int64_t min, max;
    const char *def;
    const char *help;
} tse_setting;

/* A program's settings: its table and what --help and --version print. */
typedef struct tse_settings {
    const tse_setting *table;
    size_t n;
    const char *program;        /* "tracseq-events": --version prints it with TSE_VERSION */
    const char *about;          /* printed after the usage line of --help */
    const char *config_env;     /* "TRACSEQ_EVENTS_CONFIG": the settings file's path */
    const char *config_default; /* read when present; NULL: no settings file */
} tse_settings;

/*
 * Fills cfg (zeroed by the caller) from the defaults, the settings file, the
 * environment and argv.
 * --help / --version write to out and win even over a bad environment.
 */
tse_config_outcome tse_settings_load(const tse_settings *s, void *cfg, int argc, char **argv,
                                     FILE *out, tse_error *err);

/* Prints the usage line, the about text and the settings table. */
void tse_settings_print_help(const tse_settings *s, FILE *out);

/* Parses a duration: "250ms", "30s", "2m", "1h", "7d", or bare milliseconds. */
bool tse_duration_parse(const char *s, int64_t *ms);

#endif

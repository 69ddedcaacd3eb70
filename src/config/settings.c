/*
 * settings.c - the settings engine; see settings.h. Layers, lowest first:
 * defaults, the settings file, the environment, the command line.
 */
#include "config/settings.h"

#include "obs/log.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

typedef tse_setting setting;

/* A number with one of the units' suffixes ("" included when listed). */
typedef struct unit {
    const char *suffix;
    int64_t mul;
} unit;

static bool parse_with_units(const char *s, const unit *units, size_t n, int64_t *out)
{
    char *end;
    long long v;

    if (s == NULL || !isdigit((unsigned char)s[0]))
        return false;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(end, units[i].suffix) == 0) {
            if (v > INT64_MAX / units[i].mul)
                return false;
            *out = v * units[i].mul;
            return true;
        }
    }
    return false;
}

bool tse_duration_parse(const char *s, int64_t *ms)
{
    static const unit units[] = {{"ms", 1},      {"s", 1000},     {"m", 60000},
                                 {"h", 3600000}, {"d", 86400000}, {"", 1}};

    return parse_with_units(s, units, sizeof(units) / sizeof(units[0]), ms);
}

static bool bytes_parse(const char *s, int64_t *out)
{
    static const unit units[] = {{"", 1},          {"B", 1},    {"KiB", 1024},
                                 {"MiB", 1 << 20}, {"k", 1024}, {"M", 1 << 20}};

    return parse_with_units(s, units, sizeof(units) / sizeof(units[0]), out);
}

static tse_status bad(const setting *st, const char *value, const char *why, tse_error *err)
{
    /* Clip the echoed value so that the reason always fits in the message. */
    return tse_error_set(err, TSE_INVALID, st->env, "invalid %s (--%s): '%.48s%s' %s", st->env,
                         st->flag, value, strlen(value) > 48 ? "..." : "", why);
}

static tse_status check_range(const setting *st, const char *value, int64_t v, tse_error *err)
{
    if (v < st->min || v > st->max)
        return tse_error_set(err, TSE_INVALID, st->env,
                             "invalid %s (--%s): '%s' is out of range [%lld, %lld]", st->env,
                             st->flag, value, (long long)st->min, (long long)st->max);
    return TSE_OK;
}

/* The index of value among st->def's ("a|b|c"), or -1. */
static int choice_index(const setting *st, const char *value)
{
    size_t len = strlen(value);
    const char *p = st->def;
    int i = 0;

    while (p != NULL && *p != '\0') {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && strncmp(p, value, n) == 0)
            return i;
        p = bar ? bar + 1 : p + n;
        i++;
    }
    return -1;
}

/* Applies one textual value to its field of cfg. */
static tse_status apply(void *cfg, const setting *st, const char *value, tse_error *err)
{
    tse_log_level level;
    char *field = (char *)cfg + st->offset;
    int64_t v = 0;
    char *end;

    switch (st->kind) {
    case TSE_SETTING_STRING:
    case TSE_SETTING_LEVEL:
    case TSE_SETTING_OPTIONAL:
        if (value[0] == '\0' && st->kind != TSE_SETTING_OPTIONAL)
            return bad(st, value, "must be non-empty", err);
        /* Not echoed: the value may hold a secret (REDIS_URL's password). */
        if (strlen(value) >= st->size)
            return tse_error_set(err, TSE_INVALID, st->env,
                                 "invalid %s (--%s): longer than %zu characters", st->env, st->flag,
                                 st->size - 1);
        if (st->kind == TSE_SETTING_LEVEL && !tse_log_level_parse(value, &level))
            return bad(st, value, "is not one of debug, info, warn, error", err);
        memcpy(field, value, strlen(value) + 1);
        return TSE_OK;
    case TSE_SETTING_BOOL:
        if (strcmp(value, "true") && strcmp(value, "false"))
            return bad(st, value, "is not one of true, false", err);
        *(bool *)field = strcmp(value, "true") == 0;
        return TSE_OK;
    case TSE_SETTING_CHOICE:
        if ((*(int *)field = choice_index(st, value)) < 0)
            return tse_error_set(err, TSE_INVALID, st->env,
                                 "invalid %s (--%s): '%.48s%s' is not one of %s", st->env, st->flag,
                                 value, strlen(value) > 48 ? "..." : "", st->def);
        return TSE_OK;
    case TSE_SETTING_FORMAT:
        if (strcmp(value, "json") && strcmp(value, "text"))
            return bad(st, value, "is not one of json, text", err);
        *(bool *)field = strcmp(value, "json") == 0;
        return TSE_OK;
    case TSE_SETTING_MODE:
        if (strcmp(value, "lenient") && strcmp(value, "strict"))
            return bad(st, value, "is not one of lenient, strict", err);
        *(bool *)field = strcmp(value, "strict") == 0;
        return TSE_OK;
    case TSE_SETTING_DURATION:
        if (!tse_duration_parse(value, &v))
            return bad(st, value, "is not a duration such as 500ms, 30s, 2m, 7d", err);
        break;
    case TSE_SETTING_BYTES:
        if (!bytes_parse(value, &v))
            return bad(st, value, "is not a size such as 65536, 512KiB, 4MiB", err);
        break;
    case TSE_SETTING_INT:
        errno = 0;
        v = strtoll(value, &end, 10);
        if (errno || end == value || *end != '\0')
            return bad(st, value, "is not an integer", err);
        break;
    }
    if (check_range(st, value, v, err) != TSE_OK)
        return err ? err->code : TSE_INVALID;
    if (st->kind == TSE_SETTING_INT && st->max <= INT_MAX)
        *(int *)field = (int)v;
    else
        *(int64_t *)field = v;
    return TSE_OK;
}

static const setting *find_flag(const tse_settings *s, const char *name, size_t len)
{
    for (size_t i = 0; i < s->n; i++)
        if (strlen(s->table[i].flag) == len && strncmp(s->table[i].flag, name, len) == 0)
            return &s->table[i];
    return NULL;
}

void tse_settings_print_help(const tse_settings *s, FILE *out)
{
    fprintf(out, "usage: %s [--key=value ...]\n\n%s\n", s->program, s->about);
    if (s->config_env != NULL)
        fprintf(out, "Every setting is a flag, an environment variable or a line of the settings\n"
                     "file; a flag wins over the environment, the environment over the file.\n\n");
    else
        fprintf(out, "Every setting is a flag or an environment variable; the flag wins.\n\n");
    for (size_t i = 0; i < s->n; i++) {
        const setting *st = &s->table[i];
        int first = st->kind == TSE_SETTING_CHOICE ? (int)strcspn(st->def, "|") : -1;
        const char *def = st->def[0] != '\0' ? st->def : "''";
        fprintf(out, "  --%-22s %-22s default %.*s\n      %s\n", st->flag, st->env,
                first >= 0 ? first : (int)strlen(def), def, st->help);
    }
    if (s->config_env != NULL)
        fprintf(out,
                "  --%-22s %-22s default %s\n      settings file: KEY=value lines keyed by the "
                "environment variables above, '#' comments; read when present ('': none)\n",
                "config", s->config_env, s->config_default ? s->config_default : "''");
    fprintf(out, "\n  --help, --version\n");
}

static tse_status load_defaults(const tse_settings *s, void *cfg, tse_error *err)
{
    for (size_t i = 0; i < s->n; i++) {
        tse_status st = TSE_OK;
        if (s->table[i].kind == TSE_SETTING_CHOICE)
            *(int *)((char *)cfg + s->table[i].offset) = 0; /* def's first value */
        else
            st = apply(cfg, &s->table[i], s->table[i].def, err);
        if (st != TSE_OK)
            return st;
    }
    return TSE_OK;
}

static tse_status load_env(const tse_settings *s, void *cfg, tse_error *err)
{
    for (size_t i = 0; i < s->n; i++) {
        const char *env = getenv(s->table[i].env);
        tse_status st;
        if (env != NULL && (st = apply(cfg, &s->table[i], env, err)) != TSE_OK)
            return st;
    }
    return TSE_OK;
}

/* ---- the settings file ------------------------------------------------- */

#define FILE_LINE_MAX 4096

/* The flag at argv[*i] ("--key=value" or "--key value"): its name and its
 * value (NULL when missing); advances *i past a separate value. */
typedef struct flag {
    const char *name;
    size_t len;
    const char *value;
} flag;

static tse_status next_flag(int argc, char **argv, int *i, flag *f, tse_error *err)
{
    const char *arg = argv[*i], *eq;

    if (strncmp(arg, "--", 2) != 0)
        return tse_error_set(err, TSE_INVALID, arg, "unexpected argument '%s' (see --help)", arg);
    eq = strchr(arg, '=');
    f->name = arg + 2;
    f->len = eq ? (size_t)(eq - f->name) : strlen(f->name);
    f->value = eq ? eq + 1 : *i + 1 < argc ? argv[++*i] : NULL;
    return TSE_OK;
}

static bool is_config_flag(const tse_settings *s, const flag *f)
{
    return s->config_env != NULL && f->len == 6 && strncmp(f->name, "config", 6) == 0;
}

/* The settings file: --config, else the environment, else the default
 * (*given false: a missing file is no error). NULL or "": none. */
static const char *config_path(const tse_settings *s, int argc, char **argv, bool *given)
{
    const char *path = NULL;
    flag f;

    *given = true;
    for (int i = 1; i < argc; i++)
        if (next_flag(argc, argv, &i, &f, NULL) == TSE_OK && is_config_flag(s, &f))
            path = f.value;
    if (path == NULL && s->config_env != NULL)
        path = getenv(s->config_env);
    if (path == NULL) {
        *given = false;
        path = s->config_default;
    }
    return path;
}

static char *trim(char *p)
{
    char *end = p + strlen(p);

    while (isspace((unsigned char)*p))
        p++;
    while (end > p && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return p;
}

/* Rewrites err's message as "<path>:<line>: <message>". */
static tse_status at_line(const char *path, int line, tse_error *err)
{
    char field[TSE_ERROR_FIELD_MAX], why[TSE_ERROR_MESSAGE_MAX];

    if (err == NULL)
        return TSE_INVALID;
    snprintf(field, sizeof(field), "%s", err->field);
    snprintf(why, sizeof(why), "%s", err->message);
    return tse_error_set(err, err->code, field, "%s:%d: %s", path, line, why);
}

/* One line: blank, "# comment" or KEY=value (value optionally quoted). */
static tse_status load_line(const tse_settings *s, void *cfg, char *text, tse_error *err)
{
    char *key = trim(text), *eq, *value;
    size_t len;

    if (*key == '\0' || *key == '#')
        return TSE_OK;
    if ((eq = strchr(key, '=')) == NULL)
        return tse_error_set(err, TSE_INVALID, NULL, "expected KEY=value, got '%.48s'", key);
    *eq = '\0';
    key = trim(key);
    value = trim(eq + 1);
    len = strlen(value);
    if (len >= 2 && (value[0] == '"' || value[0] == '\'') && value[len - 1] == value[0]) {
        value[len - 1] = '\0';
        value++;
    }
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->table[i].env, key) == 0)
            return apply(cfg, &s->table[i], value, err);
    return tse_error_set(err, TSE_INVALID, key, "unknown setting '%.48s' (see --help)", key);
}

static tse_status load_file(const tse_settings *s, void *cfg, int argc, char **argv, tse_error *err)
{
    char text[FILE_LINE_MAX];
    tse_status st = TSE_OK;
    bool given;
    const char *path = config_path(s, argc, argv, &given);
    FILE *f;
    int line = 0;

    if (path == NULL || path[0] == '\0')
        return TSE_OK;
    if ((f = fopen(path, "re")) == NULL) {
        if (errno == ENOENT && !given)
            return TSE_OK;
        return tse_error_set(err, TSE_INVALID, s->config_env, "cannot read settings file %s: %s",
                             path, strerror(errno));
    }
    while (st == TSE_OK && fgets(text, sizeof(text), f) != NULL) {
        line++;
        if (strchr(text, '\n') == NULL && !feof(f))
            st = tse_error_set(err, TSE_INVALID, NULL, "line longer than %d bytes",
                               FILE_LINE_MAX - 2);
        else
            st = load_line(s, cfg, text, err);
        if (st != TSE_OK)
            st = at_line(path, line, err);
    }
    if (st == TSE_OK && ferror(f))
        st = tse_error_set(err, TSE_INVALID, s->config_env, "cannot read settings file %s: %s",
                           path, strerror(errno));
    fclose(f);
    return st;
}

/* --help and --version answer even when the environment holds a bad value. */
static bool wants_help(const tse_settings *s, int argc, char **argv, FILE *out)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            tse_settings_print_help(s, out);
            return true;
        }
        if (strcmp(argv[i], "--version") == 0) {
            fprintf(out, "%s %s\n", s->program, TSE_VERSION);
            return true;
        }
    }
    return false;
}

/* Applies the flag at argv[*i] ("--key=value" or "--key value"). */
static tse_status apply_flag(const tse_settings *s, void *cfg, int argc, char **argv, int *i,
                             tse_error *err)
{
    const char *arg = argv[*i];
    const setting *st = NULL;
    flag f;

    if (next_flag(argc, argv, i, &f, err) != TSE_OK)
        return TSE_INVALID;
    if (!is_config_flag(s, &f) && (st = find_flag(s, f.name, f.len)) == NULL)
        return tse_error_set(err, TSE_INVALID, arg, "unknown option '%s' (see --help)", arg);
    if (f.value == NULL)
        return tse_error_set(err, TSE_INVALID, st ? st->env : s->config_env,
                             "option --%.*s needs a value", (int)f.len, f.name);
    /* --config was read before the environment: see load_file. */
    return st ? apply(cfg, st, f.value, err) : TSE_OK;
}

tse_config_outcome tse_settings_load(const tse_settings *s, void *cfg, int argc, char **argv,
                                     FILE *out, tse_error *err)
{
    if (wants_help(s, argc, argv, out))
        return TSE_CONFIG_HELP;
    if (load_defaults(s, cfg, err) != TSE_OK || load_file(s, cfg, argc, argv, err) != TSE_OK ||
        load_env(s, cfg, err) != TSE_OK)
        return TSE_CONFIG_ERROR;
    for (int i = 1; i < argc; i++)
        if (apply_flag(s, cfg, argc, argv, &i, err) != TSE_OK)
            return TSE_CONFIG_ERROR;
    return TSE_CONFIG_RUN;
}

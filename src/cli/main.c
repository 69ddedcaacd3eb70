/*
 * main.c - eventctl, the command line of TracSeq Events: global options,
 * then one command (publish, tail, subscriptions, stats, types, health).
 *
 * Global options may come before the command or after it; each command
 * re-parses its own arguments with the global ones mixed in, so
 * `eventctl --server h:1 stats` and `eventctl stats --server h:1` agree.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct command {
    const char *name;
    int (*run)(tse_cli *cli, int argc, char *argv[]);
    const char *summary;
} command;

static const command commands[] = {
    {"publish", tse_cli_cmd_publish, "publish one event (TYPE, --payload JSON|@file)"},
    {"tail", tse_cli_cmd_tail, "print events matching PATTERNs live, acking each"},
    {"subscriptions", tse_cli_cmd_subscriptions, "list | create | get | delete subscriptions"},
    {"dead-letters", tse_cli_cmd_dead_letters, "list | get | redrive | purge dead letters"},
    {"seek", tse_cli_cmd_seek, "move a subscription to earliest, latest, a time or a snapshot"},
    {"snapshots", tse_cli_cmd_snapshots, "create | list | delete snapshots of a subscription"},
    {"stats", tse_cli_cmd_stats, "the service's counters"},
    {"types", tse_cli_cmd_types, "the event type catalog (or one type's fields)"},
    {"health", tse_cli_cmd_health, "whether the service is serving"},
    {"token", tse_cli_cmd_token, "a new token for IDENTITY and its tokens-file line"},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void print_help(void)
{
    size_t i;

    printf("Usage: eventctl [GLOBAL OPTIONS] COMMAND [ARGS]\n"
           "\n"
           "The command line of TracSeq Events, on the C client SDK.\n"
           "\n"
           "Commands:\n");
    for (i = 0; i < N_COMMANDS; i++)
        printf("  %-14s %s\n", commands[i].name, commands[i].summary);
    printf("  %-14s %s\n", "help COMMAND", "the help of COMMAND (same as COMMAND --help)");
    printf("\n%s", tse_cli_global_help);
    printf("\n"
           "Environment:\n"
           "  TRACSEQ_EVENTS_SERVER   default for --server\n"
           "  TRACSEQ_SOURCE_SERVICE  default for --source\n"
           "  TRACSEQ_TLS_CA, TRACSEQ_TLS_CERT, TRACSEQ_TLS_KEY, TRACSEQ_TLS_SERVER_NAME\n"
           "                          defaults for --tls-ca, --tls-cert, --tls-key,\n"
           "                          --tls-server-name\n"
           "\n"
           "Exit codes:\n"
           "  0  success\n"
           "  1  refused: the server rejected the request (invalid field, not found,\n"
           "     already exists, permission); stderr names the field the server named\n"
           "  2  usage error: unknown command or option, bad or missing argument\n"
           "  3  unavailable: server unreachable, not serving, or no answer in time\n"
           "  4  internal error\n"
           "  5  publish --strict: stored, but as generic data (schema_valid=false)\n"
           "\n"
           "Run 'eventctl COMMAND --help' for the options of a command.\n");
}

static const command *find_command(const char *name)
{
    size_t i;

    for (i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

/* "eventctl help [COMMAND]". */
static int run_help(tse_cli *cli, int argc, char *argv[])
{
    const command *c;
    char *help_argv[] = {NULL, "--help", NULL};

    if (argc < 2) {
        print_help();
        return TSE_CLI_EXIT_OK;
    }
    c = find_command(argv[1]);
    if (c == NULL)
        return tse_cli_usage_error(cli, "unknown command '%s'", argv[1]);
    cli->command = c->name;
    help_argv[0] = argv[1];
    return c->run(cli, 2, help_argv);
}

int main(int argc, char *argv[])
{
    static const struct option global[] = {TSE_CLI_GLOBAL_OPTIONS, {NULL, 0, NULL, 0}};
    tse_cli cli = {0};
    const command *c;
    int code, rc;

    /* A closed pipe (eventctl tail | head) is a write error, not a kill. */
    signal(SIGPIPE, SIG_IGN);
    opterr = 0;
    /* '+': stop at the command; what follows is the command's to parse. */
    while ((code = getopt_long(argc, argv, "+:h", global, NULL)) != -1) {
        rc = tse_cli_global_option(&cli, code, optarg, argv);
        if (rc != -1)
            return rc;
    }
    if (optind >= argc) {
        if (cli.help) {
            print_help();
            return TSE_CLI_EXIT_OK;
        }
        return tse_cli_usage_error(&cli, "a command is required");
    }
    if (strcmp(argv[optind], "help") == 0)
        return run_help(&cli, argc - optind, argv + optind);
    c = find_command(argv[optind]);
    if (c == NULL)
        return tse_cli_usage_error(&cli, "unknown command '%s'", argv[optind]);
    cli.command = c->name;
    return c->run(&cli, argc - optind, argv + optind);
}

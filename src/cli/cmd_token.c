/*
 * cmd_token.c - `eventctl token IDENTITY`: a new bearer token and the line
 * of the tokens file (AUTH_TOKENS_FILE) that lets it prove IDENTITY. The
 * token comes from libcrypto's random generator (32 bytes, base64url); only
 * its SHA-256 goes into the file, so the file is not a list of secrets. No
 * call to the service: the token works once the line is in the file and the
 * service has reloaded it (SIGHUP).
 */
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char token_help[] =
    "Usage: eventctl token IDENTITY\n"
    "\n"
    "Prints a new bearer token for IDENTITY on the first line, and on the\n"
    "second the line to add to the service's tokens file (AUTH_TOKENS_FILE)\n"
    "with the identity's rights appended, e.g.\n"
    "  lims sha256=<hex> publish=sample.* subscribe=sample.*\n"
    "then reload the service (kill -HUP). The token itself is shown only\n"
    "here: give it to the identity's owner (TRACSEQ_TOKEN), keep no copy.\n"
    "Rotation: add a second sha256= to the identity's line, reload, move the\n"
    "client to the new token, remove the old hash, reload. IDENTITY is\n"
    "1..64 of A-Z a-z 0-9 _ . - (the source_service it publishes as).\n"
    "\n";

static const struct option token_options[] = {TSE_CLI_GLOBAL_OPTIONS, {NULL, 0, NULL, 0}};

static bool identity_valid(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 64)
        return false;
    return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

/* base64url of n bytes, unpadded, into out (4 * n / 3 + 2 bytes at least). */
static void base64url(const unsigned char *in, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i;

    for (i = 0; i + 2 < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        out[o++] = a[v >> 6 & 63];
        out[o++] = a[v & 63];
    }
    if (n - i == 1) {
        out[o++] = a[in[i] >> 2];
        out[o++] = a[(in[i] & 3) << 4];
    } else if (n - i == 2) {
        unsigned v = (unsigned)in[i] << 8 | in[i + 1];
        out[o++] = a[v >> 10 & 63];
        out[o++] = a[v >> 4 & 63];
        out[o++] = a[(v & 15) << 2];
    }
    out[o] = '\0';
}

int tse_cli_cmd_token(tse_cli *cli, int argc, char *argv[])
{
    unsigned char raw[32], hash[EVP_MAX_MD_SIZE];
    char token[4 + 48], hex[2 * 32 + 1];
    unsigned int hlen = 0;
    int first;
    int rc = tse_cli_parse(cli, argc, argv, token_options, NULL, NULL, token_help, &first);

    if (rc != -1)
        return rc;
    if (argc - first != 1)
        return tse_cli_usage_error(cli, "needs exactly one IDENTITY");
    if (!identity_valid(argv[first]))
        return tse_cli_usage_error(cli, "IDENTITY is 1..64 of A-Z a-z 0-9 _ . -, not '%s'",
                                   argv[first]);
    memcpy(token, "tse_", 4);
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        fprintf(stderr, "eventctl token: INTERNAL: no random bytes from libcrypto\n");
        return TSE_CLI_EXIT_INTERNAL;
    }
    base64url(raw, sizeof(raw), token + 4);
    if (EVP_Digest(token, strlen(token), hash, &hlen, EVP_sha256(), NULL) != 1 || hlen != 32) {
        fprintf(stderr, "eventctl token: INTERNAL: SHA-256 failed\n");
        return TSE_CLI_EXIT_INTERNAL;
    }
    for (unsigned i = 0; i < hlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", hash[i]);
    printf("%s\n%s sha256=%s\n", token, argv[first], hex);
    return TSE_CLI_EXIT_OK;
}

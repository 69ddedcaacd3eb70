/*
 * certs.c - throwaway CAs and certificates with the openssl command line;
 * see certs.h.
 */
#include "certs.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Runs a shell command in the certificates' folder; fails the test on a
 * non-zero exit (openssl's chatter goes to the folder's log). */
static void run(const tse_test_certs *c, const char *fmt, ...)
{
    char cmd[2048], full[2400];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    snprintf(full, sizeof(full), "cd '%s' && { %s ; } >>openssl.log 2>&1", c->dir, cmd);
    if (system(full) != 0)
        fail_msg("openssl failed (see %s/openssl.log): %s", c->dir, cmd);
}

static void make_ca(const tse_test_certs *c, const char *name, const char *cn)
{
    run(c,
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
        "-subj '/CN=%s' -keyout %s.key -out %s.pem",
        cn, name, name);
}

/* A certificate for name signed by ca; ext: its extensions file's text. */
static void make_leaf(const tse_test_certs *c, const char *ca, const char *name, const char *cn,
                      const char *ext)
{
    run(c, "printf '%s' > %s.ext", ext, name);
    run(c,
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=%s' "
        "-keyout %s.key -out %s.csr && "
        "openssl x509 -req -in %s.csr -CA %s.pem -CAkey %s.key -CAcreateserial -days 2 "
        "-extfile %s.ext -out %s.pem",
        cn, name, name, name, ca, ca, name, name);
}

#define SERVER_EXT "subjectAltName=DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n"
#define CLIENT_EXT "extendedKeyUsage=clientAuth\\n"

tse_test_certs *tse_test_certs_make(void)
{
    tse_test_certs *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    snprintf(c->dir, sizeof(c->dir), "/tmp/tse-certs-XXXXXX");
    assert_non_null(mkdtemp(c->dir));
    make_ca(c, "ca", "TracSeq test CA");
    make_leaf(c, "ca", "server", "localhost", SERVER_EXT);
    make_leaf(c, "ca", "client", "test-client", CLIENT_EXT);
    make_ca(c, "other-ca", "Some other CA");
    make_leaf(c, "other-ca", "other-server", "localhost", SERVER_EXT);
    make_leaf(c, "other-ca", "other-client", "test-client", CLIENT_EXT);
    return c;
}

void tse_test_certs_make_client(const tse_test_certs *c, const char *ca, const char *name,
                                const char *cn)
{
    make_leaf(c, ca, name, cn, CLIENT_EXT);
}

void tse_test_certs_remove(tse_test_certs *c)
{
    char cmd[300];

    if (c == NULL)
        return;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", c->dir);
    free(c);
}

const char *tse_test_certs_path(const tse_test_certs *c, const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", c->dir, name);
    return buf;
}

char *tse_test_certs_read(const tse_test_certs *c, const char *name)
{
    char path[512];
    FILE *f = fopen(tse_test_certs_path(c, name, path, sizeof(path)), "r");
    char *buf = calloc(1, 65536);
    size_t n;

    assert_non_null(f);
    assert_non_null(buf);
    n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

void tse_test_certs_copy(const tse_test_certs *c, const char *from, const char *to)
{
    run(c, "cp %s %s.tmp && mv %s.tmp %s", from, to, to, to);
}

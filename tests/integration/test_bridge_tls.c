/*
 * test_bridge_tls.c - the REST bridge over HTTPS (curl against a throwaway
 * CA, support/certs.h), its channel to a service that requires mutual TLS,
 * and the rotation of its HTTPS certificate on SIGHUP (new connections get
 * the new one; the bridge stays up). Real redis-server, service and bridge.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "certs.h"
#include "harness.h"
#include "wait.h"

/* curl's HTTP status for method path (body may be NULL) with --cacert ca;
 * 0 when the handshake fails. */
static int curl(const tse_test_certs *c, const char *ca, const tse_test_service *b,
                const char *method, const char *path, const char *body)
{
    char cmd[2048], out[64] = "";
    FILE *p;

    snprintf(cmd, sizeof(cmd),
             "cd '%s' && curl -s -o /dev/null -w '%%{http_code}' --max-time 10 --cacert %s -X %s "
             "%s%s%s -H 'Content-Type: application/json' https://localhost:%d%s",
             c->dir, ca, method, body ? "--data '" : "", body ? body : "", body ? "'" : "", b->port,
             path);
    p = popen(cmd, "r");
    assert_non_null(p);
    if (fgets(out, sizeof(out), p) == NULL)
        out[0] = '\0';
    /* Its exit code is curl's business (none for a refused handshake);
     * a crash is not. */
    (void)tse_test_exit_code(pclose(p));
    return atoi(out);
}

static void https_to_clients_and_mutual_tls_to_the_service(void **state)
{
    tse_test_certs *c = tse_test_certs_make();
    tse_test_redis *r = tse_test_redis_start(false);
    char a[6][400];
    const char *sargs[5], *bargs[6];

    (void)state;
    snprintf(a[0], sizeof(a[0]), "--tls-cert=%s/server.pem", c->dir);
    snprintf(a[1], sizeof(a[1]), "--tls-key=%s/server.key", c->dir);
    snprintf(a[2], sizeof(a[2]), "--tls-client-ca=%s/ca.pem", c->dir);
    sargs[0] = a[0], sargs[1] = a[1], sargs[2] = a[2], sargs[3] = "--tls-client-auth=require";
    sargs[4] = NULL;
    tse_test_service *s = tse_test_service_start(r, sargs);
    assert_non_null(s);

    snprintf(a[3], sizeof(a[3]), "--event-service-tls-ca=%s/ca.pem", c->dir);
    snprintf(a[4], sizeof(a[4]), "--event-service-tls-cert=%s/client.pem", c->dir);
    snprintf(a[5], sizeof(a[5]), "--event-service-tls-key=%s/client.key", c->dir);
    /* The bridge's HTTPS certificate: the same server files as the service
     * (localhost, 127.0.0.1), rotated below. */
    bargs[0] = a[0], bargs[1] = a[1], bargs[2] = a[3], bargs[3] = a[4], bargs[4] = a[5];
    bargs[5] = NULL;
    tse_test_service *b = tse_test_bridge_start(s->addr, bargs);
    assert_non_null(b);

    /* Listening is not healthy yet: /health says 503 until the bridge's
     * channel to the service (a TLS handshake, slow in a sanitizer build
     * on a loaded host) is ready. */
    TSE_TEST_AWAIT(curl(c, "ca.pem", b, "GET", "/health", NULL) == 200, 30000,
                   "the bridge's /health over HTTPS to say 200");
    assert_int_equal(
        curl(c, "ca.pem", b, "POST", "/api/v1/events/publish",
             "{\"event_type\":\"tls.bridge\",\"source_service\":\"test\",\"payload\":{\"n\":1}}"),
        200);
    assert_int_equal(curl(c, "other-ca.pem", b, "GET", "/health", NULL), 0);

    /* Rotation: the bridge's certificate becomes one of the other CA. */
    tse_test_certs_copy(c, "other-server.pem", "server.pem");
    tse_test_certs_copy(c, "other-server.key", "server.key");
    assert_int_equal(kill(b->pid, SIGHUP), 0);
    /* The reload is the bridge's business in its own time: new
     * connections get the new certificate once it is done. */
    TSE_TEST_AWAIT(curl(c, "other-ca.pem", b, "GET", "/health", NULL) == 200, 10000,
                   "the bridge to present the rotated certificate");
    assert_int_equal(curl(c, "ca.pem", b, "GET", "/health", NULL), 0);
    assert_int_equal(
        curl(c, "other-ca.pem", b, "POST", "/api/v1/events/publish",
             "{\"event_type\":\"tls.bridge\",\"source_service\":\"test\",\"payload\":{\"n\":2}}"),
        200);

    assert_int_equal(tse_test_service_stop(b), 0);
    assert_int_equal(tse_test_service_stop(s), 0);
    tse_test_redis_stop(r);
    tse_test_certs_remove(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(https_to_clients_and_mutual_tls_to_the_service),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_client_tls.c - TLS on the gRPC port, with the SDK against the real
 * service and a real redis-server, certificates made fresh by openssl
 * (support/certs.h): publishing over TLS, mutual TLS (require: a good
 * client certificate, none, one from another CA; optional: none), a
 * plaintext client against the TLS port (fails, the service stays up),
 * certificate rotation on SIGHUP (new connections get the new certificate,
 * an open PublishStream keeps going; a reload of a mismatched key keeps the
 * certificate in use), and settings that cannot work
 * refused at start naming their key; eventctl's TLS options; identities
 * proven by a client certificate's CN (cn= in the tokens file) with their
 * permissions, under TLS_CLIENT_AUTH optional and require.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "certs.h"
#include "harness.h"
#include "tracseq/client.h"
#include "wait.h"

/* Calls that must fail do so within this (the handshake fails at once;
 * the SDK retries until its deadline). */
#define FAIL_MS 1500

static tse_test_certs *C;
static tse_test_redis *R;

static int setup(void **state)
{
    (void)state;
    C = tse_test_certs_make();
    /* Identities by certificate: its CN in the tokens file or not, and the
     * same CN from another CA. */
    tse_test_certs_make_client(C, "ca", "robot", "lab-robot");
    tse_test_certs_make_client(C, "ca", "stranger", "stranger");
    tse_test_certs_make_client(C, "other-ca", "other-robot", "lab-robot");
    R = tse_test_redis_start(false);
    return R == NULL;
}

static int teardown(void **state)
{
    (void)state;
    tse_test_redis_stop(R);
    tse_test_certs_remove(C);
    return 0;
}

/* The service with TLS from C's server.pem / server.key, client
 * certificates of ca.pem (client_auth NULL: none), plus extra (may be NULL). */
static tse_test_service *start_tls_with(const char *client_auth, const char *extra)
{
    static char cert[300], key[300], ca[300], cert_arg[320], key_arg[320], ca_arg[320],
        auth_arg[64];
    const char *args[7] = {NULL};
    int n = 0;

    snprintf(cert_arg, sizeof(cert_arg), "--tls-cert=%s",
             tse_test_certs_path(C, "server.pem", cert, sizeof(cert)));
    snprintf(key_arg, sizeof(key_arg), "--tls-key=%s",
             tse_test_certs_path(C, "server.key", key, sizeof(key)));
    args[n++] = cert_arg;
    args[n++] = key_arg;
    if (client_auth != NULL) {
        snprintf(ca_arg, sizeof(ca_arg), "--tls-client-ca=%s",
                 tse_test_certs_path(C, "ca.pem", ca, sizeof(ca)));
        snprintf(auth_arg, sizeof(auth_arg), "--tls-client-auth=%s", client_auth);
        args[n++] = ca_arg;
        args[n++] = auth_arg;
    }
    if (extra != NULL)
        args[n++] = extra;
    tse_test_service *s = tse_test_service_start(R, args);
    assert_non_null(s);
    return s;
}

static tse_test_service *start_tls(const char *client_auth)
{
    return start_tls_with(client_auth, NULL);
}

/* A client of s publishing as source; roots, cert and key name files of C
 * (NULL: none; roots NULL: plaintext unless a cert is given). */
static tse_client *client_as(const tse_test_service *s, const char *source, const char *roots,
                             const char *cert, const char *key, int timeout_ms)
{
    char *roots_pem = roots ? tse_test_certs_read(C, roots) : NULL;
    char *cert_pem = cert ? tse_test_certs_read(C, cert) : NULL;
    char *key_pem = key ? tse_test_certs_read(C, key) : NULL;
    tse_client_options o = {.target = s->addr,
                            .source_service = source,
                            .timeout_ms = timeout_ms,
                            .reconnect_initial_ms = 50,
                            .reconnect_max_ms = 300,
                            .tls_root_certs_pem = roots_pem,
                            .tls_cert_pem = cert_pem,
                            .tls_key_pem = key_pem};
    tse_client *c = NULL;
    tse_client_error err;

    if (tse_client_connect(&o, &c, &err) != TSE_CLIENT_OK)
        fail_msg("connect: %s", err.message);
    /* The SDK copied the PEM texts. */
    free(roots_pem);
    free(cert_pem);
    free(key_pem);
    return c;
}

static tse_client *client_of(const tse_test_service *s, const char *roots, const char *cert,
                             const char *key, int timeout_ms)
{
    return client_as(s, "tls-test", roots, cert, key, timeout_ms);
}

static tse_client_status publish(tse_client *c, tse_client_error *err)
{
    return tse_client_publish_json(c, "tls.test", "{\"n\":1}", NULL, NULL, err);
}

static void assert_publishes(tse_client *c)
{
    tse_client_error err;

    if (publish(c, &err) != TSE_CLIENT_OK)
        fail_msg("publish over TLS failed: %s %s", tse_client_status_name(err.status), err.message);
}

static void assert_refused(tse_client *c, const char *what)
{
    tse_client_error err;
    long long t0 = tse_test_now_ms();

    if (publish(c, &err) == TSE_CLIENT_OK)
        fail_msg("%s: publish succeeded", what);
    /* Cleanly: a connection error, never an answer from the service. */
    assert_true(err.status == TSE_CLIENT_UNAVAILABLE || err.status == TSE_CLIENT_DEADLINE_EXCEEDED);
    assert_true(tse_test_now_ms() - t0 < FAIL_MS + 5000);
}

typedef struct counts {
    atomic_int ok, failed;
} counts;

static void count(void *arg, const tse_client_publish_outcome *o)
{
    counts *n = arg;

    atomic_fetch_add(o->status == TSE_CLIENT_OK ? &n->ok : &n->failed, 1);
}

static bool all_answered(void *arg)
{
    counts *n = arg;

    return atomic_load(&n->ok) + atomic_load(&n->failed) >= 20;
}

static void publishes_over_tls_unary_and_stream(void **state)
{
    tse_test_service *s = start_tls(NULL);
    tse_client *c = client_of(s, "ca.pem", NULL, NULL, 10000);
    tse_client_publisher *pub = NULL;
    tse_client_event *ev = NULL;
    tse_client_error err;
    counts n = {0};

    (void)state;
    assert_publishes(c);
    assert_int_equal(tse_client_publisher_create(c, NULL, count, &n, &pub, &err), TSE_CLIENT_OK);
    assert_int_equal(tse_client_event_from_json("tls.stream", "{\"n\":2}", NULL, &ev, &err),
                     TSE_CLIENT_OK);
    for (int i = 0; i < 100; i++)
        assert_int_equal(tse_client_publisher_publish(pub, ev, NULL, &err), TSE_CLIENT_OK);
    assert_int_equal(tse_client_publisher_flush(pub, 10000, &err), TSE_CLIENT_OK);
    assert_int_equal(atomic_load(&n.ok), 100);
    tse_client_event_destroy(ev);
    tse_client_publisher_destroy(pub);
    tse_client_destroy(c);
    assert_int_equal(tse_test_service_stop(s), 0);
}

static void a_client_that_does_not_trust_the_server_is_refused(void **state)
{
    tse_test_service *s = start_tls(NULL);
    tse_client *wrong_ca = client_of(s, "other-ca.pem", NULL, NULL, FAIL_MS);
    tse_client *good = client_of(s, "ca.pem", NULL, NULL, 10000);

    (void)state;
    assert_refused(wrong_ca, "a client trusting another CA");
    assert_publishes(good);
    tse_client_destroy(wrong_ca);
    tse_client_destroy(good);
    assert_int_equal(tse_test_service_stop(s), 0);
}

static void plaintext_client_against_tls_port_fails_and_service_stays_up(void **state)
{
    tse_test_service *s = start_tls(NULL);
    tse_client *plain = client_of(s, NULL, NULL, NULL, FAIL_MS);
    tse_client *good;

    (void)state;
    assert_refused(plain, "a plaintext client");
    assert_refused(plain, "a plaintext client, again");
    tse_client_destroy(plain);
    assert_int_equal(kill(s->pid, 0), 0);
    good = client_of(s, "ca.pem", NULL, NULL, 10000);
    assert_publishes(good);
    tse_client_destroy(good);
    assert_int_equal(tse_test_service_stop(s), 0);
}

static void mtls_require_takes_only_certificates_of_its_ca(void **state)
{
    tse_test_service *s = start_tls("require");
    tse_client *good = client_of(s, "ca.pem", "client.pem", "client.key", 10000);
    tse_client *none = client_of(s, "ca.pem", NULL, NULL, FAIL_MS);
    tse_client *other = client_of(s, "ca.pem", "other-client.pem", "other-client.key", FAIL_MS);

    (void)state;
    assert_publishes(good);
    assert_refused(none, "mTLS require, no client certificate");
    assert_refused(other, "mTLS require, a certificate of another CA");
    assert_publishes(good);
    tse_client_destroy(good);
    tse_client_destroy(none);
    tse_client_destroy(other);
    assert_int_equal(tse_test_service_stop(s), 0);
}

static void mtls_optional_takes_no_certificate_but_not_a_bad_one(void **state)
{
    tse_test_service *s = start_tls("optional");
    tse_client *good = client_of(s, "ca.pem", "client.pem", "client.key", 10000);
    tse_client *none = client_of(s, "ca.pem", NULL, NULL, 10000);
    tse_client *other = client_of(s, "ca.pem", "other-client.pem", "other-client.key", FAIL_MS);

    (void)state;
    assert_publishes(good);
    assert_publishes(none);
    assert_refused(other, "mTLS optional, a certificate of another CA");
    tse_client_destroy(good);
    tse_client_destroy(none);
    tse_client_destroy(other);
    assert_int_equal(tse_test_service_stop(s), 0);
}

/*
 * The server's certificate is replaced by one of another CA and the
 * service gets SIGHUP: a new client trusting only the new CA connects, a
 * new one trusting only the old CA no longer does, and a PublishStream
 * opened before the rotation keeps publishing on its connection (it would
 * fail rather than reconnect: fail_on_break).
 */
static void sighup_rotates_the_certificate_for_new_connections_only(void **state)
{
    tse_test_service *s = start_tls(NULL);
    tse_client *before = client_of(s, "ca.pem", NULL, NULL, 10000);
    tse_client_publisher_options po = {.fail_on_break = true};
    tse_client_publisher *pub = NULL;
    tse_client_event *ev = NULL;
    tse_client_error err;
    counts n = {0};

    (void)state;
    assert_publishes(before);
    assert_int_equal(tse_client_publisher_create(before, &po, count, &n, &pub, &err),
                     TSE_CLIENT_OK);
    assert_int_equal(tse_client_event_from_json("tls.rotation", "{}", NULL, &ev, &err),
                     TSE_CLIENT_OK);
    for (int i = 0; i < 10; i++)
        assert_int_equal(tse_client_publisher_publish(pub, ev, NULL, &err), TSE_CLIENT_OK);
    assert_int_equal(tse_client_publisher_flush(pub, 10000, &err), TSE_CLIENT_OK);

    tse_test_certs_copy(C, "other-server.pem", "server.pem");
    tse_test_certs_copy(C, "other-server.key", "server.key");
    assert_int_equal(kill(s->pid, SIGHUP), 0);

    /* The reload is asynchronous to us: wait for a new client of the new
     * CA to get through. */
    tse_client *fresh = client_of(s, "other-ca.pem", NULL, NULL, FAIL_MS);
    long long until = tse_test_now_ms() + 15000;
    while (publish(fresh, &err) != TSE_CLIENT_OK) {
        if (tse_test_now_ms() > until)
            fail_msg("a client of the new CA never got through: %s", err.message);
        usleep(100 * 1000);
    }
    tse_client *stale = client_of(s, "ca.pem", NULL, NULL, FAIL_MS);
    assert_refused(stale, "a new client of the old CA after rotation");

    for (int i = 0; i < 10; i++)
        assert_int_equal(tse_client_publisher_publish(pub, ev, NULL, &err), TSE_CLIENT_OK);
    assert_int_equal(tse_client_publisher_flush(pub, 10000, &err), TSE_CLIENT_OK);
    assert_true(tse_test_wait_until(all_answered, &n, 10000, "20 answers"));
    assert_int_equal(atomic_load(&n.ok), 20);
    assert_publishes(before); /* the old connection of the blocking calls too */

    /* A reload that cannot work (a key of another certificate) keeps the
     * certificate in use, and the service. */
    tse_test_certs_copy(C, "client.key", "server.key");
    assert_int_equal(kill(s->pid, SIGHUP), 0);
    usleep(300 * 1000);
    tse_client *after_bad = client_of(s, "other-ca.pem", NULL, NULL, 10000);
    assert_publishes(after_bad);
    tse_client_destroy(after_bad);
    assert_int_equal(kill(s->pid, 0), 0);

    tse_client_event_destroy(ev);
    tse_client_publisher_destroy(pub);
    tse_client_destroy(before);
    tse_client_destroy(fresh);
    tse_client_destroy(stale);
    assert_int_equal(tse_test_service_stop(s), 0);
}

/* ---- identities proven by a client certificate (cn= in the tokens file) ---- */

/* Publishes type as c; the status. */
static tse_client_status publish_type(tse_client *c, const char *type)
{
    tse_client_error err;

    return tse_client_publish_json(c, type, "{}", NULL, NULL, &err);
}

static tse_client_status create_sub(tse_client *c, const char *name, const char *pattern)
{
    const char *patterns[1] = {pattern};
    tse_client_subscription_spec spec = {.name = name, .event_types = patterns, .n_event_types = 1};
    tse_client_error err;

    return tse_client_subscription_create(c, &spec, NULL, &err);
}

/*
 * Against a service with client_auth (optional or require) and a tokens
 * file naming lab-robot by certificate: its certificate (CN=lab-robot, of
 * the trusted CA) publishes and subscribes within its rights, as itself
 * only; a certificate with the same CN from another CA never connects; a
 * trusted certificate of a CN no identity has is UNAUTHENTICATED, and so is
 * a client without one (optional).
 */
static void certificate_identities(const char *client_auth)
{
    char tokens[300], arg[340];
    FILE *f;
    tse_test_service *s;
    tse_client *robot, *spoof, *other, *stranger, *none;

    tse_test_certs_path(C, "tokens", tokens, sizeof(tokens));
    f = fopen(tokens, "w");
    assert_non_null(f);
    fputs("lab-robot cn=lab-robot publish=sample.* subscribe=sample.*\n", f);
    fclose(f);
    snprintf(arg, sizeof(arg), "--auth-tokens-file=%s", tokens);
    s = start_tls_with(client_auth, arg);
    robot = client_as(s, "lab-robot", "ca.pem", "robot.pem", "robot.key", 10000);
    spoof = client_as(s, "lims", "ca.pem", "robot.pem", "robot.key", 10000);
    other = client_as(s, "lab-robot", "ca.pem", "other-robot.pem", "other-robot.key", FAIL_MS);
    stranger = client_as(s, "stranger", "ca.pem", "stranger.pem", "stranger.key", 10000);
    none = client_as(s, "lab-robot", "ca.pem", NULL, NULL,
                     strcmp(client_auth, "optional") == 0 ? 10000 : FAIL_MS);

    assert_int_equal(publish_type(robot, "sample.created"), TSE_CLIENT_OK);
    assert_int_equal(publish_type(robot, "sequencing.run_started"), TSE_CLIENT_PERMISSION_DENIED);
    assert_int_equal(publish_type(spoof, "sample.created"), TSE_CLIENT_PERMISSION_DENIED);
    assert_int_equal(create_sub(robot, "robot-samples", "sample.*"), TSE_CLIENT_OK);
    assert_int_equal(create_sub(robot, "robot-everything", "*"), TSE_CLIENT_PERMISSION_DENIED);
    assert_refused(other, "a certificate with the identity's CN from another CA");
    assert_int_equal(publish_type(stranger, "sample.created"), TSE_CLIENT_UNAUTHENTICATED);
    if (strcmp(client_auth, "optional") == 0)
        assert_int_equal(publish_type(none, "sample.created"), TSE_CLIENT_UNAUTHENTICATED);
    else
        assert_refused(none, "mTLS require, no client certificate");
    assert_int_equal(publish_type(robot, "sample.received"), TSE_CLIENT_OK);

    tse_client_destroy(robot);
    tse_client_destroy(spoof);
    tse_client_destroy(other);
    tse_client_destroy(stranger);
    tse_client_destroy(none);
    assert_int_equal(tse_test_service_stop(s), 0);
    unlink(tokens);
}

static void a_client_certificate_proves_its_identity_mtls_optional(void **state)
{
    (void)state;
    certificate_identities("optional");
}

static void a_client_certificate_proves_its_identity_mtls_require(void **state)
{
    (void)state;
    certificate_identities("require");
}

/* Runs the service with args and returns its exit status, its output in
 * out. */
static int run_service(const char *args, char *out, size_t len)
{
    char cmd[2048];
    FILE *p;
    size_t n;

    snprintf(cmd, sizeof(cmd), "'%s' --redis-url=%s --listen=127.0.0.1:0 %s 2>&1",
             getenv("TSE_SERVICE_BIN"), R->url, args);
    p = popen(cmd, "r");
    assert_non_null(p);
    n = fread(out, 1, len - 1, p);
    out[n] = '\0';
    return tse_test_exit_code(pclose(p));
}

static void settings_that_cannot_work_stop_the_start_naming_the_key(void **state)
{
    char args[1200], out[4096], cert[300], key[300], other_key[300];

    (void)state;
    tse_test_certs_path(C, "client.pem", cert, sizeof(cert)); /* any certificate of C's */
    tse_test_certs_path(C, "client.key", key, sizeof(key));
    tse_test_certs_path(C, "server.key", other_key, sizeof(other_key));

    snprintf(args, sizeof(args), "--tls-cert=%s", cert);
    assert_int_equal(run_service(args, out, sizeof(out)), 2);
    assert_non_null(strstr(out, "TLS_KEY"));

    snprintf(args, sizeof(args), "--tls-cert=%s/missing.pem --tls-key=%s", C->dir, key);
    assert_int_equal(run_service(args, out, sizeof(out)), 2);
    assert_non_null(strstr(out, "TLS_CERT"));
    assert_non_null(strstr(out, "missing.pem"));

    snprintf(args, sizeof(args), "--tls-cert=%s --tls-key=%s", cert, other_key);
    assert_int_equal(run_service(args, out, sizeof(out)), 2);
    assert_non_null(strstr(out, "is not the private key"));

    snprintf(args, sizeof(args), "--tls-cert=%s --tls-key=%s --tls-client-auth=require", cert, key);
    assert_int_equal(run_service(args, out, sizeof(out)), 2);
    assert_non_null(strstr(out, "TLS_CLIENT_CA"));

    snprintf(args, sizeof(args), "--tls-client-auth=sometimes");
    assert_int_equal(run_service(args, out, sizeof(out)), 2);
    assert_non_null(strstr(out, "off|optional|require"));
}

/* The command line of eventctl with args (and env, "NAME=value "
 * prefixes) against s, its output to stdout. */
static void eventctl_command(const char *env, const tse_test_service *s, const char *args,
                             char *cmd, size_t len)
{
    /* A generous timeout: a TLS handshake of an ASan build on a loaded
     * machine took over 1.5 s in CI; a refused one fails at once anyway. */
    snprintf(cmd, len, "cd '%s' && env %s '%s' --server %s --timeout 15000 %s 2>&1", C->dir, env,
             getenv("TSE_EVENTCTL_BIN"), s->addr, args);
}

/* The exit code of the command p ran (a death by signal fails the test),
 * its output in out. */
static int finish(FILE *p, char *out, size_t len)
{
    size_t n = fread(out, 1, len - 1, p);

    out[n] = '\0';
    return tse_test_exit_code(pclose(p));
}

/* eventctl with args (and env) against s: its exit code; its output in out. */
static int eventctl(const char *env, const tse_test_service *s, const char *args, char *out,
                    size_t len)
{
    char cmd[2048];
    FILE *p;

    eventctl_command(env, s, args, cmd, sizeof(cmd));
    p = popen(cmd, "r");
    assert_non_null(p);
    return finish(p, out, len);
}

static void eventctl_speaks_mutual_tls_from_flags_or_environment(void **state)
{
    tse_test_service *s = start_tls("require");
    char out[4096];

    (void)state;
    assert_int_equal(eventctl("", s,
                              "--tls-ca ca.pem --tls-cert client.pem --tls-key client.key health",
                              out, sizeof(out)),
                     0);
    assert_string_equal(out, "SERVING\n");
    assert_int_equal(eventctl("TRACSEQ_TLS_CA=ca.pem TRACSEQ_TLS_CERT=client.pem "
                              "TRACSEQ_TLS_KEY=client.key",
                              s, "publish tls.cli --payload '{}'", out, sizeof(out)),
                     0);
    /* No client certificate: the handshake fails, UNAVAILABLE. */
    assert_int_equal(eventctl("", s, "--tls-ca ca.pem health", out, sizeof(out)), 3);
    /* Plaintext against the TLS port. */
    assert_int_equal(eventctl("", s, "health", out, sizeof(out)), 3);
    /* Files that cannot be read, or a certificate without its key: usage. */
    assert_int_equal(eventctl("", s, "--tls-ca missing.pem health", out, sizeof(out)), 2);
    assert_non_null(strstr(out, "missing.pem"));
    assert_int_equal(
        eventctl("", s, "--tls-ca ca.pem --tls-cert client.pem health", out, sizeof(out)), 2);
    assert_int_equal(tse_test_service_stop(s), 0);
}

/*
 * Regression: a refused handshake left gRPC reconnecting on its own threads
 * while eventctl exited, and OpenSSL's exit handler freed its locks under
 * them: a SIGSEGV about once in 200 runs of an ASan build, which the exit
 * status read as success. Many refused runs, several at a time: each must
 * end with UNAVAILABLE (3), none by a signal.
 */
static void refused_eventctl_runs_always_exit_cleanly(void **state)
{
    enum { ROUNDS = 10, AT_ONCE = 4 };
    tse_test_service *s = start_tls("require");
    char cmd[2048], out[4096];
    FILE *p[AT_ONCE];

    (void)state;
    eventctl_command("", s, "--tls-ca ca.pem health", cmd, sizeof(cmd));
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < AT_ONCE; i++)
            assert_non_null(p[i] = popen(cmd, "r"));
        for (int i = 0; i < AT_ONCE; i++)
            assert_int_equal(finish(p[i], out, sizeof(out)), 3);
    }
    assert_int_equal(tse_test_service_stop(s), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(publishes_over_tls_unary_and_stream),
        cmocka_unit_test(a_client_that_does_not_trust_the_server_is_refused),
        cmocka_unit_test(plaintext_client_against_tls_port_fails_and_service_stays_up),
        cmocka_unit_test(mtls_require_takes_only_certificates_of_its_ca),
        cmocka_unit_test(mtls_optional_takes_no_certificate_but_not_a_bad_one),
        cmocka_unit_test(settings_that_cannot_work_stop_the_start_naming_the_key),
        cmocka_unit_test(eventctl_speaks_mutual_tls_from_flags_or_environment),
        cmocka_unit_test(refused_eventctl_runs_always_exit_cleanly),
        cmocka_unit_test(a_client_certificate_proves_its_identity_mtls_optional),
        cmocka_unit_test(a_client_certificate_proves_its_identity_mtls_require),
        /* Last: it replaces the server certificate of C. */
        cmocka_unit_test(sighup_rotates_the_certificate_for_new_connections_only),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}

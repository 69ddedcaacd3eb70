/*
 * test_transport_abseil.c - the Abseil under this build's gRPC has the
 * setter that turns its lock-order detector off (common/abseil.c; the
 * test links the transport layer, so gRPC and its Abseil are loaded), so
 * the service and the bridge do not pay for it in every gRPC lock: when a new Abseil
 * renames it (another inline namespace), this fails and names the cause,
 * instead of the service silently getting slower. And gRPC still works
 * with the detector off.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <grpc/grpc.h>

#include "common/abseil.h"

static void abseil_setter_is_found(void **state)
{
    (void)state;
    /* Linked with gRPC, so its Abseil is loaded: the setter must be found. */
    assert_true(tse_abseil_lock_checks_off());
}

static void grpc_runs_with_the_detector_off(void **state)
{
    grpc_completion_queue *cq;
    grpc_event ev;

    (void)state;
    assert_true(tse_abseil_lock_checks_off());
    grpc_init();
    cq = grpc_completion_queue_create_for_next(NULL);
    assert_non_null(cq);
    grpc_completion_queue_shutdown(cq);
    ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    assert_int_equal(ev.type, GRPC_QUEUE_SHUTDOWN);
    grpc_completion_queue_destroy(cq);
    grpc_shutdown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(abseil_setter_is_found),
        cmocka_unit_test(grpc_runs_with_the_detector_off),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * abseil.c - turns off Abseil's lock-order (deadlock) detector under gRPC,
 * for the programs (the service, the REST bridge): see abseil.h.
 *
 * gRPC C core takes an absl::Mutex for each of its locks (gpr_mu, the
 * combiners' and completion queues' locks). Debian builds libabsl without
 * NDEBUG, so every Lock and Unlock also runs the detector: a lookup of the
 * mutex in a global graph (GraphCycles::GetId) and bookkeeping of the locks
 * the thread holds, behind one more global lock. That was 5.5k of the
 * service's 79k instructions per unary Publish (docs/benchmarks.md).
 * Release builds of Abseil skip the detector; kIgnore makes Debian's skip
 * it too. It is a debugging aid for Abseil's own users and changes nothing
 * in how gRPC locks.
 *
 * Abseil is C++: its setter is found by its mangled name, so nothing is
 * linked against it, and an Abseil without it (another build, another
 * inline namespace than those listed) leaves everything as it was.
 */
#include <dlfcn.h>
#include <stddef.h>

#include "common/abseil.h"

/* absl::OnDeadlockCycle::kIgnore (absl/synchronization/mutex.h). */
#define ABSL_ON_DEADLOCK_CYCLE_IGNORE 0

/* absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle), mangled: with
 * Debian 12's inline namespace (libabsl20220623), then without one. */
static const char *const setter_names[] = {
    "_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
    "_ZN4absl29SetMutexDeadlockDetectionModeENS_15OnDeadlockCycleE",
    NULL,
};

bool tse_abseil_lock_checks_off(void)
{
    for (size_t i = 0; setter_names[i] != NULL; i++) {
        void *sym = dlsym(RTLD_DEFAULT, setter_names[i]);
        void (*set_mode)(int) = NULL;

        if (sym == NULL)
            continue;
        /* dlsym returns an object pointer; POSIX guarantees it converts. */
        *(void **)&set_mode = sym;
        set_mode(ABSL_ON_DEADLOCK_CYCLE_IGNORE);
        return true;
    }
    return false;
}

/*
 * abseil.h - the Abseil under gRPC, tuned for our programs.
 *
 * Debian's libabsl is built without NDEBUG, so every absl::Mutex lock and
 * unlock inside gRPC also runs Abseil's lock-order (deadlock) detector,
 * which release builds of Abseil skip (abseil.c says what it costs).
 *
 * Thread-safety: a process-wide, write-once setting. Call it from a
 * program's main, once, before grpc_init and before any thread starts;
 * never from a library (the SDK), whose host process may want the detector.
 */
#ifndef TSE_COMMON_ABSEIL_H
#define TSE_COMMON_ABSEIL_H

#include <stdbool.h>

/* Turns the detector off (absl::OnDeadlockCycle::kIgnore). False when the
 * loaded Abseil has no such setting (none loaded, or another inline
 * namespace than abseil.c knows): then nothing changed. Needs no link
 * against Abseil. */
bool tse_abseil_lock_checks_off(void);

#endif

/*
 * envelope.h - the bytes stored for a prepared event, built from the bytes
 * the client sent instead of packing the event again.
 *
 * Why: packing every event again (protobuf-c's size pass, then its pack
 * pass, which sizes every sub-message once more) cost about a quarter of
 * the service's instructions per published event (docs/benchmarks.md,
 * "Per-event CPU budget of the publish path"), though tse_event_prepare
 * usually changes only a few root fields: the id, version, priority,
 * correlation id and trace context it fills in, and the timestamp it sets.
 *
 * How: protobuf's parsing rule for a singular field is that the last value
 * on the wire wins, so the client's bytes followed by each root field that
 * differs from them decode to the prepared event. The rule is used only
 * where it is unambiguous for every decoder: the client's bytes must hold
 * each singular root field and the payload oneof at most once, no timestamp
 * (a message would merge with ours, not be replaced), the same payload
 * member and metadata entry count as the event, and the payload and
 * metadata must be as decoded (result->payload_changed false). Nor may a
 * singular message field occur twice in any message of them: protobuf-c
 * keeps the last occurrence where the spec (and every other parser) merges
 * them, so what was validated would not be what others read. The wire scan
 * every request goes through tells (codec/pbscan.h, message_repeated); the
 * caller passes only bytes it found free of that. Anything else is left to
 * packing. The bytes then decode (with any conforming
 * parser: the delivery engine's, Pull's, the REST bridge's, other
 * languages' stubs) to exactly what packing would have stored; only their
 * order may differ (unknown fields stay where the client put them, as they
 * would have been kept, and protobuf-c packs them last).
 *
 * No I/O; reentrant; allocates only the result.
 */
#ifndef TSE_DOMAIN_ENVELOPE_H
#define TSE_DOMAIN_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "domain/validate.h"
#include "tracseq/events/v1/event.pb-c.h"

/*
 * ev, as tse_event_prepare left it (returning TSE_OK with *result), from
 * the len bytes at wire it was unpacked from (wire borrowed; scanned with
 * tse_pbscan_info.message_repeated false, see above): true with
 * *out (tse_malloc'd, caller frees) and *out_len the bytes to store, which
 * decode to ev; false, *out untouched, when the bytes cannot be reused
 * (see above) or memory ran out: the caller packs ev instead.
 */
bool tse_event_envelope_reuse(const uint8_t *wire, size_t len, const Tracseq__Events__V1__Event *ev,
                              const tse_prepare_result *result, uint8_t **out, size_t *out_len);

#endif

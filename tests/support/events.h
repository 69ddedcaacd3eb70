/*
 * events.h - the generic event the integration tests publish: a type, a
 * source, a priority, an optional client-set id and the subject
 * "seq-<n>" that numbers it, with empty data. The message points into its
 * tse_test_event, which must outlive its use.
 */
#ifndef TSE_TEST_EVENTS_H
#define TSE_TEST_EVENTS_H

#include "google/protobuf/struct.pb-c.h"
#include "tracseq/events/v1/event.pb-c.h"

typedef struct tse_test_event {
    Tracseq__Events__V1__Event ev;
    Google__Protobuf__Struct data;
    char subject[32];
} tse_test_event;

/* Fills t and returns its event: type from source, subject "seq-<seq>",
 * priority, id (NULL: none, the service makes one), empty data. */
Tracseq__Events__V1__Event *tse_test_event_init(tse_test_event *t, const char *source,
                                                const char *type, int priority, int seq,
                                                const char *id);

#endif

/*
 * events.c - see events.h.
 */
#include "events.h"

#include <stdio.h>

Tracseq__Events__V1__Event *tse_test_event_init(tse_test_event *t, const char *source,
                                                const char *type, int priority, int seq,
                                                const char *id)
{
    Tracseq__Events__V1__Event ev = TRACSEQ__EVENTS__V1__EVENT__INIT;
    Google__Protobuf__Struct data = GOOGLE__PROTOBUF__STRUCT__INIT;

    t->ev = ev;
    t->data = data;
    snprintf(t->subject, sizeof(t->subject), "seq-%d", seq);
    t->ev.event_type = (char *)type;
    t->ev.source_service = (char *)source;
    t->ev.subject = t->subject;
    t->ev.priority = priority;
    if (id != NULL)
        t->ev.id = (char *)id;
    t->ev.payload_case = TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA;
    t->ev.data = &t->data;
    return &t->ev;
}

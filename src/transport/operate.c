/*
 * operate.c - the RPCs that operate on an existing subscription's state:
 * its dead letters (ListDeadLetters, GetDeadLetter, RedriveDeadLetters,
 * PurgeDeadLetters), Seek, and its snapshots (CreateSnapshot,
 * ListSnapshots, DeleteSnapshot).
 *
 * Every one takes the same three steps: the request is checked
 * (domain/operate.h: INVALID_ARGUMENT naming the field, before anything is
 * queued), the caller must own the subscription or hold the admin right
 * (tse_subscription_access, audited as every use of the admin right is),
 * then the delivery engine does the work on its thread and answers with
 * the method's response, which finishes the call.
 */
#include "domain/operate.h"
#include "delivery/delivery.h"
#include "tracseq/events/v1/service.pb-c.h"
#include "transport/internal.h"

static void answered(void *arg, const tse_error *err, const ProtobufCMessage *resp)
{
    tse_call *c = arg;

    if (err != NULL && err->code != TSE_OK)
        tse_call_fail(c, err);
    else
        tse_call_finish_unary(c, resp, NULL);
}

/* The caller may: hand the request to the engine. */
static void operate_next(tse_call *c)
{
    tse_error err;

    if (tse_delivery_operate(c->server->delivery, c->request, answered, c, &err) != TSE_OK)
        tse_call_fail(c, &err);
}

static void operate_start(tse_call *c)
{
    const char *name = tse_operate_subscription(c->request);
    tse_error err;

    if (tse_operate_check(c->request, (size_t)c->server->config->max_ack_ids, &err) != TSE_OK) {
        tse_call_fail(c, &err);
        return;
    }
    tse_call_log_kv(c, "subscription", name);
    tse_subscription_access(c, name, operate_next);
}

#define OPERATE(var, method, req)                                                                  \
    const tse_method var = {                                                                       \
        .path = "/tracseq.events.v1.EventService/" method,                                         \
        .name = method,                                                                            \
        .streaming_in = false,                                                                     \
        .backlog = 2,                                                                              \
        .call_size = sizeof(tse_call),                                                             \
        .request = &tracseq__events__v1__##req##__descriptor,                                      \
        .start = operate_start,                                                                    \
    }

OPERATE(tse_method_list_dead_letters, "ListDeadLetters", list_dead_letters_request);
OPERATE(tse_method_get_dead_letter, "GetDeadLetter", get_dead_letter_request);
OPERATE(tse_method_redrive_dead_letters, "RedriveDeadLetters", redrive_dead_letters_request);
OPERATE(tse_method_purge_dead_letters, "PurgeDeadLetters", purge_dead_letters_request);
OPERATE(tse_method_seek, "Seek", seek_request);
OPERATE(tse_method_create_snapshot, "CreateSnapshot", create_snapshot_request);
OPERATE(tse_method_list_snapshots, "ListSnapshots", list_snapshots_request);
OPERATE(tse_method_delete_snapshot, "DeleteSnapshot", delete_snapshot_request);

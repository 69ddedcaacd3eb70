/*
 * sample_service.c - the design document's integration example, in C: a
 * small "sample service" that registers laboratory samples and announces
 * each one on the event bus.
 *
 * For every sample it publishes `sample.created` (the document's
 * five-argument form: sample id, barcode, sample type, submitter, lab),
 * then `sample.status_changed` from "pending" to "received". Both events of
 * one sample carry the same correlation id, and the status change names
 * the created event as its cause, so a consumer can follow the workflow.
 *
 * Usage: sample_service [--server HOST:PORT] [--samples N]
 * The server defaults to $TRACSEQ_EVENTS_SERVER, else localhost:50051.
 * Prints one line per event; exits 0 when every event was stored, 1 when
 * the service refused one, 3 when it was unreachable.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tracseq/client.h"

/* The lab and the submitting scientist of this demo. */
#define LAB_ID       "6f1c2a3e-8d4b-4c5a-9e7f-0a1b2c3d4e5f"
#define SUBMITTER_ID "0d9e8f7a-6b5c-4d3e-8f2a-1b0c9d8e7f6a"

typedef struct sample {
    char id[37];
    char barcode[32];
    const char *sample_type;
} sample;

/* A random (version 4) UUID; good enough for a demo's ids. */
static void new_uuid(char out[37])
{
    unsigned char b[16];
    FILE *f = fopen("/dev/urandom", "rb");
    size_t i;

    if (f == NULL || fread(b, 1, sizeof(b), f) != sizeof(b))
        for (i = 0; i < sizeof(b); i++)
            b[i] = (unsigned char)rand();
    if (f != NULL)
        fclose(f);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

/* The service's own work: here, only making up the sample's record. */
static void create_sample_record(sample *s, int n)
{
    static const char *const types[] = {"DNA", "RNA", "Blood"};
    time_t now = time(NULL);
    char day[16];

    strftime(day, sizeof(day), "%Y%m%d", gmtime(&now));
    new_uuid(s->id);
    snprintf(s->barcode, sizeof(s->barcode), "SAM-%s-%03d", day, n);
    s->sample_type = types[(n - 1) % 3];
}

static int fail(const char *what, tse_client_status st, const tse_client_error *err)
{
    fprintf(stderr, "sample_service: %s: %s: %s\n", what, tse_client_status_name(st), err->message);
    if (st == TSE_CLIENT_UNAVAILABLE || st == TSE_CLIENT_DEADLINE_EXCEEDED)
        return 3;
    return 1;
}

/*
 * Registers one sample and announces it: sample.created, then the status
 * change it caused, both under one correlation id.
 */
static int create_sample(tse_client *client, int n)
{
    tse_client_publish_result created, changed;
    tse_client_error err;
    tse_client_status st;
    tse_client_publish_opts opts = {0};
    char correlation[37], subject[48];
    sample s;

    create_sample_record(&s, n);
    new_uuid(correlation);
    snprintf(subject, sizeof(subject), "sample-%s", s.id);
    opts.subject = subject;
    opts.correlation_id = correlation;
    st = tse_client_publish_sample_created(client, s.id, s.barcode, s.sample_type, SUBMITTER_ID,
                                           LAB_ID, &opts, &created, &err);
    if (st != TSE_CLIENT_OK)
        return fail("sample.created", st, &err);
    printf("%s sample.created %s correlation=%s\n", s.barcode, created.event_id, correlation);

    opts.causation_id = created.event_id;
    st = tse_client_publish_sample_status_changed(client, s.id, s.barcode, "pending", "received",
                                                  "sample-service", "arrived at the lab", &opts,
                                                  &changed, &err);
    if (st != TSE_CLIENT_OK)
        return fail("sample.status_changed", st, &err);
    printf("%s sample.status_changed %s pending->received caused_by=%s\n", s.barcode,
           changed.event_id, created.event_id);
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: sample_service [--server HOST:PORT] [--samples N]\n");
    return 2;
}

int main(int argc, char *argv[])
{
    tse_client_options o;
    tse_client *client = NULL;
    tse_client_error err;
    tse_client_status st;
    int samples = 3, i, rc = 0;

    tse_client_options_init(&o);
    o.source_service = "sample-service";
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--server") == 0 && i + 1 < argc)
            o.target = argv[++i];
        else if (strcmp(argv[i], "--samples") == 0 && i + 1 < argc)
            samples = atoi(argv[++i]);
        else
            return usage();
    }
    if (samples < 1 || samples > 1000)
        return usage();
    st = tse_client_connect(&o, &client, &err);
    if (st != TSE_CLIENT_OK)
        return fail("connect", st, &err);
    for (i = 1; i <= samples && rc == 0; i++)
        rc = create_sample(client, i);
    tse_client_destroy(client);
    return rc;
}

/*
 * catalog.c - the schema catalog table; see catalog.h.
 *
 * One entry per typed event type of the spec's event-catalog.md, in the
 * order it lists them. Invariants, checked by tests/unit/test_domain_catalog.c:
 * every rule names a real field of its entry's descriptor; every Timestamp
 * field is a STAMP; every string the .proto comments call "Required" has a
 * REQUIRED or UUID rule; payload_case and payload_field name the Event oneof
 * member whose message type is the entry's descriptor.
 *
 * Fields not listed keep TSE_FIELD_FREE: optional strings, numbers and maps.
 */
#include "domain/catalog.h"

#include <string.h>

/* ---- field rules, one list per message ------------------------------------ */

#define REQUIRED TSE_FIELD_REQUIRED
#define UUID     TSE_FIELD_UUID
#define STAMP    TSE_FIELD_STAMP

/* Tables read best one message per paragraph, as the catalog doc lists them. */
/* clang-format off */
#define END      {NULL, TSE_FIELD_FREE}

static const tse_field_spec sample_created[] = {
    {"sample_id", UUID}, {"barcode", REQUIRED}, {"sample_type", REQUIRED},
    {"submitter_id", UUID}, {"lab_id", UUID}, {"created_at", STAMP}, END};
static const tse_field_spec sample_validated[] = {
    {"sample_id", UUID}, {"barcode", REQUIRED}, {"validator_id", REQUIRED},
    {"validation_status", REQUIRED}, {"validated_at", STAMP}, END};
static const tse_field_spec sample_status_changed[] = {
    {"sample_id", UUID}, {"barcode", REQUIRED}, {"old_status", REQUIRED},
    {"new_status", REQUIRED}, {"changed_by", REQUIRED}, {"changed_at", STAMP}, END};
static const tse_field_spec sample_stored[] = {
    {"sample_id", UUID}, {"barcode", REQUIRED}, {"location_id", REQUIRED},
    {"storage_zone", REQUIRED}, {"stored_by", REQUIRED}, {"stored_at", STAMP}, END};
static const tse_field_spec sample_assigned[] = {
    {"sample_id", UUID}, {"barcode", REQUIRED}, {"sequencing_job_id", REQUIRED},
    {"assigned_by", REQUIRED}, {"assigned_at", STAMP}, END};
static const tse_field_spec sample_completed[] = {
    {"sample_id", UUID}, {"barcode", REQUIRED}, {"completion_status", REQUIRED},
    {"completed_by", REQUIRED}, {"completed_at", STAMP}, END};

static const tse_field_spec temperature_alert[] = {
    {"location_id", REQUIRED}, {"zone_name", REQUIRED}, {"threshold_type", REQUIRED},
    {"sensor_id", REQUIRED}, {"alert_at", STAMP}, END};
static const tse_field_spec capacity_warning[] = {
    {"location_id", REQUIRED}, {"location_name", REQUIRED}, {"warning_at", STAMP}, END};
static const tse_field_spec sensor_data_received[] = {
    {"sensor_id", REQUIRED}, {"location_id", REQUIRED}, {"sensor_type", REQUIRED},
    {"timestamp", STAMP}, {"received_at", STAMP}, END};

static const tse_field_spec user_logged_in[] = {
    {"user_id", REQUIRED}, {"username", REQUIRED}, {"session_id", REQUIRED},
    {"login_at", STAMP}, END};
static const tse_field_spec user_logged_out[] = {
    {"user_id", REQUIRED}, {"username", REQUIRED}, {"session_id", REQUIRED},
    {"logout_reason", REQUIRED}, {"logout_at", STAMP}, END};
static const tse_field_spec login_failed[] = {
    {"username", REQUIRED}, {"failure_reason", REQUIRED}, {"failed_at", STAMP}, END};

static const tse_field_spec document_uploaded[] = {
    {"document_id", REQUIRED}, {"filename", REQUIRED}, {"file_type", REQUIRED},
    {"uploaded_by", REQUIRED}, {"uploaded_at", STAMP}, END};
static const tse_field_spec document_processing_completed[] = {
    {"document_id", REQUIRED}, {"filename", REQUIRED}, {"processing_status", REQUIRED},
    {"completed_at", STAMP}, END};
static const tse_field_spec document_information_extracted[] = {
    {"document_id", REQUIRED}, {"extraction_type", REQUIRED}, {"extracted_at", STAMP}, END};

static const tse_field_spec sequencing_job_created[] = {
    {"job_id", REQUIRED}, {"job_name", REQUIRED}, {"job_type", REQUIRED},
    {"samples", TSE_FIELD_UUID_LIST}, {"created_by", REQUIRED}, {"created_at", STAMP}, END};
static const tse_field_spec sequencing_job_status_changed[] = {
    {"job_id", REQUIRED}, {"job_name", REQUIRED}, {"old_status", REQUIRED},
    {"new_status", REQUIRED}, {"updated_at", STAMP}, END};
static const tse_field_spec sequencing_job_completed[] = {
    {"job_id", REQUIRED}, {"job_name", REQUIRED}, {"completion_status", REQUIRED},
    {"completed_at", STAMP}, END};
/* clang-format on */

/* ---- the table ------------------------------------------------------------ */

#define P(c)    TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_##c
#define D(name) &tracseq__events__v1__##name##__descriptor

static const tse_catalog_entry entries[] = {
    {"sample.created", D(sample_created), P(SAMPLE_CREATED), "sample_created", "1.0",
     "A new sample was submitted to the laboratory.", sample_created},
    {"sample.validated", D(sample_validated), P(SAMPLE_VALIDATED), "sample_validated", "1.0",
     "A sample passed (or failed) validation.", sample_validated},
    {"sample.status_changed", D(sample_status_changed), P(SAMPLE_STATUS_CHANGED),
     "sample_status_changed", "1.0", "A sample moved from one status to another.",
     sample_status_changed},
    {"sample.stored", D(sample_stored), P(SAMPLE_STORED), "sample_stored", "1.0",
     "A sample was placed in storage.", sample_stored},
    {"sample.assigned_to_sequencing", D(sample_assigned_to_sequencing),
     P(SAMPLE_ASSIGNED_TO_SEQUENCING), "sample_assigned_to_sequencing", "1.0",
     "A sample was assigned to a sequencing job.", sample_assigned},
    {"sample.completed", D(sample_completed), P(SAMPLE_COMPLETED), "sample_completed", "1.0",
     "Processing of a sample finished.", sample_completed},

    {"storage.temperature_alert", D(temperature_alert), P(TEMPERATURE_ALERT), "temperature_alert",
     "1.0", "A storage zone left its temperature range.", temperature_alert},
    {"storage.capacity_warning", D(capacity_warning), P(CAPACITY_WARNING), "capacity_warning",
     "1.0", "A storage location is filling up.", capacity_warning},
    {"storage.sensor_data_received", D(sensor_data_received), P(SENSOR_DATA_RECEIVED),
     "sensor_data_received", "1.0", "A sensor reported measurements.", sensor_data_received},

    {"auth.user_logged_in", D(user_logged_in), P(USER_LOGGED_IN), "user_logged_in", "1.0",
     "A user signed in.", user_logged_in},
    {"auth.user_logged_out", D(user_logged_out), P(USER_LOGGED_OUT), "user_logged_out", "1.0",
     "A user's session ended.", user_logged_out},
    {"auth.login_failed", D(login_failed), P(LOGIN_FAILED), "login_failed", "1.0",
     "A sign-in attempt was refused.", login_failed},

    {"document.uploaded", D(document_uploaded), P(DOCUMENT_UPLOADED), "document_uploaded", "1.0",
     "A document was uploaded.", document_uploaded},
    {"document.processing_completed", D(document_processing_completed),
     P(DOCUMENT_PROCESSING_COMPLETED), "document_processing_completed", "1.0",
     "Analysis of a document finished.", document_processing_completed},
    {"document.information_extracted", D(document_information_extracted),
     P(DOCUMENT_INFORMATION_EXTRACTED), "document_information_extracted", "1.0",
     "Structured data was extracted from a document.", document_information_extracted},

    {"sequencing.job_created", D(sequencing_job_created), P(SEQUENCING_JOB_CREATED),
     "sequencing_job_created", "1.0", "A sequencing job was created.", sequencing_job_created},
    {"sequencing.job_status_changed", D(sequencing_job_status_changed),
     P(SEQUENCING_JOB_STATUS_CHANGED), "sequencing_job_status_changed", "1.0",
     "A sequencing job's status or progress changed.", sequencing_job_status_changed},
    {"sequencing.job_completed", D(sequencing_job_completed), P(SEQUENCING_JOB_COMPLETED),
     "sequencing_job_completed", "1.0", "A sequencing job finished.", sequencing_job_completed},
};

#define N_ENTRIES (sizeof(entries) / sizeof(entries[0]))

/* ---- lookups ---------------------------------------------------------------
 * Linear scans: 18 entries, compared on the first differing byte, cost less
 * than the hashing a table would need, and keep the catalog a plain constant.
 */

const tse_catalog_entry *tse_catalog_entries(size_t *count)
{
    if (count != NULL)
        *count = N_ENTRIES;
    return entries;
}

const tse_catalog_entry *tse_catalog_find(const char *event_type)
{
    if (event_type == NULL)
        return NULL;
    for (size_t i = 0; i < N_ENTRIES; i++)
        if (strcmp(entries[i].event_type, event_type) == 0)
            return &entries[i];
    return NULL;
}

const tse_catalog_entry *tse_catalog_find_case(Tracseq__Events__V1__Event__PayloadCase c)
{
    for (size_t i = 0; i < N_ENTRIES; i++)
        if (entries[i].payload_case == c)
            return &entries[i];
    return NULL;
}

tse_field_rule tse_catalog_field_rule(const tse_catalog_entry *e, const char *field)
{
    if (e == NULL || field == NULL)
        return TSE_FIELD_FREE;
    for (const tse_field_spec *f = e->fields; f->name != NULL; f++)
        if (strcmp(f->name, field) == 0)
            return f->rule;
    return TSE_FIELD_FREE;
}

/*
 * test_reflection_answers.c - server reflection answers computed from the
 * real embedded descriptor set (and from small hand-built sets for the
 * failure and extension cases), decoded back with the generated types of
 * each protocol version.
 *
 * Every answer is decoded with the response type of the version asked, every
 * FileDescriptorProto returned is parsed, and every test frees what it made,
 * so an ASan build of this file also proves the module leaks nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "reflection/reflection.h"

/* Linked in from the build: generated/tracseq_events.desc as bytes. */
extern const unsigned char tse_descriptor_set[];
extern const size_t tse_descriptor_set_len;

typedef Grpc__Reflection__V1alpha__ServerReflectionRequest alpha_request;
typedef Grpc__Reflection__V1alpha__ServerReflectionResponse alpha_response;
typedef Grpc__Reflection__V1__ServerReflectionRequest v1_request;
typedef Grpc__Reflection__V1__ServerReflectionResponse v1_response;

#define ALPHA_REQ(what) GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_##what
#define ALPHA_RESP(what)                                                                           \
    GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_##what
#define V1_REQ(what)  GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_##what
#define V1_RESP(what) GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_##what

#define MAX_FILES 64

static const char *const announced[] = {
    "tracseq.events.v1.EventService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    NULL,
};

/* ---- helpers -------------------------------------------------------------- */

static tse_reflection *create_real(void)
{
    tse_error err;
    tse_reflection *r =
        tse_reflection_create(tse_descriptor_set, tse_descriptor_set_len, announced, &err);

    if (r == NULL)
        fail_msg("create failed: %s", err.message);
    return r;
}

static int setup(void **state)
{
    *state = create_real();
    return *state == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    tse_reflection_destroy(*state);
    return 0;
}

/* Packs a v1alpha request with one string question (or list_services). */
static uint8_t *pack_alpha(const char *host, int which, const char *arg, size_t *len)
{
    alpha_request req = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__INIT;
    uint8_t *buf;

    req.host = (char *)host;
    req.message_request_case = which;
    /* Every string question shares the union's storage. */
    req.file_by_filename = (char *)arg;
    *len = grpc__reflection__v1alpha__server_reflection_request__get_packed_size(&req);
    buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    grpc__reflection__v1alpha__server_reflection_request__pack(&req, buf);
    return buf;
}

static alpha_response *ask_alpha(const tse_reflection *r, const char *host, int which,
                                 const char *arg)
{
    size_t len, out_len = 0;
    uint8_t *req = pack_alpha(host, which, arg, &len), *out = NULL;
    tse_error err;
    alpha_response *resp;

    assert_int_equal(
        tse_reflection_answer(r, TSE_REFLECTION_V1ALPHA, req, len, &out, &out_len, &err), TSE_OK);
    resp = grpc__reflection__v1alpha__server_reflection_response__unpack(NULL, out_len, out);
    assert_non_null(resp);
    free(req);
    free(out);
    return resp;
}

static v1_response *ask_v1(const tse_reflection *r, const char *host, int which, const char *arg)
{
    v1_request req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    size_t len, out_len = 0;
    uint8_t *buf, *out = NULL;
    tse_error err;
    v1_response *resp;

    req.host = (char *)host;
    req.message_request_case = which;
    req.file_containing_symbol = (char *)arg;
    len = grpc__reflection__v1__server_reflection_request__get_packed_size(&req);
    buf = malloc(len ? len : 1);
    assert_non_null(buf);
    grpc__reflection__v1__server_reflection_request__pack(&req, buf);
    assert_int_equal(tse_reflection_answer(r, TSE_REFLECTION_V1, buf, len, &out, &out_len, &err),
                     TSE_OK);
    resp = grpc__reflection__v1__server_reflection_response__unpack(NULL, out_len, out);
    assert_non_null(resp);
    free(buf);
    free(out);
    return resp;
}

static void free_alpha(alpha_response *resp)
{
    grpc__reflection__v1alpha__server_reflection_response__free_unpacked(resp, NULL);
}

/* Parses every returned FileDescriptorProto and copies its name into names. */
static size_t file_names(const ProtobufCBinaryData *files, size_t n, char names[][128])
{
    assert_true(n <= MAX_FILES);
    for (size_t i = 0; i < n; i++) {
        Google__Protobuf__FileDescriptorProto *f =
            google__protobuf__file_descriptor_proto__unpack(NULL, files[i].len, files[i].data);
        assert_non_null(f);
        assert_non_null(f->name);
        strncpy(names[i], f->name, 127);
        names[i][127] = '\0';
        google__protobuf__file_descriptor_proto__free_unpacked(f, NULL);
    }
    return n;
}

/* The name of the first file answered for a symbol (the defining file). */
static void assert_symbol_in(const tse_reflection *r, const char *symbol, const char *file)
{
    alpha_response *resp = ask_alpha(r, "", ALPHA_REQ(FILE_CONTAINING_SYMBOL), symbol);
    char names[MAX_FILES][128];

    if (resp->message_response_case != ALPHA_RESP(FILE_DESCRIPTOR_RESPONSE))
        fail_msg("%s: no file answered (case %d)", symbol, (int)resp->message_response_case);
    assert_true(resp->file_descriptor_response->n_file_descriptor_proto >= 1);
    file_names(resp->file_descriptor_response->file_descriptor_proto,
               resp->file_descriptor_response->n_file_descriptor_proto, names);
    assert_string_equal(names[0], file);
    free_alpha(resp);
}

static void assert_not_found(alpha_response *resp, const char *named)
{
    assert_int_equal(resp->message_response_case, ALPHA_RESP(ERROR_RESPONSE));
    assert_int_equal(resp->error_response->error_code, 5);
    assert_non_null(strstr(resp->error_response->error_message, named));
}

static bool contains(char names[][128], size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(names[i], name) == 0)
            return true;
    }
    return false;
}

/*
 * The transitive imports of file in set, computed here independently of the
 * module (a worklist over names): marks in_closure[i] for every file i.
 */
static void expected_closure(const Google__Protobuf__FileDescriptorSet *set, const char *file,
                             bool *in_closure)
{
    const char *work[MAX_FILES];
    size_t n_work = 0;

    work[n_work++] = file;
    while (n_work > 0) {
        const char *name = work[--n_work];
        for (size_t i = 0; i < set->n_file; i++) {
            if (strcmp(set->file[i]->name, name) != 0 || in_closure[i])
                continue;
            in_closure[i] = true;
            for (size_t d = 0; d < set->file[i]->n_dependency; d++) {
                assert_true(n_work < MAX_FILES);
                work[n_work++] = set->file[i]->dependency[d];
            }
        }
    }
}

/* ---- list_services -------------------------------------------------------- */

static void test_list_services_returns_the_configured_services_in_order(void **state)
{
    alpha_response *resp = ask_alpha(*state, "", ALPHA_REQ(LIST_SERVICES), "*");

    assert_int_equal(resp->message_response_case, ALPHA_RESP(LIST_SERVICES_RESPONSE));
    assert_int_equal(resp->list_services_response->n_service, 4);
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(resp->list_services_response->service[i]->name, announced[i]);
    free_alpha(resp);
}

static void test_list_services_is_empty_when_none_were_given(void **state)
{
    tse_error err;
    tse_reflection *r =
        tse_reflection_create(tse_descriptor_set, tse_descriptor_set_len, NULL, &err);
    alpha_response *resp;

    assert_non_null(r);
    resp = ask_alpha(r, "", ALPHA_REQ(LIST_SERVICES), "");
    assert_int_equal(resp->message_response_case, ALPHA_RESP(LIST_SERVICES_RESPONSE));
    assert_int_equal(resp->list_services_response->n_service, 0);
    free_alpha(resp);
    tse_reflection_destroy(r);
}

/* ---- file_containing_symbol ---------------------------------------------- */

static void test_symbol_messages_services_and_methods_resolve_to_their_file(void **state)
{
    assert_symbol_in(*state, "tracseq.events.v1.Event", "tracseq/events/v1/event.proto");
    assert_symbol_in(*state, "tracseq.events.v1.EventService", "tracseq/events/v1/service.proto");
    assert_symbol_in(*state, "tracseq.events.v1.EventService.Publish",
                     "tracseq/events/v1/service.proto");
    assert_symbol_in(*state, "tracseq.events.v1.StartPosition", "tracseq/events/v1/service.proto");
    assert_symbol_in(*state, "grpc.health.v1.Health", "grpc/health/v1/health.proto");
    assert_symbol_in(*state, "google.protobuf.Timestamp", "google/protobuf/timestamp.proto");
}

static void test_symbol_nested_types_fields_and_values_resolve(void **state)
{
    assert_symbol_in(*state, "grpc.health.v1.HealthCheckResponse.ServingStatus",
                     "grpc/health/v1/health.proto");
    /* Enum values live beside their enum, as protobuf scopes them. */
    assert_symbol_in(*state, "grpc.health.v1.HealthCheckResponse.SERVING",
                     "grpc/health/v1/health.proto");
    assert_symbol_in(*state, "tracseq.events.v1.Event.event_type", "tracseq/events/v1/event.proto");
    assert_symbol_in(*state, "tracseq.events.v1.Event.payload", "tracseq/events/v1/event.proto");
    /* The synthetic entry type of map<string, string> metadata. */
    assert_symbol_in(*state, "tracseq.events.v1.Event.MetadataEntry",
                     "tracseq/events/v1/event.proto");
}

static void test_symbol_with_a_leading_dot_resolves(void **state)
{
    assert_symbol_in(*state, ".tracseq.events.v1.Event", "tracseq/events/v1/event.proto");
}

static void test_symbol_answer_holds_the_defining_file_and_its_imports(void **state)
{
    alpha_response *resp =
        ask_alpha(*state, "", ALPHA_REQ(FILE_CONTAINING_SYMBOL), "tracseq.events.v1.Event");
    char names[MAX_FILES][128];
    size_t n;

    assert_int_equal(resp->message_response_case, ALPHA_RESP(FILE_DESCRIPTOR_RESPONSE));
    n = file_names(resp->file_descriptor_response->file_descriptor_proto,
                   resp->file_descriptor_response->n_file_descriptor_proto, names);
    /* event.proto, its five domain files, struct and timestamp. */
    assert_int_equal(n, 8);
    assert_true(contains(names, n, "google/protobuf/struct.proto"));
    assert_true(contains(names, n, "google/protobuf/timestamp.proto"));
    assert_true(contains(names, n, "tracseq/events/v1/sample.proto"));
    assert_false(contains(names, n, "tracseq/events/v1/service.proto"));
    free_alpha(resp);
}

static void test_unknown_symbols_are_answered_not_found(void **state)
{
    alpha_response *resp =
        ask_alpha(*state, "", ALPHA_REQ(FILE_CONTAINING_SYMBOL), "tracseq.events.v1.Nope");

    assert_not_found(resp, "tracseq.events.v1.Nope");
    free_alpha(resp);
    /* A prefix of a symbol is not that symbol. */
    resp = ask_alpha(*state, "", ALPHA_REQ(FILE_CONTAINING_SYMBOL), "tracseq.events.v1.Even");
    assert_not_found(resp, "tracseq.events.v1.Even");
    free_alpha(resp);
    resp = ask_alpha(*state, "", ALPHA_REQ(FILE_CONTAINING_SYMBOL), "");
    assert_int_equal(resp->error_response->error_code, 5);
    free_alpha(resp);
}

/* ---- file_by_filename ------------------------------------------------------ */

static void test_file_by_filename_returns_the_file_then_each_import_once(void **state)
{
    const char *wanted = "tracseq/events/v1/service.proto";
    alpha_response *resp = ask_alpha(*state, "", ALPHA_REQ(FILE_BY_FILENAME), wanted);
    Google__Protobuf__FileDescriptorSet *set = google__protobuf__file_descriptor_set__unpack(
        NULL, tse_descriptor_set_len, tse_descriptor_set);
    bool in_closure[MAX_FILES] = {false};
    char names[MAX_FILES][128];
    size_t n, expected = 0;

    assert_non_null(set);
    assert_true(set->n_file <= MAX_FILES);
    assert_int_equal(resp->message_response_case, ALPHA_RESP(FILE_DESCRIPTOR_RESPONSE));
    n = file_names(resp->file_descriptor_response->file_descriptor_proto,
                   resp->file_descriptor_response->n_file_descriptor_proto, names);
    assert_string_equal(names[0], wanted);
    expected_closure(set, wanted, in_closure);
    for (size_t i = 0; i < set->n_file; i++) {
        if (!in_closure[i])
            continue;
        expected++;
        assert_true(contains(names, n, set->file[i]->name));
    }
    assert_int_equal(n, expected); /* so nothing is there twice or extra */
    assert_int_equal(n,
                     11); /* service, event, 5 domain files, cloudevents, struct, timestamp, any */
    google__protobuf__file_descriptor_set__free_unpacked(set, NULL);
    free_alpha(resp);
}

static void test_file_by_filename_serves_imported_well_known_types(void **state)
{
    alpha_response *resp =
        ask_alpha(*state, "", ALPHA_REQ(FILE_BY_FILENAME), "google/protobuf/timestamp.proto");
    char names[MAX_FILES][128];

    assert_int_equal(resp->message_response_case, ALPHA_RESP(FILE_DESCRIPTOR_RESPONSE));
    assert_int_equal(file_names(resp->file_descriptor_response->file_descriptor_proto,
                                resp->file_descriptor_response->n_file_descriptor_proto, names),
                     1);
    assert_string_equal(names[0], "google/protobuf/timestamp.proto");
    free_alpha(resp);
}

static void test_unknown_files_are_answered_not_found(void **state)
{
    alpha_response *resp = ask_alpha(*state, "", ALPHA_REQ(FILE_BY_FILENAME), "nope/none.proto");

    assert_not_found(resp, "nope/none.proto");
    free_alpha(resp);
}

/*
 * The files served, laid end to end as a FileDescriptorSet in the set's
 * order, must be the embedded bytes exactly: nothing protoc wrote (comments,
 * options, json names) is lost by re-serializing.
 */
static void test_served_files_are_byte_identical_to_the_embedded_set(void **state)
{
    Google__Protobuf__FileDescriptorSet *set = google__protobuf__file_descriptor_set__unpack(
        NULL, tse_descriptor_set_len, tse_descriptor_set);
    uint8_t *rebuilt = malloc(tse_descriptor_set_len + 64);
    size_t at = 0;

    assert_non_null(set);
    assert_non_null(rebuilt);
    for (size_t i = 0; i < set->n_file; i++) {
        alpha_response *resp =
            ask_alpha(*state, "", ALPHA_REQ(FILE_BY_FILENAME), set->file[i]->name);
        const ProtobufCBinaryData *own;
        assert_int_equal(resp->message_response_case, ALPHA_RESP(FILE_DESCRIPTOR_RESPONSE));
        own = &resp->file_descriptor_response->file_descriptor_proto[0];
        assert_true(at + own->len + 11 <= tse_descriptor_set_len + 64);
        rebuilt[at++] = 0x0a; /* field 1, length-delimited */
        for (size_t v = own->len;; v >>= 7) {
            rebuilt[at++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
            if (v < 0x80)
                break;
        }
        memcpy(rebuilt + at, own->data, own->len);
        at += own->len;
        free_alpha(resp);
    }
    assert_int_equal(at, tse_descriptor_set_len);
    assert_memory_equal(rebuilt, tse_descriptor_set, at);
    free(rebuilt);
    google__protobuf__file_descriptor_set__free_unpacked(set, NULL);
}

/* ---- extensions ------------------------------------------------------------- */

static void test_extension_numbers_of_a_known_message_are_an_empty_list(void **state)
{
    alpha_response *resp =
        ask_alpha(*state, "", ALPHA_REQ(ALL_EXTENSION_NUMBERS_OF_TYPE), ".tracseq.events.v1.Event");

    assert_int_equal(resp->message_response_case, ALPHA_RESP(ALL_EXTENSION_NUMBERS_RESPONSE));
    assert_string_equal(resp->all_extension_numbers_response->base_type_name,
                        "tracseq.events.v1.Event");
    assert_int_equal(resp->all_extension_numbers_response->n_extension_number, 0);
    free_alpha(resp);
}

static void test_extension_numbers_of_a_non_message_are_not_found(void **state)
{
    alpha_response *resp =
        ask_alpha(*state, "", ALPHA_REQ(ALL_EXTENSION_NUMBERS_OF_TYPE), "tracseq.events.v1.Nope");

    assert_not_found(resp, "tracseq.events.v1.Nope");
    free_alpha(resp);
    /* A service is a symbol but not a message type. */
    resp = ask_alpha(*state, "", ALPHA_REQ(ALL_EXTENSION_NUMBERS_OF_TYPE),
                     "tracseq.events.v1.EventService");
    assert_not_found(resp, "tracseq.events.v1.EventService");
    free_alpha(resp);
}

static alpha_response *ask_extension(const tse_reflection *r, const char *type, int32_t number)
{
    alpha_request req = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__INIT;
    Grpc__Reflection__V1alpha__ExtensionRequest ext =
        GRPC__REFLECTION__V1ALPHA__EXTENSION_REQUEST__INIT;
    uint8_t buf[512], *out = NULL;
    size_t len, out_len = 0;
    alpha_response *resp;

    ext.containing_type = (char *)type;
    ext.extension_number = number;
    req.message_request_case = ALPHA_REQ(FILE_CONTAINING_EXTENSION);
    req.file_containing_extension = &ext;
    len = grpc__reflection__v1alpha__server_reflection_request__pack(&req, buf);
    assert_int_equal(
        tse_reflection_answer(r, TSE_REFLECTION_V1ALPHA, buf, len, &out, &out_len, NULL), TSE_OK);
    resp = grpc__reflection__v1alpha__server_reflection_response__unpack(NULL, out_len, out);
    assert_non_null(resp);
    free(out);
    return resp;
}

static void test_file_containing_an_unknown_extension_is_not_found(void **state)
{
    alpha_response *resp = ask_extension(*state, "tracseq.events.v1.Event", 1000);

    assert_not_found(resp, "tracseq.events.v1.Event");
    free_alpha(resp);
}

/* ---- a hand-built set --------------------------------------------------------- */

/*
 * Serializes a set of two files: base.proto (package x, message Base) and
 * ext_name (imports base_import, extends x.Base with field `tag` = 100).
 */
static uint8_t *pack_small_set(const char *ext_name, const char *base_import, size_t *len)
{
    Google__Protobuf__FileDescriptorSet set = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_SET__INIT;
    Google__Protobuf__FileDescriptorProto base = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_PROTO__INIT,
                                          ext = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_PROTO__INIT;
    Google__Protobuf__DescriptorProto msg = GOOGLE__PROTOBUF__DESCRIPTOR_PROTO__INIT;
    Google__Protobuf__FieldDescriptorProto tag = GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__INIT;
    Google__Protobuf__DescriptorProto *msgs[] = {&msg};
    Google__Protobuf__FieldDescriptorProto *exts[] = {&tag};
    Google__Protobuf__FileDescriptorProto *files[] = {&base, &ext};
    char *deps[] = {(char *)base_import};
    uint8_t *buf;

    base.name = "base.proto";
    base.package = "x";
    msg.name = "Base";
    base.n_message_type = 1;
    base.message_type = msgs;
    ext.name = (char *)ext_name;
    ext.package = "x";
    ext.n_dependency = 1;
    ext.dependency = deps;
    tag.name = "tag";
    tag.has_number = 1;
    tag.number = 100;
    tag.extendee = ".x.Base";
    ext.n_extension = 1;
    ext.extension = exts;
    set.n_file = 2;
    set.file = files;
    *len = google__protobuf__file_descriptor_set__get_packed_size(&set);
    buf = malloc(*len);
    assert_non_null(buf);
    google__protobuf__file_descriptor_set__pack(&set, buf);
    return buf;
}

static void test_extensions_of_a_set_that_has_them_are_found(void **state)
{
    size_t len;
    uint8_t *bytes = pack_small_set("ext.proto", "base.proto", &len);
    tse_reflection *r = tse_reflection_create(bytes, len, NULL, NULL);
    alpha_response *resp;
    char names[MAX_FILES][128];

    assert_non_null(r);
    resp = ask_alpha(r, "", ALPHA_REQ(ALL_EXTENSION_NUMBERS_OF_TYPE), "x.Base");
    assert_int_equal(resp->message_response_case, ALPHA_RESP(ALL_EXTENSION_NUMBERS_RESPONSE));
    assert_int_equal(resp->all_extension_numbers_response->n_extension_number, 1);
    assert_int_equal(resp->all_extension_numbers_response->extension_number[0], 100);
    free_alpha(resp);

    resp = ask_extension(r, ".x.Base", 100);
    assert_int_equal(resp->message_response_case, ALPHA_RESP(FILE_DESCRIPTOR_RESPONSE));
    assert_int_equal(file_names(resp->file_descriptor_response->file_descriptor_proto,
                                resp->file_descriptor_response->n_file_descriptor_proto, names),
                     2);
    assert_string_equal(names[0], "ext.proto");
    assert_string_equal(names[1], "base.proto");
    free_alpha(resp);

    resp = ask_extension(r, "x.Base", 101);
    assert_not_found(resp, "x.Base");
    free_alpha(resp);
    assert_symbol_in(r, "x.tag", "ext.proto");
    tse_reflection_destroy(r);
    free(bytes);
}

/* ---- versions and echoes ------------------------------------------------------- */

static void test_v1_answers_decode_with_the_v1_types(void **state)
{
    v1_response *resp =
        ask_v1(*state, "h", V1_REQ(FILE_CONTAINING_SYMBOL), "tracseq.events.v1.EventService");

    assert_int_equal(resp->message_response_case, V1_RESP(FILE_DESCRIPTOR_RESPONSE));
    assert_true(resp->file_descriptor_response->n_file_descriptor_proto >= 1);
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);

    resp = ask_v1(*state, "h", V1_REQ(LIST_SERVICES), "");
    assert_int_equal(resp->message_response_case, V1_RESP(LIST_SERVICES_RESPONSE));
    assert_int_equal(resp->list_services_response->n_service, 4);
    assert_string_equal(resp->list_services_response->service[3]->name,
                        "grpc.reflection.v1alpha.ServerReflection");
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);

    resp = ask_v1(*state, "h", V1_REQ(FILE_CONTAINING_SYMBOL), "no.Such");
    assert_int_equal(resp->message_response_case, V1_RESP(ERROR_RESPONSE));
    assert_int_equal(resp->error_response->error_code, 5);
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
}

static void test_answers_echo_the_host_and_the_original_request(void **state)
{
    alpha_response *a = ask_alpha(*state, "localhost:50051", ALPHA_REQ(FILE_CONTAINING_SYMBOL),
                                  "tracseq.events.v1.Event");
    v1_response *b = ask_v1(*state, "example:1", V1_REQ(FILE_CONTAINING_SYMBOL), "no.Such");

    assert_string_equal(a->valid_host, "localhost:50051");
    assert_non_null(a->original_request);
    assert_string_equal(a->original_request->host, "localhost:50051");
    assert_int_equal(a->original_request->message_request_case, ALPHA_REQ(FILE_CONTAINING_SYMBOL));
    assert_string_equal(a->original_request->file_containing_symbol, "tracseq.events.v1.Event");
    /* Error answers echo too. */
    assert_string_equal(b->valid_host, "example:1");
    assert_non_null(b->original_request);
    assert_string_equal(b->original_request->file_containing_symbol, "no.Such");
    free_alpha(a);
    grpc__reflection__v1__server_reflection_response__free_unpacked(b, NULL);
}

/* ---- bad input ----------------------------------------------------------------- */

static void test_garbage_request_bytes_fail_invalid(void **state)
{
    /* A tag of field 0 and an unterminated varint: no parser accepts these. */
    static const uint8_t garbage[] = {0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t truncated[] = {0x22, 0x40, 'a', 'b'}; /* 64-byte string, 2 given */
    uint8_t *out = (uint8_t *)&out;
    size_t out_len = 7;
    tse_error err;

    for (int v = 0; v < 2; v++) {
        tse_reflection_version version = v ? TSE_REFLECTION_V1 : TSE_REFLECTION_V1ALPHA;
        assert_int_equal(
            tse_reflection_answer(*state, version, garbage, sizeof(garbage), &out, &out_len, &err),
            TSE_INVALID);
        assert_int_equal(err.code, TSE_INVALID);
        assert_null(out);
        assert_int_equal(out_len, 0);
        assert_int_equal(tse_reflection_answer(*state, version, truncated, sizeof(truncated), &out,
                                               &out_len, NULL),
                         TSE_INVALID);
    }
}

static void test_a_request_asking_nothing_gets_an_error_response(void **state)
{
    uint8_t *out = NULL;
    size_t out_len = 0;
    alpha_response *resp;

    /* Zero bytes are a valid, empty request: no question at all. */
    assert_int_equal(
        tse_reflection_answer(*state, TSE_REFLECTION_V1ALPHA, NULL, 0, &out, &out_len, NULL),
        TSE_OK);
    resp = grpc__reflection__v1alpha__server_reflection_response__unpack(NULL, out_len, out);
    assert_non_null(resp);
    assert_int_equal(resp->message_response_case, ALPHA_RESP(ERROR_RESPONSE));
    assert_int_equal(resp->error_response->error_code, 3);
    free_alpha(resp);
    free(out);
}

static void test_create_rejects_bytes_that_are_no_descriptor_set(void **state)
{
    static const uint8_t garbage[] = {0x0a, 0x7f, 0x01};
    tse_error err;

    assert_null(tse_reflection_create(garbage, sizeof(garbage), announced, &err));
    assert_int_equal(err.code, TSE_INVALID);
    assert_true(strlen(err.message) > 0);
    assert_null(tse_reflection_create(garbage, sizeof(garbage), announced, NULL));
}

static void test_create_rejects_a_set_missing_an_import(void **state)
{
    size_t len;
    uint8_t *bytes = pack_small_set("ext.proto", "gone.proto", &len);
    tse_error err;

    assert_null(tse_reflection_create(bytes, len, NULL, &err));
    assert_int_equal(err.code, TSE_INVALID);
    assert_non_null(strstr(err.message, "gone.proto"));
    free(bytes);
}

static void test_create_rejects_a_set_naming_two_files_alike(void **state)
{
    size_t len;
    uint8_t *bytes = pack_small_set("base.proto", "base.proto", &len);
    tse_error err;

    assert_null(tse_reflection_create(bytes, len, NULL, &err));
    assert_int_equal(err.code, TSE_INVALID);
    assert_non_null(strstr(err.message, "base.proto"));
    free(bytes);
}

static void test_create_rejects_announcing_a_service_the_set_lacks(void **state)
{
    static const char *const bogus[] = {"tracseq.events.v1.EventService", "no.Such", NULL};
    static const char *const not_service[] = {"tracseq.events.v1.Event", NULL};
    tse_error err;

    assert_null(tse_reflection_create(tse_descriptor_set, tse_descriptor_set_len, bogus, &err));
    assert_int_equal(err.code, TSE_INVALID);
    assert_non_null(strstr(err.message, "no.Such"));
    assert_null(
        tse_reflection_create(tse_descriptor_set, tse_descriptor_set_len, not_service, &err));
}

static void test_an_empty_set_indexes_and_answers_not_found(void **state)
{
    static const uint8_t nothing[1];
    tse_reflection *r = tse_reflection_create(nothing, 0, NULL, NULL);
    alpha_response *resp;

    assert_non_null(r);
    resp = ask_alpha(r, "", ALPHA_REQ(FILE_CONTAINING_SYMBOL), "tracseq.events.v1.Event");
    assert_not_found(resp, "tracseq.events.v1.Event");
    free_alpha(resp);
    resp = ask_alpha(r, "", ALPHA_REQ(FILE_BY_FILENAME), "a.proto");
    assert_not_found(resp, "a.proto");
    free_alpha(resp);
    tse_reflection_destroy(r);
}

static void test_destroy_null_is_a_no_op(void **state)
{
    tse_reflection_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest with_index[] = {
        cmocka_unit_test(test_list_services_returns_the_configured_services_in_order),
        cmocka_unit_test(test_symbol_messages_services_and_methods_resolve_to_their_file),
        cmocka_unit_test(test_symbol_nested_types_fields_and_values_resolve),
        cmocka_unit_test(test_symbol_with_a_leading_dot_resolves),
        cmocka_unit_test(test_symbol_answer_holds_the_defining_file_and_its_imports),
        cmocka_unit_test(test_unknown_symbols_are_answered_not_found),
        cmocka_unit_test(test_file_by_filename_returns_the_file_then_each_import_once),
        cmocka_unit_test(test_file_by_filename_serves_imported_well_known_types),
        cmocka_unit_test(test_unknown_files_are_answered_not_found),
        cmocka_unit_test(test_served_files_are_byte_identical_to_the_embedded_set),
        cmocka_unit_test(test_extension_numbers_of_a_known_message_are_an_empty_list),
        cmocka_unit_test(test_extension_numbers_of_a_non_message_are_not_found),
        cmocka_unit_test(test_file_containing_an_unknown_extension_is_not_found),
        cmocka_unit_test(test_v1_answers_decode_with_the_v1_types),
        cmocka_unit_test(test_answers_echo_the_host_and_the_original_request),
        cmocka_unit_test(test_garbage_request_bytes_fail_invalid),
        cmocka_unit_test(test_a_request_asking_nothing_gets_an_error_response),
    };
    const struct CMUnitTest standalone[] = {
        cmocka_unit_test(test_list_services_is_empty_when_none_were_given),
        cmocka_unit_test(test_extensions_of_a_set_that_has_them_are_found),
        cmocka_unit_test(test_create_rejects_bytes_that_are_no_descriptor_set),
        cmocka_unit_test(test_create_rejects_a_set_missing_an_import),
        cmocka_unit_test(test_create_rejects_a_set_naming_two_files_alike),
        cmocka_unit_test(test_create_rejects_announcing_a_service_the_set_lacks),
        cmocka_unit_test(test_an_empty_set_indexes_and_answers_not_found),
        cmocka_unit_test(test_destroy_null_is_a_no_op),
    };
    int failed = cmocka_run_group_tests_name("reflection answers", with_index, setup, teardown);

    failed += cmocka_run_group_tests_name("reflection index", standalone, NULL, NULL);
    return failed ? 1 : 0;
}

/*
 * reflection.c - gRPC server reflection answered from a serialized
 * FileDescriptorSet; see reflection.h.
 *
 * At create the set is parsed once into an index that owns everything it
 * needs (the set itself is freed again):
 *   - files, sorted by name; each holds its serialized FileDescriptorProto
 *     (packed once) and its closure: its own bytes followed by those of every
 *     file it imports, directly or not, each once, in depth-first order. A
 *     file-answer is therefore just a pointer to a closure, with no work and
 *     no allocation per request.
 *   - symbols, sorted by fully-qualified name (no leading dot): messages and
 *     enums at any depth, fields, oneofs, enum values (scoped beside their
 *     enum, as protobuf scopes them), services, methods and extensions; each
 *     names the file that defines it.
 *   - extensions, sorted by (extendee, number), with their numbers in a
 *     parallel array so that "all extension numbers of a type" is a slice.
 *   - the services to announce, in the caller's order.
 * Lookups are binary searches. Nothing is written after create, so readers
 * need no lock.
 *
 * Invariants kept by create (it fails otherwise): every file has a unique
 * name, every import is in the set, every symbol is unique, and every
 * announced service is a service of the set (so a client that lists services
 * can always describe them).
 *
 * The v1alpha and v1 protocols differ only in their package name, which
 * never reaches the wire, so one set of generated types (v1alpha's) decodes
 * and encodes both: a request becomes a question, the question an answer,
 * the answer a response.
 */
#include "reflection/reflection.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/pbjson.h"
#include "codec/pbunpack.h"
#include "common/alloc.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"

/*
 * google.rpc.Code values carried inside error_response. The reflection
 * protocol puts them in its own message rather than in the call's status, so
 * they are picked here and not by the transport's status mapping (which this
 * inner layer cannot depend on).
 */
#define RPC_INVALID_ARGUMENT 3
#define RPC_NOT_FOUND        5

/* The error_message buffer of an answer; names echoed in it are cut at 200. */
#define ANSWER_MESSAGE_MAX 256

typedef enum symbol_kind { SYMBOL_MESSAGE, SYMBOL_SERVICE, SYMBOL_OTHER } symbol_kind;

typedef struct symbol {
    char *name; /* fully qualified, no leading dot */
    symbol_kind kind;
    size_t file; /* index into files */
} symbol;

typedef struct extension {
    char *extendee; /* fully qualified, no leading dot */
    int32_t number;
    size_t file;
} extension;

typedef struct file_entry {
    char *name;
    ProtobufCBinaryData bytes; /* owned: the serialized FileDescriptorProto */
    size_t n_closure;
    ProtobufCBinaryData *closure; /* owned array; data borrowed from files[].bytes */
    /* Valid only during create: the parsed file this entry was made from. */
    const Google__Protobuf__FileDescriptorProto *proto;
} file_entry;

struct tse_reflection {
    size_t n_files;
    file_entry *files;
    size_t n_symbols, cap_symbols;
    symbol *symbols;
    size_t n_extensions, cap_extensions;
    extension *extensions;
    int32_t *extension_numbers; /* extension_numbers[i] == extensions[i].number */
    size_t n_services;
    char **services;
};

/* ---- sorted-array helpers ------------------------------------------------ */

/* Files and symbols open with their name: one comparison sorts and finds
 * either by it. */
_Static_assert(offsetof(file_entry, name) == 0 && offsetof(symbol, name) == 0,
               "file_entry and symbol open with their name");

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int compare_name_key(const void *key, const void *elem)
{
    return strcmp(key, *(char *const *)elem);
}

static int compare_extensions(const void *a, const void *b)
{
    const extension *x = a, *y = b;
    int c = strcmp(x->extendee, y->extendee);

    if (c != 0)
        return c;
    return (x->number > y->number) - (x->number < y->number);
}

/* qsort, minus the undefined behaviour of passing it an empty (NULL) array. */
static void sort_array(void *base, size_t n, size_t size,
                       int (*compare)(const void *, const void *))
{
    if (n > 1)
        qsort(base, n, size, compare);
}

/* Clients may write ".pkg.Name", as type references inside descriptors do. */
static const char *strip_dot(const char *name)
{
    return name[0] == '.' ? name + 1 : name;
}

static const file_entry *find_file(const tse_reflection *r, const char *name)
{
    return bsearch(name, r->files, r->n_files, sizeof(*r->files), compare_name_key);
}

static const symbol *find_symbol(const tse_reflection *r, const char *name)
{
    if (r->n_symbols == 0)
        return NULL; /* bsearch must not see the NULL array */
    return bsearch(strip_dot(name), r->symbols, r->n_symbols, sizeof(*r->symbols),
                   compare_name_key);
}

/* The index of the first extension of extendee, or n_extensions if none. */
static size_t first_extension_of(const tse_reflection *r, const char *extendee)
{
    size_t lo = 0, hi = r->n_extensions;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(r->extensions[mid].extendee, extendee) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* ---- building the index: files -------------------------------------------- */

static tse_status add_file(file_entry *f, const Google__Protobuf__FileDescriptorProto *proto,
                           size_t position, tse_error *err)
{
    f->proto = proto;
    if (proto->name == NULL || proto->name[0] == '\0')
        return tse_error_set(err, TSE_INVALID, "descriptor_set",
                             "file %zu of the descriptor set has no name", position);
    f->name = tse_strdup(proto->name);
    f->bytes.len = google__protobuf__file_descriptor_proto__get_packed_size(proto);
    f->bytes.data = tse_malloc(f->bytes.len ? f->bytes.len : 1);
    if (f->name == NULL || f->bytes.data == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory indexing %s", proto->name);
    google__protobuf__file_descriptor_proto__pack(proto, f->bytes.data);
    return TSE_OK;
}

static tse_status load_files(tse_reflection *r, const Google__Protobuf__FileDescriptorSet *set,
                             tse_error *err)
{
    r->files = tse_calloc(set->n_file ? set->n_file : 1, sizeof(*r->files));
    if (r->files == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory indexing files");
    for (size_t i = 0; i < set->n_file; i++) {
        r->n_files++;
        tse_status status = add_file(&r->files[i], set->file[i], i, err);
        if (status != TSE_OK)
            return status;
    }
    sort_array(r->files, r->n_files, sizeof(*r->files), compare_names);
    for (size_t i = 1; i < r->n_files; i++) {
        if (strcmp(r->files[i - 1].name, r->files[i].name) == 0)
            return tse_error_set(err, TSE_INVALID, "descriptor_set",
                                 "file %s appears twice in the descriptor set", r->files[i].name);
    }
    return TSE_OK;
}

/* Appends file i and, depth first, every import not yet seen to into's closure. */
static tse_status visit_file(const tse_reflection *r, size_t i, bool *seen, file_entry *into,
                             tse_error *err)
{
    const file_entry *f = &r->files[i];

    seen[i] = true;
    into->closure[into->n_closure++] = f->bytes;
    for (size_t d = 0; d < f->proto->n_dependency; d++) {
        const file_entry *dep = find_file(r, f->proto->dependency[d]);
        if (dep == NULL)
            return tse_error_set(err, TSE_INVALID, "descriptor_set",
                                 "%s imports %s, which the descriptor set lacks", f->name,
                                 f->proto->dependency[d]);
        if (seen[dep - r->files])
            continue;
        tse_status status = visit_file(r, (size_t)(dep - r->files), seen, into, err);
        if (status != TSE_OK)
            return status;
    }
    return TSE_OK;
}

static tse_status build_closures(tse_reflection *r, tse_error *err)
{
    tse_status status = TSE_OK;
    bool *seen = tse_malloc(r->n_files ? r->n_files : 1);

    if (seen == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory resolving imports");
    for (size_t i = 0; i < r->n_files && status == TSE_OK; i++) {
        file_entry *f = &r->files[i];
        /* A closure holds each file at most once, so n_files entries suffice. */
        f->closure = tse_calloc(r->n_files, sizeof(*f->closure));
        if (f->closure == NULL) {
            status = tse_error_set(err, TSE_NOMEM, NULL, "out of memory resolving imports");
            break;
        }
        memset(seen, 0, r->n_files);
        status = visit_file(r, i, seen, f, err);
    }
    tse_free(seen);
    return status;
}

/* ---- building the index: symbols ---------------------------------------- */

/* "scope.name", or "name" at the root; NULL when out of memory. */
static char *qualify(const char *scope, const char *name)
{
    char *full;
    size_t scope_len = strlen(scope), name_len = strlen(name);

    full = tse_malloc(scope_len + name_len + 2);
    if (full == NULL)
        return NULL;
    if (scope_len == 0) {
        memcpy(full, name, name_len + 1);
    } else {
        memcpy(full, scope, scope_len);
        full[scope_len] = '.';
        memcpy(full + scope_len + 1, name, name_len + 1);
    }
    return full;
}

/* Adds scope.name; *full (if not NULL) borrows the stored name, for nesting. */
static tse_status add_symbol(tse_reflection *r, const char *scope, const char *name,
                             symbol_kind kind, size_t file, const char **full, tse_error *err)
{
    if (name == NULL || name[0] == '\0')
        return tse_error_set(err, TSE_INVALID, "descriptor_set",
                             "a definition in %s (scope \"%s\") has no name", r->files[file].name,
                             scope);
    if (!TSE_GROW(tse_realloc, r->symbols, r->cap_symbols, r->n_symbols + 1, 256))
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory indexing symbols");
    symbol *s = &r->symbols[r->n_symbols];
    s->name = qualify(scope, name);
    if (s->name == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory indexing symbols");
    s->kind = kind;
    s->file = file;
    r->n_symbols++;
    if (full != NULL)
        *full = s->name;
    return TSE_OK;
}

static tse_status add_extension(tse_reflection *r, const Google__Protobuf__FieldDescriptorProto *f,
                                size_t file, tse_error *err)
{
    if (f->extendee == NULL || !f->has_number)
        return tse_error_set(err, TSE_INVALID, "descriptor_set",
                             "extension %s in %s lacks its extendee or number",
                             f->name ? f->name : "?", r->files[file].name);
    if (!TSE_GROW(tse_realloc, r->extensions, r->cap_extensions, r->n_extensions + 1, 16))
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory indexing extensions");
    extension *e = &r->extensions[r->n_extensions];
    e->extendee = tse_strdup(strip_dot(f->extendee));
    if (e->extendee == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory indexing extensions");
    e->number = f->number;
    e->file = file;
    r->n_extensions++;
    return TSE_OK;
}

/* Extensions are symbols of the scope they are declared in, and extensions. */
static tse_status index_extensions(tse_reflection *r, const char *scope, size_t n,
                                   Google__Protobuf__FieldDescriptorProto *const *fields,
                                   size_t file, tse_error *err)
{
    tse_status status = TSE_OK;

    for (size_t i = 0; i < n && status == TSE_OK; i++) {
        status = add_symbol(r, scope, fields[i]->name, SYMBOL_OTHER, file, NULL, err);
        if (status == TSE_OK)
            status = add_extension(r, fields[i], file, err);
    }
    return status;
}

/* Enum values are scoped beside their enum, not inside it (C++ scoping). */
static tse_status index_enum(tse_reflection *r, const char *scope,
                             const Google__Protobuf__EnumDescriptorProto *e, size_t file,
                             tse_error *err)
{
    tse_status status = add_symbol(r, scope, e->name, SYMBOL_OTHER, file, NULL, err);

    for (size_t i = 0; i < e->n_value && status == TSE_OK; i++)
        status = add_symbol(r, scope, e->value[i]->name, SYMBOL_OTHER, file, NULL, err);
    return status;
}

static tse_status index_message(tse_reflection *r, const char *scope,
                                const Google__Protobuf__DescriptorProto *m, size_t file,
                                tse_error *err)
{
    const char *self = NULL;
    tse_status status = add_symbol(r, scope, m->name, SYMBOL_MESSAGE, file, &self, err);

    for (size_t i = 0; i < m->n_field && status == TSE_OK; i++)
        status = add_symbol(r, self, m->field[i]->name, SYMBOL_OTHER, file, NULL, err);
    for (size_t i = 0; i < m->n_oneof_decl && status == TSE_OK; i++)
        status = add_symbol(r, self, m->oneof_decl[i]->name, SYMBOL_OTHER, file, NULL, err);
    for (size_t i = 0; i < m->n_nested_type && status == TSE_OK; i++)
        status = index_message(r, self, m->nested_type[i], file, err);
    for (size_t i = 0; i < m->n_enum_type && status == TSE_OK; i++)
        status = index_enum(r, self, m->enum_type[i], file, err);
    if (status == TSE_OK)
        status = index_extensions(r, self, m->n_extension, m->extension, file, err);
    return status;
}

static tse_status index_service(tse_reflection *r, const char *scope,
                                const Google__Protobuf__ServiceDescriptorProto *s, size_t file,
                                tse_error *err)
{
    const char *self = NULL;
    tse_status status = add_symbol(r, scope, s->name, SYMBOL_SERVICE, file, &self, err);

    for (size_t i = 0; i < s->n_method && status == TSE_OK; i++)
        status = add_symbol(r, self, s->method[i]->name, SYMBOL_OTHER, file, NULL, err);
    return status;
}

static tse_status index_file(tse_reflection *r, size_t file, tse_error *err)
{
    const Google__Protobuf__FileDescriptorProto *p = r->files[file].proto;
    const char *pkg = p->package ? p->package : "";
    tse_status status = TSE_OK;

    for (size_t i = 0; i < p->n_message_type && status == TSE_OK; i++)
        status = index_message(r, pkg, p->message_type[i], file, err);
    for (size_t i = 0; i < p->n_enum_type && status == TSE_OK; i++)
        status = index_enum(r, pkg, p->enum_type[i], file, err);
    for (size_t i = 0; i < p->n_service && status == TSE_OK; i++)
        status = index_service(r, pkg, p->service[i], file, err);
    if (status == TSE_OK)
        status = index_extensions(r, pkg, p->n_extension, p->extension, file, err);
    return status;
}

static tse_status index_symbols(tse_reflection *r, tse_error *err)
{
    for (size_t i = 0; i < r->n_files; i++) {
        tse_status status = index_file(r, i, err);
        if (status != TSE_OK)
            return status;
    }
    sort_array(r->symbols, r->n_symbols, sizeof(*r->symbols), compare_names);
    for (size_t i = 1; i < r->n_symbols; i++) {
        if (strcmp(r->symbols[i - 1].name, r->symbols[i].name) == 0)
            return tse_error_set(err, TSE_INVALID, "descriptor_set",
                                 "%s is defined twice (in %s and %s)", r->symbols[i].name,
                                 r->files[r->symbols[i - 1].file].name,
                                 r->files[r->symbols[i].file].name);
    }
    return TSE_OK;
}

static tse_status sort_extensions(tse_reflection *r, tse_error *err)
{
    sort_array(r->extensions, r->n_extensions, sizeof(*r->extensions), compare_extensions);
    r->extension_numbers = tse_calloc(r->n_extensions ? r->n_extensions : 1, sizeof(int32_t));
    if (r->extension_numbers == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory indexing extensions");
    for (size_t i = 0; i < r->n_extensions; i++)
        r->extension_numbers[i] = r->extensions[i].number;
    return TSE_OK;
}

/* ---- building the index: announced services ------------------------------ */

static tse_status copy_services(tse_reflection *r, const char *const *services, tse_error *err)
{
    size_t n = 0;

    while (services != NULL && services[n] != NULL)
        n++;
    r->services = tse_calloc(n ? n : 1, sizeof(*r->services));
    if (r->services == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory copying services");
    for (size_t i = 0; i < n; i++) {
        const symbol *s = find_symbol(r, services[i]);
        if (s == NULL || s->kind != SYMBOL_SERVICE)
            return tse_error_set(err, TSE_INVALID, "services",
                                 "service %.200s is not in the descriptor set", services[i]);
        /* The index's spelling, so a leading dot given here is not announced. */
        r->services[i] = tse_strdup(s->name);
        if (r->services[i] == NULL)
            return tse_error_set(err, TSE_NOMEM, NULL, "out of memory copying services");
        r->n_services++;
    }
    return TSE_OK;
}

static tse_status build_index(tse_reflection *r, const Google__Protobuf__FileDescriptorSet *set,
                              const char *const *services, tse_error *err)
{
    tse_status status = load_files(r, set, err);

    if (status == TSE_OK)
        status = build_closures(r, err);
    if (status == TSE_OK)
        status = index_symbols(r, err);
    if (status == TSE_OK)
        status = sort_extensions(r, err);
    if (status == TSE_OK)
        status = copy_services(r, services, err);
    /* The set is freed next: no pointer into it may survive. */
    for (size_t i = 0; i < r->n_files; i++)
        r->files[i].proto = NULL;
    return status;
}

tse_reflection *tse_reflection_create(const uint8_t *descriptor_set, size_t len,
                                      const char *const *services, tse_error *err)
{
    Google__Protobuf__FileDescriptorSet *set;
    tse_reflection *r;

    set = google__protobuf__file_descriptor_set__unpack(NULL, len, descriptor_set);
    if (set == NULL) {
        tse_error_set(err, TSE_INVALID, "descriptor_set", "the descriptor set does not parse");
        return NULL;
    }
    r = tse_calloc(1, sizeof(*r));
    if (r == NULL) {
        tse_error_set(err, TSE_NOMEM, NULL, "out of memory creating the reflection index");
        goto out_set;
    }
    if (build_index(r, set, services, err) != TSE_OK) {
        tse_reflection_destroy(r);
        r = NULL;
    }
out_set:
    google__protobuf__file_descriptor_set__free_unpacked(set, NULL);
    return r;
}

void tse_reflection_destroy(tse_reflection *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n_files; i++) {
        tse_free(r->files[i].name);
        tse_free(r->files[i].bytes.data);
        tse_free(r->files[i].closure);
    }
    tse_free(r->files);
    for (size_t i = 0; i < r->n_symbols; i++)
        tse_free(r->symbols[i].name);
    tse_free(r->symbols);
    for (size_t i = 0; i < r->n_extensions; i++)
        tse_free(r->extensions[i].extendee);
    tse_free(r->extensions);
    tse_free(r->extension_numbers);
    for (size_t i = 0; i < r->n_services; i++)
        tse_free(r->services[i]);
    tse_free(r->services);
    tse_free(r);
}

/* ---- answering, version-neutral --------------------------------------------- */

typedef enum question_kind {
    QUESTION_NONE, /* no (or an unknown) message_request */
    QUESTION_FILE,
    QUESTION_SYMBOL,
    QUESTION_EXTENSION,
    QUESTION_EXTENSION_NUMBERS,
    QUESTION_SERVICES
} question_kind;

/* Strings are borrowed from the decoded request. */
typedef struct question {
    question_kind kind;
    const char *name; /* file, symbol, or (extension questions) message type */
    int32_t extension_number;
} question;

typedef enum answer_kind {
    ANSWER_FILES,
    ANSWER_EXTENSION_NUMBERS,
    ANSWER_SERVICES,
    ANSWER_ERROR
} answer_kind;

/* Pointers are borrowed from the index. */
typedef struct answer {
    answer_kind kind;
    const file_entry *file; /* ANSWER_FILES: send its closure */
    char *base_type;        /* ANSWER_EXTENSION_NUMBERS */
    size_t n_numbers;
    int32_t *numbers;
    int32_t error_code; /* ANSWER_ERROR */
    char error_message[ANSWER_MESSAGE_MAX];
} answer;

static void fail_answer(answer *a, int32_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail_answer(answer *a, int32_t code, const char *fmt, ...)
{
    va_list ap;

    a->kind = ANSWER_ERROR;
    a->error_code = code;
    va_start(ap, fmt);
    vsnprintf(a->error_message, sizeof(a->error_message), fmt, ap);
    va_end(ap);
}

static void answer_file(const tse_reflection *r, const char *name, answer *a)
{
    a->file = find_file(r, name);
    if (a->file == NULL)
        fail_answer(a, RPC_NOT_FOUND, "file not found: %.200s", name);
    else
        a->kind = ANSWER_FILES;
}

static void answer_symbol(const tse_reflection *r, const char *name, answer *a)
{
    const symbol *s = find_symbol(r, name);

    if (s == NULL) {
        fail_answer(a, RPC_NOT_FOUND, "symbol not found: %.200s", name);
        return;
    }
    a->kind = ANSWER_FILES;
    a->file = &r->files[s->file];
}

static void answer_extension(const tse_reflection *r, const question *q, answer *a)
{
    const char *type = strip_dot(q->name);
    size_t i = first_extension_of(r, type);

    for (; i < r->n_extensions && strcmp(r->extensions[i].extendee, type) == 0; i++) {
        if (r->extensions[i].number == q->extension_number) {
            a->kind = ANSWER_FILES;
            a->file = &r->files[r->extensions[i].file];
            return;
        }
    }
    fail_answer(a, RPC_NOT_FOUND, "extension %d of %.200s not found", (int)q->extension_number,
                q->name);
}

static void answer_extension_numbers(const tse_reflection *r, const char *name, answer *a)
{
    const symbol *s = find_symbol(r, name);
    size_t first, end;

    if (s == NULL || s->kind != SYMBOL_MESSAGE) {
        fail_answer(a, RPC_NOT_FOUND, "message type not found: %.200s", name);
        return;
    }
    first = first_extension_of(r, s->name);
    for (end = first; end < r->n_extensions; end++) {
        if (strcmp(r->extensions[end].extendee, s->name) != 0)
            break;
    }
    a->kind = ANSWER_EXTENSION_NUMBERS;
    a->base_type = s->name;
    a->n_numbers = end - first;
    a->numbers = a->n_numbers ? &r->extension_numbers[first] : NULL;
}

static void decide(const tse_reflection *r, const question *q, answer *a)
{
    switch (q->kind) {
    case QUESTION_FILE: answer_file(r, q->name, a); return;
    case QUESTION_SYMBOL: answer_symbol(r, q->name, a); return;
    case QUESTION_EXTENSION: answer_extension(r, q, a); return;
    case QUESTION_EXTENSION_NUMBERS: answer_extension_numbers(r, q->name, a); return;
    case QUESTION_SERVICES: a->kind = ANSWER_SERVICES; return;
    case QUESTION_NONE: break;
    }
    fail_answer(a, RPC_INVALID_ARGUMENT, "the request asks no question this server knows");
}

/* ---- v1alpha -------------------------------------------------------------- */

typedef Grpc__Reflection__V1alpha__ServerReflectionRequest alpha_request;
typedef Grpc__Reflection__V1alpha__ServerReflectionResponse alpha_response;
typedef Grpc__Reflection__V1alpha__ServiceResponse alpha_service;
#define ALPHA_REQUEST(what)                                                                        \
    GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_##what
#define ALPHA_RESPONSE(what)                                                                       \
    GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_##what

static question alpha_question(const alpha_request *req)
{
    question q = {QUESTION_NONE, NULL, 0};

    switch (req->message_request_case) {
    case ALPHA_REQUEST(FILE_BY_FILENAME):
        q.kind = QUESTION_FILE;
        q.name = req->file_by_filename;
        break;
    case ALPHA_REQUEST(FILE_CONTAINING_SYMBOL):
        q.kind = QUESTION_SYMBOL;
        q.name = req->file_containing_symbol;
        break;
    case ALPHA_REQUEST(FILE_CONTAINING_EXTENSION):
        q.kind = QUESTION_EXTENSION;
        q.name = "";
        if (req->file_containing_extension != NULL) {
            q.name = req->file_containing_extension->containing_type;
            q.extension_number = req->file_containing_extension->extension_number;
        }
        break;
    case ALPHA_REQUEST(ALL_EXTENSION_NUMBERS_OF_TYPE):
        q.kind = QUESTION_EXTENSION_NUMBERS;
        q.name = req->all_extension_numbers_of_type;
        break;
    case ALPHA_REQUEST(LIST_SERVICES): q.kind = QUESTION_SERVICES; break;
    default: break;
    }
    return q;
}

/* The sub-messages one response may point into, and what they own. */
typedef struct alpha_parts {
    Grpc__Reflection__V1alpha__FileDescriptorResponse files;
    Grpc__Reflection__V1alpha__ExtensionNumberResponse numbers;
    Grpc__Reflection__V1alpha__ListServiceResponse list;
    Grpc__Reflection__V1alpha__ErrorResponse error;
    alpha_service *services; /* owned, with list.service */
} alpha_parts;

/* Points list at the announced services; false when out of memory. */
static bool alpha_list(const tse_reflection *r, alpha_parts *p)
{
    size_t n = r->n_services ? r->n_services : 1;

    p->services = tse_calloc(n, sizeof(*p->services));
    p->list.service = tse_calloc(n, sizeof(alpha_service *));
    if (p->services == NULL || p->list.service == NULL)
        return false;
    for (size_t i = 0; i < r->n_services; i++) {
        grpc__reflection__v1alpha__service_response__init(&p->services[i]);
        p->services[i].name = r->services[i];
        p->list.service[i] = &p->services[i];
    }
    p->list.n_service = r->n_services;
    return true;
}

static bool alpha_fill(const tse_reflection *r, answer *a, alpha_response *resp, alpha_parts *p)
{
    switch (a->kind) {
    case ANSWER_FILES:
        p->files.n_file_descriptor_proto = a->file->n_closure;
        p->files.file_descriptor_proto = a->file->closure;
        resp->message_response_case = ALPHA_RESPONSE(FILE_DESCRIPTOR_RESPONSE);
        resp->file_descriptor_response = &p->files;
        return true;
    case ANSWER_EXTENSION_NUMBERS:
        p->numbers.base_type_name = a->base_type;
        p->numbers.n_extension_number = a->n_numbers;
        p->numbers.extension_number = a->numbers;
        resp->message_response_case = ALPHA_RESPONSE(ALL_EXTENSION_NUMBERS_RESPONSE);
        resp->all_extension_numbers_response = &p->numbers;
        return true;
    case ANSWER_SERVICES:
        resp->message_response_case = ALPHA_RESPONSE(LIST_SERVICES_RESPONSE);
        resp->list_services_response = &p->list;
        return alpha_list(r, p);
    case ANSWER_ERROR: break;
    }
    p->error.error_code = a->error_code;
    p->error.error_message = a->error_message;
    resp->message_response_case = ALPHA_RESPONSE(ERROR_RESPONSE);
    resp->error_response = &p->error;
    return true;
}

static tse_status alpha_encode(const tse_reflection *r, alpha_request *req, answer *a,
                               uint8_t **out, size_t *out_len, tse_error *err)
{
    alpha_response resp = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__INIT;
    alpha_parts p = {
        .files = GRPC__REFLECTION__V1ALPHA__FILE_DESCRIPTOR_RESPONSE__INIT,
        .numbers = GRPC__REFLECTION__V1ALPHA__EXTENSION_NUMBER_RESPONSE__INIT,
        .list = GRPC__REFLECTION__V1ALPHA__LIST_SERVICE_RESPONSE__INIT,
        .error = GRPC__REFLECTION__V1ALPHA__ERROR_RESPONSE__INIT,
    };
    uint8_t *buf = NULL;
    size_t len = 0;

    /* The request is borrowed: it outlives the packing below. */
    resp.valid_host = req->host;
    resp.original_request = req;
    if (!alpha_fill(r, a, &resp, &p))
        goto out_parts;
    len = grpc__reflection__v1alpha__server_reflection_response__get_packed_size(&resp);
    buf = tse_malloc(len ? len : 1);
    if (buf != NULL)
        grpc__reflection__v1alpha__server_reflection_response__pack(&resp, buf);
out_parts:
    tse_free(p.list.service);
    tse_free(p.services);
    if (buf == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory encoding a reflection answer");
    *out = buf;
    *out_len = len;
    return TSE_OK;
}

static tse_status alpha_answer(const tse_reflection *r, const uint8_t *request, size_t len,
                               uint8_t **out, size_t *out_len, tse_error *err)
{
    alpha_request *req;
    question q;
    answer a = {0};
    tse_status status;

    status = tse_pb_unpack(&grpc__reflection__v1alpha__server_reflection_request__descriptor,
                           request, len, TSE_PBJSON_MAX_DEPTH, (ProtobufCMessage **)&req, err);
    if (status == TSE_INVALID)
        return tse_error_set(err, TSE_INVALID, "request",
                             "the v1alpha reflection request does not parse");
    if (status != TSE_OK)
        return status;
    q = alpha_question(req);
    decide(r, &q, &a);
    status = alpha_encode(r, req, &a, out, out_len, err);
    grpc__reflection__v1alpha__server_reflection_request__free_unpacked(req, NULL);
    return status;
}

/* ---- entry point -------------------------------------------------------- */

tse_status tse_reflection_answer(const tse_reflection *r, tse_reflection_version version,
                                 const uint8_t *request, size_t request_len, uint8_t **out,
                                 size_t *out_len, tse_error *err)
{
    *out = NULL;
    *out_len = 0;
    if (request == NULL && request_len > 0)
        return tse_error_set(err, TSE_INVALID, "request", "no request bytes");
    /* grpc.reflection.v1 and v1alpha differ only in their package name,
     * which never reaches the wire: one encoding answers both. */
    (void)version;
    return alpha_answer(r, request, request_len, out, out_len, err);
}

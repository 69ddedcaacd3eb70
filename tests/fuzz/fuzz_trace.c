/*
 * fuzz_trace.c - libFuzzer target for the W3C Trace Context checks
 * (src/domain/trace.h): every publish may carry a client's traceparent and
 * tracestate (gRPC metadata, HTTP headers, CloudEvents attributes, the
 * event's own fields).
 *
 * Input: "<traceparent>\n<tracestate>". The parsers get exact lengths (no
 * NUL), so reading past them is caught by ASan on the malloc'd copies.
 * Checked besides memory safety: an accepted traceparent has the parts the
 * spec fixes (dashes, lowercase hex ids not all zero, version not ff, 55
 * characters for version 00) and the parts handed back are its own; an
 * accepted tracestate is within its length; the pair check agrees with the
 * two checks.
 */
#include <stdbool.h>
#include <stdio.h>

#include "domain/trace.h"
#include "fuzz_support.h"

static void check_traceparent(const char *tp, size_t len)
{
    char *exact = malloc(len ? len : 1); /* no NUL: a read past len is caught */
    tse_traceparent parts;
    tse_error err;

    if (exact == NULL)
        abort();
    memcpy(exact, tp, len);
    if (tse_traceparent_parse(exact, len, &parts, "traceparent", &err) == TSE_OK) {
        char id[33];
        FUZZ_CHECK(len >= 55 && len <= TSE_TRACEPARENT_MAX, "length %zu", len);
        FUZZ_CHECK(parts.version != 0xff && (parts.version != 0 || len == 55), "version %u",
                   parts.version);
        FUZZ_CHECK(tp[2] == '-' && tp[35] == '-' && tp[52] == '-', "dashes of \"%s\"", tp);
        FUZZ_CHECK(memcmp(parts.trace_id, tp + 3, 32) == 0 && strlen(parts.trace_id) == 32 &&
                       strspn(parts.trace_id, "0123456789abcdef") == 32 &&
                       strspn(parts.trace_id, "0") != 32,
                   "trace-id of \"%s\"", tp);
        FUZZ_CHECK(memcmp(parts.parent_id, tp + 36, 16) == 0 &&
                       strspn(parts.parent_id, "0123456789abcdef") == 16 &&
                       strspn(parts.parent_id, "0") != 16,
                   "parent-id of \"%s\"", tp);
        FUZZ_CHECK(tse_trace_id(tp, id) && strcmp(id, parts.trace_id) == 0, "trace id of \"%s\"",
                   tp);
    } else {
        FUZZ_CHECK(err.code == TSE_INVALID && strcmp(err.field, "traceparent") == 0 &&
                       err.message[0] != '\0',
                   "refusal of \"%s\": %s %s", tp, err.field, err.message);
    }
    free(exact);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s[2];
    size_t tp_len, ts_len;
    bool tp_ok, ts_ok;
    tse_error err;
    char *exact;

    fuzz_strings(data, size, s, 2);
    tp_len = strlen(s[0]);
    ts_len = strlen(s[1]);
    check_traceparent(s[0], tp_len);
    exact = malloc(ts_len ? ts_len : 1);
    if (exact == NULL)
        abort();
    memcpy(exact, s[1], ts_len);
    ts_ok = tse_tracestate_check(exact, ts_len, "tracestate", &err) == TSE_OK;
    free(exact);
    FUZZ_CHECK(!ts_ok || ts_len <= TSE_TRACESTATE_MAX, "tracestate of %zu accepted", ts_len);
    tp_ok = tp_len > 0 && tse_traceparent_parse(s[0], tp_len, NULL, "tp", NULL) == TSE_OK;
    /* The pair: a tracestate only with a traceparent, each valid alone. */
    FUZZ_CHECK((tse_trace_context_check(s[0], s[1], "tp", "ts", &err) == TSE_OK) ==
                   (tp_len == 0 ? ts_len == 0 : tp_ok && (ts_len == 0 || ts_ok)),
               "pair \"%s\" / \"%s\"", s[0], s[1]);
    fuzz_strings_free(s, 2);
    return 0;
}

/*
 * access.c - who the caller of a call is, and whether it may do what it
 * asks (auth/auth.h holds the identities and their rights).
 *
 * With AUTH_TOKENS_FILE unset the server has no tse_auth and every check
 * here allows everything: today's behaviour. Otherwise a call proves an
 * identity at its arrival, by `authorization: Bearer <token>` metadata or by
 * the common name of a client certificate that gRPC verified (mTLS); a call
 * without one is answered UNAUTHENTICATED before its handler runs, except
 * for the health methods (probes carry no token). The call holds the table
 * it was checked against until it is freed, so a reload never pulls an
 * identity from under a running call; the next call sees the new table.
 *
 * Every refusal and every use of the admin right writes one audit line:
 * identity, method, target, correlation id, and what was decided. Tokens
 * are never logged, not even in part.
 */
#include <grpc/grpc_security.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/clock.h"
#include "obs/log.h"
#include "transport/internal.h"

#define BEARER "Bearer "

void tse_audit(const tse_call *c, const char *decision, const char *target, const char *why)
{
    tse_log(TSE_LOG_WARN, "audit",
            (const char *[]){"identity", c->identity ? tse_identity_name(c->identity) : "",
                             "method", c->method->name, "target", target ? target : "",
                             "correlation_id", c->correlation_id, "decision", decision, "reason",
                             why ? why : "", NULL});
}

/* The bearer token of the call's metadata, or NULL. */
static const grpc_slice *bearer_token(const tse_call *c)
{
    for (size_t i = 0; i < c->metadata.count; i++) {
        const grpc_metadata *md = &c->metadata.metadata[i];
        if (grpc_slice_str_cmp(md->key, "authorization") == 0)
            return &md->value;
    }
    return NULL;
}

/* The identity of a verified client certificate's common name, or NULL. */
static const tse_identity *certificate_identity(const tse_call *c, int64_t now_s)
{
    grpc_auth_context *ctx = grpc_call_auth_context(c->call);
    const tse_identity *id = NULL;

    if (ctx == NULL)
        return NULL;
    if (grpc_auth_context_peer_is_authenticated(ctx)) {
        grpc_auth_property_iterator it =
            grpc_auth_context_find_properties_by_name(ctx, GRPC_X509_CN_PROPERTY_NAME);
        const grpc_auth_property *p = grpc_auth_property_iterator_next(&it);
        if (p != NULL)
            id = tse_auth_table_find_cn(c->auth_table, p->value, p->value_length, now_s);
    }
    grpc_auth_context_release(ctx);
    return id;
}

bool tse_call_authenticate(tse_call *c)
{
    tse_auth *auth = c->server->auth;
    const grpc_slice *value;
    int64_t now_s = (int64_t)time(NULL);

    if (auth == NULL)
        return true;
    c->auth_table = tse_auth_acquire(auth);
    value = bearer_token(c);
    if (value != NULL) {
        const char *v = (const char *)GRPC_SLICE_START_PTR(*value);
        size_t len = GRPC_SLICE_LENGTH(*value), pre = strlen(BEARER);
        if (len > pre && strncasecmp(v, BEARER, pre) == 0)
            c->identity = tse_auth_table_find_token(c->auth_table, v + pre, len - pre, now_s);
    } else {
        c->identity = certificate_identity(c, now_s);
    }
    if (c->identity != NULL || c->method->open)
        return true;
    tse_audit(c, "denied", "", value ? "unknown or expired token" : "no credentials");
    tse_call_fail(c, TSE_ERROR(TSE_UNAUTHENTICATED, "",
                               "authentication required: send `authorization: Bearer <token>` "
                               "(or a client certificate) of a known identity"));
    return false;
}

tse_status tse_access_deny(tse_call *c, const char *target, tse_error *err, const char *fmt, ...)
{
    va_list ap;
    char why[TSE_ERROR_MESSAGE_MAX];

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    tse_audit(c, "denied", target, why);
    return tse_error_set(err, TSE_PERMISSION_DENIED, NULL, "%s", why);
}

bool tse_access_admin_used(tse_call *c, const char *target)
{
    if (c->identity == NULL || !tse_identity_admin(c->identity))
        return false;
    tse_audit(c, "allowed as admin", target, NULL);
    return true;
}

tse_status tse_access_admin(tse_call *c, const char *target, tse_error *err)
{
    if (c->server->auth == NULL || tse_access_admin_used(c, target))
        return TSE_OK;
    return tse_access_deny(c, target, err, "%s needs the admin right", c->method->name);
}

tse_status tse_access_publish(tse_call *c, const char *event_type, const char *source,
                              tse_error *err)
{
    const tse_identity *id = c->identity;
    int64_t retry_ms = 0;

    if (c->server->auth == NULL)
        return TSE_OK;
    if (!tse_identity_may_publish(id, event_type))
        return tse_access_deny(c, event_type, err, "identity '%s' may not publish %s",
                               tse_identity_name(id), event_type);
    if (strcmp(source, tse_identity_name(id)) != 0 && !tse_identity_on_behalf(id))
        return tse_access_deny(c, event_type, err,
                               "source_service must be '%s' (the caller's identity)",
                               tse_identity_name(id));
    if (!tse_identity_rate_take(id, tse_clock_us(), &retry_ms)) {
        uint64_t unlogged = 0;
        if (tse_identity_rate_audit(id, tse_clock_us(), &unlogged)) {
            char why[64];
            snprintf(why, sizeof(why), "%llu more refused since the last line",
                     (unsigned long long)unlogged);
            tse_audit(c, "rate limited", event_type, why);
        }
        return tse_error_set(err, TSE_RESOURCE_EXHAUSTED, NULL,
                             "publish rate of identity '%s' exceeded; " TSE_RETRY_AFTER_TEXT,
                             tse_identity_name(id), (long long)retry_ms);
    }
    return TSE_OK;
}

tse_status tse_access_patterns(tse_call *c, const char *target, char *const *patterns, size_t n,
                               tse_error *err)
{
    if (c->server->auth == NULL)
        return TSE_OK;
    for (size_t i = 0; i < n; i++)
        if (!tse_identity_may_subscribe(c->identity, patterns[i]))
            return tse_access_deny(c, target, err,
                                   "identity '%s' may not read every type pattern '%s' can match "
                                   "(its subscribe permissions)",
                                   tse_identity_name(c->identity), patterns[i]);
    return TSE_OK;
}

bool tse_access_owns(const tse_call *c, const char *owner)
{
    return c->server->auth == NULL ||
           (owner != NULL && strcmp(owner, tse_identity_name(c->identity)) == 0);
}

tse_status tse_access_subscription(tse_call *c, const char *name, const char *owner,
                                   char *const *patterns, size_t n, tse_error *err)
{
    if (c->server->auth == NULL)
        return TSE_OK;
    if (!tse_access_owns(c, owner) && !tse_access_admin_used(c, name))
        return tse_access_deny(c, name, err, "subscription '%s' belongs to another identity", name);
    return tse_access_patterns(c, name, patterns, n, err);
}

const char *tse_call_identity(const tse_call *c)
{
    return c->identity ? tse_identity_name(c->identity) : NULL;
}

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
 * A call that stays open (Subscribe, PublishStream) is proven again from
 * its credentials at each delivery or message once the table it holds is
 * no longer current or its identity has expired (tse_access_recheck): one
 * atomic load and a clock read while nothing changed.
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

/* One audit line: identity, method, target, correlation id, decision, reason. */
static void audit(const tse_call *c, const char *decision, const char *target, const char *why)
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

/* The identity in t of a verified client certificate's common name, or NULL. */
static const tse_identity *certificate_identity(const tse_call *c, const tse_auth_table *t,
                                                int64_t now_s)
{
    grpc_auth_context *ctx = grpc_call_auth_context(c->call);
    const tse_identity *id = NULL;

    if (ctx == NULL)
        return NULL;
    /* Authenticated only when gRPC verified the certificate against
     * TLS_CLIENT_CA (optional and require both verify): an unverified one
     * never names anyone. */
    if (grpc_auth_context_peer_is_authenticated(ctx)) {
        grpc_auth_property_iterator it =
            grpc_auth_context_find_properties_by_name(ctx, GRPC_X509_CN_PROPERTY_NAME);
        const grpc_auth_property *p = grpc_auth_property_iterator_next(&it);
        if (p != NULL)
            id = tse_auth_table_find_cn(t, p->value, p->value_length, now_s);
    }
    grpc_auth_context_release(ctx);
    return id;
}

/* The identity the call's credentials prove in t at now_s, or NULL: its
 * bearer token when it sent one (*token set), else its client
 * certificate. */
static const tse_identity *prove(const tse_call *c, const tse_auth_table *t, int64_t now_s,
                                 bool *token)
{
    const grpc_slice *value = bearer_token(c);

    *token = value != NULL;
    if (value != NULL) {
        const char *v = (const char *)GRPC_SLICE_START_PTR(*value);
        size_t len = GRPC_SLICE_LENGTH(*value), pre = strlen(BEARER);
        if (len > pre && strncasecmp(v, BEARER, pre) == 0)
            return tse_auth_table_find_token(t, v + pre, len - pre, now_s);
        return NULL;
    }
    return certificate_identity(c, t, now_s);
}

bool tse_call_authenticate(tse_call *c)
{
    tse_auth *auth = c->server->auth;
    bool token;

    if (auth == NULL)
        return true;
    c->auth_table = tse_auth_acquire(auth);
    c->identity = prove(c, c->auth_table, (int64_t)time(NULL), &token);
    if (c->identity != NULL || c->method->open)
        return true;
    audit(c, "denied", "", token ? "unknown or expired token" : "no credentials");
    tse_call_fail(c, TSE_ERROR(TSE_UNAUTHENTICATED, "",
                               "authentication required: send `authorization: Bearer <token>` "
                               "(or a client certificate) of a known identity"));
    return false;
}

tse_status tse_access_recheck(tse_call *c, bool *renewed, tse_error *err)
{
    tse_auth *auth = c->server->auth;
    const tse_auth_table *t;
    const tse_identity *id;
    int64_t expires, now_s;
    bool token;

    if (renewed != NULL)
        *renewed = false;
    if (auth == NULL || c->identity == NULL)
        return TSE_OK;
    expires = tse_identity_expires(c->identity);
    if (tse_auth_is_current(auth, c->auth_table) && (expires == 0 || (int64_t)time(NULL) < expires))
        return TSE_OK;
    now_s = (int64_t)time(NULL);
    t = tse_auth_acquire(auth);
    id = prove(c, t, now_s, &token);
    if (id == NULL) {
        tse_auth_release(t);
        audit(c, "denied", "",
              token ? "token revoked or expired while the call was open"
                    : "certificate identity removed or expired while the call was open");
        return tse_error_set(err, TSE_UNAUTHENTICATED, NULL,
                             "the caller's credentials were revoked or expired; "
                             "authenticate again");
    }
    tse_auth_release(c->auth_table);
    c->auth_table = t;
    c->identity = id;
    if (renewed != NULL)
        *renewed = true;
    return TSE_OK;
}

tse_status tse_access_deny(tse_call *c, const char *target, tse_error *err, const char *fmt, ...)
{
    va_list ap;
    char why[TSE_ERROR_MESSAGE_MAX];

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    audit(c, "denied", target, why);
    return tse_error_set(err, TSE_PERMISSION_DENIED, NULL, "%s", why);
}

bool tse_access_admin_used(tse_call *c, const char *target)
{
    if (c->identity == NULL || !tse_identity_admin(c->identity))
        return false;
    audit(c, "allowed as admin", target, NULL);
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
    const tse_identity *id;
    int64_t retry_ms = 0;
    tse_status st;

    if (c->server->auth == NULL)
        return TSE_OK;
    /* A PublishStream outlives reloads of the tokens file. */
    if ((st = tse_access_recheck(c, NULL, err)) != TSE_OK)
        return st;
    id = c->identity;
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
            audit(c, "rate limited", event_type, why);
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

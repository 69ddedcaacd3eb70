/*
 * https.h - the bridge's HTTPS certificate (TLS_CERT, TLS_KEY): read at
 * start and again on SIGHUP, and handed to GnuTLS by libmicrohttpd's
 * certificate callback before each handshake, so that a rotation reaches
 * new connections without restarting the listener; connections already
 * open keep theirs.
 *
 * Threading: the callback runs on MHD's workers, reloads on the main
 * thread; the current certificate is one atomic pointer. GnuTLS's callback
 * has no closure, so the certificate a process serves is one file-level
 * pointer, set by tsb_https_create (one per process). A replaced
 * certificate is kept until tsb_https_destroy, since a handshake may still
 * be using it (a few kilobytes per reload).
 */
#ifndef TSB_BRIDGE_HTTPS_H
#define TSB_BRIDGE_HTTPS_H

#include "common/status.h"
#include "config.h"

typedef struct tsb_https tsb_https;

/* Reads the files of cfg (borrowed; must outlive the result) and makes
 * them the process's certificate. Errors name the setting. Release with
 * tsb_https_destroy once MHD has stopped. */
tse_status tsb_https_create(const tsb_bridge_config *cfg, tsb_https **out, tse_error *err);

/* The value of MHD_OPTION_HTTPS_CERT_CALLBACK. */
void *tsb_https_callback(void);

/* Re-reads the files; on failure the certificate in use stays. */
tse_status tsb_https_reload(tsb_https *h, tse_error *err);

/* NULL: no-op. */
void tsb_https_destroy(tsb_https *h);

#endif

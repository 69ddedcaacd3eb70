/*
 * pem.h - the PEM files of TLS: reading a certificate chain, a key or a CA
 * bundle with a size cap, and checking that a key belongs to a certificate
 * (GnuTLS). Shared by the service's gRPC port (transport/tls.c) and the
 * REST bridge's HTTPS, so that both refuse a bad pair the same way, naming
 * the setting, before any handshake would fail on it.
 *
 * Stateless; thread-safe.
 */
#ifndef TSE_TLS_PEM_H
#define TSE_TLS_PEM_H

#include <stdbool.h>

#include "common/status.h"

/* A PEM file larger than this is not a certificate chain or a key. */
#define TSE_PEM_FILE_MAX (1 << 20)

/*
 * The whole of the PEM file at path, NUL-terminated; caller frees (keys:
 * with tse_pem_free). NULL on failure, err naming key (the setting, e.g.
 * "TLS_CERT") and the path.
 */
char *tse_pem_read(const char *path, const char *key, tse_error *err);

/* Wipes and frees a PEM text (a private key leaves no copy). NULL: no-op. */
void tse_pem_free(char *pem);

/*
 * Checks a certificate chain and its private key (PEM texts): both parse
 * and the key is the first certificate's. On failure err names key_setting
 * and both paths.
 */
tse_status tse_pem_check_pair(const char *chain, const char *key, const char *cert_path,
                              const char *key_path, const char *key_setting, tse_error *err);

#endif

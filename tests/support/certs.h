/*
 * certs.h - throwaway certificates for the TLS tests, made with the openssl
 * command line in a scratch folder: a CA, a server certificate it signs for
 * "localhost" and 127.0.0.1, a client certificate it signs, and a second,
 * unrelated CA with its own server and client certificates (the "wrong CA"
 * cases and rotation).
 *
 * Files in dir: ca.pem, server.pem, server.key, client.pem, client.key,
 * and other-ca.pem, other-server.pem, other-server.key, other-client.pem,
 * other-client.key. EC P-256 keys: quick to make.
 */
#ifndef TSE_TEST_CERTS_H
#define TSE_TEST_CERTS_H

#include <stddef.h>

typedef struct tse_test_certs {
    char dir[256];
} tse_test_certs;

/* Makes every file; fails the test (cmocka) when openssl does not. */
tse_test_certs *tse_test_certs_make(void);
/* One more client certificate, dir/name.pem and dir/name.key, with subject
 * CN=cn, signed by dir/ca.pem ("ca" or "other-ca"). */
void tse_test_certs_make_client(const tse_test_certs *c, const char *ca, const char *name,
                                const char *cn);
/* Removes the folder, frees. NULL: no-op. */
void tse_test_certs_remove(tse_test_certs *c);

/* dir/name into a static-free buffer of the caller. */
const char *tse_test_certs_path(const tse_test_certs *c, const char *name, char *buf, size_t len);
/* The content of dir/name, NUL-terminated; caller frees. */
char *tse_test_certs_read(const tse_test_certs *c, const char *name);
/* Copies dir/from over dir/to (atomically: a rename). */
void tse_test_certs_copy(const tse_test_certs *c, const char *from, const char *to);

#endif

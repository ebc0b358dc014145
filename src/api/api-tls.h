/* api/: HTTPS for `serve --tls-cert FILE --tls-key FILE` (docs/deployment.md#tls).
 *
 * The certificate reaches libmicrohttpd through MHD_OPTION_HTTPS_CERT_CALLBACK: GnuTLS
 * asks for it at each handshake, so a reload (SIGHUP) swaps what new handshakes get
 * without closing the listening socket or any open connection. A reload that fails
 * (a missing file, a key that does not match) leaves the previous pair in service. */
#pragma once

#include <stdint.h>

#include "base/error.h"

struct mp_api_tls;

/* Load cert_file (PEM, the server's certificate first, then its chain) and key_file
 * (PEM): -EINVAL with err naming the file and the fault (unreadable, not PEM, a key
 * that is not the certificate's). At most one may be open per process: the GnuTLS
 * callback has no closure. */
int mp_api_tls_open(const char *cert_file, const char *key_file, struct mp_api_tls **ret,
                    struct mp_error *err);
/* Read both files again; on success new handshakes get the new pair. */
int mp_api_tls_load(struct mp_api_tls *t, struct mp_error *err);
/* The callback to give MHD_OPTION_HTTPS_CERT_CALLBACK (a gnutls_certificate_retrieve_function2). */
void *mp_api_tls_callback(void);
/* The served certificate's notAfter, in seconds since the epoch (0: none). */
int64_t mp_api_tls_not_after(const struct mp_api_tls *t);
/* NULL is fine. Only once the daemon that used it has stopped. */
void mp_api_tls_free(struct mp_api_tls *t);

/* HTTPS through libmicrohttpd's GnuTLS support, with the certificate handed over at
 * each handshake (see api-tls.h for why a callback rather than a restart). */
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "api/api-tls.h"
#include "base/log.h"
#include "base/util.h"

#define MAX_CHAIN 16

/* One certificate chain and its key, as GnuTLS wants them at a handshake. */
struct pair {
        gnutls_pcert_st pcert[MAX_CHAIN];
        unsigned n;
        gnutls_privkey_t key;
        int64_t not_after;
        struct pair *older;
};

struct mp_api_tls {
        char *cert_file, *key_file;
        /* The pair new handshakes get. The pairs it replaced stay allocated until
         * mp_api_tls_free: a session keeps pointing at the pair of its handshake as long
         * as its connection lives, and GnuTLS does not say when that ends. A reload
         * costs a few kilobytes of a rare event. */
        _Atomic(struct pair *) current;
};

/* The GnuTLS callback has no user pointer: the one open instance. */
static _Atomic(struct mp_api_tls *) the_tls;

static void pair_free(struct pair *p) {
        while (p) {
                struct pair *older = p->older;
                for (unsigned i = 0; i < p->n; i++)
                        gnutls_pcert_deinit(&p->pcert[i]);
                if (p->key)
                        gnutls_privkey_deinit(p->key);
                free(p);
                p = older;
        }
}

static int load_file(const char *path, const char *what, gnutls_datum_t *ret, struct mp_error *err) {
        int r = gnutls_load_file(path, ret);
        if (r < 0)
                return mp_error_set(err, EINVAL, 400, "config", "%s \"%s\" cannot be read: %s", what, path,
                                    gnutls_strerror(r));
        return 0;
}

/* Both files, checked against each other (GnuTLS refuses a key that is not the
 * certificate's: GNUTLS_E_CERTIFICATE_KEY_MISMATCH), then in the form the callback
 * returns. */
static int load_pair(const char *cert_file, const char *key_file, struct pair **ret, struct mp_error *err) {
        gnutls_certificate_credentials_t check = NULL;
        gnutls_x509_crt_t crts[MAX_CHAIN];
        unsigned n = MAX_CHAIN;
        gnutls_datum_t cert = { 0 }, key = { 0 };
        struct pair *p = NULL;
        int r;

        if ((r = load_file(cert_file, "--tls-cert", &cert, err)) < 0 ||
            (r = load_file(key_file, "--tls-key", &key, err)) < 0)
                goto out;
        if (gnutls_certificate_allocate_credentials(&check) < 0) {
                r = -ENOMEM;
                goto out;
        }
        r = gnutls_certificate_set_x509_key_mem2(check, &cert, &key, GNUTLS_X509_FMT_PEM, NULL, 0);
        if (r < 0) {
                r = mp_error_set(err, EINVAL, 400, "config",
                                 r == GNUTLS_E_CERTIFICATE_KEY_MISMATCH
                                         ? "--tls-key \"%s\" is not the key of the certificate in \"%s\""
                                         : "--tls-cert \"%s\" / --tls-key \"%s\": not a PEM certificate and "
                                           "its PEM private key (%s)",
                                 r == GNUTLS_E_CERTIFICATE_KEY_MISMATCH ? key_file : cert_file,
                                 r == GNUTLS_E_CERTIFICATE_KEY_MISMATCH ? cert_file : key_file,
                                 gnutls_strerror(r));
                goto out;
        }
        p = calloc(1, sizeof(*p));
        if (!p) {
                r = -ENOMEM;
                goto out;
        }
        r = gnutls_x509_crt_list_import(crts, &n, &cert, GNUTLS_X509_FMT_PEM, 0);
        if (r < 0 || n == 0) {
                r = mp_error_set(err, EINVAL, 400, "config", "--tls-cert \"%s\": %s", cert_file,
                                 r == GNUTLS_E_SHORT_MEMORY_BUFFER ? "more than 16 certificates in the chain"
                                                                   : "no PEM certificate in it");
                goto out;
        }
        p->not_after = (int64_t) gnutls_x509_crt_get_expiration_time(crts[0]);
        for (unsigned i = 0; i < n; i++) {
                if (r >= 0 && (r = gnutls_pcert_import_x509(&p->pcert[i], crts[i], 0)) >= 0)
                        p->n++;
                gnutls_x509_crt_deinit(crts[i]);
        }
        if (r < 0 || gnutls_privkey_init(&p->key) < 0 ||
            gnutls_privkey_import_x509_raw(p->key, &key, GNUTLS_X509_FMT_PEM, NULL, 0) < 0) {
                r = mp_error_set(err, EINVAL, 400, "config", "--tls-cert \"%s\" / --tls-key \"%s\" cannot be "
                                 "loaded", cert_file, key_file);
                goto out;
        }
        *ret = TAKE_PTR(p);
        r = 0;
out:
        pair_free(p);
        if (check)
                gnutls_certificate_free_credentials(check);
        gnutls_free(cert.data);
        if (key.data) {
                /* The key's bytes do not outlive the load. */
                memset(key.data, 0, key.size);
                gnutls_free(key.data);
        }
        return r;
}

static int retrieve(gnutls_session_t session, const gnutls_datum_t *req_ca_rdn, int nreqs,
                    const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length, gnutls_pcert_st **pcert,
                    unsigned int *pcert_length, gnutls_privkey_t *pkey) {
        struct mp_api_tls *t = atomic_load(&the_tls);
        struct pair *p = t ? atomic_load(&t->current) : NULL;

        (void) session;
        (void) req_ca_rdn;
        (void) nreqs;
        (void) pk_algos;
        (void) pk_algos_length;
        if (!p)
                return -1;
        *pcert = p->pcert;
        *pcert_length = p->n;
        *pkey = p->key;
        return 0;
}

void *mp_api_tls_callback(void) {
        gnutls_certificate_retrieve_function2 *fn = retrieve;
        return (void *) fn;
}

int mp_api_tls_load(struct mp_api_tls *t, struct mp_error *err) {
        struct pair *p = NULL;
        int r = load_pair(t->cert_file, t->key_file, &p, err);
        char when[32];

        if (r < 0)
                return r;
        p->older = atomic_load(&t->current);
        atomic_store(&t->current, p);
        mp_format_time(p->not_after * 1000, when, sizeof(when));
        mp_info("TLS: serving the certificate of %s (valid until %s)", t->cert_file, when);
        return 0;
}

int mp_api_tls_open(const char *cert_file, const char *key_file, struct mp_api_tls **ret,
                    struct mp_error *err) {
        struct mp_api_tls *t = calloc(1, sizeof(*t)), *none = NULL;
        int r;

        if (!t || !(t->cert_file = strdup(cert_file)) || !(t->key_file = strdup(key_file))) {
                mp_api_tls_free(t);
                return -ENOMEM;
        }
        if ((r = mp_api_tls_load(t, err)) < 0) {
                mp_api_tls_free(t);
                return r;
        }
        if (!atomic_compare_exchange_strong(&the_tls, &none, t)) {
                mp_api_tls_free(t);
                return mp_error_set(err, EBUSY, 500, "config", "HTTPS is already served by this process");
        }
        *ret = t;
        return 0;
}

int64_t mp_api_tls_not_after(const struct mp_api_tls *t) {
        struct pair *p = t ? atomic_load(&t->current) : NULL;
        return p ? p->not_after : 0;
}

void mp_api_tls_free(struct mp_api_tls *t) {
        struct mp_api_tls *self = t;

        if (!t)
                return;
        atomic_compare_exchange_strong(&the_tls, &self, NULL);
        pair_free(atomic_load(&t->current));
        free(t->cert_file);
        free(t->key_file);
        free(t);
}

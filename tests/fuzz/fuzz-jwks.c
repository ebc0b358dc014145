/* Fuzz target: mp_oidc_keyset_parse (src/auth/auth-oidc.c), the JWKS document an
 * OpenID provider serves (fetched over the network; a provider, or whoever answers for
 * it, controls every byte). Input: the document. */
#include "auth/auth.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct mp_oidc_keyset *ks = NULL;
        struct mp_error err = { 0 };
        int r = mp_oidc_keyset_parse((const char *) data, size, &ks, &err);

        fuzz_check(r == 0 || r == -EINVAL || r == -ENOMEM);
        fuzz_check((r == 0) == (ks != NULL));
        if (ks) {
                /* A token whose kid the set may hold: the lookup over what was kept. */
                json_t *claims = NULL;
                const struct mp_oidc_policy p = { .issuer = "i", .audience = "a", .now_s = 1 };
                mp_error_clear(&err);
                (void) mp_oidc_verify_jwt("eyJhbGciOiJFUzI1NiIsImtpZCI6ImVjMSJ9.e30.AAAA", ks, &p,
                                          &claims, &err);
                json_decref(claims);
        }
        mp_oidc_keyset_free(ks);
        mp_error_clear(&err);
        return 0;
}

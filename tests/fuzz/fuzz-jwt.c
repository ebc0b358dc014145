/* Fuzz target: a bearer token as the OpenID verifier reads it (src/auth/auth-oidc.c):
 * mp_oidc_looks_like_jwt, then mp_oidc_verify_jwt against a fixed JWKS (its header
 * decoding and checks, the key lookup, the JOSE parse of rhonabwy, the signature); and
 * the claim checks and mapping (mp_oidc_check_claims, mp_oidc_map_claims), which run on
 * claims only after a signature verified, fed here directly.
 * Input: a token ("xxx.yyy.zzz"), or, when it starts with '{', a claims object. */
#include <jansson.h>

#include "auth/auth.h"
#include "base/util.h"
#include "fuzz.h"

/* Public keys only (an EC P-256 and an RSA 2048 key made for this target); the corpus
 * holds tokens they sign. */
static const char jwks[] = "{\"keys\": [{\"kty\": \"EC\", \"kid\": \"ec1\", \"use\": \"sig\", \"alg\": \"ES256\", \"crv\": \"P-256\", \"x\": \"7HPUL_8QY1vIFbZWJR47zRlkp6bnm_8P_JfvpCv6jSE\", \"y\": \"l02JXI0OPzF_VuquYEXLLu7XUJUuTVL2ra3LKbDUQcs\"}, {\"kty\": \"RSA\", \"kid\": \"rsa1\", \"use\": \"sig\", \"alg\": \"RS256\", \"n\": \"03qJIqQU3CBnNjxSrTNfY8eb0JMuadsd_E_3-IqvByX2MFVWRGLrXinjLhXs-9EKtajjQ0qgzl6oP59FlJUop8jD9Y1d5xdUKlOEtVV3Vj3c7oaVxPYJMjDhFw2DTqVdpNWfKB94u0FLKvfGew9beV1XVpzGs3Rw8IzRiVerYrPMpBK7b9icxYZqcIhOunwvMkrpVsF1_HgbWMO9ZWRz4ME46zFXE5_hkC-EIHSg1GUniUsxTeNQESowoIWTX3qKo4MO0T85k1Lr90Qd9Fy5lzliJ13DfyfwtM8QOEq5fMh-TEltUWe6jp4uSElD91tG-wpHuHY5V-mowBdKuInNjw\", \"e\": \"AQAB\"}]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static struct mp_oidc_keyset *ks;
        const struct mp_oidc_policy policy = {
                .issuer = "https://idp.example", .audience = "mecapy", .azp = "mecapy-web",
                .now_s = 1750000000, .skew_s = 60,
        };
        struct mp_error err = { 0 };
        char *text;

        if (!ks && mp_oidc_keyset_parse(jwks, sizeof(jwks) - 1, &ks, NULL) < 0)
                abort();
        text = fuzz_strndup(data, size);
        if (size && data[0] == '{') {
                json_t *c = json_loadb(text, size, JSON_REJECT_DUPLICATES, NULL);
                struct mp_oidc_identity id;
                if (c) {
                        int r = mp_oidc_check_claims(c, &policy, &err);
                        fuzz_check(r == 0 || r == -EACCES);
                        mp_error_clear(&err);
                        if (mp_oidc_map_claims(c, "mecapy-web", "mecapy", "org", "boss=admin,ro=viewer,x",
                                               &id, &err) == 0) {
                                fuzz_check(id.sub[0] && strlen(id.sub) < sizeof(id.sub));
                                fuzz_check(strchr(id.email, '@'));
                                fuzz_check(!strcmp(id.role, "admin") || !strcmp(id.role, "member") ||
                                           !strcmp(id.role, "viewer"));
                                fuzz_check(mp_utf8_valid(id.company, strlen(id.company)));
                        }
                        mp_error_clear(&err);
                        json_decref(c);
                }
        } else {
                json_t *claims = NULL;
                (void) mp_oidc_looks_like_jwt(text);
                int r = mp_oidc_verify_jwt(text, ks, &policy, &claims, &err);
                fuzz_check(r == 0 || r == -EACCES || r == -ENOKEY || r == -ENOMEM);
                fuzz_check((r == 0) == (claims != NULL));
                json_decref(claims);
                mp_error_clear(&err);
        }
        free(text);
        return 0;
}

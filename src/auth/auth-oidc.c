/* auth/: OpenID Connect. MecaPy checks access tokens of an OpenID provider (Keycloak
 * or another) against the provider's JWKS, and logs people in by the authorization code
 * flow with PKCE. See auth.h for the policy; docs/identity.md for operators.
 *
 * Security edges, and why they are written this way:
 *  - rhonabwy is used for the signature only. The header and the payload are decoded
 *    and judged here, and the key comes from the JWKS we fetched, chosen by kid: with a
 *    NULL key rhonabwy would trust a key that the token carries in its own header.
 *  - Everything read from the network (discovery, JWKS, token endpoint) is capped in
 *    size and time, and never follows redirects.
 *  - Pending logins and CLI codes live in this process's memory, are single use and
 *    expire; their secrets are compared in constant time. */
#include <ctype.h>
#include <curl/curl.h>
#include <pthread.h>
#include <rhonabwy.h>
#include <sodium.h>
#include <string.h>

#include "auth/auth.h"
#include "base/log.h"
#include "base/util.h"

struct key {
        char kid[MP_OIDC_MAX_KID_LEN + 1];
        char alg[8];   /* the JWK's "alg" when it names one, else "" */
        bool rsa;      /* RSA, else EC P-256 */
        jwk_t *jwk;
};

struct mp_oidc_keyset {
        size_t n;
        struct key keys[MP_OIDC_MAX_KEYS];
};

struct pending {
        char state[MP_OIDC_RANDOM_LEN + 1];
        char binding[MP_OIDC_RANDOM_LEN + 1];
        char nonce[MP_OIDC_RANDOM_LEN + 1];
        char verifier[MP_OIDC_RANDOM_LEN + 1];
        char redirect_uri[MP_OIDC_MAX_URL_LEN + 1];
        char return_to[512];
        char cli_redirect[256];
        char cli_state[128];
        char cli_challenge[64];
        int64_t expires_ms;
        struct pending *next;
};

struct cli_code {
        char code[MP_OIDC_RANDOM_LEN + 1];
        char challenge[64];
        char user_id[64];
        int64_t expires_ms;
        struct cli_code *next;
};

struct mp_oidc {
        char *issuer, *audience, *client_id, *client_secret, *company_claim, *role_map;

        pthread_mutex_t discovery_lock;
        bool discovered;
        int64_t discovery_tried_ms; /* monotonic */
        char *authorization_endpoint, *token_endpoint, *jwks_uri;

        /* Readers verify under the read lock; a refresh swaps the set under the write
         * lock and frees the old one, so no verify ever holds a freed key. */
        pthread_rwlock_t keys_lock;
        struct mp_oidc_keyset *keys;
        int64_t keys_fetched_ms;    /* monotonic, of the keyset in use */
        pthread_mutex_t fetch_lock;
        int64_t fetch_tried_ms;     /* monotonic, of the last attempt (rate limit) */

        pthread_mutex_t login_lock;
        struct pending *pending;
        size_t n_pending;
        struct cli_code *codes;
        size_t n_codes;
};

/* ---------------------------------------------------------------- small helpers */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;

static void global_init(void) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        r_global_init();
        if (sodium_init() < 0)
                mp_err("libsodium could not start");
}

void mp_oidc_random(char ret[MP_OIDC_RANDOM_LEN + 1]) {
        unsigned char raw[32];
        pthread_once(&global_once, global_init);
        randombytes_buf(raw, sizeof(raw));
        sodium_bin2base64(ret, MP_OIDC_RANDOM_LEN + 1, raw, sizeof(raw),
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

void mp_oidc_pkce_challenge(const char *verifier, char ret[MP_OIDC_RANDOM_LEN + 1]) {
        unsigned char h[crypto_hash_sha256_BYTES];
        crypto_hash_sha256(h, (const unsigned char *) verifier, strlen(verifier));
        sodium_bin2base64(ret, MP_OIDC_RANDOM_LEN + 1, h, sizeof(h),
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static bool is_b64url(char ch) {
        return isalnum((unsigned char) ch) || ch == '-' || ch == '_';
}

bool mp_oidc_looks_like_jwt(const char *t) {
        size_t dots = 0, len = 0;
        if (!t || !*t)
                return false;
        for (const char *p = t; *p; p++, len++) {
                if (len > MP_OIDC_MAX_TOKEN_LEN)
                        return false;
                if (*p == '.')
                        dots++;
                else if (!is_b64url(*p))
                        return false;
        }
        return dots == 2;
}

/* Decode one base64url part of a token into JSON (duplicate keys refused: two "alg"s
 * or two "aud"s must not be read one way here and another way elsewhere). */
static json_t *decode_part(const char *p, size_t n) {
        _cleanup_free_ unsigned char *bin = NULL;
        size_t len = 0;
        json_error_t jerr;

        if (n == 0 || n > MP_OIDC_MAX_TOKEN_LEN)
                return NULL;
        bin = malloc(n);
        if (!bin)
                return NULL;
        if (sodium_base642bin(bin, n, p, n, NULL, &len, NULL,
                              sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
                return NULL;
        return json_loadb((const char *) bin, len, JSON_REJECT_DUPLICATES, &jerr);
}

/* Every refusal of a token is a 401 with a sentence; fmt holds one %s for detail. */
#define deny(err, fmt, detail) \
        mp_error_set(err, EACCES, 401, "unauthorized", fmt, (detail) ? (const char *) (detail) : "")

/* http:// is allowed only to this machine (a provider in tests or behind a local
 * proxy); anything else must be TLS. */
static bool url_allowed(const char *url) {
        if (!url || strlen(url) > MP_OIDC_MAX_URL_LEN)
                return false;
        if (!strncmp(url, "https://", 8))
                return true;
        static const char *const local[] = { "http://127.0.0.1:", "http://127.0.0.1/",
                                             "http://localhost:", "http://localhost/",
                                             "http://[::1]:", "http://[::1]/" };
        for (size_t i = 0; i < ELEMENTSOF(local); i++)
                if (!strncmp(url, local[i], strlen(local[i])))
                        return true;
        return false;
}

/* ---------------------------------------------------------------- HTTP */

static size_t on_body(char *p, size_t size, size_t n, void *userdata) {
        struct mp_buf *b = userdata;
        /* Past the cap the transfer is aborted: a provider (or whoever answers in its
         * place) cannot make us buffer without bound. */
        if (mp_buf_append(b, p, size * n) < 0)
                return 0;
        return size * n;
}

/* GET (form == NULL) or POST a form to url. *ret_body is NUL-terminated, malloc'ed. */
static int http_call(const char *url, const char *form, const char *user, const char *password,
                     long *ret_status, char **ret_body, size_t *ret_len, struct mp_error *err) {
        struct mp_buf b = { .cap = MP_OIDC_MAX_DOC_BYTES };
        struct curl_slist *headers = NULL;
        CURLcode rc;
        CURL *h;

        pthread_once(&global_once, global_init);
        if (!url_allowed(url))
                return mp_error_set(err, EINVAL, 503, "oidc_unavailable",
                                    "the OpenID provider URL %.200s is not https://", url ? url : "");
        h = curl_easy_init();
        if (!h)
                return -ENOMEM;
        headers = curl_slist_append(headers, "Accept: application/json");
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_TIMEOUT, (long) MP_OIDC_HTTP_TIMEOUT_S);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 5L);
        curl_easy_setopt(h, CURLOPT_MAXFILESIZE, (long) MP_OIDC_MAX_DOC_BYTES);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
        if (form)
                curl_easy_setopt(h, CURLOPT_POSTFIELDS, form);
        if (user) {
                curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
                curl_easy_setopt(h, CURLOPT_USERNAME, user);
                curl_easy_setopt(h, CURLOPT_PASSWORD, password ? password : "");
        }
        rc = curl_easy_perform(h);
        if (rc == CURLE_OK)
                curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, ret_status);
        curl_easy_cleanup(h);
        curl_slist_free_all(headers);
        if (rc != CURLE_OK) {
                mp_buf_free(&b);
                return mp_error_set(err, EIO, 503, "oidc_unavailable",
                                    "the OpenID provider could not be read at %.200s: %s", url,
                                    rc == CURLE_WRITE_ERROR || rc == CURLE_FILESIZE_EXCEEDED
                                            ? "the answer is too large"
                                            : curl_easy_strerror(rc));
        }
        *ret_len = b.len;
        *ret_body = b.data ? mp_buf_steal(&b) : strdup("");
        return *ret_body ? 0 : -ENOMEM;
}

static int http_json(const char *url, const char *form, const char *user, const char *password,
                     long *ret_status, json_t **ret, struct mp_error *err) {
        _cleanup_free_ char *body = NULL;
        json_error_t jerr;
        size_t len;
        int r = http_call(url, form, user, password, ret_status, &body, &len, err);
        if (r < 0)
                return r;
        *ret = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!*ret || !json_is_object(*ret)) {
                json_decref(*ret);
                *ret = NULL;
                return mp_error_set(err, EIO, 503, "oidc_unavailable",
                                    "the OpenID provider answered %.200s with something that is "
                                    "not a JSON object (HTTP %ld)", url, *ret_status);
        }
        return 0;
}

/* ---------------------------------------------------------------- keys */

struct mp_oidc_keyset *mp_oidc_keyset_free(struct mp_oidc_keyset *ks) {
        if (!ks)
                return NULL;
        for (size_t i = 0; i < ks->n; i++)
                r_jwk_free(ks->keys[i].jwk);
        free(ks);
        return NULL;
}

static const char *str_of(json_t *o, const char *k) {
        return json_string_value(json_object_get(o, k));
}

/* Add one JWK, rebuilt from its public parameters only: x5u, x5c, jku and anything
 * else that could make the library look elsewhere for key material are dropped. */
static void keyset_add(struct mp_oidc_keyset *ks, json_t *k) {
        const char *kty = str_of(k, "kty"), *kid = str_of(k, "kid"), *use = str_of(k, "use");
        const char *alg = str_of(k, "alg");
        _cleanup_json_ json_t *clean = NULL;
        unsigned int bits = 0;
        jwk_t *jwk = NULL;
        bool rsa;

        if (!kty || !kid || !*kid || strlen(kid) > MP_OIDC_MAX_KID_LEN || ks->n >= MP_OIDC_MAX_KEYS)
                return;
        if (use && strcmp(use, "sig"))
                return;
        if (!strcmp(kty, "RSA") && str_of(k, "n") && str_of(k, "e")) {
                rsa = true;
                if (alg && strcmp(alg, "RS256"))
                        return;
                clean = json_pack("{s:s,s:s,s:s,s:s}", "kty", "RSA", "kid", kid, "n", str_of(k, "n"),
                                  "e", str_of(k, "e"));
        } else if (!strcmp(kty, "EC") && str_of(k, "crv") && !strcmp(str_of(k, "crv"), "P-256") &&
                   str_of(k, "x") && str_of(k, "y")) {
                rsa = false;
                if (alg && strcmp(alg, "ES256"))
                        return;
                clean = json_pack("{s:s,s:s,s:s,s:s,s:s}", "kty", "EC", "kid", kid, "crv", "P-256",
                                  "x", str_of(k, "x"), "y", str_of(k, "y"));
        } else
                return;
        for (size_t i = 0; i < ks->n; i++)
                if (!strcmp(ks->keys[i].kid, kid))
                        return; /* the first key of a kid wins; a duplicate is ambiguous */
        if (!clean || r_jwk_init(&jwk) != RHN_OK)
                return;
        if (r_jwk_import_from_json_t(jwk, clean) != RHN_OK ||
            !(r_jwk_key_type(jwk, &bits, R_FLAG_IGNORE_REMOTE) & (rsa ? R_KEY_TYPE_RSA : R_KEY_TYPE_EC)) ||
            (r_jwk_key_type(jwk, &bits, R_FLAG_IGNORE_REMOTE) & R_KEY_TYPE_PRIVATE) ||
            (rsa && bits < 2048)) {
                r_jwk_free(jwk);
                return;
        }
        struct key *dst = &ks->keys[ks->n++];
        snprintf(dst->kid, sizeof(dst->kid), "%s", kid);
        snprintf(dst->alg, sizeof(dst->alg), "%s", alg ? alg : "");
        dst->rsa = rsa;
        dst->jwk = jwk;
}

int mp_oidc_keyset_parse(const char *json, size_t len, struct mp_oidc_keyset **ret,
                         struct mp_error *err) {
        _cleanup_json_ json_t *doc = NULL;
        struct mp_oidc_keyset *ks;
        json_error_t jerr;
        json_t *k;
        size_t i;

        pthread_once(&global_once, global_init);
        doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!doc || !json_is_array(json_object_get(doc, "keys")))
                return mp_error_set(err, EINVAL, 503, "oidc_unavailable",
                                    "the OpenID provider's JWKS is not a JSON object with \"keys\"");
        ks = calloc(1, sizeof(*ks));
        if (!ks)
                return -ENOMEM;
        json_array_foreach(json_object_get(doc, "keys"), i, k)
                if (json_is_object(k))
                        keyset_add(ks, k);
        *ret = ks;
        return 0;
}

static const struct key *keyset_find(const struct mp_oidc_keyset *ks, const char *kid) {
        for (size_t i = 0; ks && i < ks->n; i++)
                if (!strcmp(ks->keys[i].kid, kid))
                        return &ks->keys[i];
        return NULL;
}

/* ---------------------------------------------------------------- the policy */

int mp_oidc_check_header(json_t *h, const char **ret_alg, const char **ret_kid,
                         struct mp_error *err) {
        const char *alg = str_of(h, "alg"), *kid = str_of(h, "kid");

        if (!json_is_object(h))
                return deny(err, "the token's header is not a JSON object%s", NULL);
        /* An allow-list, not a deny-list: "none", HS256 (a public key used as an HMAC
         * secret) and anything new are all refused by not being listed. */
        if (!alg || (strcmp(alg, "RS256") && strcmp(alg, "ES256")))
                return deny(err, "the token's algorithm \"%.32s\" is not allowed (RS256 or ES256)",
                            alg ? alg : "(none)");
        /* JWE and compressed payloads are not access tokens we accept. */
        if (json_object_get(h, "enc") || json_object_get(h, "zip"))
                return deny(err, "encrypted or compressed tokens are not accepted%s", NULL);
        /* crit names extensions the verifier must understand; we understand none. */
        if (json_object_get(h, "crit"))
                return deny(err, "the token's header has \"crit\" extensions%s", NULL);
        if (!kid || !*kid || strlen(kid) > MP_OIDC_MAX_KID_LEN)
                return deny(err, "the token's header has no usable key id (kid)%s", NULL);
        /* jwk, jku, x5u, x5c are ignored on purpose: the key is the issuer's, by kid. */
        *ret_alg = alg;
        *ret_kid = kid;
        return 0;
}

/* A NumericDate (seconds; JSON integer or real). */
static int numeric_date(json_t *v, int64_t *ret) {
        if (json_is_integer(v)) {
                *ret = json_integer_value(v);
                return 0;
        }
        if (json_is_real(v) && json_real_value(v) > -1e15 && json_real_value(v) < 1e15) {
                *ret = (int64_t) json_real_value(v);
                return 0;
        }
        return -EINVAL;
}

static bool aud_has(json_t *aud, const char *want, size_t *ret_n) {
        json_t *v;
        size_t i;

        *ret_n = 0;
        if (json_is_string(aud)) {
                *ret_n = 1;
                return !strcmp(json_string_value(aud), want);
        }
        if (!json_is_array(aud) || json_array_size(aud) > MP_OIDC_MAX_AUD)
                return false;
        *ret_n = json_array_size(aud);
        json_array_foreach(aud, i, v)
                if (json_is_string(v) && !strcmp(json_string_value(v), want))
                        return true;
        return false;
}

int mp_oidc_check_claims(json_t *c, const struct mp_oidc_policy *p, struct mp_error *err) {
        const char *iss = str_of(c, "iss"), *sub = str_of(c, "sub");
        int64_t exp, nbf, iat, skew = p->skew_s;
        size_t naud;

        if (!json_is_object(c))
                return deny(err, "the token's claims are not a JSON object%s", NULL);
        if (!iss || !p->issuer || strcmp(iss, p->issuer))
                return deny(err, "the token was not issued by this server's OpenID provider "
                                 "(iss \"%.200s\")", iss ? iss : "(none)");
        if (!p->audience || !aud_has(json_object_get(c, "aud"), p->audience, &naud))
                return deny(err, "the token is not meant for this server (its aud does not "
                                 "hold \"%.200s\")", p->audience);
        if (numeric_date(json_object_get(c, "exp"), &exp) < 0)
                return deny(err, "the token has no expiry (exp)%s", NULL);
        if (p->now_s > exp + skew)
                return deny(err, "the token has expired%s", NULL);
        if (json_object_get(c, "nbf")) {
                if (numeric_date(json_object_get(c, "nbf"), &nbf) < 0)
                        return deny(err, "the token's nbf is not a date%s", NULL);
                if (nbf > p->now_s + skew)
                        return deny(err, "the token is not valid yet (nbf)%s", NULL);
        }
        if (json_object_get(c, "iat")) {
                if (numeric_date(json_object_get(c, "iat"), &iat) < 0)
                        return deny(err, "the token's iat is not a date%s", NULL);
                if (iat > p->now_s + skew)
                        return deny(err, "the token was issued in the future (iat)%s", NULL);
        }
        if (!sub || !*sub || strlen(sub) >= sizeof(((struct mp_oidc_identity *) 0)->sub))
                return deny(err, "the token has no usable subject (sub)%s", NULL);
        if (p->nonce) {
                const char *nonce = str_of(c, "nonce");
                if (!nonce || !mp_streq_ct(nonce, p->nonce))
                        return deny(err, "the ID token's nonce is not the one this login sent%s", NULL);
        }
        if (p->azp && naud > 1) {
                const char *azp = str_of(c, "azp");
                if (!azp || strcmp(azp, p->azp))
                        return deny(err, "the ID token was issued to another client (azp)%s", NULL);
        }
        return 0;
}

int mp_oidc_verify_jwt(const char *token, const struct mp_oidc_keyset *ks,
                       const struct mp_oidc_policy *p, json_t **ret_claims, struct mp_error *err) {
        _cleanup_json_ json_t *header = NULL, *claims = NULL;
        const char *alg, *kid, *d1, *d2;
        const struct key *key;
        jwt_t *jwt = NULL;
        int r;

        pthread_once(&global_once, global_init);
        if (!mp_oidc_looks_like_jwt(token))
                return deny(err, "the bearer token is not a signed JWT%s", NULL);
        d1 = strchr(token, '.');
        d2 = strchr(d1 + 1, '.');
        if (d2[1] == 0)
                return deny(err, "the token has no signature%s", NULL);
        header = decode_part(token, (size_t) (d1 - token));
        if (!header)
                return deny(err, "the token's header is not base64url JSON%s", NULL);
        if ((r = mp_oidc_check_header(header, &alg, &kid, err)) < 0)
                return r;
        key = keyset_find(ks, kid);
        if (!key)
                return mp_error_set(err, ENOKEY, 401, "unauthorized",
                                    "the token's key id \"%.128s\" is not one of the issuer's keys", kid);
        /* The algorithm must fit the key: an RSA key verifies RS256 only, an EC P-256
         * key ES256 only, and a key that names its alg only that one. */
        if ((key->rsa ? strcmp(alg, "RS256") : strcmp(alg, "ES256")) || (key->alg[0] && strcmp(key->alg, alg)))
                return deny(err, "the token's algorithm does not match the issuer's key \"%.128s\"", kid);
        if (r_jwt_init(&jwt) != RHN_OK)
                return -ENOMEM;
        /* R_PARSE_NONE: no key from the header is imported; R_FLAG_IGNORE_REMOTE: no
         * URL (jku, x5u) is ever fetched. */
        r = r_jwt_advanced_parse(jwt, token, R_PARSE_NONE, R_FLAG_IGNORE_REMOTE);
        if (r != RHN_OK || r_jwt_get_type(jwt) != R_JWT_TYPE_SIGN ||
            r_jwt_get_sign_alg(jwt) != r_str_to_jwa_alg(alg)) {
                r_jwt_free(jwt);
                return deny(err, "the token could not be parsed as a signed JWT%s", NULL);
        }
        r = r_jwt_verify_signature(jwt, key->jwk, R_FLAG_IGNORE_REMOTE);
        r_jwt_free(jwt);
        if (r != RHN_OK)
                return deny(err, "the token's signature does not verify with the issuer's key \"%.128s\"", kid);
        /* The claims are decoded from the very bytes the signature covered. */
        claims = decode_part(d1 + 1, (size_t) (d2 - d1 - 1));
        if (!claims)
                return deny(err, "the token's payload is not base64url JSON%s", NULL);
        if ((r = mp_oidc_check_claims(claims, p, err)) < 0)
                return r;
        *ret_claims = TAKE_PTR(claims);
        return 0;
}

/* ---------------------------------------------------------------- identity mapping */

/* Where a role of the provider lands: "admin", "member", "viewer" or NULL. The
 * operator's map (role_map: "idp=mecapy,...") is read first, then the defaults. */
static const char *map_role(const char *role_map, const char *role) {
        const char *p = role_map;
        size_t n = strlen(role);

        while (p && *p) {
                const char *e = strchr(p, ','), *eq = strchr(p, '=');
                size_t len = e ? (size_t) (e - p) : strlen(p);
                if (eq && eq < p + len && (size_t) (eq - p) == n && !strncmp(p, role, n)) {
                        size_t vl = (size_t) (p + len - eq - 1);
                        static const char *const roles[] = { "admin", "member", "viewer" };
                        for (size_t i = 0; i < ELEMENTSOF(roles); i++)
                                if (vl == strlen(roles[i]) && !strncmp(eq + 1, roles[i], vl))
                                        return roles[i];
                }
                p = e ? e + 1 : NULL;
        }
        if (!strcmp(role, "admin") || !strcmp(role, "mecapy-admin"))
                return "admin";
        if (!strcmp(role, "viewer") || !strcmp(role, "mecapy-viewer"))
                return "viewer";
        if (!strcmp(role, "member") || !strcmp(role, "mecapy-member"))
                return "member";
        return NULL;
}

static void collect_roles(json_t *arr, const char *role_map, bool *admin, bool *member, bool *viewer) {
        json_t *v;
        size_t i;
        if (!json_is_array(arr))
                return;
        json_array_foreach(arr, i, v) {
                const char *m = json_is_string(v) ? map_role(role_map, json_string_value(v)) : NULL;
                if (!m)
                        continue;
                *admin |= !strcmp(m, "admin");
                *member |= !strcmp(m, "member");
                *viewer |= !strcmp(m, "viewer");
        }
}

/* Copy a display string a provider gave: printable ASCII and UTF-8, no controls. */
static bool copy_clean(char *dst, size_t size, const char *src) {
        size_t n = src ? strlen(src) : 0;
        if (!src || n == 0 || n >= size || !mp_utf8_valid(src, n))
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) src[i] < 0x20 || src[i] == 0x7f)
                        return false;
        memcpy(dst, src, n + 1);
        return true;
}

static bool email_ok(const char *e) {
        const char *at = e ? strchr(e, '@') : NULL;
        return at && at != e && at[1] && !strchr(at + 1, '@') && !strpbrk(e, " \t\r\n\"<>") &&
               strlen(e) <= 254;
}

int mp_oidc_map_claims(json_t *c, const char *client_id, const char *audience,
                       const char *company_claim, const char *role_map,
                       struct mp_oidc_identity *ret, struct mp_error *err) {
        struct mp_oidc_identity id = { 0 };
        bool admin = false, member = false, viewer = false;
        const char *sub = str_of(c, "sub"), *email = str_of(c, "email");
        json_t *ra = json_object_get(c, "resource_access");

        if (!copy_clean(id.sub, sizeof(id.sub), sub))
                return deny(err, "the token has no usable subject (sub)%s", NULL);
        copy_clean(id.username, sizeof(id.username), str_of(c, "preferred_username"));
        if (email && email_ok(email)) {
                size_t i;
                for (i = 0; email[i] && i + 1 < sizeof(id.email); i++)
                        id.email[i] = (char) tolower((unsigned char) email[i]);
                id.email[i] = 0;
        } else {
                /* A machine (client credentials) has no email; users are unique by
                 * email, so it gets one under .invalid, a name that can never be
                 * delivered nor registered (RFC 2606). */
                const char *base = id.username[0] ? id.username : id.sub;
                size_t o = 0;
                for (size_t i = 0; base[i] && o + 1 < 200; i++) {
                        unsigned char ch = (unsigned char) base[i];
                        id.email[o++] = isalnum(ch) || ch == '.' || ch == '-' || ch == '_' ? (char) tolower(ch) : '_';
                }
                snprintf(id.email + o, sizeof(id.email) - o, "@oidc.invalid");
        }
        collect_roles(json_object_get(json_object_get(c, "realm_access"), "roles"), role_map, &admin,
                      &member, &viewer);
        if (client_id)
                collect_roles(json_object_get(json_object_get(ra, client_id), "roles"), role_map,
                              &admin, &member, &viewer);
        if (audience && (!client_id || strcmp(audience, client_id)))
                collect_roles(json_object_get(json_object_get(ra, audience), "roles"), role_map,
                              &admin, &member, &viewer);
        snprintf(id.role, sizeof(id.role), "%s",
                 admin ? "admin" : member ? "member" : viewer ? "viewer" : "member");

        json_t *comp = json_object_get(c, company_claim ? company_claim : "company");
        const char *cname = json_string_value(comp);
        if (!cname && json_is_array(comp))
                cname = json_string_value(json_array_get(comp, 0));
        if (!cname)
                cname = json_string_value(json_array_get(json_object_get(c, "groups"), 0));
        /* Keycloak writes groups as paths ("/acme"): the company is the name. */
        while (cname && *cname == '/')
                cname++;
        if (cname && *cname)
                copy_clean(id.company, sizeof(id.company), cname);
        *ret = id;
        return 0;
}

/* ---------------------------------------------------------------- the provider */

static char *dup_or_null(const char *s) {
        return s && *s ? strdup(s) : NULL;
}

struct mp_oidc *mp_oidc_free(struct mp_oidc *o) {
        if (!o)
                return NULL;
        free(o->issuer);
        free(o->audience);
        free(o->client_id);
        free(o->client_secret);
        free(o->company_claim);
        free(o->role_map);
        free(o->authorization_endpoint);
        free(o->token_endpoint);
        free(o->jwks_uri);
        mp_oidc_keyset_free(o->keys);
        for (struct pending *p = o->pending, *n; p; p = n) {
                n = p->next;
                sodium_memzero(p, sizeof(*p));
                free(p);
        }
        for (struct cli_code *p = o->codes, *n; p; p = n) {
                n = p->next;
                sodium_memzero(p, sizeof(*p));
                free(p);
        }
        pthread_mutex_destroy(&o->discovery_lock);
        pthread_rwlock_destroy(&o->keys_lock);
        pthread_mutex_destroy(&o->fetch_lock);
        pthread_mutex_destroy(&o->login_lock);
        free(o);
        return NULL;
}

/* Read the discovery document (once; retried at most every few seconds while the
 * provider does not answer). */
static int discover(struct mp_oidc *o, struct mp_error *err) {
        _cleanup_json_ json_t *doc = NULL;
        _cleanup_free_ char *url = NULL;
        long status = 0;
        int r = 0;

        pthread_mutex_lock(&o->discovery_lock);
        if (o->discovered)
                goto out;
        if (o->discovery_tried_ms && mp_mono_ms() - o->discovery_tried_ms < MP_OIDC_JWKS_MIN_REFETCH_S * 1000) {
                r = mp_error_set(err, EIO, 503, "oidc_unavailable",
                                 "the OpenID provider %s did not answer; try again in a few seconds",
                                 o->issuer);
                goto out;
        }
        o->discovery_tried_ms = mp_mono_ms();
        size_t n = strlen(o->issuer);
        if (asprintf(&url, "%s%s.well-known/openid-configuration", o->issuer,
                     n && o->issuer[n - 1] == '/' ? "" : "/") < 0) {
                url = NULL;
                r = -ENOMEM;
                goto out;
        }
        if ((r = http_json(url, NULL, NULL, NULL, &status, &doc, err)) < 0)
                goto out;
        const char *iss = str_of(doc, "issuer"), *az = str_of(doc, "authorization_endpoint");
        const char *tok = str_of(doc, "token_endpoint"), *jwks = str_of(doc, "jwks_uri");
        /* OpenID Connect Discovery 1.0, section 4.3: the issuer in the document must be
         * the one we asked for, or another issuer's keys would be trusted for ours. */
        if (status != 200 || !iss || strcmp(iss, o->issuer) || !jwks || !url_allowed(jwks) ||
            (az && !url_allowed(az)) || (tok && !url_allowed(tok))) {
                r = mp_error_set(err, EIO, 503, "oidc_unavailable",
                                 "the OpenID provider's discovery document at %s is not usable "
                                 "(HTTP %ld; its issuer must be exactly %s and its jwks_uri https)",
                                 url, status, o->issuer);
                goto out;
        }
        o->jwks_uri = strdup(jwks);
        o->authorization_endpoint = dup_or_null(az);
        o->token_endpoint = dup_or_null(tok);
        if (!o->jwks_uri) {
                r = -ENOMEM;
                goto out;
        }
        o->discovered = true;
        mp_info("OpenID provider %s: keys at %s", o->issuer, o->jwks_uri);
out:
        pthread_mutex_unlock(&o->discovery_lock);
        return r;
}

/* Fetch the JWKS and swap it in. Rate-limited: an attacker who sends tokens with random
 * kids makes us fetch at most once every MP_OIDC_JWKS_MIN_REFETCH_S. 1 when a new
 * keyset is in place, 0 when the limit said not now, -errno on failure. */
static int refresh_keys(struct mp_oidc *o, struct mp_error *err) {
        struct mp_oidc_keyset *ks = NULL, *old;
        _cleanup_free_ char *body = NULL;
        long status = 0;
        size_t len;
        int r;

        if ((r = discover(o, err)) < 0)
                return r;
        pthread_mutex_lock(&o->fetch_lock);
        if (o->fetch_tried_ms && mp_mono_ms() - o->fetch_tried_ms < MP_OIDC_JWKS_MIN_REFETCH_S * 1000) {
                pthread_mutex_unlock(&o->fetch_lock);
                return 0;
        }
        o->fetch_tried_ms = mp_mono_ms();
        r = http_call(o->jwks_uri, NULL, NULL, NULL, &status, &body, &len, err);
        if (r >= 0 && status != 200)
                r = mp_error_set(err, EIO, 503, "oidc_unavailable",
                                 "the OpenID provider's JWKS at %s answered HTTP %ld", o->jwks_uri, status);
        if (r >= 0)
                r = mp_oidc_keyset_parse(body, len, &ks, err);
        if (r < 0) {
                pthread_mutex_unlock(&o->fetch_lock);
                mp_warn("OpenID keys: %s", err ? err->message : "fetch failed");
                return r;
        }
        pthread_rwlock_wrlock(&o->keys_lock);
        old = o->keys;
        o->keys = ks;
        o->keys_fetched_ms = mp_mono_ms();
        pthread_rwlock_unlock(&o->keys_lock);
        pthread_mutex_unlock(&o->fetch_lock);
        mp_oidc_keyset_free(old);
        mp_info("OpenID provider %s: %zu signing keys", o->issuer, ks->n);
        return 1;
}

int mp_oidc_new(const struct mp_oidc_settings *s, struct mp_oidc **ret, struct mp_error *err) {
        _cleanup_error_ struct mp_error ignored = { 0 };
        struct mp_oidc *o;

        pthread_once(&global_once, global_init);
        if (!s->issuer || !s->audience)
                return mp_error_set(err, EINVAL, 400, "config", "OpenID needs an issuer and an audience");
        if (!url_allowed(s->issuer))
                return mp_error_set(err, EINVAL, 400, "config",
                                    "the OpenID issuer %s must be https:// (http:// only on loopback)",
                                    s->issuer);
        o = calloc(1, sizeof(*o));
        if (!o)
                return -ENOMEM;
        pthread_mutex_init(&o->discovery_lock, NULL);
        pthread_rwlock_init(&o->keys_lock, NULL);
        pthread_mutex_init(&o->fetch_lock, NULL);
        pthread_mutex_init(&o->login_lock, NULL);
        o->issuer = strdup(s->issuer);
        o->audience = strdup(s->audience);
        o->client_id = dup_or_null(s->client_id);
        o->client_secret = dup_or_null(s->client_secret);
        o->company_claim = strdup(s->company_claim ? s->company_claim : "company");
        o->role_map = dup_or_null(s->role_map);
        if (!o->issuer || !o->audience || !o->company_claim) {
                mp_oidc_free(o);
                return -ENOMEM;
        }
        /* Not fatal: the provider may start after us; discovery is retried on use. */
        if (refresh_keys(o, &ignored) < 0)
                mp_warn("OpenID provider %s not reachable yet: %s", o->issuer, ignored.message);
        *ret = o;
        return 0;
}

int mp_oidc_verify_access_token(struct mp_oidc *o, const char *token, json_t **ret_claims,
                                struct mp_error *err) {
        struct mp_oidc_policy p = { .issuer = o->issuer, .audience = o->audience,
                                    .now_s = mp_now_ms() / 1000, .skew_s = MP_OIDC_CLOCK_SKEW_S };
        bool stale;
        int r;

        pthread_rwlock_rdlock(&o->keys_lock);
        stale = !o->keys || mp_mono_ms() - o->keys_fetched_ms > (int64_t) MP_OIDC_JWKS_MAX_AGE_S * 1000;
        pthread_rwlock_unlock(&o->keys_lock);
        if (stale && (r = refresh_keys(o, err)) < 0) {
                pthread_rwlock_rdlock(&o->keys_lock);
                bool have = o->keys != NULL;
                pthread_rwlock_unlock(&o->keys_lock);
                if (!have)
                        return r;
                mp_error_clear(err); /* keep using the keys we have */
        }
        /* No keys at all yet (the provider has not answered since start, and the fetch
         * rate limit said not now): the token cannot be judged, which is the provider's
         * outage, not the client's fault — 503, so clients retry instead of logging out. */
        pthread_rwlock_rdlock(&o->keys_lock);
        bool have_keys = o->keys != NULL;
        pthread_rwlock_unlock(&o->keys_lock);
        if (!have_keys)
                return mp_error_set(err, EAGAIN, 503, "oidc_unavailable",
                                    "the OpenID provider %s has not given its signing keys yet; "
                                    "try again in a few seconds", o->issuer);
        for (int attempt = 0;; attempt++) {
                pthread_rwlock_rdlock(&o->keys_lock);
                r = mp_oidc_verify_jwt(token, o->keys, &p, ret_claims, err);
                pthread_rwlock_unlock(&o->keys_lock);
                if (r != -ENOKEY || attempt > 0)
                        break;
                /* An unknown kid: the provider may have rotated its keys. */
                mp_error_clear(err);
                int f = refresh_keys(o, err);
                if (f <= 0) {
                        mp_error_clear(err);
                        pthread_rwlock_rdlock(&o->keys_lock);
                        r = mp_oidc_verify_jwt(token, o->keys, &p, ret_claims, err);
                        pthread_rwlock_unlock(&o->keys_lock);
                        break;
                }
        }
        if (r == -ENOKEY)
                r = -EACCES;
        return r;
}

int mp_oidc_identity(struct mp_oidc *o, json_t *claims, struct mp_oidc_identity *ret,
                     struct mp_error *err) {
        return mp_oidc_map_claims(claims, o->client_id, o->audience, o->company_claim, o->role_map,
                                  ret, err);
}

/* ---------------------------------------------------------------- login flow */

bool mp_oidc_return_path_valid(const char *p) {
        if (!p || p[0] != '/' || p[1] == '/' || p[1] == '\\' || strlen(p) >= 512)
                return false;
        for (const char *q = p; *q; q++)
                if ((unsigned char) *q <= 0x20 || *q == 0x7f || *q == '\\')
                        return false;
        return true;
}

bool mp_oidc_loopback_uri_valid(const char *u) {
        const char *rest;
        long port;
        char digits[8];
        size_t n = 0;

        if (!u || strlen(u) >= 256)
                return false;
        if (!strncmp(u, "http://127.0.0.1:", 17))
                rest = u + 17;
        else if (!strncmp(u, "http://[::1]:", 13))
                rest = u + 13;
        else
                return false;
        while (isdigit((unsigned char) rest[n]) && n < sizeof(digits) - 1) {
                digits[n] = rest[n];
                n++;
        }
        digits[n] = 0;
        if (n == 0 || rest[n] != '/' || mp_parse_long(digits, 1, 65535, &port) < 0)
                return false;
        for (const char *q = rest + n; *q; q++)
                if ((unsigned char) *q <= 0x20 || *q == 0x7f || *q == '#' || *q == '\\')
                        return false;
        return true;
}

static void purge_expired_locked(struct mp_oidc *o, int64_t now) {
        for (struct pending **pp = &o->pending; *pp;) {
                if ((*pp)->expires_ms <= now) {
                        struct pending *dead = *pp;
                        *pp = dead->next;
                        sodium_memzero(dead, sizeof(*dead));
                        free(dead);
                        o->n_pending--;
                } else
                        pp = &(*pp)->next;
        }
        for (struct cli_code **pp = &o->codes; *pp;) {
                if ((*pp)->expires_ms <= now) {
                        struct cli_code *dead = *pp;
                        *pp = dead->next;
                        sodium_memzero(dead, sizeof(*dead));
                        free(dead);
                        o->n_codes--;
                } else
                        pp = &(*pp)->next;
        }
}

static void curl_freep(char **p) {
        if (*p)
                curl_free(*p);
}

static int append_param(struct mp_buf *b, const char *name, const char *value) {
        char *e = curl_easy_escape(NULL, value, 0);
        int r;
        if (!e)
                return -ENOMEM;
        if ((r = mp_buf_append(b, b->len ? "&" : "", b->len ? 1 : 0)) >= 0 &&
            (r = mp_buf_append(b, name, strlen(name))) >= 0 && (r = mp_buf_append(b, "=", 1)) >= 0)
                r = mp_buf_append(b, e, strlen(e));
        curl_free(e);
        return r;
}

int mp_oidc_login_begin(struct mp_oidc *o, const struct mp_oidc_login_start *in, char **ret_url,
                        char ret_binding[MP_OIDC_RANDOM_LEN + 1], struct mp_error *err) {
        struct mp_buf q = { .cap = 4 * MP_OIDC_MAX_URL_LEN };
        char challenge[MP_OIDC_RANDOM_LEN + 1];
        struct pending *p;
        int r;

        if (!o->client_id)
                return mp_error_set(err, ENOENT, 404, "not_found",
                                    "OpenID login is not configured on this server (--oidc-client-id)");
        if ((r = discover(o, err)) < 0)
                return r;
        if (!o->authorization_endpoint || !o->token_endpoint)
                return mp_error_set(err, EIO, 503, "oidc_unavailable",
                                    "the OpenID provider has no authorization or token endpoint");
        if (!in->redirect_uri || strlen(in->redirect_uri) > MP_OIDC_MAX_URL_LEN)
                return mp_error_set(err, EINVAL, 400, "bad_request", "the callback URL is too long");
        if (in->return_to && !mp_oidc_return_path_valid(in->return_to))
                return mp_error_set(err, EINVAL, 400, "bad_request",
                                    "redirect must be a path of this server, like /functions");
        if (in->cli_redirect) {
                if (!mp_oidc_loopback_uri_valid(in->cli_redirect))
                        return mp_error_set(err, EINVAL, 400, "bad_request",
                                            "cli_redirect must be http://127.0.0.1:PORT/path (a loopback address)");
                if (!in->cli_challenge || strlen(in->cli_challenge) != MP_OIDC_RANDOM_LEN ||
                    !in->cli_state || !*in->cli_state || strlen(in->cli_state) >= sizeof(p->cli_state))
                        return mp_error_set(err, EINVAL, 400, "bad_request",
                                            "cli_redirect needs cli_state and cli_challenge (base64url SHA-256, 43 characters)");
                for (const char *s = in->cli_state; *s; s++)
                        if (!is_b64url(*s))
                                return mp_error_set(err, EINVAL, 400, "bad_request",
                                                    "cli_state must be base64url characters");
                for (const char *s = in->cli_challenge; *s; s++)
                        if (!is_b64url(*s))
                                return mp_error_set(err, EINVAL, 400, "bad_request",
                                                    "cli_challenge must be base64url characters");
        }
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        mp_oidc_random(p->state);
        mp_oidc_random(p->binding);
        mp_oidc_random(p->nonce);
        mp_oidc_random(p->verifier);
        snprintf(p->redirect_uri, sizeof(p->redirect_uri), "%s", in->redirect_uri);
        snprintf(p->return_to, sizeof(p->return_to), "%s", in->return_to ? in->return_to : "");
        if (in->cli_redirect) {
                snprintf(p->cli_redirect, sizeof(p->cli_redirect), "%s", in->cli_redirect);
                snprintf(p->cli_state, sizeof(p->cli_state), "%s", in->cli_state);
                snprintf(p->cli_challenge, sizeof(p->cli_challenge), "%s", in->cli_challenge);
        }
        p->expires_ms = mp_now_ms() + (int64_t) MP_OIDC_LOGIN_TTL_S * 1000;
        mp_oidc_pkce_challenge(p->verifier, challenge);

        if ((r = append_param(&q, "response_type", "code")) < 0 ||
            (r = append_param(&q, "client_id", o->client_id)) < 0 ||
            (r = append_param(&q, "redirect_uri", p->redirect_uri)) < 0 ||
            (r = append_param(&q, "scope", "openid email profile")) < 0 ||
            (r = append_param(&q, "state", p->state)) < 0 ||
            (r = append_param(&q, "nonce", p->nonce)) < 0 ||
            (r = append_param(&q, "code_challenge", challenge)) < 0 ||
            (r = append_param(&q, "code_challenge_method", "S256")) < 0 ||
            asprintf(ret_url, "%s%c%s", o->authorization_endpoint,
                     strchr(o->authorization_endpoint, '?') ? '&' : '?', q.data) < 0) {
                mp_buf_free(&q);
                free(p);
                return r < 0 ? r : -ENOMEM;
        }
        mp_buf_free(&q);

        pthread_mutex_lock(&o->login_lock);
        purge_expired_locked(o, mp_now_ms());
        if (o->n_pending >= MP_OIDC_MAX_PENDING) {
                pthread_mutex_unlock(&o->login_lock);
                free(*ret_url);
                *ret_url = NULL;
                free(p);
                return mp_error_set(err, EBUSY, 503, "busy",
                                    "too many logins are in progress; try again in a few minutes");
        }
        p->next = o->pending;
        o->pending = p;
        o->n_pending++;
        memcpy(ret_binding, p->binding, MP_OIDC_RANDOM_LEN + 1);
        pthread_mutex_unlock(&o->login_lock);
        return 0;
}

/* Take (remove) the pending login of this state; NULL when none. */
static struct pending *pending_take(struct mp_oidc *o, const char *state) {
        struct pending *found = NULL;
        pthread_mutex_lock(&o->login_lock);
        purge_expired_locked(o, mp_now_ms());
        for (struct pending **pp = &o->pending; *pp; pp = &(*pp)->next)
                if (mp_streq_ct((*pp)->state, state)) {
                        found = *pp;
                        *pp = found->next;
                        o->n_pending--;
                        break;
                }
        pthread_mutex_unlock(&o->login_lock);
        return found;
}

static void pending_freep(struct pending **p) {
        if (*p) {
                sodium_memzero(*p, sizeof(**p));
                free(*p);
        }
}

int mp_oidc_login_finish(struct mp_oidc *o, const char *state, const char *binding,
                         const char *code, struct mp_oidc_login_result *ret,
                         struct mp_error *err) {
        _cleanup_(pending_freep) struct pending *p = NULL;
        _cleanup_json_ json_t *answer = NULL, *claims = NULL;
        struct mp_buf form = { .cap = 8 * MP_OIDC_MAX_URL_LEN };
        _cleanup_error_ struct mp_error ignored = { 0 };
        long status = 0;
        int r;

        if (!o->client_id)
                return mp_error_set(err, ENOENT, 404, "not_found", "OpenID login is not configured on this server");
        if (!state || strlen(state) != MP_OIDC_RANDOM_LEN || !code || !*code || strlen(code) > 4096)
                return mp_error_set(err, EACCES, 401, "unauthorized",
                                    "the login callback needs the code and state the provider sent");
        /* Single use: the pending login is gone from here on, whatever happens next. */
        p = pending_take(o, state);
        if (!p)
                return mp_error_set(err, EACCES, 401, "unauthorized",
                                    "this login is unknown, expired or already used; start again");
        /* The state alone could have been replayed by someone else's browser (login
         * CSRF): it must come with the cookie set on the browser that started it. */
        if (!binding || !mp_streq_ct(binding, p->binding))
                return mp_error_set(err, EACCES, 401, "unauthorized",
                                    "this login was started in another browser; start again");

        if ((r = append_param(&form, "grant_type", "authorization_code")) < 0 ||
            (r = append_param(&form, "code", code)) < 0 ||
            (r = append_param(&form, "redirect_uri", p->redirect_uri)) < 0 ||
            (r = append_param(&form, "code_verifier", p->verifier)) < 0 ||
            (!o->client_secret && (r = append_param(&form, "client_id", o->client_id)) < 0)) {
                mp_buf_free(&form);
                return r;
        }
        /* A confidential client authenticates with HTTP Basic, whose user and password
         * are form-encoded first (RFC 6749, section 2.3.1). */
        _cleanup_(curl_freep) char *user = o->client_secret ? curl_easy_escape(NULL, o->client_id, 0) : NULL;
        _cleanup_(curl_freep) char *pass = o->client_secret ? curl_easy_escape(NULL, o->client_secret, 0) : NULL;
        r = http_json(o->token_endpoint, form.data, user, pass, &status, &answer, err);
        mp_buf_free(&form);
        if (r < 0)
                return r;
        const char *id_token = str_of(answer, "id_token");
        if (status != 200 || !id_token)
                return mp_error_set(err, EACCES, 401, "unauthorized",
                                    "the OpenID provider refused the login code (HTTP %ld: %.200s)",
                                    status, str_of(answer, "error") ? str_of(answer, "error") : "no id_token");

        struct mp_oidc_policy pol = { .issuer = o->issuer, .audience = o->client_id, .nonce = p->nonce,
                                      .azp = o->client_id, .now_s = mp_now_ms() / 1000,
                                      .skew_s = MP_OIDC_CLOCK_SKEW_S };
        for (int attempt = 0;; attempt++) {
                pthread_rwlock_rdlock(&o->keys_lock);
                r = mp_oidc_verify_jwt(id_token, o->keys, &pol, &claims, err);
                pthread_rwlock_unlock(&o->keys_lock);
                if (r != -ENOKEY) /* an empty keyset answers -ENOKEY too */
                        break;
                if (attempt > 0 || refresh_keys(o, &ignored) <= 0)
                        break;
                mp_error_clear(err);
        }
        if (r < 0)
                return r == -ENOKEY ? -EACCES : r;

        memset(ret, 0, sizeof(*ret));
        ret->claims = TAKE_PTR(claims);
        snprintf(ret->return_to, sizeof(ret->return_to), "%s", p->return_to);
        snprintf(ret->cli_redirect, sizeof(ret->cli_redirect), "%s", p->cli_redirect);
        snprintf(ret->cli_state, sizeof(ret->cli_state), "%s", p->cli_state);
        snprintf(ret->cli_challenge, sizeof(ret->cli_challenge), "%s", p->cli_challenge);
        return 0;
}

int mp_oidc_cli_code_new(struct mp_oidc *o, const char *user_id, const char *challenge,
                         char ret_code[MP_OIDC_RANDOM_LEN + 1], struct mp_error *err) {
        struct cli_code *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        mp_oidc_random(c->code);
        snprintf(c->challenge, sizeof(c->challenge), "%s", challenge);
        snprintf(c->user_id, sizeof(c->user_id), "%s", user_id);
        c->expires_ms = mp_now_ms() + (int64_t) MP_OIDC_CLI_CODE_TTL_S * 1000;
        pthread_mutex_lock(&o->login_lock);
        purge_expired_locked(o, mp_now_ms());
        if (o->n_codes >= MP_OIDC_MAX_PENDING) {
                pthread_mutex_unlock(&o->login_lock);
                free(c);
                return mp_error_set(err, EBUSY, 503, "busy", "too many logins are in progress");
        }
        c->next = o->codes;
        o->codes = c;
        o->n_codes++;
        memcpy(ret_code, c->code, MP_OIDC_RANDOM_LEN + 1);
        pthread_mutex_unlock(&o->login_lock);
        return 0;
}

int mp_oidc_cli_code_take(struct mp_oidc *o, const char *code, const char *verifier,
                          char *ret_user_id, size_t size, struct mp_error *err) {
        struct cli_code *found = NULL;
        char challenge[MP_OIDC_RANDOM_LEN + 1];
        bool ok;

        if (!code || strlen(code) != MP_OIDC_RANDOM_LEN || !verifier || strlen(verifier) < 43 ||
            strlen(verifier) > 128)
                return mp_error_set(err, EACCES, 401, "unauthorized",
                                    "code and code_verifier (43 to 128 characters) are required");
        pthread_mutex_lock(&o->login_lock);
        purge_expired_locked(o, mp_now_ms());
        for (struct cli_code **pp = &o->codes; *pp; pp = &(*pp)->next)
                if (mp_streq_ct((*pp)->code, code)) {
                        found = *pp;
                        *pp = found->next; /* single use, even when the verifier is wrong */
                        o->n_codes--;
                        break;
                }
        pthread_mutex_unlock(&o->login_lock);
        if (!found)
                return mp_error_set(err, EACCES, 401, "unauthorized",
                                    "this login code is unknown, expired or already used");
        mp_oidc_pkce_challenge(verifier, challenge);
        ok = mp_streq_ct(challenge, found->challenge);
        if (ok)
                snprintf(ret_user_id, size, "%s", found->user_id);
        sodium_memzero(found, sizeof(*found));
        free(found);
        if (!ok)
                return mp_error_set(err, EACCES, 401, "unauthorized",
                                    "the code_verifier does not match the login's challenge");
        return 0;
}

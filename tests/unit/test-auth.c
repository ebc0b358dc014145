/* auth/: password hashing and tokens; the OpenID token policy (auth-oidc.c). */
#include <rhonabwy.h>
#include <sodium.h>
#include <time.h>

#include "auth/auth.h"
#include "check.h"

TEST(password_hash_verifies_only_the_password) {
        char hash[MP_AUTH_HASH_LEN];
        REQUIRE(mp_auth_hash_password("correct horse battery", hash) == 0);
        CHECK(strncmp(hash, "$argon2id$", 10) == 0);
        CHECK(mp_auth_verify_password(hash, "correct horse battery"));
        CHECK(!mp_auth_verify_password(hash, "correct horse batterY"));
        CHECK(!mp_auth_verify_password(hash, ""));
        CHECK(!mp_auth_verify_password("not a hash", "x"));
}

TEST(same_password_gets_different_salts) {
        char a[MP_AUTH_HASH_LEN], b[MP_AUTH_HASH_LEN];
        REQUIRE(mp_auth_hash_password("s3cret-pass", a) == 0);
        REQUIRE(mp_auth_hash_password("s3cret-pass", b) == 0);
        CHECK(strcmp(a, b) != 0);
}

TEST(tokens_are_random_and_hashed) {
        char t1[MP_AUTH_TOKEN_LEN + 1], h1[MP_AUTH_TOKEN_HASH_LEN + 1];
        char t2[MP_AUTH_TOKEN_LEN + 1], h2[MP_AUTH_TOKEN_HASH_LEN + 1], again[MP_AUTH_TOKEN_HASH_LEN + 1];
        mp_auth_new_token(t1, h1);
        mp_auth_new_token(t2, h2);
        CHECK(strncmp(t1, "mpy_", 4) == 0);
        CHECK_INT(strlen(t1), ==, 47);
        CHECK(strcmp(t1, t2) != 0);
        CHECK(strcmp(h1, h2) != 0);
        CHECK_INT(strlen(h1), ==, MP_AUTH_TOKEN_HASH_LEN);
        mp_auth_token_hash(t1, again);
        CHECK_STR(again, h1);
        CHECK(strstr(h1, t1 + 4) == NULL); /* the stored hash does not contain the token */
}

/* --- OpenID: header policy, claims, keys and signatures --- */

#define ISS "https://idp.example/realms/mecapy"
#define AUD "mecapy-api"
#define NOW 1700000000

static struct mp_oidc_policy policy(void) {
        return (struct mp_oidc_policy) { .issuer = ISS, .audience = AUD, .now_s = NOW,
                                         .skew_s = MP_OIDC_CLOCK_SKEW_S };
}

static int claims_ok(const char *json) {
        struct mp_oidc_policy p = policy();
        struct mp_error err = { 0 };
        json_t *c = json_loads(json, 0, NULL);
        int r = mp_oidc_check_claims(c, &p, &err);
        if (r < 0)
                CHECK_INT(err.status, ==, 401);
        json_decref(c);
        mp_error_clear(&err);
        return r;
}

TEST(oidc_header_allows_only_rs256_es256_with_kid) {
        static const char *const bad[] = {
                "{\"alg\":\"none\",\"kid\":\"k\"}", "{\"alg\":\"HS256\",\"kid\":\"k\"}",
                "{\"alg\":\"RS512\",\"kid\":\"k\"}", "{\"alg\":\"PS256\",\"kid\":\"k\"}",
                "{\"alg\":\"RS256\"}", "{\"alg\":\"RS256\",\"kid\":\"\"}",
                "{\"alg\":\"RS256\",\"kid\":\"k\",\"crit\":[\"b64\"]}",
                "{\"alg\":\"RS256\",\"kid\":\"k\",\"enc\":\"A128GCM\"}", "{\"kid\":\"k\"}", "[]",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                json_t *h = json_loads(bad[i], 0, NULL);
                const char *alg = NULL, *kid = NULL;
                struct mp_error err = { 0 };
                CHECK_INT(mp_oidc_check_header(h, &alg, &kid, &err), ==, -EACCES);
                json_decref(h);
                mp_error_clear(&err);
        }
        json_t *h = json_loads("{\"alg\":\"ES256\",\"kid\":\"k1\",\"jku\":\"http://evil\"}", 0, NULL);
        const char *alg = NULL, *kid = NULL;
        CHECK_INT(mp_oidc_check_header(h, &alg, &kid, NULL), ==, 0);
        CHECK_STR(alg, "ES256");
        CHECK_STR(kid, "k1");
        json_decref(h);
}

TEST(oidc_claims_iss_aud_exp_nbf) {
        CHECK_INT(claims_ok("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1700000100,\"sub\":\"u\"}"), ==, 0);
        /* Keycloak: an array aud */
        CHECK_INT(claims_ok("{\"iss\":\"" ISS "\",\"aud\":[\"account\",\"" AUD "\"],\"exp\":1700000100,\"sub\":\"u\"}"), ==, 0);
        CHECK_INT(claims_ok("{\"iss\":\"" ISS "/\",\"aud\":\"" AUD "\",\"exp\":1700000100,\"sub\":\"u\"}"), ==, -EACCES);
        CHECK_INT(claims_ok("{\"aud\":\"" AUD "\",\"exp\":1700000100,\"sub\":\"u\"}"), ==, -EACCES);
        CHECK_INT(claims_ok("{\"iss\":\"" ISS "\",\"aud\":\"other\",\"exp\":1700000100,\"sub\":\"u\"}"), ==, -EACCES);
        CHECK_INT(claims_ok("{\"iss\":\"" ISS "\",\"aud\":[\"other\"],\"exp\":1700000100,\"sub\":\"u\"}"), ==, -EACCES);
        CHECK_INT(claims_ok("{\"iss\":\"" ISS "\",\"aud\":{\"a\":\"" AUD "\"},\"exp\":1700000100,\"sub\":\"u\"}"), ==, -EACCES);
        CHECK_INT(claims_ok("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"u\"}"), ==, -EACCES);
        CHECK_INT(claims_ok("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":\"1700000100\",\"sub\":\"u\"}"), ==, -EACCES);
        /* exp within the skew passes, beyond it fails */
        CHECK_INT(claims_ok("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1699999950,\"sub\":\"u\"}"), ==, 0);
        CHECK_INT(claims_ok("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1699999900,\"sub\":\"u\"}"), ==, -EACCES);
        CHECK_INT(claims_ok("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1700000100,\"nbf\":1700000030,\"sub\":\"u\"}"), ==, 0);
        CHECK_INT(claims_ok("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1700009999,\"nbf\":1700000100,\"sub\":\"u\"}"), ==, -EACCES);
        CHECK_INT(claims_ok("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1700009999,\"iat\":1700003600,\"sub\":\"u\"}"), ==, -EACCES);
        CHECK_INT(claims_ok("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1700000100}"), ==, -EACCES);
}

TEST(oidc_id_token_nonce) {
        struct mp_oidc_policy p = policy();
        p.nonce = "n-123";
        json_t *c = json_loads("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1700000100,\"sub\":\"u\",\"nonce\":\"n-123\"}", 0, NULL);
        CHECK_INT(mp_oidc_check_claims(c, &p, NULL), ==, 0);
        p.nonce = "n-124";
        CHECK_INT(mp_oidc_check_claims(c, &p, NULL), ==, -EACCES);
        json_decref(c);
}

TEST(oidc_claims_map_to_role_and_company) {
        struct mp_oidc_identity id;
        json_t *c = json_loads("{\"sub\":\"kc-1\",\"email\":\"Ann@X.test\",\"preferred_username\":\"ann\","
                               "\"realm_access\":{\"roles\":[\"default-roles\",\"viewer\"]},"
                               "\"resource_access\":{\"web\":{\"roles\":[\"mecapy-admin\"]}},"
                               "\"groups\":[\"/acme\",\"/b\"]}", 0, NULL);
        REQUIRE(mp_oidc_map_claims(c, "other", AUD, "company", NULL, &id, NULL) == 0);
        CHECK_STR(id.sub, "kc-1");
        CHECK_STR(id.email, "ann@x.test");
        CHECK_STR(id.role, "viewer");
        CHECK_STR(id.company, "acme");
        REQUIRE(mp_oidc_map_claims(c, "web", AUD, "company", NULL, &id, NULL) == 0);
        CHECK_STR(id.role, "admin");
        REQUIRE(mp_oidc_map_claims(c, "other", AUD, "company", "viewer=member", &id, NULL) == 0);
        CHECK_STR(id.role, "member");
        json_decref(c);
        c = json_loads("{\"sub\":\"svc/1\",\"preferred_username\":\"service-account-X\",\"org\":\"Initech\"}", 0, NULL);
        REQUIRE(mp_oidc_map_claims(c, NULL, AUD, "org", NULL, &id, NULL) == 0);
        CHECK_STR(id.email, "service-account-x@oidc.invalid");
        CHECK_STR(id.role, "member");
        CHECK_STR(id.company, "Initech");
        json_decref(c);
        c = json_loads("{\"email\":\"a@b.c\"}", 0, NULL);
        CHECK_INT(mp_oidc_map_claims(c, NULL, AUD, NULL, NULL, &id, NULL), ==, -EACCES);
        json_decref(c);
}

TEST(oidc_redirect_targets) {
        CHECK(mp_oidc_return_path_valid("/functions"));
        CHECK(!mp_oidc_return_path_valid("//evil.example"));
        CHECK(!mp_oidc_return_path_valid("/\\evil.example"));
        CHECK(!mp_oidc_return_path_valid("https://evil.example"));
        CHECK(!mp_oidc_return_path_valid("/a b"));
        CHECK(mp_oidc_loopback_uri_valid("http://127.0.0.1:4321/callback"));
        CHECK(mp_oidc_loopback_uri_valid("http://[::1]:4321/callback"));
        CHECK(!mp_oidc_loopback_uri_valid("http://127.0.0.1.evil.example:80/cb"));
        CHECK(!mp_oidc_loopback_uri_valid("http://127.0.0.1@evil.example:80/cb"));
        CHECK(!mp_oidc_loopback_uri_valid("http://localhost:4321/cb"));
        CHECK(!mp_oidc_loopback_uri_valid("https://127.0.0.1:4321/cb"));
        CHECK(!mp_oidc_loopback_uri_valid("http://127.0.0.1:0/cb"));
        CHECK(!mp_oidc_loopback_uri_valid("http://127.0.0.1:4321"));
}

/* A signed token made here with rhonabwy (the provider's side). */
static char *sign(jwk_t *priv, const char *alg, const char *kid, const char *claims) {
        jwt_t *jwt = NULL;
        char *t;
        if (r_jwt_init(&jwt) != RHN_OK)
                return NULL;
        r_jwt_set_sign_alg(jwt, r_str_to_jwa_alg(alg));
        r_jwt_set_header_str_value(jwt, "kid", kid);
        r_jwt_set_full_claims_json_str(jwt, claims);
        t = r_jwt_serialize_signed(jwt, priv, 0);
        r_jwt_free(jwt);
        return t;
}

static char *jwks_of(jwk_t *pub) {
        json_t *k = r_jwk_export_to_json_t(pub);
        json_t *doc = json_pack("{s:[o]}", "keys", k);
        char *s = json_dumps(doc, JSON_COMPACT);
        json_decref(doc);
        return s;
}

TEST(oidc_signature_key_by_kid_and_algorithm_policy) {
        jwk_t *priv = NULL, *pub = NULL, *priv2 = NULL, *pub2 = NULL, *epriv = NULL, *epub = NULL;
        struct mp_oidc_keyset *ks = NULL, *eks = NULL;
        struct mp_oidc_policy p = policy();
        char claims[256];
        json_t *out = NULL;

        p.now_s = time(NULL);
        snprintf(claims, sizeof(claims), "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld,\"sub\":\"u1\"}",
                 (long long) p.now_s + 300);
        REQUIRE(r_jwk_init(&priv) == RHN_OK && r_jwk_init(&pub) == RHN_OK);
        REQUIRE(r_jwk_generate_key_pair(priv, pub, R_KEY_TYPE_RSA, 2048, "k1") == RHN_OK);
        REQUIRE(r_jwk_init(&priv2) == RHN_OK && r_jwk_init(&pub2) == RHN_OK);
        REQUIRE(r_jwk_generate_key_pair(priv2, pub2, R_KEY_TYPE_RSA, 2048, "k1") == RHN_OK);
        REQUIRE(r_jwk_init(&epriv) == RHN_OK && r_jwk_init(&epub) == RHN_OK);
        REQUIRE(r_jwk_generate_key_pair(epriv, epub, R_KEY_TYPE_EC, 256, "e1") == RHN_OK);
        char *doc = jwks_of(pub), *edoc = jwks_of(epub);
        REQUIRE(mp_oidc_keyset_parse(doc, strlen(doc), &ks, NULL) == 0);
        REQUIRE(mp_oidc_keyset_parse(edoc, strlen(edoc), &eks, NULL) == 0);

        char *good = sign(priv, "RS256", "k1", claims);
        REQUIRE(good != NULL);
        CHECK_INT(mp_oidc_verify_jwt(good, ks, &p, &out, NULL), ==, 0);
        CHECK_STR(json_string_value(json_object_get(out, "sub")), "u1");
        json_decref(out);
        out = NULL;

        /* Same kid, another key: refused. */
        char *wrong = sign(priv2, "RS256", "k1", claims);
        CHECK_INT(mp_oidc_verify_jwt(wrong, ks, &p, &out, NULL), ==, -EACCES);
        /* An unknown kid asks for a refetch. */
        char *unknown = sign(priv, "RS256", "k9", claims);
        CHECK_INT(mp_oidc_verify_jwt(unknown, ks, &p, &out, NULL), ==, -ENOKEY);
        /* ES256 verifies with the EC key only; RS256 with it is refused. */
        char *es = sign(epriv, "ES256", "e1", claims);
        CHECK_INT(mp_oidc_verify_jwt(es, eks, &p, &out, NULL), ==, 0);
        json_decref(out);
        out = NULL;
        char *rs_on_ec = sign(priv, "RS256", "e1", claims);
        CHECK_INT(mp_oidc_verify_jwt(rs_on_ec, eks, &p, &out, NULL), ==, -EACCES);
        /* The payload edited after signing. */
        char *edited = strdup(good);
        char *d1 = strchr(edited, '.');
        d1[3] = d1[3] == 'A' ? 'B' : 'A';
        CHECK_INT(mp_oidc_verify_jwt(edited, ks, &p, &out, NULL), ==, -EACCES);
        /* Truncated, garbage. */
        good[strlen(good) - 5] = 0;
        CHECK_INT(mp_oidc_verify_jwt(good, ks, &p, &out, NULL), ==, -EACCES);
        CHECK_INT(mp_oidc_verify_jwt("a.b.c", ks, &p, &out, NULL), ==, -EACCES);
        CHECK_INT(mp_oidc_verify_jwt("", ks, &p, &out, NULL), ==, -EACCES);
        CHECK(out == NULL);
        /* A private key in a JWKS is not taken; a JWKS without keys holds none. */
        CHECK(!mp_oidc_looks_like_jwt("mpy_abc"));
        CHECK(mp_oidc_looks_like_jwt("a.b.c"));

        r_free(wrong), r_free(unknown), r_free(es), r_free(rs_on_ec), r_free(good);
        free(edited), free(doc), free(edoc);
        mp_oidc_keyset_free(ks);
        mp_oidc_keyset_free(eks);
        r_jwk_free(priv), r_jwk_free(pub), r_jwk_free(priv2), r_jwk_free(pub2), r_jwk_free(epriv), r_jwk_free(epub);
}

TEST(oidc_pkce_s256_vector) {
        /* RFC 7636, appendix B. */
        char ch[MP_OIDC_RANDOM_LEN + 1];
        mp_oidc_pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", ch);
        CHECK_STR(ch, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
}

static const struct check_case cases[] = {
        CASE(password_hash_verifies_only_the_password),
        CASE(same_password_gets_different_salts),
        CASE(tokens_are_random_and_hashed),
        CASE(oidc_header_allows_only_rs256_es256_with_kid),
        CASE(oidc_claims_iss_aud_exp_nbf),
        CASE(oidc_id_token_nonce),
        CASE(oidc_claims_map_to_role_and_company),
        CASE(oidc_redirect_targets),
        CASE(oidc_signature_key_by_kid_and_algorithm_policy),
        CASE(oidc_pkce_s256_vector),
};
CHECK_MAIN(cases)

/* auth/: the local identity provider's cryptography. Passwords are argon2id (libsodium,
 * "interactive" cost: ~135 ms and 64 MiB per hash here, so at most MP_AUTH_MAX_HASHING
 * run at once); tokens are 32 random bytes shown once and stored as a BLAKE2b hash. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define MP_AUTH_MAX_HASHING 2
#define MP_AUTH_HASH_LEN 128  /* room for a sodium pwhash string */
#define MP_AUTH_TOKEN_LEN 64  /* "mpy_" + base64url of 32 bytes, without the NUL */
#define MP_AUTH_TOKEN_HASH_LEN 64 /* hex of a 32-byte BLAKE2b, without the NUL */

/* 0 or -errno (-ENOMEM when the hash could not get its memory). */
int mp_auth_init(void);
int mp_auth_hash_password(const char *password, char ret_hash[MP_AUTH_HASH_LEN]);
/* True when password matches hash. Runs in the same bounded pool as hashing. */
bool mp_auth_verify_password(const char *hash, const char *password);
/* A new random token (NUL-terminated) and the hex hash to store for it. */
void mp_auth_new_token(char ret_token[MP_AUTH_TOKEN_LEN + 1],
                       char ret_hash[MP_AUTH_TOKEN_HASH_LEN + 1]);
/* The hash under which a presented token is looked up; the token is not trusted. */
void mp_auth_token_hash(const char *token, char ret_hash[MP_AUTH_TOKEN_HASH_LEN + 1]);

/* --- OpenID Connect (auth-oidc.c) ---
 *
 * MecaPy as an OpenID resource server and relying party. An access token is a JWS
 * checked by this policy, and only by it:
 *  - the algorithm is RS256 or ES256 (never "none", never HS*), and the header's kid
 *    names a key of the issuer's JWKS, which was fetched from the jwks_uri of the
 *    issuer's discovery document; a key carried by the token (jwk, jku, x5u, x5c) is
 *    never used;
 *  - iss equals the issuer exactly; aud is the audience or an array holding it; exp is
 *    required; nbf and iat, when present, are not in the future; all with
 *    MP_OIDC_CLOCK_SKEW_S of tolerance.
 * The JWKS is cached by kid; an unknown kid re-fetches it at most once every
 * MP_OIDC_JWKS_MIN_REFETCH_S. Every document read from the network has a size cap. */

#include <stdint.h>
#include <jansson.h>

#include "base/error.h"

#define MP_OIDC_MAX_TOKEN_LEN       16384          /* a JWT presented to us */
#define MP_OIDC_MAX_DOC_BYTES       (256u * 1024)  /* discovery, JWKS, token responses */
#define MP_OIDC_HTTP_TIMEOUT_S      10
#define MP_OIDC_CLOCK_SKEW_S        60
#define MP_OIDC_JWKS_MIN_REFETCH_S  5
#define MP_OIDC_JWKS_MAX_AGE_S      3600
#define MP_OIDC_MAX_KEYS            32
#define MP_OIDC_MAX_KID_LEN         128
#define MP_OIDC_MAX_AUD             64             /* entries of an aud array */
#define MP_OIDC_LOGIN_TTL_S         600            /* a login started and not finished */
#define MP_OIDC_MAX_PENDING         4096           /* logins in progress at once */
#define MP_OIDC_CLI_CODE_TTL_S      120
#define MP_OIDC_RANDOM_LEN          43             /* base64url of 32 random bytes */
#define MP_OIDC_MAX_URL_LEN         2048

struct mp_oidc;

struct mp_oidc_settings {
        const char *issuer, *audience;
        const char *client_id, *client_secret; /* NULL: no login flow / a public client */
        const char *company_claim;             /* NULL: "company" */
        const char *role_map;                  /* "idp-role=admin|member|viewer,...", NULL */
};

/* What one token must satisfy besides its signature. */
struct mp_oidc_policy {
        const char *issuer;
        const char *audience;
        const char *nonce;  /* ID tokens: the nonce sent; NULL for access tokens */
        const char *azp;    /* ID tokens: when aud has several entries, azp must be this */
        int64_t now_s;
        int skew_s;
};

/* The keys of a JWKS, sanitized (public parameters only) and indexed by kid. */
struct mp_oidc_keyset;

/* Who an OpenID provider says the bearer is, mapped to MecaPy's terms. */
struct mp_oidc_identity {
        char sub[256];
        char email[255];      /* case-folded; "<name>@oidc.invalid" when none is given */
        char username[256];   /* preferred_username, "" when none */
        char role[16];        /* admin | member | viewer */
        char company[129];    /* "" when none */
};

/* Create the verifier; the discovery document is read now when the issuer answers and
 * again lazily otherwise. Copies the settings. 0 or -errno with err. */
int mp_oidc_new(const struct mp_oidc_settings *s, struct mp_oidc **ret, struct mp_error *err);
struct mp_oidc *mp_oidc_free(struct mp_oidc *o);

/* True when token has the shape of a compact JWS (three base64url parts). */
bool mp_oidc_looks_like_jwt(const char *token);

/* The pure checks, exposed for the unit tests. 0 or -EACCES with a 401 in err.
 * check_header: the protected header of a token; *ret_alg, *ret_kid borrow from it. */
int mp_oidc_check_header(json_t *header, const char **ret_alg, const char **ret_kid,
                         struct mp_error *err);
int mp_oidc_check_claims(json_t *claims, const struct mp_oidc_policy *p, struct mp_error *err);
/* claims -> identity (sub, email, role from realm_access.roles and
 * resource_access.<client_id or audience>.roles through role_map, company from
 * company_claim or the first of groups). 0 or -EACCES (no usable sub). */
int mp_oidc_map_claims(json_t *claims, const char *client_id, const char *audience,
                       const char *company_claim, const char *role_map,
                       struct mp_oidc_identity *ret, struct mp_error *err);

/* A JWKS document -> a keyset (keys that are not RSA >= 2048 bits or EC P-256
 * signature keys with a kid are left out). 0 or -errno. */
int mp_oidc_keyset_parse(const char *json, size_t len, struct mp_oidc_keyset **ret,
                         struct mp_error *err);
struct mp_oidc_keyset *mp_oidc_keyset_free(struct mp_oidc_keyset *ks);
/* Verify token with the keyset under policy: *ret_claims (new reference) on success;
 * -ENOKEY when its kid is not in the keyset; -EACCES (401 in err) otherwise. */
int mp_oidc_verify_jwt(const char *token, const struct mp_oidc_keyset *ks,
                       const struct mp_oidc_policy *p, json_t **ret_claims, struct mp_error *err);

/* A bearer access token for our audience: *ret_claims (new reference), or -EACCES with
 * a 401, or -EIO with a 503 when the provider cannot be reached. */
int mp_oidc_verify_access_token(struct mp_oidc *o, const char *token, json_t **ret_claims,
                                struct mp_error *err);
int mp_oidc_identity(struct mp_oidc *o, json_t *claims, struct mp_oidc_identity *ret,
                     struct mp_error *err);

/* --- the login flow (authorization code + PKCE S256, with state and nonce) --- */

struct mp_oidc_login_start {
        const char *redirect_uri;  /* our callback, as registered at the provider */
        const char *return_to;     /* a local path to go to afterwards, or NULL */
        const char *cli_redirect;  /* http://127.0.0.1:PORT/... of a CLI, or NULL */
        const char *cli_state;     /* echoed to the CLI */
        const char *cli_challenge; /* base64url SHA-256 of the CLI's verifier */
};

struct mp_oidc_login_result {
        json_t *claims;            /* of the verified ID token; owned by the caller */
        char return_to[512];
        char cli_redirect[256];
        char cli_state[128];
        char cli_challenge[64];
};

/* True for a path of this server ("/x", not "//x" nor "/\x"): what ?redirect= may be. */
bool mp_oidc_return_path_valid(const char *path);
/* True for http://127.0.0.1:PORT/path or http://[::1]:PORT/path (RFC 8252 loopback). */
bool mp_oidc_loopback_uri_valid(const char *uri);

/* Start a login: *ret_url (malloc'ed) is the provider's authorization URL; ret_binding is
 * the value of the cookie that binds the login to this browser. 0 or -errno with err. */
int mp_oidc_login_begin(struct mp_oidc *o, const struct mp_oidc_login_start *in, char **ret_url,
                        char ret_binding[MP_OIDC_RANDOM_LEN + 1], struct mp_error *err);
/* Finish it: the state must name a pending login (which is consumed: single use) of
 * this binding; the code is exchanged and the ID token verified. 0 or -errno with err. */
int mp_oidc_login_finish(struct mp_oidc *o, const char *state, const char *binding,
                         const char *code, struct mp_oidc_login_result *ret,
                         struct mp_error *err);
/* One-time codes handed to a CLI's loopback listener: bound to user_id and to the CLI's
 * PKCE challenge; take checks the verifier and consumes the code. */
int mp_oidc_cli_code_new(struct mp_oidc *o, const char *user_id, const char *challenge,
                         char ret_code[MP_OIDC_RANDOM_LEN + 1], struct mp_error *err);
int mp_oidc_cli_code_take(struct mp_oidc *o, const char *code, const char *verifier,
                          char *ret_user_id, size_t size, struct mp_error *err);
/* base64url(SHA-256(verifier)), as PKCE's S256. */
void mp_oidc_pkce_challenge(const char *verifier, char ret[MP_OIDC_RANDOM_LEN + 1]);
void mp_oidc_random(char ret[MP_OIDC_RANDOM_LEN + 1]);

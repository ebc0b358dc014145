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

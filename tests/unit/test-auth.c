/* auth/: password hashing and tokens. */
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

static const struct check_case cases[] = {
        CASE(password_hash_verifies_only_the_password),
        CASE(same_password_gets_different_salts),
        CASE(tokens_are_random_and_hashed),
};
CHECK_MAIN(cases)

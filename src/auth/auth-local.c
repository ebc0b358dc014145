#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <string.h>
#include <sodium.h>

#include "auth/auth.h"

/* argon2id takes 64 MiB a hash: bound the concurrency so a burst of logins cannot take
 * the server's memory. */
static sem_t hashing;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int init_result;

static void init_once(void) {
        if (sodium_init() < 0) {
                init_result = -EIO;
                return;
        }
        sem_init(&hashing, 0, MP_AUTH_MAX_HASHING);
}

int mp_auth_init(void) {
        pthread_once(&once, init_once);
        return init_result;
}

static void hashing_enter(void) {
        mp_auth_init();
        while (sem_wait(&hashing) < 0 && errno == EINTR)
                ;
}

int mp_auth_hash_password(const char *password, char ret_hash[MP_AUTH_HASH_LEN]) {
        int r;
        _Static_assert(MP_AUTH_HASH_LEN >= crypto_pwhash_STRBYTES, "hash buffer");

        hashing_enter();
        r = crypto_pwhash_str_alg(ret_hash, password, strlen(password),
                                  crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                  crypto_pwhash_MEMLIMIT_INTERACTIVE, crypto_pwhash_ALG_ARGON2ID13);
        sem_post(&hashing);
        return r < 0 ? -ENOMEM : 0;
}

bool mp_auth_verify_password(const char *hash, const char *password) {
        int r;
        hashing_enter();
        r = crypto_pwhash_str_verify(hash, password, strlen(password));
        sem_post(&hashing);
        return r == 0;
}

void mp_auth_token_hash(const char *token, char ret_hash[MP_AUTH_TOKEN_HASH_LEN + 1]) {
        unsigned char h[32];
        mp_auth_init();
        crypto_generichash(h, sizeof(h), (const unsigned char *) token, strlen(token), NULL, 0);
        sodium_bin2hex(ret_hash, MP_AUTH_TOKEN_HASH_LEN + 1, h, sizeof(h));
}

void mp_auth_new_token(char ret_token[MP_AUTH_TOKEN_LEN + 1],
                       char ret_hash[MP_AUTH_TOKEN_HASH_LEN + 1]) {
        unsigned char raw[32];
        mp_auth_init();
        randombytes_buf(raw, sizeof(raw));
        memcpy(ret_token, "mpy_", 4);
        sodium_bin2base64(ret_token + 4, MP_AUTH_TOKEN_LEN + 1 - 4, raw, sizeof(raw),
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        mp_auth_token_hash(ret_token, ret_hash);
}

/* core/: the rules and state machines. Functions, versions, tasks and accounts live
 * here; api/ and worker/ only translate to and from these calls. Every task moves
 * queued -> running -> completed | failed | timed_out | cancelled exactly once.
 *
 * Every fallible call returns 0 or -errno and fills err with the HTTP status, a code and
 * a sentence (field paths in err->errors for validation). Objects handed back as
 * json_t ** are new references, already shaped as the API shows them. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "base/config.h"
#include "base/error.h"
#include "base/util.h"

struct mp_store;
struct mp_blobs;
struct mp_queue;
struct mp_executor;
struct mp_oidc;

/* Who is calling: filled by mp_core_authenticate from a bearer token. */
struct mp_principal {
        char user_id[MP_ID_LEN + 1];
        char token_id[MP_ID_LEN + 1];
        char company_id[MP_ID_LEN + 1]; /* "" when none */
        char role[16];
        char email[256];
        bool session; /* a login session (vs an API token) */
};

struct mp_core {
        const struct mp_config *config;
        struct mp_store *store;
        struct mp_blobs *blobs;
        struct mp_queue *queue;
        struct mp_executor *executor;
        json_t *policy; /* {"forbidden_imports": [...], "forbidden_calls": [...]} */
        struct mp_oidc *oidc; /* the OpenID provider's verifier; NULL when oidc is off */
        /* Called after a task reached an end state, in whatever process ended it: the
         * queue delivers the notice (a direct call with local:, pub/sub with redis://).
         * task_id NULL: notices may have been lost; look again. Set it with
         * mp_core_listen_task_end. */
        void (*on_task_end)(void *userdata, const char *task_id);
        void *on_task_end_userdata;
};

/* Open the store, blobs and queue named by the config. The executor is attached by the
 * caller (it must be forked before threads start). */
int mp_core_open(const struct mp_config *config, struct mp_core **ret, struct mp_error *err);
void mp_core_close(struct mp_core *core);

/* --- accounts --- */
int mp_core_create_user(struct mp_core *core, const char *email, const char *password,
                        const char *company, const char *role, json_t **ret_user,
                        struct mp_error *err);
/* body {"email","password"} -> {"token","expires_at","user"}; 401 on any mismatch. */
int mp_core_login(struct mp_core *core, json_t *body, json_t **ret, struct mp_error *err);
int mp_core_logout(struct mp_core *core, const struct mp_principal *p, struct mp_error *err);
/* A bearer token -> the principal; 401 when unknown, expired or revoked. */
int mp_core_authenticate(struct mp_core *core, const char *token, struct mp_principal *ret,
                         struct mp_error *err);
int mp_core_me(struct mp_core *core, const struct mp_principal *p, json_t **ret,
               struct mp_error *err);
int mp_core_token_create(struct mp_core *core, const struct mp_principal *p, json_t *body,
                         json_t **ret, struct mp_error *err);
int mp_core_token_list(struct mp_core *core, const struct mp_principal *p, json_t **ret,
                       struct mp_error *err);
int mp_core_token_revoke(struct mp_core *core, const struct mp_principal *p, const char *id,
                         struct mp_error *err);

/* --- OpenID Connect (docs/identity.md) --- */
/* Start a browser or CLI login: *ret_url is where to send the browser (malloc'ed),
 * ret_binding the value of the login cookie. redirect_uri is our callback URL. */
int mp_core_oidc_begin(struct mp_core *core, const char *redirect_uri, const char *return_to,
                       const char *cli_redirect, const char *cli_state, const char *cli_challenge,
                       char **ret_url, char *ret_binding, size_t binding_size,
                       struct mp_error *err);
/* The provider's callback. For a browser: *ret = {"token","expires_at","user"} (a new
 * session) and *ret_location = the return path or NULL. For a CLI: *ret = NULL and
 * *ret_location = its loopback URL with a one-time code. */
int mp_core_oidc_callback(struct mp_core *core, const char *state, const char *binding,
                          const char *code, json_t **ret, char **ret_location,
                          struct mp_error *err);
/* body {"code","code_verifier"} of a CLI -> {"token","expires_at","user"}. */
int mp_core_oidc_cli_exchange(struct mp_core *core, json_t *body, json_t **ret,
                              struct mp_error *err);

/* --- functions --- */
int mp_core_function_create(struct mp_core *core, const struct mp_principal *p, json_t *body,
                            json_t **ret, struct mp_error *err);
/* version 0 = latest. */
int mp_core_function_get(struct mp_core *core, const struct mp_principal *p, const char *id,
                         int version, json_t **ret, struct mp_error *err);
int mp_core_function_list(struct mp_core *core, const struct mp_principal *p,
                          const char *name, const char *cursor, int limit, json_t **ret,
                          struct mp_error *err);
int mp_core_function_update(struct mp_core *core, const struct mp_principal *p, const char *id,
                            json_t *body, json_t **ret, struct mp_error *err);
int mp_core_function_versions(struct mp_core *core, const struct mp_principal *p,
                              const char *id, json_t **ret, struct mp_error *err);
int mp_core_function_delete(struct mp_core *core, const struct mp_principal *p, const char *id,
                            struct mp_error *err);

/* --- tasks --- */
/* body {"inputs": {...}}; version 0 = latest; idempotency_key may be NULL. ret: the task. */
int mp_core_execute(struct mp_core *core, const struct mp_principal *p, const char *function_id,
                    int version, json_t *body, const char *idempotency_key, json_t **ret,
                    struct mp_error *err);
/* The task as the API shows it; *ret_ended tells whether it reached an end state. */
int mp_core_task_get(struct mp_core *core, const struct mp_principal *p, const char *id,
                     json_t **ret, bool *ret_ended, struct mp_error *err);
int mp_core_task_list(struct mp_core *core, const struct mp_principal *p,
                      const char *function_id, const char *status, const char *cursor,
                      int limit, json_t **ret, struct mp_error *err);
/* The task's logs (whole text, malloc'ed). */
int mp_core_task_logs(struct mp_core *core, const struct mp_principal *p, const char *id,
                      char **ret, size_t *ret_len, struct mp_error *err);
int mp_core_task_artifact(struct mp_core *core, const struct mp_principal *p, const char *id,
                          const char *name, char **ret, size_t *ret_len, struct mp_error *err);
int mp_core_task_cancel(struct mp_core *core, const struct mp_principal *p, const char *id,
                        json_t **ret, struct mp_error *err);
bool mp_core_status_ended(const char *status);

/* --- the worker's side --- */
/* Claim one job (waiting up to wait_ms), run it and record its end. 1 when a job was
 * handled, 0 when none came, -errno on a store or queue failure. worker_id is
 * "<process id>/<n>" (see queue.h). */
int mp_core_work_one(struct mp_core *core, const char *worker_id, int64_t wait_ms,
                     struct mp_error *err);
/* The same; *busy (may be NULL) counts the jobs being handled (claimed, not yet done),
 * for a worker's heartbeat. */
int mp_core_work_one_counted(struct mp_core *core, const char *worker_id, int64_t wait_ms,
                             atomic_int *busy, struct mp_error *err);
/* At start-up: jobs claimed by a previous process go back to the queue. */
int mp_core_recover(struct mp_core *core, struct mp_error *err);
/* Have cb called whenever a task ends, in any process sharing the queue (cb NULL:
 * stop, and wait until no call is in flight). */
int mp_core_listen_task_end(struct mp_core *core, void (*cb)(void *userdata, const char *task_id),
                            void *userdata, struct mp_error *err);
/* The executor's figures for a worker's heartbeat: {"warm_instances": n,
 * "cache_hit_rate": x|null} (nulls without an executor). A new object. */
json_t *mp_core_exec_status(struct mp_core *core);
/* The live workers (see GET /api/v1/workers): {"items": [...]}, times as RFC 3339. Any
 * authenticated principal may read it: it holds no tenant data. */
int mp_core_workers(struct mp_core *core, const struct mp_principal *p, json_t **ret,
                    struct mp_error *err);

/* Validate inputs against a version's input schema; field errors go to err->errors with
 * paths under "inputs". 0 or -EINVAL (422). Exposed for tests. */
int mp_core_schema_validate(json_t *schema, json_t *inputs, struct mp_error *err);

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
        unsigned scopes; /* MP_SCOPE_* bits: what this token may do (sessions: all) */
        char client[48]; /* the client's address, set by api/ for the audit log */
        /* When the credential stops working (epoch ms, 0: never): the token's own
         * expiry; for a provider's access token, the bound its holder's identity is
         * trusted for (MP_OIDC_TOKEN_MAX_AGE_S). A token it mints lives no longer. */
        int64_t expires_at_ms;
        bool external; /* an OpenID user: role and company are the provider's word */
};

/* Scopes of API tokens (docs/api.md#scopes). A route needs at most one. */
enum {
        MP_SCOPE_FUNCTIONS_READ = 1u << 0,
        MP_SCOPE_FUNCTIONS_WRITE = 1u << 1,
        MP_SCOPE_TASKS_READ = 1u << 2,
        MP_SCOPE_TASKS_WRITE = 1u << 3,
        MP_SCOPE_EXECUTE = 1u << 4,
        MP_SCOPE_TOKENS = 1u << 5,
        MP_SCOPE_ALL = (1u << 6) - 1,
};
/* "functions:read" ... for one bit; NULL for anything else. */
const char *mp_core_scope_name(unsigned bit);

/* A histogram of fixed buckets kept in relaxed atomics: an observation is a few atomic
 * adds and no lock; /metrics reads it (a scrape may see an observation half made, which
 * the next scrape corrects). counts[] are per bucket (not cumulative); the last one is
 * +Inf. */
#define MP_HIST_MAX_BOUNDS 16
struct mp_hist {
        const double *bounds; /* upper bounds in seconds, ascending (+Inf implied) */
        int nbounds;          /* at most MP_HIST_MAX_BOUNDS */
        atomic_uint_fast64_t counts[MP_HIST_MAX_BOUNDS + 1];
        atomic_uint_fast64_t sum_us; /* the sum of the observations in microseconds */
};
void mp_hist_init(struct mp_hist *h, const double *bounds, int nbounds);
void mp_hist_observe(struct mp_hist *h, double seconds);

/* How tasks end; the order of mp_core_stats.tasks_ended. */
enum mp_task_end { MP_END_COMPLETED, MP_END_FAILED, MP_END_TIMED_OUT, MP_END_CANCELLED, MP_END_N };
extern const char *const mp_task_end_names[MP_END_N];

/* How workflow runs end, and the quotas (usage.c), in the order of their counters. */
enum { MP_RUN_END_N = 3, MP_QUOTA_N = 4 };
extern const char *const mp_run_end_names[MP_RUN_END_N];
extern const char *const mp_quota_names[MP_QUOTA_N];

/* This process's counts, for GET /metrics: relaxed atomics, no lock on the call path. */
struct mp_core_stats {
        int64_t start_ms;                     /* when the core opened (epoch ms) */
        atomic_uint_fast64_t tasks_created;   /* new tasks stored here: calls, nodes, points, cases */
        atomic_uint_fast64_t tasks_ended[MP_END_N]; /* ends recorded by this process */
        struct mp_hist execution;             /* execution_ms of runs this process's workers ended */
        /* What wave 2 added (docs/operations.md#metrics): ends this process recorded. */
        atomic_uint_fast64_t runs_ended[MP_RUN_END_N];      /* workflow runs, by final state */
        atomic_uint_fast64_t nodes_ended[MP_END_N];         /* tasks of workflow runs, by state */
        atomic_uint_fast64_t points_ended[MP_END_N];        /* tasks of study points, by state */
        atomic_uint_fast64_t cache_hits;                    /* calls answered by the result cache */
        atomic_uint_fast64_t quota_refused[MP_QUOTA_N];     /* calls refused, by quota */
        atomic_uint_fast64_t quota_held;                    /* starts held back by a quota */
        atomic_uint_fast64_t env_builds[2];                 /* environment builds: ready, failed */
        atomic_uint_fast64_t env_build_ms;                  /* their time, summed */
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
        struct mp_core_stats stats;
        struct mp_envs *envs; /* environments' build queue (core/environments.c) */
        char *scratch;        /* <data dir>/tmp: temporary files of answers (PDF, .xlsx, export) */
};

/* Open the store, blobs and queue named by the config. The executor is attached by the
 * caller (it must be forked before threads start). */
int mp_core_open(const struct mp_config *config, struct mp_core **ret, struct mp_error *err);
void mp_core_close(struct mp_core *core);

/* Ready to serve: the store, the queue and the object store each answer a cheap request
 * (a store read, the queue's and the blobs' ping). *ret = {"status":"ok","checks":{...}};
 * -EIO with a 503 naming the backend that is down (and why) otherwise. May take the
 * backends' connect timeouts: not for the HTTP threads (api/ runs it as slow work). */
int mp_core_ready(struct mp_core *core, json_t **ret, struct mp_error *err);

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
/* mp_core_login, with the client's address for the audit log (may be NULL). */
int mp_core_login_from(struct mp_core *core, json_t *body, const char *client, json_t **ret,
                       struct mp_error *err);
/* body {"email","password"} -> the new user (a member of no company), 201. 404 when
 * sign-up is off (--allow-signup) or local accounts are. */
int mp_core_signup(struct mp_core *core, json_t *body, const char *client, json_t **ret,
                   struct mp_error *err);
/* body {"current_password","new_password"}: sets the password and revokes every other
 * session of the user (API tokens stay). -EACCES (422, current_password) when the
 * current password is wrong, so the caller can count it as a failed login. */
int mp_core_password_change(struct mp_core *core, const struct mp_principal *p, json_t *body,
                            struct mp_error *err);

/* --- the audit log (core/audit.c, docs/identity.md#audit) --- */
/* Record an event. Never fails the caller: a write that fails is logged. detail (may
 * be NULL) is taken over (stolen). Every other argument may be NULL. */
void mp_core_audit(struct mp_core *core, const char *kind, const char *actor_id,
                   const char *company_id, const char *client, const char *target_id,
                   json_t *detail);
/* The same, with actor, company and client from the principal. */
void mp_core_audit_by(struct mp_core *core, const struct mp_principal *p, const char *kind,
                      const char *target_id, json_t *detail);
/* The events of the caller's company, newest first: {"items", "next_cursor"}. 403 unless
 * the caller is an admin. since: RFC 3339; every filter may be NULL. */
int mp_core_audit_list(struct mp_core *core, const struct mp_principal *p, const char *kind,
                       const char *actor, const char *since, const char *cursor, int limit,
                       json_t **ret, struct mp_error *err);

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
/* body {"inputs": {...}}; version 0 = latest; idempotency_key may be NULL. ret: the task,
 * shaped as mp_core_task_get's. A retry with the same key, function and inputs gets the
 * first task back whatever the latest version is now (409 if it names another version). */
int mp_core_execute(struct mp_core *core, const struct mp_principal *p, const char *function_id,
                    int version, json_t *body, const char *idempotency_key, json_t **ret,
                    struct mp_error *err);
/* The same; cache_refresh: a version declared "cache" runs again instead of answering
 * from the result cache (?cache=refresh), and its result serves later calls. */
int mp_core_execute_cache(struct mp_core *core, const struct mp_principal *p, const char *function_id,
                          int version, json_t *body, const char *idempotency_key, bool cache_refresh,
                          json_t **ret, struct mp_error *err);
/* The task as the API shows it, but for its result: "result_json" holds the stored JSON
 * text of the result (a string; null when none), to be sent as it is (api/api-tasks.c),
 * never parsed. *ret_ended tells whether it reached an end state. An object it needs
 * (spilled result, error, logs) that cannot be read: 503 "unavailable". */
int mp_core_task_get(struct mp_core *core, const struct mp_principal *p, const char *id,
                     json_t **ret, bool *ret_ended, struct mp_error *err);
/* since, until (may be NULL): RFC 3339 UTC times, since <= queued_at < until; one that
 * is not: 400 naming the parameter. */
int mp_core_task_list(struct mp_core *core, const struct mp_principal *p,
                      const char *function_id, const char *status, const char *since,
                      const char *until, const char *cursor, int limit, json_t **ret,
                      struct mp_error *err);
/* The task's logs (whole text, malloc'ed); while it runs, what it printed so far. */
int mp_core_task_logs(struct mp_core *core, const struct mp_principal *p, const char *id,
                      char **ret, size_t *ret_len, struct mp_error *err);
/* While a task runs (events): the logs it printed after its first `after` characters
 * (malloc'ed text in *ret, its length in bytes in *ret_len) and how many characters
 * they hold in all (*ret_chars). The caller has checked that p may see the task. */
int mp_core_task_live_logs(struct mp_core *core, const char *id, int64_t after, char **ret, size_t *ret_len,
                           int64_t *ret_chars, struct mp_error *err);
int mp_core_task_artifact(struct mp_core *core, const struct mp_principal *p, const char *id,
                          const char *name, char **ret, size_t *ret_len, struct mp_error *err);
int mp_core_task_cancel(struct mp_core *core, const struct mp_principal *p, const char *id,
                        json_t **ret, struct mp_error *err);
bool mp_core_status_ended(const char *status);

/* --- workflows (workflows.c, docs/workflows.md) ---
 * A workflow is referred to by id, or by the caller's own name. Visibility follows the
 * function rules (owner, company, public); change and delete are the owner's. Runs are
 * their owner's (and their company admins'); other callers get 404. */
/* body: a definition (core/flow.h) and "visibility"?; 201 {"id","name","version",
 * "input_schema","params","nodes","outputs",...}; 422 listing every problem. */
int mp_core_workflow_create(struct mp_core *core, const struct mp_principal *p, json_t *body, json_t **ret,
                            struct mp_error *err);
/* PUT: a new immutable version of the caller's workflow (same name). */
int mp_core_workflow_update(struct mp_core *core, const struct mp_principal *p, const char *ref, json_t *body,
                            json_t **ret, struct mp_error *err);
/* version 0: the latest. */
int mp_core_workflow_get(struct mp_core *core, const struct mp_principal *p, const char *ref, int version,
                         json_t **ret, struct mp_error *err);
int mp_core_workflow_list(struct mp_core *core, const struct mp_principal *p, const char *name,
                          const char *cursor, int limit, json_t **ret, struct mp_error *err);
int mp_core_workflow_delete(struct mp_core *core, const struct mp_principal *p, const char *ref,
                            struct mp_error *err);
/* body {"inputs"}: a run, and its first nodes' tasks, in one call. *ret: the run;
 * *ret_ended (may be NULL): whether it has already ended. idempotency_key may be NULL.
 * A version declared "cache" is answered by a copy of the caller's own earlier
 * completed run with the same version and canonical inputs (cached_from), unless
 * cache_refresh. */
int mp_core_workflow_execute(struct mp_core *core, const struct mp_principal *p, const char *ref, int version,
                             json_t *body, const char *idempotency_key, bool cache_refresh, json_t **ret,
                             bool *ret_ended, struct mp_error *err);
/* The run as the API shows it; *ret_ended (may be NULL): ended, and no call of it runs. */
int mp_core_workflow_run_get(struct mp_core *core, const struct mp_principal *p, const char *id, json_t **ret,
                             bool *ret_ended, struct mp_error *err);
int mp_core_workflow_run_list(struct mp_core *core, const struct mp_principal *p, const char *workflow_id,
                              const char *status, const char *cursor, int limit, json_t **ret,
                              struct mp_error *err);
/* Re-run failed, skipped and cancelled nodes (and map elements) only; 409 while the run
 * runs or when nothing failed. */
int mp_core_workflow_run_retry(struct mp_core *core, const struct mp_principal *p, const char *id, json_t **ret,
                               struct mp_error *err);
/* Pending nodes cancelled, running tasks cancelled; 409 when the run had ended. */
int mp_core_workflow_run_cancel(struct mp_core *core, const struct mp_principal *p, const char *id, json_t **ret,
                                struct mp_error *err);

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
/* Units (core/units.c): a parameter with "x-unit" given as a quantity ("2.5 ft",
 * {"value": 2.5, "unit": "ft"}) is replaced in `inputs` by its value in the declared
 * unit; a wrong dimension or an unknown unit is a 422 at "inputs.<name>". Called by
 * mp_core_schema_validate (which thus converts in place). 0 or -EINVAL. */
int mp_core_schema_convert(json_t *schema, json_t *inputs, struct mp_error *err);
/* The analysis of a version's code: each unit it declared ("units": [{"field", "unit",
 * "line"}]) is checked against the registry (an unknown one adds a "code" error with its
 * line), and input_schema's and output_schema's properties with "x-unit" gain
 * "x-dimension". Returns the number of errors added. */
int mp_core_schema_units(json_t *analysis, struct mp_error *err);
/* The checks a result declared (its "checks": [{"name", "value", "limit", "unit"}]),
 * each with "utilisation" (value / limit; null when the limit is 0) and "passed"
 * (utilisation <= 1); at most MP_MAX_CHECKS. A new array (empty when none), or NULL
 * when out of memory. */
json_t *mp_core_result_checks(json_t *result);
/* A study point's governing check (the highest utilisation among a task's "checks"),
 * added to its outputs as "check.governing" (name), "check.utilisation" and
 * "check.passed". Nothing when there are no checks. */
void mp_core_governing_check(json_t *outputs, json_t *checks);
/* The units of a study's columns ({column: unit}): input names from the version's
 * input_schema, "result.x" output paths from its output_schema. NULL when out of memory. */
json_t *mp_core_study_units(json_t *ver, json_t *inputs, json_t *outputs);
/* The units of a study's columns, for its function's version (an empty object for a
 * workflow's study, or one without a target); inputs: the input column names.
 * *ret_checks (optional): whether the version's output schema declares "checks" (the
 * governing check's columns). */
int mp_core_study_column_units(struct mp_core *core, const struct mp_principal *p, json_t *study, json_t *inputs,
                               json_t **ret, bool *ret_checks, struct mp_error *err);

/* --- parameter studies (studies.c, docs/studies.md) --- */
/* body {"name"?, "notes"?, "target": {"function": name or id, "version"?}, "fixed"?,
 * "design", "outputs"?: ["result.x", ...], "concurrency"?}; csv (may be NULL): a CSV
 * text that is the design (a list), the body then has no "design". Every point is
 * validated before anything is stored (422 naming the first bad point and field; a
 * design over MP_MAX_STUDY_POINTS is refused from its count). The study starts at once.
 * cache_refresh: points of a caching version are computed again. ret: the study. */
int mp_core_study_create(struct mp_core *core, const struct mp_principal *p, json_t *body, const char *csv,
                         size_t csv_len, bool cache_refresh, json_t **ret, struct mp_error *err);
/* The study: {"id","name","notes","status" (running|completed|cancelled),"target",
 * "fixed","design","outputs","concurrency","progress": {"total","queued","running",
 * "completed","failed","cancelled"},"created_at","finished_at"}. 404 unless owned. */
int mp_core_study_get(struct mp_core *core, const struct mp_principal *p, const char *id, json_t **ret,
                      struct mp_error *err);
/* Has the study (as mp_core_study_get shows it) stopped running? */
bool mp_core_study_ended(json_t *study);
int mp_core_study_list(struct mp_core *core, const struct mp_principal *p, const char *status, const char *name,
                       const char *cursor, int limit, json_t **ret, struct mp_error *err);
/* A page of results: {"items": [{"index","inputs","outputs","status","task_id","error"}],
 * "next_cursor"}. */
int mp_core_study_results(struct mp_core *core, const struct mp_principal *p, const char *id, const char *cursor,
                          int limit, json_t **ret, struct mp_error *err);
/* Raw point rows (the store's) with index > after, for the CSV export; *ret_study (may
 * be NULL) the study row. */
int mp_core_study_points(struct mp_core *core, const struct mp_principal *p, const char *id, int64_t after,
                         int limit, json_t **ret_study, json_t **ret_rows, struct mp_error *err);
/* body {"points": [...]}: points whose canonical inputs the study holds are left out;
 * ret: the study with "added". */
int mp_core_study_extend(struct mp_core *core, const struct mp_principal *p, const char *id, json_t *body,
                         json_t **ret, struct mp_error *err);
/* Failed points run again (409 for a cancelled study); ret: the study with "retried". */
int mp_core_study_retry(struct mp_core *core, const struct mp_principal *p, const char *id, json_t **ret,
                        struct mp_error *err);
int mp_core_study_cancel(struct mp_core *core, const struct mp_principal *p, const char *id, json_t **ret,
                         struct mp_error *err);
/* body {"task_ids"?, "run_ids"?}: the caller's own tasks and runs grouped in the study
 * (404 naming any other id; nothing added then); ret: the study with "added". */
int mp_core_study_add_members(struct mp_core *core, const struct mp_principal *p, const char *id, json_t *body,
                              json_t **ret, struct mp_error *err);

/* --- companies, roles and the catalogue (docs/identity.md, company.c) --- */
/* What a role may do beyond reading and calling what it can see: each check answers 0,
 * or -EPERM with a 403 (the caller's own company's rule: nothing is hidden by it). */
enum mp_action {
        MP_ACTION_FUNCTION_WRITE, /* create, change or delete a function: member, admin */
        MP_ACTION_TOKEN_CREATE,   /* create an API token: member, admin */
        MP_ACTION_COMPANY_MANAGE, /* the company's members and their tokens: admin */
};
int mp_core_authorize(const struct mp_principal *p, enum mp_action action, struct mp_error *err);
/* The caller's company: {"id","name","created_at","members"}; 404 without one. */
int mp_core_company_get(struct mp_core *core, const struct mp_principal *p, json_t **ret,
                        struct mp_error *err);
/* Company admins only (403 for other roles, 404 without a company). Members are shown
 * as {"id","email","role","created_at","identity": "local"|"oidc"}; an id that is not a
 * member of the caller's company answers 404. */
int mp_core_company_members(struct mp_core *core, const struct mp_principal *p, json_t **ret,
                            struct mp_error *err);
/* body {"email","password"?,"role"?}: a local account in the caller's company. Without a
 * password one is generated and shown once as "password". 409 on an existing email. */
int mp_core_company_member_create(struct mp_core *core, const struct mp_principal *p,
                                  json_t *body, json_t **ret, struct mp_error *err);
/* body {"role"}; 409 when the company would be left without an admin, or when the member
 * is managed by the OpenID provider. ret: the member. */
int mp_core_company_member_update(struct mp_core *core, const struct mp_principal *p,
                                  const char *id, json_t *body, json_t **ret,
                                  struct mp_error *err);
/* Removes the member from the company and disables the account (see docs/identity.md). */
int mp_core_company_member_remove(struct mp_core *core, const struct mp_principal *p,
                                  const char *id, struct mp_error *err);
int mp_core_company_member_tokens(struct mp_core *core, const struct mp_principal *p,
                                  const char *id, json_t **ret, struct mp_error *err);
int mp_core_company_member_token_revoke(struct mp_core *core, const struct mp_principal *p,
                                        const char *id, const char *token_id,
                                        struct mp_error *err);
/* The member's tasks made in the company, newest first: {"items","next_cursor"}. */
int mp_core_company_member_tasks(struct mp_core *core, const struct mp_principal *p,
                                 const char *id, const char *cursor, int limit, json_t **ret,
                                 struct mp_error *err);
/* `mecapy admin set-role`: the operator's change of a user's role, with the same rule
 * that a company keeps an admin (409). 404 for an unknown email. ret_user may be NULL. */
int mp_core_admin_set_role(struct mp_core *core, const char *email, const char *role,
                           json_t **ret_user, struct mp_error *err);
/* Public functions matching q (name, description, tags or author email), tag (exact)
 * and author (an email, or the part before its '@'); NULLs match all. 400 on a bad
 * parameter. {"items": [{"id","name","description","tags","author","version",
 * "input_schema","updated_at"}], "next_cursor"}. */
int mp_core_catalogue(struct mp_core *core, const struct mp_principal *p, const char *q,
                      const char *tag, const char *author, const char *cursor, int limit,
                      json_t **ret, struct mp_error *err);

/* --- deletion, retention and export (retention.c, export.c; docs/api.md) --- */
/* Delete an ended task with its result, error, logs and artifacts (their objects too,
 * unless a cache hit's copy still shows them). Its owner may, and an admin of the
 * company it was made in. 404 as for reading it; 409 while it is queued or running
 * (cancel first) and for a task of a workflow run or a study (named). */
int mp_core_task_delete(struct mp_core *core, const struct mp_principal *p, const char *id,
                        struct mp_error *err);
/* The caller's company's retention: {"task_days": n|null}; 404 without a company. */
int mp_core_retention_get(struct mp_core *core, const struct mp_principal *p, json_t **ret,
                          struct mp_error *err);
/* body {"task_days": 1..MP_MAX_RETENTION_DAYS or null}: company admins (403 for other
 * roles); 422 naming the field; ret as mp_core_retention_get's. */
int mp_core_retention_set(struct mp_core *core, const struct mp_principal *p, json_t *body, json_t **ret,
                          struct mp_error *err);
/* One pass of the collector: the tasks of every company past its retention are deleted
 * as mp_core_task_delete does (a run's or study's too, once it stopped running), then
 * the objects under tasks/ that no row shows. *ret {"tasks_deleted", "orphans_deleted"}. */
int mp_core_gc(struct mp_core *core, json_t **ret, struct mp_error *err);
/* The collector's thread: a pass every interval_s seconds (0: none, *ret NULL). Stop
 * (may be NULL) waits for a pass in progress; returns NULL. */
struct mp_gc;
int mp_core_gc_start(struct mp_core *core, int interval_s, struct mp_gc **ret, struct mp_error *err);
struct mp_gc *mp_core_gc_stop(struct mp_gc *g);
/* The caller's data as a zip archive (docs/api.md#export): *ret_fd a read-only file
 * (already unlinked, at offset 0) of *ret_size bytes, the caller's to close. 413 past
 * MP_MAX_EXPORT_BYTES of content; 503 when an object cannot be read. */
int mp_core_export(struct mp_core *core, const struct mp_principal *p, int *ret_fd, uint64_t *ret_size,
                   struct mp_error *err);
/* --- usage, quotas and the operators' figures (usage.c, docs/api.md#usage) --- */
/* The caller's usage (a company admin: the company's) of the UTC days from..to
 * ("YYYY-MM-DD", inclusive; defaults: the last 30 days to today), grouped by "day",
 * "function" or "user": {"items": [{"day"|"function_id"|"user_id", ("email",) "calls",
 * "failed", "wall_ms", "cpu_ms", "max_peak_memory_kb"}], "from", "to", "group_by",
 * "scope": "user"|"company"}. 422 naming the parameter on a bad date, range or group. */
int mp_core_usage(struct mp_core *core, const struct mp_principal *p, const char *from, const char *to,
                  const char *group_by, json_t **ret, struct mp_error *err);
/* mp_core_usage's answer as CSV (a header line, then one line per item; CRLF). */
int mp_core_usage_csv(json_t *usage, char **ret, size_t *ret_len);
/* The company's quota (user_id NULL) or a member's: {"concurrent_calls","calls_per_day",
 * "cpu_seconds_per_month","storage_mb" (null: unlimited),"user_id","used": {...}} and,
 * for an admin reading the company's, "members": the members' own quotas. A member may
 * read the company's and their own; 404 without a company. */
int mp_core_quotas_get(struct mp_core *core, const struct mp_principal *p, const char *user_id, json_t **ret,
                       struct mp_error *err);
/* Company admins: body {the four limits (absent or null: unlimited), "user_id"?}: sets
 * (replaces) the company's quota or a member's. ret: as mp_core_quotas_get. */
int mp_core_quotas_put(struct mp_core *core, const struct mp_principal *p, json_t *body, json_t **ret,
                       struct mp_error *err);
/* `mecapy admin quota`: the quota of company (a name) or of its member user_email (one
 * of them may be NULL: a user alone is taken in their company, or in none); changes (may
 * be NULL or empty: only read) sets the limits it names (null: unlimited), the others
 * are kept. */
int mp_core_admin_quota(struct mp_core *core, const char *company, const char *user_email, json_t *changes,
                        json_t **ret, struct mp_error *err);
/* `mecapy admin create-user --operator`. */
int mp_core_user_set_operator(struct mp_core *core, const char *user_id, bool on, struct mp_error *err);
/* The operators' figures of the last `days` UTC days (today included): see
 * docs/operations.md#the-operators-figures. p NULL: the operator's command (no check);
 * else 403 unless p is an operator. */
int mp_core_admin_stats(struct mp_core *core, const struct mp_principal *p, int days, json_t **ret,
                        struct mp_error *err);
/* --- review of function versions and the company's settings (review.c,
 * docs/identity.md#review) --- */
/* action "submit" (the author, or a member of the company with write rights), "approve"
 * or "reject" (another member of the same company, admin or member: 403 for the author
 * and for a viewer). body {"comment"} (required to reject; may be NULL). 404 for a
 * function of another company, 409 for a step the review's status does not allow. ret:
 * the version as GET /api/v1/functions/{id}?version= shows it. Audited. */
int mp_core_version_review(struct mp_core *core, const struct mp_principal *p, const char *function_id,
                           const char *version, const char *action, json_t *body, json_t **ret,
                           struct mp_error *err);
/* {"require_review_to_publish": bool}: any member reads, company admins change (403);
 * 404 without a company. */
int mp_core_company_settings_get(struct mp_core *core, const struct mp_principal *p, json_t **ret,
                                 struct mp_error *err);
int mp_core_company_settings_set(struct mp_core *core, const struct mp_principal *p, json_t *body,
                                 json_t **ret, struct mp_error *err);

/* --- provenance and sheets (provenance.c, sheet.c; docs/sheets.md) ---------------------- */
/* Add "provenance": {"code_sha256", "environment", "inputs_sha256", "platform_version"} to a
 * rendered task (fields null when its version is gone). Cannot fail (a field stays null). */
void mp_core_task_add_provenance(struct mp_core *core, json_t *task);
/* 1 when two rendered tasks both completed with the same canonical result, 0 when they
 * ended otherwise, -1 while either has not ended. */
int mp_core_results_identical(json_t *a, json_t *b);
/* Run task id again: its version and inputs, never from the result cache; *ret: the new
 * task, as mp_core_execute returns it. 404 for a task p may not see. */
int mp_core_task_rerun(struct mp_core *core, const struct mp_principal *p, const char *id, json_t **ret,
                       struct mp_error *err);
/* Two tasks' inputs and results compared field by field: {"a", "b", "fields": [{"path",
 * "a", "b", "equal", "abs_diff"?, "rel_diff"?, "unit"}], "differences", "truncated",
 * "identical_results"}. 404 for either task p may not see. */
int mp_core_task_diff(struct mp_core *core, const struct mp_principal *p, const char *a_id, const char *b_id,
                      json_t **ret, struct mp_error *err);
/* A task's (a workflow run's) calculation sheet: a whole HTML page, malloc'ed in *ret. */
int mp_core_task_sheet(struct mp_core *core, const struct mp_principal *p, const char *id, char **ret,
                       size_t *ret_len, struct mp_error *err);
int mp_core_run_sheet(struct mp_core *core, const struct mp_principal *p, const char *id, char **ret,
                      size_t *ret_len, struct mp_error *err);
/* The sheet html as PDF, by weasyprint in a child process (at most 60 s): *ret malloc'ed.
 * 503 when weasyprint cannot be started or takes too long. */
int mp_core_sheet_pdf(struct mp_core *core, const char *html, size_t len, char **ret, size_t *ret_len,
                      struct mp_error *err);

/* --- spreadsheets (xlsx.c, xlsx-tables.c; docs/sheets.md#spreadsheets) ------------------ */
struct mp_xlsx;
/* A workbook of one worksheet named sheet_name, written row by row; its files are in
 * dir (core->scratch). */
int mp_xlsx_new(const char *dir, const char *sheet_name, struct mp_xlsx **ret);
/* The next row: values (an array) as cells: numbers as numbers, booleans as booleans,
 * strings as text (bold when header), null as empty, others as their JSON text. -EFBIG
 * past Excel's rows, -EIO when the library failed. */
int mp_xlsx_row(struct mp_xlsx *x, json_t *values, bool header);
/* Close the workbook: its bytes malloc'ed in *ret. x is still to be freed. */
int mp_xlsx_finish(struct mp_xlsx *x, char **ret, size_t *ret_len);
struct mp_xlsx *mp_xlsx_free(struct mp_xlsx *x);
/* "name [unit]", or name when unit is NULL or empty. */
json_t *mp_xlsx_header_cell(const char *name, const char *unit);
/* A task's tabular result (a list of row objects) as .xlsx: columns in the order the
 * rows first hold them, units from the version's output schema (its "items"). 406
 * when the result is not a list of objects; 404 as mp_core_task_get. */
int mp_core_task_xlsx(struct mp_core *core, const struct mp_principal *p, const char *id, char **ret,
                      size_t *ret_len, struct mp_error *err);
/* A new study with s's points, fixed inputs and outputs on version body.version (default:
 * the latest) of the same target: *ret as mp_core_study_create's. */
int mp_core_study_rerun(struct mp_core *core, const struct mp_principal *p, const char *id, json_t *body,
                        json_t **ret, struct mp_error *err);
/* Two studies' results point by point (matched by inputs), per output of a: {"a", "b",
 * "outputs", "summary": {output: {max_abs_diff, max_rel_diff, different}}, "points":
 * [{inputs, outputs: {output: {a, b, abs_diff, rel_diff}}}], "only_in_a", "only_in_b"}. */
int mp_core_study_diff(struct mp_core *core, const struct mp_principal *p, const char *a_id, const char *b_id,
                       json_t **ret, struct mp_error *err);
/* A study's results as .xlsx: index, inputs (units from the input schema), outputs
 * (units from the output schema), status, error; as the CSV export. */
int mp_core_study_xlsx(struct mp_core *core, const struct mp_principal *p, const char *id, char **ret,
                       size_t *ret_len, struct mp_error *err);
/* An uploaded .xlsx list design (its first worksheet) as CSV text, for the CSV upload's
 * parser: strings quoted, numbers and booleans as they are. 422 naming the cause for a
 * formula, macros, an external link, an error cell, or a file over the caps. */
int mp_xlsx_to_csv(const char *data, size_t len, char **ret, size_t *ret_len, struct mp_error *err);

/* --- environments: per-function requirements (core/environments.c) --- */
/* Is s one requirement line we install: a project name, optional [extras], version
 * specifiers (==, !=, <=, >=, ~=, ===, <, >, comma separated) and --hash=sha256:HEX
 * options; no URL, marker, path or other option. */
bool mp_core_requirement_ok(const char *s);
/* DATA_DIR/layers, made and absolute, into buf (serve passes it to the executor
 * before the core opens). 0 or -errno. */
int mp_core_layers_dir(const struct mp_config *config, char *buf, size_t size);
/* Set up (mp_core_open) and stop (mp_core_close: joins the build thread). */
int mp_core_envs_open(struct mp_core *core, struct mp_error *err);
void mp_core_envs_close(struct mp_core *core);
/* Queue again the environments a stopped server left queued or building (serve). */
int mp_core_envs_recover(struct mp_core *core, struct mp_error *err);
/* Resolve reqs (non-empty) into an environment, made (and its build queued) unless
 * one with that lock exists: *ret {"id","status"}; a resolution that fails makes a
 * failed one (not an error). *ret NULL without requirements. 422 on requirements when
 * the server has no wheelhouse. Runs pip (a second or so): not for the event loop. */
int mp_core_env_prepare(struct mp_core *core, json_t *reqs, json_t **ret, struct mp_error *err);
/* A version's environment id into buf, NULL when it has none (the base one). */
const char *mp_core_version_env(json_t *ver, char *buf, size_t size);
/* {"id","status"} of a version's environment, or JSON null (new reference). */
json_t *mp_core_env_brief(struct mp_core *core, json_t *ver);
/* 0 when the version's environment is ready (or it has none); else 409
 * EnvironmentNotReady, errors {"environment": {"id","status"}}. */
int mp_core_env_check(struct mp_core *core, json_t *ver, struct mp_error *err);
/* The collector's part (mp_core_gc): remove the layers of the ready environments that
 * no live function's version names, created an hour or more before now_ms, from this
 * node's layers folder and (their archives) from the object store; how many layers
 * into *ret_count. 0 or -errno. */
int mp_core_envs_gc(struct mp_core *core, int64_t now_ms, json_int_t *ret_count, struct mp_error *err);
/* The collector's part for the wheel cache (LAYERS/.wheels, filled from package
 * indexes): remove the cached wheels whose sha256 no lock of an environment it keeps
 * names (one made within the hour before now_ms, or named by a live function's
 * version), left unused for an hour; how many and their bytes into *ret_count and
 * *ret_bytes. 0 (nothing to do on a node without --wheelhouse or --package-index) or
 * -errno. */
int mp_core_wheels_gc(struct mp_core *core, int64_t now_ms, json_int_t *ret_count, json_int_t *ret_bytes,
                      struct mp_error *err);
/* GET /api/v1/environments/{id}: {"id","status","requirements","lock","log","error",
 * "build_ms","created_at"}; 404 when none. */
int mp_core_environment_get(struct mp_core *core, const struct mp_principal *p, const char *id, json_t **ret,
                            struct mp_error *err);

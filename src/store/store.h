/* store/: the metadata store port. Rows travel as jansson objects whose keys are the
 * column names below (the API's field names where the API shows them), so a new column
 * costs a line in store-sql.h (and a migration), and none in the callers.
 *
 * Conventions for every operation:
 *  - returns >= 0 on success, -ENOENT for an unknown id, -EEXIST for a uniqueness
 *    conflict, -EBUSY when the database stays locked, other -errno on failure; err (may
 *    be NULL) then says what failed in a sentence;
 *  - json arguments are borrowed; json_t **ret_* are new references owned by the caller
 *    and left untouched on failure;
 *  - times are epoch milliseconds (integers), ids are UUID text (mp_id_new);
 *  - "JSON columns" (marked (json) below) are stored as text and come back parsed.
 *  - every operation is safe to call from several threads at once on one mp_store.
 *
 * Tables (the SQL lives in store-sql.h, shared by the backends; migrations are numbered
 * and idempotent):
 *  companies(id, name unique, created_at)
 *  users(id, email unique (case-folded by the caller), password_hash, company_id?, role
 *        "admin"|"member"|"viewer", created_at, external_id? unique: the subject of
 *        an OpenID provider); user rows that come back also hold
 *        "company", the company's name (null without one)
 *  tokens(id, user_id, token_hash unique (hex of a hash, never the token), kind
 *        "session"|"api", name, created_at, expires_at (0 = never), revoked_at (0 = no),
 *        last_used_at)
 *  functions(id, owner_id, company_id?, name, description, visibility
 *        "private"|"company"|"public", latest_version, created_at, updated_at,
 *        deleted_at (0 = live), tags (json: array of strings), search (name,
 *        description and tags in ASCII lower case, for the catalogue)); unique
 *        (owner_id, name) among live functions
 *  function_versions(function_id, version, code, handler, requirements (json),
 *        input_schema (json), limits (json), isolation, created_at); primary key
 *        (function_id, version)
 *  tasks(id, function_id, version, owner_id, company_id?, status, inputs (json),
 *        result (json, null when none or spilled), result_blob?, error (json, null
 *        when none or spilled), error_type? (the error's "type"), error_blob?,
 *        logs (text), logs_blob?, logs_truncated (0/1), artifacts (json: array of
 *        {name, size, blob}), queued_at, started_at, finished_at, execution_ms,
 *        cpu_ms, peak_memory_kb, attempts, worker_id?, idempotency_key?);
 *        unique (owner_id, function_id, idempotency_key) where the key is set
 *  jobs(task_id primary key, enqueued_at, worker_id?, lease_until (0 = unclaimed))
 *        the local queue: a row per task waiting or being run.
 *  studies, study_points: parameter studies (see the operations below); tasks also
 *        carry study_id?, point_index?, cache_key?, cached_from?, and function_versions
 *        cache (0/1).
 *  audit(id, at, kind, actor_id?, company_id?, client?, target_id?, detail (json))
 *        identity and access events (docs/identity.md#audit); tokens also carry
 *        scopes (json array of scope names; null = every scope).
 *
 * Absent optional values are JSON null (or 0 for times) in rows that come back.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "base/error.h"

struct mp_store;

struct mp_store_list {
        json_t *items;      /* array of rows */
        char *next_cursor;  /* opaque, NULL at the end; caller frees */
};

struct mp_store_ops {
        const char *scheme; /* "sqlite" */
        /* url: "sqlite:/path/to/mecapy.db"; creates the file and runs the migrations. */
        int (*open)(const char *url, struct mp_store **ret, struct mp_error *err);
        void (*close)(struct mp_store *s);

        /* --- identity --- */
        int (*company_ensure)(struct mp_store *s, const char *name, json_t **ret_company,
                              struct mp_error *err);
        int (*user_create)(struct mp_store *s, json_t *user, struct mp_error *err);
        /* field is "id", "email" or "external_id" (an OpenID provider's subject). */
        int (*user_get)(struct mp_store *s, const char *field, const char *value, json_t **ret,
                        struct mp_error *err);
        int (*user_set_password)(struct mp_store *s, const char *user_id, const char *hash,
                                 struct mp_error *err);
        /* Set email, role ("admin"|"member"|"viewer") and company_id (NULL: none) of a
         * user, as its OpenID provider last described it. -ENOENT: no such user;
         * -EEXIST: another user has that email. */
        int (*user_set_identity)(struct mp_store *s, const char *user_id, const char *email,
                                 const char *role, const char *company_id,
                                 struct mp_error *err);
        int (*token_create)(struct mp_store *s, json_t *token, struct mp_error *err);
        /* A live token (not revoked, not expired at now) by hash: ret = {"token": row,
         * "user": row}; bumps last_used_at. -ENOENT otherwise. */
        int (*token_lookup)(struct mp_store *s, const char *token_hash, int64_t now,
                            json_t **ret, struct mp_error *err);
        /* API tokens of a user (kind "api"), newest first, without token_hash. */
        int (*token_list)(struct mp_store *s, const char *user_id, json_t **ret,
                          struct mp_error *err);
        /* -ENOENT when no such token of that user. */
        int (*token_revoke)(struct mp_store *s, const char *user_id, const char *token_id,
                            int64_t now, struct mp_error *err);
        /* Revoke every live session token (kind "session") of a user except
         * except_token_id (NULL: all of them). Returns how many were revoked. */
        int (*token_revoke_sessions)(struct mp_store *s, const char *user_id,
                                     const char *except_token_id, int64_t now,
                                     struct mp_error *err);

        /* --- the audit log --- */
        /* event: {id, at, kind, actor_id?, company_id?, client?, target_id?, detail?}. */
        int (*audit_append)(struct mp_store *s, json_t *event, struct mp_error *err);
        /* filter: {company_id (null: events of no company), kind?, actor_id?, since?
         * (epoch ms, inclusive), cursor?, limit}; newest first. */
        int (*audit_list)(struct mp_store *s, json_t *filter, struct mp_store_list *ret,
                          struct mp_error *err);

        /* --- functions --- */
        /* fn: {id, owner_id, company_id, name, description, visibility, created_at};
         * version: {code, handler, requirements, input_schema, limits, isolation,
         * created_at}; stored as version 1. -EEXIST: the owner has a live function
         * of that name. */
        int (*function_create)(struct mp_store *s, json_t *fn, json_t *version,
                               struct mp_error *err);
        /* A live function row (with latest_version). */
        int (*function_get)(struct mp_store *s, const char *id, json_t **ret,
                            struct mp_error *err);
        /* The live function of that owner and name. */
        int (*function_find)(struct mp_store *s, const char *owner_id, const char *name,
                             json_t **ret, struct mp_error *err);
        /* Live functions visible to a viewer: owned by viewer_id, or visibility
         * "company" with the same company_id, or "public". filter: {viewer_id,
         * company_id (null ok), name (optional exact), cursor (optional), limit}.
         * Ordered by created_at then id. Each row also holds its latest version's
         * version, handler, requirements, input_schema, limits and isolation. */
        int (*function_list)(struct mp_store *s, json_t *filter, struct mp_store_list *ret,
                             struct mp_error *err);
        /* Update metadata fields present in `fields` (description, visibility) and, when
         * version != NULL, add it as latest_version + 1 in the same transaction.
         * *ret_version = the latest version after the update. */
        int (*function_update)(struct mp_store *s, const char *id, json_t *fields,
                               json_t *version, int64_t now, int *ret_version,
                               struct mp_error *err);
        /* version 0 = latest. Row: {function_id, version, code, handler, requirements,
         * input_schema, limits, isolation, created_at}. */
        int (*function_get_version)(struct mp_store *s, const char *id, int version,
                                    json_t **ret, struct mp_error *err);
        /* All versions, newest first, without code. */
        int (*function_list_versions)(struct mp_store *s, const char *id, json_t **ret,
                                      struct mp_error *err);
        /* Soft delete (deleted_at = now); its name can be reused. */
        int (*function_delete)(struct mp_store *s, const char *id, int64_t now,
                               struct mp_error *err);

        /* --- tasks --- */
        /* task: {id, function_id, version, owner_id, company_id, inputs, idempotency_key?,
         * queued_at}; stored with status "queued", attempts 0, and its job row pushed in
         * the same transaction. When idempotency_key is set and a task of that owner and
         * function already has it: -EEXIST and *ret_existing = that task. */
        int (*task_create)(struct mp_store *s, json_t *task, json_t **ret_existing,
                           struct mp_error *err);
        /* The whole row, but its result as "result_json": the stored JSON text as a
         * string, not parsed (null when none or spilled); no "result" key. task_create's
         * *ret_existing is the same shape. */
        int (*task_get)(struct mp_store *s, const char *id, json_t **ret, struct mp_error *err);
        /* filter: {owner_id, function_id?, status?, since?, until?, cursor?, limit}
         * (since <= queued_at < until, epoch ms); newest first. Items
         * are summaries: {id, function_id, version, owner_id, company_id, status,
         * error_type, queued_at, started_at, finished_at, execution_ms, cpu_ms,
         * peak_memory_kb, attempts}; inputs, result, error, logs and artifacts are not
         * read. */
        int (*task_list)(struct mp_store *s, json_t *filter, struct mp_store_list *ret,
                         struct mp_error *err);
        /* queued -> running (started_at = now, worker_id, attempts + 1). 1 when it
         * moved, 0 when the task was not queued (cancelled meanwhile, say). */
        int (*task_start)(struct mp_store *s, const char *id, const char *worker_id,
                          int64_t now, struct mp_error *err);
        /* running -> running again for worker_id (started_at = now, attempts + 1): the
         * process that ran it died and worker_id, which claimed its job, runs it again.
         * 1 when it moved, 0 when the task was not running. */
        int (*task_retry)(struct mp_store *s, const char *id, const char *worker_id,
                          int64_t now, struct mp_error *err);
        /* queued|running -> fields.status (completed, failed, timed_out, cancelled), with
         * the other columns present in fields (result, result_blob, error, error_type,
         * error_blob, logs, logs_blob, logs_truncated, artifacts, finished_at, execution_ms, cpu_ms,
         * peak_memory_kb), and the job row deleted, in one transaction. 1 when it moved,
         * 0 when the task had already ended (completion is idempotent). */
        int (*task_finish)(struct mp_store *s, const char *id, json_t *fields,
                           struct mp_error *err);
        /* running -> queued (a retry after its worker died); the job row is released.
         * 1 when it moved, 0 otherwise. */
        int (*task_requeue)(struct mp_store *s, const char *id, struct mp_error *err);

        /* --- the local queue (jobs table) --- */
        /* Claim the oldest unclaimed job (or one whose lease ended before now) for
         * worker_id until lease_until: 1 and the task id in ret_task_id (37 bytes), 0 when
         * there is none. */
        int (*job_claim)(struct mp_store *s, const char *worker_id, int64_t now,
                         int64_t lease_until, char *ret_task_id, struct mp_error *err);
        int (*job_extend)(struct mp_store *s, const char *task_id, const char *worker_id,
                          int64_t lease_until, struct mp_error *err);
        /* Release every claim (lease_until = 0, worker_id = null): at start-up of the
         * embedded server, whose previous process died. Returns the count released. */
        int (*job_release_all)(struct mp_store *s, struct mp_error *err);

        /* --- companies and the catalogue (docs/identity.md) --- */
        /* {id, name, created_at, members (count of users)}. -ENOENT: no such company. */
        int (*company_get)(struct mp_store *s, const char *company_id, json_t **ret,
                           struct mp_error *err);
        /* The users of a company, oldest first: [{id, email, role, created_at,
         * external_id}]. */
        int (*company_members)(struct mp_store *s, const char *company_id, json_t **ret,
                               struct mp_error *err);
        /* Set the role of user_id, a member of company_id, in one transaction with the
         * check that the company keeps an admin. -ENOENT: not a member of that company;
         * -EPERM: the company would be left without an admin. */
        int (*member_set_role)(struct mp_store *s, const char *company_id, const char *user_id,
                               const char *role, struct mp_error *err);
        /* Remove user_id from company_id: no company, role "viewer", no password, every
         * token revoked at now, in one transaction. -ENOENT and -EPERM as above. */
        int (*member_remove)(struct mp_store *s, const char *company_id, const char *user_id,
                             int64_t now, struct mp_error *err);
        /* Public live functions, newest first (created_at, id). filter: {q?, tag?,
         * author_email?, author_name?, cursor?, limit}: q matches the search text or the
         * author's email as a substring (the caller lower-cases it), tag one tag exactly,
         * author_email the email, author_name the part of the email before '@'. Items:
         * {id, name, description, tags, author (email), version, input_schema, created_at,
         * updated_at}. */
        int (*function_catalogue)(struct mp_store *s, json_t *filter, struct mp_store_list *ret,
                                  struct mp_error *err);

        /* --- workflows (docs/workflows.md) ---
         * workflows(id, owner_id, company_id?, name, description, visibility,
         *        latest_version, created_at, updated_at, deleted_at); unique (owner_id,
         *        name) among live workflows
         * workflow_versions(workflow_id, version, definition (json: the normalized
         *        definition of core/flow.h), input_schema (json), created_at)
         * workflow_runs(id, workflow_id, version, owner_id, company_id?, status
         *        "running"|"completed"|"failed"|"cancelled", inputs (json), state (json:
         *        the scheduler's state), outputs (json), error (json), rev (the count of
         *        stored steps), idempotency_key?, created_at, finished_at (0 while the run
         *        has not ended or a call of it still runs), cache_key? (a version declared
         *        "cache"), cached_from? (the run a cache hit copied), study_id?,
         *        point_index? (the study point it was made for))
         * tasks.workflow_run_id?, tasks.node_id?, tasks.element_index? (null unless a
         *        map element): the run, node and element a task was made for. */
        /* wf: {id, owner_id, company_id, name, description, visibility, created_at};
         * version: {definition, input_schema, created_at}; stored as version 1. -EEXIST:
         * the owner has a live workflow of that name. */
        int (*workflow_create)(struct mp_store *s, json_t *wf, json_t *version,
                               struct mp_error *err);
        /* A live workflow row (with latest_version). */
        int (*workflow_get)(struct mp_store *s, const char *id, json_t **ret, struct mp_error *err);
        /* The live workflow of that owner and name. */
        int (*workflow_find)(struct mp_store *s, const char *owner_id, const char *name,
                             json_t **ret, struct mp_error *err);
        /* Live workflows visible to a viewer, as function_list: filter {viewer_id,
         * company_id, name?, cursor?, limit}; oldest first. */
        int (*workflow_list)(struct mp_store *s, json_t *filter, struct mp_store_list *ret,
                             struct mp_error *err);
        /* Set description and visibility when present in fields (may be NULL) and, when
         * version != NULL, add it as latest_version + 1, in one transaction. */
        int (*workflow_update)(struct mp_store *s, const char *id, json_t *fields, json_t *version,
                               int64_t now, int *ret_version, struct mp_error *err);
        /* version 0 = latest. Row: {workflow_id, version, definition, input_schema,
         * created_at}; read whether or not the workflow was deleted since. */
        int (*workflow_get_version)(struct mp_store *s, const char *id, int version, json_t **ret,
                                    struct mp_error *err);
        /* Soft delete; its name can be reused. Its runs are kept. */
        int (*workflow_delete)(struct mp_store *s, const char *id, int64_t now,
                               struct mp_error *err);
        /* run: {id, workflow_id, version, owner_id, company_id, status?, inputs, state,
         * outputs?, error?, idempotency_key?, created_at, finished_at?}; rev 0; with the
         * tasks of its first step (rows as task_create takes them, each with its job; may
         * be NULL), in one transaction. With a key that a run of that owner and workflow
         * already has: -EEXIST and *ret_existing = that run (may be NULL); nothing stored. */
        int (*workflow_run_create)(struct mp_store *s, json_t *run, json_t *tasks, json_t **ret_existing,
                                   struct mp_error *err);
        /* The whole row, with rev. */
        int (*workflow_run_get)(struct mp_store *s, const char *id, json_t **ret,
                                struct mp_error *err);
        /* filter: {owner_id, workflow_id?, status?, cursor?, limit}; newest first; items
         * without inputs, state, outputs and error. */
        int (*workflow_run_list)(struct mp_store *s, json_t *filter, struct mp_store_list *ret,
                                 struct mp_error *err);
        /* Compare and set: store fields {state, status, outputs?, error?, finished_at?}
         * only if the run's rev is still rev, and bump rev, in one statement. 1 when
         * stored; 0 when another writer stored first (read again and redo the step);
         * -ENOENT for an unknown run. */
        int (*workflow_run_update)(struct mp_store *s, const char *id, int64_t rev, json_t *fields,
                                   struct mp_error *err);
        /* A scheduling step's store, one transaction: the compare and set of
         * workflow_run_update and, only when it stored, the tasks the step made (rows as
         * task_create takes them, each with its job); a task whose id exists already is
         * left as it is (a step done again after a crash). 1 when stored, with
         * *ret_created (may be NULL) the new list of the ids created now; 0 when another
         * writer stored first (nothing written). */
        int (*workflow_run_advance)(struct mp_store *s, const char *id, int64_t rev, json_t *fields,
                                    json_t *tasks, json_t **ret_created, struct mp_error *err);
        /* The ids of the runs whose finished_at is 0, oldest first: [{"id"}]. */
        int (*workflow_run_open)(struct mp_store *s, json_t **ret, struct mp_error *err);
        /* The owner's newest completed run with this cache_key that is not itself a copy
         * (cached_from null), whole, in *ret; -ENOENT when none. */
        /* A study's members (study_members(study_id, kind "task"|"run", member_id,
         * added_at)): members [{kind, id}] added in one transaction, those already there
         * left out; -E2BIG (422) when the study would hold more than max. The count
         * added, or -errno. */
        int (*study_add_members)(struct mp_store *s, const char *id, json_t *members, int64_t max,
                                 struct mp_error *err);
        /* *ret: [{kind, member_id}] in the order they were added. */
        int (*study_members)(struct mp_store *s, const char *id, json_t **ret, struct mp_error *err);
        int (*workflow_run_find_cached)(struct mp_store *s, const char *owner_id, const char *cache_key,
                                        json_t **ret, struct mp_error *err);
        /* --- studies and the result cache (docs/studies.md) --- */
        /* study: {id, owner_id, company_id, name, notes, target (json: {function_id,
         * version}), fixed, design, outputs (json), concurrency, cache_refresh (0/1),
         * created_at}, status "running"; points: [{inputs, inputs_key, cache_key?}]
         * stored as indices 0.. in order, total = their count. Nothing starts. */
        int (*study_create)(struct mp_store *s, json_t *study, json_t *points, struct mp_error *err);
        /* The study row with "running": how many of its started points' tasks run now.
         * Counters: total, started (tasks made, ends not yet counted), completed,
         * failed, cancelled. */
        int (*study_get)(struct mp_store *s, const char *id, json_t **ret, struct mp_error *err);
        /* filter: {owner_id, status?, name?, cursor?, limit}; newest first; rows as
         * study_get's. */
        int (*study_list)(struct mp_store *s, json_t *filter, struct mp_store_list *ret,
                          struct mp_error *err);
        /* Up to limit points with index > after, in index order: [{point_index, inputs,
         * task_id, status ("pending"|"started"|"completed"|"failed"|"cancelled"),
         * outputs, error}]. */
        int (*study_points)(struct mp_store *s, const char *id, int64_t after, int limit, json_t **ret,
                            struct mp_error *err);
        /* Append points (as study_create's) after the last index, leaving out those whose
         * inputs_key the study holds already; a completed study runs again. The count
         * added; -EALREADY (409) for a cancelled study. */
        int (*study_add_points)(struct mp_store *s, const char *id, json_t *points, struct mp_error *err);
        /* In one transaction under the study's lock: start pending points up to the
         * concurrency (a task and its job each, or a copy of a completed task of the
         * owner with the point's cache key unless cache_refresh), and complete the study
         * when nothing is pending or started. *ret_started: [{task_id, cached}], the
         * tasks made (the caller pushes the uncached ones to the queue and records the
         * cached ones' ends). A study of a workflow (target {workflow_id, version})
         * makes no task: its points are marked started with a new id each, returned as
         * {task_id, cached: false, run: true, point_index, inputs}, for the caller to
         * make a run of that id. */
        int (*study_start)(struct mp_store *s, const char *id, json_t **ret_started, struct mp_error *err);
        /* A point's task ended with status: the point gets it (completed, failed, or
         * cancelled; timed_out counts as failed), its outputs and error, the counters
         * move, then study_start's step, all in one transaction. 1 when counted, 0 when
         * that end was counted before (idempotent); *ret_started as study_start's. */
        int (*study_point_end)(struct mp_store *s, const char *study_id, int64_t index, const char *task_id,
                               const char *status, json_t *outputs, json_t *error, json_t **ret_started,
                               struct mp_error *err);
        /* Failed points back to pending, the study running. The count; -EALREADY (409)
         * for a cancelled study. */
        int (*study_retry)(struct mp_store *s, const char *id, struct mp_error *err);
        /* Pending points cancelled, the study "cancelled"; *ret_tasks: [{task_id}] of the
         * started points (to cancel). -EALREADY (409) when it had ended. */
        int (*study_cancel)(struct mp_store *s, const char *id, json_t **ret_tasks, struct mp_error *err);
        /* Studies not completed: [{id, ended: [task ids of started points whose task
         * ended]}]. */
        int (*study_recover)(struct mp_store *s, json_t **ret, struct mp_error *err);
        /* task: {id, function_id, owner_id, company_id, inputs, queued_at, cache_key,
         * idempotency_key?}. When the owner has a completed task with that cache key
         * (not itself a copy), a new completed task copying its result and artifacts,
         * cached_from = its id, carrying the idempotency key: 1. Else 0 and nothing
         * stored; also 0 when the owner has a task of that function with that
         * idempotency key (task_create then answers with it). */
        int (*task_create_cached)(struct mp_store *s, json_t *task, struct mp_error *err);
        /* Is the task a study point's? 1 yes, 0 no (or no such task): a small read, made
         * on every task's end. */
        int (*task_in_study)(struct mp_store *s, const char *task_id, struct mp_error *err);

        /* --- retention and deletion (core/retention.c, docs/api.md#deleting-tasks) ---
         * companies.task_retention_days? (null: keep forever). */
        /* Delete an ended task (completed, failed, timed_out or cancelled) with its job
         * row and the study memberships that name it, in one transaction. 1 when deleted;
         * 0 when it has not ended (nothing deleted); -ENOENT: no such task. Its objects
         * are the caller's to delete. */
        int (*task_delete)(struct mp_store *s, const char *id, struct mp_error *err);
        /* The first study that groups the task (study_members): *ret {"study_id"};
         * -ENOENT when none does. */
        int (*task_study_member)(struct mp_store *s, const char *id, json_t **ret, struct mp_error *err);
        /* How many tasks are id or name it as cached_from (a cache hit shares the objects
         * of the task it copied): its objects are in use while this is > 0. */
        int (*task_refs)(struct mp_store *s, const char *id, struct mp_error *err);
        /* Up to limit ended tasks of companies with a retention, queued before now minus
         * that many days, whose workflow run and study (if any) are no longer running,
         * oldest first: [{"id"}]. */
        int (*task_expired)(struct mp_store *s, int64_t now, int limit, json_t **ret, struct mp_error *err);
        /* A company's retention in days; days < 0: keep forever (null). -ENOENT: no such
         * company. */
        int (*company_set_retention)(struct mp_store *s, const char *company_id, int64_t days,
                                     struct mp_error *err);
        /* *ret {"task_retention_days": n|null}; -ENOENT: no such company. */
        int (*company_retention)(struct mp_store *s, const char *company_id, json_t **ret,
                                 struct mp_error *err);
        /* Every function of an owner, deleted ones too (deleted_at > 0), oldest first:
         * rows as function_get's, without latest version fields. */
        int (*function_list_owned)(struct mp_store *s, const char *owner_id, json_t **ret,
                                   struct mp_error *err);
        /* --- progress and live logs of a running task (events) ---
         * tasks.progress (json: {"fraction", "message", "at"}), tasks.live_logs (text). */
        /* While the task runs: set its progress (NULL: unchanged) and append logs (UTF-8
         * text, NULL: none); first: this is the first update of this run, which replaces
         * both. One write, not synced (a power cut may lose it: the end keeps the logs).
         * 1 when stored, 0 when the task is not running. */
        int (*task_live)(struct mp_store *s, const char *id, json_t *progress, const char *logs, bool first,
                         struct mp_error *err);
        /* The live logs after the first `after` characters: *ret = {"logs": text,
         * "chars": how many characters they hold in all}. -ENOENT: no such task. */
        int (*task_live_logs)(struct mp_store *s, const char *id, int64_t after, json_t **ret,
                              struct mp_error *err);
        /* --- usage, quotas and the operators' figures (core/usage.c, migration 13) ---
         * usage_daily(day (UTC days since the epoch of a task's end), owner_id,
         *        company_id ('' for none), function_id, calls, failed, wall_ms, cpu_ms,
         *        max_peak_memory_kb, stored_bytes): task_finish adds each task that had
         *        started to its row in the same transaction.
         * quotas(company_id, user_id ('' for the company's own), concurrent_calls,
         *        calls_per_day, cpu_seconds_per_month, storage_mb (NULL = unlimited),
         *        updated_at). users.operator (0/1).
         * task_create of a task holding "quota_check": true first checks, in its
         * transaction, the quotas of its owner and company (quota_check's rules):
         * -EDQUOT over one, with err a QuotaExceeded problem (status 429 or 403,
         * errors = {"quota","limit","scope","resets_at","retry_after"}), nothing stored. */
        /* filter: {owner_id? | company_id?, from_day, to_day (inclusive), group_by "day" |
         * "function_id" | "owner_id"}: rows {key, calls, failed, wall_ms, cpu_ms,
         * max_peak_memory_kb}, ordered by key. */
        int (*usage_query)(struct mp_store *s, json_t *filter, json_t **ret, struct mp_error *err);
        /* The quota rows of a company (its own first, then its members'). */
        int (*quota_list)(struct mp_store *s, const char *company_id, json_t **ret, struct mp_error *err);
        /* Set one row: {company_id, user_id ('' for the company's), concurrent_calls?,
         * calls_per_day?, cpu_seconds_per_month?, storage_mb?} (absent or null:
         * unlimited); a row with no limit left is removed. */
        int (*quota_set)(struct mp_store *s, json_t *quota, struct mp_error *err);
        /* How much of each quota an owner (company_id NULL) or a company has used now:
         * {"concurrent_calls", "calls_today", "cpu_ms_this_month", "stored_bytes"}. */
        int (*quota_used)(struct mp_store *s, const char *owner_id, const char *company_id, int64_t now,
                          json_t **ret, struct mp_error *err);
        /* task_start, held by the quotas of owner_id and company_id ("" none): the
         * concurrent calls (counting those running) and the month's CPU, checked and the
         * task started in one transaction; a task not admitted when it was stored (a
         * run's or a study's: admitted false) is held by the day's calls (those that ran)
         * and the storage too. 1 started, 0 not queued, -EDQUOT held (err says by which
         * quota, with its retry_after). */
        int (*task_start_quota)(struct mp_store *s, const char *id, const char *worker_id, int64_t now,
                                const char *owner_id, const char *company_id, bool admitted,
                                struct mp_error *err);
        int (*user_set_operator)(struct mp_store *s, const char *user_id, int operator_flag,
                                 struct mp_error *err);
        /* The operators' raw figures of the window [from_ms, to_ms): {"functions_created",
         * "functions_live", "days": [{day, calls, failed, wall_ms, cpu_ms, active_users}],
         * "active_users", "ended", "cache_hits", "ran", "latency_ms": {"p50","p95","p99"}
         * (null without a call)}. */
        int (*admin_stats)(struct mp_store *s, int64_t from_ms, int64_t to_ms, json_t **ret,
                           struct mp_error *err);
        /* The company of that name ({id, name, created_at}); -ENOENT when none. */
        int (*company_find)(struct mp_store *s, const char *name, json_t **ret, struct mp_error *err);
        /* Verification cases and review (core/verify.c, core/review.c). Set a version's
         * "verification" or "review" column (field names which; value: JSON, stored as
         * given); -ENOENT when the version is missing. */
        int (*version_set_meta)(struct mp_store *s, const char *function_id, int version, const char *field,
                                json_t *value, struct mp_error *err);
        /* The whole rows (as task_get's) of the tasks run as cases of key
         * ("function_id:version"), by case index: *ret a new array. */
        int (*verification_tasks)(struct mp_store *s, const char *key, json_t **ret, struct mp_error *err);
        /* version_set_meta's "review" as a compare-and-set: written only while the column
         * still holds expected (NULL: unset), 0; -ESTALE (409 conflict) when it changed
         * meanwhile (or the version is gone), so that of two simultaneous steps one loses. */
        int (*version_swap_review)(struct mp_store *s, const char *function_id, int version, json_t *expected,
                                   json_t *value, struct mp_error *err);
        /* A company's settings: *ret {"settings": object or null}; -ENOENT for no company. */
        int (*company_settings)(struct mp_store *s, const char *company_id, json_t **ret, struct mp_error *err);
        int (*company_set_settings)(struct mp_store *s, const char *company_id, json_t *settings,
                                    struct mp_error *err);
        /* --- environments (core/environments.c, migration 17) ---
         * environments(id, status queued|building|ready|failed, requirements (json),
         * resolved (json lock), log, build_error, build_ms, created_at). */
        /* Store env ({id, status, requirements, resolved?, log?, build_error?, build_ms?,
         * created_at}) unless one of that id exists: 1 stored, 0 it existed. */
        int (*env_create)(struct mp_store *s, json_t *env, struct mp_error *err);
        /* *ret the row; -ENOENT when none. */
        int (*env_get)(struct mp_store *s, const char *id, json_t **ret, struct mp_error *err);
        /* Set status, log (NULL: ''), build_error (NULL: none) and build_ms (< 0: NULL). */
        int (*env_set)(struct mp_store *s, const char *id, const char *status, const char *log,
                       const char *build_error, int64_t build_ms, struct mp_error *err);
        /* A failed environment back to queued with these requirements and lock (JSON
         * texts): 1 when it was failed, else 0 (unchanged). */
        int (*env_requeue)(struct mp_store *s, const char *id, const char *requirements, const char *resolved,
                           struct mp_error *err);
        /* Every environment queued or building, oldest first. */
        int (*env_unfinished)(struct mp_store *s, json_t **ret, struct mp_error *err);
        /* [{"id"}] of the ready environments created before before_ms that no version of
         * a function not deleted names, oldest first. */
        int (*env_unused)(struct mp_store *s, int64_t before_ms, json_t **ret, struct mp_error *err);
        /* [{"function_id", "version"}] of the versions of functions not deleted whose
         * verification is still running (core/verify.c's sweep at start): *ret a new array. */
        int (*verification_running)(struct mp_store *s, json_t **ret, struct mp_error *err);
        /* [{"id","resolved"}] of the environments with a lock that the collector keeps:
         * created at before_ms or after, or named by a version of a function not deleted
         * (the wheels of their locks stay in the wheel cache). */
        int (*env_in_use)(struct mp_store *s, int64_t before_ms, json_t **ret, struct mp_error *err);
        /* Record (or, NULL, forget) the sha256 of an environment's layer archive in the
         * object store; -ENOENT when no environment has that id. */
        int (*env_set_archive)(struct mp_store *s, const char *id, const char *sha256, struct mp_error *err);
};

/* Open the backend that the url's scheme names. A sqlite: URL may end in
 * "?durability=full" (the default: every accepted change is on disk before the call
 * returns, commits of concurrent calls grouped into one sync) or "?durability=fast"
 * (synchronous=NORMAL: a power cut may lose the last changes, never corrupt the file). */
int mp_store_open(const char *url, struct mp_store **ret, struct mp_error *err);
/* What the open store runs with, for logs and tests: {"backend", "durability", and the
 * backend's own settings (SQLite: "synchronous", the PRAGMA's number)}. */
int mp_store_info(struct mp_store *s, json_t **ret, struct mp_error *err);
void mp_store_close(struct mp_store *s);
/* The table of operations behind an open store. */
const struct mp_store_ops *mp_store_ops(struct mp_store *s);

/* Every backend's struct starts with this, so dispatch can find the ops. */
struct mp_store_base {
        const struct mp_store_ops *ops;
};

/* Shorthand for calls: MP_STORE(s)->task_get(s, ...). */
#define MP_STORE(s) (((struct mp_store_base *) (s))->ops)

/* store/: the SQL of the store, for store-ops.c (the only file that includes this): the
 * schema (numbered migrations), the SQL texts, the column lists that say which fields of
 * a caller's row are stored and how, and the pure helpers for filters, cursors and text.
 *
 * Parameters are written ?N (SQLite's numbered form); the PostgreSQL driver rewrites
 * them to $N. Both dialects give ?N/$N the same meaning (the Nth bound value, the same
 * value wherever N repeats), which SQLite's $NAME form would not. Where the dialects
 * differ, both texts are here and the driver's flags pick one. Texts are static: the
 * SQLite driver caches prepared statements under their address. */
#pragma once

#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sodium.h>

#include "base/error.h"
#include "base/limits.h"
#include "base/util.h"

#define CURSOR_MAX_ID 64

#define not_found(err, ...) mp_error_set(err, ENOENT, 404, "not_found", __VA_ARGS__)
#define invalid(err, ...) mp_error_set(err, EINVAL, 422, "validation", __VA_ARGS__)


/* ---- schema ---- */

/* Numbered migrations: index + 1 is the version. Never edit one that has shipped; add
 * the next. Each runs once, in its own transaction, recorded in schema_migrations. */
static const char *const migrations[] = {
        /* 1: the initial schema */
        "CREATE TABLE IF NOT EXISTS companies ("
        "  id TEXT PRIMARY KEY,"
        "  name TEXT NOT NULL UNIQUE,"
        "  created_at BIGINT NOT NULL DEFAULT 0);"
        "CREATE TABLE IF NOT EXISTS users ("
        "  id TEXT PRIMARY KEY,"
        "  email TEXT NOT NULL UNIQUE,"
        "  password_hash TEXT,"
        "  company_id TEXT REFERENCES companies(id),"
        "  role TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member', 'viewer')),"
        "  created_at BIGINT NOT NULL DEFAULT 0);"
        "CREATE TABLE IF NOT EXISTS tokens ("
        "  id TEXT PRIMARY KEY,"
        "  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
        "  token_hash TEXT NOT NULL UNIQUE,"
        "  kind TEXT NOT NULL CHECK (kind IN ('session', 'api')),"
        "  name TEXT,"
        "  created_at BIGINT NOT NULL DEFAULT 0,"
        "  expires_at BIGINT NOT NULL DEFAULT 0,"
        "  revoked_at BIGINT NOT NULL DEFAULT 0,"
        "  last_used_at BIGINT NOT NULL DEFAULT 0);"
        "CREATE INDEX IF NOT EXISTS tokens_user ON tokens (user_id, created_at);"
        "CREATE TABLE IF NOT EXISTS functions ("
        "  id TEXT PRIMARY KEY,"
        "  owner_id TEXT NOT NULL REFERENCES users(id),"
        "  company_id TEXT REFERENCES companies(id),"
        "  name TEXT NOT NULL,"
        "  description TEXT NOT NULL DEFAULT '',"
        "  visibility TEXT NOT NULL DEFAULT 'private'"
        "    CHECK (visibility IN ('private', 'company', 'public')),"
        "  latest_version INTEGER NOT NULL DEFAULT 1,"
        "  created_at BIGINT NOT NULL DEFAULT 0,"
        "  updated_at BIGINT NOT NULL DEFAULT 0,"
        "  deleted_at BIGINT NOT NULL DEFAULT 0);"
        "CREATE UNIQUE INDEX IF NOT EXISTS functions_owner_name_live"
        "  ON functions (owner_id, name) WHERE deleted_at = 0;"
        "CREATE INDEX IF NOT EXISTS functions_order ON functions (created_at, id);"
        "CREATE TABLE IF NOT EXISTS function_versions ("
        "  function_id TEXT NOT NULL REFERENCES functions(id),"
        "  version INTEGER NOT NULL,"
        "  code TEXT NOT NULL,"
        "  handler TEXT,"
        "  requirements TEXT,"
        "  input_schema TEXT,"
        "  limits TEXT,"
        "  isolation TEXT,"
        "  created_at BIGINT NOT NULL DEFAULT 0,"
        "  PRIMARY KEY (function_id, version));"
        "CREATE TABLE IF NOT EXISTS tasks ("
        "  id TEXT PRIMARY KEY,"
        "  function_id TEXT NOT NULL REFERENCES functions(id),"
        "  version INTEGER NOT NULL,"
        "  owner_id TEXT NOT NULL REFERENCES users(id),"
        "  company_id TEXT,"
        "  status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN"
        "    ('queued', 'running', 'completed', 'failed', 'timed_out', 'cancelled')),"
        "  inputs TEXT,"
        "  result TEXT,"
        "  result_blob TEXT,"
        "  error TEXT,"
        "  logs TEXT,"
        "  logs_blob TEXT,"
        "  logs_truncated INTEGER NOT NULL DEFAULT 0,"
        "  artifacts TEXT,"
        "  queued_at BIGINT NOT NULL DEFAULT 0,"
        "  started_at BIGINT NOT NULL DEFAULT 0,"
        "  finished_at BIGINT NOT NULL DEFAULT 0,"
        "  execution_ms BIGINT NOT NULL DEFAULT 0,"
        "  cpu_ms BIGINT NOT NULL DEFAULT 0,"
        "  peak_memory_kb BIGINT NOT NULL DEFAULT 0,"
        "  attempts INTEGER NOT NULL DEFAULT 0,"
        "  worker_id TEXT,"
        "  idempotency_key TEXT);"
        "CREATE UNIQUE INDEX IF NOT EXISTS tasks_idempotency"
        "  ON tasks (owner_id, function_id, idempotency_key) WHERE idempotency_key IS NOT NULL;"
        "CREATE INDEX IF NOT EXISTS tasks_owner ON tasks (owner_id, queued_at, id);"
        "CREATE INDEX IF NOT EXISTS tasks_function ON tasks (function_id, queued_at);"
        "CREATE TABLE IF NOT EXISTS jobs ("
        "  task_id TEXT PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE,"
        "  enqueued_at BIGINT NOT NULL,"
        "  worker_id TEXT,"
        "  lease_until BIGINT NOT NULL DEFAULT 0);"
        "CREATE INDEX IF NOT EXISTS jobs_order ON jobs (enqueued_at, task_id);",
        /* 2: users known to an OpenID provider carry its subject ("sub", Keycloak's user
         * id): the identity is the subject, not the email, which the provider may change. */
        "ALTER TABLE users ADD COLUMN external_id TEXT;"
        "CREATE UNIQUE INDEX IF NOT EXISTS users_external_id ON users (external_id)"
        "  WHERE external_id IS NOT NULL;",
        /* 3: the public catalogue. tags: a JSON array of strings; search: name, description
         * and tags in ASCII lower case, written by core/ so that LIKE matches the same rows
         * on both backends (their lower() differ beyond ASCII). Rows older than this get
         * lower(name, description) once. */
        "ALTER TABLE functions ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';"
        "ALTER TABLE functions ADD COLUMN search TEXT NOT NULL DEFAULT '';"
        "UPDATE functions SET search = lower(name || ' ' || description);"
        "CREATE INDEX IF NOT EXISTS functions_public ON functions (created_at, id)"
        "  WHERE visibility = 'public' AND deleted_at = 0;"
        "CREATE INDEX IF NOT EXISTS users_company ON users (company_id, role);",
        /* 4: API tokens carry scopes (a JSON array; NULL = every scope, which is what
         * the tokens made before keep), and the audit log of identity events. Number 3
         * is the companies-and-roles migration of the same issue. */
        "ALTER TABLE tokens ADD COLUMN scopes TEXT;"
        "CREATE TABLE IF NOT EXISTS audit ("
        "  id TEXT PRIMARY KEY,"
        "  at BIGINT NOT NULL,"
        "  kind TEXT NOT NULL,"
        "  actor_id TEXT,"
        "  company_id TEXT,"
        "  client TEXT,"
        "  target_id TEXT,"
        "  detail TEXT);"
        "CREATE INDEX IF NOT EXISTS audit_company ON audit (company_id, at, id);",
        /* 5: a task's error is kept like its logs: inline up to the inline limit, else in
         * an object (error_blob); its type has a column of its own, so that a list of
         * tasks reads neither the error nor the result. Tasks that ended before this
         * migration keep error_type NULL (the two dialects share no JSON function to
         * fill it): their list entries show no error type, GET still shows the error. */
        "ALTER TABLE tasks ADD COLUMN error_type TEXT;"
        "ALTER TABLE tasks ADD COLUMN error_blob TEXT;",
        /* 6: workflows (docs/workflows.md): named definitions kept as immutable versions
         * (the normalized definition of core/flow.h), their runs with the scheduler's
         * state object, and the tasks a run made, which name their run, node and map
         * element (NULL for a node that is not a map). rev counts a run's state changes:
         * a writer stores a new state only over the rev it read (compare and set). A
         * run's finished_at stays 0 until it ended and no call of it runs: those are the
         * runs a restart picks up again. */
        "CREATE TABLE IF NOT EXISTS workflows ("
        "  id TEXT PRIMARY KEY,"
        "  owner_id TEXT NOT NULL REFERENCES users(id),"
        "  company_id TEXT,"
        "  name TEXT NOT NULL,"
        "  description TEXT NOT NULL DEFAULT '',"
        "  visibility TEXT NOT NULL DEFAULT 'private'"
        "    CHECK (visibility IN ('private', 'company', 'public')),"
        "  latest_version INTEGER NOT NULL DEFAULT 1,"
        "  created_at BIGINT NOT NULL DEFAULT 0,"
        "  updated_at BIGINT NOT NULL DEFAULT 0,"
        "  deleted_at BIGINT NOT NULL DEFAULT 0);"
        "CREATE UNIQUE INDEX IF NOT EXISTS workflows_owner_name_live"
        "  ON workflows (owner_id, name) WHERE deleted_at = 0;"
        "CREATE INDEX IF NOT EXISTS workflows_order ON workflows (created_at, id);"
        "CREATE TABLE IF NOT EXISTS workflow_versions ("
        "  workflow_id TEXT NOT NULL REFERENCES workflows(id),"
        "  version INTEGER NOT NULL,"
        "  definition TEXT NOT NULL,"
        "  input_schema TEXT,"
        "  created_at BIGINT NOT NULL DEFAULT 0,"
        "  PRIMARY KEY (workflow_id, version));"
        "CREATE TABLE IF NOT EXISTS workflow_runs ("
        "  id TEXT PRIMARY KEY,"
        "  workflow_id TEXT NOT NULL REFERENCES workflows(id),"
        "  version INTEGER NOT NULL,"
        "  owner_id TEXT NOT NULL REFERENCES users(id),"
        "  company_id TEXT,"
        "  status TEXT NOT NULL DEFAULT 'running',"
        "  inputs TEXT,"
        "  state TEXT NOT NULL,"
        "  outputs TEXT,"
        "  error TEXT,"
        "  rev BIGINT NOT NULL DEFAULT 0,"
        "  idempotency_key TEXT,"
        "  created_at BIGINT NOT NULL DEFAULT 0,"
        "  finished_at BIGINT NOT NULL DEFAULT 0);"
        "CREATE UNIQUE INDEX IF NOT EXISTS workflow_runs_idempotency"
        "  ON workflow_runs (owner_id, workflow_id, idempotency_key)"
        "  WHERE idempotency_key IS NOT NULL;"
        "CREATE INDEX IF NOT EXISTS workflow_runs_owner ON workflow_runs (owner_id, created_at, id);"
        "CREATE INDEX IF NOT EXISTS workflow_runs_open ON workflow_runs (finished_at)"
        "  WHERE finished_at = 0;"
        "ALTER TABLE tasks ADD COLUMN workflow_run_id TEXT;"
        "ALTER TABLE tasks ADD COLUMN node_id TEXT;"
        "ALTER TABLE tasks ADD COLUMN element_index INTEGER;",
        /* 7: parameter studies and the result cache (docs/studies.md). A study's points
         * are rows of their own, so a point's end is one row changed under the study's
         * lock; inputs_key (a hash of the canonical inputs) finds a point already in the
         * study when it is extended. A task made for a point names it (study_id,
         * point_index); cache_key is set on calls of versions declared "cache" and looked
         * up within the owner's tasks (tasks_cache); cached_from names the task whose
         * result a cache hit copied. */
        "CREATE TABLE IF NOT EXISTS studies ("
        "  id TEXT PRIMARY KEY,"
        "  owner_id TEXT NOT NULL REFERENCES users(id),"
        "  company_id TEXT,"
        "  name TEXT NOT NULL DEFAULT '',"
        "  notes TEXT NOT NULL DEFAULT '',"
        "  target TEXT,"
        "  fixed TEXT,"
        "  design TEXT,"
        "  outputs TEXT,"
        "  concurrency INTEGER NOT NULL DEFAULT 8,"
        "  cache_refresh INTEGER NOT NULL DEFAULT 0,"
        "  status TEXT NOT NULL DEFAULT 'running' CHECK (status IN"
        "    ('running', 'completed', 'cancelled')),"
        "  total INTEGER NOT NULL DEFAULT 0,"
        "  started INTEGER NOT NULL DEFAULT 0,"
        "  completed INTEGER NOT NULL DEFAULT 0,"
        "  failed INTEGER NOT NULL DEFAULT 0,"
        "  cancelled INTEGER NOT NULL DEFAULT 0,"
        "  created_at BIGINT NOT NULL DEFAULT 0,"
        "  finished_at BIGINT NOT NULL DEFAULT 0);"
        "CREATE INDEX IF NOT EXISTS studies_owner ON studies (owner_id, created_at, id);"
        "CREATE INDEX IF NOT EXISTS studies_running ON studies (status);"
        "CREATE TABLE IF NOT EXISTS study_points ("
        "  study_id TEXT NOT NULL REFERENCES studies(id),"
        "  point_index INTEGER NOT NULL,"
        "  inputs TEXT NOT NULL,"
        "  inputs_key TEXT NOT NULL,"
        "  cache_key TEXT,"
        "  task_id TEXT,"
        "  status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN"
        "    ('pending', 'started', 'completed', 'failed', 'cancelled')),"
        "  outputs TEXT,"
        "  error TEXT,"
        "  PRIMARY KEY (study_id, point_index));"
        "CREATE INDEX IF NOT EXISTS study_points_key ON study_points (study_id, inputs_key);"
        "CREATE INDEX IF NOT EXISTS study_points_status ON study_points (study_id, status, point_index);"
        "ALTER TABLE tasks ADD COLUMN study_id TEXT;"
        "ALTER TABLE tasks ADD COLUMN point_index INTEGER;"
        "ALTER TABLE tasks ADD COLUMN cache_key TEXT;"
        "ALTER TABLE tasks ADD COLUMN cached_from TEXT;"
        "CREATE INDEX IF NOT EXISTS tasks_cache ON tasks (owner_id, cache_key, finished_at)"
        "  WHERE cache_key IS NOT NULL;"
        "ALTER TABLE function_versions ADD COLUMN cache INTEGER NOT NULL DEFAULT 0;",
        /* 8: the result cache of workflow versions declared "cache" (docs/workflows.md):
         * a run carries the key of its version and canonical inputs, looked up within
         * the owner's runs (workflow_runs_cache); cached_from names the run whose
         * outputs a hit copied. */
        "ALTER TABLE workflow_runs ADD COLUMN cache_key TEXT;"
        "ALTER TABLE workflow_runs ADD COLUMN cached_from TEXT;"
        "CREATE INDEX IF NOT EXISTS workflow_runs_cache ON workflow_runs (owner_id, cache_key, finished_at)"
        "  WHERE cache_key IS NOT NULL;"
        /* and a run made for a point of a study of a workflow names it (the point's
         * task_id is then the run's id) */
        "ALTER TABLE workflow_runs ADD COLUMN study_id TEXT;"
        "ALTER TABLE workflow_runs ADD COLUMN point_index INTEGER;"
        /* and the tasks and runs a study groups (docs/studies.md, "A study that groups") */
        "CREATE TABLE IF NOT EXISTS study_members ("
        "  study_id TEXT NOT NULL REFERENCES studies(id),"
        "  kind TEXT NOT NULL CHECK (kind IN ('task', 'run')),"
        "  member_id TEXT NOT NULL,"
        "  added_at BIGINT NOT NULL DEFAULT 0,"
        "  PRIMARY KEY (study_id, kind, member_id));",
        /* 9: a company's retention of tasks in days (NULL: forever); the
         * collector looks for old tasks by company and age. */
        "ALTER TABLE companies ADD COLUMN task_retention_days BIGINT;"
        "CREATE INDEX IF NOT EXISTS tasks_company_age ON tasks (company_id, queued_at);",
        /* 10: the id of the API request that created a task, carried into the
         * worker's and the executor's log lines about it (docs/operations.md#logs) */
        "ALTER TABLE tasks ADD COLUMN request_id TEXT;",
        /* 11: the solver binaries a version's sandbox may start, a JSON list
         * such as ["calculix", "gmsh"] (docs/functions.md, the solver environment);
         * NULL for versions made before, which declare none. */
        "ALTER TABLE function_versions ADD COLUMN solvers TEXT;",
        /* 12: a running task's last progress ({"fraction", "message", "at"}, kept
         * after it ends) and the logs it printed so far (live_logs, emptied when it ends:
         * its logs are then in logs or logs_blob, as before). */
        "ALTER TABLE tasks ADD COLUMN progress TEXT;"
        "ALTER TABLE tasks ADD COLUMN live_logs TEXT;",
        /* 13 (usage, quotas and the operators' figures; docs/operations.md#usage-and-quotas):
         * usage_daily holds per-day counters of the calls that ran (one row per UTC day of
         * their end, owner, company ('' for none) and function), added to in the
         * transaction that ends a task, so usage, monthly CPU and storage are read from
         * a few rows whatever the count of tasks; the rows of the tasks ended before are
         * filled in here. quotas: a company's (user_id '') and a member's own limits,
         * NULL = unlimited. calls_daily counts the calls made (tasks stored, cache hits
         * excepted) per UTC day of their making, owner and company, added to with each
         * task's insert: the day's count of a quota is one row. tasks.stored_bytes: what
         * a task keeps (result, error, logs, artifacts). The partial indexes count a
         * user's or company's calls not yet ended; tasks_finished is the operators'
         * window. users.operator: the platform's operators (GET /api/v1/admin/stats). */
        "ALTER TABLE tasks ADD COLUMN stored_bytes BIGINT NOT NULL DEFAULT 0;"
        "ALTER TABLE users ADD COLUMN operator INTEGER NOT NULL DEFAULT 0;"
        "CREATE TABLE IF NOT EXISTS usage_daily ("
        "  day BIGINT NOT NULL,"
        "  owner_id TEXT NOT NULL,"
        "  company_id TEXT NOT NULL DEFAULT '',"
        "  function_id TEXT NOT NULL,"
        "  calls BIGINT NOT NULL DEFAULT 0,"
        "  failed BIGINT NOT NULL DEFAULT 0,"
        "  wall_ms BIGINT NOT NULL DEFAULT 0,"
        "  cpu_ms BIGINT NOT NULL DEFAULT 0,"
        "  max_peak_memory_kb BIGINT NOT NULL DEFAULT 0,"
        "  stored_bytes BIGINT NOT NULL DEFAULT 0,"
        "  PRIMARY KEY (day, owner_id, company_id, function_id));"
        "CREATE INDEX IF NOT EXISTS usage_daily_owner ON usage_daily (owner_id, day);"
        "CREATE INDEX IF NOT EXISTS usage_daily_company ON usage_daily (company_id, day);"
        "INSERT INTO usage_daily (day, owner_id, company_id, function_id, calls, failed, wall_ms,"
        "  cpu_ms, max_peak_memory_kb)"
        "  SELECT finished_at / 86400000, owner_id, COALESCE(company_id, ''), function_id, COUNT(*),"
        "  SUM(CASE WHEN status IN ('failed', 'timed_out') THEN 1 ELSE 0 END), SUM(execution_ms),"
        "  SUM(cpu_ms), MAX(peak_memory_kb) FROM tasks"
        "  WHERE finished_at > 0 AND started_at > 0 AND cached_from IS NULL"
        "  GROUP BY finished_at / 86400000, owner_id, COALESCE(company_id, ''), function_id;"
        "CREATE TABLE IF NOT EXISTS quotas ("
        "  company_id TEXT NOT NULL,"
        "  user_id TEXT NOT NULL DEFAULT '',"
        "  concurrent_calls BIGINT,"
        "  calls_per_day BIGINT,"
        "  cpu_seconds_per_month BIGINT,"
        "  storage_mb BIGINT,"
        "  updated_at BIGINT NOT NULL DEFAULT 0,"
        "  PRIMARY KEY (company_id, user_id));"
        "CREATE INDEX IF NOT EXISTS tasks_active_owner ON tasks (owner_id, status)"
        "  WHERE status IN ('queued', 'running');"
        "CREATE INDEX IF NOT EXISTS tasks_active_company ON tasks (company_id, status)"
        "  WHERE status IN ('queued', 'running');"
        "CREATE TABLE IF NOT EXISTS calls_daily ("
        "  day BIGINT NOT NULL,"
        "  owner_id TEXT NOT NULL,"
        "  company_id TEXT NOT NULL DEFAULT '',"
        "  calls BIGINT NOT NULL DEFAULT 0,"
        "  PRIMARY KEY (owner_id, day, company_id));"
        "CREATE INDEX IF NOT EXISTS calls_daily_company ON calls_daily (company_id, day);"
        "INSERT INTO calls_daily (day, owner_id, company_id, calls)"
        "  SELECT queued_at / 86400000, owner_id, COALESCE(company_id, ''), COUNT(*) FROM tasks"
        "  WHERE cached_from IS NULL"
        "  GROUP BY queued_at / 86400000, owner_id, COALESCE(company_id, '');"
        "CREATE INDEX IF NOT EXISTS tasks_finished ON tasks (finished_at);",
        /* 14 (verification cases and review; docs/functions.md#verification-cases):
         * a version's reference cases as uploaded (verification_cases), the outcome of
         * their run ({"status", "cases"}: verification) and its review ({"status",
         * "reviewer_id", "at", "comments"}); a task run as a case names its version
         * ("function_id:version") and the case's index; a company's settings
         * ({"require_review_to_publish": bool}). */
        "ALTER TABLE function_versions ADD COLUMN verification_cases TEXT;"
        "ALTER TABLE function_versions ADD COLUMN verification TEXT;"
        "ALTER TABLE function_versions ADD COLUMN review TEXT;"
        "ALTER TABLE tasks ADD COLUMN verification_of TEXT;"
        "ALTER TABLE tasks ADD COLUMN verification_case INTEGER;"
        "CREATE INDEX IF NOT EXISTS tasks_verification ON tasks (verification_of)"
        "  WHERE verification_of IS NOT NULL;"
        "ALTER TABLE companies ADD COLUMN settings TEXT;",
        /* 15 (units; docs/functions.md#units): a version's output schema (the result's
         * fields and their units), a task's inputs as sent (before the conversion of
         * quantities to the declared units) and the checks its result declared. */
        "ALTER TABLE function_versions ADD COLUMN output_schema TEXT;"
        "ALTER TABLE tasks ADD COLUMN inputs_given TEXT;"
        "ALTER TABLE tasks ADD COLUMN checks TEXT;",
        /* 16: the API request that made a workflow run or a study, handed to
         * the tasks it makes later (tasks.request_id), so their log lines name it. */
        "ALTER TABLE workflow_runs ADD COLUMN request_id TEXT;"
        "ALTER TABLE studies ADD COLUMN request_id TEXT;",
        /* 17 (envs; per-function requirements, docs/functions.md#requirements): an
         * environment is a resolved set of wheels, its id the sha256 of its canonical lock
         * (resolved: [{"name","version","sha256"}]); status queued -> building -> ready |
         * failed, with the build's log, error and build_ms. A version that declares
         * requirements names its environment (function_versions.environment_id). */
        "CREATE TABLE IF NOT EXISTS environments ("
        "  id TEXT PRIMARY KEY,"
        "  status TEXT NOT NULL,"
        "  requirements TEXT NOT NULL,"
        "  resolved TEXT,"
        "  log TEXT NOT NULL DEFAULT '',"
        "  build_error TEXT,"
        "  build_ms BIGINT,"
        "  created_at BIGINT NOT NULL);"
        "ALTER TABLE function_versions ADD COLUMN environment_id TEXT;",
        /* 18 (layers; environments on every node, docs/operations.md#environments): the
         * sha256 of the environment's layer archive in the object store
         * (environments/<id>.tar), NULL until its builder stored one. */
        "ALTER TABLE environments ADD COLUMN archive_sha256 TEXT;",
};

/* Columns whose text is JSON: parsed on the way out. */
static inline bool is_json_column(const char *name) {
        static const char *const names[] = {
                "requirements", "input_schema", "limits", "inputs", "result", "error", "artifacts",
                "tags",
                "scopes", "detail",
                "definition", "state", "outputs", /* workflows */
                "target", "fixed", "design", /* studies, study_points */
                "solvers", /* function_versions */
                "progress", /* tasks (events) */
                "verification_cases", "verification", "review", /* function_versions (verify) */
                "settings", /* companies (review) */
                "output_schema", "inputs_given", "checks", /* units */
                "resolved", /* environments (the lock) */
        };
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (strcmp(name, names[i]) == 0)
                        return true;
        return false;
}

/* ---- columns a caller's row may set ---- */

enum col_kind { COL_TEXT, COL_INT, COL_JSON };
enum {
        COL_REQUIRED = 1 << 0, /* absent or null: -EINVAL */
        COL_NOW = 1 << 1,      /* absent: the current time */
        COL_NULL = 1 << 2,     /* COL_INT: absent is NULL, not 0 */
};

/* How a row's field from the caller is bound to a column. */
struct col {
        const char *name;
        enum col_kind kind;
        unsigned flags;
        const char *def;                 /* COL_TEXT: stored when absent (else NULL) */
        const char *const *allowed;      /* COL_TEXT: NULL-terminated list of values */
};

static const char *const roles[] = { "admin", "member", "viewer", NULL };
static const char *const token_kinds[] = { "session", "api", NULL };
static const char *const visibilities[] = { "private", "company", "public", NULL };
static const char *const end_statuses[] = { "completed", "failed", "timed_out", "cancelled", NULL };

static const struct col user_cols[] = {
        { "id", COL_TEXT, COL_REQUIRED, NULL, NULL },
        { "email", COL_TEXT, COL_REQUIRED, NULL, NULL },
        { "password_hash", COL_TEXT, 0, NULL, NULL },
        { "company_id", COL_TEXT, 0, NULL, NULL },
        { "role", COL_TEXT, 0, "member", roles },
        { "created_at", COL_INT, COL_NOW, NULL, NULL },
        { "external_id", COL_TEXT, 0, NULL, NULL },
};

static const struct col token_cols[] = {
        { "id", COL_TEXT, COL_REQUIRED, NULL, NULL },
        { "user_id", COL_TEXT, COL_REQUIRED, NULL, NULL },
        { "token_hash", COL_TEXT, COL_REQUIRED, NULL, NULL },
        { "kind", COL_TEXT, COL_REQUIRED, NULL, token_kinds },
        { "name", COL_TEXT, 0, NULL, NULL },
        { "created_at", COL_INT, COL_NOW, NULL, NULL },
        { "expires_at", COL_INT, 0, NULL, NULL },
        { "revoked_at", COL_INT, 0, NULL, NULL },
        { "last_used_at", COL_INT, 0, NULL, NULL },
        { "scopes", COL_JSON, 0, NULL, NULL },
};

static const struct col audit_cols[] = {
        { "id", COL_TEXT, COL_REQUIRED, NULL, NULL },
        { "at", COL_INT, COL_NOW, NULL, NULL },
        { "kind", COL_TEXT, COL_REQUIRED, NULL, NULL },
        { "actor_id", COL_TEXT, 0, NULL, NULL },
        { "company_id", COL_TEXT, 0, NULL, NULL },
        { "client", COL_TEXT, 0, NULL, NULL },
        { "target_id", COL_TEXT, 0, NULL, NULL },
        { "detail", COL_JSON, 0, NULL, NULL },
};

static const struct col function_cols[] = {
        { "id", COL_TEXT, COL_REQUIRED, NULL, NULL },
        { "owner_id", COL_TEXT, COL_REQUIRED, NULL, NULL },
        { "company_id", COL_TEXT, 0, NULL, NULL },
        { "name", COL_TEXT, COL_REQUIRED, NULL, NULL },
        { "description", COL_TEXT, 0, "", NULL },
        { "visibility", COL_TEXT, 0, "private", visibilities },
        { "created_at", COL_INT, COL_NOW, NULL, NULL },
        { "updated_at", COL_INT, COL_NOW, NULL, NULL },
        { "tags", COL_JSON, 0, "[]", NULL },
        { "search", COL_TEXT, 0, "", NULL },
};

static const struct col version_cols[] = {
        { "function_id", COL_TEXT, COL_REQUIRED, NULL, NULL },
        { "version", COL_INT, COL_REQUIRED, NULL, NULL },
        { "code", COL_TEXT, COL_REQUIRED, NULL, NULL },
        { "handler", COL_TEXT, 0, NULL, NULL },
        { "requirements", COL_JSON, 0, NULL, NULL },
        { "input_schema", COL_JSON, 0, NULL, NULL },
        { "limits", COL_JSON, 0, NULL, NULL },
        { "isolation", COL_TEXT, 0, NULL, NULL },
        { "created_at", COL_INT, COL_NOW, NULL, NULL },
        { "cache", COL_INT, 0, NULL, NULL }, /* 1: calls answered from the result cache */
        { "solvers", COL_JSON, 0, NULL, NULL }, /* ["calculix", "gmsh"]: the solver environment */
        /* verification cases and their outcome, the review (verify.c, review.c) */
        { "verification_cases", COL_JSON, 0, NULL, NULL },
        { "verification", COL_JSON, 0, NULL, NULL },
        { "review", COL_JSON, 0, NULL, NULL },
        { "output_schema", COL_JSON, 0, NULL, NULL }, /* the result's fields and units */
        { "environment_id", COL_TEXT, 0, NULL, NULL }, /* its requirements' environment, NULL: base */
};

static const struct col function_update_cols[] = {
        { "description", COL_TEXT, 0, "", NULL },
        { "visibility", COL_TEXT, COL_REQUIRED, NULL, visibilities },
        { "tags", COL_JSON, COL_REQUIRED, NULL, NULL },
        { "search", COL_TEXT, COL_REQUIRED, NULL, NULL },
};

static const struct col task_cols[] = {
        { "id", COL_TEXT, COL_REQUIRED, NULL, NULL },
        { "function_id", COL_TEXT, COL_REQUIRED, NULL, NULL },
        { "version", COL_INT, COL_REQUIRED, NULL, NULL },
        { "owner_id", COL_TEXT, COL_REQUIRED, NULL, NULL },
        { "company_id", COL_TEXT, 0, NULL, NULL },
        { "inputs", COL_JSON, 0, NULL, NULL },
        { "idempotency_key", COL_TEXT, 0, NULL, NULL },
        { "queued_at", COL_INT, COL_NOW, NULL, NULL },
        /* a task of a workflow run */
        { "workflow_run_id", COL_TEXT, 0, NULL, NULL },
        { "node_id", COL_TEXT, 0, NULL, NULL },
        { "element_index", COL_INT, COL_NULL, NULL, NULL },
        /* studies and the result cache */
        { "study_id", COL_TEXT, 0, NULL, NULL },
        { "point_index", COL_INT, 0, NULL, NULL },
        { "cache_key", COL_TEXT, 0, NULL, NULL },
        /* the API request that created it (logs) */
        { "request_id", COL_TEXT, 0, NULL, NULL },
        /* a version's verification case ("function_id:version", the case's index) */
        { "verification_of", COL_TEXT, 0, NULL, NULL },
        { "verification_case", COL_INT, COL_NULL, NULL, NULL },
        /* the inputs as the caller sent them (quantities before conversion) */
        { "inputs_given", COL_JSON, 0, NULL, NULL },
};

/* ---- workflows ---- */

static const struct col workflow_cols[] = {
        { "id", COL_TEXT, COL_REQUIRED, NULL, NULL },
        { "owner_id", COL_TEXT, COL_REQUIRED, NULL, NULL },
        { "company_id", COL_TEXT, 0, NULL, NULL },
        { "name", COL_TEXT, COL_REQUIRED, NULL, NULL },
        { "description", COL_TEXT, 0, "", NULL },
        { "visibility", COL_TEXT, 0, "private", visibilities },
        { "created_at", COL_INT, COL_NOW, NULL, NULL },
        { "updated_at", COL_INT, COL_NOW, NULL, NULL },
};

static const struct col workflow_version_cols[] = {
        { "workflow_id", COL_TEXT, COL_REQUIRED, NULL, NULL },
        { "version", COL_INT, COL_REQUIRED, NULL, NULL },
        { "definition", COL_JSON, COL_REQUIRED, NULL, NULL },
        { "input_schema", COL_JSON, 0, NULL, NULL },
        { "created_at", COL_INT, COL_NOW, NULL, NULL },
};

static const struct col workflow_update_cols[] = {
        { "description", COL_TEXT, 0, "", NULL },
        { "visibility", COL_TEXT, 0, "private", visibilities },
};

static const char *const run_statuses[] = { "running", "completed", "failed", "cancelled", NULL };

static const struct col workflow_run_cols[] = {
        { "id", COL_TEXT, COL_REQUIRED, NULL, NULL },
        { "workflow_id", COL_TEXT, COL_REQUIRED, NULL, NULL },
        { "version", COL_INT, COL_REQUIRED, NULL, NULL },
        { "owner_id", COL_TEXT, COL_REQUIRED, NULL, NULL },
        { "company_id", COL_TEXT, 0, NULL, NULL },
        { "status", COL_TEXT, 0, "running", run_statuses },
        { "inputs", COL_JSON, 0, NULL, NULL },
        { "state", COL_JSON, COL_REQUIRED, NULL, NULL },
        { "outputs", COL_JSON, 0, NULL, NULL },
        { "error", COL_JSON, 0, NULL, NULL },
        { "idempotency_key", COL_TEXT, 0, NULL, NULL },
        { "created_at", COL_INT, COL_NOW, NULL, NULL },
        { "finished_at", COL_INT, 0, NULL, NULL },
        { "cache_key", COL_TEXT, 0, NULL, NULL },
        { "cached_from", COL_TEXT, 0, NULL, NULL },
        { "study_id", COL_TEXT, 0, NULL, NULL },
        { "point_index", COL_INT, COL_NULL, NULL, NULL },
        { "request_id", COL_TEXT, 0, NULL, NULL }, /* the API request that made it (logs) */
};

/* What a scheduling step stores (workflow_run_update). */
static const struct col workflow_run_update_cols[] = {
        { "state", COL_JSON, COL_REQUIRED, NULL, NULL },
        { "status", COL_TEXT, COL_REQUIRED, NULL, run_statuses },
        { "outputs", COL_JSON, 0, NULL, NULL },
        { "error", COL_JSON, 0, NULL, NULL },
        { "finished_at", COL_INT, 0, NULL, NULL },
};

/* What task_finish may set, besides status. */
static const struct col finish_cols[] = {
        { "status", COL_TEXT, COL_REQUIRED, NULL, end_statuses },
        { "finished_at", COL_INT, COL_NOW, NULL, NULL },
        { "result", COL_JSON, 0, NULL, NULL },
        { "result_blob", COL_TEXT, 0, NULL, NULL },
        { "error", COL_JSON, 0, NULL, NULL },
        { "error_type", COL_TEXT, 0, NULL, NULL },
        { "error_blob", COL_TEXT, 0, NULL, NULL },
        { "logs", COL_TEXT, 0, NULL, NULL },
        { "logs_blob", COL_TEXT, 0, NULL, NULL },
        { "logs_truncated", COL_INT, 0, NULL, NULL },
        { "artifacts", COL_JSON, 0, NULL, NULL },
        { "execution_ms", COL_INT, 0, NULL, NULL },
        { "cpu_ms", COL_INT, 0, NULL, NULL },
        { "peak_memory_kb", COL_INT, 0, NULL, NULL },
        { "live_logs", COL_TEXT, 0, NULL, NULL }, /* events: null once the logs are kept */
        { "stored_bytes", COL_INT, 0, NULL, NULL }, /* usage: what the task keeps */
        { "checks", COL_JSON, 0, NULL, NULL }, /* units: the result's checks, with utilisation */
};

/* ---- SQL texts shared by the backends ---- */

static const char SQL_MIGRATIONS_TABLE[] =
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "  version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)";
static const char SQL_MIGRATION_MAX[] =
        "SELECT COALESCE(MAX(version), 0) AS n FROM schema_migrations";
static const char SQL_MIGRATION_HAS[] = "SELECT 1 FROM schema_migrations WHERE version = ?1";
static const char SQL_MIGRATION_ADD[] =
        "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)";
static const char SQL_COMPANY_INSERT[] =
        "INSERT INTO companies (id, name, created_at) VALUES (?1, ?2, ?3) "
        "ON CONFLICT (name) DO NOTHING";
static const char SQL_COMPANY_BY_NAME[] = "SELECT * FROM companies WHERE name = ?1";
/* Users come back with their company's name (null without one), for display. */
static const char SQL_USER_BY_ID[] =
        "SELECT u.*, c.name AS company FROM users u LEFT JOIN companies c ON c.id = u.company_id"
        " WHERE u.id = ?1";
static const char SQL_USER_BY_EMAIL[] =
        "SELECT u.*, c.name AS company FROM users u LEFT JOIN companies c ON c.id = u.company_id"
        " WHERE u.email = ?1";
static const char SQL_USER_SET_PASSWORD[] = "UPDATE users SET password_hash = ?1 WHERE id = ?2";
static const char SQL_USER_BY_EXTERNAL_ID[] =
        "SELECT u.*, c.name AS company FROM users u LEFT JOIN companies c ON c.id = u.company_id"
        " WHERE u.external_id = ?1";
/* What an OpenID provider says of a user on each sight: email, role and company. */
static const char SQL_USER_SET_IDENTITY[] =
        "UPDATE users SET email = ?1, role = ?2, company_id = ?3 WHERE id = ?4";
static const char SQL_TOKEN_LIVE[] =
        "SELECT * FROM tokens WHERE token_hash = ?1 AND revoked_at = 0 "
        "AND (expires_at = 0 OR expires_at > ?2)";
/* last_used_at is kept to the minute: a write per request would serialize every
 * authenticated call on the database's write lock. */
static const char SQL_TOKEN_TOUCH[] =
        "UPDATE tokens SET last_used_at = ?1 WHERE id = ?2 AND last_used_at < ?1 - 60000";
static const char SQL_TOKEN_LIST[] =
        "SELECT id, user_id, kind, name, created_at, expires_at, revoked_at, last_used_at, scopes "
        "FROM tokens WHERE user_id = ?1 AND kind = 'api' ORDER BY created_at DESC, id DESC";
static const char SQL_TOKEN_REVOKE[] =
        "UPDATE tokens SET revoked_at = ?1 WHERE id = ?2 AND user_id = ?3 AND revoked_at = 0";
static const char SQL_TOKEN_OF_USER[] = "SELECT 1 FROM tokens WHERE id = ?1 AND user_id = ?2";
/* After a password change: every login session of the user but the one that changed it
 * (?3, may be NULL) stops working. API tokens are kept: they are revoked one by one. */
static const char SQL_TOKEN_REVOKE_SESSIONS[] =
        "UPDATE tokens SET revoked_at = ?1 WHERE user_id = ?2 AND kind = 'session'"
        " AND revoked_at = 0 AND (?3 IS NULL OR id <> ?3)";
/* The audit log of one company (?1; NULL: the events of no company), newest first.
 * "(?1 IS NULL AND company_id IS NULL)" says what SQLite's IS and PostgreSQL's IS NOT
 * DISTINCT FROM would, in words both dialects read. */
static const char SQL_AUDIT_LIST[] =
        "SELECT * FROM audit WHERE (company_id = ?1 OR (?1 IS NULL AND company_id IS NULL))"
        " AND (?2 IS NULL OR kind = ?2)"
        " AND (?3 IS NULL OR actor_id = ?3)"
        " AND (?4 IS NULL OR at >= ?4)"
        " AND (?5 IS NULL OR at < ?5 OR (at = ?5 AND id < ?6))"
        " ORDER BY at DESC, id DESC LIMIT ?7";
static const char SQL_FUNCTION_GET[] = "SELECT * FROM functions WHERE id = ?1 AND deleted_at = 0";
static const char SQL_FUNCTION_FIND[] =
        "SELECT * FROM functions WHERE owner_id = ?1 AND name = ?2 AND deleted_at = 0";
/* Visible: the viewer's own, their company's "company" functions, and "public" ones. */
/* Each row also carries its latest version's fields (not the code), so a page of
 * functions is one query, not one more per function. */
static const char SQL_FUNCTION_LIST[] =
        "SELECT f.*, v.version, v.handler, v.requirements, v.input_schema, v.limits, v.isolation,"
        " v.cache"
        ", v.solvers"
        ", v.verification, v.review"
        ", v.environment_id"
        " FROM functions f JOIN function_versions v"
        "   ON v.function_id = f.id AND v.version = f.latest_version"
        " WHERE f.deleted_at = 0"
        " AND (f.owner_id = ?1 OR (f.visibility = 'company' AND f.company_id = ?2)"
        "      OR f.visibility = 'public')"
        " AND (?3 IS NULL OR f.name = ?3)"
        " AND (?4 IS NULL OR f.created_at > ?4 OR (f.created_at = ?4 AND f.id > ?5))"
        " ORDER BY f.created_at, f.id LIMIT ?6";
static const char SQL_FUNCTION_LATEST[] =
        "SELECT latest_version FROM functions WHERE id = ?1 AND deleted_at = 0";
/* Versions are read whether or not the function was deleted since: a task queued
 * before the deletion still runs the code it was queued for. */
static const char SQL_VERSION_GET[] =
        "SELECT v.* FROM function_versions v JOIN functions f ON f.id = v.function_id"
        " WHERE v.function_id = ?1"
        " AND v.version = CASE WHEN ?2 = 0 THEN f.latest_version ELSE ?2 END";
static const char SQL_VERSION_LIST[] =
        "SELECT function_id, version, handler, requirements, input_schema, limits, isolation,"
        " created_at, verification, review FROM function_versions WHERE function_id = ?1 ORDER BY version DESC";
static const char SQL_FUNCTION_DELETE[] =
        "UPDATE functions SET deleted_at = ?1, updated_at = ?1 WHERE id = ?2 AND deleted_at = 0";
/* A whole task row. The result comes back as "result_json", its stored JSON text
 * unparsed (is_json_column does not name it): a reader sends those bytes as they are,
 * and a small reply that parses into a huge tree is never built again on a read. */
#define TASK_ROW_COLUMNS                                                                       \
        "id, function_id, version, owner_id, company_id, status, inputs,"                      \
        " result AS result_json, result_blob, error, error_type, error_blob, logs, logs_blob," \
        " logs_truncated, artifacts, queued_at, started_at, finished_at, execution_ms,"        \
        " cpu_ms, peak_memory_kb, attempts, worker_id, idempotency_key, workflow_run_id,"  \
        " node_id, element_index, study_id, point_index, cache_key, cached_from, request_id, progress," \
        " verification_of, verification_case, inputs_given, checks"
/* A task in a list: a summary, which reads none of inputs, result, error, logs and
 * artifacts (company_id: core keeps a company's tasks apart). */
#define TASK_SUMMARY_COLUMNS                                                                   \
        "id, function_id, version, owner_id, company_id, status, error_type, queued_at,"       \
        " started_at, finished_at, execution_ms, cpu_ms, peak_memory_kb, attempts"
static const char SQL_TASK_BY_KEY[] =
        "SELECT " TASK_ROW_COLUMNS " FROM tasks"
        " WHERE owner_id = ?1 AND function_id = ?2 AND idempotency_key = ?3";
static const char SQL_JOB_PUSH[] =
        "INSERT INTO jobs (task_id, enqueued_at) SELECT id, queued_at FROM tasks WHERE id = ?1";
static const char SQL_TASK_GET[] = "SELECT " TASK_ROW_COLUMNS " FROM tasks WHERE id = ?1";
static const char SQL_TASK_EXISTS[] = "SELECT 1 FROM tasks WHERE id = ?1";
static const char SQL_TASK_LIST[] =
        "SELECT " TASK_SUMMARY_COLUMNS " FROM tasks WHERE owner_id = ?1"
        " AND (?2 IS NULL OR function_id = ?2)"
        " AND (?3 IS NULL OR status = ?3)"
        " AND (?4 IS NULL OR queued_at < ?4 OR (queued_at = ?4 AND id < ?5))"
        " AND (?7 IS NULL OR queued_at >= ?7) AND (?8 IS NULL OR queued_at < ?8)"
        " ORDER BY queued_at DESC, id DESC LIMIT ?6";
static const char SQL_TASK_START[] =
        "UPDATE tasks SET status = 'running', started_at = ?1, worker_id = ?2,"
        " attempts = attempts + 1 WHERE id = ?3 AND status = 'queued'";
static const char SQL_TASK_RETRY[] =
        "UPDATE tasks SET started_at = ?1, worker_id = ?2, attempts = attempts + 1"
        " WHERE id = ?3 AND status = 'running'";
static const char SQL_JOB_DELETE[] = "DELETE FROM jobs WHERE task_id = ?1";
static const char SQL_TASK_REQUEUE[] =
        "UPDATE tasks SET status = 'queued', worker_id = NULL WHERE id = ?1 AND status = 'running'";
/* The WHERE on the SELECT keeps SQLite's parser from reading ON as a join. */
static const char SQL_JOB_RELEASE[] =
        "INSERT INTO jobs (task_id, enqueued_at) SELECT id, queued_at FROM tasks WHERE id = ?1"
        " ON CONFLICT (task_id) DO UPDATE SET worker_id = NULL, lease_until = 0";
static const char SQL_JOB_EXTEND[] =
        "UPDATE jobs SET lease_until = ?1 WHERE task_id = ?2 AND worker_id = ?3";
/* ---- companies and the catalogue (docs/identity.md) ---- */
static const char SQL_COMPANY_GET[] =
        "SELECT c.id, c.name, c.created_at,"
        " (SELECT COUNT(*) FROM users u WHERE u.company_id = c.id) AS members"
        " FROM companies c WHERE c.id = ?1";
static const char SQL_COMPANY_MEMBERS[] =
        "SELECT id, email, role, created_at, external_id FROM users WHERE company_id = ?1"
        " ORDER BY created_at, id";
static const char SQL_MEMBER_ROLE[] = "SELECT role FROM users WHERE id = ?1 AND company_id = ?2";
/* The admins of a company other than one user: a change that leaves none is refused. */
static const char SQL_OTHER_ADMINS[] =
        "SELECT COUNT(*) AS n FROM users WHERE company_id = ?1 AND role = 'admin' AND id <> ?2";
static const char SQL_MEMBER_SET_ROLE[] =
        "UPDATE users SET role = ?1 WHERE id = ?2 AND company_id = ?3";
/* A removed member leaves with nothing: no company, no password (no local login), the
 * least role; its tokens are revoked by SQL_TOKENS_REVOKE_ALL in the same transaction. */
static const char SQL_MEMBER_REMOVE[] =
        "UPDATE users SET company_id = NULL, role = 'viewer', password_hash = NULL"
        " WHERE id = ?1 AND company_id = ?2";
static const char SQL_TOKENS_REVOKE_ALL[] =
        "UPDATE tokens SET revoked_at = ?1 WHERE user_id = ?2 AND revoked_at = 0";
/* Public live functions, newest first. ?1 a LIKE pattern for the search text or the
 * author's email, ?2 a LIKE pattern for one tag in the JSON text, ?3 an exact author
 * email, ?4 a LIKE pattern for an author's name part ("name@%"); NULL for "any".
 * Patterns escape with a backslash. */
static const char SQL_CATALOGUE[] =
        "SELECT f.id, f.name, f.description, f.tags, u.email AS author,"
        " f.latest_version AS version, v.input_schema, f.created_at, f.updated_at"
        " FROM functions f JOIN users u ON u.id = f.owner_id"
        " JOIN function_versions v ON v.function_id = f.id AND v.version = f.latest_version"
        " WHERE f.deleted_at = 0 AND f.visibility = 'public'"
        " AND (?1 IS NULL OR f.search LIKE ?1 ESCAPE '\\' OR u.email LIKE ?1 ESCAPE '\\')"
        " AND (?2 IS NULL OR f.tags LIKE ?2 ESCAPE '\\')"
        " AND (?3 IS NULL OR u.email = ?3)"
        " AND (?4 IS NULL OR u.email LIKE ?4 ESCAPE '\\')"
        " AND (?5 IS NULL OR f.created_at < ?5 OR (f.created_at = ?5 AND f.id < ?6))"
        " ORDER BY f.created_at DESC, f.id DESC LIMIT ?7";

/* Claim the oldest claimable job: one statement. SQLite takes its write lock when the
 * statement starts, so nothing changes between the choice and the claim; PostgreSQL's
 * subquery locks the row it picks and skips rows another claimer holds right now (a row
 * whose lease was renewed meanwhile is re-checked against the WHERE after the lock, READ
 * COMMITTED), so workers on many hosts claim at once and never get the same job. */
static const char SQL_JOB_CLAIM[] =
        "UPDATE jobs SET worker_id = ?1, lease_until = ?2 WHERE task_id = ("
        " SELECT task_id FROM jobs WHERE lease_until = 0 OR lease_until < ?3"
        " ORDER BY enqueued_at, task_id LIMIT 1)"
        " RETURNING task_id";
static const char SQL_JOB_CLAIM_SKIP_LOCKED[] =
        "UPDATE jobs SET worker_id = ?1, lease_until = ?2 WHERE task_id = ("
        " SELECT task_id FROM jobs WHERE lease_until = 0 OR lease_until < ?3"
        " ORDER BY enqueued_at, task_id LIMIT 1 FOR UPDATE SKIP LOCKED)"
        " RETURNING task_id";
/* With row locks: the function row is locked until the transaction ends, so two updates
 * at once number their versions one after the other (SQLite's single writer does this
 * by itself). */
static const char SQL_FUNCTION_LATEST_LOCK[] =
        "SELECT latest_version FROM functions WHERE id = ?1 AND deleted_at = 0 FOR UPDATE";
/* With row locks: the company's admins are locked until the transaction ends, so two
 * admins who demote (or remove) each other at once are counted one after the other: the
 * second sees the first's change and is refused. */
static const char SQL_ADMINS_LOCK[] =
        "SELECT id FROM users WHERE company_id = ?1 AND role = 'admin' FOR UPDATE";

/* ---- workflows ---- */
static const char SQL_WORKFLOW_GET[] = "SELECT * FROM workflows WHERE id = ?1 AND deleted_at = 0";
static const char SQL_WORKFLOW_FIND[] =
        "SELECT * FROM workflows WHERE owner_id = ?1 AND name = ?2 AND deleted_at = 0";
/* Visible as functions are: the viewer's own, their company's "company" ones, "public". */
static const char SQL_WORKFLOW_LIST[] =
        "SELECT * FROM workflows WHERE deleted_at = 0"
        " AND (owner_id = ?1 OR (visibility = 'company' AND company_id = ?2)"
        "      OR visibility = 'public')"
        " AND (?3 IS NULL OR name = ?3)"
        " AND (?4 IS NULL OR created_at > ?4 OR (created_at = ?4 AND id > ?5))"
        " ORDER BY created_at, id LIMIT ?6";
static const char SQL_WORKFLOW_LATEST[] =
        "SELECT latest_version FROM workflows WHERE id = ?1 AND deleted_at = 0";
static const char SQL_WORKFLOW_LATEST_LOCK[] =
        "SELECT latest_version FROM workflows WHERE id = ?1 AND deleted_at = 0 FOR UPDATE";
static const char SQL_WORKFLOW_VERSION_GET[] =
        "SELECT v.* FROM workflow_versions v JOIN workflows w ON w.id = v.workflow_id"
        " WHERE v.workflow_id = ?1"
        " AND v.version = CASE WHEN ?2 = 0 THEN w.latest_version ELSE ?2 END";
static const char SQL_WORKFLOW_DELETE[] =
        "UPDATE workflows SET deleted_at = ?1, updated_at = ?1 WHERE id = ?2 AND deleted_at = 0";
static const char SQL_WORKFLOW_RUN_GET[] = "SELECT * FROM workflow_runs WHERE id = ?1";
static const char SQL_WORKFLOW_RUN_BY_KEY[] =
        "SELECT * FROM workflow_runs WHERE owner_id = ?1 AND workflow_id = ?2"
        " AND idempotency_key = ?3";
/* A run's list: no state (it may be large); newest first. */
static const char SQL_WORKFLOW_RUN_LIST[] =
        "SELECT id, workflow_id, version, owner_id, company_id, status, created_at, finished_at"
        " FROM workflow_runs WHERE owner_id = ?1 AND (?2 IS NULL OR workflow_id = ?2)"
        " AND (?3 IS NULL OR status = ?3)"
        " AND (?4 IS NULL OR created_at < ?4 OR (created_at = ?4 AND id < ?5))"
        " ORDER BY created_at DESC, id DESC LIMIT ?6";
/* The result cache of a workflow version: the owner's newest completed run with the key
 * that is not itself a copy (so a hit always names the run that computed it). */
static const char SQL_WORKFLOW_RUN_CACHE_FIND[] =
        "SELECT * FROM workflow_runs WHERE owner_id = ?1 AND cache_key = ?2 AND status = 'completed'"
        " AND cached_from IS NULL ORDER BY finished_at DESC, id DESC LIMIT 1";
static const char SQL_WORKFLOW_RUN_OPEN[] =
        "SELECT id FROM workflow_runs WHERE finished_at = 0 AND (?1 IS NULL OR workflow_id = ?1)"
        " ORDER BY created_at, id";

static const char SQL_JOB_RELEASE_ALL[] =
        "UPDATE jobs SET worker_id = NULL, lease_until = 0"
        " WHERE lease_until <> 0 OR worker_id IS NOT NULL";

/* ---- text, filters and cursors ---- */

/* A LIKE pattern: before, then s with '\\', '%' and '_' escaped by a backslash, then after.
 * *ret is malloc'ed (NULL when s is NULL). 0 or -ENOMEM. */
static inline int like_pattern(const char *before, const char *s, const char *after, char **ret) {
        struct mp_buf b = { 0 };
        int r = 0;

        *ret = NULL;
        if (!s)
                return 0;
        r = mp_buf_append(&b, before, strlen(before));
        for (const char *p = s; *p && r >= 0; p++) {
                if (*p == '\\' || *p == '%' || *p == '_')
                        r = mp_buf_append(&b, "\\", 1);
                if (r >= 0)
                        r = mp_buf_append(&b, p, 1);
        }
        if (r >= 0)
                r = mp_buf_append(&b, after, strlen(after)); /* NUL-terminated */
        if (r < 0) {
                mp_buf_free(&b);
                return -ENOMEM;
        }
        *ret = b.data;
        return 0;
}


/* Text as a JSON string. Logs hold whatever a user's function printed, so bytes that are
 * not UTF-8 become U+FFFD here rather than making the whole row unreadable. */
static inline json_t *text_json(const char *p, size_t n) {
        struct mp_buf b = { 0 };
        json_t *v;

        if ((v = json_stringn(p, n))) /* NULL when not valid UTF-8 */
                return v;
        for (size_t i = 0; i < n;) {
                unsigned char c = (unsigned char) p[i];
                size_t k = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 :
                           (c & 0xf8) == 0xf0 ? 4 : 0;
                int r;

                if (c == 0 || (k && i + k <= n && mp_utf8_valid(p + i, k))) {
                        k = k ? k : 1;
                        r = mp_buf_append(&b, p + i, k);
                        i += k;
                } else {
                        r = mp_buf_append(&b, "\xef\xbf\xbd", 3);
                        i++;
                }
                if (r < 0) {
                        mp_buf_free(&b);
                        return NULL;
                }
        }
        v = json_stringn(b.data ? b.data : "", b.len);
        mp_buf_free(&b);
        return v;
}

/* An optional string field of a filter: NULL when absent or null. */
static inline int filter_str(json_t *filter, const char *key, const char **ret, struct mp_error *err) {
        json_t *v = json_object_get(filter, key);
        if (!v || json_is_null(v)) {
                *ret = NULL;
                return 0;
        }
        if (!json_is_string(v)) {
                invalid(err, "`%s` must be a string", key);
                mp_error_add_field(err, key, "must be a string");
                return -EINVAL;
        }
        *ret = json_string_value(v);
        return 0;
}

static inline int filter_limit(json_t *filter, int *ret, struct mp_error *err) {
        json_t *v = json_object_get(filter, "limit");
        json_int_t n;

        if (!v || json_is_null(v)) {
                *ret = MP_DEFAULT_PAGE;
                return 0;
        }
        if (!json_is_integer(v) || (n = json_integer_value(v)) < 0) {
                invalid(err, "`limit` must be an integer between 1 and %d", MP_MAX_PAGE);
                mp_error_add_field(err, "limit", "must be an integer between 1 and %d", MP_MAX_PAGE);
                return -EINVAL;
        }
        *ret = n == 0 ? MP_DEFAULT_PAGE : (int) MP_MIN(n, (json_int_t) MP_MAX_PAGE);
        return 0;
}

/* A cursor is the hex of "<time>:<id>" of the last row of the previous page (hex by
 * libsodium, already a dependency). */
static inline char *cursor_encode(int64_t t, const char *id) {
        char raw[32 + CURSOR_MAX_ID];
        int n = snprintf(raw, sizeof(raw), "%" PRId64 ":%s", t, id);
        char *out;

        if (n < 0 || (size_t) n >= sizeof(raw))
                return NULL;
        out = malloc((size_t) n * 2 + 1);
        if (!out)
                return NULL;
        return sodium_bin2hex(out, (size_t) n * 2 + 1, (const unsigned char *) raw, (size_t) n);
}

static inline int bad_cursor(struct mp_error *err) {
        invalid(err, "`cursor` is not one this server handed out; start again without it");
        mp_error_add_field(err, "cursor", "not a cursor from a previous page");
        return -EINVAL;
}

static inline int cursor_decode(const char *c, int64_t *ret_t, char ret_id[CURSOR_MAX_ID + 1],
                         struct mp_error *err) {
        char raw[32 + CURSOR_MAX_ID];
        size_t len = strlen(c), n = len / 2;
        char *colon, *id;
        long t;

        size_t got = 0;
        const char *end = NULL;

        if (len == 0 || len % 2 || n >= sizeof(raw))
                return bad_cursor(err);
        if (sodium_hex2bin((unsigned char *) raw, sizeof(raw) - 1, c, len, NULL, &got, &end) < 0 ||
            got != n || end != c + len)
                return bad_cursor(err);
        raw[n] = 0;
        if (memchr(raw, 0, n) || !(colon = strchr(raw, ':')))
                return bad_cursor(err);
        *colon = 0;
        id = colon + 1;
        if (mp_parse_long(raw, 0, LONG_MAX, &t) < 0 || !*id || strlen(id) > CURSOR_MAX_ID)
                return bad_cursor(err);
        for (const char *p = id; *p; p++)
                if (!(*p == '-' || *p == '_' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
                      (*p >= 'A' && *p <= 'Z')))
                        return bad_cursor(err);
        *ret_t = t;
        memcpy(ret_id, id, strlen(id) + 1);
        return 0;
}

/* The parameters of SQL_CATALOGUE, read from a filter (see function_catalogue). */
struct catalogue_args {
        char *q, *tag, *author_name; /* LIKE patterns, malloc'ed */
        const char *author_email, *cursor;
        int64_t cursor_t;
        char cursor_id[CURSOR_MAX_ID + 1];
        int limit;
};

static inline void catalogue_args_free(struct catalogue_args *a) {
        free(a->q);
        free(a->tag);
        free(a->author_name);
        a->q = a->tag = a->author_name = NULL;
}

static inline int catalogue_args_read(json_t *filter, struct catalogue_args *a, struct mp_error *err) {
        const char *q, *tag, *name;
        int r;

        memset(a, 0, sizeof(*a));
        if ((r = filter_str(filter, "q", &q, err)) < 0 || (r = filter_str(filter, "tag", &tag, err)) < 0 ||
            (r = filter_str(filter, "author_name", &name, err)) < 0 ||
            (r = filter_str(filter, "author_email", &a->author_email, err)) < 0 ||
            (r = filter_str(filter, "cursor", &a->cursor, err)) < 0 ||
            (r = filter_limit(filter, &a->limit, err)) < 0)
                return r;
        if (a->cursor && (r = cursor_decode(a->cursor, &a->cursor_t, a->cursor_id, err)) < 0)
                return r;
        if (like_pattern("%", q, "%", &a->q) < 0 || like_pattern("%\"", tag, "\"%", &a->tag) < 0 ||
            like_pattern("", name, "@%", &a->author_name) < 0) {
                catalogue_args_free(a);
                return -ENOMEM;
        }
        return 0;
}

/* ---- studies and the result cache (docs/studies.md) ---- */

static const struct col study_cols[] = {
        { "id", COL_TEXT, COL_REQUIRED, NULL, NULL },
        { "owner_id", COL_TEXT, COL_REQUIRED, NULL, NULL },
        { "company_id", COL_TEXT, 0, NULL, NULL },
        { "name", COL_TEXT, 0, "", NULL },
        { "notes", COL_TEXT, 0, "", NULL },
        { "target", COL_JSON, 0, NULL, NULL },
        { "fixed", COL_JSON, 0, NULL, NULL },
        { "design", COL_JSON, 0, NULL, NULL },
        { "outputs", COL_JSON, 0, NULL, NULL },
        { "concurrency", COL_INT, COL_REQUIRED, NULL, NULL },
        { "cache_refresh", COL_INT, 0, NULL, NULL },
        { "created_at", COL_INT, COL_NOW, NULL, NULL },
        { "request_id", COL_TEXT, 0, NULL, NULL }, /* the API request that made it (logs) */
};

static const char SQL_STUDY_GET[] = "SELECT * FROM studies WHERE id = ?1";
static const char SQL_MEMBER_ADD[] =
        "INSERT INTO study_members (study_id, kind, member_id, added_at) VALUES (?1, ?2, ?3, ?4)"
        " ON CONFLICT (study_id, kind, member_id) DO NOTHING";
static const char SQL_MEMBERS[] =
        "SELECT kind, member_id FROM study_members WHERE study_id = ?1 ORDER BY added_at, kind, member_id";
static const char SQL_MEMBERS_COUNT[] = "SELECT COUNT(*) AS n FROM study_members WHERE study_id = ?1";
static const char SQL_TASK_POINT[] = "SELECT study_id FROM tasks WHERE id = ?1 AND study_id IS NOT NULL";
/* With row locks: the study is locked until the transaction ends, so two workers
 * ending points of one study at once count and start one after the other (SQLite's
 * single writer does this by itself). */
static const char SQL_STUDY_LOCK[] = "SELECT * FROM studies WHERE id = ?1 FOR UPDATE";
static const char SQL_STUDY_LIST[] =
        "SELECT s.*, (SELECT COUNT(*) FROM study_points p JOIN tasks t ON t.id = p.task_id"
        "  WHERE p.study_id = s.id AND p.status = 'started' AND t.status = 'running') AS running"
        " FROM studies s WHERE owner_id = ?1"
        " AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR name = ?3)"
        " AND (?4 IS NULL OR created_at < ?4 OR (created_at = ?4 AND id < ?5))"
        " ORDER BY created_at DESC, id DESC LIMIT ?6";
/* Points of a study that started but whose task is still running: the live part of a
 * study's progress (at most its concurrency). */
static const char SQL_STUDY_RUNNING[] =
        "SELECT COUNT(*) AS n FROM study_points p JOIN tasks t ON t.id = p.task_id"
        " WHERE p.study_id = ?1 AND p.status = 'started' AND t.status = 'running'";
static const char SQL_POINT_INSERT[] =
        "INSERT INTO study_points (study_id, point_index, inputs, inputs_key, cache_key)"
        " VALUES (?1, ?2, ?3, ?4, ?5)";
static const char SQL_POINT_HAS_KEY[] =
        "SELECT point_index FROM study_points WHERE study_id = ?1 AND inputs_key = ?2 LIMIT 1";
static const char SQL_STUDY_ADD_TOTAL[] =
        "UPDATE studies SET total = total + ?1, status = 'running', finished_at = 0"
        " WHERE id = ?2 AND status <> 'cancelled'";
static const char SQL_POINTS_PENDING[] =
        "SELECT point_index, inputs, cache_key FROM study_points"
        " WHERE study_id = ?1 AND status = 'pending' ORDER BY point_index LIMIT ?2";
static const char SQL_POINT_SET_TASK[] =
        "UPDATE study_points SET task_id = ?1, status = 'started'"
        " WHERE study_id = ?2 AND point_index = ?3 AND status = 'pending'";
static const char SQL_STUDY_STARTED[] = "UPDATE studies SET started = started + ?1 WHERE id = ?2";
static const char SQL_STUDY_DONE[] =
        "UPDATE studies SET status = 'completed', finished_at = ?1"
        " WHERE id = ?2 AND status = 'running' AND started = 0"
        " AND NOT EXISTS (SELECT 1 FROM study_points WHERE study_id = ?2 AND status = 'pending')";
static const char SQL_POINT_END[] =
        "UPDATE study_points SET status = ?1, outputs = ?2, error = ?3"
        " WHERE study_id = ?4 AND point_index = ?5 AND task_id = ?6 AND status = 'started'";
static const char SQL_STUDY_COUNT_END[] =
        "UPDATE studies SET started = started - 1, completed = completed + ?1,"
        " failed = failed + ?2, cancelled = cancelled + ?3 WHERE id = ?4";
static const char SQL_POINTS_PAGE[] =
        "SELECT point_index, inputs, task_id, status, outputs, error FROM study_points"
        " WHERE study_id = ?1 AND point_index > ?2 ORDER BY point_index LIMIT ?3";
static const char SQL_POINTS_RETRY[] =
        "UPDATE study_points SET status = 'pending', task_id = NULL, outputs = NULL, error = NULL"
        " WHERE study_id = ?1 AND status = 'failed'";
static const char SQL_STUDY_RETRY[] =
        "UPDATE studies SET status = 'running', finished_at = 0, failed = 0 WHERE id = ?1";
static const char SQL_POINTS_CANCEL[] =
        "UPDATE study_points SET status = 'cancelled' WHERE study_id = ?1 AND status = 'pending'";
static const char SQL_STUDY_CANCEL[] =
        "UPDATE studies SET status = 'cancelled', finished_at = ?1, cancelled = cancelled + ?2"
        " WHERE id = ?3 AND status = 'running'";
static const char SQL_POINTS_STARTED[] =
        "SELECT task_id FROM study_points WHERE study_id = ?1 AND status = 'started'";
static const char SQL_STUDIES_RUNNING[] =
        "SELECT id FROM studies WHERE status = 'running' OR (status = 'cancelled' AND started > 0)";
/* The started points whose task ended without the study being told (a crash between the
 * two): their ends are recorded again by recovery. */
static const char SQL_POINTS_ENDED_UNSEEN[] =
        "SELECT p.task_id FROM study_points p JOIN tasks t ON t.id = p.task_id"
        " WHERE p.study_id = ?1 AND p.status = 'started'"
        " AND t.status IN ('completed', 'failed', 'timed_out', 'cancelled')";

/* The result cache: the newest completed task of this owner with this key, that is not
 * itself a copy (so a hit always names the run that computed it). */
static const char SQL_TASK_BY_KEY_EXISTS[] =
        "SELECT 1 FROM tasks WHERE owner_id = ?1 AND function_id = ?2 AND idempotency_key = ?3";
static const char SQL_CACHE_FIND[] =
        "SELECT id FROM tasks WHERE owner_id = ?1 AND cache_key = ?2 AND status = 'completed'"
        " AND cached_from IS NULL ORDER BY finished_at DESC, id DESC LIMIT 1";
/* A hit: a new task, completed now, with the source's result (the same bytes, or the
 * same object when it was spilled) and artifacts, no logs, no job. */
static const char SQL_CACHE_COPY[] =
        "INSERT INTO tasks (id, function_id, version, owner_id, company_id, status, inputs,"
        " result, result_blob, logs, logs_truncated, artifacts, queued_at, started_at,"
        " finished_at, execution_ms, cpu_ms, peak_memory_kb, attempts, study_id, point_index,"
        " cache_key, cached_from, idempotency_key, checks)"
        " SELECT ?1, function_id, version, owner_id, ?2, 'completed', ?3, result, result_blob,"
        " '', 0, artifacts, ?4, ?4, ?4, 0, 0, 0, 0, ?5, ?6, cache_key, id, ?8, checks"
        " FROM tasks WHERE id = ?7";

/* ---- retention and deletion (core/retention.c) ---- */

/* Only an ended task is deleted: a queued or running one is refused (the caller says to
 * cancel it first), so no worker writes to a task that is gone. */
static const char SQL_RETENTION_TASK_DELETE[] =
        "DELETE FROM tasks WHERE id = ?1 AND status IN ('completed', 'failed', 'timed_out', 'cancelled')";
static const char SQL_RETENTION_TASK_EXISTS[] = "SELECT 1 FROM tasks WHERE id = ?1";
static const char SQL_RETENTION_JOB_DELETE[] = "DELETE FROM jobs WHERE task_id = ?1";
static const char SQL_RETENTION_MEMBER_DELETE[] =
        "DELETE FROM study_members WHERE kind = 'task' AND member_id = ?1";
static const char SQL_RETENTION_MEMBER_OF[] =
        "SELECT study_id FROM study_members WHERE kind = 'task' AND member_id = ?1"
        " ORDER BY added_at, study_id LIMIT 1";
static const char SQL_RETENTION_TASK_REFS[] =
        "SELECT COUNT(*) AS n FROM tasks WHERE id = ?1 OR cached_from = ?1";
/* task_retention_days is BIGINT: days * 86400000 stays a 64-bit product in PostgreSQL. */
static const char SQL_RETENTION_TASK_EXPIRED[] =
        "SELECT t.id FROM tasks t JOIN companies c ON c.id = t.company_id"
        " WHERE c.task_retention_days IS NOT NULL"
        " AND t.queued_at < ?1 - c.task_retention_days * 86400000"
        " AND t.status IN ('completed', 'failed', 'timed_out', 'cancelled')"
        " AND NOT EXISTS (SELECT 1 FROM workflow_runs r WHERE r.id = t.workflow_run_id AND r.finished_at = 0)"
        " AND NOT EXISTS (SELECT 1 FROM studies st WHERE st.id = t.study_id AND st.status = 'running')"
        " ORDER BY t.queued_at, t.id LIMIT ?2";
static const char SQL_RETENTION_COMPANY_SET[] =
        "UPDATE companies SET task_retention_days = ?1 WHERE id = ?2";
static const char SQL_RETENTION_COMPANY_GET[] =
        "SELECT task_retention_days FROM companies WHERE id = ?1";
static const char SQL_RETENTION_FUNCTIONS_OWNED[] =
        "SELECT * FROM functions WHERE owner_id = ?1 ORDER BY created_at, id";
/* A task that is deleted gives back what it kept to the storage quota: its bytes leave
 * the usage row its end added them to (SQL_USAGE_ADD), in the deletion's transaction;
 * the row's calls and times stay (usage history). A cache hit or a task that never
 * started added nothing (its stored_bytes is 0, or it has no row). */
static const char SQL_RETENTION_USAGE_RETURN[] =
        "UPDATE usage_daily SET stored_bytes = usage_daily.stored_bytes"
        " - (SELECT t.stored_bytes FROM tasks t WHERE t.id = ?1)"
        " WHERE EXISTS (SELECT 1 FROM tasks t WHERE t.id = ?1 AND t.started_at > 0 AND t.stored_bytes > 0"
        " AND t.status IN ('completed', 'failed', 'timed_out', 'cancelled')"
        " AND usage_daily.day = t.finished_at / 86400000 AND usage_daily.owner_id = t.owner_id"
        " AND usage_daily.company_id = COALESCE(t.company_id, '') AND usage_daily.function_id = t.function_id)";
/* ---- progress and live logs of a running task (events) ---- */

/* ?1 progress (JSON text, or null: unchanged), ?2 logs to append (or null), ?3 1 for the
 * first update of a run (a retried task starts again from nothing), ?4 the task. Only a
 * running task: an update that crosses the end changes nothing. The CASTs give
 * PostgreSQL the parameters' types. */
static const char SQL_TASK_LIVE[] =
        "UPDATE tasks SET"
        " progress = CASE WHEN ?3 = 1 THEN CAST(?1 AS TEXT) ELSE COALESCE(CAST(?1 AS TEXT), progress) END,"
        " live_logs = CASE WHEN ?3 = 1 OR live_logs IS NULL THEN CAST(?2 AS TEXT)"
        "  WHEN ?2 IS NULL THEN live_logs ELSE live_logs || CAST(?2 AS TEXT) END"
        " WHERE id = ?4 AND status = 'running'";
/* The live logs after the first ?2 characters, and how many characters they hold. */
static const char SQL_TASK_LIVE_LOGS[] =
        "SELECT substr(COALESCE(live_logs, ''), CAST(?2 AS INTEGER) + 1) AS logs,"
        " CAST(length(COALESCE(live_logs, '')) AS BIGINT) AS chars FROM tasks WHERE id = ?1";
/* ---- usage, quotas and the operators' figures (migration 13, docs/operations.md) ---- */

/* A task that ran has ended (task_finish moved it): its figures go to its day's row. A
 * task that never started (cancelled while queued) is no call that ran. */
static const char SQL_USAGE_ADD[] =
        "INSERT INTO usage_daily (day, owner_id, company_id, function_id, calls, failed, wall_ms,"
        " cpu_ms, max_peak_memory_kb, stored_bytes)"
        " SELECT finished_at / 86400000, owner_id, COALESCE(company_id, ''), function_id, 1,"
        " CASE WHEN status IN ('failed', 'timed_out') THEN 1 ELSE 0 END, execution_ms, cpu_ms,"
        " peak_memory_kb, stored_bytes FROM tasks WHERE id = ?1 AND started_at > 0"
        " ON CONFLICT (day, owner_id, company_id, function_id) DO UPDATE SET"
        " calls = usage_daily.calls + excluded.calls, failed = usage_daily.failed + excluded.failed,"
        " wall_ms = usage_daily.wall_ms + excluded.wall_ms, cpu_ms = usage_daily.cpu_ms + excluded.cpu_ms,"
        " max_peak_memory_kb = CASE WHEN excluded.max_peak_memory_kb > usage_daily.max_peak_memory_kb"
        " THEN excluded.max_peak_memory_kb ELSE usage_daily.max_peak_memory_kb END,"
        " stored_bytes = usage_daily.stored_bytes + excluded.stored_bytes";
/* A task was stored: one more call on its day (the WHERE keeps SQLite's parser from
 * reading ON as a join). */
static const char SQL_CALLS_ADD[] =
        "INSERT INTO calls_daily (day, owner_id, company_id, calls)"
        " SELECT queued_at / 86400000, owner_id, COALESCE(company_id, ''), 1 FROM tasks WHERE id = ?1"
        " ON CONFLICT (owner_id, day, company_id) DO UPDATE SET calls = calls_daily.calls + 1";
/* The quotas that apply to a user in a company ('' for none): the company's own (user_id
 * '') and the user's. */
static const char SQL_QUOTAS_FOR[] =
        "SELECT * FROM quotas WHERE company_id = ?1 AND user_id IN ('', ?2) AND ?1 || user_id <> ''";
static const char SQL_QUOTAS_OF_COMPANY[] =
        "SELECT * FROM quotas WHERE company_id = ?1 ORDER BY user_id";
static const char SQL_QUOTA_DELETE[] = "DELETE FROM quotas WHERE company_id = ?1 AND user_id = ?2";
static const char SQL_QUOTA_UPSERT[] =
        "INSERT INTO quotas (company_id, user_id, concurrent_calls, calls_per_day,"
        " cpu_seconds_per_month, storage_mb, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        " ON CONFLICT (company_id, user_id) DO UPDATE SET concurrent_calls = excluded.concurrent_calls,"
        " calls_per_day = excluded.calls_per_day, cpu_seconds_per_month = excluded.cpu_seconds_per_month,"
        " storage_mb = excluded.storage_mb, updated_at = excluded.updated_at";
/* With row locks: the user's (and the company's) row is held until the transaction ends,
 * so two admissions (or starts) counted under one quota on two API nodes are counted one
 * after the other (SQLite's single writer does this by itself). */
static const char SQL_QUOTA_LOCK_USER[] = "SELECT id FROM users WHERE id = ?1 FOR UPDATE";
static const char SQL_QUOTA_LOCK_COMPANY[] = "SELECT id FROM companies WHERE id = ?1 FOR UPDATE";
/* What a quota counts, for an owner ([0]) or a company ([1]). Calls not ended (?2 = 1:
 * running only, the count a start is held by); the calls made on day ?2; the calls ended
 * on day ?2; the CPU of the
 * days since day ?2; what tasks keep. */
#define SQL_QUOTA_ACTIVE_OF(col)                                                                \
        "SELECT COUNT(*) AS n FROM tasks WHERE " col " = ?1 AND status IN ('queued', 'running')" \
        " AND (?2 = 0 OR status = 'running')"
#define SQL_QUOTA_DAY_OF(col)                                                                   \
        "SELECT CAST(COALESCE(SUM(calls), 0) AS BIGINT) AS n FROM calls_daily WHERE " col " = ?1" \
        " AND day = ?2"
#define SQL_QUOTA_RAN_OF(col)                                                                   \
        "SELECT CAST(COALESCE(SUM(calls), 0) AS BIGINT) AS n FROM usage_daily WHERE " col " = ?1" \
        " AND day = ?2"
#define SQL_QUOTA_CPU_OF(col)                                                                   \
        "SELECT CAST(COALESCE(SUM(cpu_ms), 0) AS BIGINT) AS n FROM usage_daily WHERE " col " = ?1" \
        " AND day >= ?2"
#define SQL_QUOTA_STORAGE_OF(col)                                                               \
        "SELECT CAST(COALESCE(SUM(stored_bytes), 0) AS BIGINT) AS n FROM usage_daily"             \
        " WHERE " col " = ?1 AND day >= ?2"
static const char *const SQL_QUOTA_ACTIVE[2] = { SQL_QUOTA_ACTIVE_OF("owner_id"),
                                                 SQL_QUOTA_ACTIVE_OF("company_id") };
static const char *const SQL_QUOTA_DAY[2] = { SQL_QUOTA_DAY_OF("owner_id"), SQL_QUOTA_DAY_OF("company_id") };
static const char *const SQL_QUOTA_RAN[2] = { SQL_QUOTA_RAN_OF("owner_id"), SQL_QUOTA_RAN_OF("company_id") };
static const char *const SQL_QUOTA_CPU[2] = { SQL_QUOTA_CPU_OF("owner_id"), SQL_QUOTA_CPU_OF("company_id") };
static const char *const SQL_QUOTA_STORAGE[2] = { SQL_QUOTA_STORAGE_OF("owner_id"),
                                                  SQL_QUOTA_STORAGE_OF("company_id") };
static const char SQL_TASK_QUEUED[] = "SELECT 1 FROM tasks WHERE id = ?1 AND status = 'queued'";
static const char SQL_USER_SET_OPERATOR[] = "UPDATE users SET operator = ?1 WHERE id = ?2";
/* The operators' window [?1, ?2) in epoch ms, and in days for usage_daily. */
static const char SQL_STATS_FUNCTIONS[] =
        "SELECT COUNT(*) AS created, (SELECT COUNT(*) FROM functions WHERE deleted_at = 0) AS live"
        " FROM functions WHERE created_at >= ?1 AND created_at < ?2";
static const char SQL_STATS_DAYS[] =
        "SELECT day, CAST(SUM(calls) AS BIGINT) AS calls, CAST(SUM(failed) AS BIGINT) AS failed,"
        " CAST(SUM(wall_ms) AS BIGINT) AS wall_ms, CAST(SUM(cpu_ms) AS BIGINT) AS cpu_ms,"
        " COUNT(DISTINCT owner_id) AS active_users FROM usage_daily WHERE day >= ?1 AND day <= ?2"
        " GROUP BY day ORDER BY day";
static const char SQL_STATS_ACTIVE_USERS[] =
        "SELECT COUNT(DISTINCT owner_id) AS n FROM usage_daily WHERE day >= ?1 AND day <= ?2";
static const char SQL_STATS_ENDED[] =
        "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(CASE WHEN cached_from IS NOT NULL THEN 1 ELSE 0 END), 0)"
        " AS BIGINT) AS hits, CAST(COALESCE(SUM(CASE WHEN cached_from IS NULL AND started_at > 0"
        " THEN 1 ELSE 0 END), 0) AS BIGINT) AS ran FROM tasks WHERE finished_at >= ?1 AND finished_at < ?2";
/* The latency (queued to ended) of the ?3-th fastest call that ran in the window. */
static const char SQL_STATS_LATENCY_AT[] =
        "SELECT finished_at - queued_at AS ms FROM tasks WHERE finished_at >= ?1 AND finished_at < ?2"
        " AND cached_from IS NULL AND started_at > 0 ORDER BY finished_at - queued_at LIMIT 1 OFFSET ?3";
/* flowfinish: a workflow node answered from the result cache (SQL_CACHE_COPY's copy,
 * carrying the run, node and map element instead of a study point). */
static const char SQL_CACHE_COPY_NODE[] =
        "INSERT INTO tasks (id, function_id, version, owner_id, company_id, status, inputs,"
        " result, result_blob, logs, logs_truncated, artifacts, queued_at, started_at,"
        " finished_at, execution_ms, cpu_ms, peak_memory_kb, attempts, workflow_run_id, node_id,"
        " element_index, cache_key, cached_from)"
        " SELECT ?1, function_id, version, owner_id, ?2, 'completed', ?3, result, result_blob,"
        " '', 0, artifacts, ?4, ?4, ?4, 0, 0, 0, 0, ?5, ?6, ?7, cache_key, id"
        " FROM tasks WHERE id = ?8";

/* ---- verification cases and review (verify.c, review.c) ---- */
static const char SQL_VERSION_SET_VERIFICATION[] =
        "UPDATE function_versions SET verification = ?1 WHERE function_id = ?2 AND version = ?3";
static const char SQL_VERSION_SET_REVIEW[] =
        "UPDATE function_versions SET review = ?1 WHERE function_id = ?2 AND version = ?3";
static const char SQL_VERIFICATION_TASKS[] =
        "SELECT " TASK_ROW_COLUMNS " FROM tasks WHERE verification_of = ?1 ORDER BY verification_case, queued_at";
/* compare-and-set of a version's review (review.c): only while it still holds ?4 ('' for unset) */
static const char SQL_VERSION_SWAP_REVIEW[] =
        "UPDATE function_versions SET review = ?1 WHERE function_id = ?2 AND version = ?3"
        " AND COALESCE(review, '') = ?4";
static const char SQL_COMPANY_SETTINGS_GET[] = "SELECT settings FROM companies WHERE id = ?1";
static const char SQL_COMPANY_SETTINGS_SET[] = "UPDATE companies SET settings = ?1 WHERE id = ?2";
/* ---- environments (core/environments.c, migration 17) ---- */
static const char SQL_ENV_INSERT[] =
        "INSERT INTO environments (id, status, requirements, resolved, log, build_error, build_ms, created_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO NOTHING";
static const char SQL_ENV_GET[] = "SELECT * FROM environments WHERE id = ?1";
static const char SQL_ENV_SET[] =
        "UPDATE environments SET status = ?1, log = ?2, build_error = ?3, build_ms = ?4 WHERE id = ?5";
/* A failed environment asked for again is built again (the operator may have added the
 * missing wheel meanwhile): 1 row when it was failed. */
static const char SQL_ENV_REQUEUE[] =
        "UPDATE environments SET status = 'queued', log = '', build_error = NULL, build_ms = NULL,"
        " requirements = ?2, resolved = ?3 WHERE id = ?1 AND status = 'failed'";
/* Environments built before ?1 that no version of a live function names (the
 * collector removes their layers). */
static const char SQL_ENV_UNUSED[] =
        "SELECT e.id, e.archive_sha256 FROM environments e WHERE e.created_at < ?1 AND e.status = 'ready'"
        " AND NOT EXISTS (SELECT 1 FROM function_versions v JOIN functions f ON f.id = v.function_id"
        "   WHERE v.environment_id = e.id AND f.deleted_at = 0)"
        " ORDER BY e.created_at, e.id";
/* Those left queued or building by a server that stopped. */
static const char SQL_ENV_UNFINISHED[] =
        "SELECT * FROM environments WHERE status IN ('queued', 'building') AND (?1 IS NULL OR id = ?1)"
        " ORDER BY created_at, id";
/* Versions whose verification may still be running (verify.c's sweep at start); ?1 is
 * the pattern '%"status":"running"%' (the column holds compact JSON): a superset, which
 * the caller narrows by the column's status. */
static const char SQL_VERIFICATION_RUNNING[] =
        "SELECT v.function_id, v.version, v.verification FROM function_versions v"
        " JOIN functions f ON f.id = v.function_id"
        " WHERE f.deleted_at = 0 AND v.verification LIKE ?1 ORDER BY v.function_id, v.version";
/* The locks of the environments the collector keeps (layers): those made at ?1 or after,
 * or named by a version of a live function; their wheels stay in the cache. */
static const char SQL_ENV_IN_USE[] =
        "SELECT e.id, e.resolved FROM environments e WHERE e.resolved IS NOT NULL AND (e.created_at >= ?1"
        " OR EXISTS (SELECT 1 FROM function_versions v JOIN functions f ON f.id = v.function_id"
        "   WHERE v.environment_id = e.id AND f.deleted_at = 0))"
        " ORDER BY e.created_at, e.id";
/* The sha256 of its layer's archive in the object store, or NULL (layers). */
static const char SQL_ENV_SET_ARCHIVE[] = "UPDATE environments SET archive_sha256 = ?1 WHERE id = ?2";

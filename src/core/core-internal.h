#pragma once

#include "core/core.h"
#include "store/store.h"

/* Field readers for request bodies: each names the field path in err on failure
 * (422 "validation"), adding to err->errors so one answer lists every bad field. */
/* A string field: required or optional (*ret = NULL when absent). max: byte length. */
int mp_core_field_string(json_t *body, const char *key, bool required, size_t max,
                         const char **ret, struct mp_error *err);
/* An integer field within [min, max]; absent -> *ret untouched. */
int mp_core_field_int(json_t *body, const char *key, long min, long max, int *ret,
                      struct mp_error *err);
/* Finish a validation pass: when err->errors is not empty, set the 422 message
 * listing them and return -EINVAL; else 0. */
int mp_core_validation_done(struct mp_error *err, const char *what);
/* Shape a row for the API: epoch-ms fields named in `times` become RFC 3339 strings or
 * null, `drop` keys are removed. Modifies row in place. */
void mp_core_shape(json_t *row, const char *const *times, const char *const *drop);
/* A list operation of the store failed: a cursor it refused becomes a 400 naming the
 * cursor (the store says -EINVAL); other failures pass through. Returns r. */
int mp_core_list_failed(int r, const char *cursor, struct mp_error *err);
/* The API's page {"items": items, "next_cursor": string or null}; takes items, frees
 * the store list's cursor and items. NULL when out of memory. */
json_t *mp_core_page(json_t *items, struct mp_store_list *list);
/* The standard 404, same for "unknown" and "not yours". */
int mp_core_not_found(struct mp_error *err, const char *what, const char *id);
/* Tell api/ a task ended. */
void mp_core_task_ended(struct mp_core *core, const char *task_id);
/* The counts of GET /metrics (stats.c): set start_ms and the histograms' buckets; one
 * more task made; one more end, of the status (and execution_ms, when there) in the
 * fields that task_finish stored. Call only when this process's task_finish ended it. */
void mp_core_stats_init(struct mp_core_stats *st);
void mp_core_count_created(struct mp_core *core);

/* The SHA-256 of data as 64 hex digits and a NUL (provenance.c). */
void mp_core_sha256_hex(const void *data, size_t len, char out[65]);

/* A trusted helper program (tool.c): argv run with envp, in given on its stdin, its
 * stdout in *ret (malloc'ed, at most max bytes), at most timeout_s seconds. -ENOENT when
 * it cannot be started, -ETIMEDOUT (killed), -EIO when it exits with a failure. */
int mp_core_tool(struct mp_core *core, const char *const argv[], const char *const envp[], const char *in,
                 size_t in_len, int timeout_s, size_t max, char **ret, size_t *ret_len);

/* A sheet's formulas (formulas.c): list [{"tex", "display"}] -> {"D<tex>" or "I<tex>":
 * the formula drawn as SVG, or null when it cannot be typeset}; NULL: no memory. */
#define MP_FORMULA_MAX_CHARS 1000 /* longer is shown as its source */
#define MP_FORMULAS_MAX 64        /* per sheet; the others are shown as their source */
json_t *mp_core_formulas(struct mp_core *core, json_t *list);
void mp_core_count_end(struct mp_core *core, json_t *fields);
/* Wave 2's counts: a workflow run's end (status "completed", "failed", "cancelled"); a
 * task of a run or of a study point ended (its row); a result cache hit; a call refused
 * by a quota (err: the QuotaExceeded problem) and a start held by one. */
void mp_core_count_run_end(struct mp_core *core, const char *status);
void mp_core_count_member_end(struct mp_core *core, json_t *task);
void mp_core_count_cache_hit(struct mp_core *core);
void mp_core_count_quota_refused(struct mp_core *core, const struct mp_error *err);
void mp_core_count_quota_held(struct mp_core *core);
/* An ended task row's result, parsed from its stored text or its object (studies.c); NULL
 * when it has none, and *ret_unreadable (may be NULL) set when its object cannot be read. */
json_t *mp_core_task_result(struct mp_core *core, json_t *task, bool *ret_unreadable);
/* An environment build ended (environments.c): ready (ok) or failed, after ms. */
void mp_core_count_env_build(struct mp_core *core, bool ok, int64_t ms);
/* Can this principal see (call) this function row? */
bool mp_core_can_see_function(const struct mp_principal *p, json_t *fn);
/* A function the principal may call, and its version (0 = latest); 404 otherwise. */
int mp_core_load_callable(struct mp_core *core, const struct mp_principal *p, const char *id,
                          int version, json_t **ret_fn, json_t **ret_ver, struct mp_error *err);

/* --- companies and the catalogue (company.c) --- */
/* An admin of a company (an admin without a company administers nothing). */
bool mp_core_is_company_admin(const struct mp_principal *p);
/* A tag: 1 to MP_MAX_TAG_LEN of [a-z0-9-]. */
bool mp_core_tag_valid(const char *tag);
/* The tasks of owner_id made in company_id (NULL: all of the owner's), as
 * mp_core_task_list shows them. */
int mp_core_task_list_owner(struct mp_core *core, const char *owner_id, const char *company_id,
                            const char *function_id, const char *status, const char *cursor,
                            int limit, json_t **ret, struct mp_error *err);

/* "2024-05-01T12:00:00Z" (fraction and +00:00 accepted) -> epoch ms (audit.c):
 * 0, or -EINVAL. */
int mp_core_parse_rfc3339(const char *s, int64_t *ret);

/* --- what happens when a task ends (work.c) --- */
/* Called once a task reached an end state (after task_finish, and on cancel), in the
 * process that ended it: each feature that made tasks of its own takes its turn here.
 * known (may be NULL): the task's row as read before its end, so that the end of a task
 * that belongs to no run costs no read. Idempotent: a second call for one end changes
 * nothing. */
void mp_core_on_task_end(struct mp_core *core, const char *task_id, json_t *known);

/* --- workflows (workflows.c) --- */
/* A task row (task_get) that ended: when it belongs to a workflow run, its end is
 * recorded in the run and the nodes it unblocks start. Never fails the caller. */
void mp_core_workflow_task_ended(struct mp_core *core, json_t *task);
/* At start-up: runs that had not ended go on (starts without a task are made again,
 * ends that were not recorded are). Returns how many runs were taken up, or -EIO. */
int mp_core_workflow_recover(struct mp_core *core, struct mp_error *err);
/* A workflow (an id, or the caller's own name) and its version (0: the latest) that the
 * caller may see: *ret_wf and *ret_ver (the version row: definition, input_schema). */
int mp_core_workflow_resolve(struct mp_core *core, const struct mp_principal *p, const char *ref, int version,
                             json_t **ret_wf, json_t **ret_ver, struct mp_error *err);
/* The run of a study point: id as study_start named it, made for the study's owner
 * (study: its row, with owner_id, company_id and target {workflow_id, version}), with
 * its first nodes' tasks. Made once: a run of that id already there is read back. *ret:
 * the run row; ended (finished_at set) when it needed no task. */
int mp_core_workflow_point_run(struct mp_core *core, json_t *study, const char *id, int64_t index, json_t *inputs,
                               json_t **ret, struct mp_error *err);
/* A study's workflow run ended: the point takes its outputs (studies.c). */
void mp_study_run_ended(struct mp_core *core, json_t *run);
/* --- studies (studies.c, docs/studies.md) --- */
/* A task ended (any status): when it is a study point's, the point takes its outputs or
 * error and the study's next points start (cached ones end at once, here too). Called
 * once the end is stored, by whatever process stored it; safe to call again. Never
 * fails the caller: what cannot be recorded now is logged and done on recovery. */
void mp_study_task_ended(struct mp_core *core, const char *task_id);
/* At start-up, after the queue's recovery: every unfinished study accounts the ends it
 * missed and starts its pending points. */
int mp_study_recover(struct mp_core *core, struct mp_error *err);
/* The environment key of a version's requirements (work.c): NULL for the base one, else
 * buf ("req-<hash>"). */
const char *mp_core_env_key(json_t *reqs, char *buf, size_t size);
/* A task row (task_get's) the caller may see (its owner, an admin of its company): 404
 * otherwise, as for an unknown id (tasks.c). */
int mp_core_task_load(struct mp_core *core, const struct mp_principal *p, const char *id, json_t **ret,
                      struct mp_error *err);
/* The MP_SOLVER_* bits of a version's "solvers" (functions.c); 0 when none. */
unsigned mp_core_solver_bits(json_t *ver);
/* --- verification cases (verify.c, docs/functions.md#verification-cases) --- */
/* The body's "verification": a new reference to the cases, or NULL with field errors
 * under "verification[i]" (inputs checked against input_schema when given). */
json_t *mp_verify_read_cases(json_t *v, json_t *input_schema, struct mp_error *err);
/* The "verification" a new version is stored with: {"status": "running"} when it has
 * cases, JSON null otherwise. A new reference. */
json_t *mp_verify_initial(json_t *cases);
/* The version's "verification" as the API shows it ({"status": "none"} without cases). */
json_t *mp_verify_render(json_t *ver);
/* Queue the cases of a version just stored, as tasks of p (its author). */
int mp_verify_start(struct mp_core *core, const struct mp_principal *p, const char *function_id,
                    json_int_t version, json_t *cases, struct mp_error *err);
/* When every case of a running version ver (a function_get_version row) has ended,
 * store the outcome and set it in ver; else nothing. Safe to call again. */
int mp_verify_settle(struct mp_core *core, const char *function_id, json_t *ver, struct mp_error *err);
/* mp_verify_settle, failures logged (for reads). */
void mp_verify_refresh(struct mp_core *core, const char *function_id, json_t *ver);
/* At start: every version still running its verification cases is settled as a read
 * would (the missing case tasks queued again, the outcome written once they all
 * ended). Failures of one version are logged; < 0 only when the list cannot be read. */
int mp_verify_recover(struct mp_core *core, struct mp_error *err);
/* The task-end hook's line: a case's task ended. */
void mp_verify_task_ended(struct mp_core *core, json_t *task);
/* May version ver of fn be made public? 409 Unverified (cases failed or still running)
 * or NotApproved (the company requires an approved review), else 0. */
int mp_verify_publish_check(struct mp_core *core, const char *function_id, json_t *fn, json_t *ver,
                            struct mp_error *err);
/* --- review (review.c) --- */
/* A function and one of its versions (store rows) as GET /api/v1/functions/{id} shows
 * them (functions.c); a new reference. */
json_t *mp_core_function_render(struct mp_core *core, json_t *fn, json_t *ver);
/* The version's "review" as the API shows it ({"status": "draft"} before any). */
json_t *mp_review_render(json_t *ver);

/* The body of an execute request, a function's (tasks.c) or a workflow's: an object
 * {"inputs": ...} and nothing else, inputs valid for schema and no deeper than a call
 * can carry to the executor (the canonical form's bound), so a call is refused here
 * with a 422 at `inputs` rather than failing in the sandbox. what names the target in
 * the message ("function", "workflow"). *ret_inputs is borrowed from body. 0, or -EINVAL
 * with err's fields; other errors of the schema's check pass through. */
int mp_core_execute_body(json_t *body, json_t *schema, const char *what, json_t **ret_inputs,
                         struct mp_error *err);

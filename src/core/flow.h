/* Workflows, studies and the result cache: the pure core. Nothing here touches the
 * store, the queue or HTTP: each function reads JSON and returns JSON, so the callers
 * (store operations, the worker, the routes) decide where state lives and when a step
 * runs. Errors a person reads go to `struct mp_error` with field paths (422), as for
 * every other body the API validates.
 *
 *   jsonpath.c      "rows.0.sigma": check a path, read a value at a path
 *   canonical.c     canonical JSON and the result cache key
 *   design.c        study designs: grid, list (JSON or CSV), random, lhs
 *   workflow-def.c  a workflow definition: parsed, validated, normalized
 *   workflow-run.c  a run's scheduling: what starts now, what is skipped, when it ends
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "base/error.h"

/* --- jsonpath.c ---------------------------------------------------------------------
 * A path is dot-separated keys and list indices ("moment_max", "rows.0.sigma"); NULL or
 * "" is the whole value. A segment is a key of an object, or, on a list, a decimal index
 * without sign or leading zero. Paths cannot name keys that hold a dot or are empty. */

/* 0 when path is well formed, else -EINVAL with a field error at `field` (the place the
 * path was read from, e.g. "nodes[1].inputs.M.path"): an empty segment, longer than
 * MP_MAX_PATH_LEN bytes, more than MP_MAX_PATH_SEGMENTS segments. Only adds the field. */
int mp_jsonpath_check(const char *path, const char *field, struct mp_error *err);
/* The value at path in root, borrowed from root, in *ret. -ENOENT when a segment names
 * no key or index, -EINVAL for a malformed path; err->message then names the segment and
 * where it was looked for ("no key \"sigma\" in \"rows.0\""), status 422. */
int mp_jsonpath_get(json_t *root, const char *path, json_t **ret, struct mp_error *err);

/* --- canonical.c ---------------------------------------------------------------------
 * Canonical JSON: object keys sorted by bytes (code points), no whitespace, numbers
 * normalized (an integral value prints as an integer whatever its spelling: 1, 1.0 and
 * 1e0 agree, and -0 is 0; other numbers print in the shortest form that reads back to
 * the same double), strings as UTF-8 with only the escapes JSON requires. */

/* A malloc'ed canonical text of v in *ret (length in *ret_len, may be NULL). -EINVAL (422)
 * for NaN or infinity, deeper than MP_MAX_JSON_DEPTH, or invalid UTF-8 (err says which);
 * -ENOMEM. */
int mp_canonical_dump(json_t *v, char **ret, size_t *ret_len, struct mp_error *err);

#define MP_CACHE_KEY_HEX_LEN 64 /* a BLAKE2b-256 digest in hex, without the NUL */
/* The result cache key of a call: BLAKE2b-256 (libsodium's crypto_generichash) over a
 * domain tag, the function version's id, the environment key and the canonical inputs,
 * each length-prefixed, as lowercase hex into ret (MP_CACHE_KEY_HEX_LEN + 1 bytes).
 * Tenancy is not in the key: the cache is looked up within the caller's tenancy. Fails
 * as mp_canonical_dump. */
int mp_cache_key(const char *version_id, const char *env_key, json_t *inputs, char *ret,
                 struct mp_error *err);

/* --- design.c ------------------------------------------------------------------------
 * A study's design, made into points. Shapes:
 *   {"type": "grid",   "params": {"L": [1, 1.5, 2], "F": {"start": 100, "stop": 500, "num": 5}}}
 *   {"type": "list",   "points": [{"L": 1, "F": 100}, ...]}
 *   {"type": "random" | "lhs", "params": {"L": {"min": 1, "max": 3}}, "count": 50, "seed": 7}
 * Grid order: the first parameter varies slowest (nested loops in the order given).
 * Random and lhs use xoshiro256** seeded through splitmix64 from the seed (an integer
 * >= 0); their values depend only on the seed and the design, on every platform. A
 * parameter the target's schema types "integer" gets integers, uniform in [min, max]. */

/* The number of points the design makes, computed without making them (a grid's sizes
 * multiplied with saturation). -EINVAL with field errors ("design.params.F.num") for a
 * malformed design; -E2BIG for one over MP_MAX_STUDY_POINTS (the message names the
 * limit and the grid's sizes); both 422. */
int mp_design_count(json_t *design, size_t *ret_count, struct mp_error *err);
/* The points of a design, each merged with `fixed` (an object, may be NULL), as a new
 * list in *ret. A parameter both fixed and varied is an error at "fixed.<name>". When
 * input_schema is not NULL every point is validated against it, and the first bad
 * point is refused: the message names its index and fields, the field paths read
 * "points[i].<name>". -EINVAL (422) on a bad design or point; -E2BIG (422) past
 * MP_MAX_STUDY_POINTS; -ENOMEM. */
int mp_design_points(json_t *design, json_t *fixed, json_t *input_schema, json_t **ret,
                     struct mp_error *err);
/* A CSV text as a list design's points in *ret (a new list of objects): RFC 4180 fields,
 * comma separated, LF or CRLF lines, a header naming the parameters. Unquoted fields that
 * read as JSON numbers are numbers, true/false are booleans, an empty unquoted field
 * leaves the parameter out of that point (its default applies), anything else and every
 * quoted field is a string. -EINVAL (422) naming line and column; at most
 * MP_MAX_STUDY_POINTS rows, MP_MAX_CSV_COLUMNS columns. */
int mp_design_csv(const char *text, size_t len, json_t **ret, struct mp_error *err);
/* The random generator of random and lhs designs, exposed for tests: the n-th double in
 * [0, 1) of the stream of seed (53 random bits each). */
double mp_design_uniform(uint64_t seed, size_t n);

/* --- workflow-def.c ------------------------------------------------------------------
 * A workflow definition (the body of POST /workflows):
 *   {"name", "description"?, "params"?: {name: schema}, "cache"?: bool,
 *    "nodes": [{"id", "function", "version"?, "inputs"?: {name: input}, "map"?}],
 *    "outputs"?: {name: {"from": node, "path"?}}}
 * input: a literal; {"param": name}; {"from": node, "path"?}; {"literal": value} for a
 * literal object that would otherwise read as a reference (only the top level of an
 * input is looked at: nested values are literal). map: {"over": {"param"} | {"from",
 * "path"?}, "as": input name, "concurrency"?: 1..MP_MAX_MAP_CONCURRENCY (default
 * MP_DEFAULT_MAP_CONCURRENCY), "skip_failures"?: bool}. */

/* What the caller's resolver says of a function: a new object {"function_id": string,
 * "version": integer, "input_schema": object, "result_schema"?: object, "cache"?: bool}
 * in *ret, for the function named `function` (a name or an id) at `version` (0: the
 * latest the caller may run). -ENOENT or -EACCES: no such function or version for this
 * caller (both read the same in the answer); any other error stops validation. */
typedef int (*mp_flow_resolve_fn)(void *userdata, const char *function, int version,
                                  json_t **ret, struct mp_error *err);

/* Parse and validate a definition; every problem is collected with its field path, then
 * -EINVAL (422). On success *ret is a new normalized definition ready to be stored:
 *   {"name", "description", "cache", "params", "input_schema",
 *    "nodes": [{"id", "function", "function_id", "version", "inputs", "map"?,
 *               "depends_on": [ids]}]   (in topological order, ties in the given order),
 *    "outputs": {name: {"from", "path"?}}}
 * params, when absent, are derived from where the nodes use them (types from the
 * functions' input schemas); outputs, when absent, are the nodes no other node reads.
 * resolve may be NULL: functions are then not checked (function_id = function,
 * version = the given one or 0). Other errors (-ENOMEM, the resolver's) pass through. */
int mp_workflow_def_parse(json_t *body, mp_flow_resolve_fn resolve, void *userdata,
                          json_t **ret, struct mp_error *err);

/* --- workflow-run.c ------------------------------------------------------------------
 * A run's state, one JSON object the caller stores:
 *   {"status": "running" | "completed" | "failed" | "cancelled",
 *    "nodes": {id: {"status": "pending" | "running" | "completed" | "failed" | "skipped" |
 *                             "cancelled",
 *                   "task_id"?, "result"?, "error"?, "skipped_reason"?,
 *                   "elements"?: [{"status", "task_id"?, "result"?, "error"?}],
 *                   "element_errors"?: [{"index", "error"}],
 *                   "running_elements"?, "failed_elements"?, "next_element"?}},
 *    "outputs"?, "error"?}
 * (the last three of a node are the scheduler's counters for a running map node, so a
 * step costs what it starts; the API need not show them). The caller may add fields of
 * its own (timings); the functions keep them.
 * The functions change the state in place; none does I/O. The caller, holding the run
 * (a lock or a transaction): mp_flow_run_next, creates a task for each start, records its
 * id with mp_flow_run_set_task, stores the state; on each task's end, mp_flow_run_task_ended
 * then mp_flow_run_next again. An element index of -1 means the node itself (not a map). */

/* A new state for a run of def: every node pending, status "running". NULL: no memory. */
json_t *mp_flow_run_new(json_t *def);
/* One scheduling step. Marks skipped the nodes whose upstream failed (the reason names
 * the failed node), fails the nodes whose inputs cannot be resolved (a path that names
 * nothing, a map over something that is not a list), and returns in *ret a new list of
 * the calls to start now, each {"node", "element" (-1 unless a map element),
 * "function_id", "version", "inputs"}, already marked "running" in state (map elements
 * up to the node's concurrency). When nothing runs and nothing can start, the run ends:
 * state's status becomes completed (with "outputs") or failed (with "error"). Returns the
 * number of starts, or -ENOMEM / -EINVAL for a state that does not fit def. inputs: the
 * run's inputs as validated against def's input_schema; a declared parameter left out
 * takes its schema's default, a derived one leaves its input out (the function's default
 * applies). */
int mp_flow_run_next(json_t *def, json_t *inputs, json_t *state, json_t **ret,
                     struct mp_error *err);
/* Record the task made for a start. 0, or -ENOENT for an unknown node or element. */
int mp_flow_run_set_task(json_t *state, const char *node, int element, const char *task_id);
/* Record a task's end: task_status "completed" (result: the task's result, borrowed and
 * copied) or anything else, a failure (error: the task's error object, copied). A map
 * node completes when its elements all have: its result is their results in order, a
 * failed element null when skip_failures (listed in element_errors), else the node fails.
 * 0; -ENOENT for an unknown node or element; -EALREADY when that call had already ended. */
int mp_flow_run_task_ended(json_t *def, json_t *state, const char *node, int element,
                           const char *task_status, json_t *result, json_t *error);
/* After a crash: calls marked running that have no task id go back to pending. Returns
 * how many. The caller makes this safe: either it stores the state only after
 * mp_flow_run_set_task (a crash before that loses the step, whose tasks must then be
 * found again by their run, node and element before this runs), or it creates tasks
 * idempotently keyed by (run, node, element, attempt). */
int mp_flow_run_recover(json_t *state);
/* Cancel: pending nodes and elements become cancelled and the run "cancelled"; the ids of
 * the tasks still running, to cancel, in *ret (a new list). Their ends are still recorded
 * with mp_flow_run_task_ended. 0; -EALREADY when the run had ended; -ENOMEM. */
int mp_flow_run_cancel(json_t *state, json_t **ret);
/* Retry from failure: failed, skipped and cancelled nodes, and failed, skipped and
 * cancelled elements of map nodes, go back to pending, with the nodes downstream of them
 * (their inputs will change); every other completed node and element keeps its result
 * and is not run again. The run is "running" again: call mp_flow_run_next. Returns how
 * many nodes were reset (0: nothing to retry, the state is unchanged); -EBUSY while a call
 * of the run is still running or the run has not ended. */
int mp_flow_run_retry(json_t *def, json_t *state);
/* True while some call of the run is running (a cancelled run may still have some). */
bool mp_flow_run_busy(json_t *state);

/* --- shared by workflow-def.c and workflow-run.c --- */
enum mp_flow_input {
        MP_FLOW_LITERAL, /* a value, or {"literal": value} */
        MP_FLOW_PARAM,   /* {"param": name} */
        MP_FLOW_FROM,    /* {"from": node, "path"?: path} */
        MP_FLOW_BAD,     /* an object with "param" or "from" that is not one of the above */
};
/* What a node's input (or a map's "over") is. */
enum mp_flow_input mp_flow_input_kind(json_t *input);
/* The value a literal input stands for (borrowed): the input, or what {"literal"} wraps. */
json_t *mp_flow_literal(json_t *input);

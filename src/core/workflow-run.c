/* A workflow run's scheduling, as pure functions over its state (flow.h shows the shape).
 * Nothing here waits, polls or stores: the caller runs one step whenever something
 * happened (the run was made, a task ended, a retry), so a node starts the moment its
 * inputs are ready, and the state it stores after each step is all a restarted server
 * needs to go on without running a completed node again. */
#include <stdio.h>
#include <string.h>

#include "base/limits.h"
#include "core/flow.h"

static json_t *node_state(json_t *state, const char *id) {
        return json_object_get(json_object_get(state, "nodes"), id);
}

static const char *status_of(json_t *s) {
        const char *st = json_string_value(json_object_get(s, "status"));
        return st ? st : "";
}

static bool is(json_t *s, const char *status) {
        return !strcmp(status_of(s), status);
}

static void set_status(json_t *s, const char *status) {
        json_object_set_new(s, "status", json_string(status));
}

/* An error object as tasks carry them: {"type", "message"}. */
static json_t *error_new(const char *type, const char *message) {
        return json_pack("{s:s,s:s}", "type", type, "message", message);
}

static const char *error_message(json_t *error) {
        const char *m = json_string_value(json_object_get(error, "message"));
        return m ? m : json_string_value(error) ? json_string_value(error) : "failed";
}

static void fail(json_t *ns, const char *type, const char *message) {
        set_status(ns, "failed");
        json_object_set_new(ns, "error", error_new(type, message));
}

json_t *mp_flow_run_new(json_t *def) {
        json_t *nodes = json_object(), *n;
        size_t i;

        json_array_foreach(json_object_get(def, "nodes"), i, n)
                json_object_set_new(nodes, json_string_value(json_object_get(n, "id")),
                                    json_pack("{s:s}", "status", "pending"));
        return json_pack("{s:s,s:o}", "status", "running", "nodes", nodes);
}

/* The value a reference stands for: a param of the run's inputs (NULL, no error, when the
 * run left an optional one out), or a path into a completed node's result. */
static int resolve_ref(json_t *ref, json_t *inputs, json_t *state, json_t **ret, char *msg, size_t size) {
        enum mp_flow_input kind = mp_flow_input_kind(ref);
        struct mp_error err = { 0 };
        int r;

        if (kind == MP_FLOW_LITERAL) {
                *ret = mp_flow_literal(ref);
                return 0;
        }
        if (kind == MP_FLOW_PARAM) {
                *ret = json_object_get(inputs, json_string_value(json_object_get(ref, "param")));
                return 0;
        }
        const char *from = json_string_value(json_object_get(ref, "from"));
        json_t *result = json_object_get(node_state(state, from), "result");
        if (kind != MP_FLOW_FROM || !result) {
                snprintf(msg, size, "node \"%s\" has no result", from ? from : "");
                return -ENOENT;
        }
        r = mp_jsonpath_get(result, json_string_value(json_object_get(ref, "path")), ret, &err);
        if (r < 0)
                snprintf(msg, size, "path \"%s\" of node \"%s\": %s",
                         json_string_value(json_object_get(ref, "path")), from, err.message);
        mp_error_clear(&err);
        return r;
}

/* The value v (borrowed) an input key of node is given, as a new reference: a number
 * read from a result in another unit than the input's goes as a quantity, which the
 * input's validation converts (core/schema.c); the node's "units" (workflow-def.c) names
 * that unit, for a map's elements under map.as. */
static json_t *with_unit(json_t *node, const char *key, json_t *v) {
        json_t *unit = json_object_get(json_object_get(node, "units"), key);
        if (json_is_number(v) && json_is_string(unit))
                return json_pack("{s:O,s:O}", "value", v, "unit", unit);
        return json_deep_copy(v);
}

/* A node's inputs, every reference resolved, as a new object. */
static int resolve_inputs(json_t *node, json_t *inputs, json_t *state, json_t **ret, char *msg, size_t size) {
        _cleanup_json_ json_t *out = json_object();
        const char *key;
        json_t *in, *v;
        char why[768];

        if (!out)
                return -ENOMEM;
        json_object_foreach(json_object_get(node, "inputs"), key, in) {
                if (resolve_ref(in, inputs, state, &v, why, sizeof(why)) < 0) {
                        snprintf(msg, size, "input \"%s\": %s", key, why);
                        return -ENOENT;
                }
                if (v && json_object_set_new(out, key, with_unit(node, key, v)) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(out);
        return 0;
}

/* The list a map node runs over (borrowed), or a message why there is none. */
static json_t *map_over(json_t *node, json_t *inputs, json_t *state, char *msg, size_t size) {
        json_t *map = json_object_get(node, "map"), *list = NULL;
        char why[768];

        if (resolve_ref(json_object_get(map, "over"), inputs, state, &list, why, sizeof(why)) < 0) {
                snprintf(msg, size, "map.over: %s", why);
                return NULL;
        }
        if (!json_is_array(list)) {
                static const char *const names[] = { [JSON_OBJECT] = "an object", [JSON_STRING] = "a string",
                                                     [JSON_INTEGER] = "a number", [JSON_REAL] = "a number",
                                                     [JSON_TRUE] = "a boolean", [JSON_FALSE] = "a boolean",
                                                     [JSON_NULL] = "null" };
                snprintf(msg, size, "map.over: the value to map over is %s, not a list",
                         list ? names[json_typeof(list)] : "absent (the parameter was not given)");
                return NULL;
        }
        if (json_array_size(list) > MP_MAX_MAP_ELEMENTS) {
                snprintf(msg, size, "map.over: the list has %zu elements, more than %d, the limit of a map node",
                         json_array_size(list), MP_MAX_MAP_ELEMENTS);
                return NULL;
        }
        return list;
}

static json_t *start_new(json_t *node, int element, json_t *inputs) {
        return json_pack("{s:O,s:i,s:O,s:O,s:o}", "node", json_object_get(node, "id"), "element", element,
                         "function_id", json_object_get(node, "function_id"), "version",
                         json_object_get(node, "version"), "inputs", inputs);
}

/* Why a pending node cannot run: an upstream node failed, was skipped or cancelled. The
 * reason names the node that failed, however far up. NULL: not blocked. */
static bool blocked(json_t *node, json_t *state, char *why, size_t size) {
        json_t *d;
        size_t i;

        json_array_foreach(json_object_get(node, "depends_on"), i, d) {
                json_t *ds = node_state(state, json_string_value(d));
                if (is(ds, "failed"))
                        snprintf(why, size, "upstream node \"%s\" failed", json_string_value(d));
                else if (is(ds, "cancelled"))
                        snprintf(why, size, "upstream node \"%s\" was cancelled", json_string_value(d));
                else if (is(ds, "skipped"))
                        snprintf(why, size, "%s", json_string_value(json_object_get(ds, "skipped_reason")));
                else
                        continue;
                return true;
        }
        return false;
}

static bool deps_completed(json_t *node, json_t *state) {
        json_t *d;
        size_t i;
        json_array_foreach(json_object_get(node, "depends_on"), i, d)
                if (!is(node_state(state, json_string_value(d)), "completed"))
                        return false;
        return true;
}

/* A map node whose elements have all ended: completed with their results in order (a
 * failed element null, listed in element_errors, when skip_failures), or failed. */
static void map_finish(json_t *node, json_t *ns) {
        json_t *elements = json_object_get(ns, "elements"), *el, *first = NULL;
        json_t *results = json_array(), *errors = json_array();
        bool skip = json_is_true(json_object_get(json_object_get(node, "map"), "skip_failures"));
        size_t i, nfailed = 0, first_i = 0;

        json_array_foreach(elements, i, el) {
                if (is(el, "completed")) {
                        json_array_append(results, json_object_get(el, "result"));
                        continue;
                }
                json_array_append_new(results, json_null());
                if (is(el, "skipped"))
                        continue;
                json_array_append_new(errors, json_pack("{s:I,s:O}", "index", (json_int_t) i, "error",
                                                        json_object_get(el, "error") ?: json_null()));
                if (!nfailed++) {
                        first = json_object_get(el, "error");
                        first_i = i;
                }
        }
        if (json_array_size(errors))
                json_object_set(ns, "element_errors", errors);
        if (nfailed && !skip) {
                char msg[1024];
                snprintf(msg, sizeof(msg), "%zu of %zu elements failed; element %zu: %s", nfailed,
                         json_array_size(elements), first_i, error_message(first));
                fail(ns, "MapElementFailed", msg);
        } else {
                set_status(ns, "completed");
                json_object_set(ns, "result", results);
        }
        json_decref(results);
        json_decref(errors);
}

/* A map node keeps three counters in its state, so a step costs what it starts, not the
 * length of its list (a step runs at each end of each of up to MP_MAX_MAP_ELEMENTS
 * calls): its running and failed elements, and next_element, before which no element is
 * pending. Whatever resets elements (retry, recover, cancel) drops them; they are then
 * counted again once. */
static void map_counters(json_t *ns, size_t *running, size_t *failed, size_t *next) {
        json_t *r = json_object_get(ns, "running_elements"), *f = json_object_get(ns, "failed_elements"), *el;
        json_t *c = json_object_get(ns, "next_element");
        size_t i;

        if (json_is_integer(r) && json_is_integer(f) && json_is_integer(c)) {
                *running = (size_t) json_integer_value(r);
                *failed = (size_t) json_integer_value(f);
                *next = (size_t) json_integer_value(c);
                return;
        }
        *running = *failed = *next = 0;
        json_array_foreach(json_object_get(ns, "elements"), i, el) {
                *running += is(el, "running");
                *failed += is(el, "failed") || is(el, "cancelled");
        }
}

static void map_counters_drop(json_t *ns) {
        json_object_del(ns, "running_elements");
        json_object_del(ns, "failed_elements");
        json_object_del(ns, "next_element");
}

/* Start what a running map node may: pending elements up to its concurrency. After a
 * failure without skip_failures, no new element starts; the node ends when none runs. */
static int map_step(json_t *node, json_t *ns, json_t *inputs, json_t *state, json_t *starts) {
        json_t *map = json_object_get(node, "map"), *elements = json_object_get(ns, "elements");
        json_int_t cap = json_integer_value(json_object_get(map, "concurrency"));
        bool skip = json_is_true(json_object_get(map, "skip_failures"));
        size_t n = json_array_size(elements), running, failed, next;
        char msg[1024];

        map_counters(ns, &running, &failed, &next);
        if (failed && !skip)
                for (; next < n; next++)
                        if (is(json_array_get(elements, next), "pending"))
                                set_status(json_array_get(elements, next), "skipped");
        while (next < n && !is(json_array_get(elements, next), "pending"))
                next++;
        if (next < n && (json_int_t) running < (cap > 0 ? cap : 1)) {
                _cleanup_json_ json_t *base = NULL;
                json_t *over = map_over(node, inputs, state, msg, sizeof(msg));
                if (!over || resolve_inputs(node, inputs, state, &base, msg, sizeof(msg)) < 0) {
                        fail(ns, "WorkflowInput", msg);
                        map_counters_drop(ns);
                        return 0;
                }
                const char *as = json_string_value(json_object_get(map, "as"));
                for (; next < n && (json_int_t) running < (cap > 0 ? cap : 1); next++) {
                        json_t *el = json_array_get(elements, next);
                        if (!is(el, "pending"))
                                continue;
                        json_t *in = json_deep_copy(base);
                        json_object_set_new(in, as, with_unit(node, as, json_array_get(over, next)));
                        json_t *s = start_new(node, (int) next, in);
                        if (!s || json_array_append_new(starts, s) < 0)
                                return -ENOMEM;
                        set_status(el, "running");
                        json_object_del(el, "task_id");
                        running++;
                }
                while (next < n && !is(json_array_get(elements, next), "pending"))
                        next++;
        }
        if (!running && next >= n) {
                map_counters_drop(ns);
                map_finish(node, ns);
                return 0;
        }
        json_object_set_new(ns, "running_elements", json_integer((json_int_t) running));
        json_object_set_new(ns, "failed_elements", json_integer((json_int_t) failed));
        json_object_set_new(ns, "next_element", json_integer((json_int_t) next));
        return 0;
}

/* A pending node whose upstream all completed: its inputs resolved, started (a map node:
 * its elements made, then started as map_step allows). */
static int start_node(json_t *node, json_t *ns, json_t *inputs, json_t *state, json_t *starts) {
        _cleanup_json_ json_t *in = NULL;
        char msg[1024];

        if (resolve_inputs(node, inputs, state, &in, msg, sizeof(msg)) < 0) {
                fail(ns, "WorkflowInput", msg);
                return 0;
        }
        if (!json_object_get(node, "map")) {
                json_t *s = start_new(node, -1, TAKE_PTR(in));
                if (!s || json_array_append_new(starts, s) < 0)
                        return -ENOMEM;
                set_status(ns, "running");
                json_object_del(ns, "task_id");
                return 0;
        }
        json_t *over = map_over(node, inputs, state, msg, sizeof(msg));
        if (!over) {
                fail(ns, "WorkflowInput", msg);
                return 0;
        }
        /* Elements kept by a retry stay (their upstream did not change); else one per item. */
        json_t *elements = json_object_get(ns, "elements");
        if (json_array_size(elements) != json_array_size(over)) {
                elements = json_array();
                for (size_t i = 0; i < json_array_size(over); i++)
                        json_array_append_new(elements, json_pack("{s:s}", "status", "pending"));
                json_object_set_new(ns, "elements", elements);
        }
        set_status(ns, "running");
        return map_step(node, ns, inputs, state, starts);
}

/* The run has ended: completed with its outputs, or failed naming the first failed node. */
static void run_finish(json_t *def, json_t *state) {
        json_t *n, *o, *outputs;
        const char *key;
        size_t i;
        char msg[1024];

        json_array_foreach(json_object_get(def, "nodes"), i, n) {
                json_t *ns = node_state(state, json_string_value(json_object_get(n, "id")));
                if (is(ns, "completed"))
                        continue;
                const char *id = json_string_value(json_object_get(n, "id"));
                if (is(ns, "failed"))
                        snprintf(msg, sizeof(msg), "node \"%s\" failed: %s", id,
                                 error_message(json_object_get(ns, "error")));
                else
                        snprintf(msg, sizeof(msg), "node \"%s\" did not run: %s", id,
                                 is(ns, "skipped") ? json_string_value(json_object_get(ns, "skipped_reason"))
                                                   : "cancelled");
                set_status(state, "failed");
                json_object_set_new(state, "error", json_pack("{s:s,s:s,s:O}", "type", "NodeFailed", "message", msg,
                                                              "node", json_object_get(n, "id")));
                return;
        }
        outputs = json_object();
        json_object_foreach(json_object_get(def, "outputs"), key, o) {
                json_t *v;
                if (resolve_ref(o, NULL, state, &v, msg, sizeof(msg)) < 0) {
                        char full[1200];
                        snprintf(full, sizeof(full), "output \"%s\": %s", key, msg);
                        set_status(state, "failed");
                        json_object_set_new(state, "error", error_new("OutputMissing", full));
                        json_decref(outputs);
                        return;
                }
                json_object_set(outputs, key, v);
        }
        json_object_set_new(state, "outputs", outputs);
        set_status(state, "completed");
}

static bool element_running(json_t *ns) {
        json_t *el;
        size_t i;
        json_array_foreach(json_object_get(ns, "elements"), i, el)
                if (is(el, "running"))
                        return true;
        return false;
}

bool mp_flow_run_busy(json_t *state) {
        const char *id;
        json_t *ns;

        json_object_foreach(json_object_get(state, "nodes"), id, ns) {
                if (is(ns, "running") && (!json_object_get(ns, "elements") || element_running(ns)))
                        return true;
        }
        return false;
}

/* The run's inputs with the defaults of the parameters it left out (declared ones; a
 * derived parameter has none: the input is then left out and the function's applies). */
static json_t *with_defaults(json_t *def, json_t *inputs) {
        json_t *out = json_is_object(inputs) ? json_copy(inputs) : json_object(), *schema, *d;
        const char *name;

        json_object_foreach(json_object_get(def, "params"), name, schema)
                if (out && !json_object_get(out, name) && (d = json_object_get(schema, "default")))
                        json_object_set(out, name, d);
        return out;
}

int mp_flow_run_next(json_t *def, json_t *given, json_t *state, json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *starts = json_array(), *inputs = with_defaults(def, given);
        bool open = false;
        json_t *n;
        size_t i;
        int r;

        if (!starts || !inputs)
                return -ENOMEM;
        json_array_foreach(json_object_get(def, "nodes"), i, n)
                if (!node_state(state, json_string_value(json_object_get(n, "id"))))
                        return mp_error_set(err, EINVAL, 500, "internal", "the run's state has no node \"%s\"",
                                            json_string_value(json_object_get(n, "id")));
        if (!is(state, "running")) {
                /* Cancelled: a map node whose last running element ended is cancelled too. */
                json_array_foreach(json_object_get(def, "nodes"), i, n) {
                        json_t *ns = node_state(state, json_string_value(json_object_get(n, "id")));
                        if (is(state, "cancelled") && is(ns, "running") && json_object_get(ns, "elements") &&
                            !element_running(ns))
                                set_status(ns, "cancelled");
                }
                *ret = TAKE_PTR(starts);
                return 0;
        }
        /* In topological order, so a failure found here skips its downstream in the same step. */
        json_array_foreach(json_object_get(def, "nodes"), i, n) {
                json_t *ns = node_state(state, json_string_value(json_object_get(n, "id")));
                char why[1024];

                if (is(ns, "pending") && blocked(n, state, why, sizeof(why))) {
                        set_status(ns, "skipped");
                        json_object_set_new(ns, "skipped_reason", json_string(why));
                } else if (is(ns, "pending") && deps_completed(n, state)) {
                        if ((r = start_node(n, ns, inputs, state, starts)) < 0)
                                return r;
                } else if (is(ns, "running") && json_object_get(ns, "elements")) {
                        if ((r = map_step(n, ns, inputs, state, starts)) < 0)
                                return r;
                }
                open |= is(ns, "pending") || is(ns, "running");
        }
        if (!open)
                run_finish(def, state);
        *ret = TAKE_PTR(starts);
        return (int) json_array_size(*ret);
}

/* The state of one call: the node's, or its element's. */
static json_t *call_state(json_t *state, const char *node, int element) {
        json_t *ns = node_state(state, node);
        if (element < 0)
                return json_object_get(ns, "elements") ? NULL : ns;
        return json_array_get(json_object_get(ns, "elements"), (size_t) element);
}

int mp_flow_run_set_task(json_t *state, const char *node, int element, const char *task_id) {
        json_t *cs = call_state(state, node, element);
        if (!cs || !task_id)
                return -ENOENT;
        return json_object_set_new(cs, "task_id", json_string(task_id)) < 0 ? -ENOMEM : 0;
}

int mp_flow_run_task_ended(json_t *def, json_t *state, const char *node, int element,
                           const char *task_status, json_t *result, json_t *error) {
        json_t *cs = call_state(state, node, element);
        (void) def;

        if (!cs)
                return -ENOENT;
        if (!is(cs, "running"))
                return -EALREADY;
        json_t *ns = node_state(state, node), *r = json_object_get(ns, "running_elements");
        bool ok = task_status && !strcmp(task_status, "completed");
        if (element >= 0 && json_is_integer(r) && json_integer_value(r) > 0) {
                json_integer_set(r, json_integer_value(r) - 1);
                if (!ok && json_is_integer(json_object_get(ns, "failed_elements")))
                        json_integer_set(json_object_get(ns, "failed_elements"),
                                         json_integer_value(json_object_get(ns, "failed_elements")) + 1);
        } else if (element >= 0) {
                map_counters_drop(ns);
        }
        if (ok) {
                set_status(cs, "completed");
                json_object_set_new(cs, "result", result ? json_deep_copy(result) : json_null());
                return 0;
        }
        set_status(cs, task_status && !strcmp(task_status, "cancelled") ? "cancelled" : "failed");
        json_object_set_new(cs, "error", error ? json_deep_copy(error)
                                               : error_new("TaskFailed", task_status ? task_status : "failed"));
        return 0;
}

int mp_flow_run_recover(json_t *state) {
        const char *id;
        json_t *ns, *el;
        size_t i;
        int n = 0;

        json_object_foreach(json_object_get(state, "nodes"), id, ns) {
                if (is(ns, "running") && !json_object_get(ns, "elements") && !json_object_get(ns, "task_id")) {
                        set_status(ns, "pending");
                        n++;
                }
                json_array_foreach(json_object_get(ns, "elements"), i, el)
                        if (is(el, "running") && !json_object_get(el, "task_id")) {
                                set_status(el, "pending");
                                map_counters_drop(ns);
                                n++;
                        }
        }
        return n;
}

int mp_flow_run_cancel(json_t *state, json_t **ret) {
        _cleanup_json_ json_t *tasks = json_array();
        const char *id;
        json_t *ns, *el;
        size_t i;

        if (!tasks)
                return -ENOMEM;
        if (!is(state, "running"))
                return -EALREADY;
        json_object_foreach(json_object_get(state, "nodes"), id, ns) {
                if (is(ns, "pending"))
                        set_status(ns, "cancelled");
                if (is(ns, "running") && json_object_get(ns, "task_id") && !json_object_get(ns, "elements"))
                        json_array_append(tasks, json_object_get(ns, "task_id"));
                map_counters_drop(ns);
                json_array_foreach(json_object_get(ns, "elements"), i, el) {
                        if (is(el, "pending"))
                                set_status(el, "cancelled");
                        if (is(el, "running") && json_object_get(el, "task_id"))
                                json_array_append(tasks, json_object_get(el, "task_id"));
                }
        }
        set_status(state, "cancelled");
        *ret = TAKE_PTR(tasks);
        return 0;
}

static bool needs_retry(json_t *ns) {
        json_t *el;
        size_t i;

        if (is(ns, "failed") || is(ns, "skipped") || is(ns, "cancelled"))
                return true;
        json_array_foreach(json_object_get(ns, "elements"), i, el)
                if (!is(el, "completed"))
                        return true;
        return false;
}

int mp_flow_run_retry(json_t *def, json_t *state) {
        json_t *n, *d, *reset = json_object();
        size_t i, k;
        int count = 0;

        if (!reset)
                return -ENOMEM;
        if (is(state, "running") || mp_flow_run_busy(state)) {
                json_decref(reset);
                return -EBUSY;
        }
        /* In topological order: a node is reset when it did not complete, or when one it
         * reads from is reset (what it read will change). */
        json_array_foreach(json_object_get(def, "nodes"), i, n) {
                const char *id = json_string_value(json_object_get(n, "id"));
                json_t *ns = node_state(state, id);
                bool upstream = false;

                json_array_foreach(json_object_get(n, "depends_on"), k, d)
                        upstream |= json_object_get(reset, json_string_value(d)) != NULL;
                if (!ns || (!upstream && !needs_retry(ns)))
                        continue;
                json_object_set_new(reset, id, json_true());
                count++;
                set_status(ns, "pending");
                json_object_del(ns, "result");
                json_object_del(ns, "error");
                json_object_del(ns, "skipped_reason");
                json_object_del(ns, "element_errors");
                json_object_del(ns, "task_id");
                map_counters_drop(ns);
                if (upstream) {
                        json_object_del(ns, "elements"); /* a new list to map over */
                        continue;
                }
                json_t *el;
                json_array_foreach(json_object_get(ns, "elements"), k, el) {
                        if (is(el, "completed"))
                                continue;
                        set_status(el, "pending");
                        json_object_del(el, "error");
                        json_object_del(el, "task_id");
                }
        }
        json_decref(reset);
        if (count) {
                set_status(state, "running");
                json_object_del(state, "outputs");
                json_object_del(state, "error");
        }
        return count;
}

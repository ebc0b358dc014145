/* Fuzz target: workflow definitions (src/core/workflow-def.c), the body of POST
 * /workflows, and then a run of each accepted one (src/core/workflow-run.c), driven
 * step by step: every call ends as completed (its inputs as its result, so map lists and
 * paths see real data) or failed, chosen by its position, then a retry and a cancel.
 * Input: the definition (JSON); its "_inputs" member, if any, is the run's inputs. The
 * resolver knows functions "f" (schemas with types), "g" (no result schema) and "h"
 * (forbidden). */
#include <jansson.h>

#include "base/limits.h"
#include "core/flow.h"
#include "fuzz.h"

static int resolve(void *userdata, const char *function, int version, json_t **ret, struct mp_error *err) {
        (void) userdata;
        (void) err;
        if (!strcmp(function, "h") || version > 3)
                return -EACCES;
        if (strcmp(function, "f") && strcmp(function, "g"))
                return -ENOENT;
        *ret = json_pack("{s:s,s:i,s:{s:s,s:{s:{s:s},s:{s:s},s:{s:s,s:{s:s}}},s:[s]}}", "function_id", function,
                         "version", version ? version : 3, "input_schema", "type", "object", "properties", "x",
                         "type", "number", "s", "type", "string", "xs", "type", "array", "items", "type", "number",
                         "required", "x");
        if (!strcmp(function, "f"))
                json_object_set_new(*ret, "result_schema",
                                    json_pack("{s:s,s:{s:{s:s},s:{s:s}}}", "type", "object", "properties", "x", "type",
                                              "number", "s", "type", "string"));
        return 0;
}

static bool running(json_t *state) {
        return !strcmp(json_string_value(json_object_get(state, "status")), "running");
}

/* Every call ends within the step that started it, so a step that starts nothing on a
 * running run would be a stall: the run must have ended instead. */
static void drive(json_t *def, json_t *inputs) {
        json_t *state = mp_flow_run_new(def), *starts = NULL, *s, *tasks = NULL;
        struct mp_error err = { 0 };
        unsigned calls = 0;
        size_t i;

        fuzz_check(state != NULL);
        for (int pass = 0; pass < 2; pass++) {
                for (int step = 0; step < 300 && running(state); step++) {
                        int n = mp_flow_run_next(def, inputs, state, &starts, &err);
                        fuzz_check(n >= 0 && (size_t) n == json_array_size(starts));
                        json_array_foreach(starts, i, s) {
                                const char *node = json_string_value(json_object_get(s, "node"));
                                int el = (int) json_integer_value(json_object_get(s, "element"));
                                fuzz_check(mp_flow_run_set_task(state, node, el, "t") == 0);
                                fuzz_check(json_is_object(json_object_get(s, "inputs")));
                                bool ok = (++calls % 5) != 0;
                                json_t *e = json_pack("{s:s,s:s}", "type", "E", "message", "m");
                                fuzz_check(mp_flow_run_task_ended(def, state, node, el, ok ? "completed" : "failed",
                                                                  json_object_get(s, "inputs"), e) == 0);
                                fuzz_check(mp_flow_run_task_ended(def, state, node, el, "completed", NULL, NULL) ==
                                           -EALREADY);
                                json_decref(e);
                        }
                        json_decref(starts);
                        starts = NULL;
                        fuzz_check(n > 0 || !running(state));
                }
                fuzz_check(!mp_flow_run_busy(state));
                if (pass == 0 && !running(state))
                        fuzz_check(mp_flow_run_retry(def, state) >= 0);
        }
        int c = mp_flow_run_cancel(state, &tasks);
        fuzz_check(c == 0 || c == -EALREADY);
        mp_flow_run_recover(state);
        json_decref(tasks);
        json_decref(state);
        mp_error_clear(&err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        json_t *body = json_loadb((const char *) data, size, JSON_ALLOW_NUL, NULL), *def = NULL, *n, *d;
        struct mp_error err = { 0 };
        size_t i, k;
        int r;

        if (!body)
                return 0;
        r = mp_workflow_def_parse(body, resolve, NULL, &def, &err);
        fuzz_check(r == 0 || r == -EINVAL);
        fuzz_check((r == 0) == (def != NULL));
        fuzz_check(r == 0 || (err.status == 422 && err.errors && json_array_size(err.errors)));
        mp_error_clear(&err);
        if (def) {
                /* Topological order: every node reads only nodes listed before it. */
                json_t *seen = json_object();
                fuzz_check(json_array_size(json_object_get(def, "nodes")) <= MP_MAX_WORKFLOW_NODES);
                json_array_foreach(json_object_get(def, "nodes"), i, n) {
                        json_array_foreach(json_object_get(n, "depends_on"), k, d)
                                fuzz_check(json_object_get(seen, json_string_value(d)) != NULL);
                        json_object_set_new(seen, json_string_value(json_object_get(n, "id")), json_true());
                }
                json_decref(seen);
                drive(def, json_object_get(body, "_inputs"));
        }
        json_decref(def);
        json_decref(body);
        return 0;
}

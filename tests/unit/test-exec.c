/* exec/: calls through the real executor and sandbox (user namespaces required). */
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "base/limits.h"
#include "base/util.h"
#include "check.h"
#include "exec-fixture.h"
#include "exec/exec.h"

static struct mp_executor *ex;

static struct mp_executor *executor(void) {
        if (!ex) {
                struct mp_exec_config cfg = { .sandbox = true, .python = "/usr/bin/python3", .channels = 4 };
                struct mp_error err = { 0 };
                if (mp_executor_start(&cfg, &ex, &err) < 0) {
                        fprintf(stderr, "cannot start the executor: %s\n", err.message);
                        exit(2);
                }
        }
        return ex;
}

static const struct mp_limits small = { .timeout_s = 20, .memory_mb = 512, .cpus = 1, .max_procs = 16, .tmp_mb = 16 };

/* Run code's handler "main" with inputs (JSON text); 0 or -errno. */
static int run(const char *code, const char *inputs, struct mp_exec_result *res) {
        json_t *in = json_loads(inputs ? inputs : "{}", 0, NULL);
        struct mp_exec_request req = { .op = MP_EXEC_RUN, .code = code, .handler = "main", .inputs = in, .limits = small };
        struct mp_error err = { 0 };
        int r = mp_executor_run(executor(), &req, res, &err);
        if (r < 0)
                fprintf(stderr, "  run: %s\n", err.message);
        json_decref(in);
        mp_error_clear(&err);
        return r;
}

static int analyze(const char *code, const char *handler, struct mp_exec_result *res) {
        json_t *policy = json_loads("{\"forbidden_imports\":[\"os\",\"subprocess\",\"socket\"],"
                                    "\"forbidden_calls\":[\"eval\",\"exec\"]}", 0, NULL);
        struct mp_exec_request req = { .op = MP_EXEC_ANALYZE, .code = code, .handler = handler, .policy = policy,
                                       .limits = small };
        struct mp_error err = { 0 };
        int r = mp_executor_run(executor(), &req, res, &err);
        if (r < 0)
                fprintf(stderr, "  analyze: %s\n", err.message);
        json_decref(policy);
        mp_error_clear(&err);
        return r;
}

static char *dump(json_t *j) {
        static char buf[8192];
        char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
        snprintf(buf, sizeof(buf), "%s", s ? s : "(null)");
        free(s);
        return buf;
}

TEST(run_numbers) {
        struct mp_exec_result r;
        REQUIRE(run("def main(a: float, b: int = 2):\n    return {'sum': a + b, 'n': b}\n", "{\"a\": 1.5, \"b\": 3}",
                    &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        CHECK_STR(dump(r.result), "{\"n\":3,\"sum\":4.5}");
        CHECK_INT(r.wall_ms, >=, 0);
        CHECK_INT(r.peak_memory_kb, >, 0);
        mp_exec_result_clear(&r);
}

TEST(run_numpy_conversion) {
        struct mp_exec_result r;
        REQUIRE(run("import numpy as np\n"
                    "def main():\n    return {'a': np.arange(3) * 2, 'f': np.float64(2.5), 'i': np.int32(7), 't': (1, 2),"
                    " 'm': np.eye(2)}\n",
                    NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        CHECK_STR(dump(r.result), "{\"a\":[0,2,4],\"f\":2.5,\"i\":7,\"m\":[[1.0,0.0],[0.0,1.0]],\"t\":[1,2]}");
        mp_exec_result_clear(&r);
}

TEST(run_nan_becomes_null) {
        struct mp_exec_result r;
        REQUIRE(run("def main():\n    return {'path': [1.0, 2.0, float('nan')], 'x': float('inf')}\n", NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        CHECK_STR(dump(r.result), "{\"path\":[1.0,2.0,null],\"x\":null}");
        CHECK(r.logs && strstr(r.logs, "mecapy: result.path[2] was NaN, returned as null"));
        CHECK(r.logs && strstr(r.logs, "result.x was inf"));
        mp_exec_result_clear(&r);
}

TEST(run_unserialisable_result) {
        struct mp_exec_result r;
        REQUIRE(run("def main():\n    return {'f': open}\n", NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_ERROR);
        CHECK_STR(json_string_value(json_object_get(r.error, "type")), "TypeError");
        CHECK(strstr(json_string_value(json_object_get(r.error, "message")) ?: "", "result.f"));
        mp_exec_result_clear(&r);
}

TEST(run_exception_user_traceback) {
        struct mp_exec_result r;
        REQUIRE(run("def helper(x):\n    return 1 / x\n\ndef main(x):\n    return helper(x)\n", "{\"x\": 0}", &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_ERROR);
        CHECK_STR(json_string_value(json_object_get(r.error, "type")), "ZeroDivisionError");
        const char *tb = json_string_value(json_object_get(r.error, "traceback"));
        CHECK(tb && strstr(tb, "File \"<function>\", line 2, in helper"));
        CHECK(tb && strstr(tb, "line 5, in main"));
        CHECK(tb && strstr(tb, "return 1 / x"));
        CHECK(tb && !strstr(tb, "<string>")); /* no guest frame */
        CHECK(tb && !strstr(tb, "op_run"));
        mp_exec_result_clear(&r);
}

TEST(run_stdout_captured) {
        struct mp_exec_result r;
        REQUIRE(run("import sys\ndef main():\n    print('hello from user')\n    print('to err', file=sys.stderr)\n    return 1\n",
                    NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        CHECK(r.logs && strstr(r.logs, "hello from user\n"));
        CHECK(r.logs && strstr(r.logs, "to err\n"));
        CHECK(!r.logs_truncated);
        mp_exec_result_clear(&r);
}

TEST(run_artifact) {
        struct mp_exec_result r;
        REQUIRE(run("def main():\n    open('outputs/report.txt', 'w').write('deflection 3 mm')\n"
                    "    import os\n    os.symlink('/etc/passwd', 'outputs/link')\n    return 'done'\n",
                    NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        CHECK_INT(r.n_artifacts, ==, 1); /* the symlink is not followed nor listed */
        if (r.n_artifacts == 1) {
                CHECK_STR(r.artifacts[0].name, "report.txt");
                CHECK_INT(r.artifacts[0].size, ==, 15);
                CHECK(r.artifacts[0].data && memcmp(r.artifacts[0].data, "deflection 3 mm", 15) == 0);
        }
        mp_exec_result_clear(&r);
}

TEST(run_missing_handler) {
        struct mp_exec_result r;
        REQUIRE(run("def other():\n    return 1\n", NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_ERROR);
        CHECK_STR(json_string_value(json_object_get(r.error, "type")), "AttributeError");
        mp_exec_result_clear(&r);
}

TEST(run_syntax_error) {
        struct mp_exec_result r;
        REQUIRE(run("def main(:\n    pass\n", NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_ERROR);
        CHECK_STR(json_string_value(json_object_get(r.error, "type")), "SyntaxError");
        mp_exec_result_clear(&r);
}

TEST(run_bad_request_rejected) {
        struct mp_exec_result r;
        struct mp_error err = { 0 };
        struct mp_exec_request req = { .op = MP_EXEC_RUN, .code = "x=1", .handler = "no such", .limits = small };
        CHECK_INT(mp_executor_run(executor(), &req, &r, &err), ==, -EINVAL);
        CHECK_STR(err.code, "validation");
        mp_error_clear(&err);
        req.handler = "main";
        req.limits.timeout_s = MP_MAX_TIMEOUT_S + 1;
        CHECK_INT(mp_executor_run(executor(), &req, &r, &err), ==, -EINVAL);
        CHECK(strstr(err.message, "timeout_s"));
        mp_error_clear(&err);
}

static const char *SCHEMA_SRC =
        "from typing import Optional, List, Literal\n"
        "def beam(length: float, load: float = 1000.0, supports: Optional[int] = None,\n"
        "         points: List[float] = [0.0], mode: Literal['a', 'b'] = 'a', tags: list[str] | None = None,\n"
        "         flag: bool = False, name: str = 'x', anything=3, opts: dict[str, float] = {}):\n"
        "    \"\"\"Deflection of a simply supported beam.\n\n"
        "    Args:\n"
        "        length (float): Span in metres.\n"
        "        load: Point load in newtons,\n"
        "            at mid-span.\n"
        "    \"\"\"\n"
        "    return 0\n";

TEST(analyze_schema) {
        struct mp_exec_result r;
        REQUIRE(analyze(SCHEMA_SRC, "beam", &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        json_t *s = json_object_get(r.result, "input_schema");
        json_t *p = json_object_get(s, "properties");
        CHECK_STR(dump(json_object_get(p, "length")), "{\"description\":\"Span in metres.\",\"type\":\"number\"}");
        CHECK_STR(dump(json_object_get(p, "load")),
                  "{\"default\":1000.0,\"description\":\"Point load in newtons, at mid-span.\",\"type\":\"number\"}");
        CHECK_STR(dump(json_object_get(p, "supports")), "{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"null\"}],\"default\":null}");
        CHECK_STR(dump(json_object_get(p, "points")), "{\"default\":[0.0],\"items\":{\"type\":\"number\"},\"type\":\"array\"}");
        CHECK_STR(dump(json_object_get(p, "mode")), "{\"default\":\"a\",\"enum\":[\"a\",\"b\"]}");
        CHECK_STR(dump(json_object_get(p, "tags")),
                  "{\"anyOf\":[{\"items\":{\"type\":\"string\"},\"type\":\"array\"},{\"type\":\"null\"}],\"default\":null}");
        CHECK_STR(dump(json_object_get(p, "flag")), "{\"default\":false,\"type\":\"boolean\"}");
        CHECK_STR(dump(json_object_get(p, "anything")), "{\"default\":3}");
        CHECK_STR(dump(json_object_get(p, "opts")),
                  "{\"additionalProperties\":{\"type\":\"number\"},\"default\":{},\"type\":\"object\"}");
        CHECK_STR(dump(json_object_get(s, "required")), "[\"length\"]");
        CHECK(json_is_false(json_object_get(s, "additionalProperties")));
        CHECK_STR(json_string_value(json_object_get(s, "description")), "Deflection of a simply supported beam.");
        CHECK_STR(json_string_value(json_object_get(r.result, "description")), "Deflection of a simply supported beam.");
        CHECK_INT(json_array_size(json_object_get(r.result, "problems")), ==, 0);
        mp_exec_result_clear(&r);
}

TEST(analyze_numpy_docstring_kwargs) {
        struct mp_exec_result r;
        REQUIRE(analyze("def main(x: int, *args, **kw):\n"
                        "    \"\"\"Sum things.\n\n    Parameters\n    ----------\n    x : int\n        The count.\n\n"
                        "    Returns\n    -------\n    int\n    \"\"\"\n    return x\n",
                        "main", &r) == 0);
        json_t *s = json_object_get(r.result, "input_schema");
        CHECK_STR(dump(json_object_get(json_object_get(s, "properties"), "x")),
                  "{\"description\":\"The count.\",\"type\":\"integer\"}");
        CHECK(json_is_true(json_object_get(s, "additionalProperties")));
        mp_exec_result_clear(&r);
}

static const char *problem(json_t *res, size_t i, int *line) {
        json_t *p = json_array_get(json_object_get(res, "problems"), i);
        *line = (int) json_integer_value(json_object_get(p, "line"));
        return json_string_value(json_object_get(p, "message")) ?: "";
}

TEST(analyze_syntax_error) {
        struct mp_exec_result r;
        int line = 0;
        REQUIRE(analyze("x = 1\n\ndef main(:\n    pass\n", "main", &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        CHECK(strstr(problem(r.result, 0, &line), "SyntaxError"));
        CHECK_INT(line, ==, 3);
        mp_exec_result_clear(&r);
}

TEST(analyze_missing_handler) {
        struct mp_exec_result r;
        int line = 0;
        REQUIRE(analyze("def other():\n    pass\n", "main", &r) == 0);
        CHECK(strstr(problem(r.result, 0, &line), "no function named 'main'"));
        mp_exec_result_clear(&r);
}

TEST(analyze_forbidden_import_and_eval) {
        struct mp_exec_result r;
        int line = 0;
        REQUIRE(analyze("import math\nimport os.path\n\ndef main(s: str):\n    from subprocess import run\n"
                        "    return eval(s)\n",
                        "main", &r) == 0);
        CHECK_INT(json_array_size(json_object_get(r.result, "problems")), ==, 3);
        CHECK(strstr(problem(r.result, 0, &line), "'os'"));
        CHECK_INT(line, ==, 2);
        CHECK(strstr(problem(r.result, 1, &line), "'subprocess'"));
        CHECK_INT(line, ==, 5);
        CHECK(strstr(problem(r.result, 2, &line), "eval()"));
        CHECK_INT(line, ==, 6);
        mp_exec_result_clear(&r);
}

TEST(analyze_hostile_nesting) {
        struct mp_exec_result r;
        struct mp_buf b = { 0 };
        int line = 0;
        mp_buf_append(&b, "def main():\n    return ", 23);
        for (int i = 0; i < 200000; i++)
                mp_buf_append(&b, "(", 1);
        REQUIRE(analyze(b.data, "main", &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        CHECK_INT(json_array_size(json_object_get(r.result, "problems")), >=, 1);
        problem(r.result, 0, &line);
        CHECK_INT(line, >=, 1);
        mp_exec_result_clear(&r);
        mp_buf_free(&b);
}

struct par {
        int i;
        int status;
        long long value;
};

static void *par_call(void *arg) {
        struct par *p = arg;
        struct mp_exec_result r;
        char in[64];
        snprintf(in, sizeof(in), "{\"i\": %d}", p->i);
        p->status = -1;
        if (run("import time\ndef main(i):\n    time.sleep(0.3)\n    return i * i\n", in, &r) == 0) {
                p->status = (int) r.status;
                p->value = json_integer_value(r.result);
                mp_exec_result_clear(&r);
        }
        return NULL;
}

TEST(parallel_calls) {
        enum { N = 8 };
        pthread_t t[N];
        struct par p[N];
        executor();
        int64_t t0 = mp_mono_ms();
        for (int i = 0; i < N; i++) {
                p[i] = (struct par) { .i = i };
                pthread_create(&t[i], NULL, par_call, &p[i]);
        }
        for (int i = 0; i < N; i++)
                pthread_join(t[i], NULL);
        int64_t dt = mp_mono_ms() - t0;
        for (int i = 0; i < N; i++) {
                CHECK_INT(p[i].status, ==, MP_EXEC_OK);
                CHECK_INT(p[i].value, ==, i * i);
        }
        /* 8 calls of 0.3 s on 4 channels: about 0.6 s, far from 2.4 s in series. */
        CHECK_INT(dt, <, 2000);
}

TEST(latency) {
        struct mp_exec_result r;
        int64_t t0 = mp_mono_ms();
        for (int i = 0; i < 10; i++) {
                REQUIRE(run("def main():\n    return 1\n", NULL, &r) == 0);
                CHECK_INT(r.status, ==, MP_EXEC_OK);
                mp_exec_result_clear(&r);
        }
        printf("  per call (sandbox + python start + call): %.1f ms\n", (double) (mp_mono_ms() - t0) / 10.0);
}


TEST(stop_and_dead_executor) {
        struct mp_exec_result r;
        struct mp_error err = { 0 };
        struct mp_exec_request req = { .op = MP_EXEC_RUN, .code = "def main():\n    return 1\n", .handler = "main",
                                       .limits = small };
        mp_executor_stop(ex);
        ex = NULL;
        /* A fresh executor, then kill it from outside: a call errors, never hangs. */
        struct mp_executor *e2;
        struct mp_exec_config cfg = { .sandbox = true, .python = "/usr/bin/python3", .channels = 1 };
        REQUIRE(mp_executor_start(&cfg, &e2, &err) == 0);
        REQUIRE(mp_executor_run(e2, &req, &r, &err) == 0);
        mp_exec_result_clear(&r);
        pid_t pid = executor_pid();
        REQUIRE(pid > 0);
        kill(pid, SIGKILL);
        usleep(50000);
        CHECK_INT(mp_executor_run(e2, &req, &r, &err), <, 0);
        CHECK(strstr(err.message, "executor"));
        mp_error_clear(&err);
        mp_executor_stop(e2);
}

static const struct check_case cases[] = {
        CASE(run_numbers),
        CASE(run_numpy_conversion),
        CASE(run_nan_becomes_null),
        CASE(run_unserialisable_result),
        CASE(run_exception_user_traceback),
        CASE(run_stdout_captured),
        CASE(run_artifact),
        CASE(run_missing_handler),
        CASE(run_syntax_error),
        CASE(run_bad_request_rejected),
        CASE(analyze_schema),
        CASE(analyze_numpy_docstring_kwargs),
        CASE(analyze_syntax_error),
        CASE(analyze_missing_handler),
        CASE(analyze_forbidden_import_and_eval),
        CASE(analyze_hostile_nesting),
        CASE(parallel_calls),
        CASE(latency),
        CASE(stop_and_dead_executor),
};

CHECK_MAIN(cases)

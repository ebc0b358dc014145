/* exec/: "run this code with these inputs under these limits" -> "result, logs, files,
 * usage". The security boundary. It knows nothing of HTTP, SQL or tenants.
 *
 * mp_executor_start() forks a single-threaded executor process (call it before any
 * thread exists); every sandbox is forked from that process, never from the threaded
 * server. mp_executor_run() is thread-safe and blocks the calling thread until the
 * call ends; up to `channels` calls run at once. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "base/error.h"

struct mp_limits {
        int timeout_s;  /* wall clock; the whole sandbox is killed past it */
        int memory_mb;  /* address space / cgroup memory */
        int cpus;       /* cgroup CPU quota where available */
        int max_procs;  /* processes and threads inside the sandbox */
        int tmp_mb;     /* size of the private /tmp and working directory */
        /* The solver environment (warm instances only): MP_SOLVER_* bits naming the
         * solver binaries this sandbox may start. 0: it can start no process at all
         * and execute no file. */
        unsigned solvers;
};

/* Solvers a function may declare ("solvers": ["calculix", "gmsh"]). */
#define MP_SOLVER_CALCULIX 1u /* /usr/bin/ccx (calculix-ccx) */
#define MP_SOLVER_GMSH 2u     /* /usr/bin/gmsh (python3-gmsh runs in-process, no exec) */
#define MP_SOLVER_ALL (MP_SOLVER_CALCULIX | MP_SOLVER_GMSH)
/* The bit of a solver name, 0 when unknown. */
unsigned mp_exec_solver_bit(const char *name);

struct mp_exec_config {
        bool sandbox;           /* false only with --no-sandbox (development, loudly logged) */
        const char *python;     /* interpreter run inside the sandbox, "/usr/bin/python3" */
        unsigned channels;      /* calls that can run at once */
        /* The warm pool (see exec-pool.c). 0 picks the default named in brackets. */
        unsigned max_instances;   /* live function instances, spares included [64] */
        uint64_t max_memory_mb;   /* private memory of all instances together [25% of RAM] */
        unsigned max_per_function;/* calls of one function+tenant at once; more queue [4] */
        unsigned max_calls;       /* an instance retires after this many calls [10000] */
        int idle_s;               /* an instance idle this long retires [600] */
        unsigned max_growth_mb;   /* an instance whose memory grew this much since its
                                   * first call retires [256] */
        const char *preload;      /* comma-separated modules every zygote imports
                                   * ["numpy,scipy,scipy.optimize"] */
        /* cgroup limits (exec-cgroup.c). Without them user code does not run: */
        const char *cgroup_root;  /* a delegated cgroup v2 directory; NULL: cgroup v1 if
                                   * usable, else our own cgroup v2 (systemd Delegate=yes) */
        bool allow_unlimited;     /* run on rlimits alone when no cgroup limit can be
                                   * applied (a loud warning) instead of refusing to start */
        /* Per-function requirements (core/environments.c): the folder holding one
         * read-only layer per environment, named by its id (64 hex digits). A request's
         * env_key of that form runs in a zygote of its own that sees LAYERS/<id>
         * read-only at MP_SANDBOX_LAYERDIR, first on sys.path. NULL: no layers. */
        const char *layers_dir;
};

enum mp_exec_op {
        MP_EXEC_RUN,      /* import the module, call handler(**inputs) */
        MP_EXEC_ANALYZE,  /* parse only: input schema from the signature, policy check */
};

/* What a running call reported since the last update (borrowed for the callback). */
struct mp_exec_live {
        bool has_progress;    /* the function called mecapy.progress() */
        double fraction;      /* 0..1 */
        const char *message;  /* UTF-8, at most MP_MAX_PROGRESS_MESSAGE characters */
        const char *logs;     /* bytes printed since the previous update (not NUL-terminated;
                               * cut at a UTF-8 character boundary); the final result's logs
                               * still hold every byte, these included */
        size_t logs_len;
};

struct mp_exec_request {
        enum mp_exec_op op;
        const char *code;     /* the module source */
        const char *handler;  /* function name, e.g. "main" */
        json_t *inputs;       /* RUN: object of keyword arguments (borrowed) */
        json_t *policy;       /* ANALYZE: {"forbidden_imports": [..], "forbidden_calls": [..]} (borrowed) */
        struct mp_limits limits;
        /* Warm path (RUN only, sandbox mode). NULL function_key: a cold, one-off sandbox. */
        const char *function_key; /* e.g. "<function_id>:<version>": what an instance loads */
        const char *tenant;       /* the calling user: an instance never serves two tenants */
        const char *env_key;      /* environment (zygote) key; NULL = "base"; an environment
                                   * id (64 hex digits) adds its layer (layers_dir) */
        bool per_call;            /* a fresh (pre-forked) instance for every call */
        /* What mp_executor_cancel names this call by (the task id); NULL: it cannot be
         * cancelled. At most MP_EXEC_CALL_ID_MAX bytes. */
        const char *call_id;
        /* The API request behind the call (base/log.h), for the executor's log lines; NULL:
         * none. A value that is not a valid id is dropped. */
        const char *request_id;
        /* Live updates (RUN only): called on mp_executor_run's thread while the call
         * runs, at most once per MP_LIVE_INTERVAL_MS, and once more before it returns
         * when the last progress was not passed on yet. NULL: none are sent. */
        void (*on_live)(void *ctx, const struct mp_exec_live *live);
        void *live_ctx;
};
#define MP_EXEC_CALL_ID_MAX 128

enum mp_exec_status {
        MP_EXEC_OK,        /* result holds the return value (ANALYZE: the analysis) */
        MP_EXEC_ERROR,     /* user code raised: error = {type, message, traceback} */
        MP_EXEC_TIMEOUT,   /* wall clock limit: error names the limit */
        MP_EXEC_LIMIT,     /* memory, processes, output or result size: error names which */
        MP_EXEC_CRASH,     /* the interpreter died (signal, exit): error says how */
        MP_EXEC_CANCELLED, /* mp_executor_cancel stopped it: its sandbox or instance is
                            * gone; error = {"type":"Cancelled","message"} */
};

struct mp_exec_artifact {
        char *name;   /* its path under outputs/, folders joined by / ("sub/x.csv") */
        char *data;
        size_t size;
};

struct mp_exec_result {
        enum mp_exec_status status;
        json_t *result;   /* owned; MP_EXEC_OK */
        json_t *error;    /* owned; otherwise: {"type","message","traceback"?,"limit"?} */
        char *logs;       /* owned, NUL-terminated: stdout and stderr, capped */
        size_t logs_len;
        bool logs_truncated;
        struct mp_exec_artifact *artifacts; /* owned */
        size_t n_artifacts;
        int64_t wall_ms, cpu_ms, peak_memory_kb; /* of this call, not of its instance */
};

struct mp_executor;

/* 0 or -errno (err says why, e.g. the host cannot create user namespaces). */
int mp_executor_start(const struct mp_exec_config *cfg, struct mp_executor **ret,
                      struct mp_error *err);
/* Runs one request. Returns 0 when the call ran to any end (look at ret->status), or
 * -errno with err filled when it could not be run at all (sandbox setup failed, executor
 * gone). ret is only filled on 0 and must be cleared with mp_exec_result_clear(). */
int mp_executor_run(struct mp_executor *ex, const struct mp_exec_request *req,
                    struct mp_exec_result *ret, struct mp_error *err);
void mp_exec_result_clear(struct mp_exec_result *r);
/* Stops the call named call_id wherever it is: one waiting for a channel or an
 * instance is dropped, a running one has its sandbox (cold, per_call) or its warm
 * instance killed (the instance is retired, no other call shares it). Its blocked
 * mp_executor_run returns 0 with MP_EXEC_CANCELLED once the sandbox is gone. A call
 * that is unknown or already finished: nothing happens. Thread-safe, never blocks on
 * a running call: it goes over a control socket of its own, not over a channel. 0, or
 * -errno when the executor is gone. */
int mp_executor_cancel(struct mp_executor *ex, const char *call_id);
/* The warm pool's counters: {"hits","misses","cold_starts","evictions","retired",
 * "crashes","instances","spares","busy","queued","zygotes","memory_kb","per_call"}.
 * 0 with *ret owned by the caller, or -errno (executor gone). Thread-safe. */
int mp_executor_stats(struct mp_executor *ex, json_t **ret);
/* Kills running calls, stops the executor process, frees ex. NULL is fine. */
void mp_executor_stop(struct mp_executor *ex);

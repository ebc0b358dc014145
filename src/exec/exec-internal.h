/* exec/ private interfaces: the sandbox plan and spawner, the seccomp filter, the
 * cgroup v1 limits. Only the executor process (single-threaded, see exec-executor.c)
 * calls these. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <poll.h>
#include <sys/types.h>
#include <jansson.h>

#include "base/util.h"

#include "base/error.h"
#include "exec/exec.h"

/* uid/gid user code runs as inside its user namespace (root mode only). */
#define MP_SANDBOX_UID 1000
/* As root, inside 0..65535 maps to host MP_SANDBOX_HOST_BASE.. (SERVICES pitfall 13): the
 * sandbox's "root" and its user own nothing on the host. */
#define MP_SANDBOX_HOST_BASE 100000
#define MP_SANDBOX_RANGE 65536
/* Paths inside the sandbox. */
#define MP_SANDBOX_WORKDIR "/work"

/* ---- seccomp (exec-seccomp.c) ---- */

struct mp_seccomp;
/* Build the deny-list filter once (libseccomp) and export it as BPF, so each sandbox
 * only loads a ready program. 0 or -errno; *ret owned by the caller. */
int mp_seccomp_build(struct mp_seccomp **ret, struct mp_error *err);
/* In the sandbox child, after PR_SET_NO_NEW_PRIVS: install the filter. 0 or -errno. */
int mp_seccomp_load(const struct mp_seccomp *s);
struct mp_seccomp *mp_seccomp_free(struct mp_seccomp *s);

/* ---- cgroup v1 (exec-cgroup.c) ---- */

enum { MP_CG_MEMORY, MP_CG_PIDS, MP_CG_CPU, MP_CG_COUNT };

struct mp_cgroup {
        char path[MP_CG_COUNT][PATH_MAX]; /* "" when that controller is not in use */
};

/* Where the host lets us: create one cgroup per sandbox under <own cgroup>/mecapy/<name>
 * for memory, pids and cpu, and write the limits. Controllers the host does not offer
 * are skipped (rlimits still apply). Never fails hard: returns the number in use. */
int mp_cgroup_create(const char *name, const struct mp_limits *limits, struct mp_cgroup *cg);
/* Move pid into every cgroup of cg. 0 or -errno. */
int mp_cgroup_attach(const struct mp_cgroup *cg, pid_t pid);
/* Peak memory (kB, -1 unknown) and whether the memory limit was hit. */
void mp_cgroup_usage(const struct mp_cgroup *cg, int64_t *ret_peak_kb, bool *ret_oom);
/* (Re)write the limits of an existing cgroup. 0 or -errno. */
int mp_cgroup_set_limits(const struct mp_cgroup *cg, const struct mp_limits *limits);
/* Current memory charged to cg in kB (-1 unknown); reset the peak for the next call. */
int64_t mp_cgroup_memory_kb(const struct mp_cgroup *cg);
void mp_cgroup_reset_peak(const struct mp_cgroup *cg);
/* rmdir every cgroup of cg; -EBUSY while killed tasks are still leaving (retry later). */
int mp_cgroup_destroy(struct mp_cgroup *cg);

/* ---- sandbox (exec-sandbox.c) ---- */

struct mp_spawn {
        bool sandbox;                   /* false: development mode, no namespaces */
        const char *python;             /* absolute path of the interpreter */
        const char *guest_src;          /* passed as -c */
        const char *workdir;            /* no-sandbox mode only: host working directory */
        struct mp_limits limits;
        const struct mp_seccomp *seccomp;
        const struct mp_cgroup *cgroup; /* may be NULL */
        int guest_fd;                   /* becomes fd 3 in the child */
        int log_fd;                     /* becomes fds 1 and 2 */
        /* Zygote mode: >= 0 is an fd of our own binary, executed (argv) in the sandbox's
         * file system with its namespaces, but without the per-call /tmp and /work, the
         * uid switch, capability drop and seccomp: the zygote needs them to make
         * instances, and applies them to each instance (mp_sandbox_instance_*). */
        int zygote_exe_fd;
        char *const *zygote_argv;
};

/* Clone the sandbox (user, pid, mount, ipc, uts, net namespaces), write its id maps,
 * attach it to its cgroups, let it build its root and exec the interpreter. Returns 0
 * once the interpreter is exec'ed, with the host pid and a pidfd (O_CLOEXEC, pollable:
 * readable when the sandbox's PID 1 exits); or -errno with err naming the step that
 * failed (nothing is left running). */
int mp_sandbox_spawn(const struct mp_spawn *sp, pid_t *ret_pid, int *ret_pidfd,
                     struct mp_error *err);
/* In a new instance (a clone of the zygote in new pid, mount and ipc namespaces, still
 * privileged inside the zygote's user namespace): its own network namespace and /proc,
 * fds 0-3, setsid.
 * Dies (_exit 127, sentence on fd 2) on failure. */
void mp_sandbox_instance_early(int guest_fd, int log_fd);
/* Then, once it has its limits: private /tmp and /work, rlimits, uid 1000, no caps,
 * no_new_privs, seccomp, cwd /work. Dies on failure. */
void mp_sandbox_instance_enter(const struct mp_limits *l, const struct mp_seccomp *sc);
/* The environment of the interpreter, cold or zygote. */
extern char *const mp_sandbox_env[];
/* Is this host able to build sandboxes at all? (cheap checks, run at executor start) */
int mp_sandbox_probe(struct mp_error *err);

/* ---- zygote (exec-zygote.c, runs in its own process) ---- */

#define MP_ZYGOTE_ARGV0 "mecapy-zygote"
/* Defined in exec-zygote.c, used by the pool: the reference is what makes the linker
 * keep exec-zygote.o (and so its constructor) in every binary that has the pool. */
extern char mp_zygote_argv0[];
/* Executor <-> zygote messages on a SOCK_SEQPACKET pair (fd 3 in the zygote). The
 * zygote never sees user input: it is told only to make an instance, and says when one
 * exists (pidfd, guest socket, log pipe passed with SCM_RIGHTS) or has ended. */
enum { MP_Z_SPAWN = 1, MP_Z_READY, MP_Z_SPAWNED, MP_Z_EXITED, MP_Z_FAILED };
struct mp_zmsg {
        uint32_t op;
        uint32_t id;      /* instance id, chosen by the executor */
        int32_t status;   /* EXITED: wait status; FAILED: errno */
        int32_t pad;
        int64_t cpu_us;   /* EXITED: user+system CPU of the instance's whole life */
};
/* Instance setup bytes, the first thing the executor writes on the guest socket. */
struct mp_zsetup {
        int32_t timeout_s, memory_mb, cpus, max_procs, tmp_mb;
};

/* ---- warm pool (exec-pool.c, in the executor process) ---- */

struct mp_pool;
struct mp_pollset {
        struct pollfd *pfd;
        void **tag;      /* the pool's handle for each of its entries, NULL for others */
        size_t n, cap;
};
int mp_pollset_add(struct mp_pollset *ps, int fd, short events, void *tag);

typedef void (*mp_pool_reply_fn)(void *ctx, unsigned ch, json_t *reply);
int mp_pool_new(const struct mp_exec_config *cfg, const char *python, int exe_fd, mp_pool_reply_fn reply,
                void *ctx, struct mp_pool **ret);
/* Take a request frame (ownership of req) read from channel ch; the reply comes
 * through the reply callback, now or later. */
void mp_pool_submit(struct mp_pool *p, unsigned ch, json_t *req);
json_t *mp_pool_stats(struct mp_pool *p);
/* Cancel what channel ch has with the pool: a waiting request is dropped (replied
 * cancelled now), a running call's instance is killed and retired (replied cancelled
 * when the zygote reports its exit). false when the pool has nothing of ch. */
bool mp_pool_cancel(struct mp_pool *p, unsigned ch);
/* Add the pool's fds; lower *timeout_ms to its nearest deadline. */
void mp_pool_watch(struct mp_pool *p, struct mp_pollset *ps, int64_t now, int64_t *timeout_ms);
void mp_pool_event(struct mp_pool *p, void *tag, short revents);
void mp_pool_tick(struct mp_pool *p, int64_t now);
/* Kill every zygote and instance, remove their cgroups. */
void mp_pool_shutdown(struct mp_pool *p);

/* ---- shared by the cold and warm paths (exec-executor.c) ---- */

/* Why a JSON text was refused by mp_exec_json_load. */
enum mp_json_shape { MP_JSON_FITS, MP_JSON_TOO_DEEP, MP_JSON_TOO_MANY, MP_JSON_INVALID };
/* Scan a JSON text without building anything: how deep its lists and objects nest
 * (a scalar is 0, [] is 1) and how many values it holds (every number, string,
 * literal, list and object counts one; object keys do not). Stops early, returning
 * MP_JSON_TOO_DEEP or MP_JSON_TOO_MANY, once a bound is passed; never undercounts
 * what a parser would build, even for text that is not JSON. ret_* may be NULL. */
enum mp_json_shape mp_exec_json_scan(const char *p, size_t n, unsigned max_depth, size_t max_values,
                                     unsigned *ret_depth, size_t *ret_values);
/* json_loadb (JSON_ALLOW_NUL) of an untrusted text, only when it fits the bounds: a
 * new reference, or NULL with *ret_shape saying why (ret_shape may be NULL). */
json_t *mp_exec_json_load(const char *p, size_t n, unsigned max_depth, size_t max_values,
                          enum mp_json_shape *ret_shape);
/* mp_exec_json_load of a guest's reply frame (after its 4-byte length), with the
 * result bounds of base/limits.h plus the frame's own fields. */
json_t *mp_exec_reply_load(const char *p, size_t n, enum mp_json_shape *ret_shape);

struct mp_outcome {
        const struct mp_buf *rep; /* the guest's frame (4-byte length first) */
        bool rep_complete, rep_oversize, timed_out, killed, exited, oom;
        bool cancelled;           /* mp_executor_cancel: wins over everything else */
        int ws;                   /* wait status when exited */
        const char *crash_note;   /* overrides the crash sentence when set */
        int timeout_s, memory_mb;
};
/* The executor's reply frame to the server for one finished call. */
json_t *mp_exec_reply(const struct mp_outcome *o, const struct mp_buf *logs, int64_t wall_ms, int64_t cpu_ms,
                      int64_t peak_kb);
json_t *mp_exec_limits_json(const struct mp_limits *l);
/* The reply for a call cancelled before it reached a sandbox. */
json_t *mp_exec_cancelled_reply(void);
int mp_exec_limits_from_json(json_t *j, struct mp_limits *l);

/* exec/ private interfaces: the sandbox plan and spawner, the seccomp filter, the
 * cgroup limits. Only the executor process (single-threaded, see exec-executor.c)
 * calls these. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <poll.h>
#include <sys/types.h>
#include <jansson.h>

#include "base/limits.h"
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
/* A zygote's cache, read-only once built (matplotlib's font list), and the private
 * matplotlib config and cache dir of every sandbox (MPLCONFIGDIR). */
#define MP_SANDBOX_CACHEDIR "/run/mecapy"
/* Where an environment's zygote sees its layer (read-only, first on sys.path). */
#define MP_SANDBOX_LAYERDIR "/layer"
#define MP_SANDBOX_MPLDIR "/tmp/matplotlib"

/* ---- seccomp (exec-seccomp.c) ---- */

struct mp_seccomp;
/* The filter's variants: the same deny list, and for process creation and exec: */
enum mp_seccomp_kind {
        MP_SECCOMP_COLD,     /* a cold sandbox: no fork; execve kept (it runs the interpreter) */
        MP_SECCOMP_INSTANCE, /* a warm instance: no fork, no execve */
        MP_SECCOMP_SOLVER,   /* a warm instance with solvers: fork and execve (Landlock
                              * limits what may be executed) */
        MP_SECCOMP_KINDS,
};
/* Build the deny-list filters once (libseccomp) and export them as BPF, so each sandbox
 * only loads a ready program. 0 or -errno; *ret owned by the caller. */
int mp_seccomp_build(struct mp_seccomp **ret, struct mp_error *err);
/* In the sandbox child, after PR_SET_NO_NEW_PRIVS: install one filter. 0 or -errno. */
int mp_seccomp_load(const struct mp_seccomp *s, enum mp_seccomp_kind kind);
struct mp_seccomp *mp_seccomp_free(struct mp_seccomp *s);

/* ---- cgroup limits (exec-cgroup.c, backends exec-cgroup-v1.c, exec-cgroup-v2.c) ---- */

enum { MP_CG_MEMORY, MP_CG_PIDS, MP_CG_CPU, MP_CG_COUNT };

struct mp_cgroup_ops;
/* One sandbox's (or instance's) cgroup. All zero: none (the host runs unlimited by the
 * operator's choice, or the development mode without a sandbox). */
struct mp_cgroup {
        const struct mp_cgroup_ops *ops;  /* the backend that made it; NULL: none */
        /* v1: one directory per controller. v2: path[0] is the one directory. */
        char path[MP_CG_COUNT][PATH_MAX];
};

/* A backend (one file each). Every function gets a cgroup that backend made. */
struct mp_cgroup_ops {
        const char *name; /* "cgroup v1", "cgroup v2" */
        /* Make <parent>/name and write the limits; 0, or -errno with err naming the file. */
        int (*create)(const char *name, const struct mp_limits *l, struct mp_cgroup *cg, struct mp_error *err);
        int (*set_limits)(const struct mp_cgroup *cg, const struct mp_limits *l, struct mp_error *err);
        int (*attach)(const struct mp_cgroup *cg, pid_t pid);
        int64_t (*memory_kb)(const struct mp_cgroup *cg);
        /* 0 when the next peak reading covers one call only; -EOPNOTSUPP if it cannot. */
        int (*reset_peak)(const struct mp_cgroup *cg);
        void (*usage)(const struct mp_cgroup *cg, int64_t *ret_peak_kb, bool *ret_oom);
        int (*kill)(const struct mp_cgroup *cg);
        int (*destroy)(struct mp_cgroup *cg); /* rmdir; -EBUSY while tasks leave */
        /* CPU (user+system, us) of everything that ran in cg, -1 where not counted. */
        int64_t (*cpu_us)(const struct mp_cgroup *cg);
        /* The directory whose cgroup.procs lists its processes. */
        const char *(*procs_dir)(const struct mp_cgroup *cg);
};
extern const struct mp_cgroup_ops mp_cgroup_v1_ops, mp_cgroup_v2_ops;

/* The host's cgroup layout, chosen once per process by mp_cgroup_setup. */
struct mp_cgroup_host {
        const struct mp_cgroup_ops *ops; /* NULL: no limits (--allow-unlimited-sandbox) */
        char v1_mount[PATH_MAX];         /* "/sys/fs/cgroup" (v1: <mount>/<controller>) */
        char v1_parent[MP_CG_COUNT][PATH_MAX]; /* v1: <mount>/<ctrl>/<own cgroup>/mecapy */
        char v2_root[PATH_MAX];          /* v2: the delegated subtree; the service lives
                                          * in <root>/service, sandboxes beside it */
};
extern struct mp_cgroup_host mp_cgroup_host;

/* Pick the backend, once, in the server before the executor forks (it inherits it):
 *  - root given (--cgroup-root): cgroup v2 in that delegated directory;
 *  - else cgroup v1 where memory, pids and cpu hierarchies are mounted and writable;
 *  - else cgroup v2 in our own cgroup ("0::" line of /proc/self/cgroup under the cgroup2
 *    mount: what systemd's Delegate=yes gives the service).
 * v2: our processes move to <root>/service (no process may live in a cgroup whose
 * controllers are delegated), memory, pids and cpu are enabled in
 * <root>/cgroup.subtree_control. Every backend is probed: a child is made, limited and
 * removed. When none works: -errno and err names the cause and the fix, unless
 * allow_unlimited (then 0, a loud warning, and sandboxes run on rlimits alone).
 * Once it succeeded, later calls change nothing and return 0. */
int mp_cgroup_setup(const char *root, bool allow_unlimited, struct mp_error *err);
/* The same, against a directory tree shaped like cgroup2 (tests): v2 at root, always;
 * it replaces any earlier setup, and on success mp_cgroup_setup then keeps it. */
int mp_cgroup_setup_v2(const char *root, struct mp_error *err);
/* One cgroup per sandbox or instance: <parent>/name with memory, pids and cpu limits.
 * 0 with cg filled (cg->ops NULL when the host runs unlimited by choice), or -errno
 * with err saying which limit could not be applied and nothing left behind: the
 * caller must then not run the sandbox. */
int mp_cgroup_create(const char *name, const struct mp_limits *limits, struct mp_cgroup *cg,
                     struct mp_error *err);
/* Move pid into cg. 0 (also without a cgroup) or -errno. */
int mp_cgroup_attach(const struct mp_cgroup *cg, pid_t pid);
/* Peak memory (kB, -1 unknown) and whether the OOM killer acted in cg. */
void mp_cgroup_usage(const struct mp_cgroup *cg, int64_t *ret_peak_kb, bool *ret_oom);
/* (Re)write the limits of an existing cgroup. 0 or -errno with err. */
int mp_cgroup_set_limits(const struct mp_cgroup *cg, const struct mp_limits *limits, struct mp_error *err);
/* Current memory charged to cg in kB (-1 unknown). */
int64_t mp_cgroup_memory_kb(const struct mp_cgroup *cg);
/* Start a per-call peak: 0, or -EOPNOTSUPP when the peak covers the cgroup's life
 * (v2 before per-fd resets; no cgroup): the caller measures the peak another way. */
int mp_cgroup_reset_peak(const struct mp_cgroup *cg);
/* SIGKILL everything in cg: cgroup.kill (v2, Linux 5.14+), else every pid listed in
 * cgroup.procs. 0 or -errno. */
int mp_cgroup_kill(const struct mp_cgroup *cg);
/* rmdir cg; when tasks are still in it, kill them and return -EBUSY (retry later). */
int mp_cgroup_destroy(struct mp_cgroup *cg);
/* CPU time (us, user+system) charged to cg since it was made, its processes' children
 * included: v2 cpu.stat usage_usec, v1 cpuacct.usage where cpuacct shares the cpu
 * hierarchy. -1 without a cgroup or where the backend cannot say. */
int64_t mp_cgroup_cpu_us(const struct mp_cgroup *cg);
/* The processes of cg (pids as this process sees them) into *ret (the caller frees
 * it). 0 or -errno (-EOPNOTSUPP without a cgroup). */
int mp_cgroup_procs(const struct mp_cgroup *cg, pid_t **ret, size_t *ret_n);
/* SIGKILL every process of cg except keep, and only those in the pid namespace
 * (pidns_dev, pidns_ino: a stat of /proc/<keep>/ns/pid) of keep. Each pid read from
 * cgroup.procs is opened as a pidfd first and its namespace checked after: a pid
 * recycled meanwhile by a process elsewhere is never signalled. Repeated until a read
 * of cgroup.procs shows no process not signalled yet (a child forked between a read
 * and its parent's kill is in the next read), at most a few rounds. 0 when nothing else
 * is left running, -EAGAIN when new processes kept appearing, -errno when cgroup.procs
 * cannot be read. *ret_killed (may be NULL): how many were signalled. */
int mp_cgroup_kill_others(const struct mp_cgroup *cg, pid_t keep, dev_t pidns_dev, ino_t pidns_ino,
                          unsigned *ret_killed);

/* v1: find and create the parent of every controller (mp_cgroup_host.v1_parent). */
int mp_cgroup_v1_setup(struct mp_error *err);
/* Shared by the backends (exec-cgroup.c). */
int mp_cg_write(const char *dir, const char *file, const char *value);
int64_t mp_cg_read_i64(const char *dir, const char *file);
/* The value of "key N" in a flat-keyed file (memory.events, memory.oom_control), -1. */
int64_t mp_cg_read_key(const char *dir, const char *file, const char *key);
int mp_cg_kill_procs(const char *dir);
int mp_cg_limit_error(struct mp_error *err, int r, const char *dir, const char *file);

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
        /* Zygote mode: an environment's layer (host folder), bound read-only at
         * MP_SANDBOX_LAYERDIR; NULL: none. */
        const char *layer;
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
        int32_t solvers; /* MP_SOLVER_* bits: the solver environment (exec-sandbox.c) */
};

/* ---- warm pool (exec-pool.c, in the executor process) ---- */

struct mp_pool;
struct mp_pollset {
        struct pollfd *pfd;
        void **tag;      /* the pool's handle for each of its entries, NULL for others */
        size_t n, cap;
};
int mp_pollset_add(struct mp_pollset *ps, int fd, short events, void *tag);

struct mp_live;
typedef void (*mp_pool_reply_fn)(void *ctx, unsigned ch, json_t *reply);
/* A running call's live update for channel ch (mp_exec_live_update; final: before its
 * reply). The executor sends it when the channel can take it. */
typedef void (*mp_pool_live_fn)(void *ctx, unsigned ch, struct mp_live *lv, const struct mp_buf *logs,
                                int64_t now, bool final);
int mp_pool_new(const struct mp_exec_config *cfg, const char *python, int exe_fd, mp_pool_reply_fn reply,
                mp_pool_live_fn live_fn, void *ctx, struct mp_pool **ret);
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
/* The live part of a call in flight (docs/architecture.md, "Progress and live logs"):
 * what the guest reported last, and how much of its logs the server has had. Zeroed
 * for each call. */
struct mp_live {
        bool on;                  /* the server asked for updates ("live" in its request) */
        bool dirty;               /* progress holds a frame not forwarded yet */
        char progress[MP_MAX_PROGRESS_FRAME + 1]; /* the last progress frame's text (untrusted) */
        size_t progress_len;
        size_t logs_sent;         /* bytes of the call's logs forwarded */
        int64_t next_ms;          /* no forward before this (monotonic ms) */
};
/* Take the whole frames at the front of rep, the guest's bytes: progress frames (length
 * with its top bit set) are cut out, the last one kept in lv; a reply frame stays.
 * 1: rep starts with the whole reply frame (bytes after it are left where they are);
 * 0: more bytes are needed; -1: not the guest protocol (a frame over its limit). */
int mp_exec_take_frames(struct mp_buf *rep, struct mp_live *lv);
/* The update due for the server, or NULL: {"update":1, "progress"?: {"fraction",
 * "message"}, "logs"?: base64 of the logs since the last one, cut at a UTF-8 character
 * boundary and at MP_LIVE_MAX_LOG_CHUNK}. Due when lv->on, something changed and
 * lv->next_ms passed; final: only the held progress, whatever the time (the reply
 * carries the logs). Advances lv. */
json_t *mp_exec_live_update(struct mp_live *lv, const struct mp_buf *logs, int64_t now, bool final);
/* When the next update is due (monotonic ms), or -1 when nothing waits. */
int64_t mp_exec_live_due(const struct mp_live *lv, const struct mp_buf *logs);

/* The executor's reply frame to the server for one finished call. */
json_t *mp_exec_reply(const struct mp_outcome *o, const struct mp_buf *logs, int64_t wall_ms, int64_t cpu_ms,
                      int64_t peak_kb);
json_t *mp_exec_limits_json(const struct mp_limits *l);
/* The reply for a call cancelled before it reached a sandbox. */
json_t *mp_exec_cancelled_reply(void);
int mp_exec_limits_from_json(json_t *j, struct mp_limits *l);

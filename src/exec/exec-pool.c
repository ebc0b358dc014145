/* The warm pool, inside the executor process: zygotes (one per environment key) and the
 * function instances they fork, bound to one (function version, tenant) each.
 *
 *   spawning -> spare (sandboxed, blocked on its guest socket, in its own cgroup)
 *            -> busy (bound: limits sent, module loaded, one call at a time) <-> idle
 *            -> killed (evicted, retired, timed out, crashed) -> gone when the zygote
 *               reports its exit
 *
 * A request names function_key, tenant, env and per_call. It goes to an idle instance
 * of the same key (a hit), else to a spare of its environment (a miss), else waits
 * while a spare is made. At most max_per_function calls of one key run at once; more
 * wait here, in order. The pool is bounded by instance count and by the instances'
 * private memory (their cgroup's charge): the least recently used idle instance is
 * evicted. per_call instances serve one call: PREBOUND of them are kept bound (module
 * loaded) per function, re-armed as soon as one is handed a call; a used one is
 * stopped, parked (spent) and killed once the pool is quiet, so that its exit never
 * competes with a waiting call. Generic spares are refilled after a short idle gap
 * (SERVICES pitfall 5). Forks and exits happen in the zygote, off the request path.
 *
 * Nothing here blocks on an instance: every fd is non-blocking and watched by the
 * executor's poll loop; the only timers are deadlines (call timeout, idle retirement,
 * the refill gap). Everything an instance sends is untrusted (mp_exec_reply re-checks). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/limits.h"
#include "base/log.h"
#include "base/util.h"
#include "exec/exec-internal.h"

#define REFILL_GAP_MS 3       /* quiet time before a generic spare is forked (pitfall 5) */
#define TARGET_SPARES 1       /* generic spares kept per ready zygote */
#define PREBOUND 2            /* fresh, module-loaded instances kept per per_call function */
#define SPENT_GAP_MS 5        /* quiet time before used per_call instances are killed */
#define SPENT_MAX 8           /* used per_call instances parked at most; more are killed now */
#define SPAWN_FAILS_MAX 3     /* instances dying unbound in a row: the zygote is broken */
#define FREEZE_GAP_MS 2       /* an instance idle this long after a call is stopped */
#define KEY_MAX 600

enum tag_kind { T_ZCTL, T_GUEST, T_LOG };
struct tag {
        enum tag_kind kind;
        void *obj;
};

struct zyg {
        struct tag t;
        char key[130];
        pid_t pid;
        int pidfd, ctl;
        bool ready, dead;
        bool retiring;             /* killed for idleness: its pidfd says when it is gone */
        int64_t used_ms;           /* its last call began or ended (or it started) */
        unsigned spawning, need, fails;
        char last_error[256];
};

enum ist { I_SPAWNING, I_SPARE, I_IDLE, I_BUSY };

struct inst {
        struct tag tg, tl;
        uint32_t id;
        struct zyg *z;
        enum ist st;
        bool dead, killed, retiring, gfd_eof;
        bool spent;                /* per_call, its one call done: parked (stopped) until
                                    * a quiet moment kills it; never dispatched again */
        bool frozen;               /* SIGSTOPped between calls (see freeze()) */
        int64_t freeze_ms;         /* idle: stop it then (0: nothing to stop) */
        int64_t cpu_end_ns;        /* its CPU clock when its last call or load ended */
        bool setup_failed;         /* its cgroup or limits could not be applied */
        bool cg_peak;              /* this call's peak is its cgroup's (else VmHWM) */
        enum { CPU_CLOCK, CPU_CGROUP, CPU_TREE } cpu_src; /* see inst_cpu_ns() */
        dev_t ns_dev;              /* its pid namespace (a solver instance's, else 0) */
        ino_t ns_ino;
        pid_t pid;
        int pidfd, gfd, lfd;
        clockid_t clk;
        char *key;                 /* function_key "\n" tenant, once bound */
        bool per_call, loaded;
        struct mp_limits lim;
        struct mp_cgroup cg;
        unsigned calls;
        int64_t last_ms, mem_kb, base_kb;
        /* the call in flight: ch < 0 for an internal load */
        int ch;
        struct mp_buf req, rep, logs;
        struct mp_live live;       /* progress and logs forwarded while it runs */
        size_t req_off;
        bool rep_complete, rep_oversize, timed_out;
        bool cancelled;            /* mp_pool_cancel: killed, its reply waits for the exit */
        int64_t start_ms, deadline_ms, cpu0_ns;
};

struct waiting {
        unsigned ch;
        json_t *req;
        char key[KEY_MAX];
        char env[130];
        bool per_call;
        struct mp_limits lim;
};

/* A per_call function's next instance, to pre-bind once the pool is quiet. */
struct wish {
        char key[KEY_MAX];
        char env[130];
        json_t *load; /* {"op":"load","code","handler"} */
        struct mp_limits lim;
};

struct mp_pool {
        unsigned max_instances, max_per_fn, max_calls;
        int64_t max_mem_kb, idle_ms, growth_kb;
        char python[256], preload[512];
        char layers[PATH_MAX];     /* cfg->layers_dir, "" without */
        int exe_fd;
        mp_pool_reply_fn reply;
        mp_pool_live_fn live;
        void *ctx;
        struct zyg **zygs;
        size_t n_zygs;
        struct inst **insts;
        size_t n_insts;
        struct waiting *q;
        size_t nq;
        struct wish *wishes;
        size_t n_wishes;
        uint32_t next_id;
        int64_t last_activity;
        struct mp_cgroup *stale;
        size_t n_stale;
        struct {
                uint64_t hits, misses, cold_starts, evictions, retired, crashes, per_call;
                uint64_t zygotes_retired;
        } st;
};

static void schedule(struct mp_pool *p);

/* ---------------------------------------------------------------- helpers */

static int64_t cpu_ns(clockid_t clk) {
        struct timespec ts;
        if (clock_gettime(clk, &ts) < 0)
                return -1;
        return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* From /proc/<pid>/stat, in ns: utime + stime into *own, cutime + cstime (the
 * children it reaped, with theirs) into *reaped. 0 or -1. */
static int proc_cpu_ns(pid_t pid, int64_t *own, int64_t *reaped) {
        char path[64];
        _cleanup_free_ char *s = NULL;
        unsigned long long t[4];
        long hz = sysconf(_SC_CLK_TCK);

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        if (hz <= 0 || mp_read_file(path, 4096, &s, NULL) < 0)
                return -1;
        char *e = strrchr(s, ')'); /* the name may hold anything but ends there */
        if (!e || sscanf(e + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu", &t[0], &t[1],
                         &t[2], &t[3]) != 4)
                return -1;
        int64_t tick = 1000000000 / hz;
        *own = (int64_t) (t[0] + t[1]) * tick;
        *reaped = (int64_t) (t[2] + t[3]) * tick;
        return 0;
}

/* The CPU an instance has used (ns), -1 unknown. One process (seccomp refuses fork):
 * its own CPU clock, threads included. A solver instance may have children, whose CPU
 * is the call's too: its cgroup's usage (cgroup v2 cpu.stat, v1 cpuacct: one small
 * file read), else (a v1 host whose cpuacct is not mounted with cpu) the sum over its
 * process tree: its own clock, the children it reaped (cutime), and every other
 * process of its cgroup (alive or not yet reaped) with the children they reaped. A
 * child's CPU moves from its own line to its parent's cutime when it is reaped, so the
 * sum only grows. */
static int64_t inst_cpu_ns(const struct inst *in) {
        if (in->cpu_src == CPU_CGROUP) {
                int64_t us = mp_cgroup_cpu_us(&in->cg);
                return us < 0 ? -1 : us * 1000;
        }
        int64_t own = cpu_ns(in->clk);
        if (in->cpu_src == CPU_CLOCK || own < 0)
                return own;
        _cleanup_free_ pid_t *pids = NULL;
        size_t n = 0;
        int64_t o, r;
        if (proc_cpu_ns(in->pid, &o, &r) == 0)
                own += r;
        if (mp_cgroup_procs(&in->cg, &pids, &n) < 0)
                return own;
        for (size_t i = 0; i < n; i++)
                if (pids[i] != in->pid && proc_cpu_ns(pids[i], &o, &r) == 0)
                        own += o + r;
        return own;
}

/* "Key:   123 kB" lines of a /proc file, summed over the keys given. */
static int64_t proc_kb(pid_t pid, const char *file, const char *const *keys, size_t nkeys) {
        char path[64];
        _cleanup_free_ char *s = NULL;
        int64_t sum = 0;
        bool found = false;

        snprintf(path, sizeof(path), "/proc/%d/%s", (int) pid, file);
        if (mp_read_file(path, 65536, &s, NULL) < 0)
                return -1;
        for (size_t i = 0; i < nkeys; i++) {
                size_t kl = strlen(keys[i]);
                for (char *l = s; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
                        long v;
                        if (strncmp(l, keys[i], kl) == 0 && sscanf(l + kl, " %ld", &v) == 1) {
                                sum += v;
                                found = true;
                                break;
                        }
                }
        }
        return found ? sum : -1;
}

/* Private memory of an instance: its cgroup's charge (pages it made its own: copies of
 * the zygote's pages it wrote, its heap, its tmpfs files), else Private_* of smaps. */
static int64_t inst_memory_kb(const struct inst *in) {
        static const char *const priv[] = { "Private_Clean:", "Private_Dirty:" };
        int64_t kb = mp_cgroup_memory_kb(&in->cg);
        return kb >= 0 ? kb : proc_kb(in->pid, "smaps_rollup", priv, 2);
}

static void reset_peak(struct inst *in) {
        in->cg_peak = mp_cgroup_reset_peak(&in->cg) == 0;
        if (in->cg_peak)
                return;
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/clear_refs", (int) in->pid);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd >= 0)
                (void) !write(fd, "5", 1); /* 5: reset the peak RSS (VmHWM) */
}

/* The instance's peak RSS since reset_peak (when its cgroup cannot say). */
static int64_t peak_kb(const struct inst *in) {
        static const char *const hwm[] = { "VmHWM:" };
        return proc_kb(in->pid, "status", hwm, 1);
}

static pid_t pidfd_pid(int pidfd) {
        static const char *const k[] = { "Pid:" };
        char path[64];
        snprintf(path, sizeof(path), "fdinfo/%d", pidfd);
        return (pid_t) proc_kb(getpid(), path, k, 1);
}

static void kill_inst(struct inst *in) {
        if (in->killed || in->dead)
                return;
        /* PID 1 of its pid namespace: everything the instance started dies with it.
         * Through the pidfd, so a recycled pid can never be hit. */
        if (in->pidfd >= 0)
                (void) syscall(SYS_pidfd_send_signal, in->pidfd, SIGKILL, NULL, 0);
        /* And its cgroup (cgroup.kill): nothing of it outlives the kill. */
        (void) mp_cgroup_kill(&in->cg);
        in->killed = true;
}

/* A solver instance may create processes: a solver left running in the background, a
 * loop. SIGSTOP stops the instance, not them, and its own CPU clock does not count
 * them. So at the end of each of its calls, when it is stopped, and before a call that
 * follows it so closely that it was never stopped, every other process of its cgroup
 * (its pid namespace: the instance is PID 1 there) is killed: nothing a call started
 * runs while it is idle or survives into the next call. The killed ones wait as zombies
 * until the instance reaps them (Python's subprocess reaps its own children). Other
 * instances cannot fork (seccomp): nothing to do, not even a read. If the sweep cannot
 * be done or does not converge, the instance itself goes. */
static void kill_children(struct inst *in) {
        if (!in->lim.solvers || in->killed || in->dead)
                return;
        int r = in->ns_ino ? mp_cgroup_kill_others(&in->cg, in->pid, in->ns_dev, in->ns_ino, NULL) : -ENOENT;
        if (r < 0) {
                mp_warn("exec: instance %u: cannot stop the processes it started (%s): it retires", in->id,
                        strerror(-r));
                kill_inst(in);
                in->retiring = true;
        }
}

/* No user code runs between calls. A call may leave threads spinning, a timer armed
 * (its signal handler then runs user code in the main thread), a thread pool working:
 * an idle instance is stopped, all its threads at once (SIGSTOP stops the whole thread
 * group and cannot be caught; an instance is one process: the seccomp filter refuses
 * fork, and io_uring, whose kernel threads would go on). Not at the reply itself: the
 * guest still has a little to do after it (flush, free the call's objects), which
 * would otherwise be stopped and finished on the next call's path. FREEZE_GAP_MS after
 * the reply, unless the next call came first (back-to-back calls never pay for it).
 * Whatever runs in that gap is charged to the next call: its CPU is counted from the
 * end of the previous one (cpu_end_ns). A stop and a continue cost the executor ~6 and
 * ~3 us (measured on a 2-core VM). */
static void freeze(struct inst *in) {
        if (in->frozen || in->killed || in->dead || in->pidfd < 0)
                return;
        if (syscall(SYS_pidfd_send_signal, in->pidfd, SIGSTOP, NULL, 0) == 0)
                in->frozen = true;
        else
                kill_inst(in); /* cannot stop it: it must not run on, unaccounted */
        /* Stopped, it starts nothing more: what it started in the gap goes now. */
        kill_children(in);
}

/* Its cgroup or limits could not be applied: it goes, and the environment counts a
 * failure (SPAWN_FAILS_MAX in a row and waiting calls get this sentence). */
static void setup_failed(struct inst *in, const char *why) {
        mp_warn("exec: instance %u: %s", in->id, why);
        if (in->z) {
                in->z->fails++;
                snprintf(in->z->last_error, sizeof(in->z->last_error), "%s", why);
        }
        in->setup_failed = true;
        in->retiring = true;
        kill_inst(in);
}

static void thaw(struct inst *in) {
        if (!in->frozen)
                return;
        in->frozen = false;
        if (syscall(SYS_pidfd_send_signal, in->pidfd, SIGCONT, NULL, 0) < 0)
                kill_inst(in); /* its call ends as a crash, never hangs */
}

static unsigned live(const struct mp_pool *p) {
        unsigned n = 0;
        for (size_t i = 0; i < p->n_insts; i++)
                n += !p->insts[i]->dead;
        return n;
}

static bool same_limits(const struct mp_limits *a, const struct mp_limits *b) {
        return a->timeout_s == b->timeout_s && a->memory_mb == b->memory_mb && a->cpus == b->cpus &&
               a->max_procs == b->max_procs && a->tmp_mb == b->tmp_mb && a->solvers == b->solvers;
}

/* ---------------------------------------------------------------- zygotes */

static struct zyg *zyg_find(struct mp_pool *p, const char *key) {
        for (size_t i = 0; i < p->n_zygs; i++)
                if (!p->zygs[i]->dead && !p->zygs[i]->retiring && strcmp(p->zygs[i]->key, key) == 0)
                        return p->zygs[i];
        return NULL;
}

/* The layer folder of environment key (64 hex digits, checked here again: the key
 * comes from a request) into buf; false when key is no environment id or its layer is
 * not a folder on this node. */
static bool env_layer(struct mp_pool *p, const char *key, char *buf, size_t size) {
        struct stat st;
        size_t n = strlen(key);

        if (!p->layers[0] || n != 64 || strspn(key, "0123456789abcdef") != n)
                return false;
        snprintf(buf, size, "%s/%s", p->layers, key);
        return stat(buf, &st) == 0 && S_ISDIR(st.st_mode);
}

static struct zyg *zyg_start(struct mp_pool *p, const char *key, char *msg, size_t msz) {
        _cleanup_error_ struct mp_error err = { 0 };
        int ctl[2];

        struct zyg **nz = realloc(p->zygs, (p->n_zygs + 1) * sizeof(*nz));
        if (!nz)
                return NULL;
        p->zygs = nz;
        struct zyg *z = calloc(1, sizeof(*z));
        if (!z)
                return NULL;
        /* SEQPACKET: one message per read, and fds travel with their message. */
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl) < 0) {
                free(z);
                return NULL;
        }
        /* An environment's zygote (key: its id) sees its layer; the base one none. */
        char layer[PATH_MAX + 80];
        bool env = env_layer(p, key, layer, sizeof(layer));
        if (strcmp(key, "base") && !env) {
                snprintf(msg, msz, "exec: environment %.80s has no layer on this node", key);
                close(ctl[0]);
                close(ctl[1]);
                free(z);
                return NULL;
        }
        char *argv[] = { mp_zygote_argv0, p->python, p->preload, env ? (char *) MP_SANDBOX_LAYERDIR : NULL,
                         NULL };
        struct mp_spawn sp = {
                .sandbox = true,
                .python = p->python,
                .limits = { .timeout_s = 1, .memory_mb = 64, .cpus = 1, .max_procs = 1, .tmp_mb = 1 },
                .guest_fd = ctl[1],
                .log_fd = STDERR_FILENO,
                .zygote_exe_fd = p->exe_fd,
                .zygote_argv = argv,
                .layer = env ? layer : NULL,
        };
        int r = mp_sandbox_spawn(&sp, &z->pid, &z->pidfd, &err);
        close(ctl[1]);
        if (r < 0) {
                snprintf(msg, msz, "%s", err.message);
                close(ctl[0]);
                free(z);
                return NULL;
        }
        z->t = (struct tag) { T_ZCTL, z };
        snprintf(z->key, sizeof(z->key), "%s", key);
        z->used_ms = mp_mono_ms();
        z->ctl = ctl[0];
        (void) fcntl(z->ctl, F_SETFL, O_NONBLOCK);
        p->zygs[p->n_zygs++] = z;
        p->st.cold_starts++;
        return z;
}

static void reply_error(struct mp_pool *p, unsigned ch, const char *msg) {
        p->reply(p->ctx, ch, json_pack("{s:s}", "setup_error", msg));
}

/* ---------------------------------------------------------------- instances */

static struct inst *inst_find(struct mp_pool *p, uint32_t id) {
        for (size_t i = 0; i < p->n_insts; i++)
                if (p->insts[i]->id == id && !p->insts[i]->dead)
                        return p->insts[i];
        return NULL;
}

static int spawn(struct mp_pool *p, struct zyg *z) {
        struct inst **ni = realloc(p->insts, (p->n_insts + 1) * sizeof(*ni));
        if (!ni)
                return -ENOMEM;
        p->insts = ni;
        struct inst *in = calloc(1, sizeof(*in));
        if (!in)
                return -ENOMEM;
        in->id = ++p->next_id;
        in->z = z;
        in->st = I_SPAWNING;
        in->pidfd = in->gfd = in->lfd = -1;
        in->ch = -1;
        in->cpu_end_ns = -1;
        in->tg = (struct tag) { T_GUEST, in };
        in->tl = (struct tag) { T_LOG, in };
        struct mp_zmsg m = { .op = MP_Z_SPAWN, .id = in->id };
        if (send(z->ctl, &m, sizeof(m), MSG_NOSIGNAL) != (ssize_t) sizeof(m)) {
                free(in);
                return -EIO;
        }
        p->insts[p->n_insts++] = in;
        z->spawning++;
        return 0;
}

static void drain_logs(struct inst *in) {
        char buf[65536];
        for (int k = 0; k < 64 && in->lfd >= 0; k++) {
                ssize_t n = read(in->lfd, buf, sizeof(buf));
                if (n > 0) {
                        if (in->st == I_BUSY)
                                mp_buf_append_trunc(&in->logs, buf, (size_t) n);
                        continue;
                }
                if (n == 0) {
                        close(in->lfd);
                        in->lfd = -1;
                }
                break;
        }
}

static json_t *finish_reply(struct mp_pool *p, struct inst *in, bool exited, int ws, int64_t cpu_us) {
        int64_t now = mp_mono_ms();
        int64_t cpu = -1;
        bool oom = false;
        int64_t pk = -1;

        if (!exited || in->cpu_src == CPU_CGROUP) { /* a cgroup's usage outlives the exit */
                int64_t c1 = inst_cpu_ns(in);
                if (c1 >= 0 && in->cpu0_ns >= 0)
                        cpu = (c1 - in->cpu0_ns) / 1000000;
        } else if (in->cpu0_ns >= 0) {
                cpu = MP_MAX(cpu_us / 1000 - in->cpu0_ns / 1000000, 0);
        }
        mp_cgroup_usage(&in->cg, &pk, &oom);
        if (!in->cg_peak)
                pk = exited ? -1 : peak_kb(in);
        struct mp_outcome o = {
                .rep = &in->rep, .rep_complete = in->rep_complete, .rep_oversize = in->rep_oversize,
                .timed_out = in->timed_out, .killed = in->killed, .exited = exited, .oom = exited && oom, .ws = ws,
                .cancelled = in->cancelled,
                .timeout_s = in->lim.timeout_s, .memory_mb = in->lim.memory_mb,
                .crash_note = exited && ws == -1 ? "the environment's zygote stopped during the call" : NULL,
        };
        return mp_exec_reply(&o, &in->logs, now - in->start_ms, cpu, pk);
}

static void end_call_buffers(struct inst *in) {
        mp_buf_free(&in->req);
        mp_buf_free(&in->rep);
        mp_buf_free(&in->logs);
        in->req_off = 0;
        in->rep_complete = in->rep_oversize = in->timed_out = in->cancelled = false;
        memset(&in->live, 0, sizeof(in->live));
        in->ch = -1;
}

/* A reply frame is in (or refused): answer the channel, then keep, retire or kill. */
static void call_done(struct mp_pool *p, struct inst *in) {
        int64_t now = mp_mono_ms();

        drain_logs(in);
        if (!in->loaded && in->rep_complete) {
                json_t *g = mp_exec_reply_load(in->rep.data + 4, in->rep.len - 4, NULL);
                in->loaded = json_is_true(json_object_get(g, "loaded"));
                json_decref(g);
        }
        bool real = in->ch >= 0;
        if (real) {
                p->live(p->ctx, (unsigned) in->ch, &in->live, NULL, now, true);
                p->reply(p->ctx, (unsigned) in->ch, finish_reply(p, in, false, 0, 0));
        }
        bool complete = in->rep_complete;
        end_call_buffers(in);
        kill_children(in); /* after the answer: the caller does not wait for it */
        in->cpu_end_ns = inst_cpu_ns(in);
        if (real && in->z)
                in->z->used_ms = now;
        p->last_activity = now;
        in->calls += real;
        in->mem_kb = inst_memory_kb(in);
        if (in->calls == 1 || in->base_kb <= 0)
                in->base_kb = in->mem_kb;
        in->st = I_IDLE;
        in->last_ms = now;
        if (!in->loaded || !complete) {
                kill_inst(in); /* load failed or protocol broken: never reuse */
                in->retiring = true;
        } else if (in->per_call && real) {
                /* Not killed now: its exit (~4 ms of page-table teardown for a numpy
                 * process) would compete with the next call for the CPUs. It is
                 * stopped (its threads, if user code left any, stop running) and
                 * killed with the others of its kind once the pool is quiet
                 * (kill_spent). It is never given another call: spent is final. */
                in->spent = true;
                in->retiring = true;
                freeze(in);
                p->st.retired++;
        } else if (!in->per_call && (in->calls >= p->max_calls || in->mem_kb - in->base_kb > p->growth_kb)) {
                kill_inst(in);
                in->retiring = true;
                p->st.retired++;
        } else {
                in->freeze_ms = now + FREEZE_GAP_MS; /* kept: stopped once idle */
        }
}

/* Start a call (or, ch < 0, a load) on an instance; bind it first when it is a spare. */
static void dispatch(struct mp_pool *p, struct inst *in, int ch, const char *key, bool per_call,
                     const struct mp_limits *lim, json_t *req) {
        _cleanup_json_ json_t *g = NULL;
        bool load = ch < 0;
        bool ran_on = in->st == I_IDLE && !in->frozen; /* since its last call ended */

        if (in->st == I_SPARE) {
                _cleanup_error_ struct mp_error err = { 0 };
                struct mp_zsetup su = { lim->timeout_s, lim->memory_mb, lim->cpus, lim->max_procs, lim->tmp_mb,
                                        (int32_t) lim->solvers };
                in->key = strdup(key);
                in->per_call = per_call;
                in->lim = *lim;
                /* A solver can fork: without a pids cgroup (--allow-unlimited-sandbox)
                 * nothing would bound it (warm instances have no RLIMIT_NPROC). */
                if (lim->solvers && !in->cg.ops)
                        mp_error_set(&err, EPERM, 503, "sandbox",
                                     "sandbox: solvers need the cgroup limits (this server runs without them)");
                if (err.message[0] || mp_cgroup_set_limits(&in->cg, lim, &err) < 0) {
                        /* Never run without its limits: this call fails, the instance
                         * goes, the environment counts a failure. */
                        if (ch >= 0)
                                reply_error(p, (unsigned) ch, err.message);
                        setup_failed(in, err.message);
                        return;
                }
                (void) mp_buf_append(&in->req, &su, sizeof(su));
                if (lim->solvers) {
                        char path[64];
                        struct stat st;
                        snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int) in->pid);
                        if (stat(path, &st) == 0) {
                                in->ns_dev = st.st_dev;
                                in->ns_ino = st.st_ino;
                        }
                        in->cpu_src = mp_cgroup_cpu_us(&in->cg) >= 0 ? CPU_CGROUP : CPU_TREE;
                }
        }
        if (load)
                g = json_pack("{s:s,s:O,s:O}", "op", "load", "code", json_object_get(req, "code"), "handler",
                              json_object_get(req, "handler"));
        else
                g = json_pack("{s:s,s:O?,s:s,s:I,s:I,s:I,s:i}", "op", "run", "inputs", json_object_get(req, "inputs"),
                              "workdir", MP_SANDBOX_WORKDIR, "max_result_bytes", (json_int_t) MP_MAX_RESULT_BYTES,
                              "max_artifacts", (json_int_t) MP_MAX_ARTIFACTS, "max_artifact_bytes",
                              (json_int_t) MP_MAX_ARTIFACT_BYTES, "memory_mb", lim->memory_mb);
        if (g && !load && !in->loaded) {
                json_object_set(g, "code", json_object_get(req, "code"));
                json_object_set(g, "handler", json_object_get(req, "handler"));
        }
        _cleanup_free_ char *s = g ? json_dumps(g, JSON_COMPACT) : NULL;
        uint32_t len = s ? htole32((uint32_t) strlen(s)) : 0;
        in->st = I_BUSY;
        in->ch = ch;
        in->logs.cap = MP_MAX_LOG_BYTES;
        in->start_ms = mp_mono_ms();
        memset(&in->live, 0, sizeof(in->live));
        in->live.on = !load && json_is_true(json_object_get(req, "live"));
        in->live.next_ms = in->start_ms + MP_LIVE_INTERVAL_MS;
        in->deadline_ms = in->start_ms + (int64_t) lim->timeout_s * 1000;
        p->last_activity = in->start_ms;
        if (!load && in->z)
                in->z->used_ms = in->start_ms;
        if (!s || mp_buf_append(&in->req, &len, 4) < 0 || mp_buf_append(&in->req, s, strlen(s)) < 0) {
                kill_inst(in);
                return;
        }
        reset_peak(in);
        if (ran_on)
                kill_children(in);
        /* From the end of its last call: what ran since is this call's. */
        in->cpu0_ns = in->cpu_end_ns >= 0 ? in->cpu_end_ns : inst_cpu_ns(in);
        in->freeze_ms = 0;
        /* Try now: most requests fit in the socket buffer, saving a poll round. */
        ssize_t n = send(in->gfd, in->req.data, in->req.len, MSG_NOSIGNAL);
        if (n > 0)
                in->req_off = (size_t) n;
        /* After the request is queued: the instance wakes once, with it in hand. */
        thaw(in);
}

static void guest_io(struct mp_pool *p, struct inst *in, short revents) {
        /* Cancelled: whatever it still says is not the answer; its exit is. */
        if (in->cancelled)
                return;
        if ((revents & POLLOUT) && in->req_off < in->req.len) {
                ssize_t n = send(in->gfd, in->req.data + in->req_off, in->req.len - in->req_off, MSG_NOSIGNAL);
                if (n > 0)
                        in->req_off += (size_t) n;
                else if (n < 0 && errno != EAGAIN && errno != EINTR)
                        in->req_off = in->req.len;
        }
        if (!(revents & (POLLIN | POLLHUP | POLLERR)))
                return;
        char buf[65536];
        for (int k = 0; k < 64; k++) {
                ssize_t n = recv(in->gfd, buf, sizeof(buf), 0);
                if (n == 0) {
                        in->gfd_eof = true; /* its exit (from the zygote) tells the rest */
                        return;
                }
                if (n < 0) {
                        if (errno != EAGAIN && errno != EINTR)
                                in->gfd_eof = true;
                        return;
                }
                if (in->st != I_BUSY || mp_buf_append(&in->rep, buf, (size_t) n) < 0) {
                        /* Bytes outside a call, or past any cap: a broken instance. */
                        in->rep_oversize = in->st == I_BUSY;
                        break;
                }
                int f = mp_exec_take_frames(&in->rep, &in->live);
                if (f < 0) {
                        in->rep_oversize = true;
                        break;
                }
                if (f > 0) {
                        uint32_t len;
                        memcpy(&len, in->rep.data, 4);
                        /* bytes after the reply frame: forged */
                        in->rep_oversize = in->rep.len > 4 + (size_t) le32toh(len);
                        in->rep_complete = !in->rep_oversize;
                        break;
                }
        }
        if (in->st == I_BUSY && (in->rep_complete || in->rep_oversize)) {
                if (in->rep_oversize) {
                        kill_inst(in);
                        in->rep_complete = false;
                }
                call_done(p, in);
                schedule(p);
        } else if (in->st != I_BUSY) {
                kill_inst(in);
                in->retiring = true;
        }
}

/* The zygote reaped the instance. */
static void inst_exited(struct mp_pool *p, struct inst *in, int ws, int64_t cpu_us) {
        if (in->lfd >= 0)
                drain_logs(in);
        if (in->st == I_BUSY) {
                if (!in->killed)
                        p->st.crashes++;
                json_t *r = finish_reply(p, in, true, ws, cpu_us);
                if (in->ch >= 0)
                        p->reply(p->ctx, (unsigned) in->ch, r);
                else
                        json_decref(r);
                end_call_buffers(in);
        }
        if (in->setup_failed) {
                /* counted by setup_failed() */
        } else if ((in->st == I_SPAWNING || in->st == I_SPARE) && !in->killed && in->z) {
                in->z->fails++;
                if (in->logs.len)
                        snprintf(in->z->last_error, sizeof(in->z->last_error), "%s", in->logs.data);
        } else if (in->z && in->st != I_SPAWNING) {
                in->z->fails = 0;
        }
        if (in->st == I_SPAWNING && in->z && in->z->spawning)
                in->z->spawning--;
        in->dead = true;
}

static void zyg_dead(struct mp_pool *p, struct zyg *z) {
        if (z->dead)
                return;
        z->dead = true;
        for (size_t i = 0; i < p->n_insts; i++)
                if (p->insts[i]->z == z && !p->insts[i]->dead) {
                        p->insts[i]->killed = p->insts[i]->killed || p->insts[i]->st != I_BUSY;
                        inst_exited(p, p->insts[i], -1, 0);
                        p->insts[i]->z = NULL;
                }
        (void) kill(z->pid, SIGKILL);
        (void) waitpid(z->pid, NULL, __WALL);
        if (!z->ready)
                mp_warn("exec: the zygote of environment '%s' stopped before it was ready", z->key);
}

static void zyg_event(struct mp_pool *p, struct zyg *z) {
        for (int k = 0; k < 64 && !z->dead; k++) {
                struct mp_zmsg m;
                union {
                        char buf[CMSG_SPACE(3 * sizeof(int))];
                        struct cmsghdr align;
                } u;
                struct iovec iov = { .iov_base = &m, .iov_len = sizeof(m) };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                                     .msg_controllen = sizeof(u.buf) };
                int fds[3] = { -1, -1, -1 }, nfds = 0;
                ssize_t n = recvmsg(z->ctl, &mh, MSG_CMSG_CLOEXEC);
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return;
                if (n <= 0) {
                        zyg_dead(p, z);
                        schedule(p);
                        return;
                }
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                                nfds = (int) ((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                                nfds = MP_MIN(nfds, 3);
                                memcpy(fds, CMSG_DATA(c), (size_t) nfds * sizeof(int));
                        }
                struct inst *in = n == (ssize_t) sizeof(m) ? inst_find(p, m.id) : NULL;
                if (n == (ssize_t) sizeof(m) && m.op == MP_Z_READY) {
                        z->ready = true;
                } else if (m.op == MP_Z_SPAWNED && in && in->st == I_SPAWNING && nfds == 3) {
                        char name[64];
                        z->spawning--;
                        in->pidfd = fds[0];
                        in->gfd = fds[1];
                        in->lfd = fds[2];
                        fds[0] = fds[1] = fds[2] = -1;
                        in->pid = pidfd_pid(in->pidfd);
                        if (in->pid <= 0 || clock_getcpuclockid(in->pid, &in->clk) != 0)
                                in->clk = CLOCK_MONOTONIC; /* never: cpu then reads as wall */
                        (void) fcntl(in->gfd, F_SETFL, O_NONBLOCK);
                        (void) fcntl(in->lfd, F_SETFL, O_NONBLOCK);
                        /* Its own cgroup (memory, pids, cpu), made now, off the request
                         * path; the function's limits are written when it is bound. */
                        struct mp_limits dl = { MP_DEFAULT_TIMEOUT_S, MP_DEFAULT_MEMORY_MB, MP_DEFAULT_CPUS,
                                                MP_DEFAULT_MAX_PROCS, MP_DEFAULT_TMP_MB };
                        snprintf(name, sizeof(name), "inst-%d-%u", (int) getpid(), in->id);
                        in->st = I_SPARE;
                        in->last_ms = mp_mono_ms();
                        _cleanup_error_ struct mp_error err = { 0 };
                        int r = mp_cgroup_create(name, &dl, &in->cg, &err);
                        if (r >= 0 && (r = mp_cgroup_attach(&in->cg, in->pid)) < 0)
                                mp_error_set(&err, -r, 503, "sandbox",
                                             "sandbox: cannot put the instance in its cgroup %s: %s", in->cg.path[0],
                                             strerror(-r));
                        /* It is still blocked before any user code: never let it go on
                         * without its limits. */
                        if (r < 0)
                                setup_failed(in, err.message);
                } else if (m.op == MP_Z_FAILED && in && in->st == I_SPAWNING) {
                        snprintf(z->last_error, sizeof(z->last_error), "the zygote could not fork an instance: %s",
                                 strerror(m.status));
                        z->fails++;
                        in->killed = true;
                        inst_exited(p, in, 0, 0);
                } else if (m.op == MP_Z_EXITED && in) {
                        inst_exited(p, in, m.status, m.cpu_us);
                }
                for (int i = 0; i < 3; i++)
                        if (fds[i] >= 0)
                                close(fds[i]);
        }
}

/* An environment's zygote (never the base one) that no call has used for the idle
 * time (--instance-idle): no call running or waiting, none began or ended since. Its
 * bound instances have retired by then (the same idle time), its spares and
 * pre-bound per_call instances are all that is left. */
static bool zyg_idle(const struct mp_pool *p, const struct zyg *z) {
        if (z->dead || z->retiring || !z->ready || z->spawning || strcmp(z->key, "base") == 0)
                return false;
        for (size_t i = 0; i < p->nq; i++)
                if (strcmp(p->q[i].env, z->key) == 0)
                        return false;
        for (size_t i = 0; i < p->n_insts; i++) {
                const struct inst *in = p->insts[i];
                if (in->z == z && !in->dead && !in->killed && in->st == I_BUSY && in->ch >= 0)
                        return false;
        }
        return true;
}

/* Idle environments' zygotes retire: the zygote (an interpreter with the preloads, tens
 * of MB) and its spares are killed, the per_call functions of the environment stop
 * being pre-bound (refill drops a wish whose zygote is gone). The next call of the
 * environment starts a new zygote, as its first call did. */
static void retire_zygotes(struct mp_pool *p, int64_t now) {
        for (size_t i = 0; i < p->n_zygs; i++) {
                struct zyg *z = p->zygs[i];
                if (!zyg_idle(p, z) || now - z->used_ms < p->idle_ms)
                        continue;
                for (size_t k = 0; k < p->n_insts; k++) {
                        struct inst *in = p->insts[k];
                        if (in->z == z && !in->dead) {
                                kill_inst(in);
                                in->retiring = true;
                        }
                }
                /* Not waited for here: PID 1's exit waits for every process of its
                 * namespace (ms per instance); its pidfd is watched instead. */
                if (syscall(SYS_pidfd_send_signal, z->pidfd, SIGKILL, NULL, 0) < 0) {
                        zyg_dead(p, z);
                } else {
                        z->retiring = true;
                }
                p->st.zygotes_retired++;
                mp_info("exec: the zygote of environment %.12s retired (idle)", z->key);
        }
}

/* ---------------------------------------------------------------- scheduling */

/* The instance to evict: a spent per_call one first (it is only waiting to die), else
 * the least recently used idle one. */
static struct inst *lru_idle(struct mp_pool *p) {
        struct inst *best = NULL;
        for (size_t i = 0; i < p->n_insts; i++) {
                struct inst *in = p->insts[i];
                if (in->dead || in->killed || in->st != I_IDLE)
                        continue;
                if (!best || (in->spent && !best->spent) ||
                    (in->spent == best->spent && in->last_ms < best->last_ms))
                        best = in;
        }
        return best;
}

static bool evict_one(struct mp_pool *p) {
        struct inst *v = lru_idle(p);
        if (!v)
                return false;
        kill_inst(v);
        v->retiring = true;
        p->st.evictions++;
        return true;
}

static void enforce_memory(struct mp_pool *p) {
        int64_t total = 0;
        for (size_t i = 0; i < p->n_insts; i++)
                if (!p->insts[i]->dead && !p->insts[i]->killed)
                        total += MP_MAX(p->insts[i]->mem_kb, 0);
        while (total > p->max_mem_kb) {
                struct inst *v = lru_idle(p);
                if (!v)
                        break;
                total -= MP_MAX(v->mem_kb, 0);
                kill_inst(v);
                v->retiring = true;
                p->st.evictions++;
        }
}

static void dequeue(struct mp_pool *p, size_t i) {
        memmove(&p->q[i], &p->q[i + 1], (p->nq - i - 1) * sizeof(*p->q));
        p->nq--;
}

static void schedule(struct mp_pool *p) {
        for (size_t i = 0; i < p->n_zygs; i++)
                p->zygs[i]->need = 0;
        for (size_t qi = 0; qi < p->nq;) {
                struct waiting *w = &p->q[qi];
                struct zyg *z = zyg_find(p, w->env);
                if (!z) {
                        char msg[512] = "";
                        z = zyg_start(p, w->env, msg, sizeof(msg));
                        if (!z) {
                                reply_error(p, w->ch, msg[0] ? msg : "exec: cannot start the environment's zygote");
                                json_decref(w->req);
                                dequeue(p, qi);
                                continue;
                        }
                }
                if (z->fails >= SPAWN_FAILS_MAX) {
                        char msg[400];
                        snprintf(msg, sizeof(msg), "exec: instances of environment '%s' cannot start: %s", z->key,
                                 z->last_error[0] ? z->last_error : "unknown error");
                        reply_error(p, w->ch, msg);
                        json_decref(w->req);
                        dequeue(p, qi);
                        continue;
                }
                if (!z->ready) {
                        qi++;
                        continue;
                }
                unsigned busy = 0;
                struct inst *hit = NULL, *spare = NULL;
                for (size_t i = 0; i < p->n_insts; i++) {
                        struct inst *in = p->insts[i];
                        if (in->dead || in->killed || in->spent)
                                continue;
                        if (in->key && strcmp(in->key, w->key) == 0) {
                                if (in->st == I_BUSY)
                                        busy++;
                                else if (in->st == I_IDLE && in->z == z && in->per_call == w->per_call &&
                                         same_limits(&in->lim, &w->lim) && (!hit || in->last_ms > hit->last_ms))
                                        hit = in;
                        } else if (in->st == I_SPARE && in->z == z && !spare) {
                                spare = in;
                        }
                }
                if (busy >= p->max_per_fn) {
                        qi++;
                        continue;
                }
                struct inst *in = hit ? hit : spare;
                if (!in) {
                        z->need++;
                        qi++;
                        continue;
                }
                if (hit && w->per_call)
                        p->st.per_call++;
                else if (hit)
                        p->st.hits++;
                else
                        p->st.misses++;
                dispatch(p, in, (int) w->ch, w->key, w->per_call, &w->lim, w->req);
                json_decref(w->req);
                dequeue(p, qi);
        }
        /* Requests waiting for a spare: make them now (fork is in the zygote). */
        for (size_t i = 0; i < p->n_zygs; i++) {
                struct zyg *z = p->zygs[i];
                while (!z->dead && !z->retiring && z->ready && z->need > z->spawning) {
                        if (live(p) >= p->max_instances && !evict_one(p))
                                break;
                        if (spawn(p, z) < 0)
                                break;
                }
        }
}

static unsigned n_spent(const struct mp_pool *p) {
        unsigned n = 0;
        for (size_t i = 0; i < p->n_insts; i++)
                n += p->insts[i]->spent && !p->insts[i]->killed && !p->insts[i]->dead;
        return n;
}

/* Kill the spent per_call instances when no call is running or waiting and none came
 * for SPENT_GAP_MS (their exits then use CPUs nobody waits for), or, under a steady
 * stream of calls, the oldest ones past SPENT_MAX. */
static void kill_spent(struct mp_pool *p, int64_t now) {
        unsigned n = n_spent(p);
        if (!n)
                return;
        bool quiet = !p->nq && now - p->last_activity >= SPENT_GAP_MS;
        for (size_t i = 0; quiet && i < p->n_insts; i++)
                quiet = p->insts[i]->dead || p->insts[i]->st != I_BUSY || p->insts[i]->ch < 0;
        for (size_t i = 0; i < p->n_insts && n > (quiet ? 0 : SPENT_MAX); i++) {
                struct inst *in = p->insts[i];
                if (in->spent && !in->killed && !in->dead) {
                        kill_inst(in);
                        n--;
                }
        }
}

/* Top up spares and pre-bind per_call functions. */
static void refill(struct mp_pool *p) {
        for (size_t wi = 0; wi < p->n_wishes;) {
                struct wish *w = &p->wishes[wi];
                struct zyg *z = zyg_find(p, w->env);
                unsigned have = 0;
                for (size_t i = 0; z && i < p->n_insts; i++) {
                        struct inst *in = p->insts[i];
                        if (in->dead || in->killed || in->spent)
                                continue;
                        if (in->key && in->per_call && strcmp(in->key, w->key) == 0 &&
                            (in->st != I_BUSY || in->ch < 0))
                                have++; /* pre-bound, or being pre-bound (its load) */
                }
                /* Bind spares to it right away: the load runs in the instance, beside
                 * the call in flight, so the next call finds a ready one. */
                for (size_t i = 0; z && have < PREBOUND && i < p->n_insts; i++) {
                        struct inst *in = p->insts[i];
                        if (!in->dead && !in->killed && in->st == I_SPARE && in->z == z) {
                                dispatch(p, in, -1, w->key, true, &w->lim, w->load);
                                have++;
                        }
                }
                if (!z || have >= PREBOUND) {
                        json_decref(w->load);
                        memmove(w, w + 1, (p->n_wishes - wi - 1) * sizeof(*w));
                        p->n_wishes--;
                        continue;
                }
                wi++;
        }
        for (size_t i = 0; i < p->n_zygs; i++) {
                struct zyg *z = p->zygs[i];
                unsigned spares = 0;
                if (z->dead || z->retiring || !z->ready || z->fails >= SPAWN_FAILS_MAX)
                        continue;
                for (size_t k = 0; k < p->n_insts; k++)
                        spares += !p->insts[k]->dead && !p->insts[k]->killed && p->insts[k]->z == z &&
                                  p->insts[k]->st == I_SPARE;
                unsigned want = TARGET_SPARES + (unsigned) p->n_wishes * PREBOUND;
                while (spares + z->spawning < want && live(p) < p->max_instances)
                        if (spawn(p, z) < 0)
                                break;
        }
}

/* Is there something refill() could do now? (Not "a spawn is in flight": that ends
 * with a message, no timer needed.) */
static bool refill_wanted(const struct mp_pool *p) {
        for (size_t i = 0; i < p->n_zygs; i++) {
                const struct zyg *z = p->zygs[i];
                unsigned spares = 0, wishes = 0;
                if (z->dead || z->retiring || !z->ready || z->fails >= SPAWN_FAILS_MAX)
                        continue;
                for (size_t k = 0; k < p->n_insts; k++)
                        spares += !p->insts[k]->dead && !p->insts[k]->killed && p->insts[k]->z == z &&
                                  p->insts[k]->st == I_SPARE;
                for (size_t k = 0; k < p->n_wishes; k++)
                        wishes += strcmp(p->wishes[k].env, z->key) == 0;
                if (wishes && spares)
                        return true;
                if (spares + z->spawning < TARGET_SPARES + wishes * PREBOUND && live(p) < p->max_instances)
                        return true;
        }
        return false;
}

/* ---------------------------------------------------------------- interface */

int mp_pool_new(const struct mp_exec_config *cfg, const char *python, int exe_fd, mp_pool_reply_fn reply,
                mp_pool_live_fn live_fn, void *ctx, struct mp_pool **ret) {
        struct mp_pool *p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        p->max_instances = cfg->max_instances ? cfg->max_instances : 64;
        p->max_per_fn = cfg->max_per_function ? cfg->max_per_function : 4;
        p->max_calls = cfg->max_calls ? cfg->max_calls : 10000;
        p->idle_ms = (int64_t) (cfg->idle_s > 0 ? cfg->idle_s : 600) * 1000;
        p->growth_kb = (int64_t) (cfg->max_growth_mb ? cfg->max_growth_mb : 256) * 1024;
        p->max_mem_kb = cfg->max_memory_mb ? (int64_t) cfg->max_memory_mb * 1024
                                           : (pages > 0 && psz > 0 ? (int64_t) pages * (psz / 1024) / 4 : 1 << 20);
        snprintf(p->python, sizeof(p->python), "%s", python);
        snprintf(p->preload, sizeof(p->preload), "%s", cfg->preload ? cfg->preload : "numpy,scipy,scipy.optimize");
        snprintf(p->layers, sizeof(p->layers), "%s", cfg->layers_dir ? cfg->layers_dir : "");
        p->exe_fd = exe_fd;
        p->reply = reply;
        p->live = live_fn;
        p->ctx = ctx;
        /* The base environment's zygote starts now, in the background: its imports
         * (hundreds of ms) are done before the first call arrives. */
        char msg[512];
        if (!zyg_start(p, "base", msg, sizeof(msg)))
                mp_warn("exec: cannot start the base zygote: %s", msg);
        *ret = p;
        return 0;
}

void mp_pool_submit(struct mp_pool *p, unsigned ch, json_t *req) {
        const char *fk = json_string_value(json_object_get(req, "function_key"));
        const char *tenant = json_string_value(json_object_get(req, "tenant"));
        const char *env = json_string_value(json_object_get(req, "env"));
        struct waiting w = { .ch = ch, .req = req, .per_call = json_is_true(json_object_get(req, "per_call")) };

        if (!fk || !tenant || !env || !*env || strlen(env) >= sizeof(w.env) ||
            (size_t) snprintf(w.key, sizeof(w.key), "%s\n%s", fk, tenant) >= sizeof(w.key) ||
            mp_exec_limits_from_json(json_object_get(req, "limits"), &w.lim) < 0) {
                reply_error(p, ch, "executor: malformed warm request");
                json_decref(req);
                return;
        }
        snprintf(w.env, sizeof(w.env), "%s", env);
        struct waiting *q = realloc(p->q, (p->nq + 1) * sizeof(*q));
        if (!q) {
                reply_error(p, ch, "executor: out of memory");
                json_decref(req);
                return;
        }
        p->q = q;
        p->q[p->nq++] = w;
        p->last_activity = mp_mono_ms();
        if (w.per_call) {
                /* Its next call gets a fresh instance, pre-bound once the pool is quiet. */
                bool known = false;
                for (size_t i = 0; i < p->n_wishes && !known; i++)
                        known = strcmp(p->wishes[i].key, w.key) == 0;
                struct wish *nw = known ? NULL : realloc(p->wishes, (p->n_wishes + 1) * sizeof(*nw));
                if (nw) {
                        p->wishes = nw;
                        struct wish *x = &p->wishes[p->n_wishes++];
                        memcpy(x->key, w.key, sizeof(x->key));
                        memcpy(x->env, w.env, sizeof(x->env));
                        x->lim = w.lim;
                        x->load = json_pack("{s:O,s:O}", "code", json_object_get(req, "code"), "handler",
                                            json_object_get(req, "handler"));
                }
        }
        schedule(p);
}

bool mp_pool_cancel(struct mp_pool *p, unsigned ch) {
        for (size_t i = 0; i < p->nq; i++) {
                if (p->q[i].ch != ch)
                        continue;
                /* Still waiting for an instance: nothing to kill, answer now. */
                json_decref(p->q[i].req);
                dequeue(p, i);
                p->reply(p->ctx, ch, mp_exec_cancelled_reply());
                return true;
        }
        for (size_t i = 0; i < p->n_insts; i++) {
                struct inst *in = p->insts[i];
                if (in->dead || in->st != I_BUSY || in->ch != (int) ch || in->cancelled)
                        continue;
                /* Only this instance: other calls of the function keep theirs. It is
                 * never reused (user code was stopped at an arbitrary point), and its
                 * caller hears of it once the zygote reports the exit, so that when
                 * mp_executor_run returns nothing of the call runs any more. */
                in->cancelled = true;
                if (!in->retiring && !in->spent)
                        p->st.retired++;
                in->retiring = true;
                if (in->killed) /* already killed (timeout): its exit is on the way */
                        return true;
                kill_inst(in);
                return true;
        }
        return false;
}

json_t *mp_pool_stats(struct mp_pool *p) {
        unsigned inst = 0, spares = 0, busy = 0, zygs = 0;
        int64_t mem = 0;
        for (size_t i = 0; i < p->n_insts; i++) {
                struct inst *in = p->insts[i];
                if (in->dead || in->killed || in->spent) /* only its exit is still to come */
                        continue;
                inst++;
                spares += in->st == I_SPARE;
                busy += in->st == I_BUSY;
                mem += MP_MAX(in->mem_kb, 0);
        }
        for (size_t i = 0; i < p->n_zygs; i++)
                zygs += !p->zygs[i]->dead && !p->zygs[i]->retiring;
        return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "hits", (json_int_t) p->st.hits,
                         "misses", (json_int_t) p->st.misses, "cold_starts", (json_int_t) p->st.cold_starts,
                         "evictions", (json_int_t) p->st.evictions, "retired", (json_int_t) p->st.retired, "crashes",
                         (json_int_t) p->st.crashes, "per_call", (json_int_t) p->st.per_call, "instances",
                         (json_int_t) inst, "spares", (json_int_t) spares, "busy", (json_int_t) busy, "queued",
                         (json_int_t) p->nq, "zygotes", (json_int_t) zygs, "memory_kb", (json_int_t) mem,
                         "zygotes_retired", (json_int_t) p->st.zygotes_retired);
}

void mp_pool_watch(struct mp_pool *p, struct mp_pollset *ps, int64_t now, int64_t *timeout) {
#define LOWER(t) (*timeout = *timeout < 0 ? MP_MAX((t), 0) : MP_MIN(*timeout, MP_MAX((t), 0)))
        for (size_t i = 0; i < p->n_zygs; i++) {
                struct zyg *z = p->zygs[i];
                if (z->dead)
                        continue;
                /* A retiring zygote's messages no longer matter; its pidfd says when
                 * it (PID 1 of its pid namespace: with every instance) is gone. */
                (void) mp_pollset_add(ps, z->retiring ? z->pidfd : z->ctl, POLLIN, &z->t);
                if (zyg_idle(p, z))
                        LOWER(z->used_ms + p->idle_ms - now);
        }
        for (size_t i = 0; i < p->n_insts; i++) {
                struct inst *in = p->insts[i];
                if (in->dead || in->st == I_SPAWNING)
                        continue;
                if (!in->gfd_eof && !in->cancelled)
                        (void) mp_pollset_add(ps, in->gfd,
                                              (short) (POLLIN | (in->req_off < in->req.len ? POLLOUT : 0)), &in->tg);
                if (in->lfd >= 0)
                        (void) mp_pollset_add(ps, in->lfd, POLLIN, &in->tl);
                if (in->st == I_BUSY && !in->killed)
                        LOWER(in->deadline_ms - now);
                if (in->st == I_BUSY && !in->killed && mp_exec_live_due(&in->live, &in->logs) >= 0)
                        LOWER(mp_exec_live_due(&in->live, &in->logs) - now);
                if (in->st == I_IDLE && !in->killed)
                        LOWER(in->last_ms + p->idle_ms - now);
                if (in->st == I_IDLE && !in->killed && in->freeze_ms)
                        LOWER(in->freeze_ms - now);
        }
        if (refill_wanted(p))
                LOWER(p->n_wishes ? 0 : p->last_activity + REFILL_GAP_MS - now);
        if (n_spent(p))
                LOWER(p->last_activity + SPENT_GAP_MS - now);
        if (p->n_stale)
                LOWER(100);
#undef LOWER
}

void mp_pool_event(struct mp_pool *p, void *tag, short revents) {
        struct tag *t = tag;
        if (t->kind == T_ZCTL) {
                struct zyg *z = t->obj;
                if (z->retiring) {
                        zyg_dead(p, z); /* its pidfd: it has exited, the wait is immediate */
                        schedule(p);
                } else if (!z->dead) {
                        zyg_event(p, z);
                        schedule(p);
                }
                return;
        }
        struct inst *in = t->obj;
        if (in->dead)
                return;
        if (t->kind == T_LOG)
                drain_logs(in);
        else
                guest_io(p, in, revents);
}

static void free_inst(struct mp_pool *p, struct inst *in) {
        if (in->pidfd >= 0)
                close(in->pidfd);
        if (in->gfd >= 0)
                close(in->gfd);
        if (in->lfd >= 0)
                close(in->lfd);
        if (mp_cgroup_destroy(&in->cg) == -EBUSY) {
                struct mp_cgroup *s = realloc(p->stale, (p->n_stale + 1) * sizeof(*s));
                if (s) {
                        p->stale = s;
                        p->stale[p->n_stale++] = in->cg;
                }
        }
        end_call_buffers(in);
        free(in->key);
        free(in);
}

void mp_pool_tick(struct mp_pool *p, int64_t now) {
        for (size_t i = 0; i < p->n_insts; i++) {
                struct inst *in = p->insts[i];
                if (in->dead || in->killed || in->spent)
                        continue;
                if (in->st == I_BUSY && now >= in->deadline_ms) {
                        in->timed_out = true;
                        kill_inst(in);
                } else if (in->st == I_BUSY && in->ch >= 0 && !in->cancelled) {
                        p->live(p->ctx, (unsigned) in->ch, &in->live, &in->logs, now, false);
                } else if (in->st == I_IDLE && now - in->last_ms >= p->idle_ms) {
                        kill_inst(in);
                        in->retiring = true;
                        p->st.retired++;
                } else if (in->st == I_IDLE && in->freeze_ms && now >= in->freeze_ms) {
                        in->freeze_ms = 0;
                        freeze(in);
                }
        }
        enforce_memory(p);
        kill_spent(p, now);
        retire_zygotes(p, now);
        /* per_call functions are re-armed at once (their next instance is forked in the
         * zygote and loads its module while the current call runs); generic spares
         * wait for a quiet gap (pitfall 5). */
        if ((p->n_wishes || now - p->last_activity >= REFILL_GAP_MS) && refill_wanted(p))
                refill(p);
        /* Free what ended in this round (events may still have pointed at it). */
        size_t j = 0;
        for (size_t i = 0; i < p->n_insts; i++) {
                if (p->insts[i]->dead)
                        free_inst(p, p->insts[i]);
                else
                        p->insts[j++] = p->insts[i];
        }
        p->n_insts = j;
        j = 0;
        for (size_t i = 0; i < p->n_zygs; i++) {
                if (p->zygs[i]->dead) {
                        close(p->zygs[i]->ctl);
                        close(p->zygs[i]->pidfd);
                        free(p->zygs[i]);
                } else {
                        p->zygs[j++] = p->zygs[i];
                }
        }
        p->n_zygs = j;
        j = 0;
        for (size_t i = 0; i < p->n_stale; i++)
                if (mp_cgroup_destroy(&p->stale[i]) < 0)
                        p->stale[j++] = p->stale[i];
        p->n_stale = j;
        if (p->nq)
                schedule(p);
}

void mp_pool_shutdown(struct mp_pool *p) {
        /* Killing a zygote (PID 1 of its pid namespace) kills every instance of it; the
         * kernel has reaped them all by the time waitpid returns. */
        for (size_t i = 0; i < p->n_zygs; i++) {
                if (p->zygs[i]->dead)
                        continue;
                p->zygs[i]->dead = true;
                (void) kill(p->zygs[i]->pid, SIGKILL);
                (void) waitpid(p->zygs[i]->pid, NULL, __WALL);
        }
        for (size_t i = 0; i < p->n_insts; i++) {
                p->insts[i]->dead = true;
                if (p->insts[i]->st == I_BUSY && p->insts[i]->ch >= 0)
                        reply_error(p, (unsigned) p->insts[i]->ch, "exec: the executor is stopping");
                p->insts[i]->ch = -1;
        }
        mp_pool_tick(p, mp_mono_ms());
        for (int k = 0; k < 100 && p->n_stale; k++) {
                usleep(10000); /* shutdown only: killed tasks leave their cgroup asynchronously */
                mp_pool_tick(p, mp_mono_ms());
        }
}

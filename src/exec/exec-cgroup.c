/* cgroup limits per sandbox and per warm instance: memory (the only limit that sees
 * tmpfs pages, memfd and SysV shm pages and every thread together), pids (processes and
 * threads), cpu quota. Two backends behind one table (struct mp_cgroup_ops):
 * exec-cgroup-v1.c (the hybrid hierarchies of older hosts) and exec-cgroup-v2.c (the
 * unified hierarchy of Debian 12, Ubuntu 22.04+, RHEL 9: a delegated subtree).
 *
 * Fail closed: mp_cgroup_setup picks a backend that it has seen work (a probe cgroup is
 * made, limited and removed), or refuses, naming the cause and the fix, unless the
 * operator explicitly allowed unlimited sandboxes. Afterwards a limit that cannot be
 * written fails that sandbox or instance; it never runs without it. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/limits.h"
#include "base/log.h"
#include "base/util.h"
#include "exec/exec-internal.h"

struct mp_cgroup_host mp_cgroup_host;

/* mp_cgroup_setup succeeded: later calls keep its answer (tests start many executors;
 * a process is moved into <root>/service once). */
static bool setup_done;

/* ------------------------------------------------------------------ shared helpers */

int mp_cg_write(const char *dir, const char *file, const char *value) {
        char path[PATH_MAX];
        _cleanup_close_ int fd = -1;

        if ((size_t) snprintf(path, sizeof(path), "%s/%s", dir, file) >= sizeof(path))
                return -ENAMETOOLONG;
        /* O_TRUNC is what `echo v > file` does: harmless on cgroupfs, and a plain file
         * (the tests' tree) then holds exactly the last value written. */
        fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return mp_write_all(fd, value, strlen(value));
}

static int read_small(const char *dir, const char *file, size_t max, char **ret) {
        char path[PATH_MAX];

        if ((size_t) snprintf(path, sizeof(path), "%s/%s", dir, file) >= sizeof(path))
                return -ENAMETOOLONG;
        return mp_read_file(path, max, ret, NULL);
}

int64_t mp_cg_read_i64(const char *dir, const char *file) {
        _cleanup_free_ char *s = NULL;
        long v;

        if (read_small(dir, file, 64, &s) < 0)
                return -1;
        s[strcspn(s, "\n")] = 0;
        if (mp_parse_long(s, 0, LONG_MAX, &v) < 0)
                return -1;
        return v;
}

int64_t mp_cg_read_key(const char *dir, const char *file, const char *key) {
        _cleanup_free_ char *s = NULL;
        size_t kl = strlen(key);

        if (read_small(dir, file, 4096, &s) < 0)
                return -1;
        for (char *l = s; l && *l;) {
                char *nl = strchr(l, '\n');
                long v;
                if (nl)
                        *nl = 0;
                if (strncmp(l, key, kl) == 0 && l[kl] == ' ' && mp_parse_long(l + kl + 1, 0, LONG_MAX, &v) == 0)
                        return v;
                l = nl ? nl + 1 : NULL;
        }
        return -1;
}

/* SIGKILL every pid listed in dir/cgroup.procs: for kernels without cgroup.kill. The
 * list is read once (pids can be reused after it is read: the sandbox's own PID 1,
 * killed through its pidfd, is what normally ends it; this is the net under it). */
int mp_cg_kill_procs(const char *dir) {
        _cleanup_free_ char *s = NULL;
        int r = read_small(dir, "cgroup.procs", 1 << 20, &s);

        if (r < 0)
                return r;
        for (char *l = s; l && *l;) {
                char *nl = strchr(l, '\n');
                long pid;
                if (nl)
                        *nl = 0;
                if (mp_parse_long(l, 2, INT32_MAX, &pid) == 0)
                        (void) kill((pid_t) pid, SIGKILL);
                l = nl ? nl + 1 : NULL;
        }
        return 0;
}

int mp_cg_limit_error(struct mp_error *err, int r, const char *dir, const char *file) {
        return mp_error_set(err, -r, 503, "sandbox", "sandbox: cannot apply its limits: writing %s/%s: %s", dir, file,
                            strerror(-r));
}

/* ------------------------------------------------------------------ dispatch */

int mp_cgroup_create(const char *name, const struct mp_limits *limits, struct mp_cgroup *cg,
                     struct mp_error *err) {
        memset(cg, 0, sizeof(*cg));
        if (!mp_cgroup_host.ops)
                return 0; /* --allow-unlimited-sandbox: warned about at startup */
        int r = mp_cgroup_host.ops->create(name, limits, cg, err);
        if (r < 0) {
                memset(cg, 0, sizeof(*cg));
                return r;
        }
        cg->ops = mp_cgroup_host.ops;
        return 0;
}

int mp_cgroup_set_limits(const struct mp_cgroup *cg, const struct mp_limits *limits, struct mp_error *err) {
        return cg->ops ? cg->ops->set_limits(cg, limits, err) : 0;
}

int mp_cgroup_attach(const struct mp_cgroup *cg, pid_t pid) {
        return cg->ops ? cg->ops->attach(cg, pid) : 0;
}

int64_t mp_cgroup_memory_kb(const struct mp_cgroup *cg) {
        return cg->ops ? cg->ops->memory_kb(cg) : -1;
}

int mp_cgroup_reset_peak(const struct mp_cgroup *cg) {
        return cg->ops ? cg->ops->reset_peak(cg) : -EOPNOTSUPP;
}

void mp_cgroup_usage(const struct mp_cgroup *cg, int64_t *ret_peak_kb, bool *ret_oom) {
        *ret_peak_kb = -1;
        *ret_oom = false;
        if (cg->ops)
                cg->ops->usage(cg, ret_peak_kb, ret_oom);
}

int mp_cgroup_kill(const struct mp_cgroup *cg) {
        return cg->ops ? cg->ops->kill(cg) : 0;
}

int64_t mp_cgroup_cpu_us(const struct mp_cgroup *cg) {
        return cg->ops ? cg->ops->cpu_us(cg) : -1;
}

/* Append pid to the growing array *a (n used, cap allocated). 0 or -ENOMEM. */
static int push_pid(pid_t **a, size_t *n, size_t *cap, pid_t pid) {
        if (*n == *cap) {
                size_t nc = *cap ? *cap * 2 : 16;
                pid_t *d = realloc(*a, nc * sizeof(*d));
                if (!d)
                        return -ENOMEM;
                *a = d;
                *cap = nc;
        }
        (*a)[(*n)++] = pid;
        return 0;
}

int mp_cgroup_procs(const struct mp_cgroup *cg, pid_t **ret, size_t *ret_n) {
        _cleanup_free_ char *s = NULL;
        _cleanup_free_ pid_t *pids = NULL;
        size_t n = 0, cap = 0;

        *ret = NULL;
        *ret_n = 0;
        if (!cg->ops)
                return -EOPNOTSUPP;
        int r = read_small(cg->ops->procs_dir(cg), "cgroup.procs", 1 << 20, &s);
        if (r < 0)
                return r;
        for (char *l = s; l && *l;) {
                char *nl = strchr(l, '\n');
                long v;
                if (nl)
                        *nl = 0;
                if (mp_parse_long(l, 1, INT32_MAX, &v) == 0 && push_pid(&pids, &n, &cap, (pid_t) v) < 0)
                        return -ENOMEM;
                l = nl ? nl + 1 : NULL;
        }
        *ret = pids;
        pids = NULL;
        *ret_n = n;
        return 0;
}

#define KILL_ROUNDS 8

static bool seen(const pid_t *pids, size_t n, pid_t pid) {
        for (size_t i = 0; i < n; i++)
                if (pids[i] == pid)
                        return true;
        return false;
}

int mp_cgroup_kill_others(const struct mp_cgroup *cg, pid_t keep, dev_t pidns_dev, ino_t pidns_ino,
                          unsigned *ret_killed) {
        _cleanup_free_ pid_t *done = NULL;
        size_t n_done = 0, cap = 0;

        if (ret_killed)
                *ret_killed = 0;
        for (int round = 0; round < KILL_ROUNDS; round++) {
                _cleanup_free_ pid_t *pids = NULL;
                size_t n = 0;
                bool fresh = false;
                int r = mp_cgroup_procs(cg, &pids, &n);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < n; i++) {
                        pid_t pid = pids[i];
                        if (pid == keep || seen(done, n_done, pid))
                                continue;
                        if (push_pid(&done, &n_done, &cap, pid) < 0)
                                return -ENOMEM;
                        fresh = true;
                        /* The pidfd pins the process the pid names now; the namespace
                         * is checked after: if the pid was recycled by a process
                         * elsewhere, the check fails; if that one died too and the pid
                         * came back in the sandbox, the pidfd still names the dead one
                         * (ESRCH). A pid gone already is simply done. */
                        _cleanup_close_ int fd = (int) syscall(SYS_pidfd_open, pid, 0);
                        if (fd < 0)
                                continue;
                        char path[64];
                        struct stat st;
                        snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int) pid);
                        if (stat(path, &st) < 0 || st.st_dev != pidns_dev || st.st_ino != pidns_ino)
                                continue;
                        if (syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0) == 0 && ret_killed)
                                (*ret_killed)++;
                }
                if (!fresh)
                        return 0;
        }
        return -EAGAIN;
}

int mp_cgroup_destroy(struct mp_cgroup *cg) {
        if (!cg->ops)
                return 0;
        int r = cg->ops->destroy(cg);
        if (r == 0)
                memset(cg, 0, sizeof(*cg));
        return r;
}

/* ------------------------------------------------------------------ setup */

/* Make, limit and remove a probe cgroup: the backend works for sandboxes here. */
static int probe(const struct mp_cgroup_ops *ops, struct mp_error *err) {
        const struct mp_limits l = { MP_DEFAULT_TIMEOUT_S, MP_DEFAULT_MEMORY_MB, MP_DEFAULT_CPUS,
                                     MP_DEFAULT_MAX_PROCS, MP_DEFAULT_TMP_MB };
        struct mp_cgroup cg = { 0 };
        char name[64];

        snprintf(name, sizeof(name), "probe-%d", (int) getpid());
        int r = ops->create(name, &l, &cg, err);
        if (r < 0)
                return r;
        cg.ops = ops;
        (void) ops->destroy(&cg);
        return 0;
}

/* The cgroup2 mount point and our own cgroup in it: <mount><path of the "0::" line>,
 * less the mount's own root when it is a bind mount of a subtree. */
static int own_v2_dir(char *buf, size_t size, struct mp_error *err) {
        _cleanup_free_ char *mi = NULL, *cg = NULL;
        char mnt[PATH_MAX] = "", mroot[PATH_MAX] = "";

        if (mp_read_file("/proc/self/mountinfo", 1 << 20, &mi, NULL) < 0)
                return mp_error_set(err, ENOENT, 503, "sandbox", "cannot read /proc/self/mountinfo");
        for (char *l = mi; l && *l;) {
                char *nl = strchr(l, '\n');
                if (nl)
                        *nl = 0;
                char *sep = strstr(l, " - cgroup2 ");
                if (sep && sscanf(l, "%*s %*s %*s %4095s %4095s", mroot, mnt) == 2)
                        break;
                mnt[0] = 0;
                l = nl ? nl + 1 : NULL;
        }
        if (!mnt[0])
                return mp_error_set(err, ENOENT, 503, "sandbox", "no cgroup2 file system is mounted");
        if (mp_read_file("/proc/self/cgroup", 65536, &cg, NULL) < 0)
                return mp_error_set(err, ENOENT, 503, "sandbox", "cannot read /proc/self/cgroup");
        const char *own = NULL;
        for (char *l = cg; l && *l;) {
                char *nl = strchr(l, '\n');
                if (nl)
                        *nl = 0;
                if (strncmp(l, "0::", 3) == 0)
                        own = l + 3;
                l = nl ? nl + 1 : NULL;
        }
        if (!own)
                return mp_error_set(err, ENOENT, 503, "sandbox", "/proc/self/cgroup has no cgroup2 (\"0::\") line");
        size_t rl = strlen(mroot);
        if (strcmp(mroot, "/") != 0 && strncmp(own, mroot, rl) == 0)
                own += rl;
        if (strcmp(own, "/") == 0)
                own = "";
        if ((size_t) snprintf(buf, size, "%s%s", mnt, own) >= size)
                return mp_error_set(err, ENAMETOOLONG, 503, "sandbox", "the cgroup path is too long");
        /* A second MecaPy process started from the service's leaf (a supervisor moved
         * there by the first): the delegated root is its parent. */
        size_t n = strlen(buf);
        if (n > 8 && strcmp(buf + n - 8, "/service") == 0)
                buf[n - 8] = 0;
        return 0;
}

/* Which of memory, pids, cpu are missing from root/cgroup.controllers ("" none). */
static void missing_controllers(const char *have, char *buf, size_t size) {
        static const char *const want[] = { "memory", "pids", "cpu" };
        buf[0] = 0;
        for (size_t i = 0; i < ELEMENTSOF(want); i++) {
                bool found = false;
                size_t wl = strlen(want[i]);
                for (const char *p = have; p && *p && !found;) {
                        p += strspn(p, " \n");
                        size_t tl = strcspn(p, " \n");
                        found = tl == wl && strncmp(p, want[i], wl) == 0;
                        p += tl;
                }
                if (!found)
                        snprintf(buf + strlen(buf), size - strlen(buf), "%s%s", buf[0] ? " " : "", want[i]);
        }
}

static int setup_v2_at(const char *root, struct mp_error *err) {
        _cleanup_free_ char *ctrl = NULL, *procs = NULL;
        char svc[PATH_MAX], missing[64], pid[32];
        struct stat st;
        int r;

        if (stat(root, &st) < 0 || !S_ISDIR(st.st_mode))
                return mp_error_set(err, ENOENT, 503, "sandbox", "%s is not a directory", root);
        if (read_small(root, "cgroup.controllers", 4096, &ctrl) < 0)
                return mp_error_set(err, ENOENT, 503, "sandbox",
                                    "%s has no cgroup.controllers: not a cgroup2 directory", root);
        missing_controllers(ctrl, missing, sizeof(missing));
        if (missing[0])
                return mp_error_set(err, EOPNOTSUPP, 503, "sandbox",
                                    "the %s controller(s) are not delegated to %s (its cgroup.controllers: \"%.*s\")",
                                    missing, root, (int) strcspn(ctrl, "\n"), ctrl);
        /* No internal processes: a cgroup that hands controllers to its children holds
         * no process itself. The service's processes go to the leaf <root>/service;
         * sandboxes are made beside it. */
        if ((size_t) snprintf(svc, sizeof(svc), "%s/service", root) >= sizeof(svc))
                return mp_error_set(err, ENAMETOOLONG, 503, "sandbox", "the cgroup path is too long");
        if (mkdir(svc, 0755) < 0 && errno != EEXIST)
                return mp_error_set(err, errno, 503, "sandbox", "cannot create %s: %m", svc);
        if (read_small(root, "cgroup.procs", 1 << 20, &procs) == 0)
                for (char *l = procs; l && *l;) {
                        char *nl = strchr(l, '\n');
                        if (nl)
                                *nl = 0;
                        if (*l)
                                (void) mp_cg_write(svc, "cgroup.procs", l); /* ESRCH: it exited */
                        l = nl ? nl + 1 : NULL;
                }
        snprintf(pid, sizeof(pid), "%d", (int) getpid());
        r = mp_cg_write(svc, "cgroup.procs", pid);
        if (r < 0)
                return mp_error_set(err, -r, 503, "sandbox", "cannot move the service into %s: %s", svc, strerror(-r));
        r = mp_cg_write(root, "cgroup.subtree_control", "+memory +pids +cpu");
        if (r < 0)
                return mp_error_set(err, -r, 503, "sandbox",
                                    "cannot enable memory, pids and cpu in %s/cgroup.subtree_control: %s%s", root,
                                    strerror(-r),
                                    r == -EBUSY ? " (processes other than the service's live in it)" : "");
        snprintf(mp_cgroup_host.v2_root, sizeof(mp_cgroup_host.v2_root), "%s", root);
        r = probe(&mp_cgroup_v2_ops, err);
        if (r < 0)
                return r;
        mp_cgroup_host.ops = &mp_cgroup_v2_ops;
        return 0;
}

int mp_cgroup_setup_v2(const char *root, struct mp_error *err) {
        memset(&mp_cgroup_host, 0, sizeof(mp_cgroup_host));
        int r = setup_v2_at(root, err);
        if (r < 0)
                memset(&mp_cgroup_host, 0, sizeof(mp_cgroup_host));
        setup_done = r >= 0;
        return r;
}

static int setup(const char *root, bool allow_unlimited, struct mp_error *err) {
        _cleanup_error_ struct mp_error e1 = { 0 }, e2 = { 0 };
        char dir[PATH_MAX];
        int r;

        memset(&mp_cgroup_host, 0, sizeof(mp_cgroup_host));
        snprintf(mp_cgroup_host.v1_mount, sizeof(mp_cgroup_host.v1_mount), "/sys/fs/cgroup");
        if (root && *root) {
                /* The operator named the subtree: that, or nothing. */
                r = setup_v2_at(root, &e2);
                if (r >= 0) {
                        mp_info("exec: sandbox limits by cgroup v2 under %s", root);
                        return 0;
                }
                snprintf(e1.message, sizeof(e1.message), "not tried (--cgroup-root names a cgroup v2 directory)");
        } else {
                r = mp_cgroup_v1_setup(&e1);
                if (r >= 0 && probe(&mp_cgroup_v1_ops, &e1) >= 0) {
                        mp_cgroup_host.ops = &mp_cgroup_v1_ops;
                        mp_info("exec: sandbox limits by cgroup v1 (memory, pids, cpu under %s)",
                                mp_cgroup_host.v1_mount);
                        return 0;
                }
                r = own_v2_dir(dir, sizeof(dir), &e2);
                if (r >= 0) {
                        r = setup_v2_at(dir, &e2);
                        if (r >= 0) {
                                mp_info("exec: sandbox limits by cgroup v2 under %s", dir);
                                return 0;
                        }
                }
        }
        memset(&mp_cgroup_host, 0, sizeof(mp_cgroup_host));
        if (allow_unlimited) {
                mp_warn("*** exec: NO CGROUP LIMITS (--allow-unlimited-sandbox): sandboxes and warm instances are "
                        "bounded by rlimits only; memfd and shared memory escape the memory limit, threads are "
                        "bounded only by address space, CPU is not capped. cgroup v1: %s; cgroup v2: %s ***",
                        e1.message, e2.message);
                return 0;
        }
        return mp_error_set(err, EPERM, 503, "sandbox",
                            "no cgroup limits can be applied to sandboxes, so user code would run without memory, "
                            "process and CPU limits. cgroup v1: %s. cgroup v2: %s. Fix: give the service a delegated "
                            "cgroup v2 subtree (systemd: Delegate=yes, as in deploy/systemd; or --cgroup-root PATH, "
                            "a cgroup2 directory the service may write, with memory, pids and cpu in its "
                            "cgroup.controllers), or writable cgroup v1 memory, pids and cpu hierarchies; or, "
                            "never for untrusted code, --allow-unlimited-sandbox",
                            e1.message, e2.message);
}

int mp_cgroup_setup(const char *root, bool allow_unlimited, struct mp_error *err) {
        if (setup_done)
                return 0;
        int r = setup(root, allow_unlimited, err);
        setup_done = r >= 0;
        return r;
}

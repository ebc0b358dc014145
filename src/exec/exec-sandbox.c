/* The sandbox: a process in fresh user, pid, mount, ipc, uts and network namespaces,
 * on a tmpfs root that holds only read-only binds of the system, a minimal /dev, its own
 * /proc and size-capped private /tmp and /work; no capabilities, no_new_privs, the
 * seccomp filter, rlimits, cgroup limits; then it execs the interpreter with a clean
 * environment.
 *
 * As in bubblewrap, the file system is first described as a list of steps (plan_root,
 * in the parent: it looks at the host) and then applied in the child (apply_steps), so
 * what a sandbox can see is readable in one place. Every privileged step says why. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/securebits.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "exec/exec-internal.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* Where the new root is assembled, inside the child's private mount namespace only: a
 * tmpfs mounted over it hides the host's directory from the sandbox, not from the host. */
#define BASE "/tmp"
/* Extra address space over memory_mb: the interpreter, shared libraries, thread stacks
 * and malloc arenas are virtual size, not memory (SERVICES pitfall 11). The real memory
 * bound is the cgroup; RLIMIT_AS turns a huge single allocation into a MemoryError. */
#define AS_HEADROOM_MB 512
/* In a zygote's environment: its instances skip the Landlock scope (tests only, see
 * zygote_env). */
#define MP_SANDBOX_NO_LANDLOCK_ENV "MECAPY_NO_LANDLOCK_SCOPE"

enum step_kind {
        STEP_DIR,      /* mkdir dest */
        STEP_BIND_RO,  /* bind src on dest, remounted read-only after pivot_root */
        STEP_BIND_DEV, /* bind a host device node (null, zero, ...) */
        STEP_SYMLINK,  /* dest -> src */
        STEP_FILE,     /* dest with content src (written before the root turns read-only) */
        STEP_TMPFS,    /* a private size-capped tmpfs on dest */
        STEP_PROC,     /* a proc of the sandbox's pid namespace on dest */
};

struct step {
        enum step_kind kind;
        char src[PATH_MAX]; /* host path, link target or file content */
        char dest[128];     /* relative to the new root */
        long size_mb;       /* TMPFS */
        mode_t mode;        /* TMPFS, DIR */
        uid_t uid;          /* TMPFS owner */
        bool early;         /* BIND_RO: opened before the uid switch (open_early) */
        int fd;             /* that fd, bound as /proc/self/fd/N */
};

#define MAX_STEPS 64

struct plan {
        struct step steps[MAX_STEPS];
        size_t n;
        bool root_mode; /* running as host root: full uid range mapped, uid switch */
};

static struct step *plan_add(struct plan *p, enum step_kind kind, const char *src, const char *dest) {
        if (p->n >= MAX_STEPS)
                return NULL;
        struct step *s = &p->steps[p->n++];
        memset(s, 0, sizeof(*s));
        s->kind = kind;
        snprintf(s->src, sizeof(s->src), "%s", src ? src : "");
        snprintf(s->dest, sizeof(s->dest), "%s", dest);
        s->mode = 0755;
        return s;
}

/* A host path, bound read-only at the same place when it exists. */
static void plan_bind_if_exists(struct plan *p, const char *host) {
        struct stat st;
        if (lstat(host, &st) == 0 && (S_ISDIR(st.st_mode) || S_ISREG(st.st_mode)))
                plan_add(p, STEP_BIND_RO, host, host + 1);
}

static int plan_root(struct plan *p, const struct mp_spawn *sp) {
        static const char *const toplinks[] = { "bin", "sbin", "lib", "lib32", "lib64", "libx32" };
        static const char *const devs[] = { "null", "zero", "full", "random", "urandom" };
        char host[PATH_MAX], target[PATH_MAX];
        uid_t owner = p->root_mode ? MP_SANDBOX_UID : 0;
        struct step *s;

        memset(p->steps, 0, sizeof(p->steps));
        p->n = 0;
        plan_add(p, STEP_DIR, NULL, "usr");
        plan_add(p, STEP_BIND_RO, "/usr", "usr");
        /* Merged /usr (Debian 12): /bin, /lib... are symlinks into usr/, recreate them;
         * on a split layout bind the directories themselves. */
        for (size_t i = 0; i < ELEMENTSOF(toplinks); i++) {
                struct stat st;
                snprintf(host, sizeof(host), "/%s", toplinks[i]);
                if (lstat(host, &st) < 0)
                        continue;
                if (S_ISLNK(st.st_mode)) {
                        ssize_t n = readlink(host, target, sizeof(target) - 1);
                        if (n <= 0)
                                continue;
                        target[n] = 0;
                        plan_add(p, STEP_SYMLINK, target, toplinks[i]);
                } else if (S_ISDIR(st.st_mode)) {
                        plan_add(p, STEP_BIND_RO, host, toplinks[i]);
                }
        }
        /* /etc: only what the interpreter and the scientific stack read. Debian's BLAS
         * resolves through /etc/alternatives and the loader through ld.so.cache (pitfall
         * 1); sitecustomize lives in /etc/python3.X; matplotlib reads /etc/matplotlibrc
         * and fontconfig /etc/fonts. Never passwd/shadow/hosts of the host. */
        plan_add(p, STEP_DIR, NULL, "etc");
        plan_bind_if_exists(p, "/etc/alternatives");
        plan_bind_if_exists(p, "/etc/ld.so.cache");
        plan_bind_if_exists(p, "/etc/localtime");
        plan_bind_if_exists(p, "/etc/fonts");
        plan_bind_if_exists(p, "/etc/matplotlibrc");
        plan_bind_if_exists(p, "/etc/mime.types");
        glob_t g = { 0 };
        if (glob("/etc/python3*", GLOB_NOSORT, NULL, &g) == 0)
                for (size_t i = 0; i < g.gl_pathc; i++)
                        plan_bind_if_exists(p, g.gl_pathv[i]);
        globfree(&g);
        /* getpwuid() of the sandbox user must answer something sane, not the host's. */
        snprintf(target, sizeof(target),
                 "root:x:0:0:root:/tmp:/usr/sbin/nologin\nuser:x:%d:%d:user:/tmp:/usr/sbin/nologin\n",
                 MP_SANDBOX_UID, MP_SANDBOX_UID);
        plan_add(p, STEP_FILE, target, "etc/passwd");
        snprintf(target, sizeof(target), "root:x:0:\nuser:x:%d:\n", MP_SANDBOX_UID);
        plan_add(p, STEP_FILE, target, "etc/group");
        plan_add(p, STEP_FILE, "mecapy\n", "etc/hostname");

        /* /dev: a handful of harmless host nodes, bound (a user namespace cannot mknod). */
        plan_add(p, STEP_DIR, NULL, "dev");
        for (size_t i = 0; i < ELEMENTSOF(devs); i++) {
                snprintf(host, sizeof(host), "/dev/%s", devs[i]);
                snprintf(target, sizeof(target), "dev/%s", devs[i]);
                plan_add(p, STEP_BIND_DEV, host, target);
        }
        plan_add(p, STEP_SYMLINK, "/proc/self/fd", "dev/fd");
        plan_add(p, STEP_SYMLINK, "/proc/self/fd/0", "dev/stdin");
        plan_add(p, STEP_SYMLINK, "/proc/self/fd/1", "dev/stdout");
        plan_add(p, STEP_SYMLINK, "/proc/self/fd/2", "dev/stderr");

        plan_add(p, STEP_DIR, NULL, "proc");
        plan_add(p, STEP_PROC, NULL, "proc");

        /* The only writable places, private to this call and capped (their pages are
         * also charged to the sandbox's memory cgroup). A zygote leaves them as empty
         * mount points: each instance mounts its own (mp_sandbox_instance_enter). */
        plan_add(p, STEP_DIR, NULL, "tmp");
        plan_add(p, STEP_DIR, NULL, "work");
        if (sp->zygote_exe_fd >= 0) {
                /* The zygote's own cache, built once at its start (matplotlib's font
                 * list, exec-zygote.c) and then made read-only: its instances copy
                 * from it rather than rebuild it on their first plot. */
                if (sp->layer) {
                        plan_add(p, STEP_DIR, NULL, MP_SANDBOX_LAYERDIR + 1);
                        s = plan_add(p, STEP_BIND_RO, sp->layer, MP_SANDBOX_LAYERDIR + 1);
                        if (s)
                                s->early = true;
                }
                plan_add(p, STEP_DIR, NULL, "run");
                plan_add(p, STEP_DIR, NULL, MP_SANDBOX_CACHEDIR + 1);
                s = plan_add(p, STEP_TMPFS, NULL, MP_SANDBOX_CACHEDIR + 1);
                if (s)
                        s->size_mb = 16;
                return p->n >= MAX_STEPS ? -E2BIG : 0;
        }
        s = plan_add(p, STEP_TMPFS, NULL, "tmp");
        if (s) {
                s->size_mb = sp->limits.tmp_mb;
                s->mode = 01777;
        }
        s = plan_add(p, STEP_TMPFS, NULL, "work");
        if (s) {
                s->size_mb = sp->limits.tmp_mb;
                s->mode = 0755;
                s->uid = owner;
        }
        if (p->n >= MAX_STEPS)
                return -E2BIG;
        return 0;
}

/* ---- the child ---- */

/* Report a failed setup step to the parent over the error pipe and die. The message is
 * the sentence the API shows, so it names the step. */
static _noreturn_ _printf_(3, 4) void child_fail(int errfd, int errnum, const char *fmt, ...) {
        char msg[512];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (n < 0)
                n = 0;
        if ((size_t) n < sizeof(msg) && errnum)
                n += snprintf(msg + n, sizeof(msg) - (size_t) n, ": %s", strerror(errnum));
        (void) !write(errfd, msg, MP_MIN((size_t) n, sizeof(msg) - 1));
        _exit(127);
}

static int write_file_at(const char *path, const char *content, mode_t mode) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return -errno;
        return mp_write_all(fd, content, strlen(content));
}

static void apply_steps(const struct plan *p, int errfd) {
        char path[PATH_MAX + 8], opts[128];

        for (size_t i = 0; i < p->n; i++) {
                const struct step *s = &p->steps[i];
                struct stat st;
                snprintf(path, sizeof(path), BASE "/%s", s->dest);
                switch (s->kind) {
                case STEP_DIR:
                        if (mkdir(path, 0755) < 0 && errno != EEXIST)
                                child_fail(errfd, errno, "sandbox: cannot create %s", s->dest);
                        break;
                case STEP_BIND_RO:
                case STEP_BIND_DEV: {
                        char fdpath[32];
                        const char *src = s->src;
                        if (s->early) {
                                snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", s->fd);
                                src = fdpath;
                        }
                        if (stat(src, &st) < 0)
                                child_fail(errfd, errno, "sandbox: cannot find %s on the host", s->src);
                        if (S_ISDIR(st.st_mode)) {
                                if (mkdir(path, 0755) < 0 && errno != EEXIST)
                                        child_fail(errfd, errno, "sandbox: cannot create %s", s->dest);
                        } else if (write_file_at(path, "", 0644) < 0) {
                                child_fail(errfd, errno, "sandbox: cannot create %s", s->dest);
                        }
                        /* Not MS_REC: whatever is mounted below a bound host directory
                         * stays invisible. MS_NOSUID: no set-uid binary gains anything. */
                        if (mount(src, path, NULL, MS_BIND | MS_NOSUID, NULL) < 0)
                                child_fail(errfd, errno, "sandbox: cannot bind %s", s->src);
                        if (s->early)
                                close(s->fd);
                        break;
                }
                case STEP_SYMLINK:
                        if (symlink(s->src, path) < 0 && errno != EEXIST)
                                child_fail(errfd, errno, "sandbox: cannot link %s", s->dest);
                        break;
                case STEP_FILE:
                        if (write_file_at(path, s->src, 0644) < 0)
                                child_fail(errfd, errno, "sandbox: cannot write %s", s->dest);
                        break;
                case STEP_TMPFS:
                        /* nr_inodes: an inode bomb is memory too. */
                        snprintf(opts, sizeof(opts), "size=%ldm,nr_inodes=65536,mode=%o,uid=%u,gid=%u",
                                 s->size_mb, (unsigned) s->mode, (unsigned) s->uid, (unsigned) s->uid);
                        if (mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
                                child_fail(errfd, errno, "sandbox: cannot mount a tmpfs on /%s", s->dest);
                        break;
                case STEP_PROC:
                        /* A proc of the new pid namespace: the sandbox sees only its own
                         * processes. The kernel refuses it if the host's /proc is partly
                         * hidden by overmounts (mount_too_revealing). */
                        if (mount("proc", path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
                                child_fail(errfd, errno, "sandbox: cannot mount /proc for the sandbox's pid namespace");
                        break;
                }
        }
}

/* After pivot_root: make every bind read-only. A bind mount ignores MS_RDONLY at
 * creation; it takes a remount, which must repeat the flags the kernel locked on the
 * source mount (nosuid, nodev, noexec, atime) or it fails with EPERM in a user ns. */
static void remount_ro(const struct plan *p, int errfd) {
        char path[PATH_MAX];

        for (size_t i = 0; i < p->n; i++) {
                const struct step *s = &p->steps[i];
                struct statvfs sv;
                if (s->kind != STEP_BIND_RO)
                        continue;
                snprintf(path, sizeof(path), "/%s", s->dest);
                if (statvfs(path, &sv) < 0)
                        child_fail(errfd, errno, "sandbox: cannot stat %s", path);
                unsigned long flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID;
                if (sv.f_flag & ST_NODEV)
                        flags |= MS_NODEV;
                if (sv.f_flag & ST_NOEXEC)
                        flags |= MS_NOEXEC;
                if (sv.f_flag & ST_NOATIME)
                        flags |= MS_NOATIME;
                if (sv.f_flag & ST_NODIRATIME)
                        flags |= MS_NODIRATIME;
                if (sv.f_flag & ST_RELATIME)
                        flags |= MS_RELATIME;
                if (mount(NULL, path, NULL, flags, NULL) < 0)
                        child_fail(errfd, errno, "sandbox: cannot make %s read-only", path);
        }
        /* The root tmpfs itself (mount points, /etc/passwd...): read-only too. */
        if (mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
                child_fail(errfd, errno, "sandbox: cannot make / read-only");
}

static void set_rlimit(int errfd, int res, const char *name, rlim_t soft, rlim_t hard) {
        struct rlimit rl = { .rlim_cur = soft, .rlim_max = hard };
        if (setrlimit(res, &rl) < 0)
                child_fail(errfd, errno, "sandbox: cannot set %s", name);
}

static void apply_rlimits(const struct mp_spawn *sp, bool root_mode, int errfd) {
        const struct mp_limits *l = &sp->limits;
        rlim_t as = ((rlim_t) l->memory_mb + AS_HEADROOM_MB) << 20;
        rlim_t cpu = (rlim_t) l->timeout_s * (rlim_t) MP_MAX(l->cpus, 1) + 1;

        set_rlimit(errfd, RLIMIT_AS, "RLIMIT_AS", as, as);
        set_rlimit(errfd, RLIMIT_FSIZE, "RLIMIT_FSIZE", (rlim_t) l->tmp_mb << 20, (rlim_t) l->tmp_mb << 20);
        set_rlimit(errfd, RLIMIT_NOFILE, "RLIMIT_NOFILE", 1024, 1024);
        set_rlimit(errfd, RLIMIT_CORE, "RLIMIT_CORE", 0, 0);
        /* CPU seconds over all threads: a backstop only, since sleep escapes it; the
         * executor's wall-clock deadline is what ends a call. */
        set_rlimit(errfd, RLIMIT_CPU, "RLIMIT_CPU", cpu, cpu + 1);
        set_rlimit(errfd, RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK", 0, 0);
        /* Counted per user of the user namespace; as non-root that would be the
         * developer's own processes, so only in root mode. */
        if (root_mode)
                set_rlimit(errfd, RLIMIT_NPROC, "RLIMIT_NPROC", (rlim_t) l->max_procs, (rlim_t) l->max_procs);
}

/* fds 0 (/dev/null), 1 and 2 (the log pipe), 3 (the guest socket), and nothing else.
 * Everything is first moved to high numbers: dup2(fd, fd) is a no-op that would keep
 * O_CLOEXEC (pitfall 2). Every other fd is marked close-on-exec, so the error pipe
 * still works until the exec succeeds. */
static void setup_fds(const struct mp_spawn *sp, int errfd) {
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null < 0)
                child_fail(errfd, errno, "sandbox: cannot open /dev/null");
        int hn = fcntl(null, F_DUPFD_CLOEXEC, 64);
        int hl = fcntl(sp->log_fd, F_DUPFD_CLOEXEC, 64);
        int hg = fcntl(sp->guest_fd, F_DUPFD_CLOEXEC, 64);
        if (hn < 0 || hl < 0 || hg < 0)
                child_fail(errfd, errno, "sandbox: cannot move fds");
        if (dup2(hn, 0) < 0 || dup2(hl, 1) < 0 || dup2(hl, 2) < 0 || dup2(hg, 3) < 0)
                child_fail(errfd, errno, "sandbox: cannot set up fds");
        if (syscall(SYS_close_range, 4, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
                for (int fd = 4; fd < 65536; fd++)
                        if (fd != errfd)
                                (void) fcntl(fd, F_SETFD, FD_CLOEXEC);
        }
}

static void drop_privileges(bool root_mode, int errfd) {
        /* Bounding set first: dropping it needs CAP_SETPCAP, which the uid switch below
         * takes away. With an empty bounding set no execve can ever regain a cap. */
        for (int c = 0; c <= 63; c++)
                if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
                        child_fail(errfd, errno, "sandbox: cannot drop capability %d", c);
        /* uid 0 must not mean "all capabilities" after execve (it is the only uid as
         * non-root, where no switch is possible); locked so user code cannot undo it. */
        if (prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
                                             SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
                  0, 0, 0) < 0)
                child_fail(errfd, errno, "sandbox: cannot lock securebits");
        if (root_mode) {
                /* An unprivileged uid inside, host MP_SANDBOX_HOST_BASE + 1000: owns no
                 * host file and no other sandbox's processes (they have their own ns). */
                if (setresgid(MP_SANDBOX_UID, MP_SANDBOX_UID, MP_SANDBOX_UID) < 0 ||
                    setresuid(MP_SANDBOX_UID, MP_SANDBOX_UID, MP_SANDBOX_UID) < 0)
                        child_fail(errfd, errno, "sandbox: cannot switch to the sandbox user");
        }
        cap_t none = cap_init();
        if (!none || cap_set_proc(none) < 0)
                child_fail(errfd, errno, "sandbox: cannot clear capabilities");
        cap_free(none);
        (void) prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
        /* setresuid cleared PDEATHSIG (pitfall 3): set it again so the sandbox dies with
         * the executor. Nothing else in the namespace outlives PID 1. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
                child_fail(errfd, errno, "sandbox: cannot set the parent-death signal");
}

char *const mp_sandbox_env[] = {
        /* The server's environment never reaches user code: only these. */
        "HOME=/tmp", "PATH=/usr/bin:/bin", "LANG=C.UTF-8", "LC_ALL=C.UTF-8", "TMPDIR=/tmp",
        "OPENBLAS_NUM_THREADS=1", "PYTHONDONTWRITEBYTECODE=1",
        /* matplotlib: no display, a private config and cache dir (a warm instance finds
         * the zygote's font list copied there, mp_sandbox_instance_enter). */
        "MPLBACKEND=Agg", "MPLCONFIGDIR=" MP_SANDBOX_MPLDIR,
        "USER=user", "LOGNAME=user",
#if defined(__SANITIZE_ADDRESS__)
        /* Sanitizer builds (tests) run the zygote under ASan: a refused allocation must
         * be a MemoryError, and a SIGSEGV a signal, as in a plain build. */
        "ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=0:handle_segv=0:handle_sigbus=0:handle_sigfpe=0",
#endif
        NULL,
};

static _noreturn_ void exec_guest(const struct mp_spawn *sp, int errfd) {
        /* -I: isolated (no env vars, no user site, no script dir on sys.path);
         * -B: no .pyc (PYTHONDONTWRITEBYTECODE is ignored under -I). */
        char *argv[] = { "python3", "-I", "-B", "-c", (char *) sp->guest_src, NULL };
        execve(sp->python, argv, mp_sandbox_env);
        child_fail(errfd, errno, "sandbox: cannot execute %s", sp->python);
}

/* The zygote: our own binary again (a clean image: nothing of the server's heap or
 * environment), run from an fd since its path is not in the sandbox's file system. It
 * keeps root of its user namespace and its capabilities there, which it needs to give
 * each instance its own pid, mount and ipc namespaces; it runs no user code. */
/* The environment a zygote starts with, chosen in the executor before the clone. */
static char *const *zygote_envp = mp_sandbox_env;

/* The test switch MECAPY_TEST_NO_LANDLOCK_SCOPE=1 (read here, in the executor, when a
 * zygote starts): its instances skip the Landlock scope as on a kernel older than 6.12,
 * so the security tests can show that the other layers alone keep tenants apart on
 * such a kernel (Debian 12). It weakens nothing below what such a kernel gives, and it
 * is logged. The zygote learns it from its environment (MP_SANDBOX_NO_LANDLOCK_ENV),
 * which is otherwise the fixed mp_sandbox_env. */
static char *const *zygote_env(void) {
        static char *env[ELEMENTSOF(mp_sandbox_env) + 1];
        static bool warned;
        const char *v = getenv("MECAPY_TEST_NO_LANDLOCK_SCOPE");

        if (!v || strcmp(v, "1") != 0)
                return mp_sandbox_env;
        if (!warned) {
                mp_warn("exec: MECAPY_TEST_NO_LANDLOCK_SCOPE=1: warm instances skip the Landlock "
                        "scope, as on Linux < 6.12 (a test switch)");
                warned = true;
        }
        size_t n = 0;
        for (; mp_sandbox_env[n]; n++)
                env[n] = mp_sandbox_env[n];
        env[n++] = MP_SANDBOX_NO_LANDLOCK_ENV "=1";
        env[n] = NULL;
        return env;
}

static _noreturn_ void exec_zygote(const struct mp_spawn *sp, int errfd) {
        /* fd 3: its control socket; 1 and 2: the executor's stderr (the server log),
         * for import warnings. Instances replace them with their own log pipe. */
        setup_fds(sp, errfd);
        set_rlimit(errfd, RLIMIT_CORE, "RLIMIT_CORE", 0, 0);
        /* setresuid(0) above cleared PDEATHSIG (pitfall 3): the zygote, and with it its
         * pid namespace and every instance, dies with the executor. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
                child_fail(errfd, errno, "sandbox: cannot set the parent-death signal");
        syscall(SYS_execveat, sp->zygote_exe_fd, "", sp->zygote_argv, zygote_envp, AT_EMPTY_PATH);
        child_fail(errfd, errno, "sandbox: cannot start the zygote");
}

static _noreturn_ void child_sandbox(const struct mp_spawn *sp, const struct plan *p, int syncfd, int errfd) {
        char c;

        /* Wait until the parent has written our id maps and cgroups. */
        if (read(syncfd, &c, 1) != 1)
                child_fail(errfd, 0, "sandbox: the executor did not finish the setup");
        close(syncfd);

        /* Supplementary groups survive into the namespace and would still open
         * group-readable host files (pitfall 4). As non-root, setgroups is denied by
         * design (and there are none worth keeping). */
        if (p->root_mode && setgroups(0, NULL) < 0)
                child_fail(errfd, errno, "sandbox: cannot drop supplementary groups");
        /* An environment's layer lives in the server's private data folder, which the
         * namespace's root (below) may not traverse: opened now, with the executor's
         * host uid still ours; this clone's copy of the plan keeps the fd. */
        for (size_t i = 0; i < p->n; i++) {
                struct step *s = (struct step *) &p->steps[i];
                if (s->early && (s->fd = open(s->src, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)) < 0)
                        child_fail(errfd, errno, "sandbox: cannot open the environment's layer");
        }
        /* Become the namespace's root (a host uid that owns nothing) for the setup. */
        if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
                child_fail(errfd, errno, "sandbox: cannot become root of the user namespace");
        if (setsid() < 0)
                child_fail(errfd, errno, "sandbox: setsid");

        /* No mount event may propagate back to the host. */
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                child_fail(errfd, errno, "sandbox: cannot make the mount namespace private");
        if (mount("tmpfs", BASE, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=1024,mode=0755") < 0)
                child_fail(errfd, errno, "sandbox: cannot mount the new root");
        apply_steps(p, errfd);

        /* pivot_root(".", "."): the old root ends up stacked on the new one and is then
         * detached, so no path leads back to the host's file system (chroot would). */
        if (chdir(BASE) < 0 || syscall(SYS_pivot_root, ".", ".") < 0)
                child_fail(errfd, errno, "sandbox: pivot_root");
        if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
                child_fail(errfd, errno, "sandbox: cannot detach the host's root");
        remount_ro(p, errfd);

        if (sethostname("mecapy", 6) < 0)
                child_fail(errfd, errno, "sandbox: sethostname");
        if (sp->zygote_exe_fd >= 0)
                exec_zygote(sp, errfd);
        if (mkdir(MP_SANDBOX_WORKDIR "/outputs", 0755) < 0 ||
            (p->root_mode && chown(MP_SANDBOX_WORKDIR "/outputs", MP_SANDBOX_UID, MP_SANDBOX_UID) < 0))
                child_fail(errfd, errno, "sandbox: cannot create the outputs directory");

        setup_fds(sp, errfd);
        apply_rlimits(sp, p->root_mode, errfd);
        drop_privileges(p->root_mode, errfd);
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                child_fail(errfd, errno, "sandbox: PR_SET_NO_NEW_PRIVS");
        int r = mp_seccomp_load(sp->seccomp, MP_SECCOMP_COLD);
        if (r < 0)
                child_fail(errfd, -r, "sandbox: cannot load the seccomp filter");
        if (chdir(MP_SANDBOX_WORKDIR) < 0)
                child_fail(errfd, errno, "sandbox: chdir " MP_SANDBOX_WORKDIR);
        exec_guest(sp, errfd);
}

/* Development mode (--no-sandbox): the interpreter as a plain child, in its own session
 * and working directory, with the clean environment and rlimits. No isolation. */
static _noreturn_ void child_plain(const struct mp_spawn *sp, int syncfd, int errfd) {
        char c;

        if (read(syncfd, &c, 1) != 1)
                child_fail(errfd, 0, "executor: setup interrupted");
        close(syncfd);
        if (setsid() < 0)
                child_fail(errfd, errno, "setsid");
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
                child_fail(errfd, errno, "PR_SET_PDEATHSIG");
        if (chdir(sp->workdir) < 0)
                child_fail(errfd, errno, "cannot enter %s", sp->workdir);
        setup_fds(sp, errfd);
        apply_rlimits(sp, false, errfd);
        exec_guest(sp, errfd);
}

/* ---- the parent (executor) ---- */

static int write_proc(pid_t pid, const char *file, const char *content) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/%s", (int) pid, file);
        return write_file_at(path, content, 0);
}

static int write_id_maps(pid_t pid, bool root_mode) {
        char map[64];
        int r;

        if (root_mode) {
                /* The whole inside range lands on host ids that own nothing
                 * (pitfall 13). As a privileged writer we need no setgroups "deny",
                 * so the child can still drop its supplementary groups. */
                snprintf(map, sizeof(map), "0 %d %d\n", MP_SANDBOX_HOST_BASE, MP_SANDBOX_RANGE);
                r = write_proc(pid, "uid_map", map);
                return r < 0 ? r : write_proc(pid, "gid_map", map);
        }
        /* Unprivileged: inside 0 is ourselves, nothing else exists. The kernel requires
         * setgroups to be denied before an unprivileged gid_map. */
        snprintf(map, sizeof(map), "0 %u 1\n", (unsigned) getuid());
        r = write_proc(pid, "uid_map", map);
        if (r >= 0)
                r = write_proc(pid, "setgroups", "deny");
        snprintf(map, sizeof(map), "0 %u 1\n", (unsigned) getgid());
        return r < 0 ? r : write_proc(pid, "gid_map", map);
}

static long raw_clone(unsigned long flags, int *pidfd) {
        /* Raw clone, fork-like (no new stack): the executor is single-threaded, and the
         * libc wrapper needs a function and a stack. CLONE_PIDFD gives a pollable handle
         * that cannot be confused with a recycled pid. */
        return syscall(SYS_clone, flags | CLONE_PIDFD | SIGCHLD, NULL, pidfd, NULL, 0);
}

int mp_sandbox_spawn(const struct mp_spawn *sp, pid_t *ret_pid, int *ret_pidfd, struct mp_error *err) {
        static struct plan plan; /* big; the executor is single-threaded */
        int syncp[2] = { -1, -1 }, errp[2] = { -1, -1 };
        _cleanup_close_ int pidfd = -1;
        unsigned long flags = 0;
        char msg[512];
        int r;

        plan.root_mode = geteuid() == 0;
        if (sp->sandbox && sp->zygote_exe_fd >= 0)
                zygote_envp = zygote_env();
        if (sp->sandbox) {
                r = plan_root(&plan, sp);
                if (r < 0)
                        return mp_error_set(err, -r, 500, "sandbox", "sandbox: too many setup steps");
                /* A network namespace per call costs ~1 ms (see SERVICES); it leaves the
                 * sandbox with only a loopback that stays down. */
                flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS |
                        CLONE_NEWNET | CLONE_NEWCGROUP;
        }
        if (pipe2(syncp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
                r = -errno;
                goto fail_pipes;
        }

        long pid = raw_clone(flags, &pidfd);
        if (pid < 0) {
                r = -errno;
                mp_error_set(err, -r, 503, "sandbox",
                             "sandbox: cannot create the namespaces (%s); this host must allow "
                             "user namespaces (or run with --no-sandbox for development only)",
                             strerror(-r));
                goto fail_pipes;
        }
        if (pid == 0) {
                close(syncp[1]);
                close(errp[0]);
                if (sp->sandbox)
                        child_sandbox(sp, &plan, syncp[0], errp[1]);
                child_plain(sp, syncp[0], errp[1]);
        }
        close(syncp[0]);
        close(errp[1]);

        r = 0;
        if (sp->sandbox) {
                r = write_id_maps((pid_t) pid, plan.root_mode);
                if (r < 0)
                        mp_error_set(err, -r, 503, "sandbox", "sandbox: cannot write the uid/gid maps: %s",
                                     strerror(-r));
        }
        if (r >= 0 && sp->cgroup) {
                r = mp_cgroup_attach(sp->cgroup, (pid_t) pid);
                if (r < 0)
                        mp_error_set(err, -r, 503, "sandbox", "sandbox: cannot attach to its cgroup: %s",
                                     strerror(-r));
        }
        if (r >= 0 && write(syncp[1], "x", 1) != 1) {
                r = -EPIPE;
                mp_error_set(err, EPIPE, 503, "sandbox", "sandbox: the child died during setup");
        }
        close(syncp[1]);

        if (r >= 0) {
                /* The error pipe is O_CLOEXEC: EOF means the interpreter was exec'ed,
                 * bytes are the sentence of the step that failed. */
                struct pollfd pfd = { .fd = errp[0], .events = POLLIN };
                int pr;
                do
                        pr = poll(&pfd, 1, 10000);
                while (pr < 0 && errno == EINTR);
                ssize_t n = pr > 0 ? read(errp[0], msg, sizeof(msg) - 1) : -1;
                if (n > 0) {
                        msg[n] = 0;
                        r = mp_error_set(err, EIO, 503, "sandbox", "%s", msg);
                } else if (n < 0) {
                        r = mp_error_set(err, ETIMEDOUT, 503, "sandbox", "sandbox: setup did not finish in 10 s");
                }
        }
        close(errp[0]);
        if (r < 0) {
                (void) kill((pid_t) pid, SIGKILL);
                (void) waitpid((pid_t) pid, NULL, __WALL);
                return r;
        }
        *ret_pid = (pid_t) pid;
        *ret_pidfd = TAKE_FD(pidfd);
        return 0;

fail_pipes:
        for (int i = 0; i < 2; i++) {
                if (syncp[i] >= 0)
                        close(syncp[i]);
                if (errp[i] >= 0)
                        close(errp[i]);
        }
        if (!err || !err->message[0])
                mp_error_set(err, -r, 503, "sandbox", "sandbox: %s", strerror(-r));
        return r;
}

int mp_sandbox_probe(struct mp_error *err) {
        /* A real, empty clone: the cheapest honest answer to "are user namespaces
         * allowed here" (sysctls, container policies and LSMs all can say no). */
        int pidfd = -1;
        long pid = raw_clone(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET, &pidfd);
        if (pid < 0)
                return mp_error_set(err, errno, 503, "sandbox",
                                    "sandbox: this host does not allow user namespaces (%m); enable "
                                    "them, or run with --no-sandbox for development only");
        if (pid == 0)
                _exit(0);
        close(pidfd);
        (void) waitpid((pid_t) pid, NULL, 0);
        return 0;
}

/* ---- function instances (called in the zygote's clone, see exec-zygote.c) ---- */

static _noreturn_ _printf_(2, 3) void inst_fail(int errnum, const char *fmt, ...) {
        char msg[512];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (n < 0)
                n = 0;
        if ((size_t) n < sizeof(msg) - 1 && errnum)
                n += snprintf(msg + n, sizeof(msg) - (size_t) n, ": %s", strerror(errnum));
        if ((size_t) n < sizeof(msg) - 1)
                msg[n++] = '\n';
        (void) !write(2, msg, MP_MIN((size_t) n, sizeof(msg)));
        _exit(127);
}

void mp_sandbox_instance_early(int guest_fd, int log_fd) {
        struct mp_spawn sp = { .guest_fd = guest_fd, .log_fd = log_fd };

        if (setsid() < 0)
                inst_fail(errno, "sandbox: setsid");
        /* Its own network namespace, empty (a loopback that stays down), as a cold
         * sandbox has. Why: the abstract AF_UNIX socket namespace and /proc/net (every
         * socket listed, sockstat counters) belong to the network namespace, and the
         * zygote's is shared by all its instances. A name got by autobind (SO_PASSCRED,
         * then a send) is reachable by sendmsg, whose address no seccomp filter can
         * read, and the Landlock scope that also stops it needs Linux 6.12: with a
         * namespace of its own an instance has no one to talk to on any kernel. Done
         * here, in the spare, before any call waits for it (~1-3 ms; the kernel frees
         * the namespace later, off this path). */
        if (unshare(CLONE_NEWNET) < 0)
                inst_fail(errno, "sandbox: cannot create the instance's network namespace");
        /* Its own /proc, showing only its own pid namespace. A new proc mount is only
         * allowed while a fully visible one exists in this mount namespace (the
         * zygote's, which shows the zygote and its other instances): mount the new one
         * aside on the empty /work mount point, drop the zygote's, move the new one in. */
        if (mount("proc", MP_SANDBOX_WORKDIR, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
                inst_fail(errno, "sandbox: cannot mount the instance's /proc");
        if (umount2("/proc", MNT_DETACH) < 0)
                inst_fail(errno, "sandbox: cannot detach the zygote's /proc");
        if (mount(MP_SANDBOX_WORKDIR, "/proc", NULL, MS_MOVE, NULL) < 0)
                inst_fail(errno, "sandbox: cannot move the instance's /proc");
        setup_fds(&sp, 2);
        /* No exec follows: close-on-exec is not enough. The zygote's control socket,
         * signalfd and other instances' fds must not stay open here. */
        if (syscall(SYS_close_range, 4, ~0U, 0) < 0)
                for (int fd = 4; fd < 65536; fd++)
                        (void) close(fd);
}

/* The solver environment: the binaries a function that declares "solvers" may start.
 * Their libraries are mapped by the loader, which needs only read access (/usr is
 * bound read-only); the loader itself is executed by the kernel and gets its own rule
 * (elf_interp). */
static const struct solver {
        unsigned bit;
        const char *name, *path;
} solvers[] = {
        { MP_SOLVER_CALCULIX, "calculix", "/usr/bin/ccx" },
        { MP_SOLVER_GMSH, "gmsh", "/usr/bin/gmsh" },
};

unsigned mp_exec_solver_bit(const char *name) {
        for (size_t i = 0; name && i < ELEMENTSOF(solvers); i++)
                if (strcmp(solvers[i].name, name) == 0)
                        return solvers[i].bit;
        return 0;
}

/* The ELF interpreter (PT_INTERP) of a 64-bit binary into buf: 1, 0 when it has none
 * (static), -errno when it is not such an ELF file (a script: its interpreter would
 * have to be executable too, which the solver environment does not allow). */
static int elf_interp(const char *path, char *buf, size_t size) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        Elf64_Ehdr eh;
        Elf64_Phdr ph;

        if (fd < 0)
                return -errno;
        if (pread(fd, &eh, sizeof(eh), 0) != (ssize_t) sizeof(eh) || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
            eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_phentsize != sizeof(ph) || eh.e_phnum > 256)
                return -ENOEXEC;
        for (unsigned i = 0; i < eh.e_phnum; i++) {
                if (pread(fd, &ph, sizeof(ph), (off_t) (eh.e_phoff + (Elf64_Off) i * sizeof(ph))) != (ssize_t) sizeof(ph))
                        return -ENOEXEC;
                if (ph.p_type != PT_INTERP)
                        continue;
                if (ph.p_filesz < 2 || ph.p_filesz > size ||
                    pread(fd, buf, ph.p_filesz, (off_t) ph.p_offset) != (ssize_t) ph.p_filesz ||
                    buf[ph.p_filesz - 1] != 0)
                        return -ENOEXEC;
                return 1;
        }
        return 0;
}

/* Landlock, in every warm instance (after no_new_privs, before seccomp):
 *  - execution (LANDLOCK_ACCESS_FS_EXECUTE, ABI 1, Linux 5.13): handled, so that no
 *    file can be executed but those given a rule: none at all for a plain function
 *    (seccomp refuses execve there too), and for a function that declares solvers
 *    their binaries and the ELF loader they name, nothing else (no /bin/sh, no
 *    python3). Reading stays as the mount namespace makes it (read-only /usr);
 *  - scope (ABI 6, Linux 6.12): it can neither reach an abstract AF_UNIX socket nor
 *    signal a process created outside its own Landlock domain. A second wall: each
 *    instance already has its own network namespace (hence its own abstract socket
 *    namespace, mp_sandbox_instance_early) and its own pid namespace.
 * Each instance makes its own domain (~10 us), so each is alone in it. Returns the
 * ABI, or -errno. Without Landlock (-ENOSYS, -EOPNOTSUPP) a plain instance keeps the
 * other guards (seccomp refuses execve and fork); a solver instance must not run:
 * its caller fails it. no_scope: skip the scope as on a kernel older than 6.12 (the
 * test switch MP_SANDBOX_NO_LANDLOCK_ENV). */
#define LL_CREATE_RULESET_VERSION 1U
#define LL_ACCESS_FS_EXECUTE 1ULL
#define LL_RULE_PATH_BENEATH 1
#define LL_SCOPE_ABSTRACT_UNIX_SOCKET 1ULL
#define LL_SCOPE_SIGNAL 2ULL
struct ll_path_beneath {
        uint64_t allowed_access;
        int32_t parent_fd;
} __attribute__((packed));

static int landlock_allow_exec(int ruleset, const char *path) {
        struct ll_path_beneath pb = { .allowed_access = LL_ACCESS_FS_EXECUTE };
        _cleanup_close_ int fd = open(path, O_PATH | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        pb.parent_fd = fd;
        if (syscall(SYS_landlock_add_rule, ruleset, LL_RULE_PATH_BENEATH, &pb, 0U) < 0)
                return -errno;
        return 0;
}

static int landlock_restrict(unsigned solver_bits, bool no_scope) {
        struct {
                uint64_t handled_access_fs, handled_access_net, scoped;
        } attr = { .handled_access_fs = LL_ACCESS_FS_EXECUTE };
        char interp[PATH_MAX];
        long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LL_CREATE_RULESET_VERSION);
        int r;

        if (abi < 0)
                return -errno;
        if (abi >= 6 && !no_scope)
                attr.scoped = LL_SCOPE_ABSTRACT_UNIX_SOCKET | LL_SCOPE_SIGNAL;
        _cleanup_close_ int fd = (int) syscall(SYS_landlock_create_ruleset, &attr, sizeof(attr), 0U);
        if (fd < 0)
                return -errno;
        for (size_t i = 0; i < ELEMENTSOF(solvers); i++) {
                if (!(solver_bits & solvers[i].bit))
                        continue;
                if ((r = landlock_allow_exec(fd, solvers[i].path)) < 0)
                        return r;
                r = elf_interp(solvers[i].path, interp, sizeof(interp));
                if (r < 0)
                        return r;
                if (r > 0 && (r = landlock_allow_exec(fd, interp)) < 0)
                        return r;
        }
        if (syscall(SYS_landlock_restrict_self, fd, 0U) < 0)
                return -errno;
        return (int) abi;
}

/* matplotlib's font list, as the zygote built it (MP_SANDBOX_CACHEDIR), into this
 * instance's private MPLCONFIGDIR: matplotlib reads it there instead of scanning every
 * font again (~1 s) on the instance's first plot. Best effort: without it matplotlib
 * builds its own. The directory stays the instance's, writable (matplotlib keeps its
 * other caches there). */
static void copy_font_cache(uid_t owner) {
        glob_t g = { 0 };

        if (mkdir(MP_SANDBOX_MPLDIR, 0755) < 0 || chown(MP_SANDBOX_MPLDIR, owner, owner) < 0)
                return;
        if (glob(MP_SANDBOX_CACHEDIR "/matplotlib/fontlist-*.json", GLOB_NOSORT, NULL, &g) != 0)
                return;
        for (size_t i = 0; i < g.gl_pathc; i++) {
                _cleanup_free_ char *data = NULL;
                size_t n = 0;
                char dest[PATH_MAX];
                const char *base = strrchr(g.gl_pathv[i], '/') + 1;
                if (mp_read_file(g.gl_pathv[i], 16 << 20, &data, &n) < 0)
                        continue;
                snprintf(dest, sizeof(dest), MP_SANDBOX_MPLDIR "/%s", base);
                _cleanup_close_ int fd = open(dest, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
                if (fd < 0 || mp_write_all(fd, data, n) < 0 || fchown(fd, owner, owner) < 0)
                        (void) unlink(dest);
        }
        globfree(&g);
}

void mp_sandbox_instance_enter(const struct mp_limits *l, const struct mp_seccomp *sc) {
        _cleanup_free_ char *map = NULL, *statm = NULL;
        long inside = 0, outside = 0, count = 0, vsz_pages = 0;
        char opts[128];

        /* The whole uid range is mapped when the executor runs as host root; as a
         * plain user only uid 0 exists inside and there is no uid to switch to. */
        if (mp_read_file("/proc/self/uid_map", 4096, &map, NULL) < 0 ||
            sscanf(map, "%ld %ld %ld", &inside, &outside, &count) != 3)
                inst_fail(errno, "sandbox: cannot read the uid map");
        bool root_mode = count > MP_SANDBOX_UID;
        uid_t owner = root_mode ? MP_SANDBOX_UID : 0;
        /* Private, size-capped /tmp and /work for this instance (one tenant, one
         * function): nothing of another instance is reachable. */
        /* A solver instance may execute (the solver binaries and their ELF loader,
         * see landlock_restrict): noexec keeps a file of its own, written here, from
         * being mapped as code by that loader (`ld.so /tmp/x`). */
        unsigned long wflags = MS_NOSUID | MS_NODEV | (l->solvers ? MS_NOEXEC : 0);
        snprintf(opts, sizeof(opts), "size=%dm,nr_inodes=65536,mode=1777", l->tmp_mb);
        if (mount("tmpfs", "/tmp", "tmpfs", wflags, opts) < 0)
                inst_fail(errno, "sandbox: cannot mount /tmp");
        snprintf(opts, sizeof(opts), "size=%dm,nr_inodes=65536,mode=0755,uid=%u,gid=%u", l->tmp_mb, (unsigned) owner,
                 (unsigned) owner);
        if (mount("tmpfs", MP_SANDBOX_WORKDIR, "tmpfs", wflags, opts) < 0)
                inst_fail(errno, "sandbox: cannot mount " MP_SANDBOX_WORKDIR);
        if (mkdir(MP_SANDBOX_WORKDIR "/outputs", 0755) < 0 ||
            (root_mode && chown(MP_SANDBOX_WORKDIR "/outputs", MP_SANDBOX_UID, MP_SANDBOX_UID) < 0))
                inst_fail(errno, "sandbox: cannot create the outputs directory");
        copy_font_cache(owner);

        /* RLIMIT_AS must include what the zygote already maps (numpy, scipy, OpenBLAS:
         * pitfall 11), so it is counted from the instance's size now. No RLIMIT_NPROC:
         * it counts per uid of the user namespace, which every instance of this zygote
         * shares; the instance's pids cgroup and the seccomp ban on fork bound it. */
        if (mp_read_file("/proc/self/statm", 4096, &statm, NULL) == 0)
                (void) sscanf(statm, "%ld", &vsz_pages);
        rlim_t as = (rlim_t) vsz_pages * (rlim_t) sysconf(_SC_PAGESIZE) + (((rlim_t) l->memory_mb + 256) << 20);
        struct { int res; rlim_t v; } rl[] = {
                { RLIMIT_AS, as }, { RLIMIT_FSIZE, (rlim_t) l->tmp_mb << 20 }, { RLIMIT_NOFILE, 1024 },
                { RLIMIT_CORE, 0 }, { RLIMIT_MEMLOCK, 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(rl); i++) {
                struct rlimit r = { rl[i].v, rl[i].v };
                if (setrlimit(rl[i].res, &r) < 0)
                        inst_fail(errno, "sandbox: cannot set a resource limit");
        }
        /* No RLIMIT_CPU either: it would count the instance's whole life, not one call;
         * the wall-clock deadline of each call kills the instance. */
        drop_privileges(root_mode, 2);
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                inst_fail(errno, "sandbox: PR_SET_NO_NEW_PRIVS");
        /* A kernel without Landlock (-ENOSYS, -EOPNOTSUPP: built without it or not
         * enabled) keeps the other guards only; any other failure is an error. The
         * test switch (see zygote_env) makes this host behave as a kernel older than
         * 6.12 (no scope), so that the tests prove the other guards alone. A solver
         * instance needs Landlock's execute rules: without them it does not run. */
        int r = landlock_restrict(l->solvers, getenv(MP_SANDBOX_NO_LANDLOCK_ENV) != NULL);
        if (r < 0 && (l->solvers || (r != -ENOSYS && r != -EOPNOTSUPP)))
                inst_fail(-r, l->solvers ? "sandbox: cannot limit the solver environment with Landlock (it needs "
                                           "Linux 5.13 or later with Landlock enabled)"
                                         : "sandbox: cannot enter the Landlock domain");
        r = mp_seccomp_load(sc, l->solvers ? MP_SECCOMP_SOLVER : MP_SECCOMP_INSTANCE);
        if (r < 0)
                inst_fail(-r, "sandbox: cannot load the seccomp filter");
        if (chdir(MP_SANDBOX_WORKDIR) < 0)
                inst_fail(errno, "sandbox: chdir " MP_SANDBOX_WORKDIR);
}

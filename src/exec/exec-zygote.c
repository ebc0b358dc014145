/* The zygote: one process per environment that embeds CPython, imports the heavy
 * modules once (numpy, scipy...) and forks function instances on demand.
 *
 * It is our own binary, executed again by the sandbox (exec-sandbox.c, exec_zygote)
 * inside the sandbox's file system, user, pid, ipc, uts and network namespaces; a
 * constructor below turns the process into the zygote before main() when argv[0] says
 * so. So its image holds nothing of the server (no heap, no environment), and the
 * server's own process never holds CPython state.
 *
 * It never runs user code and never sees user input: the executor only tells it "make
 * instance N" and it answers with the instance's pidfd, guest socket and log pipe
 * (SCM_RIGHTS), and later with its exit status. Each instance is a clone in new pid,
 * mount and ipc namespaces that first blocks on its guest socket until the executor
 * sends its limits (SERVICES pitfall 5), then enters the per-call restrictions
 * (mp_sandbox_instance_enter) and runs the guest's serve() loop. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/util.h"
#include "exec/exec-internal.h"

extern const char mp_guest_py[];
extern const char mp_guest_solvers_py[];

#define CTL_FD 3
/* Instances one zygote keeps track of; the executor's own bound is far lower. */
#define MAX_KIDS 65536

struct kid {
        pid_t pid;
        uint32_t id;
};

char mp_zygote_argv0[] = MP_ZYGOTE_ARGV0;

static struct kid *kids;
static size_t n_kids, cap_kids;

static void zlog(const char *fmt, ...) _printf_(1, 2);
static void zlog(const char *fmt, ...) {
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(msg, sizeof(msg) - 1, fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        n = MP_MIN(n, (int) sizeof(msg) - 2);
        msg[n++] = '\n';
        (void) !write(2, msg, (size_t) n);
}

static int send_msg(const struct mp_zmsg *m, const int *fds, int nfds) {
        union {
                char buf[CMSG_SPACE(3 * sizeof(int))];
                struct cmsghdr align;
        } u;
        struct iovec iov = { .iov_base = (void *) m, .iov_len = sizeof(*m) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

        if (nfds > 0) {
                memset(&u, 0, sizeof(u));
                mh.msg_control = u.buf;
                mh.msg_controllen = CMSG_SPACE((size_t) nfds * sizeof(int));
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN((size_t) nfds * sizeof(int));
                memcpy(CMSG_DATA(c), fds, (size_t) nfds * sizeof(int));
        }
        while (sendmsg(CTL_FD, &mh, MSG_NOSIGNAL) < 0)
                if (errno != EINTR)
                        return -errno;
        return 0;
}

/* In the clone: become the instance, then serve calls until the executor hangs up. */
static _noreturn_ void instance_main(PyObject *serve, const struct mp_seccomp *sc, int gfd, int lfd) {
        struct mp_zsetup su;
        sigset_t none;

        PyOS_AfterFork_Child();
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        mp_sandbox_instance_early(gfd, lfd);
        /* Block until the executor has put us in our cgroup and bound us to a call:
         * a spare costs nothing while it waits. EOF: retired before any use. */
        if (mp_read_full(3, &su, sizeof(su)) < 0)
                _exit(0);
        struct mp_limits l = {
                .timeout_s = su.timeout_s, .memory_mb = su.memory_mb, .cpus = su.cpus,
                .max_procs = su.max_procs, .tmp_mb = su.tmp_mb, .solvers = (unsigned) su.solvers,
        };
        if (l.memory_mb < 32 || l.tmp_mb < 1 || l.cpus < 1 || l.max_procs < 1 || (l.solvers & ~MP_SOLVER_ALL))
                _exit(127);
        mp_sandbox_instance_enter(&l, sc);
        PyObject *r = PyObject_CallNoArgs(serve);
        if (!r)
                PyErr_Print();
        _exit(r ? 0 : 1);
}

static void spawn(uint32_t id, PyObject *serve, const struct mp_seccomp *sc) {
        struct mp_zmsg m = { .op = MP_Z_FAILED, .id = id };
        int sp[2] = { -1, -1 }, lp[2] = { -1, -1 }, pidfd = -1;

        if (n_kids >= MAX_KIDS) {
                m.status = EAGAIN;
                (void) send_msg(&m, NULL, 0);
                return;
        }
        if (n_kids == cap_kids) {
                size_t cap = cap_kids ? cap_kids * 2 : 64;
                struct kid *k = realloc(kids, cap * sizeof(*k));
                if (!k) {
                        m.status = ENOMEM;
                        (void) send_msg(&m, NULL, 0);
                        return;
                }
                kids = k;
                cap_kids = cap;
        }
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0 || pipe2(lp, O_CLOEXEC) < 0) {
                m.status = errno;
                goto out;
        }
        PyOS_BeforeFork();
        /* New pid namespace: the instance is PID 1 there, sees only itself, and
         * killing it kills everything it started. New mount namespace: its own /proc,
         * /tmp and /work. New ipc namespace: no shared memory with other instances.
         * The user and uts namespaces are the zygote's; the instance makes its own
         * network namespace early, while still a spare (mp_sandbox_instance_early), so
         * abstract sockets and /proc/net are its own too. */
        long pid = syscall(SYS_clone, CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_PIDFD | SIGCHLD, NULL,
                           &pidfd, NULL, 0);
        if (pid == 0) {
                close(sp[0]);
                close(lp[0]);
                instance_main(serve, sc, sp[1], lp[1]);
        }
        PyOS_AfterFork_Parent();
        if (pid < 0) {
                m.status = errno;
                goto out;
        }
        kids[n_kids++] = (struct kid) { .pid = (pid_t) pid, .id = id };
        m.op = MP_Z_SPAWNED;
        int fds[3] = { pidfd, sp[0], lp[0] };
        if (send_msg(&m, fds, 3) < 0)
                (void) kill((pid_t) pid, SIGKILL);
out:
        if (m.op == MP_Z_FAILED)
                (void) send_msg(&m, NULL, 0);
        for (int i = 0; i < 2; i++) {
                if (sp[i] >= 0)
                        close(sp[i]);
                if (lp[i] >= 0)
                        close(lp[i]);
        }
        if (pidfd >= 0)
                close(pidfd);
}

static void reap(void) {
        for (;;) {
                struct rusage ru;
                int ws;
                pid_t pid = wait4(-1, &ws, WNOHANG | __WALL, &ru);
                if (pid <= 0)
                        return;
                for (size_t i = 0; i < n_kids; i++) {
                        if (kids[i].pid != pid)
                                continue;
                        struct mp_zmsg m = {
                                .op = MP_Z_EXITED, .id = kids[i].id, .status = ws,
                                .cpu_us = (int64_t) ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec +
                                          (int64_t) ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec,
                        };
                        kids[i] = kids[--n_kids];
                        (void) send_msg(&m, NULL, 0);
                        break;
                }
        }
}

static int py_init(const char *python) {
        PyConfig c;
        PyStatus st;

        /* Isolated, like `python3 -I -B`: no PYTHON* variables, no user site, no
         * script directory on sys.path, no .pyc written. program_name locates the
         * interpreter's prefix (the configured interpreter, e.g. /usr/bin/python3). */
        PyConfig_InitIsolatedConfig(&c);
        c.write_bytecode = 0;
        c.install_signal_handlers = 0;
        st = PyConfig_SetBytesString(&c, &c.program_name, python);
        if (!PyStatus_Exception(st))
                st = PyConfig_SetBytesString(&c, &c.executable, python);
        if (!PyStatus_Exception(st))
                st = Py_InitializeFromConfig(&c);
        PyConfig_Clear(&c);
        if (PyStatus_Exception(st)) {
                zlog("mecapy-zygote: cannot initialise Python: %s", st.err_msg ? st.err_msg : "?");
                return -EINVAL;
        }
        return 0;
}

/* The guest as module "mecapy_guest" (its main() only runs as __main__, i.e. cold). */
static PyObject *load_guest(void) {
        PyObject *mod = PyImport_AddModule("mecapy_guest"); /* borrowed */
        if (!mod)
                return NULL;
        PyObject *d = PyModule_GetDict(mod);
        if (PyDict_SetItemString(d, "__builtins__", PyEval_GetBuiltins()) < 0)
                return NULL;
        /* "<string>", like `python3 -c`: the guest drops its own frames by that name. */
        PyObject *code = Py_CompileString(mp_guest_py, "<string>", Py_file_input);
        if (!code)
                return NULL;
        PyObject *r = PyEval_EvalCode(code, d, d);
        Py_DECREF(code);
        if (!r)
                return NULL;
        Py_DECREF(r);
        return PyObject_GetAttrString(mod, "serve");
}

/* mecapy.solvers (guest/solvers.py), importable by user code: `from mecapy.solvers
 * import calculix`. The `mecapy` package is the guest's; made here, empty, if the
 * guest has none. 0, or -1 with a Python error set. */
static int load_solvers_module(void) {
        PyObject *pkg = PyImport_AddModule("mecapy"); /* borrowed; the guest's if it made one */
        if (!pkg)
                return -1;
        if (!PyObject_HasAttrString(pkg, "__path__")) {
                PyObject *path = PyList_New(0);
                int r = path ? PyObject_SetAttrString(pkg, "__path__", path) : -1;
                Py_XDECREF(path);
                if (r < 0)
                        return -1;
        }
        PyObject *mod = PyImport_AddModule("mecapy.solvers"); /* borrowed */
        if (!mod)
                return -1;
        PyObject *d = PyModule_GetDict(mod);
        if (PyDict_SetItemString(d, "__builtins__", PyEval_GetBuiltins()) < 0)
                return -1;
        PyObject *code = Py_CompileString(mp_guest_solvers_py, "<mecapy.solvers>", Py_file_input);
        if (!code)
                return -1;
        PyObject *r = PyEval_EvalCode(code, d, d);
        Py_DECREF(code);
        if (!r)
                return -1;
        Py_DECREF(r);
        return PyObject_SetAttrString(pkg, "solvers", mod);
}

#define FONT_CACHE_WAIT_MS 60000

/* matplotlib's font list, built once per zygote (a scan of every font: ~1 s) into
 * MP_SANDBOX_CACHEDIR, which is then made read-only; each instance copies it into its
 * own MPLCONFIGDIR (mp_sandbox_instance_enter). A fork of the zygote made before its
 * interpreter starts does it with an interpreter of its own, so matplotlib itself is
 * not imported into the zygote (only --preload is), and it runs beside the preload.
 * No user code, no input. Returns its pid, or -1. */
static pid_t font_cache_start(const char *python) {
        static const char script[] = "import os\n"
                                     "os.environ['MPLCONFIGDIR'] = '" MP_SANDBOX_CACHEDIR "/matplotlib'\n"
                                     "import matplotlib\n"
                                     "matplotlib.use('Agg')\n"
                                     "import matplotlib.font_manager\n";
        pid_t pid = fork();
        if (pid != 0)
                return pid;
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
                _exit(127);
        /* Not the zygote's control socket or signalfd. */
        (void) syscall(SYS_close_range, 3, ~0U, 0);
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (py_init(python) < 0)
                _exit(127);
        _exit(PyRun_SimpleString(script) == 0 ? 0 : 1);
}

static void font_cache_finish(pid_t pid) {
        /* At most FONT_CACHE_WAIT_MS more: a scan that hangs must not keep the zygote
         * from serving (its instances then build their own). */
        for (int waited = 0; pid > 0 && waitpid(pid, NULL, WNOHANG) == 0; waited += 10) {
                if (waited >= FONT_CACHE_WAIT_MS) {
                        zlog("mecapy-zygote: matplotlib's font list took too long; instances build their own");
                        (void) kill(pid, SIGKILL);
                        (void) waitpid(pid, NULL, 0);
                        break;
                }
                usleep(10000);
        }
        /* Read-only from now on, whatever the child left: an instance (root of this
         * user namespace until it drops to uid 1000) never writes it. */
        if (mount(NULL, MP_SANDBOX_CACHEDIR, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
                zlog("mecapy-zygote: cannot make %s read-only: %s", MP_SANDBOX_CACHEDIR, strerror(errno));
}

/* sys.path.insert(0, dir): an environment's packages come before the base image's. */
static int add_layer(const char *dir) {
        PyObject *path = PySys_GetObject("path"); /* borrowed */
        PyObject *d = PyUnicode_FromString(dir);
        int r = path && d ? PyList_Insert(path, 0, d) : -1;
        Py_XDECREF(d);
        return r;
}

static void preload(const char *list) {
        char name[256];
        for (const char *p = list; p && *p;) {
                const char *comma = strchr(p, ',');
                size_t n = comma ? (size_t) (comma - p) : strlen(p);
                if (n > 0 && n < sizeof(name)) {
                        memcpy(name, p, n);
                        name[n] = 0;
                        PyObject *m = PyImport_ImportModule(name);
                        if (!m) {
                                zlog("mecapy-zygote: cannot preload %s (calls import it themselves):", name);
                                PyErr_Print();
                        }
                        Py_XDECREF(m);
                }
                p = comma ? comma + 1 : NULL;
        }
}

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#define HUGE_SZ (2UL << 20)

/* Back the zygote's big anonymous regions (the malloc heap, numpy's and pymalloc's
 * arenas: ~30 MB in ~7,700 pages with numpy+scipy) with 2 MB pages where the kernel
 * can. Why: every instance is a fork of this process, and fork copies one page table
 * entry per resident anonymous page, and the instance's exit takes them all down again
 * (SERVICES: ~2.6 + ~4.6 ms, most of a per_call call's CPU). A huge page is one entry
 * for both. An instance's first write to one splits it in the instance only (4 kB
 * copy-on-write as before); the zygote's own pages are never written by instances.
 * Best effort: a kernel without MADV_COLLAPSE (< 6.1) or without free huge pages
 * says no, and nothing changes. Costs the zygote up to 2 MB per region (the holes
 * filled in), once. */
static void collapse_anon(void) {
        _cleanup_free_ char *maps = NULL;
        if (mp_read_file("/proc/self/maps", 1 << 20, &maps, NULL) < 0)
                return;
        for (char *l = maps; l && *l;) {
                char *nl = strchr(l, '\n');
                unsigned long lo, hi;
                char perms[8];
                int name = 0;
                if (nl)
                        *nl = 0;
                if (sscanf(l, "%lx-%lx %7s %*s %*s %*s %n", &lo, &hi, perms, &name) == 3 &&
                    strcmp(perms, "rw-p") == 0 && (name == 0 || l[name] == 0 || strcmp(l + name, "[heap]") == 0)) {
                        unsigned long a = (lo + HUGE_SZ - 1) & ~(HUGE_SZ - 1), b = hi & ~(HUGE_SZ - 1);
                        if (b > a)
                                (void) madvise((void *) a, b - a, MADV_COLLAPSE);
                }
                l = nl ? nl + 1 : NULL;
        }
}

static _noreturn_ void zygote_main(char **argv) {
        struct mp_seccomp *sc = NULL;
        struct mp_error err = { 0 };
        struct mp_zmsg ready = { .op = MP_Z_READY };
        sigset_t ss;

        (void) prctl(PR_SET_NAME, MP_ZYGOTE_ARGV0, 0, 0, 0);
        /* Dies with the executor (set before exec too; again here in case). */
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        sigemptyset(&ss);
        sigaddset(&ss, SIGCHLD);
        sigprocmask(SIG_BLOCK, &ss, NULL);
        int sfd = signalfd(-1, &ss, SFD_CLOEXEC);
        if (sfd < 0 || mp_seccomp_build(&sc, &err) < 0) {
                zlog("mecapy-zygote: %s", err.message[0] ? err.message : "cannot set up");
                _exit(1);
        }
        pid_t fonts = font_cache_start(argv[1]);
        if (py_init(argv[1]) < 0)
                _exit(1);
        PyObject *serve = load_guest();
        if (!serve || load_solvers_module() < 0) {
                PyErr_Print();
                _exit(1);
        }
        /* An environment's zygote: its layer (bound read-only) first on sys.path, before
         * the preloads, so that a version it pins wins over the base image's. */
        if (argv[3] && add_layer(argv[3]) < 0) {
                PyErr_Print();
                _exit(1);
        }
        preload(argv[2]);
        font_cache_finish(fonts);
        /* Freeze what the imports made: a GC pass in an instance would otherwise touch
         * (and copy) every object of numpy and scipy (pitfall 8). Flush stdio so that no
         * buffered byte of the zygote is written again by every instance. */
        if (PyRun_SimpleString("import gc, sys\ngc.collect()\ngc.freeze()\nsys.stdout.flush()\nsys.stderr.flush()\n") < 0)
                _exit(1);
        collapse_anon();
        if (send_msg(&ready, NULL, 0) < 0)
                _exit(1);

        for (;;) {
                struct pollfd p[2] = { { .fd = CTL_FD, .events = POLLIN }, { .fd = sfd, .events = POLLIN } };
                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        _exit(1);
                }
                if (p[1].revents) {
                        struct signalfd_siginfo si;
                        (void) !read(sfd, &si, sizeof(si));
                        reap();
                }
                if (p[0].revents & POLLIN) {
                        struct mp_zmsg m;
                        ssize_t n = recv(CTL_FD, &m, sizeof(m), 0);
                        if (n == 0)
                                _exit(0); /* the executor is gone: PID 1 exits, every instance dies */
                        if (n == (ssize_t) sizeof(m) && m.op == MP_Z_SPAWN)
                                spawn(m.id, serve, sc);
                } else if (p[0].revents & (POLLHUP | POLLERR)) {
                        _exit(0);
                }
        }
}

/* glibc calls constructors with (argc, argv, envp). Our binary started as the zygote
 * (argv: "mecapy-zygote", interpreter, preload list, and for an environment the
 * folder of its layer) never reaches main(). */
static void zygote_ctor(int argc, char **argv, char **envp) __attribute__((constructor));
static void zygote_ctor(int argc, char **argv, char **envp) {
        if ((argc == 3 || argc == 4) && argv && argv[0] && strcmp(argv[0], MP_ZYGOTE_ARGV0) == 0)
                zygote_main(argv);
}

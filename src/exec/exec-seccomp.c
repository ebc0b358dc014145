/* The seccomp filter of every sandbox: default ALLOW with a deny list answering EPERM.
 *
 * Why a deny list with EPERM and not a default KILL allow list: Python and its native
 * libraries probe syscalls they can live without (OpenBLAS's mbind, socket options, ...);
 * a KILL default dies silently on them (SERVICES pitfall 9), while EPERM turns into a
 * Python exception the user can read. The list below is the kernel's attack surface and
 * everything that would let code leave its namespaces or see other processes.
 *
 * The filter is built once with libseccomp in the executor and exported as BPF; each
 * sandbox only loads the ready program (~0.3 ms instead of ~1 ms). */
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/macro.h"
#include "exec/exec-internal.h"

struct mp_seccomp {
        struct sock_fprog prog[MP_SECCOMP_KINDS];
};

/* Syscalls user code never needs, each denied with EPERM. */
static const char *const deny_eperm[] = {
        /* leaving the sandbox: namespaces, mounts, root */
        "mount", "umount", "umount2", "pivot_root", "chroot", "unshare", "setns",
        "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
        /* other processes: debugging, memory access, handles by inode */
        "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
        "open_by_handle_at", "name_to_handle_at",
        /* AF_UNIX sockets (the only family allowed below) by name: a bound name is a
         * rendezvous. Each sandbox and instance has its own network namespace (hence
         * abstract socket namespace) already; this is the second wall. User code
         * keeps socketpair(); the guest's fd 3 is connected already. */
        "bind", "connect", "listen",
        /* Watches on shared files: an inotify watch on a /usr file sees every open and
         * read of it by other instances (and the host): a side channel, and a covert
         * one between two instances of one author. And an inotify instance is charged
         * to the user namespace's creator up the chain (host root): 128 of them from
         * inside would stop systemd and every root service from watching anything.
         * POSIX message queues: their bytes are charged per uid of the user namespace,
         * which every instance of a zygote shares (one filling RLIMIT_MSGQUEUE is seen
         * by another as a failed mq_open), and up the chain to host root too. */
        "inotify_init", "inotify_init1", "inotify_add_watch", "mq_open", "mq_timedsend",
        "mq_timedreceive", "mq_notify", "mq_getsetattr", "mq_unlink",
        /* kernel attack surface */
        "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
        "io_uring_setup", "io_uring_enter", "io_uring_register", "fanotify_init",
        "lookup_dcookie", "iopl", "ioperm", "uselib", "sysfs", "ustat", "vm86", "vm86old",
        "_sysctl", "nfsservctl", "personality",
        /* host administration */
        "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
        "create_module", "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd",
        "syslog", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
        "sethostname", "setdomainname",
};

/* fcntl commands that take or test a record lock, or watch a directory (dnotify).
 * A lock lives on the inode, and every instance and sandbox opens the same host inodes
 * of /usr, /etc and /dev/{null,zero,...} (read-only binds, but /dev nodes are writable
 * and a read lock needs only a read-only fd): one instance's lock is what another's
 * F_GETLK or F_SETLK sees, a covert channel between two tenants' instances of one
 * author's function. A filter cannot tell a shared file from a private one in /tmp,
 * so record locks are refused everywhere: ENOLCK, "no locks available", as on a file
 * system without lock support. The *64 variants are the same numbers on 64-bit ABIs. */
static const unsigned fcntl_denied[] = {
        F_GETLK, F_SETLK, F_SETLKW, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW,
        1026 /* F_NOTIFY: signals on any access to a shared directory's files */,
};

/* clone flags that would create namespaces (never allowed, even for a thread). */
static const uint64_t clone_ns_flags[] = {
        CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS,
        CLONE_NEWCGROUP, 0x00000080ULL /* CLONE_NEWTIME */,
};

static void ctx_releasep(scmp_filter_ctx *c) {
        if (*c)
                seccomp_release(*c);
}

/* Process creation: a fork bomb would exhaust the pids budget (pitfall 10); clone is
 * handled in add_rules so that threads (OpenBLAS) still work. Refused everywhere but
 * in the solver environment. */
static const char *const deny_process[] = { "fork", "vfork" };
/* Executing a file: a warm instance never needs it (a cold sandbox's filter is loaded
 * before it executes the interpreter, so it keeps execve). The solver environment
 * keeps it, and Landlock limits it to the solver binaries (exec-sandbox.c). */
static const char *const deny_exec[] = { "execve", "execveat" };

static int deny_names(scmp_filter_ctx ctx, const char *const *names, size_t n, struct mp_error *err) {
        for (size_t i = 0; i < n; i++) {
                int nr = seccomp_syscall_resolve_name(names[i]);
                if (nr == __NR_SCMP_ERROR)
                        continue; /* not on this architecture */
                int r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
                if (r < 0 && r != -EDOM) /* -EDOM: pseudo syscall not on this arch */
                        return mp_error_set(err, -r, 500, "sandbox", "seccomp: cannot deny %s: %s", names[i],
                                            strerror(-r));
        }
        return 0;
}

static int add_rules(scmp_filter_ctx ctx, enum mp_seccomp_kind kind, struct mp_error *err) {
        int r;

        r = deny_names(ctx, deny_eperm, ELEMENTSOF(deny_eperm), err);
        if (r >= 0 && kind != MP_SECCOMP_SOLVER)
                r = deny_names(ctx, deny_process, ELEMENTSOF(deny_process), err);
        if (r >= 0 && kind == MP_SECCOMP_INSTANCE)
                r = deny_names(ctx, deny_exec, ELEMENTSOF(deny_exec), err);
        if (r < 0)
                return r;

        /* Sockets: only AF_UNIX (socketpair for the user's own threads); no network, not
         * even the namespace's loopback, no netlink, no packet sockets. */
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socket), 1,
                             SCMP_A0(SCMP_CMP_NE, AF_UNIX));
        if (r >= 0)
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socketpair), 1,
                                     SCMP_A0(SCMP_CMP_NE, AF_UNIX));

        /* sendto with an address reaches an (auto)bound datagram socket without
         * connect; sendmsg's address is out of a filter's sight: the network
         * namespace of each instance and the Landlock scope cover it (exec-sandbox.c). */
        if (r >= 0)
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(sendto), 1, SCMP_A4(SCMP_CMP_NE, 0));
        /* flock(): the same channel as record locks (see fcntl_denied). ENOSYS, as a
         * file system without flock support answers: HDF5 (h5py, netCDF) and
         * filelock take that as "no locking here" and go on. */
        if (r >= 0)
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(flock), 0);
        /* The command is an int: compare the low 32 bits only, or a raw syscall with
         * high bits set would slip past while the kernel still reads F_SETLK. */
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(fcntl_denied); i++)
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOLCK), SCMP_SYS(fcntl), 1,
                                     SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, fcntl_denied[i]));
        /* clone: threads carry CLONE_THREAD; a clone without it is a new process
         * (fork, vfork, posix_spawn), allowed in the solver environment only.
         * Namespace flags are refused in any case. */
        if (r >= 0 && kind != MP_SECCOMP_SOLVER)
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                                     SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0));
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(clone_ns_flags); i++)
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                                     SCMP_A0(SCMP_CMP_MASKED_EQ, clone_ns_flags[i],
                                             clone_ns_flags[i]));
        /* clone3 passes its flags in memory a filter cannot read: answer ENOSYS so that
         * glibc falls back to clone, where the rules above apply. */
        if (r >= 0)
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
        /* TIOCSTI would push input into a terminal outside (there is none, but cheap). */
        if (r >= 0)
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
                                     SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, 0x5412u));
        if (r < 0)
                return mp_error_set(err, -r, 500, "sandbox", "seccomp: cannot add a rule: %s",
                                    strerror(-r));
        return 0;
}

static int build_one(enum mp_seccomp_kind kind, struct sock_fprog *ret, struct mp_error *err) {
        _cleanup_(ctx_releasep) scmp_filter_ctx ctx = NULL;
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *bpf = NULL;
        off_t size;
        int r;

        ctx = seccomp_init(SCMP_ACT_ALLOW);
        if (!ctx)
                return mp_error_set(err, ENOMEM, 500, "sandbox", "seccomp: cannot initialise libseccomp");
        /* A syscall from a foreign ABI (i386 int 0x80, x32) would bypass the rules. */
        r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
        if (r < 0)
                return mp_error_set(err, -r, 500, "sandbox", "seccomp: %s", strerror(-r));
        r = add_rules(ctx, kind, err);
        if (r < 0)
                return r;

        fd = memfd_create("mp-seccomp", MFD_CLOEXEC);
        if (fd < 0)
                return mp_error_set(err, errno, 500, "sandbox", "seccomp: memfd_create: %m");
        r = seccomp_export_bpf(ctx, fd);
        if (r < 0)
                return mp_error_set(err, -r, 500, "sandbox", "seccomp: cannot export the filter: %s",
                                    strerror(-r));
        size = lseek(fd, 0, SEEK_END);
        if (size <= 0 || size % sizeof(struct sock_filter) != 0 || size > 65536)
                return mp_error_set(err, EINVAL, 500, "sandbox", "seccomp: odd filter size %lld",
                                    (long long) size);
        bpf = malloc((size_t) size);
        if (!bpf)
                return -ENOMEM;
        if (pread(fd, bpf, (size_t) size, 0) != size)
                return mp_error_set(err, EIO, 500, "sandbox", "seccomp: cannot read the filter back");

        ret->len = (unsigned short) (size / sizeof(struct sock_filter));
        ret->filter = (struct sock_filter *) TAKE_PTR(bpf);
        return 0;
}

int mp_seccomp_build(struct mp_seccomp **ret, struct mp_error *err) {
        struct mp_seccomp *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        for (int k = 0; k < MP_SECCOMP_KINDS; k++) {
                int r = build_one((enum mp_seccomp_kind) k, &s->prog[k], err);
                if (r < 0) {
                        mp_seccomp_free(s);
                        return r;
                }
        }
        *ret = s;
        return 0;
}

int mp_seccomp_load(const struct mp_seccomp *s, enum mp_seccomp_kind kind) {
        /* Needs PR_SET_NO_NEW_PRIVS (set by the caller) since we hold no CAP_SYS_ADMIN on
         * the host. TSYNC is pointless: the child is single-threaded here. */
        if (kind < 0 || kind >= MP_SECCOMP_KINDS || !s->prog[kind].filter)
                return -EINVAL;
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &s->prog[kind]) < 0)
                return -errno;
        return 0;
}

struct mp_seccomp *mp_seccomp_free(struct mp_seccomp *s) {
        if (s) {
                for (int k = 0; k < MP_SECCOMP_KINDS; k++)
                        free(s->prog[k].filter);
                free(s);
        }
        return NULL;
}

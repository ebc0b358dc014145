/* exec/ private interfaces: the sandbox plan and spawner, the seccomp filter, the
 * cgroup v1 limits. Only the executor process (single-threaded, see exec-executor.c)
 * calls these. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

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
};

/* Clone the sandbox (user, pid, mount, ipc, uts, net namespaces), write its id maps,
 * attach it to its cgroups, let it build its root and exec the interpreter. Returns 0
 * once the interpreter is exec'ed, with the host pid and a pidfd (O_CLOEXEC, pollable:
 * readable when the sandbox's PID 1 exits); or -errno with err naming the step that
 * failed (nothing is left running). */
int mp_sandbox_spawn(const struct mp_spawn *sp, pid_t *ret_pid, int *ret_pidfd,
                     struct mp_error *err);
/* Is this host able to build sandboxes at all? (cheap checks, run at executor start) */
int mp_sandbox_probe(struct mp_error *err);

/* cgroup v2 backend: one child of the delegated subtree per sandbox or instance,
 * <root>/<name>, beside <root>/service where the service itself lives (mp_cgroup_setup).
 * Files (Documentation/admin-guide/cgroup-v2.rst):
 *   memory.max       the memory limit (tmpfs, memfd and SysV shm pages included)
 *   memory.swap.max  0: no swap either (absent without swap accounting)
 *   memory.oom.group 1: the OOM killer takes the whole sandbox, never a part of it
 *   pids.max         processes and threads
 *   cpu.max          "<quota> <period>" in microseconds
 *   memory.events    "oom_kill N": the OOM verdict
 *   memory.current, memory.peak (5.19+): usage; the peak covers the cgroup's life
 *   cgroup.kill      1: SIGKILL everything in it (5.14+; else cgroup.procs one by one)
 *   cpu.stat         "usage_usec N": CPU of everything that ran in it, children too */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util.h"
#include "exec/exec-internal.h"

static int v2_set_limits(const struct mp_cgroup *cg, const struct mp_limits *l, struct mp_error *err) {
        const char *dir = cg->path[0];
        char v[64];
        int r;

        snprintf(v, sizeof(v), "%lld", (long long) l->memory_mb << 20);
        if ((r = mp_cg_write(dir, "memory.max", v)) < 0)
                return mp_cg_limit_error(err, r, dir, "memory.max");
        /* ENOENT: a kernel without swap accounting has no swap file to write. */
        if ((r = mp_cg_write(dir, "memory.swap.max", "0")) < 0 && r != -ENOENT)
                return mp_cg_limit_error(err, r, dir, "memory.swap.max");
        if ((r = mp_cg_write(dir, "memory.oom.group", "1")) < 0 && r != -ENOENT)
                return mp_cg_limit_error(err, r, dir, "memory.oom.group");
        snprintf(v, sizeof(v), "%d", l->max_procs);
        if ((r = mp_cg_write(dir, "pids.max", v)) < 0)
                return mp_cg_limit_error(err, r, dir, "pids.max");
        snprintf(v, sizeof(v), "%d 100000", l->cpus * 100000);
        if ((r = mp_cg_write(dir, "cpu.max", v)) < 0)
                return mp_cg_limit_error(err, r, dir, "cpu.max");
        return 0;
}

static int v2_kill(const struct mp_cgroup *cg) {
        int r = mp_cg_write(cg->path[0], "cgroup.kill", "1");
        if (r == -ENOENT)
                r = mp_cg_kill_procs(cg->path[0]);
        return r;
}

static int v2_destroy(struct mp_cgroup *cg) {
        if (!cg->path[0][0] || rmdir(cg->path[0]) == 0 || errno == ENOENT) {
                cg->path[0][0] = 0;
                return 0;
        }
        int r = -errno;
        if (r == -EBUSY)
                (void) v2_kill(cg);
        return r;
}

static int v2_create(const char *name, const struct mp_limits *l, struct mp_cgroup *cg, struct mp_error *err) {
        char *dir = cg->path[0];

        if ((size_t) snprintf(dir, PATH_MAX, "%s/%s", mp_cgroup_host.v2_root, name) >= PATH_MAX)
                return mp_error_set(err, ENAMETOOLONG, 503, "sandbox", "the cgroup path is too long");
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return mp_error_set(err, errno, 503, "sandbox", "sandbox: cannot create its cgroup %s: %m", dir);
        int r = v2_set_limits(cg, l, err);
        if (r < 0)
                (void) v2_destroy(cg);
        return r;
}

static int v2_attach(const struct mp_cgroup *cg, pid_t pid) {
        char v[32];

        snprintf(v, sizeof(v), "%d", (int) pid);
        return mp_cg_write(cg->path[0], "cgroup.procs", v);
}

static int64_t v2_memory_kb(const struct mp_cgroup *cg) {
        int64_t b = mp_cg_read_i64(cg->path[0], "memory.current");
        return b < 0 ? -1 : b / 1024;
}

static int v2_reset_peak(const struct mp_cgroup *cg) {
        /* memory.peak is reset per open file only (6.12+); the pool measures the peak
         * of a warm call from the instance's VmHWM instead. */
        return -EOPNOTSUPP;
}

static void v2_usage(const struct mp_cgroup *cg, int64_t *ret_peak_kb, bool *ret_oom) {
        int64_t b = mp_cg_read_i64(cg->path[0], "memory.peak");
        *ret_peak_kb = b < 0 ? -1 : b / 1024;
        *ret_oom = mp_cg_read_key(cg->path[0], "memory.events", "oom_kill") > 0;
}

static int64_t v2_cpu_us(const struct mp_cgroup *cg) {
        /* cpu.stat's usage_usec is kept by every cgroup v2, cpu controller or not. */
        return mp_cg_read_key(cg->path[0], "cpu.stat", "usage_usec");
}

static const char *v2_procs_dir(const struct mp_cgroup *cg) {
        return cg->path[0];
}

const struct mp_cgroup_ops mp_cgroup_v2_ops = {
        .name = "cgroup v2",
        .create = v2_create,
        .set_limits = v2_set_limits,
        .attach = v2_attach,
        .memory_kb = v2_memory_kb,
        .reset_peak = v2_reset_peak,
        .usage = v2_usage,
        .kill = v2_kill,
        .destroy = v2_destroy,
        .cpu_us = v2_cpu_us,
        .procs_dir = v2_procs_dir,
};

/* cgroup v1 backend: one cgroup per sandbox in each of the memory, pids and cpu
 * hierarchies, under <the executor's own cgroup>/mecapy/, so that the host's limits on
 * us still bound the sum. All three are required (mp_cgroup_setup probes them). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util.h"
#include "exec/exec-internal.h"

static const char *const cg_ctrl[MP_CG_COUNT] = { "memory", "pids", "cpu" };
static const char *const cg_file[MP_CG_COUNT] = { "memory.limit_in_bytes", "pids.max", "cpu.cfs_quota_us" };

/* Our own cgroup for one controller, from /proc/self/cgroup ("4:memory:/a/b"). */
static int own_path(const char *ctrl, char *buf, size_t size) {
        _cleanup_free_ char *s = NULL;
        size_t clen = strlen(ctrl);

        if (mp_read_file("/proc/self/cgroup", 65536, &s, NULL) < 0)
                return -ENOENT;
        for (char *line = s; line && *line;) {
                char *nl = strchr(line, '\n');
                if (nl)
                        *nl = 0;
                char *c1 = strchr(line, ':');
                char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
                if (c2) {
                        /* the controller list may be "cpu,cpuacct" */
                        for (char *p = c1 + 1; p < c2;) {
                                char *comma = memchr(p, ',', (size_t) (c2 - p));
                                char *end = comma ? comma : c2;
                                if ((size_t) (end - p) == clen && memcmp(p, ctrl, clen) == 0) {
                                        if ((size_t) snprintf(buf, size, "%s", c2 + 1) >= size)
                                                return -ENAMETOOLONG;
                                        return 0;
                                }
                                p = end + 1;
                        }
                }
                line = nl ? nl + 1 : NULL;
        }
        return -ENOENT;
}

int mp_cgroup_v1_setup(struct mp_error *err) {
        for (int i = 0; i < MP_CG_COUNT; i++) {
                char *buf = mp_cgroup_host.v1_parent[i], own[PATH_MAX] = "", hier[PATH_MAX];
                size_t size = sizeof(mp_cgroup_host.v1_parent[i]);
                struct stat st;

                snprintf(hier, sizeof(hier), "%s/%s/cgroup.procs", mp_cgroup_host.v1_mount, cg_ctrl[i]);
                if (stat(hier, &st) < 0)
                        return mp_error_set(err, ENOENT, 503, "sandbox", "no %s hierarchy at %s/%s", cg_ctrl[i],
                                            mp_cgroup_host.v1_mount, cg_ctrl[i]);
                /* <mount>/<ctrl>/<own>/mecapy, or <mount>/<ctrl>/mecapy when our own
                 * cgroup is not visible (a container that shows the host's hierarchy). */
                if (own_path(cg_ctrl[i], own, sizeof(own)) == 0 && strcmp(own, "/") != 0) {
                        if ((size_t) snprintf(buf, size, "%s/%s%s/mecapy", mp_cgroup_host.v1_mount, cg_ctrl[i], own) >=
                            size)
                                return mp_error_set(err, ENAMETOOLONG, 503, "sandbox", "the cgroup path is too long");
                        if (mkdir(buf, 0755) == 0 || errno == EEXIST)
                                continue;
                }
                if ((size_t) snprintf(buf, size, "%s/%s/mecapy", mp_cgroup_host.v1_mount, cg_ctrl[i]) >= size)
                        return mp_error_set(err, ENAMETOOLONG, 503, "sandbox", "the cgroup path is too long");
                if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                        return mp_error_set(err, errno, 503, "sandbox", "cannot create %s: %m", buf);
        }
        return 0;
}

static int set_limit(int i, const char *dir, const struct mp_limits *limits) {
        char v[64];
        int r = 0;

        switch (i) {
        case MP_CG_MEMORY:
                snprintf(v, sizeof(v), "%lld", (long long) limits->memory_mb << 20);
                r = mp_cg_write(dir, "memory.limit_in_bytes", v);
                /* no swap either, where swap accounting exists (else ENOENT) */
                (void) mp_cg_write(dir, "memory.memsw.limit_in_bytes", v);
                break;
        case MP_CG_PIDS:
                snprintf(v, sizeof(v), "%d", limits->max_procs);
                r = mp_cg_write(dir, "pids.max", v);
                break;
        case MP_CG_CPU:
                snprintf(v, sizeof(v), "%d", limits->cpus * 100000);
                r = mp_cg_write(dir, "cpu.cfs_period_us", "100000");
                if (r >= 0)
                        r = mp_cg_write(dir, "cpu.cfs_quota_us", v);
                break;
        }
        return r;
}

static int v1_set_limits(const struct mp_cgroup *cg, const struct mp_limits *limits, struct mp_error *err) {
        for (int i = 0; i < MP_CG_COUNT; i++) {
                int r = set_limit(i, cg->path[i], limits);
                if (r < 0)
                        return mp_cg_limit_error(err, r, cg->path[i], cg_file[i]);
        }
        return 0;
}

static int v1_destroy(struct mp_cgroup *cg) {
        int ret = 0;

        for (int i = 0; i < MP_CG_COUNT; i++) {
                if (!cg->path[i][0])
                        continue;
                if (rmdir(cg->path[i]) < 0 && errno != ENOENT) {
                        ret = -errno;
                        if (ret == -EBUSY)
                                (void) mp_cg_kill_procs(cg->path[i]);
                        continue;
                }
                cg->path[i][0] = 0;
        }
        return ret;
}

static int v1_create(const char *name, const struct mp_limits *limits, struct mp_cgroup *cg, struct mp_error *err) {
        for (int i = 0; i < MP_CG_COUNT; i++) {
                char *dir = cg->path[i];
                if ((size_t) snprintf(dir, PATH_MAX, "%s/%s", mp_cgroup_host.v1_parent[i], name) >= PATH_MAX) {
                        dir[0] = 0;
                        (void) v1_destroy(cg);
                        return mp_error_set(err, ENAMETOOLONG, 503, "sandbox", "the cgroup path is too long");
                }
                if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
                        int r = mp_error_set(err, errno, 503, "sandbox", "sandbox: cannot create its cgroup %s: %m",
                                             dir);
                        dir[0] = 0;
                        (void) v1_destroy(cg);
                        return r;
                }
                int r = set_limit(i, dir, limits);
                if (r < 0) {
                        mp_cg_limit_error(err, r, dir, cg_file[i]);
                        (void) v1_destroy(cg);
                        return r;
                }
        }
        return 0;
}

static int v1_attach(const struct mp_cgroup *cg, pid_t pid) {
        char v[32];

        snprintf(v, sizeof(v), "%d", (int) pid);
        for (int i = 0; i < MP_CG_COUNT; i++) {
                int r = mp_cg_write(cg->path[i], "cgroup.procs", v);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int64_t v1_memory_kb(const struct mp_cgroup *cg) {
        int64_t b = mp_cg_read_i64(cg->path[MP_CG_MEMORY], "memory.usage_in_bytes");
        return b < 0 ? -1 : b / 1024;
}

static int v1_reset_peak(const struct mp_cgroup *cg) {
        /* Writing 0 resets the high-water mark to the current usage, so the next
         * reading is the peak of one call, not of the instance's life. */
        return mp_cg_write(cg->path[MP_CG_MEMORY], "memory.max_usage_in_bytes", "0");
}

static void v1_usage(const struct mp_cgroup *cg, int64_t *ret_peak_kb, bool *ret_oom) {
        int64_t b = mp_cg_read_i64(cg->path[MP_CG_MEMORY], "memory.max_usage_in_bytes");
        *ret_peak_kb = b < 0 ? -1 : b / 1024;
        /* oom_control's "oom_kill N" (Linux 4.13+) is the direct evidence. */
        *ret_oom = mp_cg_read_key(cg->path[MP_CG_MEMORY], "memory.oom_control", "oom_kill") > 0;
}

static int v1_kill(const struct mp_cgroup *cg) {
        return mp_cg_kill_procs(cg->path[MP_CG_PIDS]);
}

/* cpuacct.usage (ns), where cpuacct is mounted with cpu ("cpu,cpuacct", the usual
 * layout); else unknown and the pool counts the instance's own CPU clock. */
static int64_t v1_cpu_us(const struct mp_cgroup *cg) {
        int64_t ns = mp_cg_read_i64(cg->path[MP_CG_CPU], "cpuacct.usage");
        return ns < 0 ? -1 : ns / 1000;
}

static const char *v1_procs_dir(const struct mp_cgroup *cg) {
        return cg->path[MP_CG_PIDS];
}

const struct mp_cgroup_ops mp_cgroup_v1_ops = {
        .name = "cgroup v1",
        .create = v1_create,
        .set_limits = v1_set_limits,
        .attach = v1_attach,
        .memory_kb = v1_memory_kb,
        .reset_peak = v1_reset_peak,
        .usage = v1_usage,
        .kill = v1_kill,
        .destroy = v1_destroy,
        .cpu_us = v1_cpu_us,
        .procs_dir = v1_procs_dir,
};

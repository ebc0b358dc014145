/* cgroup v1 limits per sandbox: memory (the only limit that sees tmpfs pages and every
 * thread together), pids (processes and threads), cpu quota. One cgroup per sandbox,
 * under <the executor's own cgroup>/mecapy/, so that the host's limits on us still bound
 * the sum. Where the host offers no writable controller, that limit is skipped: rlimits
 * (always applied in the child) remain the backstop. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util.h"
#include "exec/exec-internal.h"

#define CG_ROOT "/sys/fs/cgroup"

static const char *const cg_ctrl[MP_CG_COUNT] = { "memory", "pids", "cpu" };

static int write_str(const char *dir, const char *file, const char *value) {
        char path[PATH_MAX];
        _cleanup_close_ int fd = -1;

        if ((size_t) snprintf(path, sizeof(path), "%s/%s", dir, file) >= sizeof(path))
                return -ENAMETOOLONG;
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return mp_write_all(fd, value, strlen(value));
}

static int64_t read_i64(const char *dir, const char *file) {
        char path[PATH_MAX];
        _cleanup_free_ char *s = NULL;
        long v;

        if ((size_t) snprintf(path, sizeof(path), "%s/%s", dir, file) >= sizeof(path))
                return -1;
        if (mp_read_file(path, 64, &s, NULL) < 0)
                return -1;
        s[strcspn(s, "\n")] = 0;
        if (mp_parse_long(s, 0, LONG_MAX, &v) < 0)
                return -1;
        return v;
}

/* The executor's own cgroup for one controller, from /proc/self/cgroup ("4:memory:/a/b"). */
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

/* <mount>/<own>/mecapy, or <mount>/mecapy when our own cgroup is not visible (a
 * container that shows the host's hierarchy). Created on first use. */
static int parent_dir(const char *ctrl, char *buf, size_t size) {
        char own[PATH_MAX] = "";

        if (own_path(ctrl, own, sizeof(own)) == 0 && strcmp(own, "/") != 0) {
                if ((size_t) snprintf(buf, size, "%s/%s%s/mecapy", CG_ROOT, ctrl, own) >= size)
                        return -ENAMETOOLONG;
                if (mkdir(buf, 0755) == 0 || errno == EEXIST)
                        return 0;
        }
        if ((size_t) snprintf(buf, size, "%s/%s/mecapy", CG_ROOT, ctrl) >= size)
                return -ENAMETOOLONG;
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

static int set_limit(int i, const char *dir, const struct mp_limits *limits) {
        char v[64];
        int r = 0;

        switch (i) {
        case MP_CG_MEMORY:
                snprintf(v, sizeof(v), "%lld", (long long) limits->memory_mb << 20);
                r = write_str(dir, "memory.limit_in_bytes", v);
                /* no swap either, where swap accounting exists (else ENOENT) */
                (void) write_str(dir, "memory.memsw.limit_in_bytes", v);
                break;
        case MP_CG_PIDS:
                snprintf(v, sizeof(v), "%d", limits->max_procs);
                r = write_str(dir, "pids.max", v);
                break;
        case MP_CG_CPU:
                snprintf(v, sizeof(v), "%d", limits->cpus * 100000);
                r = write_str(dir, "cpu.cfs_period_us", "100000");
                if (r >= 0)
                        r = write_str(dir, "cpu.cfs_quota_us", v);
                break;
        }
        return r;
}

int mp_cgroup_create(const char *name, const struct mp_limits *limits, struct mp_cgroup *cg) {
        char parent[PATH_MAX];
        int n = 0;

        memset(cg, 0, sizeof(*cg));
        for (int i = 0; i < MP_CG_COUNT; i++) {
                char *dir = cg->path[i];
                if (parent_dir(cg_ctrl[i], parent, sizeof(parent)) < 0)
                        continue;
                if ((size_t) snprintf(dir, PATH_MAX, "%s/%s", parent, name) >= PATH_MAX ||
                    (mkdir(dir, 0755) < 0 && errno != EEXIST)) {
                        dir[0] = 0;
                        continue;
                }
                if (set_limit(i, dir, limits) < 0) {
                        rmdir(dir);
                        dir[0] = 0;
                        continue;
                }
                n++;
        }
        return n;
}

int mp_cgroup_set_limits(const struct mp_cgroup *cg, const struct mp_limits *limits) {
        for (int i = 0; i < MP_CG_COUNT; i++) {
                if (!cg->path[i][0])
                        continue;
                int r = set_limit(i, cg->path[i], limits);
                if (r < 0)
                        return r;
        }
        return 0;
}

int64_t mp_cgroup_memory_kb(const struct mp_cgroup *cg) {
        int64_t b = cg->path[MP_CG_MEMORY][0] ? read_i64(cg->path[MP_CG_MEMORY], "memory.usage_in_bytes") : -1;
        return b < 0 ? -1 : b / 1024;
}

void mp_cgroup_reset_peak(const struct mp_cgroup *cg) {
        /* cgroup v1: writing 0 resets the high-water mark to the current usage, so the
         * next reading is the peak of one call, not of the instance's life. */
        if (cg->path[MP_CG_MEMORY][0])
                (void) write_str(cg->path[MP_CG_MEMORY], "memory.max_usage_in_bytes", "0");
}

int mp_cgroup_attach(const struct mp_cgroup *cg, pid_t pid) {
        char v[32];

        snprintf(v, sizeof(v), "%d", (int) pid);
        for (int i = 0; i < MP_CG_COUNT; i++) {
                if (!cg->path[i][0])
                        continue;
                int r = write_str(cg->path[i], "cgroup.procs", v);
                if (r < 0)
                        return r;
        }
        return 0;
}

void mp_cgroup_usage(const struct mp_cgroup *cg, int64_t *ret_peak_kb, bool *ret_oom) {
        const char *mem = cg->path[MP_CG_MEMORY];
        int64_t peak = -1;
        bool oom = false;

        if (mem[0]) {
                int64_t b = read_i64(mem, "memory.max_usage_in_bytes");
                if (b >= 0)
                        peak = b / 1024;
                /* failcnt counts charges refused at the limit: the kernel reclaimed or
                 * OOM-killed. oom_control's "oom_kill N" is the direct evidence. */
                _cleanup_free_ char *s = NULL;
                char path[PATH_MAX];
                snprintf(path, sizeof(path), "%s/memory.oom_control", mem);
                if (mp_read_file(path, 4096, &s, NULL) == 0) {
                        const char *k = strstr(s, "oom_kill ");
                        if (k && k[9] != '0')
                                oom = true;
                }
        }
        *ret_peak_kb = peak;
        *ret_oom = oom;
}

int mp_cgroup_destroy(struct mp_cgroup *cg) {
        int ret = 0;

        for (int i = 0; i < MP_CG_COUNT; i++) {
                if (!cg->path[i][0])
                        continue;
                if (rmdir(cg->path[i]) < 0 && errno != ENOENT) {
                        ret = -errno;
                        continue;
                }
                cg->path[i][0] = 0;
        }
        return ret;
}

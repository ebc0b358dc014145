/* Helpers shared by the tests that start an executor (test-exec, test-pool,
 * test-sandbox): they look at it from the outside, through /proc and the cgroup
 * file systems, never through exec's internals. */
#pragma once

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"

/* Our child named "mecapy-exec" (found through /proc, not through exec's internals). */
static inline pid_t executor_pid(void) {
        DIR *d = opendir("/proc");
        struct dirent *de;
        pid_t found = -1;
        while (d && (de = readdir(d))) {
                char path[300], *s = NULL;
                snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
                if (mp_read_file(path, 4096, &s, NULL) < 0)
                        continue;
                char *rp = strrchr(s, ')');
                int ppid = 0;
                if (strstr(s, "(mecapy-exec)") && rp && sscanf(rp + 2, "%*c %d", &ppid) == 1 && ppid == getpid())
                        found = (pid_t) strtol(de->d_name, NULL, 10);
                free(s);
        }
        if (d)
                closedir(d);
        return found;
}

/* call-* and inst-* cgroups of executor pid, under any mecapy/ parent. */
static inline int exec_cgroups(pid_t pid) {
        int left = 0;
        const char *roots[] = { "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/cpu" };
        for (size_t i = 0; i < ELEMENTSOF(roots); i++) {
                char cmd[400];
                snprintf(cmd, sizeof(cmd),
                         "find %s -maxdepth 6 -type d \\( -name 'call-%d-*' -o -name 'inst-%d-*' \\) 2>/dev/null | grep -c /mecapy/",
                         roots[i], (int) pid, (int) pid);
                FILE *p = popen(cmd, "r");
                int n = 0;
                if (p && fscanf(p, "%d", &n) == 1)
                        left += n;
                if (p)
                        pclose(p);
        }
        return left;
}

/* Is pid one of ours: a descendant of this test, or an orphan (parent init) that a
 * stopped executor would have left? Other servers' zygotes on this host are neither. */
static inline bool ours_or_orphan(const char *pid) {
        char path[300], *s = NULL;
        long p = 0;
        for (int depth = 0; depth < 64; depth++) {
                snprintf(path, sizeof(path), "/proc/%s/stat", depth ? path + 280 : pid);
                if (mp_read_file(path, 4096, &s, NULL) < 0)
                        return false;
                char *rp = strrchr(s, ')');
                int ppid = 0;
                bool ok = rp && sscanf(rp + 2, "%*c %d", &ppid) == 1;
                free(s);
                s = NULL;
                if (!ok)
                        return false;
                if (ppid == getpid() || (depth == 0 && ppid == 1))
                        return true;
                if (ppid <= 1)
                        return false;
                p = ppid;
                snprintf(path + 280, 20, "%ld", p);
        }
        return false;
}

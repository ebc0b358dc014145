/* Helpers shared by the tests that start an executor (test-exec, test-pool,
 * test-sandbox): they look at it from the outside, through /proc and the cgroup
 * file systems, never through exec's internals. */
#pragma once

#include <dirent.h>
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

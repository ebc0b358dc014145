/* exec/ cgroup backends. cgroup v2 against a directory tree shaped like a delegated
 * cgroup2 subtree (the files a kernel would offer, made by the test): what is written
 * where, the kill and OOM paths, and the refusals. No v2 kernel is needed, and none was
 * used: docs/security.md says which parts were verified where. The v1 backend runs for
 * real in test-pool and test-exec (this host's hybrid hierarchy). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/util.h"
#include "check.h"
#include "exec/exec-internal.h"
#include "exec/exec.h"

static char root[PATH_MAX];

static void put(const char *rel, const char *content) {
        char path[PATH_MAX * 2];
        snprintf(path, sizeof(path), "%s/%s", root, rel);
        FILE *f = fopen(path, "w");
        if (!f) {
                fprintf(stderr, "cannot write %s: %m\n", path);
                exit(2);
        }
        fputs(content, f);
        fclose(f);
}

/* The file's content, up to its first newline ("" when absent). */
static const char *get(const char *rel) {
        static char buf[256];
        char path[PATH_MAX * 2];
        _cleanup_free_ char *s = NULL;
        snprintf(path, sizeof(path), "%s/%s", root, rel);
        buf[0] = 0;
        if (mp_read_file(path, 4096, &s, NULL) == 0)
                snprintf(buf, sizeof(buf), "%.*s", (int) strcspn(s, "\n"), s);
        return buf;
}

static void dir(const char *rel) {
        char path[PATH_MAX * 2];
        snprintf(path, sizeof(path), "%s/%s", root, rel);
        if (mkdir(path, 0755) < 0 && errno != EEXIST) {
                fprintf(stderr, "cannot mkdir %s: %m\n", path);
                exit(2);
        }
}

/* A child cgroup as the kernel makes it on mkdir (without cgroup.kill: kill_fallback). */
static void child(const char *name, bool with_kill) {
        static const char *const files[] = { "cgroup.procs", "memory.max", "memory.swap.max", "memory.oom.group",
                                             "pids.max", "cpu.max", "memory.current", "memory.peak" };
        char rel[256];
        dir(name);
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                snprintf(rel, sizeof(rel), "%s/%s", name, files[i]);
                put(rel, "");
        }
        snprintf(rel, sizeof(rel), "%s/memory.events", name);
        put(rel, "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n");
        if (with_kill) {
                snprintf(rel, sizeof(rel), "%s/cgroup.kill", name);
                put(rel, "");
        }
}

static void rm_root(void) {
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
        (void) !system(cmd);
}

/* A delegated subtree: the controllers handed down, our process in it. */
static void fake_root(const char *controllers) {
        char pid[32], rel[64];
        snprintf(root, sizeof(root), "/tmp/mecapy-test-cgroup-%d", (int) getpid());
        rm_root();
        dir("");
        put("cgroup.controllers", controllers);
        put("cgroup.subtree_control", "");
        snprintf(pid, sizeof(pid), "%d\n", (int) getpid());
        put("cgroup.procs", pid);
        dir("service");
        put("service/cgroup.procs", "");
        snprintf(rel, sizeof(rel), "probe-%d", (int) getpid());
        child(rel, true);
}

static const struct mp_limits lim = { .timeout_s = 5, .memory_mb = 300, .cpus = 2, .max_procs = 50, .tmp_mb = 16 };

TEST(v2_setup_delegates) {
        struct mp_error err = { 0 };
        char pid[32];
        fake_root("cpuset cpu io memory hugetlb pids rdma misc\n");
        CHECK_INT(mp_cgroup_setup_v2(root, &err), ==, 0);
        CHECK_STR(err.message, "");
        CHECK(mp_cgroup_host.ops == &mp_cgroup_v2_ops);
        /* The service left the root for the leaf, and the root hands the controllers down. */
        snprintf(pid, sizeof(pid), "%d", (int) getpid());
        CHECK_STR(get("service/cgroup.procs"), pid);
        CHECK_STR(get("cgroup.subtree_control"), "+memory +pids +cpu");
        /* The probe was limited like a sandbox. */
        char rel[64];
        snprintf(rel, sizeof(rel), "probe-%d/pids.max", (int) getpid());
        CHECK_STR(get(rel), "64"); /* MP_DEFAULT_MAX_PROCS */
        mp_error_clear(&err);
}

TEST(v2_create_writes_limits) {
        struct mp_error err = { 0 };
        struct mp_cgroup cg;
        fake_root("cpu memory pids\n");
        REQUIRE(mp_cgroup_setup_v2(root, &err) == 0);
        child("inst-1", true);
        REQUIRE(mp_cgroup_create("inst-1", &lim, &cg, &err) == 0);
        CHECK(cg.ops == &mp_cgroup_v2_ops);
        CHECK_STR(get("inst-1/memory.max"), "314572800");
        CHECK_STR(get("inst-1/memory.swap.max"), "0");
        CHECK_STR(get("inst-1/memory.oom.group"), "1");
        CHECK_STR(get("inst-1/pids.max"), "50");
        CHECK_STR(get("inst-1/cpu.max"), "200000 100000");
        /* Bound to a function: its own limits. */
        struct mp_limits l2 = lim;
        l2.memory_mb = 64;
        l2.cpus = 1;
        l2.max_procs = 8;
        CHECK_INT(mp_cgroup_set_limits(&cg, &l2, &err), ==, 0);
        CHECK_STR(get("inst-1/memory.max"), "67108864");
        CHECK_STR(get("inst-1/pids.max"), "8");
        CHECK_STR(get("inst-1/cpu.max"), "100000 100000");
        CHECK_INT(mp_cgroup_attach(&cg, 4243), ==, 0);
        CHECK_STR(get("inst-1/cgroup.procs"), "4243");
        put("inst-1/memory.current", "2097152\n");
        CHECK_INT(mp_cgroup_memory_kb(&cg), ==, 2048);
        /* v2 cannot reset the peak for one call: the pool measures it otherwise. */
        CHECK_INT(mp_cgroup_reset_peak(&cg), ==, -EOPNOTSUPP);
        mp_error_clear(&err);
}

TEST(v2_oom_verdict) {
        struct mp_error err = { 0 };
        struct mp_cgroup cg;
        int64_t peak;
        bool oom;
        fake_root("cpu memory pids\n");
        REQUIRE(mp_cgroup_setup_v2(root, &err) == 0);
        child("call-1", true);
        REQUIRE(mp_cgroup_create("call-1", &lim, &cg, &err) == 0);
        put("call-1/memory.peak", "314572800\n");
        /* Reclaim at the limit ("max 3", "oom 1") is not a kill. */
        put("call-1/memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\noom_group_kill 0\n");
        mp_cgroup_usage(&cg, &peak, &oom);
        CHECK_INT(peak, ==, 307200);
        CHECK(!oom);
        put("call-1/memory.events", "low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\noom_group_kill 1\n");
        mp_cgroup_usage(&cg, &peak, &oom);
        CHECK(oom);
        mp_error_clear(&err);
}

TEST(v2_kill_writes_cgroup_kill) {
        struct mp_error err = { 0 };
        struct mp_cgroup cg;
        fake_root("cpu memory pids\n");
        REQUIRE(mp_cgroup_setup_v2(root, &err) == 0);
        child("inst-2", true);
        REQUIRE(mp_cgroup_create("inst-2", &lim, &cg, &err) == 0);
        CHECK_INT(mp_cgroup_kill(&cg), ==, 0);
        CHECK_STR(get("inst-2/cgroup.kill"), "1");
        mp_error_clear(&err);
}

/* Before Linux 5.14 there is no cgroup.kill: every pid in cgroup.procs is killed. */
TEST(v2_kill_fallback) {
        struct mp_error err = { 0 };
        struct mp_cgroup cg;
        char pid[32];
        int ws = 0;
        fake_root("cpu memory pids\n");
        REQUIRE(mp_cgroup_setup_v2(root, &err) == 0);
        child("inst-3", false);
        REQUIRE(mp_cgroup_create("inst-3", &lim, &cg, &err) == 0);
        pid_t c = fork();
        REQUIRE(c >= 0);
        if (c == 0) {
                pause();
                _exit(0);
        }
        snprintf(pid, sizeof(pid), "%d\n", (int) c);
        put("inst-3/cgroup.procs", pid);
        CHECK_INT(mp_cgroup_kill(&cg), ==, 0);
        CHECK_INT(waitpid(c, &ws, 0), ==, c);
        CHECK(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
        mp_error_clear(&err);
}

/* A call's CPU, its children's included: cpu.stat's usage_usec; -1 where absent. */
TEST(v2_cpu_usage) {
        struct mp_error err = { 0 };
        struct mp_cgroup cg;
        fake_root("cpu memory pids\n");
        REQUIRE(mp_cgroup_setup_v2(root, &err) == 0);
        child("inst-4", true);
        REQUIRE(mp_cgroup_create("inst-4", &lim, &cg, &err) == 0);
        CHECK_INT(mp_cgroup_cpu_us(&cg), ==, -1);
        put("inst-4/cpu.stat", "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\n");
        CHECK_INT(mp_cgroup_cpu_us(&cg), ==, 1234567);
        struct mp_cgroup none = { 0 };
        CHECK_INT(mp_cgroup_cpu_us(&none), ==, -1);
        mp_error_clear(&err);
}

/* What a solver call left running: every process of the cgroup but the one kept, and
 * only in the kept one's pid namespace. */
TEST(v2_kill_others) {
        struct mp_error err = { 0 };
        struct mp_cgroup cg;
        struct stat ns;
        char procs[96];
        pid_t c[2];
        unsigned n = 99;
        int ws = 0;
        fake_root("cpu memory pids\n");
        REQUIRE(mp_cgroup_setup_v2(root, &err) == 0);
        child("inst-5", true);
        REQUIRE(mp_cgroup_create("inst-5", &lim, &cg, &err) == 0);
        REQUIRE(stat("/proc/self/ns/pid", &ns) == 0);
        for (int i = 0; i < 2; i++) {
                c[i] = fork();
                REQUIRE(c[i] >= 0);
                if (c[i] == 0) {
                        pause();
                        _exit(0);
                }
        }
        snprintf(procs, sizeof(procs), "%d\n%d\n%d\n", (int) getpid(), (int) c[0], (int) c[1]);
        put("inst-5/cgroup.procs", procs);
        /* Another namespace's processes are not its own: nothing is signalled. */
        CHECK_INT(mp_cgroup_kill_others(&cg, getpid(), ns.st_dev, ns.st_ino + 1, &n), ==, 0);
        CHECK_INT(n, ==, 0);
        CHECK_INT(waitpid(c[0], &ws, WNOHANG), ==, 0);
        CHECK_INT(mp_cgroup_kill_others(&cg, getpid(), ns.st_dev, ns.st_ino, &n), ==, 0);
        CHECK_INT(n, ==, 2);
        for (int i = 0; i < 2; i++) {
                CHECK_INT(waitpid(c[i], &ws, 0), ==, c[i]);
                CHECK(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
        }
        struct mp_cgroup none = { 0 };
        CHECK_INT(mp_cgroup_kill_others(&none, getpid(), ns.st_dev, ns.st_ino, &n), ==, -EOPNOTSUPP);
        mp_error_clear(&err);
}

/* A limit that cannot be written fails the sandbox, naming the file; nothing runs. */
TEST(v2_limit_write_fails_closed) {
        struct mp_error err = { 0 };
        struct mp_cgroup cg;
        fake_root("cpu memory pids\n");
        REQUIRE(mp_cgroup_setup_v2(root, &err) == 0);
        child("inst-4", true);
        char path[PATH_MAX * 2];
        snprintf(path, sizeof(path), "%s/inst-4/pids.max", root);
        unlink(path);
        CHECK_INT(mp_cgroup_create("inst-4", &lim, &cg, &err), ==, -ENOENT);
        CHECK(cg.ops == NULL);
        CHECK(strstr(err.message, "pids.max") != NULL);
        mp_error_clear(&err);
}

TEST(v2_setup_refuses_missing_controller) {
        struct mp_error err = { 0 };
        fake_root("cpu io pids\n");
        CHECK_INT(mp_cgroup_setup_v2(root, &err), <, 0);
        CHECK(strstr(err.message, "memory") != NULL);
        CHECK(mp_cgroup_host.ops == NULL);
        mp_error_clear(&err);
        /* Not a cgroup2 directory at all. */
        snprintf(root, sizeof(root), "/tmp/mecapy-test-cgroup-none-%d", (int) getpid());
        mkdir(root, 0755);
        CHECK_INT(mp_cgroup_setup_v2(root, &err), <, 0);
        CHECK(strstr(err.message, "cgroup.controllers") != NULL);
        rmdir(root);
        mp_error_clear(&err);
}

/* The service's startup: a root that cannot limit anything is refused with the cause
 * and the fix, unless unlimited sandboxes are asked for explicitly. (Last: the first
 * successful setup of a process is final.) */
TEST(setup_fails_closed) {
        struct mp_error err = { 0 };
        struct mp_cgroup cg;
        fake_root("cpu pids\n");
        CHECK_INT(mp_cgroup_setup(root, false, &err), <, 0);
        CHECK(strstr(err.message, "memory") != NULL);
        CHECK(strstr(err.message, "Delegate=yes") != NULL);
        CHECK(strstr(err.message, "--cgroup-root") != NULL);
        CHECK(strstr(err.message, "--allow-unlimited-sandbox") != NULL);
        mp_error_clear(&err);
        CHECK_INT(mp_cgroup_setup(root, true, &err), ==, 0);
        CHECK(mp_cgroup_host.ops == NULL);
        CHECK_INT(mp_cgroup_create("x", &lim, &cg, &err), ==, 0);
        CHECK(cg.ops == NULL);
        mp_error_clear(&err);
        rm_root();
}

/* The executor on a subtree where every sandbox's limits fail to be written (the
 * kernel's files of a new child are missing: the probe alone was prepared). Neither a
 * warm instance nor a cold sandbox runs; each call fails with the file named. */
TEST(executor_fails_closed) {
        struct mp_error err = { 0 };
        fake_root("cpu memory pids\n");
        REQUIRE(mp_cgroup_setup_v2(root, &err) == 0);
        struct mp_exec_config cfg = { .sandbox = true, .python = "/usr/bin/python3", .channels = 2, .preload = "" };
        struct mp_executor *ex = NULL;
        REQUIRE(mp_executor_start(&cfg, &ex, &err) == 0);
        json_t *in = json_object();
        struct mp_exec_request req = { .op = MP_EXEC_RUN, .code = "def main():\n    return 1\n", .handler = "main",
                                       .inputs = in, .limits = lim, .function_key = "f:1", .tenant = "alice" };
        struct mp_exec_result r;
        CHECK_INT(mp_executor_run(ex, &req, &r, &err), <, 0);
        CHECK(strstr(err.message, "cannot apply its limits") && strstr(err.message, "memory.max"));
        mp_error_clear(&err);
        req.function_key = NULL; /* cold */
        CHECK_INT(mp_executor_run(ex, &req, &r, &err), <, 0);
        CHECK(strstr(err.message, "cannot apply its limits") && strstr(err.message, "memory.max"));
        mp_error_clear(&err);
        json_decref(in);
        mp_executor_stop(ex);
        rm_root();
}

static const struct check_case cases[] = {
        CASE(v2_setup_delegates),
        CASE(v2_create_writes_limits),
        CASE(v2_oom_verdict),
        CASE(v2_kill_writes_cgroup_kill),
        CASE(v2_kill_fallback),
        CASE(v2_cpu_usage),
        CASE(v2_kill_others),
        CASE(v2_limit_write_fails_closed),
        CASE(v2_setup_refuses_missing_controller),
        CASE(setup_fails_closed),
        CASE(executor_fails_closed),
};

CHECK_MAIN(cases)

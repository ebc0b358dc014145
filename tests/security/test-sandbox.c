/* The sandbox under attack. Each case: the attack ends with the expected status, the
 * next normal call still works, and the host is untouched. Needs root or user
 * namespaces; run as root it also exercises the uid switch and cgroups. */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/limits.h"
#include "base/util.h"
#include "check.h"
#include "exec-fixture.h"
#include "exec/exec.h"

#define SECRET "s3cr3t-7f1d2c"

static struct mp_executor *ex;
static char host_dir[64];



static struct mp_executor *executor(void) {
        if (!ex) {
                /* Set before the executor starts: it must never reach user code. */
                setenv("MECAPY_TEST_SECRET", SECRET, 1);
                struct mp_exec_config cfg = { .sandbox = true, .python = "/usr/bin/python3", .channels = 2 };
                struct mp_error err = { 0 };
                if (mp_executor_start(&cfg, &ex, &err) < 0) {
                        fprintf(stderr, "cannot start the executor: %s\n", err.message);
                        exit(2);
                }
        }
        return ex;
}

/* Attacks run twice: in a cold one-off sandbox, then through warm function instances
 * (forked from the zygote), where the function key names the code. */
static bool warm;

static const struct mp_limits lim = { .timeout_s = 20, .memory_mb = 256, .cpus = 1, .max_procs = 32, .tmp_mb = 16 };

static int run_lim(const char *code, const char *inputs, const struct mp_limits *l, struct mp_exec_result *res) {
        json_t *in = json_loads(inputs ? inputs : "{}", 0, NULL);
        struct mp_exec_request req = { .op = MP_EXEC_RUN, .code = code, .handler = "main", .inputs = in, .limits = *l };
        struct mp_error err = { 0 };
        char fk[64];
        if (warm) {
                unsigned long h = 5381;
                for (const char *c = code; *c; c++)
                        h = h * 33 + (unsigned char) *c;
                snprintf(fk, sizeof(fk), "sec-%lx:1", h);
                req.function_key = fk;
                req.tenant = "attacker";
        }
        int r = mp_executor_run(executor(), &req, res, &err);
        if (r < 0)
                fprintf(stderr, "  run: %s\n", err.message);
        json_decref(in);
        mp_error_clear(&err);
        return r;
}

static int run(const char *code, const char *inputs, struct mp_exec_result *res) {
        return run_lim(code, inputs, &lim, res);
}

static const char *dump(json_t *j) {
        static char buf[16384];
        char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
        snprintf(buf, sizeof(buf), "%s", s ? s : "(null)");
        free(s);
        return buf;
}

static const char *etype(const struct mp_exec_result *r) {
        return json_string_value(json_object_get(r->error, "type")) ?: "";
}
static const char *elimit(const struct mp_exec_result *r) {
        return json_string_value(json_object_get(r->error, "limit")) ?: "";
}


/* Processes running as the sandbox's host uids, i.e. leftovers of a sandbox. Warm
 * instances and their zygote (named mecapy-zygote) are meant to stay while the
 * executor runs; stop_cleans_up checks that they too are gone after a stop. */
static int sandbox_procs_all(bool all) {
        int n = 0;
        DIR *d = opendir("/proc");
        struct dirent *de;
        while (d && (de = readdir(d))) {
                char path[300];
                struct stat st;
                snprintf(path, sizeof(path), "/proc/%s", de->d_name);
                if (de->d_name[0] >= '1' && de->d_name[0] <= '9' && stat(path, &st) == 0 && st.st_uid >= 100000 &&
                    st.st_uid < 165536 && ours_or_orphan(de->d_name)) {
                        char comm_path[320], *comm = NULL;
                        snprintf(comm_path, sizeof(comm_path), "%s/comm", path);
                        bool pooled = mp_read_file(comm_path, 64, &comm, NULL) == 0 && strncmp(comm, "mecapy-zygote", 13) == 0;
                        free(comm);
                        if (all || !pooled)
                                n++;
                }
        }
        if (d)
                closedir(d);
        return n;
}

static int sandbox_procs(void) {
        return sandbox_procs_all(false);
}

/* After every attack: the sandbox is gone and a normal call works. */
static void check_recovered(void) {
        struct mp_exec_result r;
        int left = 0;
        for (int k = 0; k < 100 && (left = sandbox_procs()) > 0; k++)
                usleep(10000);
        CHECK_INT(left, ==, 0);
        if (run("def main(x):\n    return x + 1\n", "{\"x\": 41}", &r) != 0) {
                CHECK_FAIL("the next normal call could not run");
                return;
        }
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        CHECK_INT(json_integer_value(r.result), ==, 42);
        mp_exec_result_clear(&r);
}

TEST(fork_bomb) {
        struct mp_exec_result r;
        REQUIRE(run("def main():\n    n = 0\n    while True:\n        __import__('o' + 's').fork()\n        n += 1\n",
                    NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_ERROR);
        CHECK_STR(etype(&r), "PermissionError");
        mp_exec_result_clear(&r);
        /* Other ways to a new process: subprocess (vfork/clone), os.posix_spawn, multiprocessing. */
        REQUIRE(run("import subprocess, os\ndef main():\n    out = []\n"
                    "    for f in (lambda: subprocess.run(['/bin/true']), lambda: os.posix_spawn('/bin/true', ['true'], {}),\n"
                    "              lambda: __import__('multiprocessing').Process(target=print).start()):\n"
                    "        try:\n            f()\n            out.append('ran')\n"
                    "        except Exception as e:\n            out.append(type(e).__name__)\n"
                    "    return out\n",
                    NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        CHECK(!strstr(dump(r.result), "ran"));
        mp_exec_result_clear(&r);
        check_recovered();
}

TEST(threads_still_work) {
        struct mp_exec_result r;
        REQUIRE(run("import threading\ndef main():\n    out = []\n"
                    "    ts = [threading.Thread(target=out.append, args=(i,)) for i in range(8)]\n"
                    "    [t.start() for t in ts]\n    [t.join() for t in ts]\n"
                    "    import numpy as np\n    a = np.ones((300, 300))\n    return [sorted(out), float((a @ a)[0, 0])]\n",
                    NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        CHECK_STR(dump(r.result), "[[0,1,2,3,4,5,6,7],300.0]");
        mp_exec_result_clear(&r);
}

TEST(memory_hog_one_block) {
        struct mp_exec_result r;
        REQUIRE(run("def main():\n    b = bytearray(4 << 30)\n    return len(b)\n", NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_LIMIT);
        CHECK_STR(elimit(&r), "memory");
        mp_exec_result_clear(&r);
        check_recovered();
}

TEST(memory_hog_touched) {
        struct mp_exec_result r;
        /* Touched pages, 16 MB at a time: the cgroup (or RLIMIT_AS) stops it at ~256 MB. */
        REQUIRE(run("def main():\n    keep = []\n    while True:\n        keep.append(b'x' * (16 << 20))\n", NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_LIMIT);
        CHECK_STR(elimit(&r), "memory");
        CHECK_INT(r.peak_memory_kb, <=, 300 * 1024);
        mp_exec_result_clear(&r);
        check_recovered();
}

TEST(infinite_loop) {
        struct mp_exec_result r;
        struct mp_limits l = lim;
        l.timeout_s = 1;
        REQUIRE(run_lim("def main():\n    while True:\n        pass\n", NULL, &l, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_TIMEOUT);
        CHECK_STR(etype(&r), "TimeLimitExceeded");
        CHECK_STR(elimit(&r), "timeout");
        CHECK_STR(json_string_value(json_object_get(r.error, "message")), "the call ran longer than its 1 s limit");
        CHECK_INT(r.wall_ms, >=, 1000);
        CHECK_INT(r.wall_ms, <, 2500);
        mp_exec_result_clear(&r);
        /* sleep is no CPU time: only the wall clock catches it */
        REQUIRE(run_lim("import time\ndef main():\n    time.sleep(100)\n", NULL, &l, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_TIMEOUT);
        mp_exec_result_clear(&r);
        check_recovered();
}

TEST(network_denied) {
        struct mp_exec_result r;
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t al = sizeof(a);
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        REQUIRE(s >= 0);
        REQUIRE(bind(s, (struct sockaddr *) &a, sizeof(a)) == 0 && listen(s, 8) == 0);
        REQUIRE(getsockname(s, (struct sockaddr *) &a, &al) == 0);
        char in[64];
        snprintf(in, sizeof(in), "{\"port\": %d}", ntohs(a.sin_port));
        REQUIRE(run("import socket\ndef main(port):\n    out = {}\n"
                    "    for name, f in (('tcp', lambda: socket.create_connection(('127.0.0.1', port), timeout=2)),\n"
                    "                    ('udp', lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)),\n"
                    "                    ('v6', lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM)),\n"
                    "                    ('netlink', lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)),\n"
                    "                    ('packet', lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))):\n"
                    "        try:\n            f()\n            out[name] = 'connected'\n"
                    "        except Exception as e:\n            out[name] = type(e).__name__\n"
                    "    return out\n",
                    in, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        CHECK_STR(dump(r.result), "{\"netlink\":\"PermissionError\",\"packet\":\"PermissionError\",\"tcp\":\"PermissionError\","
                                  "\"udp\":\"PermissionError\",\"v6\":\"PermissionError\"}");
        struct pollfd p = { .fd = s, .events = POLLIN };
        CHECK_INT(poll(&p, 1, 100), ==, 0); /* the listener saw no connection */
        close(s);
        mp_exec_result_clear(&r);
        check_recovered();
}

TEST(host_files_hidden) {
        struct mp_exec_result r;
        char path[128], in[256];
        snprintf(host_dir, sizeof(host_dir), "/tmp/mp-sec-XXXXXX");
        REQUIRE(mkdtemp(host_dir));
        chmod(host_dir, 0755);
        snprintf(path, sizeof(path), "%s/host-secret.txt", host_dir);
        FILE *f = fopen(path, "w");
        REQUIRE(f);
        fputs("HOST-SECRET-CONTENT", f);
        fclose(f);
        chmod(path, 0644);
        snprintf(in, sizeof(in), "{\"paths\": [\"/etc/shadow\", \"/root\", \"%s\", \"/etc/passwd\", \"/home\","
                                 " \"/var\", \"/sys/fs/cgroup\", \"/proc/1/root/etc/shadow\"]}",
                 path);
        REQUIRE(run("import os\ndef main(paths):\n    out = {}\n    for p in paths:\n        try:\n"
                    "            if os.path.isdir(p):\n                out[p] = 'dir:' + ','.join(os.listdir(p))\n"
                    "            else:\n                out[p] = open(p).read()\n"
                    "        except Exception as e:\n            out[p] = type(e).__name__\n    return out\n",
                    in, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        json_t *o = r.result;
        CHECK_STR(json_string_value(json_object_get(o, "/etc/shadow")), "FileNotFoundError");
        CHECK_STR(json_string_value(json_object_get(o, "/root")), "FileNotFoundError");
        CHECK_STR(json_string_value(json_object_get(o, path)), "FileNotFoundError");
        CHECK_STR(json_string_value(json_object_get(o, "/home")), "FileNotFoundError");
        CHECK_STR(json_string_value(json_object_get(o, "/var")), "FileNotFoundError");
        CHECK_STR(json_string_value(json_object_get(o, "/sys/fs/cgroup")), "FileNotFoundError");
        CHECK_STR(json_string_value(json_object_get(o, "/proc/1/root/etc/shadow")), "FileNotFoundError");
        /* the sandbox's own passwd, not the host's */
        const char *pw = json_string_value(json_object_get(o, "/etc/passwd")) ?: "";
        CHECK(strstr(pw, "user:x:1000") && !strstr(pw, "daemon"));
        CHECK(!strstr(dump(o), "HOST-SECRET"));
        mp_exec_result_clear(&r);
        unlink(path);
        rmdir(host_dir);
        check_recovered();
}

TEST(writes_outside_denied) {
        struct mp_exec_result r;
        REQUIRE(run("import os\ndef main():\n    out = {}\n"
                    "    for p in ('/usr/mp-sec-probe', '/mp-sec-probe', '/etc/mp-sec-probe', '/usr/lib/mp-sec-probe',\n"
                    "              '/dev/mp-sec-probe', '/proc/mp-sec-probe', '/tmp/ok', '/work/ok', '/work/outputs/ok'):\n"
                    "        try:\n            open(p, 'w').write('x')\n            out[p] = 'written'\n"
                    "        except Exception as e:\n            out[p] = type(e).__name__\n"
                    "    try:\n        os.chmod('/usr/bin/python3', 0o777)\n        out['chmod'] = 'done'\n"
                    "    except Exception as e:\n        out['chmod'] = type(e).__name__\n"
                    "    return out\n",
                    NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        json_t *o = r.result;
        const char *denied[] = { "/usr/mp-sec-probe", "/mp-sec-probe", "/etc/mp-sec-probe", "/usr/lib/mp-sec-probe",
                                 "/dev/mp-sec-probe", "/proc/mp-sec-probe", "chmod" };
        for (size_t i = 0; i < ELEMENTSOF(denied); i++) {
                const char *v = json_string_value(json_object_get(o, denied[i])) ?: "";
                if (strcmp(v, "written") == 0 || strcmp(v, "done") == 0)
                        CHECK_FAIL("%s was writable from the sandbox", denied[i]);
        }
        CHECK_STR(json_string_value(json_object_get(o, "/tmp/ok")), "written");
        CHECK_STR(json_string_value(json_object_get(o, "/work/ok")), "written");
        CHECK_STR(json_string_value(json_object_get(o, "/work/outputs/ok")), "written");
        struct stat st;
        CHECK(stat("/usr/mp-sec-probe", &st) < 0 && stat("/mp-sec-probe", &st) < 0 &&
              stat("/etc/mp-sec-probe", &st) < 0 && stat("/usr/lib/mp-sec-probe", &st) < 0);
        CHECK(stat("/usr/bin/python3", &st) == 0 && (st.st_mode & 0777) != 0777);
        mp_exec_result_clear(&r);
        check_recovered();
}

TEST(environment_hidden) {
        struct mp_exec_result r;
        executor();
        REQUIRE(run("import os\ndef main():\n    seen = dict(os.environ)\n    procs = {}\n"
                    "    for p in os.listdir('/proc'):\n        if p.isdigit():\n"
                    "            try:\n                procs[p] = open('/proc/%s/environ' % p, 'rb').read().decode('latin1')\n"
                    "            except Exception as e:\n                procs[p] = type(e).__name__\n"
                    "    print(seen)\n    return {'env': seen, 'procs': procs}\n",
                    NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        const char *d = dump(r.result);
        CHECK(!strstr(d, SECRET) && !strstr(d, "MECAPY_TEST_SECRET"));
        CHECK(!strstr(r.logs, SECRET));
        CHECK_STR(json_string_value(json_object_get(json_object_get(r.result, "env"), "HOME")), "/tmp");
        mp_exec_result_clear(&r);
        check_recovered();
}

TEST(print_200mb) {
        struct mp_exec_result r;
        struct mp_limits l = lim;
        l.timeout_s = 120;
        REQUIRE(run_lim("import sys\ndef main():\n    line = 'y' * (1 << 20)\n    for i in range(200):\n"
                        "        sys.stdout.write(line)\n    return 'printed'\n",
                        NULL, &l, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        CHECK_STR(json_string_value(r.result), "printed");
        CHECK_INT(r.logs_len, ==, MP_MAX_LOG_BYTES);
        CHECK(r.logs_truncated);
        printf("  200 MB of output in %lld ms\n", (long long) r.wall_ms);
        mp_exec_result_clear(&r);
        check_recovered();
}

TEST(nan_result) {
        struct mp_exec_result r;
        REQUIRE(run("def main():\n    return float('nan')\n", NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        CHECK(json_is_null(r.result));
        CHECK(strstr(r.logs, "result was NaN, returned as null"));
        mp_exec_result_clear(&r);
}

/* File locks are refused (a lock on a shared inode is a channel between tenants), in
 * a way the usual libraries live with: SQLite in memory or with nolock=1 works. */
TEST(locks_refused_sqlite_still_works) {
        struct mp_exec_result r;
        REQUIRE(run("import fcntl, os, sqlite3\ndef main():\n    out = {}\n"
                    "    m = sqlite3.connect(':memory:')\n    m.execute('create table t (x)')\n"
                    "    m.execute('insert into t values (42)')\n"
                    "    out['memory'] = m.execute('select x from t').fetchone()[0]\n"
                    "    f = sqlite3.connect('file:/tmp/x.db?nolock=1', uri=True)\n    f.execute('create table t (x)')\n"
                    "    f.execute('insert into t values (7)')\n    f.commit()\n"
                    "    out['file'] = f.execute('select x from t').fetchone()[0]\n"
                    "    fd = os.open('/tmp/lock', os.O_CREAT | os.O_RDWR)\n"
                    "    for name, op in (('flock', lambda: fcntl.flock(fd, fcntl.LOCK_EX)),\n"
                    "                     ('lockf', lambda: fcntl.lockf(fd, fcntl.LOCK_EX))):\n"
                    "        try:\n            op()\n            out[name] = 'locked'\n"
                    "        except OSError as e:\n            out[name] = os.strerror(e.errno)\n"
                    "    return out\n",
                    NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        CHECK_STR(dump(r.result), "{\"file\":7,\"flock\":\"Function not implemented\",\"lockf\":\"No locks available\","
                                  "\"memory\":42}");
        mp_exec_result_clear(&r);
}

TEST(kernel_escapes_denied) {
        struct mp_exec_result r;
        /* Through ctypes, straight to libc: the policy check at analyze time cannot
         * see these; seccomp answers. */
        REQUIRE(run("import ctypes, ctypes.util, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                    "def err(rc):\n    return 'ok' if rc == 0 else os.strerror(ctypes.get_errno())\n"
                    "def main():\n    out = {}\n"
                    "    out['ptrace_traceme'] = err(libc.ptrace(0, 0, 0, 0))\n"
                    "    out['ptrace_attach'] = err(libc.ptrace(16, 1, 0, 0))\n"
                    "    out['mount'] = err(libc.mount(b'none', b'/tmp', b'tmpfs', 0, None))\n"
                    "    out['umount'] = err(libc.umount2(b'/usr', 2))\n"
                    "    out['unshare_user'] = err(libc.unshare(0x10000000))\n"
                    "    out['unshare_ns'] = err(libc.unshare(0x00020000))\n"
                    "    out['chroot'] = err(libc.chroot(b'/tmp'))\n"
                    "    out['setns'] = err(libc.setns(os.open('/proc/self/ns/user', os.O_RDONLY), 0))\n"
                    "    out['bpf'] = err(libc.syscall(321, 0, 0, 0))\n"
                    "    out['keyctl'] = err(libc.syscall(250, 0, 0, 0))\n"
                    "    out['setuid0'] = err(libc.setuid(0))\n"
                    "    st = open('/proc/self/status').read()\n"
                    "    f = dict(l.split(':\\t', 1) for l in st.splitlines() if ':\\t' in l)\n"
                    "    out['uid'] = os.getuid()\n"
                    "    out['CapEff'] = f['CapEff'].strip()\n    out['CapBnd'] = f['CapBnd'].strip()\n"
                    "    out['NoNewPrivs'] = f['NoNewPrivs'].strip()\n    out['Seccomp'] = f['Seccomp'].strip()\n"
                    "    return out\n",
                    NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        json_t *o = r.result;
        const char *calls[] = { "ptrace_traceme", "ptrace_attach", "mount", "umount", "unshare_user", "unshare_ns",
                                "chroot", "setns", "bpf", "keyctl", "setuid0" };
        for (size_t i = 0; i < ELEMENTSOF(calls); i++) {
                const char *v = json_string_value(json_object_get(o, calls[i])) ?: "?";
                if (strcmp(v, "ok") == 0)
                        CHECK_FAIL("%s succeeded inside the sandbox", calls[i]);
        }
        CHECK_STR(json_string_value(json_object_get(o, "CapEff")), "0000000000000000");
        CHECK_STR(json_string_value(json_object_get(o, "CapBnd")), "0000000000000000");
        CHECK_STR(json_string_value(json_object_get(o, "NoNewPrivs")), "1");
        CHECK_STR(json_string_value(json_object_get(o, "Seccomp")), "2");
        if (geteuid() == 0)
                CHECK_INT(json_integer_value(json_object_get(o, "uid")), ==, 1000);
        mp_exec_result_clear(&r);
        check_recovered();
}

TEST(processes_invisible_and_unkillable) {
        struct mp_exec_result r;
        char in[64];
        snprintf(in, sizeof(in), "{\"host_pid\": %d}", (int) getpid());
        REQUIRE(run("import os, signal\ndef main(host_pid):\n    out = {}\n"
                    "    out['pids'] = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
                    "    out['ppid'] = os.getppid()\n    out['pid'] = os.getpid()\n"
                    "    for name, pid in (('host', host_pid), ('all', -1)):\n"
                    "        try:\n            os.kill(pid, signal.SIGKILL)\n            out[name] = 'sent'\n"
                    "        except Exception as e:\n            out[name] = type(e).__name__\n"
                    "    out['hostname'] = os.uname().nodename\n"
                    "    return out\n",
                    in, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        json_t *o = r.result;
        CHECK_STR(dump(json_object_get(o, "pids")), "[1]");
        CHECK_INT(json_integer_value(json_object_get(o, "pid")), ==, 1);
        CHECK_INT(json_integer_value(json_object_get(o, "ppid")), ==, 0);
        CHECK_STR(json_string_value(json_object_get(o, "host")), "ProcessLookupError");
        CHECK_STR(json_string_value(json_object_get(o, "hostname")), "mecapy");
        mp_exec_result_clear(&r);
        check_recovered(); /* we (and the executor) are alive to check */
}

TEST(oversized_result) {
        struct mp_exec_result r;
        struct mp_limits l = lim;
        l.memory_mb = 1024;
        REQUIRE(run_lim("def main():\n    return 'z' * (17 << 20)\n", NULL, &l, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_LIMIT);
        CHECK_STR(elimit(&r), "result_size");
        mp_exec_result_clear(&r);
        REQUIRE(run_lim("def main():\n    for i in range(70):\n        open('outputs/f%d' % i, 'w').write('x')\n",
                        NULL, &l, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_LIMIT);
        CHECK_STR(elimit(&r), "artifacts");
        mp_exec_result_clear(&r);
        check_recovered();
}

TEST(forged_reply_rejected) {
        struct mp_exec_result r;
        /* User code owns the guest's process: it can write its own frame on fd 3. The
         * executor must not take a bad one at its word. */
        REQUIRE(run("import os, struct, json\ndef main():\n"
                    "    d = json.dumps({'status': 'ok', 'result': 1, 'artifacts': [{'name': '../../etc/x', 'data': 'eA=='}]}).encode()\n"
                    "    os.write(3, struct.pack('<I', len(d)) + d)\n    os._exit(0)\n",
                    NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_CRASH);
        CHECK_INT(r.n_artifacts, ==, 0);
        mp_exec_result_clear(&r);
        REQUIRE(run("import os, struct\ndef main():\n    os.write(3, struct.pack('<I', 0xffffffff))\n    import time\n"
                    "    time.sleep(5)\n",
                    NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_LIMIT);
        CHECK_STR(elimit(&r), "result_size");
        CHECK_INT(r.wall_ms, <, 3000);
        mp_exec_result_clear(&r);
        check_recovered();
}

TEST(crash_named) {
        struct mp_exec_result r;
        REQUIRE(run("import ctypes\ndef main():\n    ctypes.string_at(0)\n", NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_CRASH);
        CHECK(strstr(json_string_value(json_object_get(r.error, "message")) ?: "", "SIGSEGV"));
        mp_exec_result_clear(&r);
        check_recovered();
}

TEST(stop_cleans_up) {
        executor();
        pid_t pid = executor_pid();
        REQUIRE(pid > 0);
        mp_executor_stop(ex);
        ex = NULL;
        CHECK_INT(sandbox_procs_all(true), ==, 0);
        CHECK_INT(exec_cgroups(pid), ==, 0); /* no cgroup of ours left behind */
}

/* One tenant's state (module globals, /tmp, /work) never reaches another tenant's
 * call of the same function. */
TEST(tenants_isolated) {
        struct mp_exec_result r;
        const char *code = "import os\nseen = []\ndef main(who):\n    seen.append(who)\n"
                           "    open('/tmp/' + who, 'w').write(who)\n    open('/work/' + who, 'w').write(who)\n"
                           "    return {'seen': seen, 'tmp': sorted(os.listdir('/tmp')), 'work': sorted(os.listdir('/work'))}\n";
        json_t *in = json_pack("{s:s}", "who", "alice");
        struct mp_exec_request req = { .op = MP_EXEC_RUN, .code = code, .handler = "main", .inputs = in, .limits = lim,
                                       .function_key = "shared:1", .tenant = "alice" };
        struct mp_error err = { 0 };
        REQUIRE(mp_executor_run(executor(), &req, &r, &err) == 0);
        mp_exec_result_clear(&r);
        json_object_set_new(in, "who", json_string("bob"));
        req.tenant = "bob";
        REQUIRE(mp_executor_run(executor(), &req, &r, &err) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        /* /tmp/matplotlib: the instance's own MPLCONFIGDIR, made with the instance. */
        CHECK_STR(dump(r.result), "{\"seen\":[\"bob\"],\"tmp\":[\"bob\",\"matplotlib\"],\"work\":[\"bob\",\"outputs\"]}");
        mp_exec_result_clear(&r);
        json_decref(in);
}

/* Two tenants' warm instances of the same public function (the author's code runs in
 * both: a public function's author trying to receive what callers send). Alice's
 * instance plants a rendezvous on every channel two processes of one uid could share;
 * Bob's instance, alive at the same time, tries each. Abstract AF_UNIX sockets and
 * /proc/net: one network namespace per instance (and seccomp: no bind/connect/listen,
 * no sendto with an address; Landlock scope where the kernel has ABI 6). Locks on
 * shared inodes (/usr files, /dev/null): flock and fcntl record locks refused. inotify
 * and dnotify on shared files: refused. POSIX queues (bytes charged per uid, shared):
 * refused. SysV IPC: one ipc namespace per instance. /dev/shm: none, and the root is
 * read-only. Signals and /proc: one pid namespace per instance. */
static const char xt_code[] =
        "import ctypes, errno, fcntl, os, socket, struct\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "SHARED = os.__file__\n"
        "keep = {}\n"
        "def err(f):\n"
        "    try:\n"
        "        f()\n"
        "        return 'ok'\n"
        "    except OSError as e:\n"
        "        return errno.errorcode.get(e.errno, str(e.errno))\n"
        "def cerr(rc):\n"
        "    return 'ok' if rc >= 0 else errno.errorcode.get(ctypes.get_errno(), '?')\n"
        "def ofd_lock(fd, kind):\n"
        "    return fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack('@hhqqi', kind, 0, 0, 0, 0) + bytes(8))\n"
        "def getlk(fd):\n"
        "    r = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack('@hhqqi', fcntl.F_WRLCK, 0, 0, 0, 0) + bytes(8))\n"
        "    if struct.unpack('@h', r[:2])[0] != fcntl.F_UNLCK:\n"
        "        raise OSError(errno.EBUSY, 'a lock is there')\n"
        "def main(step, name=''):\n"
        "    out = {}\n"
        "    if step == 'plant':\n"
        "        os.environ['MP_XT_MARK'] = 'alice-mark-77'\n"
        "        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "        out['bind'] = err(lambda: s.bind('\\0mecapy-xt'))\n"
        "        s2 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
        "        out['listen'] = err(lambda: s2.listen(1))\n"
        "        a = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "        a.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)\n"
        "        a.setblocking(False)\n"
        "        err(lambda: a.sendmsg([b'x'], [], 0, '\\0mecapy-nowhere'))\n"
        "        keep['a'] = a\n"
        "        out['name'] = a.getsockname().hex() if isinstance(a.getsockname(), bytes) else ''\n"
        "        out['msgget'] = cerr(libc.msgget(0x4d50, 0o1666))\n"
        "        out['shm'] = err(lambda: open('/dev/shm/mp-xt', 'w').write('x'))\n"
        "        out['pid'] = os.getpid()\n"
        /* locks on a shared read-only file and on the host's /dev/null */
        "        keep['f'] = f = os.open(SHARED, os.O_RDONLY)\n"
        "        keep['n'] = n = os.open('/dev/null', os.O_WRONLY)\n"
        "        keep['o'] = o = os.open('/dev/null', os.O_WRONLY)\n"
        "        out['flock'] = err(lambda: fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB))\n"
        "        out['rdlock'] = err(lambda: fcntl.lockf(f, fcntl.LOCK_SH | fcntl.LOCK_NB))\n"
        "        out['wrlock'] = err(lambda: fcntl.lockf(n, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0))\n"
        "        out['ofd'] = err(lambda: ofd_lock(o, fcntl.F_WRLCK))\n"
        "        d = os.open(os.path.dirname(SHARED), os.O_RDONLY)\n"
        "        out['dnotify'] = err(lambda: fcntl.fcntl(d, fcntl.F_NOTIFY, fcntl.DN_ACCESS | fcntl.DN_MULTISHOT))\n"
        "        ino = libc.inotify_init1(os.O_NONBLOCK)\n"
        "        out['inotify'] = cerr(ino)\n"
        "        if ino >= 0:\n"
        "            keep['ino'] = ino\n"
        "            libc.inotify_add_watch(ino, SHARED.encode(), 0x20 | 0x1)\n"
        /* inotify instances are charged up to host root: count how many one call gets
         * (bounded, and all closed at once) */
        "        made = []\n"
        "        for i in range(200):\n"
        "            fd = libc.inotify_init1(0)\n"
        "            if fd < 0:\n"
        "                break\n"
        "            made.append(fd)\n"
        "        out['inotify_made'] = len(made)\n"
        "        for fd in made:\n"
        "            os.close(fd)\n"
        "        libc.mq_open.restype = ctypes.c_int\n"
        "        out['mq_open'] = cerr(libc.mq_open(b'/mp-xt', os.O_CREAT | os.O_RDWR, 0o600, None))\n"
        "        return out\n"
        "    if step == 'probe':\n"
        "        d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "        target = bytes.fromhex(name) if name else b'\\0mecapy-nowhere'\n"
        "        out['sendmsg'] = err(lambda: d.sendmsg([b'hi'], [], 0, target))\n"
        "        out['sendto'] = err(lambda: d.sendto(b'hi', target))\n"
        "        out['connect'] = err(lambda: d.connect('\\0mecapy-xt'))\n"
        "        listing = open('/proc/net/unix').read()\n"
        "        out['listed'] = bool(name) and ('@' + target[1:].decode('latin-1')) in listing\n"
        "        out['msgget'] = cerr(libc.msgget(0x4d50, 0))\n"
        "        out['shm'] = os.path.exists('/dev/shm/mp-xt')\n"
        "        f = os.open(SHARED, os.O_RDONLY)\n"
        "        n = os.open('/dev/null', os.O_WRONLY)\n"
        "        out['flock'] = err(lambda: fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB))\n"
        "        out['getlk'] = err(lambda: getlk(f))\n"
        "        out['wrlock'] = err(lambda: fcntl.lockf(n, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0))\n"
        "        out['ofd'] = err(lambda: ofd_lock(n, fcntl.F_WRLCK))\n"
        "        os.close(os.open(SHARED, os.O_RDONLY))\n"
        "        own = set(int(t) for t in os.listdir('/proc/self/task'))  # its own threads answer kill()\n"
        "        out['signals'] = sum(1 for p in range(2, 4096) if p not in own and err(lambda: os.kill(p, 0)) != 'ESRCH')\n"
        "        out['pids'] = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
        "        seen = ''\n"
        "        for p in out['pids']:\n"
        "            for f in ('environ', 'cmdline'):\n"
        "                try:\n"
        "                    seen += open('/proc/%d/%s' % (p, f), 'rb').read().decode('latin-1')\n"
        "                except OSError:\n"
        "                    pass\n"
        "        out['mark_seen'] = 'alice-mark-77' in seen\n"
        "        return out\n"
        "    a = keep['a']\n"
        "    out['received'] = err(lambda: a.recv(64))\n"
        "    out['watched'] = err(lambda: os.read(keep['ino'], 4096)) if 'ino' in keep else 'none'\n"
        "    return out\n";

static json_t *xt_call(const char *tenant, const char *step, const char *name, struct mp_exec_result *r) {
        json_t *in = json_pack("{s:s,s:s}", "step", step, "name", name ? name : "");
        struct mp_exec_request req = { .op = MP_EXEC_RUN, .code = xt_code, .handler = "main", .inputs = in,
                                       .limits = lim, .function_key = "public-xt:1", .tenant = tenant };
        struct mp_error err = { 0 };
        int rc = mp_executor_run(executor(), &req, r, &err);
        json_decref(in);
        mp_error_clear(&err);
        if (rc < 0 || r->status != MP_EXEC_OK) {
                if (rc == 0) {
                        fprintf(stderr, "  %s/%s: %s %s\n", tenant, step, dump(r->error), r->logs ? r->logs : "");
                        mp_exec_result_clear(r);
                }
                return NULL;
        }
        return r->result;
}

#define XT_STR(o, k, v) CHECK_STR(json_string_value(json_object_get(o, k)) ?: "(none)", v)

static void cross_tenant(void) {
        struct mp_exec_result ra, rb, rc;
        json_t *a = xt_call("alice", "plant", NULL, &ra);
        REQUIRE(a);
        XT_STR(a, "bind", "EPERM");
        XT_STR(a, "listen", "EPERM");
        XT_STR(a, "shm", "ENOENT");
        XT_STR(a, "msgget", "ok"); /* her own ipc namespace */
        XT_STR(a, "flock", "ENOSYS");
        XT_STR(a, "rdlock", "ENOLCK");
        XT_STR(a, "wrlock", "ENOLCK");
        XT_STR(a, "ofd", "ENOLCK");
        XT_STR(a, "dnotify", "ENOLCK");
        XT_STR(a, "inotify", "EPERM");
        CHECK_INT(json_integer_value(json_object_get(a, "inotify_made")), ==, 0);
        XT_STR(a, "mq_open", "EPERM");
        const char *name = json_string_value(json_object_get(a, "name")) ?: "";
        CHECK(name[0]); /* the autobind worked: Bob has a real name to try */
        json_t *b = xt_call("bob", "probe", name, &rb);
        if (!b) {
                mp_exec_result_clear(&ra);
                REQUIRE(b);
        }
        XT_STR(b, "sendto", "EPERM");
        XT_STR(b, "connect", "EPERM");
        /* Alice's name is not in Bob's network namespace: nobody there (and Landlock
         * refuses with EPERM first where the kernel has the scope). */
        const char *sm = json_string_value(json_object_get(b, "sendmsg")) ?: "?";
        if (strcmp(sm, "ECONNREFUSED") != 0 && strcmp(sm, "EPERM") != 0)
                CHECK_FAIL("sendmsg to Alice's autobound name from Bob's instance gave %s", sm);
        CHECK(json_is_false(json_object_get(b, "listed")));
        XT_STR(b, "msgget", "ENOENT");
        CHECK(json_is_false(json_object_get(b, "shm")));
        XT_STR(b, "flock", "ENOSYS");
        XT_STR(b, "getlk", "ENOLCK");
        XT_STR(b, "wrlock", "ENOLCK");
        XT_STR(b, "ofd", "ENOLCK");
        CHECK_INT(json_integer_value(json_object_get(b, "signals")), ==, 0);
        CHECK_STR(dump(json_object_get(b, "pids")), "[1]");
        CHECK(json_is_false(json_object_get(b, "mark_seen")));
        /* Alice's socket got nothing, and she is still the same warm instance. */
        json_t *c = xt_call("alice", "check", NULL, &rc);
        if (c) {
                XT_STR(c, "received", "EAGAIN");
                XT_STR(c, "watched", "none");
                mp_exec_result_clear(&rc);
        } else {
                CHECK_FAIL("alice's second call failed");
        }
        mp_exec_result_clear(&ra);
        mp_exec_result_clear(&rb);
        check_recovered();
}

TEST(cross_tenant_channels) {
        cross_tenant();
}

/* The same, as on a kernel without the Landlock scope (Debian 12's 6.1): the test
 * switch makes the executor's zygotes skip it, so what is checked is that the other
 * layers alone close every channel. */
TEST(cross_tenant_channels_without_landlock) {
        mp_executor_stop(ex);
        ex = NULL;
        setenv("MECAPY_TEST_NO_LANDLOCK_SCOPE", "1", 1);
        cross_tenant();
        mp_executor_stop(ex);
        ex = NULL;
        unsetenv("MECAPY_TEST_NO_LANDLOCK_SCOPE");
}

#define WARM(fn)                                \
        static void fn##_warm(void) {           \
                warm = true;                    \
                fn();                           \
                warm = false;                   \
        }
WARM(environment_hidden)
WARM(fork_bomb)
WARM(threads_still_work)
WARM(memory_hog_one_block)
WARM(memory_hog_touched)
WARM(infinite_loop)
WARM(network_denied)
WARM(host_files_hidden)
WARM(writes_outside_denied)
WARM(print_200mb)
WARM(nan_result)
WARM(kernel_escapes_denied)
WARM(locks_refused_sqlite_still_works)
WARM(processes_invisible_and_unkillable)
WARM(oversized_result)
WARM(forged_reply_rejected)
WARM(crash_named)

static const struct check_case cases[] = {
        CASE(environment_hidden),
        CASE(fork_bomb),
        CASE(threads_still_work),
        CASE(memory_hog_one_block),
        CASE(memory_hog_touched),
        CASE(infinite_loop),
        CASE(network_denied),
        CASE(host_files_hidden),
        CASE(writes_outside_denied),
        CASE(print_200mb),
        CASE(nan_result),
        CASE(kernel_escapes_denied),
        CASE(locks_refused_sqlite_still_works),
        CASE(processes_invisible_and_unkillable),
        CASE(oversized_result),
        CASE(forged_reply_rejected),
        CASE(crash_named),
        CASE(environment_hidden_warm),
        CASE(fork_bomb_warm),
        CASE(threads_still_work_warm),
        CASE(memory_hog_one_block_warm),
        CASE(memory_hog_touched_warm),
        CASE(infinite_loop_warm),
        CASE(network_denied_warm),
        CASE(host_files_hidden_warm),
        CASE(writes_outside_denied_warm),
        CASE(print_200mb_warm),
        CASE(nan_result_warm),
        CASE(kernel_escapes_denied_warm),
        CASE(locks_refused_sqlite_still_works_warm),
        CASE(processes_invisible_and_unkillable_warm),
        CASE(oversized_result_warm),
        CASE(forged_reply_rejected_warm),
        CASE(crash_named_warm),
        CASE(tenants_isolated),
        CASE(cross_tenant_channels),
        CASE(cross_tenant_channels_without_landlock),
        CASE(stop_cleans_up),
};

CHECK_MAIN(cases)

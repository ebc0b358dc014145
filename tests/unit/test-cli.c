/* Unit tests of the command-line client's pure parts: typing of key=value operands,
 * the config file's path rules and mode, option parsing, and the exit codes of
 * usage, authentication and connection errors (no server needed). */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "cli/cli-internal.h"
#include "cli/cli.h"

static char tmpdir[256];

static void make_tmpdir(void) {
        const char *base = getenv("TMPDIR");
        snprintf(tmpdir, sizeof(tmpdir), "%s/mecapy-test-cli-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(tmpdir))
                tmpdir[0] = 0;
}

/* Run mp_cli_main with its stdout and stderr sent to /dev/null; returns the exit code. */
static int run_quiet(int argc, char **argv) {
        int out = dup(STDOUT_FILENO), err = dup(STDERR_FILENO);
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        int code;

        fflush(stdout);
        fflush(stderr);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        code = mp_cli_main(argv[0], argc, argv);
        fflush(stdout);
        fflush(stderr);
        dup2(out, STDOUT_FILENO);
        dup2(err, STDERR_FILENO);
        close(out);
        close(err);
        close(null);
        return code;
}

#define RUN(...)                                                                        \
        ({                                                                              \
                char *_argv[] = { __VA_ARGS__, NULL };                                  \
                run_quiet((int) ELEMENTSOF(_argv) - 1, _argv);                          \
        })

TEST(value_typing) {
        json_t *v;

        v = mp_cli_value_typed("2.5");
        CHECK(json_is_real(v) && json_real_value(v) == 2.5);
        json_decref(v);
        v = mp_cli_value_typed("3");
        CHECK(json_is_integer(v) && json_integer_value(v) == 3);
        json_decref(v);
        v = mp_cli_value_typed("-7");
        CHECK(json_is_integer(v) && json_integer_value(v) == -7);
        json_decref(v);
        v = mp_cli_value_typed("true");
        CHECK(json_is_true(v));
        json_decref(v);
        v = mp_cli_value_typed("false");
        CHECK(json_is_false(v));
        json_decref(v);
        v = mp_cli_value_typed("null");
        CHECK(json_is_null(v));
        json_decref(v);
        v = mp_cli_value_typed("[1, 2]");
        CHECK(json_is_array(v) && json_array_size(v) == 2);
        json_decref(v);
        v = mp_cli_value_typed("{\"E\": 210e9}");
        CHECK(json_is_object(v) && json_is_real(json_object_get(v, "E")));
        json_decref(v);
        v = mp_cli_value_typed("steel");
        CHECK_STR(json_string_value(v), "steel");
        json_decref(v);
        v = mp_cli_value_typed("\"3\"");
        CHECK_STR(json_string_value(v), "3");
        json_decref(v);
        v = mp_cli_value_typed("");
        CHECK_STR(json_string_value(v), "");
        json_decref(v);
        /* Python spellings are not JSON: they stay text. */
        v = mp_cli_value_typed("True");
        CHECK_STR(json_string_value(v), "True");
        json_decref(v);
        v = mp_cli_value_typed("[1, 2");
        CHECK_STR(json_string_value(v), "[1, 2");
        json_decref(v);
}

TEST(assignments) {
        _cleanup_error_ struct mp_error err = { 0 };
        char *key = NULL;
        json_t *v = NULL;

        REQUIRE(mp_cli_parse_assignment("L=2.5", &key, &v, &err) == 0);
        CHECK_STR(key, "L");
        CHECK(json_is_real(v) && json_real_value(v) == 2.5);
        free(key), json_decref(v);

        REQUIRE(mp_cli_parse_assignment("n:=3", &key, &v, &err) == 0);
        CHECK_STR(key, "n");
        CHECK(json_is_integer(v) && json_integer_value(v) == 3);
        free(key), json_decref(v);

        REQUIRE(mp_cli_parse_assignment("id==42", &key, &v, &err) == 0);
        CHECK_STR(key, "id");
        CHECK_STR(json_string_value(v), "42");
        free(key), json_decref(v);

        REQUIRE(mp_cli_parse_assignment("expr=a=b", &key, &v, &err) == 0);
        CHECK_STR(key, "expr");
        CHECK_STR(json_string_value(v), "a=b");
        free(key), json_decref(v);

        REQUIRE(mp_cli_parse_assignment("url=http://x/?a=1", &key, &v, &err) == 0);
        CHECK_STR(key, "url");
        CHECK_STR(json_string_value(v), "http://x/?a=1");
        free(key), json_decref(v);

        REQUIRE(mp_cli_parse_assignment("empty=", &key, &v, &err) == 0);
        CHECK_STR(json_string_value(v), "");
        free(key), json_decref(v);

        key = NULL;
        v = NULL;
        CHECK_INT(mp_cli_parse_assignment("xs:=[1,", &key, &v, &err), ==, -EINVAL);
        CHECK(strstr(err.message, "not valid JSON"));
        CHECK_INT(mp_cli_parse_assignment("noequals", &key, &v, &err), ==, -EINVAL);
        CHECK(strstr(err.message, "key=value"));
        CHECK_INT(mp_cli_parse_assignment("=3", &key, &v, &err), ==, -EINVAL);
        CHECK_INT(mp_cli_parse_assignment(":=3", &key, &v, &err), ==, -EINVAL);
        CHECK_INT(mp_cli_parse_assignment("==x", &key, &v, &err), ==, -EINVAL);
        CHECK(!key && !v);
}

TEST(config_path_rules) {
        char *p = NULL;

        REQUIRE(mp_cli_config_path_from("/c", "/x", "/h", &p) == 0);
        CHECK_STR(p, "/c/mecapy/config.json");
        free(p);
        REQUIRE(mp_cli_config_path_from(NULL, "/x", "/h", &p) == 0);
        CHECK_STR(p, "/x/mecapy/config.json");
        free(p);
        REQUIRE(mp_cli_config_path_from("", "", "/h", &p) == 0);
        CHECK_STR(p, "/h/.config/mecapy/config.json");
        free(p);
        p = NULL;
        CHECK_INT(mp_cli_config_path_from(NULL, NULL, NULL, &p), ==, -ENOENT);
        CHECK_INT(mp_cli_config_path_from("", "", "", &p), ==, -ENOENT);
        CHECK(p == NULL);

        /* The same rules from the environment. */
        setenv("MECAPY_CONFIG_DIR", "/cfg", 1);
        setenv("XDG_CONFIG_HOME", "/xdg", 1);
        REQUIRE(mp_cli_config_path(&p) == 0);
        CHECK_STR(p, "/cfg/mecapy/config.json");
        free(p);
        unsetenv("MECAPY_CONFIG_DIR");
        REQUIRE(mp_cli_config_path(&p) == 0);
        CHECK_STR(p, "/xdg/mecapy/config.json");
        free(p);
        unsetenv("XDG_CONFIG_HOME");
        setenv("HOME", "/home/u", 1);
        REQUIRE(mp_cli_config_path(&p) == 0);
        CHECK_STR(p, "/home/u/.config/mecapy/config.json");
        free(p);
}

TEST(config_written_0600) {
        char path[512], dir[512];
        char *url = NULL, *token = NULL;
        struct stat st;
        mode_t old;

        REQUIRE(tmpdir[0]);
        snprintf(dir, sizeof(dir), "%s/cfg/mecapy", tmpdir);
        snprintf(path, sizeof(path), "%s/config.json", dir);
        /* A permissive umask must not leak the token to other users. */
        old = umask(0);
        REQUIRE(mp_cli_config_write(path, "http://h:1", "tok-1") == 0);
        umask(old);
        REQUIRE(stat(path, &st) == 0);
        CHECK_INT(st.st_mode & 07777, ==, 0600);
        REQUIRE(stat(dir, &st) == 0);
        CHECK_INT(st.st_mode & 07777, ==, 0700);
        REQUIRE(mp_cli_config_read(path, &url, &token) == 0);
        CHECK_STR(url, "http://h:1");
        CHECK_STR(token, "tok-1");
        free(url), free(token);

        /* Rewriting a file someone made world-readable gives a 0600 file again. */
        REQUIRE(chmod(path, 0644) == 0);
        REQUIRE(mp_cli_config_write(path, "http://h:2", "tok-2") == 0);
        REQUIRE(stat(path, &st) == 0);
        CHECK_INT(st.st_mode & 07777, ==, 0600);
        REQUIRE(mp_cli_config_read(path, &url, &token) == 0);
        CHECK_STR(token, "tok-2");
        free(url), free(token);

        /* A broken file is reported, not trusted. */
        int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        REQUIRE(fd >= 0);
        CHECK(write(fd, "[1]", 3) == 3);
        close(fd);
        CHECK_INT(mp_cli_config_read(path, &url, &token), ==, -EINVAL);
        unlink(path);
        CHECK_INT(mp_cli_config_read(path, &url, &token), ==, -ENOENT);
}

TEST(url_normalize) {
        char a[] = "http://127.0.0.1:8000/", b[] = "https://x.example//", c[] = "ftp://x",
             d[] = "http://x/?q=1", e[] = "127.0.0.1:8000";

        CHECK_INT(mp_cli_url_normalize(a), ==, 0);
        CHECK_STR(a, "http://127.0.0.1:8000");
        CHECK_INT(mp_cli_url_normalize(b), ==, 0);
        CHECK_STR(b, "https://x.example");
        CHECK_INT(mp_cli_url_normalize(c), ==, -EINVAL);
        CHECK_INT(mp_cli_url_normalize(d), ==, -EINVAL);
        CHECK_INT(mp_cli_url_normalize(e), ==, -EINVAL);
}

TEST(option_parsing) {
        const char *json_file = NULL, *version = NULL;
        bool json = false, no_wait = false;
        const struct mp_cli_opt opts[] = {
                { "json", 0, MP_CLI_OPT_OPTIONAL, &json_file, &json },
                { "version", 0, MP_CLI_OPT_VALUE, &version, NULL },
                { "no-wait", 0, MP_CLI_OPT_FLAG, &no_wait, NULL },
        };
        char *pos[16];
        int n;

        {
                char *argv[] = { "run", "beam", "F=1", "--version", "2", "--no-wait", "L=2", NULL };
                REQUIRE(mp_cli_parse_args("run", 7, argv, 1, opts, 3, pos, &n) == 0);
                CHECK_INT(n, ==, 3);
                CHECK_STR(pos[0], "beam");
                CHECK_STR(pos[2], "L=2");
                CHECK_STR(version, "2");
                CHECK(no_wait);
                CHECK(!json && !json_file);
        }
        {
                /* --json FILE reads inputs; --json before key=value or at the end is the
                 * output flag; --json=FILE is explicit. */
                char *argv[] = { "run", "beam", "--json", "in.json", "--json", "F=1", NULL };
                json = false;
                REQUIRE(mp_cli_parse_args("run", 6, argv, 1, opts, 3, pos, &n) == 0);
                CHECK_STR(json_file, "in.json");
                CHECK(json);
                CHECK_INT(n, ==, 2);
        }
        {
                char *argv[] = { "run", "beam", "--json=-", "--version=3", NULL };
                json = false;
                json_file = NULL;
                REQUIRE(mp_cli_parse_args("run", 4, argv, 1, opts, 3, pos, &n) == 0);
                CHECK_STR(json_file, "-");
                CHECK_STR(version, "3");
                CHECK(!json);
        }
        {
                char *argv[] = { "run", "beam", "--json", "-", NULL };
                json_file = NULL;
                REQUIRE(mp_cli_parse_args("run", 4, argv, 1, opts, 3, pos, &n) == 0);
                CHECK_STR(json_file, "-");
        }
        {
                char *argv[] = { "run", "beam", "--", "--weird=1", NULL };
                REQUIRE(mp_cli_parse_args("run", 4, argv, 1, opts, 3, pos, &n) == 0);
                CHECK_INT(n, ==, 2);
                CHECK_STR(pos[1], "--weird=1");
        }
        {
                char *argv[] = { "run", "beam", "--bogus", NULL };
                char *argv2[] = { "run", "beam", "--version", NULL };
                char *argv3[] = { "run", "--no-wait=1", NULL };
                int saved = dup(STDERR_FILENO), null = open("/dev/null", O_WRONLY);
                dup2(null, STDERR_FILENO);
                CHECK_INT(mp_cli_parse_args("run", 3, argv, 1, opts, 3, pos, &n), ==, -EINVAL);
                CHECK_INT(mp_cli_parse_args("run", 3, argv2, 1, opts, 3, pos, &n), ==, -EINVAL);
                CHECK_INT(mp_cli_parse_args("run", 2, argv3, 1, opts, 3, pos, &n), ==, -EINVAL);
                dup2(saved, STDERR_FILENO);
                close(saved);
                close(null);
        }
}

/* Usage errors exit 2 before any network or token is needed. */
TEST(usage_errors_exit_2) {
        unsetenv("MECAPY_TOKEN");
        unsetenv("MECAPY_URL");
        setenv("MECAPY_CONFIG_DIR", tmpdir, 1);

        CHECK_INT(RUN("run"), ==, 2);
        CHECK_INT(RUN("run", "beam", "notanassignment"), ==, 2);
        CHECK_INT(RUN("run", "beam", "xs:=[1,"), ==, 2);
        CHECK_INT(RUN("run", "beam", "--json", "/nonexistent/in.json"), ==, 2);
        CHECK_INT(RUN("run", "beam", "--version", "zero"), ==, 2);
        CHECK_INT(RUN("run", "beam", "--timeout", "-1"), ==, 2);
        CHECK_INT(RUN("run", "beam", "--frobnicate"), ==, 2);
        CHECK_INT(RUN("run", "beam", "--json", "a.json", "--inputs", "b.json"), ==, 2);
        CHECK_INT(RUN("fn"), ==, 2);
        CHECK_INT(RUN("fn", "frob"), ==, 2);
        CHECK_INT(RUN("fn", "push"), ==, 2);
        CHECK_INT(RUN("fn", "show"), ==, 2);
        CHECK_INT(RUN("fn", "rm", "a", "b"), ==, 2);
        CHECK_INT(RUN("fn", "push", "x.py", "--public", "--private"), ==, 2);
        CHECK_INT(RUN("fn", "ls", "--name", "x"), ==, 2);
        CHECK_INT(RUN("task"), ==, 2);
        CHECK_INT(RUN("task", "get"), ==, 2);
        CHECK_INT(RUN("task", "get", "not-an-id"), ==, 2);
        CHECK_INT(RUN("task", "ls", "--status", "done"), ==, 2);
        CHECK_INT(RUN("task", "ls", "--limit", "0"), ==, 2);
        CHECK_INT(RUN("task", "ls", "--limit", "201"), ==, 2);
        CHECK_INT(RUN("task", "artifact", "00000000-0000-4000-8000-000000000000"), ==, 2);
        CHECK_INT(RUN("task", "get", "00000000-0000-4000-8000-000000000000", "--timeout", "3"), ==, 2);
        CHECK_INT(RUN("login", "extra"), ==, 2);
        CHECK_INT(RUN("login", "--password", "x", "--password-stdin"), ==, 2);
        CHECK_INT(RUN("login", "--url", "ftp://x", "--email", "a@b", "--password", "p"), ==, 2);
        CHECK_INT(RUN("logout", "extra"), ==, 2);
        CHECK_INT(RUN("frob"), ==, 2);
        /* --help is not an error. */
        CHECK_INT(RUN("run", "--help"), ==, 0);
        CHECK_INT(RUN("fn", "--help"), ==, 0);
        CHECK_INT(RUN("task", "-h"), ==, 0);
        CHECK_INT(RUN("login", "--help"), ==, 0);
        CHECK_INT(RUN("logout", "--help"), ==, 0);
}

/* No token: exit 3 with a hint, and no request made. A token saved for one server is
 * not sent to another. */
TEST(auth_and_connection_errors_exit_3) {
        char path[512];
        struct mp_cli c = { 0 };

        REQUIRE(tmpdir[0]);
        unsetenv("MECAPY_TOKEN");
        unsetenv("MECAPY_URL");
        setenv("MECAPY_CONFIG_DIR", tmpdir, 1);
        snprintf(path, sizeof(path), "%s/mecapy/config.json", tmpdir);
        unlink(path);
        CHECK_INT(RUN("fn", "ls"), ==, 3);
        CHECK_INT(RUN("task", "ls"), ==, 3);

        REQUIRE(mp_cli_config_write(path, "http://a.example:8000", "secret") == 0);
        REQUIRE(mp_cli_session(&c, false) == 0);
        CHECK_STR(c.url, "http://a.example:8000");
        CHECK_STR(c.token, "secret");
        mp_cli_done(&c);

        setenv("MECAPY_URL", "http://b.example:8000/", 1);
        CHECK_INT(run_quiet(1, (char *[]) { "fn", NULL }), ==, 2);
        c = (struct mp_cli) { 0 };
        int saved = dup(STDERR_FILENO), null = open("/dev/null", O_WRONLY);
        dup2(null, STDERR_FILENO);
        CHECK_INT(mp_cli_session(&c, true), ==, -ENOKEY);
        dup2(saved, STDERR_FILENO);
        close(saved);
        close(null);
        CHECK(c.token == NULL);
        mp_cli_done(&c);

        setenv("MECAPY_TOKEN", "envtoken", 1);
        c = (struct mp_cli) { 0 };
        REQUIRE(mp_cli_session(&c, true) == 0);
        CHECK_STR(c.url, "http://b.example:8000");
        CHECK_STR(c.token, "envtoken");
        mp_cli_done(&c);

        /* Nothing listens on port 1: a connection error is exit 3. */
        setenv("MECAPY_URL", "http://127.0.0.1:1", 1);
        CHECK_INT(RUN("fn", "ls"), ==, 3);
        CHECK_INT(RUN("run", "beam", "F=1"), ==, 3);
        CHECK_INT(RUN("task", "get", "00000000-0000-4000-8000-000000000000"), ==, 3);
        unsetenv("MECAPY_TOKEN");
        unsetenv("MECAPY_URL");
        unlink(path);
        snprintf(path, sizeof(path), "%s/mecapy", tmpdir);
        rmdir(path);
}

TEST(setup) {
        make_tmpdir();
        REQUIRE(tmpdir[0]);
}

TEST(teardown) {
        char path[600];
        snprintf(path, sizeof(path), "%s/cfg/mecapy", tmpdir);
        rmdir(path);
        snprintf(path, sizeof(path), "%s/cfg", tmpdir);
        rmdir(path);
        CHECK_INT(rmdir(tmpdir), ==, 0);
}

static const struct check_case cases[] = {
        CASE(setup),
        CASE(value_typing),
        CASE(assignments),
        CASE(config_path_rules),
        CASE(config_written_0600),
        CASE(url_normalize),
        CASE(option_parsing),
        CASE(usage_errors_exit_2),
        CASE(auth_and_connection_errors_exit_3),
        CASE(teardown),
};

CHECK_MAIN(cases)

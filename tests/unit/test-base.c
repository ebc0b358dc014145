/* base/: ids, buffers with caps, frames, UTF-8, config parsing, errors. */
#include <fcntl.h>
#include <sys/socket.h>

#include "base/config.h"
#include "base/error.h"
#include "base/json.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/util.h"
#include "check.h"

TEST(ids_are_uuid_v4_and_unique) {
        char a[MP_ID_LEN + 1], b[MP_ID_LEN + 1];
        mp_id_new(a);
        mp_id_new(b);
        CHECK(mp_id_valid(a));
        CHECK(mp_id_valid(b));
        CHECK(strcmp(a, b) != 0);
        CHECK_INT(a[14], ==, '4');
        CHECK(!mp_id_valid("not-an-id"));
        CHECK(!mp_id_valid("0123456789abcdef0123456789abcdef0123"));
        CHECK(!mp_id_valid(NULL));
        CHECK(!mp_id_valid("AAAAAAAA-AAAA-4AAA-8AAA-AAAAAAAAAAAA"));
}

TEST(buffer_refuses_past_cap) {
        struct mp_buf b = { .cap = 10 };
        CHECK_INT(mp_buf_append(&b, "12345", 5), ==, 0);
        CHECK_INT(mp_buf_append(&b, "123456", 6), ==, -E2BIG);
        CHECK_INT(b.len, ==, 5);
        mp_buf_append_trunc(&b, "abcdefgh", 8);
        CHECK_INT(b.len, ==, 10);
        CHECK(b.truncated);
        CHECK_STR(b.data, "12345abcde");
        mp_buf_free(&b);
}

TEST(frames_round_trip_and_cap) {
        int sv[2];
        char *got = NULL;
        size_t len = 0;
        REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
        CHECK_INT(mp_frame_write(sv[0], "{\"a\":1}", 7), ==, 0);
        CHECK_INT(mp_frame_read(sv[1], 100, &got, &len), ==, 0);
        CHECK_INT(len, ==, 7);
        CHECK_STR(got, "{\"a\":1}");
        free(got);
        got = NULL;
        CHECK_INT(mp_frame_write(sv[0], "0123456789", 10), ==, 0);
        CHECK_INT(mp_frame_read(sv[1], 5, &got, &len), ==, -E2BIG);
        CHECK(got == NULL);
        close(sv[0]);
        CHECK_INT(mp_frame_read(sv[1], 100, &got, &len), <, 0);
        close(sv[1]);
}

TEST(utf8_validation) {
        CHECK(mp_utf8_valid("plain", 5));
        CHECK(mp_utf8_valid("\xc3\xa9t\xc3\xa9", 5));          /* été */
        CHECK(mp_utf8_valid("\xf0\x9f\x94\xa9", 4));           /* a 4-byte emoji */
        CHECK(!mp_utf8_valid("\xff", 1));
        CHECK(!mp_utf8_valid("\xc3", 1));                      /* truncated */
        CHECK(!mp_utf8_valid("\xc0\xaf", 2));                  /* overlong '/' */
        CHECK(!mp_utf8_valid("\xed\xa0\x80", 3));              /* surrogate */
        CHECK(!mp_utf8_valid("a\0b", 3));                      /* NUL */
}

TEST(utf8_sanitize_replaces_only_the_bad_bytes) {
        size_t n = 0;
        char *s = mp_utf8_sanitize("ok \xff \xc3\xa9 \xc3", 9, &n);
        REQUIRE(s);
        CHECK_STR(s, "ok \xef\xbf\xbd \xc3\xa9 \xef\xbf\xbd");
        CHECK_INT(n, ==, strlen(s));
        CHECK(mp_utf8_valid(s, n));
        free(s);
        s = mp_utf8_sanitize("a\0b", 3, &n);
        REQUIRE(s);
        CHECK_STR(s, "a\xef\xbf\xbd" "b");
        free(s);
}

TEST(parse_long_ranges) {
        long v = 0;
        CHECK_INT(mp_parse_long("42", 0, 100, &v), ==, 0);
        CHECK_INT(v, ==, 42);
        CHECK_INT(mp_parse_long("101", 0, 100, &v), ==, -ERANGE);
        CHECK_INT(mp_parse_long("4x", 0, 100, &v), ==, -ERANGE);
        CHECK_INT(mp_parse_long("", 0, 100, &v), ==, -EINVAL);
        CHECK_INT(mp_parse_long("99999999999999999999", 0, 100, &v), ==, -ERANGE);
}

TEST(config_defaults_and_options) {
        char *argv[] = { "serve", "--port", "9001", "--data-dir", "/tmp/x", "--workers", "3", NULL };
        struct mp_config *c = NULL;
        struct mp_error err = { 0 };
        REQUIRE(mp_config_parse(7, argv, &c, &err) == 0);
        CHECK_INT(c->port, ==, 9001);
        CHECK_INT(c->workers, ==, 3);
        CHECK_STR(c->db_url, "sqlite:/tmp/x/mecapy.db");
        CHECK_STR(c->blobs_url, "file:/tmp/x/objects");
        CHECK_STR(c->queue_url, "local:");
        CHECK_STR(c->listen_host, "127.0.0.1");
        CHECK(c->sandbox);
        CHECK_INT(c->default_timeout_s, ==, MP_DEFAULT_TIMEOUT_S);
        CHECK_INT(c->default_memory_mb, ==, MP_DEFAULT_MEMORY_MB);
        mp_config_free(c);
}

TEST(config_package_indexes_one_a_line_without_trailing_slash) {
        char *argv[] = { "serve", "--package-index", "http://127.0.0.1:8080/simple/", "--package-index",
                         "https://pypi.org/simple", NULL };
        char *bad[] = { "serve", "--package-index", "file:///etc/", NULL };
        struct mp_config *c = NULL;
        struct mp_error err = { 0 };
        REQUIRE(mp_config_parse(5, argv, &c, &err) == 0);
        CHECK_STR(c->package_index, "http://127.0.0.1:8080/simple\nhttps://pypi.org/simple");
        mp_config_free(c);
        c = NULL;
        CHECK_INT(mp_config_parse(3, bad, &c, &err), ==, -EINVAL);
        CHECK(strstr(err.message, "--package-index file:///etc/") != NULL);
        CHECK(c == NULL);
        mp_error_clear(&err);
}

TEST(config_refuses_bad_numbers_naming_the_option) {
        char *argv[] = { "serve", "--port", "http", NULL };
        struct mp_config *c = NULL;
        struct mp_error err = { 0 };
        CHECK_INT(mp_config_parse(3, argv, &c, &err), ==, -EINVAL);
        CHECK(strstr(err.message, "--port") != NULL);
        CHECK(c == NULL);
        mp_error_clear(&err);
}

TEST(error_fields_accumulate_and_cap) {
        struct mp_error err = { 0 };
        for (int i = 0; i < 500; i++)
                mp_error_add_field(&err, "inputs.x", "bad %d", i);
        CHECK_INT(json_array_size(err.errors), ==, 100);
        CHECK_INT(mp_error_set(&err, EINVAL, 422, "validation", "x"), ==, -EINVAL);
        CHECK_INT(err.status, ==, 422);
        mp_error_prefix(&err, "storing");
        CHECK_STR(err.message, "storing: x");
        mp_error_clear(&err);
        CHECK(err.errors == NULL);
}

TEST(json_reals_read_as_typed_and_back_exactly) {
        static const char *const in = "[0.05, 0.1, 2.0, -1.5e-07, 1e+300, 0.30000000000000004, "
                                      "0.3333333333333333, 4.1666666666666677e-06, 12, -7]";
        _cleanup_json_ json_t *j = json_loads(in, 0, NULL);
        CHECK(j != NULL);
        _cleanup_free_ char *text = mp_json_dumps(j, JSON_COMPACT);
        CHECK_STR(text, "[0.05,0.1,2.0,-1.5e-07,1e+300,0.30000000000000004,0.3333333333333333,"
                        "4.166666666666668e-06,12,-7]");
        /* every real reads back as the same double */
        _cleanup_json_ json_t *back = json_loads(text, 0, NULL);
        CHECK(back != NULL);
        for (size_t i = 0; i < json_array_size(j); i++)
                CHECK(json_equal(json_array_get(j, i), json_array_get(back, i)));
        /* numbers inside strings are text, left alone; escapes do not end a string */
        char s[] = "{\"a\\\"0.050000000000000003\": \"0.050000000000000003\", \"b\": 0.050000000000000003}";
        mp_json_shorten_reals(s);
        CHECK_STR(s, "{\"a\\\"0.050000000000000003\": \"0.050000000000000003\", \"b\": 0.05}");
}

TEST(log_request_ids_are_checked) {
        CHECK(mp_log_id_valid("abc-DEF_1.2:3"));
        CHECK(!mp_log_id_valid(""));
        CHECK(!mp_log_id_valid(NULL));
        CHECK(!mp_log_id_valid("a b"));
        CHECK(!mp_log_id_valid("a\"b"));
        CHECK(!mp_log_id_valid("\xc3\xa9"));
        char longid[MP_LOG_ID_MAX + 2];
        memset(longid, 'a', sizeof(longid) - 1);
        longid[MP_LOG_ID_MAX + 1] = 0;
        CHECK(!mp_log_id_valid(longid));
        longid[MP_LOG_ID_MAX] = 0;
        CHECK(mp_log_id_valid(longid));
        mp_log_set_request_id("not valid!");
        CHECK(mp_log_request_id() == NULL);
        mp_log_set_request_id("r-1");
        CHECK_STR(mp_log_request_id(), "r-1");
        mp_log_set_request_id(NULL);
        CHECK(mp_log_request_id() == NULL);
}

/* Lines written in the JSON format are JSON, whatever the message holds. */
TEST(log_json_lines_parse) {
        FILE *tmp = tmpfile();
        int saved = dup(2);
        char buf[8192];
        size_t n;

        REQUIRE(tmp && saved >= 0);
        fflush(stderr);
        dup2(fileno(tmp), 2);
        mp_log_set_format(MP_LOG_JSON);
        mp_log_set_request_id("req-1");
        mp_log_set_task_id("task-1");
        mp_info("quote \" backslash \\ newline \n tab \t bell \a utf8 \xc3\xa9 done");
        mp_log_set_task_id(NULL);
        mp_warn("bad utf8 \xff\xfe end");
        mp_log_set_request_id(NULL);
        mp_log_set_format(MP_LOG_TEXT);
        fflush(stderr);
        dup2(saved, 2);
        close(saved);
        rewind(tmp);
        n = fread(buf, 1, sizeof(buf) - 1, tmp);
        buf[n] = 0;
        fclose(tmp);
        char *nl = strchr(buf, '\n');
        REQUIRE(nl != NULL);
        *nl = 0;
        json_error_t jerr;
        json_t *a = json_loads(buf, 0, &jerr), *b = json_loads(nl + 1, JSON_DISABLE_EOF_CHECK, &jerr);
        REQUIRE(a != NULL && b != NULL);
        CHECK_STR(json_string_value(json_object_get(a, "level")), "info");
        CHECK_STR(json_string_value(json_object_get(a, "request_id")), "req-1");
        CHECK_STR(json_string_value(json_object_get(a, "task_id")), "task-1");
        CHECK_STR(json_string_value(json_object_get(a, "msg")),
                  "quote \" backslash \\ newline \n tab \t bell \a utf8 \xc3\xa9 done");
        CHECK(json_object_get(b, "task_id") == NULL);
        CHECK_STR(json_string_value(json_object_get(b, "level")), "warn");
        CHECK(strstr(json_string_value(json_object_get(b, "msg")), "end") != NULL);
        json_decref(a);
        json_decref(b);
}

TEST(config_redacts_passwords_and_pairs_tls_options) {
        char buf[256];
        mp_config_redact_url("postgres://app:s3cret@db:5432/mecapy?sslmode=require", buf, sizeof(buf));
        CHECK_STR(buf, "postgres://app:***@db:5432/mecapy?sslmode=require");
        mp_config_redact_url("redis://:pw@127.0.0.1:6379/0", buf, sizeof(buf));
        CHECK_STR(buf, "redis://:***@127.0.0.1:6379/0");
        mp_config_redact_url("postgres://db/mecapy?user=a&password=s3cret&sslmode=verify-full", buf, sizeof(buf));
        CHECK_STR(buf, "postgres://db/mecapy?user=a&password=***&sslmode=verify-full");
        mp_config_redact_url("sqlite:/tmp/x.db", buf, sizeof(buf));
        CHECK_STR(buf, "sqlite:/tmp/x.db");
        mp_config_redact_url("postgres://user@db/x", buf, sizeof(buf));
        CHECK_STR(buf, "postgres://user@db/x");

        char *argv[] = { "serve", "--tls-cert", "/x.pem", NULL };
        struct mp_config *c = NULL;
        struct mp_error err = { 0 };
        CHECK_INT(mp_config_parse(3, argv, &c, &err), ==, -EINVAL);
        CHECK(strstr(err.message, "--tls-key") != NULL);
        mp_error_clear(&err);
        char *argv2[] = { "serve", "--log-format", "yaml", NULL };
        CHECK_INT(mp_config_parse(3, argv2, &c, &err), ==, -EINVAL);
        CHECK(strstr(err.message, "--log-format") != NULL);
        mp_error_clear(&err);
}

static const struct check_case cases[] = {
        CASE(ids_are_uuid_v4_and_unique),
        CASE(buffer_refuses_past_cap),
        CASE(frames_round_trip_and_cap),
        CASE(utf8_validation),
        CASE(utf8_sanitize_replaces_only_the_bad_bytes),
        CASE(parse_long_ranges),
        CASE(config_defaults_and_options),
        CASE(config_refuses_bad_numbers_naming_the_option),
        CASE(error_fields_accumulate_and_cap),
        CASE(json_reals_read_as_typed_and_back_exactly),
        CASE(log_request_ids_are_checked),
        CASE(log_json_lines_parse),
        CASE(config_redacts_passwords_and_pairs_tls_options),
        CASE(config_package_indexes_one_a_line_without_trailing_slash),
};
CHECK_MAIN(cases)

/* The client's entry point, output helpers, and the login/logout verbs. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>

#include <curl/curl.h>

#include "base/json.h"
#include "base/config.h"
#include "cli/cli-internal.h"
#include "cli/cli.h"

void mp_cli_put_safe(FILE *f, const char *s) {
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                fputc(*p < 0x20 && *p != '\n' && *p != '\t' ? '?' : *p == 0x7f ? '?' : *p, f);
}

void mp_cli_print_json(FILE *f, json_t *j) {
        _cleanup_free_ char *text = mp_json_dumps(j, JSON_INDENT(2) | JSON_ENCODE_ANY);
        if (text) {
                fputs(text, f);
                fputc('\n', f);
        }
}

const char *mp_cli_str(json_t *obj, const char *key) {
        const char *s = json_string_value(json_object_get(obj, key));
        return s ? s : "";
}

static const char login_usage[] =
        "usage: mecapy login [--url URL] [--email EMAIL] [--password P | --password-stdin] [--json]\n"
        "       mecapy login --oidc [--url URL] [--json]\n"
        "\n"
        "Log in to a MecaPy server and keep the session token in\n"
        "<config dir>/mecapy/config.json (mode 0600). The config dir is MECAPY_CONFIG_DIR,\n"
        "else XDG_CONFIG_HOME, else ~/.config. What is not given is asked on the terminal.\n"
        "\n"
        "  --url URL          server (default: MECAPY_URL, else " MP_CLI_DEFAULT_URL ")\n"
        "  --email EMAIL      account email\n"
        "  --password P       password (visible to other users in ps: prefer --password-stdin)\n"
        "  --password-stdin   read the password from the first line of standard input\n"
        "  --oidc             log in with the server's OpenID provider (Keycloak...): open\n"
        "                     the printed URL in a browser; it comes back to this machine\n"
        "  --json             print the server's answer as JSON (it contains the token)\n";

static const char logout_usage[] =
        "usage: mecapy logout [--json]\n"
        "\n"
        "Revoke the session token on the server and forget it (the config file is removed).\n"
        "A token given by MECAPY_TOKEN is revoked too when it is a session token.\n";

/* Read one line from fd into buf (without the newline); -E2BIG when longer than
 * size - 1, -ENODATA on an empty input. */
static int read_line(int fd, char *buf, size_t size) {
        size_t n = 0;
        for (;;) {
                char ch;
                ssize_t r = read(fd, &ch, 1);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (r == 0) {
                        if (n == 0)
                                return -ENODATA;
                        break;
                }
                if (ch == '\n')
                        break;
                if (n + 1 >= size)
                        return -E2BIG;
                buf[n++] = ch;
        }
        if (n > 0 && buf[n - 1] == '\r')
                n--;
        buf[n] = 0;
        return 0;
}

/* Ask on the controlling terminal (not stdin, which may carry the password). */
static int prompt(const char *question, bool echo, char *buf, size_t size) {
        _cleanup_close_ int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
        struct termios old, quiet;
        bool restore = false;
        int r;

        if (fd < 0)
                return -ENOTTY;
        (void) mp_write_all(fd, question, strlen(question));
        if (!echo && tcgetattr(fd, &old) == 0) {
                quiet = old;
                quiet.c_lflag &= ~(tcflag_t) ECHO;
                quiet.c_lflag |= ECHONL;
                restore = tcsetattr(fd, TCSAFLUSH, &quiet) == 0;
        }
        r = read_line(fd, buf, size);
        if (restore)
                (void) tcsetattr(fd, TCSAFLUSH, &old);
        return r;
}

int mp_cli_login(int argc, char **argv) {
        const char *url_opt = NULL, *email_opt = NULL, *password_opt = NULL;
        bool password_stdin = false, help = false, json = false, oidc = false;
        const struct mp_cli_opt opts[] = {
                { "url", 0, MP_CLI_OPT_VALUE, &url_opt, NULL },
                { "email", 0, MP_CLI_OPT_VALUE, &email_opt, NULL },
                { "password", 0, MP_CLI_OPT_VALUE, &password_opt, NULL },
                { "password-stdin", 0, MP_CLI_OPT_FLAG, &password_stdin, NULL },
                { "json", 0, MP_CLI_OPT_FLAG, &json, NULL },
                { "oidc", 0, MP_CLI_OPT_FLAG, &oidc, NULL },
                { "help", 'h', MP_CLI_OPT_FLAG, &help, NULL },
        };
        _cleanup_free_ char **pos = calloc((size_t) argc + 1, sizeof(char *));
        _cleanup_free_ char *path = NULL;
        _cleanup_json_ json_t *body = NULL, *answer = NULL;
        struct mp_cli c = { 0 };
        char email[MP_MAX_EMAIL_LEN + 2], password[MP_MAX_PASSWORD_LEN + 2];
        const char *token;
        int npos, r, code = MP_CLI_EXIT_HTTP;

        if (!pos)
                return MP_CLI_EXIT_HTTP;
        if (mp_cli_parse_args("login", argc, argv, 1, opts, ELEMENTSOF(opts), pos, &npos) < 0)
                return MP_CLI_EXIT_USAGE;
        if (help) {
                fputs(login_usage, stdout);
                return MP_CLI_EXIT_OK;
        }
        if (npos > 0) {
                fprintf(stderr, "mecapy login: unexpected operand '%s'\n%s", pos[0], login_usage);
                return MP_CLI_EXIT_USAGE;
        }
        if (password_opt && password_stdin) {
                fprintf(stderr, "mecapy login: give --password or --password-stdin, not both\n");
                return MP_CLI_EXIT_USAGE;
        }

        c.url = strdup(url_opt ? url_opt
                       : mp_config_client_env("MECAPY_URL") && *mp_config_client_env("MECAPY_URL")
                               ? mp_config_client_env("MECAPY_URL") : MP_CLI_DEFAULT_URL);
        if (!c.url)
                return MP_CLI_EXIT_HTTP;
        if (mp_cli_url_normalize(c.url) < 0) {
                fprintf(stderr, "mecapy login: the URL must start with http:// or https:// and "
                                "have no query, got '");
                mp_cli_put_safe(stderr, c.url);
                fprintf(stderr, "'\n");
                code = MP_CLI_EXIT_USAGE;
                goto out;
        }
        if (oidc) {
                if (email_opt || password_opt || password_stdin) {
                        fprintf(stderr, "mecapy login: --oidc takes no email or password\n");
                        code = MP_CLI_EXIT_USAGE;
                } else
                        code = mp_cli_login_oidc(&c, json);
                goto out;
        }

        if (email_opt) {
                if (strlen(email_opt) > MP_MAX_EMAIL_LEN) {
                        fprintf(stderr, "mecapy login: the email is longer than %d characters\n",
                                MP_MAX_EMAIL_LEN);
                        code = MP_CLI_EXIT_USAGE;
                        goto out;
                }
                memcpy(email, email_opt, strlen(email_opt) + 1);
        } else if ((r = prompt("Email: ", true, email, sizeof(email))) < 0) {
                fprintf(stderr, "mecapy login: %s: pass --email\n",
                        r == -ENOTTY ? "no terminal to ask for the email" : "no email given");
                code = MP_CLI_EXIT_USAGE;
                goto out;
        }

        if (password_opt) {
                if (strlen(password_opt) > MP_MAX_PASSWORD_LEN) {
                        fprintf(stderr, "mecapy login: the password is longer than %d bytes\n",
                                MP_MAX_PASSWORD_LEN);
                        code = MP_CLI_EXIT_USAGE;
                        goto out;
                }
                memcpy(password, password_opt, strlen(password_opt) + 1);
        } else if (password_stdin) {
                r = read_line(STDIN_FILENO, password, sizeof(password));
                if (r < 0) {
                        fprintf(stderr, "mecapy login: %s\n",
                                r == -E2BIG ? "the password on standard input is too long"
                                            : "no password on standard input");
                        code = MP_CLI_EXIT_USAGE;
                        goto out;
                }
        } else if ((r = prompt("Password: ", false, password, sizeof(password))) < 0) {
                fprintf(stderr, "mecapy login: %s: pass --password-stdin\n",
                        r == -ENOTTY ? "no terminal to ask for the password" : "no password given");
                code = MP_CLI_EXIT_USAGE;
                goto out;
        }

        body = json_pack("{s:s, s:s}", "email", email, "password", password);
        explicit_bzero(password, sizeof(password));
        if (!body) {
                fprintf(stderr, "mecapy login: the email and password must be valid UTF-8\n");
                code = MP_CLI_EXIT_USAGE;
                goto out;
        }
        r = mp_cli_api(&c, "POST", "/api/v1/auth/login", body, NULL, 0, &answer, NULL);
        if (r < 0)
                goto out;
        token = json_string_value(json_object_get(answer, "token"));
        if (!token || !*token || strlen(token) > MP_CLI_MAX_TOKEN_LEN || strpbrk(token, "\r\n")) {
                fprintf(stderr, "mecapy login: the server's answer has no usable token\n");
                goto out;
        }
        r = mp_cli_config_path(&path);
        if (r < 0) {
                fprintf(stderr, "mecapy login: no config directory: set MECAPY_CONFIG_DIR or HOME\n");
                goto out;
        }
        r = mp_cli_config_write(path, c.url, token);
        if (r < 0) {
                fprintf(stderr, "mecapy login: cannot write %s: %s\n", path, strerror(-r));
                goto out;
        }
        if (json)
                mp_cli_print_json(stdout, answer);
        else {
                printf("logged in to %s as ", c.url);
                mp_cli_put_safe(stdout, *mp_cli_str(json_object_get(answer, "user"), "email")
                                              ? mp_cli_str(json_object_get(answer, "user"), "email")
                                              : email);
                if (*mp_cli_str(answer, "expires_at")) {
                        printf(" (session until ");
                        mp_cli_put_safe(stdout, mp_cli_str(answer, "expires_at"));
                        printf(")");
                }
                printf("\ntoken saved in %s\n", path);
        }
        code = MP_CLI_EXIT_OK;
out:
        explicit_bzero(password, sizeof(password));
        mp_cli_done(&c);
        return code;
}

int mp_cli_logout(int argc, char **argv) {
        bool help = false, json = false;
        const struct mp_cli_opt opts[] = {
                { "json", 0, MP_CLI_OPT_FLAG, &json, NULL },
                { "help", 'h', MP_CLI_OPT_FLAG, &help, NULL },
        };
        _cleanup_free_ char **pos = calloc((size_t) argc + 1, sizeof(char *));
        _cleanup_free_ char *path = NULL;
        struct mp_cli c = { 0 };
        struct mp_cli_reply reply = { 0 };
        int npos, r, code = MP_CLI_EXIT_OK;
        bool had_file;

        if (!pos)
                return MP_CLI_EXIT_HTTP;
        if (mp_cli_parse_args("logout", argc, argv, 1, opts, ELEMENTSOF(opts), pos, &npos) < 0)
                return MP_CLI_EXIT_USAGE;
        if (help) {
                fputs(logout_usage, stdout);
                return MP_CLI_EXIT_OK;
        }
        if (npos > 0) {
                fprintf(stderr, "mecapy logout: unexpected operand '%s'\n", pos[0]);
                return MP_CLI_EXIT_USAGE;
        }
        r = mp_cli_session(&c, false);
        if (r < 0) {
                mp_cli_done(&c);
                return r == -EINVAL ? MP_CLI_EXIT_USAGE : MP_CLI_EXIT_HTTP;
        }
        if (c.token) {
                r = mp_cli_request(&c, "POST", "/api/v1/auth/logout", NULL, NULL, 0, &reply);
                if (r < 0) {
                        fprintf(stderr, "mecapy logout: the server was not reached; the token "
                                        "is forgotten here but may still work until it expires\n");
                        code = MP_CLI_EXIT_HTTP;
                } else if (reply.status == 401) {
                        /* Already expired or revoked: the outcome the user asked for. */
                } else if (reply.status < 200 || reply.status > 299) {
                        mp_cli_print_problem(&reply);
                        code = MP_CLI_EXIT_HTTP;
                }
                mp_cli_reply_free(&reply);
        }
        had_file = mp_cli_config_path(&path) >= 0 && access(path, F_OK) == 0;
        if (had_file && unlink(path) < 0) {
                fprintf(stderr, "mecapy logout: cannot remove %s: %m\n", path);
                code = MP_CLI_EXIT_HTTP;
        }
        if (json)
                printf("{\"logged_out\": %s}\n", code == MP_CLI_EXIT_OK ? "true" : "false");
        else if (code == MP_CLI_EXIT_OK)
                printf("logged out of %s\n", c.url);
        mp_cli_done(&c);
        return code;
}

static const char main_usage[] =
        "usage: mecapy login|logout|fn|run|task|flow|study ... (each takes --help)\n";

int mp_cli_main(const char *verb, int argc, char **argv) {
        int code;

        if (!verb || argc < 1 || !argv) {
                fputs(main_usage, stderr);
                return MP_CLI_EXIT_USAGE;
        }
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                fprintf(stderr, "mecapy: cannot initialise libcurl\n");
                return MP_CLI_EXIT_HTTP;
        }
        if (strcmp(verb, "login") == 0)
                code = mp_cli_login(argc, argv);
        else if (strcmp(verb, "logout") == 0)
                code = mp_cli_logout(argc, argv);
        else if (strcmp(verb, "fn") == 0)
                code = mp_cli_fn(argc, argv);
        else if (strcmp(verb, "run") == 0)
                code = mp_cli_run(argc, argv);
        else if (strcmp(verb, "task") == 0)
                code = mp_cli_task(argc, argv);
        else if (strcmp(verb, "flow") == 0)
                code = mp_cli_flow(argc, argv);
        else if (strcmp(verb, "study") == 0)
                code = mp_cli_study(argc, argv);
        else {
                fprintf(stderr, "mecapy: unknown client verb '%s'\n%s", verb, main_usage);
                code = MP_CLI_EXIT_USAGE;
        }
        fflush(stdout);
        curl_global_cleanup();
        return code;
}

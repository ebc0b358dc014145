/* `mecapy login --oidc`: log in through the server's OpenID provider from a terminal.
 *
 * The CLI listens on 127.0.0.1 (a random port), and asks the person to open the
 * server's login URL with cli_redirect pointing at that listener. After the provider,
 * the server redirects the browser to the listener with a one-time code, which the CLI
 * exchanges at POST /api/v1/auth/oidc/cli-exchange with its own PKCE verifier: a code
 * seen by anyone else on the machine is useless without the verifier, which never
 * leaves this process (RFC 8252, loopback redirect, plus PKCE). */
#include <arpa/inet.h>
#include <ctype.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <spawn.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/config.h"
#include "base/util.h"
#include "cli/cli-internal.h"

#define LOGIN_WAIT_S 300        /* how long the CLI waits for the browser */
#define MAX_REQUEST_BYTES 8192  /* what the listener reads of one browser request */

extern char **environ;

static void b64url(const unsigned char *bin, size_t n, char *out, size_t size) {
        sodium_bin2base64(out, size, bin, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static void percent_encode(const char *in, char *out, size_t size) {
        static const char hex[] = "0123456789ABCDEF";
        size_t o = 0;
        for (; *in && o + 4 < size; in++) {
                unsigned char ch = (unsigned char) *in;
                if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                    ch == '-' || ch == '_' || ch == '.' || ch == '~')
                        out[o++] = (char) ch;
                else {
                        out[o++] = '%';
                        out[o++] = hex[ch >> 4];
                        out[o++] = hex[ch & 15];
                }
        }
        out[o] = 0;
}

/* The value of name in a query string (base64url values only: nothing to decode). */
static bool query_value(const char *q, const char *name, char *out, size_t size) {
        size_t n = strlen(name);
        for (const char *p = q; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
                if (!strncmp(p, name, n) && p[n] == '=') {
                        size_t len = strcspn(p + n + 1, "& ");
                        if (len == 0 || len >= size)
                                return false;
                        memcpy(out, p + n + 1, len);
                        out[len] = 0;
                        for (size_t i = 0; i < len; i++)
                                if (!(isalnum((unsigned char) out[i]) || out[i] == '-' || out[i] == '_'))
                                        return false;
                        return true;
                }
        }
        return false;
}

static void reply(int fd, const char *status, const char *text) {
        char buf[512];
        int n = snprintf(buf, sizeof(buf),
                         "HTTP/1.1 %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                         "Content-Length: %zu\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n%s",
                         status, strlen(text), text);
        if (n > 0)
                mp_write_all(fd, buf, (size_t) MP_MIN((size_t) n, sizeof(buf) - 1));
}

/* Wait for the browser's GET /callback?code=...&state=... with our state. */
static int wait_callback(int lfd, const char *state, char *code, size_t code_size) {
        int64_t deadline = mp_mono_ms() + (int64_t) LOGIN_WAIT_S * 1000;

        for (;;) {
                struct pollfd pfd = { .fd = lfd, .events = POLLIN };
                int64_t left = deadline - mp_mono_ms();
                char req[MAX_REQUEST_BYTES + 1], got_state[128];
                size_t len = 0;

                if (left <= 0)
                        return -ETIMEDOUT;
                if (poll(&pfd, 1, (int) left) <= 0)
                        continue;
                _cleanup_close_ int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                        continue;
                struct timeval tv = { .tv_sec = 5 };
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
                while (len < MAX_REQUEST_BYTES) {
                        ssize_t r = read(fd, req + len, MAX_REQUEST_BYTES - len);
                        if (r <= 0)
                                break;
                        len += (size_t) r;
                        req[len] = 0;
                        if (strstr(req, "\r\n\r\n"))
                                break;
                }
                req[len] = 0;
                if (strncmp(req, "GET /callback?", 14)) {
                        reply(fd, "404 Not Found", "not the MecaPy login callback\n");
                        continue;
                }
                char *eol = strpbrk(req, "\r\n");
                if (eol)
                        *eol = 0;
                const char *q = req + 14;
                if (!query_value(q, "state", got_state, sizeof(got_state)) || strcmp(got_state, state) ||
                    !query_value(q, "code", code, code_size)) {
                        reply(fd, "400 Bad Request", "this is not the answer to this login\n");
                        continue;
                }
                reply(fd, "200 OK", "Logged in to MecaPy. You can close this window.\n");
                return 0;
        }
}

/* Try to open the URL in a browser when there is a desktop; the URL is printed anyway. */
static void open_browser(const char *url) {
        const char *display = mp_config_client_env("DISPLAY"), *wayland = mp_config_client_env("WAYLAND_DISPLAY");
        posix_spawn_file_actions_t fa;
        pid_t pid;

        if (!(display && *display) && !(wayland && *wayland))
                return;
        if (posix_spawn_file_actions_init(&fa) != 0)
                return;
        posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        char *argv[] = { (char *) "xdg-open", (char *) url, NULL };
        if (posix_spawnp(&pid, "xdg-open", &fa, NULL, argv, environ) == 0)
                waitpid(pid, NULL, WNOHANG); /* not waited for: it may keep the browser */
        posix_spawn_file_actions_destroy(&fa);
}

int mp_cli_login_oidc(struct mp_cli *c, bool json) {
        unsigned char raw[32], hash[crypto_hash_sha256_BYTES];
        char verifier[64], challenge[64], state[64], redirect[64], enc[192], code[128];
        _cleanup_free_ char *url = NULL, *path = NULL;
        _cleanup_json_ json_t *body = NULL, *answer = NULL;
        struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t alen = sizeof(addr);
        const char *token;
        int r;

        if (sodium_init() < 0)
                return MP_CLI_EXIT_HTTP;
        _cleanup_close_ int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (lfd < 0 || bind(lfd, (struct sockaddr *) &addr, sizeof(addr)) < 0 || listen(lfd, 8) < 0 ||
            getsockname(lfd, (struct sockaddr *) &addr, &alen) < 0) {
                fprintf(stderr, "mecapy login: cannot listen on 127.0.0.1 for the browser: %m\n");
                return MP_CLI_EXIT_HTTP;
        }
        randombytes_buf(raw, sizeof(raw));
        b64url(raw, sizeof(raw), verifier, sizeof(verifier));
        crypto_hash_sha256(hash, (const unsigned char *) verifier, strlen(verifier));
        b64url(hash, sizeof(hash), challenge, sizeof(challenge));
        randombytes_buf(raw, 16);
        b64url(raw, 16, state, sizeof(state));
        snprintf(redirect, sizeof(redirect), "http://127.0.0.1:%u/callback", (unsigned) ntohs(addr.sin_port));
        percent_encode(redirect, enc, sizeof(enc));
        if (asprintf(&url, "%s/api/v1/auth/oidc/login?cli_redirect=%s&cli_state=%s&cli_challenge=%s",
                     c->url, enc, state, challenge) < 0) {
                url = NULL;
                return MP_CLI_EXIT_HTTP;
        }
        printf("Open this URL in a browser to log in (waiting %d s):\n  %s\n", LOGIN_WAIT_S, url);
        fflush(stdout);
        open_browser(url);

        r = wait_callback(lfd, state, code, sizeof(code));
        if (r < 0) {
                fprintf(stderr, "mecapy login: no login came back from the browser in %d s\n", LOGIN_WAIT_S);
                return MP_CLI_EXIT_HTTP;
        }
        body = json_pack("{s:s,s:s}", "code", code, "code_verifier", verifier);
        explicit_bzero(verifier, sizeof(verifier));
        if (!body)
                return MP_CLI_EXIT_HTTP;
        r = mp_cli_api(c, "POST", "/api/v1/auth/oidc/cli-exchange", body, NULL, 0, &answer, NULL);
        if (r < 0)
                return MP_CLI_EXIT_HTTP;
        token = json_string_value(json_object_get(answer, "token"));
        if (!token || !*token || strlen(token) > MP_CLI_MAX_TOKEN_LEN || strpbrk(token, "\r\n")) {
                fprintf(stderr, "mecapy login: the server's answer has no usable token\n");
                return MP_CLI_EXIT_HTTP;
        }
        if (mp_cli_config_path(&path) < 0) {
                fprintf(stderr, "mecapy login: no config directory: set MECAPY_CONFIG_DIR or HOME\n");
                return MP_CLI_EXIT_HTTP;
        }
        if ((r = mp_cli_config_write(path, c->url, token)) < 0) {
                fprintf(stderr, "mecapy login: cannot write %s: %s\n", path, strerror(-r));
                return MP_CLI_EXIT_HTTP;
        }
        if (json)
                mp_cli_print_json(stdout, answer);
        else {
                printf("logged in to %s as ", c->url);
                mp_cli_put_safe(stdout, mp_cli_str(json_object_get(answer, "user"), "email"));
                printf("\ntoken saved in %s\n", path);
        }
        return MP_CLI_EXIT_OK;
}

/* Where the client keeps its server URL and token: <config dir>/mecapy/config.json,
 * mode 0600, written atomically. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/json.h"
#include "base/config.h"
#include "cli/cli-internal.h"

static bool set(const char *s) {
        return s && *s;
}

int mp_cli_config_path_from(const char *config_dir, const char *xdg_config_home,
                            const char *home, char **ret) {
        char *p = NULL;
        int n;

        if (set(config_dir))
                n = asprintf(&p, "%s/mecapy/config.json", config_dir);
        else if (set(xdg_config_home))
                n = asprintf(&p, "%s/mecapy/config.json", xdg_config_home);
        else if (set(home))
                n = asprintf(&p, "%s/.config/mecapy/config.json", home);
        else
                return -ENOENT;
        if (n < 0)
                return -ENOMEM;
        *ret = p;
        return 0;
}

int mp_cli_config_path(char **ret) {
        return mp_cli_config_path_from(mp_config_client_env("MECAPY_CONFIG_DIR"),
                                       mp_config_client_env("XDG_CONFIG_HOME"),
                                       mp_config_client_env("HOME"), ret);
}

int mp_cli_url_normalize(char *url) {
        size_t n = strlen(url);

        if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
                return -EINVAL;
        if (n > MP_CLI_MAX_URL_LEN)
                return -ENAMETOOLONG;
        while (n > 0 && url[n - 1] == '/')
                url[--n] = 0;
        if (strchr(url, '?') || strchr(url, '#') || strpbrk(url, " \t\r\n"))
                return -EINVAL;
        return 0;
}

int mp_cli_config_write(const char *path, const char *url, const char *token) {
        _cleanup_free_ char *dir = strdup(path), *tmp = NULL, *text = NULL;
        _cleanup_json_ json_t *doc = NULL;
        _cleanup_close_ int fd = -1;
        char *slash;
        int r = 0;

        if (!dir)
                return -ENOMEM;
        slash = strrchr(dir, '/');
        if (slash && slash != dir) {
                *slash = 0;
                r = mp_mkdir_p(dir, 0700);
                if (r < 0)
                        return r;
        }
        doc = json_pack("{s:s, s:s}", "url", url, "token", token);
        if (!doc)
                return -EINVAL;
        text = mp_json_dumps(doc, JSON_INDENT(2));
        if (!text || asprintf(&tmp, "%s.tmp", path) < 0)
                return -ENOMEM;
        /* A stale temporary from an interrupted write may have any mode: start afresh.
         * O_EXCL|O_NOFOLLOW: never write the token through a planted link. */
        (void) unlink(tmp);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        /* The umask can only remove bits, but say it plainly. */
        if (fchmod(fd, 0600) < 0 ||
            (r = mp_write_all(fd, text, strlen(text))) < 0 ||
            (r = mp_write_all(fd, "\n", 1)) < 0 || fsync(fd) < 0) {
                r = r < 0 ? r : mp_negerrno();
                (void) unlink(tmp);
                return r;
        }
        if (rename(tmp, path) < 0) {
                r = mp_negerrno();
                (void) unlink(tmp);
                return r;
        }
        return 0;
}

int mp_cli_config_read(const char *path, char **ret_url, char **ret_token) {
        _cleanup_free_ char *text = NULL, *url = NULL, *token = NULL;
        _cleanup_json_ json_t *doc = NULL;
        json_error_t jerr;
        json_t *v;
        int r;

        r = mp_read_file(path, MP_CLI_MAX_CONFIG_BYTES, &text, NULL);
        if (r < 0)
                return r;
        doc = json_loads(text, 0, &jerr);
        if (!doc || !json_is_object(doc))
                return -EINVAL;
        v = json_object_get(doc, "url");
        if (json_is_string(v) && !(url = strdup(json_string_value(v))))
                return -ENOMEM;
        v = json_object_get(doc, "token");
        if (json_is_string(v) && !(token = strdup(json_string_value(v))))
                return -ENOMEM;
        *ret_url = TAKE_PTR(url);
        *ret_token = TAKE_PTR(token);
        return 0;
}

/* `mecapy fn push|ls|show|rm`: the caller's functions. */
#include <stdio.h>
#include <string.h>

#include "base/json.h"
#include "cli/cli-internal.h"

static const char fn_usage[] =
        "usage: mecapy fn push FILE [--name N] [--handler H] [--description D]\n"
        "                 [--public|--company|--private] [--requirements pkg,...] [--json]\n"
        "       mecapy fn ls [--json]\n"
        "       mecapy fn show NAME|ID [--version N] [--json]\n"
        "       mecapy fn rm NAME|ID [--json]\n"
        "\n"
        "push   upload FILE as a new function, or as a new version of your function of that\n"
        "       name (default: FILE's base name without .py); prints the input parameters\n"
        "ls     your functions, your company's and public ones: name, version, visibility, id\n"
        "show   a function's details and input schema\n"
        "rm     delete one of your functions (its tasks stay readable)\n"
        "--json prints the server's JSON answer instead of the readable text.\n";

/* Every page of a listing, items merged into one {"items": [...], "next_cursor": null}. */
static int list_all(struct mp_cli *c, const char *path, json_t **ret) {
        _cleanup_json_ json_t *all = json_array();
        _cleanup_free_ char *cursor = NULL;
        json_t *out;

        if (!all)
                return -ENOMEM;
        for (int page = 0; page < MP_CLI_MAX_PAGES; page++) {
                _cleanup_free_ char *p = NULL, *esc = NULL;
                _cleanup_json_ json_t *doc = NULL;
                const char *next;
                int r;

                if (cursor) {
                        esc = mp_cli_escape(c, cursor);
                        if (!esc || asprintf(&p, "%s%scursor=%s", path,
                                             strchr(path, '?') ? "&" : "?", esc) < 0)
                                return -ENOMEM;
                } else if (!(p = strdup(path)))
                        return -ENOMEM;
                r = mp_cli_api(c, "GET", p, NULL, NULL, 0, &doc, NULL);
                if (r < 0)
                        return r;
                if (!json_is_array(json_object_get(doc, "items"))) {
                        fprintf(stderr, "mecapy: GET %s: the answer has no items list\n", path);
                        return -EBADMSG;
                }
                json_array_extend(all, json_object_get(doc, "items"));
                next = json_string_value(json_object_get(doc, "next_cursor"));
                free(cursor);
                cursor = NULL;
                if (!next || !*next)
                        break;
                if (!(cursor = strdup(next)))
                        return -ENOMEM;
        }
        out = json_pack("{s:O, s:n}", "items", all, "next_cursor");
        if (!out)
                return -ENOMEM;
        *ret = out;
        return 0;
}

static int my_id(struct mp_cli *c, char **ret) {
        _cleanup_json_ json_t *me = NULL;
        int r = mp_cli_api(c, "GET", "/api/v1/me", NULL, NULL, 0, &me, NULL);
        if (r < 0)
                return r;
        if (!*mp_cli_str(me, "id")) {
                fprintf(stderr, "mecapy: GET /api/v1/me: the answer has no id\n");
                return -EBADMSG;
        }
        *ret = strdup(mp_cli_str(me, "id"));
        return *ret ? 0 : -ENOMEM;
}

/* The functions named exactly `name` that the caller can see (own_only: owns). */
static int find_by_name(struct mp_cli *c, const char *name, bool own_only, json_t **ret) {
        _cleanup_free_ char *esc = mp_cli_escape(c, name), *path = NULL, *me = NULL;
        _cleanup_json_ json_t *list = NULL, *found = json_array();
        json_t *f;
        size_t i;
        int r;

        if (!esc || !found || asprintf(&path, "/api/v1/functions?name=%s", esc) < 0)
                return -ENOMEM;
        r = list_all(c, path, &list);
        if (r < 0)
                return r;
        if (own_only && (r = my_id(c, &me)) < 0)
                return r;
        json_array_foreach(json_object_get(list, "items"), i, f) {
                if (strcmp(mp_cli_str(f, "name"), name) != 0)
                        continue;
                if (me && strcmp(mp_cli_str(f, "owner_id"), me) != 0)
                        continue;
                json_array_append(found, f);
        }
        *ret = TAKE_PTR(found);
        return 0;
}

int mp_cli_resolve_function(struct mp_cli *c, const char *target, bool own_only, char **ret_id) {
        _cleanup_json_ json_t *found = NULL;
        _cleanup_free_ char *me = NULL;
        json_t *f;
        size_t i;
        int r;

        if (mp_id_valid(target)) {
                *ret_id = strdup(target);
                return *ret_id ? 0 : -ENOMEM;
        }
        r = find_by_name(c, target, own_only, &found);
        if (r < 0)
                return r;
        if (json_array_size(found) > 1 && !own_only) {
                /* Several visible functions share the name: prefer the caller's own. */
                _cleanup_json_ json_t *mine = json_array();
                if (!mine || (r = my_id(c, &me)) < 0)
                        return r < 0 ? r : -ENOMEM;
                json_array_foreach(found, i, f)
                        if (strcmp(mp_cli_str(f, "owner_id"), me) == 0)
                                json_array_append(mine, f);
                if (json_array_size(mine) == 1) {
                        json_decref(found);
                        found = TAKE_PTR(mine);
                }
        }
        if (json_array_size(found) == 0) {
                fprintf(stderr, "mecapy: no %sfunction named '", own_only ? "own " : "");
                mp_cli_put_safe(stderr, target);
                fprintf(stderr, "'\n");
                return -ENOENT;
        }
        if (json_array_size(found) > 1) {
                fprintf(stderr, "mecapy: several functions are named '");
                mp_cli_put_safe(stderr, target);
                fprintf(stderr, "'; use an id:\n");
                json_array_foreach(found, i, f) {
                        fprintf(stderr, "  ");
                        mp_cli_put_safe(stderr, mp_cli_str(f, "id"));
                        fprintf(stderr, " (owner ");
                        mp_cli_put_safe(stderr, mp_cli_str(f, "owner_id"));
                        fprintf(stderr, ", %s)\n", mp_cli_str(f, "visibility"));
                }
                return -ENOENT;
        }
        if (!mp_id_valid(mp_cli_str(json_array_get(found, 0), "id"))) {
                fprintf(stderr, "mecapy: the server's answer has a malformed function id\n");
                return -EBADMSG;
        }
        *ret_id = strdup(mp_cli_str(json_array_get(found, 0), "id"));
        return *ret_id ? 0 : -ENOMEM;
}

static const char *type_of(json_t *prop) {
        json_t *t = json_object_get(prop, "type");
        if (json_is_string(t))
                return json_string_value(t);
        if (json_is_array(t) && json_is_string(json_array_get(t, 0)))
                return json_string_value(json_array_get(t, 0));
        return "any";
}

/* The input parameters of a function, one per line, from its JSON Schema. */
static void print_inputs(FILE *f, json_t *fn) {
        json_t *schema = json_object_get(fn, "input_schema");
        json_t *props = json_object_get(schema, "properties");
        json_t *required = json_object_get(schema, "required");
        const char *key;
        json_t *prop;

        if (!json_is_object(props) || json_object_size(props) == 0) {
                fprintf(f, "inputs: none\n");
                return;
        }
        fprintf(f, "inputs:\n");
        json_object_foreach(props, key, prop) {
                bool req = false;
                size_t i;
                json_t *r;
                json_array_foreach(required, i, r)
                        if (json_is_string(r) && strcmp(json_string_value(r), key) == 0)
                                req = true;
                fprintf(f, "  ");
                mp_cli_put_safe(f, key);
                fprintf(f, ": ");
                mp_cli_put_safe(f, type_of(prop));
                if (json_object_get(prop, "default")) {
                        _cleanup_free_ char *d = mp_json_dumps(json_object_get(prop, "default"),
                                                            JSON_ENCODE_ANY | JSON_COMPACT);
                        fprintf(f, " = ");
                        mp_cli_put_safe(f, d ? d : "?");
                } else if (req)
                        fprintf(f, " (required)");
                if (*mp_cli_str(prop, "description")) {
                        fprintf(f, "  ");
                        mp_cli_put_safe(f, mp_cli_str(prop, "description"));
                }
                fprintf(f, "\n");
        }
}

static int split_requirements(const char *list, json_t **ret) {
        _cleanup_json_ json_t *arr = json_array();
        const char *p = list;

        if (!arr)
                return -ENOMEM;
        while (*p) {
                const char *comma = strchr(p, ',');
                size_t n = comma ? (size_t) (comma - p) : strlen(p);
                while (n > 0 && (*p == ' ' || *p == '\t'))
                        p++, n--;
                while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
                        n--;
                if (n > 0) {
                        json_t *s = json_stringn(p, n);
                        if (!s)
                                return -EINVAL;
                        json_array_append_new(arr, s);
                }
                if (!comma)
                        break;
                p = comma + 1;
        }
        if (json_array_size(arr) > MP_MAX_REQUIREMENTS)
                return -E2BIG;
        *ret = TAKE_PTR(arr);
        return 0;
}

static bool valid_name(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > MP_MAX_NAME_LEN)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                      (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || *p == '.'))
                        return false;
        return true;
}

static int fn_push(struct mp_cli *c, int npos, char **pos, const char *name_opt,
                   const char *handler, const char *description, const char *visibility,
                   const char *requirements) {
        _cleanup_free_ char *code = NULL, *name = NULL, *path = NULL, *esc = NULL;
        _cleanup_json_ json_t *body = NULL, *found = NULL, *fn = NULL, *reqs = NULL;
        json_t *code_json;
        const char *base;
        json_int_t before = 0;
        size_t len;
        bool update;
        int r;

        if (npos != 1) {
                fprintf(stderr, "mecapy fn push: give exactly one FILE\n%s", fn_usage);
                return MP_CLI_EXIT_USAGE;
        }
        r = mp_read_file(pos[0], MP_MAX_CODE_BYTES, &code, &len);
        if (r < 0) {
                fprintf(stderr, "mecapy fn push: %s: %s\n", pos[0],
                        r == -EFBIG ? "larger than the 512 KiB a function may have"
                                    : strerror(-r));
                return MP_CLI_EXIT_USAGE;
        }
        code_json = mp_utf8_valid(code, len) ? json_stringn(code, len) : NULL;
        if (!code_json) {
                fprintf(stderr, "mecapy fn push: %s is not UTF-8 text\n", pos[0]);
                return MP_CLI_EXIT_USAGE;
        }
        if (name_opt)
                name = strdup(name_opt);
        else {
                base = strrchr(pos[0], '/');
                base = base ? base + 1 : pos[0];
                name = strdup(base);
                if (name && strlen(name) > 3 && strcmp(name + strlen(name) - 3, ".py") == 0)
                        name[strlen(name) - 3] = 0;
        }
        if (!name) {
                json_decref(code_json);
                return MP_CLI_EXIT_HTTP;
        }
        if (!valid_name(name)) {
                json_decref(code_json);
                fprintf(stderr, "mecapy fn push: '");
                mp_cli_put_safe(stderr, name);
                fprintf(stderr, "' is not a valid function name (1-128 of letters, digits, _ - .): "
                                "pass --name\n");
                return MP_CLI_EXIT_USAGE;
        }
        body = json_object();
        if (!body) {
                json_decref(code_json);
                return MP_CLI_EXIT_HTTP;
        }
        json_object_set_new(body, "code", code_json);
        if (handler)
                json_object_set_new(body, "handler", json_string(handler));
        if (description)
                json_object_set_new(body, "description", json_string(description));
        if (visibility)
                json_object_set_new(body, "visibility", json_string(visibility));
        if (requirements) {
                r = split_requirements(requirements, &reqs);
                if (r < 0) {
                        fprintf(stderr, "mecapy fn push: --requirements: %s\n",
                                r == -E2BIG ? "more than 64 packages" : "not valid UTF-8");
                        return MP_CLI_EXIT_USAGE;
                }
                json_object_set(body, "requirements", reqs);
        }

        r = find_by_name(c, name, true, &found);
        if (r < 0)
                return MP_CLI_EXIT_HTTP;
        update = json_array_size(found) > 0;
        if (update) {
                before = json_integer_value(json_object_get(json_array_get(found, 0), "version"));
                esc = mp_cli_escape(c, mp_cli_str(json_array_get(found, 0), "id"));
                if (!esc || asprintf(&path, "/api/v1/functions/%s", esc) < 0)
                        return MP_CLI_EXIT_HTTP;
                r = mp_cli_api(c, "PUT", path, body, NULL, 0, &fn, NULL);
        } else {
                json_object_set_new(body, "name", json_string(name));
                r = mp_cli_api(c, "POST", "/api/v1/functions", body, NULL, 0, &fn, NULL);
        }
        if (r < 0)
                return MP_CLI_EXIT_HTTP;
        if (c->json) {
                mp_cli_print_json(stdout, fn);
                return MP_CLI_EXIT_OK;
        }
        printf("%s ", update && json_integer_value(json_object_get(fn, "version")) == before
                              ? "unchanged" : "pushed");
        mp_cli_put_safe(stdout, mp_cli_str(fn, "name"));
        printf(" v%" JSON_INTEGER_FORMAT " (id ", json_integer_value(json_object_get(fn, "version")));
        mp_cli_put_safe(stdout, mp_cli_str(fn, "id"));
        printf(")\n");
        print_inputs(stdout, fn);
        return MP_CLI_EXIT_OK;
}

/* One line of a description, cut to width characters (bytes; UTF-8 kept whole). */
static void put_cut(FILE *f, const char *s, size_t width) {
        size_t n = 0;
        while (s[n] && s[n] != '\n' && n < width)
                n++;
        while (n > 0 && s[n] && ((unsigned char) s[n] & 0xc0) == 0x80)
                n--;
        _cleanup_free_ char *cut = strndup(s, n);
        if (cut)
                mp_cli_put_safe(f, cut);
        if (s[n] && s[n] != '\n')
                fputs("...", f);
}

static int fn_ls(struct mp_cli *c) {
        _cleanup_json_ json_t *list = NULL;
        json_t *f;
        size_t i;

        if (list_all(c, "/api/v1/functions", &list) < 0)
                return MP_CLI_EXIT_HTTP;
        if (c->json) {
                mp_cli_print_json(stdout, list);
                return MP_CLI_EXIT_OK;
        }
        printf("%-24s %7s %-10s %-36s %s\n", "NAME", "VERSION", "VISIBILITY", "ID", "DESCRIPTION");
        json_array_foreach(json_object_get(list, "items"), i, f) {
                _cleanup_free_ char *name = strdup(mp_cli_str(f, "name"));
                if (!name)
                        return MP_CLI_EXIT_HTTP;
                /* Names are [A-Za-z0-9_.-]; a server sending other bytes gets them masked. */
                for (char *p = name; *p; p++)
                        if ((unsigned char) *p < 0x20 || *p == 0x7f)
                                *p = '?';
                printf("%-24s %7" JSON_INTEGER_FORMAT " %-10.10s ", name,
                       json_integer_value(json_object_get(f, "version")), mp_cli_str(f, "visibility"));
                mp_cli_put_safe(stdout, mp_cli_str(f, "id"));
                printf(" ");
                put_cut(stdout, mp_cli_str(f, "description"), 50);
                printf("\n");
        }
        return MP_CLI_EXIT_OK;
}

static int fn_show(struct mp_cli *c, const char *target, const char *version) {
        _cleanup_free_ char *id = NULL, *path = NULL, *esc = NULL;
        _cleanup_json_ json_t *fn = NULL;
        long v = 0;
        json_t *x;
        size_t i;

        if (version && mp_parse_long(version, 1, 1000000000L, &v) < 0) {
                fprintf(stderr, "mecapy fn show: --version must be a positive integer\n");
                return MP_CLI_EXIT_USAGE;
        }
        if (mp_cli_resolve_function(c, target, false, &id) < 0)
                return MP_CLI_EXIT_HTTP;
        esc = mp_cli_escape(c, id);
        if (!esc || (v ? asprintf(&path, "/api/v1/functions/%s?version=%ld", esc, v)
                       : asprintf(&path, "/api/v1/functions/%s", esc)) < 0)
                return MP_CLI_EXIT_HTTP;
        if (mp_cli_api(c, "GET", path, NULL, NULL, 0, &fn, NULL) < 0)
                return MP_CLI_EXIT_HTTP;
        if (c->json) {
                mp_cli_print_json(stdout, fn);
                return MP_CLI_EXIT_OK;
        }
        printf("name:        ");
        mp_cli_put_safe(stdout, mp_cli_str(fn, "name"));
        printf("\nid:          ");
        mp_cli_put_safe(stdout, mp_cli_str(fn, "id"));
        printf("\nversion:     %" JSON_INTEGER_FORMAT "\n", json_integer_value(json_object_get(fn, "version")));
        printf("visibility:  ");
        mp_cli_put_safe(stdout, mp_cli_str(fn, "visibility"));
        printf("\nhandler:     ");
        mp_cli_put_safe(stdout, mp_cli_str(fn, "handler"));
        printf("\nupdated:     ");
        mp_cli_put_safe(stdout, mp_cli_str(fn, "updated_at"));
        printf("\nrequirements:");
        json_array_foreach(json_object_get(fn, "requirements"), i, x) {
                printf(" ");
                mp_cli_put_safe(stdout, json_string_value(x) ? json_string_value(x) : "?");
        }
        x = json_object_get(fn, "limits");
        printf("\nlimits:      timeout %" JSON_INTEGER_FORMAT " s, memory %" JSON_INTEGER_FORMAT
               " MB, cpus %" JSON_INTEGER_FORMAT "\n",
               json_integer_value(json_object_get(x, "timeout_s")),
               json_integer_value(json_object_get(x, "memory_mb")),
               json_integer_value(json_object_get(x, "cpus")));
        if (*mp_cli_str(fn, "description")) {
                printf("description: ");
                mp_cli_put_safe(stdout, mp_cli_str(fn, "description"));
                printf("\n");
        }
        print_inputs(stdout, fn);
        printf("input schema:\n");
        mp_cli_print_json(stdout, json_object_get(fn, "input_schema") ? json_object_get(fn, "input_schema")
                                                                       : json_null());
        return MP_CLI_EXIT_OK;
}

static int fn_rm(struct mp_cli *c, const char *target) {
        _cleanup_free_ char *id = NULL, *path = NULL, *esc = NULL;
        _cleanup_json_ json_t *answer = NULL;

        if (mp_cli_resolve_function(c, target, true, &id) < 0)
                return MP_CLI_EXIT_HTTP;
        esc = mp_cli_escape(c, id);
        if (!esc || asprintf(&path, "/api/v1/functions/%s", esc) < 0)
                return MP_CLI_EXIT_HTTP;
        if (mp_cli_api(c, "DELETE", path, NULL, NULL, 0, &answer, NULL) < 0)
                return MP_CLI_EXIT_HTTP;
        if (c->json)
                printf("{\"deleted\": \"%s\"}\n", id);
        else {
                printf("removed ");
                mp_cli_put_safe(stdout, target);
                if (strcmp(target, id) != 0)
                        printf(" (id %s)", id);
                printf("\n");
        }
        return MP_CLI_EXIT_OK;
}

int mp_cli_fn(int argc, char **argv) {
        const char *name = NULL, *handler = NULL, *description = NULL, *requirements = NULL,
                   *version = NULL, *visibility = NULL;
        bool help = false, json = false, pub = false, company = false, priv = false;
        const struct mp_cli_opt opts[] = {
                { "name", 0, MP_CLI_OPT_VALUE, &name, NULL },
                { "handler", 0, MP_CLI_OPT_VALUE, &handler, NULL },
                { "description", 0, MP_CLI_OPT_VALUE, &description, NULL },
                { "requirements", 0, MP_CLI_OPT_VALUE, &requirements, NULL },
                { "public", 0, MP_CLI_OPT_FLAG, &pub, NULL },
                { "company", 0, MP_CLI_OPT_FLAG, &company, NULL },
                { "private", 0, MP_CLI_OPT_FLAG, &priv, NULL },
                { "version", 0, MP_CLI_OPT_VALUE, &version, NULL },
                { "json", 0, MP_CLI_OPT_FLAG, &json, NULL },
                { "help", 'h', MP_CLI_OPT_FLAG, &help, NULL },
        };
        _cleanup_free_ char **pos = calloc((size_t) argc + 1, sizeof(char *));
        struct mp_cli c = { 0 };
        const char *sub;
        int npos, code;

        if (!pos)
                return MP_CLI_EXIT_HTTP;
        if (mp_cli_parse_args("fn", argc, argv, 1, opts, ELEMENTSOF(opts), pos, &npos) < 0)
                return MP_CLI_EXIT_USAGE;
        if (help) {
                fputs(fn_usage, stdout);
                return MP_CLI_EXIT_OK;
        }
        if (npos < 1) {
                fputs(fn_usage, stderr);
                return MP_CLI_EXIT_USAGE;
        }
        sub = pos[0];
        if (pub + company + priv > 1) {
                fprintf(stderr, "mecapy fn: give one of --public, --company, --private\n");
                return MP_CLI_EXIT_USAGE;
        }
        visibility = pub ? "public" : company ? "company" : priv ? "private" : NULL;
        if (strcmp(sub, "push") != 0 && (name || handler || description || requirements || visibility)) {
                fprintf(stderr, "mecapy fn %s: --name, --handler, --description, --requirements "
                                "and the visibility go with push\n", sub);
                return MP_CLI_EXIT_USAGE;
        }
        if (version && strcmp(sub, "show") != 0) {
                fprintf(stderr, "mecapy fn %s: --version goes with show\n", sub);
                return MP_CLI_EXIT_USAGE;
        }
        if (strcmp(sub, "push") != 0 && strcmp(sub, "ls") != 0 && strcmp(sub, "show") != 0 &&
            strcmp(sub, "rm") != 0) {
                fprintf(stderr, "mecapy fn: unknown command '");
                mp_cli_put_safe(stderr, sub);
                fprintf(stderr, "'\n%s", fn_usage);
                return MP_CLI_EXIT_USAGE;
        }
        if ((strcmp(sub, "ls") == 0 && npos != 1) || (strcmp(sub, "push") == 0 && npos != 2) ||
            ((strcmp(sub, "show") == 0 || strcmp(sub, "rm") == 0) && npos != 2)) {
                fprintf(stderr, "mecapy fn %s: wrong number of operands\n%s", sub, fn_usage);
                return MP_CLI_EXIT_USAGE;
        }
        if (mp_cli_session(&c, true) < 0) {
                mp_cli_done(&c);
                return MP_CLI_EXIT_HTTP;
        }
        c.json = json;
        if (strcmp(sub, "push") == 0)
                code = fn_push(&c, npos - 1, pos + 1, name, handler, description, visibility,
                               requirements);
        else if (strcmp(sub, "ls") == 0)
                code = fn_ls(&c);
        else if (strcmp(sub, "show") == 0)
                code = fn_show(&c, pos[1], version);
        else
                code = fn_rm(&c, pos[1]);
        mp_cli_done(&c);
        return code;
}

/* A small option parser for the verbs: long options (--name value, --name=value),
 * one-letter aliases, operands anywhere, "--" ends the options. No global state, so
 * the verbs and the unit test can call it any number of times. */
#include <string.h>

#include "cli/cli-internal.h"

static const struct mp_cli_opt *find(const struct mp_cli_opt *opts, size_t n,
                                     const char *name, size_t len, char short_name) {
        for (size_t i = 0; i < n; i++) {
                if (short_name ? opts[i].short_name == short_name
                               : strlen(opts[i].name) == len && memcmp(opts[i].name, name, len) == 0)
                        return &opts[i];
        }
        return NULL;
}

int mp_cli_parse_args(const char *verb, int argc, char **argv, int start,
                      const struct mp_cli_opt *opts, size_t n_opts,
                      char **ret_pos, int *ret_npos) {
        int npos = 0;

        for (int i = start; i < argc; i++) {
                const char *a = argv[i], *value = NULL;
                const struct mp_cli_opt *o;

                if (strcmp(a, "--") == 0) {
                        while (++i < argc)
                                ret_pos[npos++] = argv[i];
                        break;
                }
                if (a[0] != '-' || strcmp(a, "-") == 0) {
                        ret_pos[npos++] = argv[i];
                        continue;
                }
                if (a[1] == '-') {
                        const char *eq = strchr(a + 2, '=');
                        size_t len = eq ? (size_t) (eq - a - 2) : strlen(a + 2);
                        o = find(opts, n_opts, a + 2, len, 0);
                        if (eq)
                                value = eq + 1;
                } else if (a[2] == 0) {
                        o = find(opts, n_opts, NULL, 0, a[1]);
                } else {
                        o = NULL;
                }
                if (!o) {
                        fprintf(stderr, "mecapy %s: unknown option '", verb);
                        mp_cli_put_safe(stderr, a);
                        fprintf(stderr, "' (see mecapy %s --help)\n", verb);
                        return -EINVAL;
                }
                switch (o->kind) {
                case MP_CLI_OPT_FLAG:
                        if (value) {
                                fprintf(stderr, "mecapy %s: --%s takes no value\n", verb, o->name);
                                return -EINVAL;
                        }
                        *(bool *) o->ret = true;
                        break;
                case MP_CLI_OPT_VALUE:
                case MP_CLI_OPT_LIST:
                        if (!value) {
                                if (i + 1 >= argc) {
                                        fprintf(stderr, "mecapy %s: --%s needs a value\n", verb,
                                                o->name);
                                        return -EINVAL;
                                }
                                value = argv[++i];
                        }
                        *(const char **) o->ret = value;
                        break;
                case MP_CLI_OPT_OPTIONAL:
                        if (!value && i + 1 < argc &&
                            (strcmp(argv[i + 1], "-") == 0 ||
                             (argv[i + 1][0] != '-' && !strchr(argv[i + 1], '='))))
                                value = argv[++i];
                        if (value)
                                *(const char **) o->ret = value;
                        else
                                *o->flag = true;
                        break;
                }
        }
        *ret_npos = npos;
        return 0;
}

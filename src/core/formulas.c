/* A sheet's formulas typeset (docs/sheets.md#markdown-and-formulas): the LaTeX between
 * $ signs of a docstring is drawn by matplotlib's mathtext (tools/formulas.py, run as a
 * trusted child by mp_core_tool) as SVG, which the sheet shows as data: images. A formula is
 * drawn once: DATA_DIR/cache/formulas/<sha256>.svg keeps it (.err: mathtext cannot read
 * it), so a sheet already seen starts no process. */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/json.h"
#include "base/log.h"
#include "base/util.h"
#include "core/core-internal.h"

extern const char mp_formulas_py[];

#define FORMULA_SVG_MAX (256u << 10)
#define FORMULAS_TIMEOUT_S 60 /* the first run also builds matplotlib's font cache */

/* The cache file of a formula by its key ("D" or "I", then its text): the key's sha256. */
static int cache_path(struct mp_core *core, const char *key, const char *ext, char *buf, size_t size) {
        char hex[2 * crypto_hash_sha256_BYTES + 1];
        mp_core_sha256_hex(key, strlen(key), hex);
        return (size_t) snprintf(buf, size, "%s/cache/formulas/%s.%s", core->config->data_dir, hex, ext) < size
                       ? 0 : -ENAMETOOLONG;
}

/* A formula's SVG as a JSON string; null when it is too large to show. */
static json_t *svg_of(const char *svg, size_t n) {
        return n <= FORMULA_SVG_MAX ? json_stringn(svg, n) : json_null();
}

/* Write path whole or not at all (a temporary name of its own, then rename: two sheets
 * drawing one formula at once each rename a whole file). */
static void cache_put(const char *path, const char *data, size_t n) {
        char tmp[4400];
        snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);
        int fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return;
        bool ok = write(fd, data, n) == (ssize_t) n;
        close(fd);
        if (!ok || rename(tmp, path) < 0)
                unlink(tmp);
}

static const char *key_of(json_t *item, char *buf, size_t size) {
        snprintf(buf, size, "%c%s", json_is_true(json_object_get(item, "display")) ? 'D' : 'I',
                 json_string_value(json_object_get(item, "tex")) ?: "");
        return buf;
}

json_t *mp_core_formulas(struct mp_core *core, json_t *list) {
        _cleanup_json_ json_t *todo = json_array();
        json_t *out = json_object(), *item;
        char path[4300], key[MP_FORMULA_MAX_CHARS + 2];
        size_t i;

        if (!out || !todo) {
                json_decref(out);
                return NULL;
        }
        json_array_foreach(list, i, item) {
                char *svg = NULL;
                size_t n = 0;
                if (!json_is_string(json_object_get(item, "tex")) || json_object_get(out, key_of(item, key, sizeof(key))))
                        continue;
                if (cache_path(core, key, "svg", path, sizeof(path)) < 0)
                        continue;
                if (mp_read_file(path, FORMULA_SVG_MAX, &svg, &n) == 0) {
                        json_object_set_new(out, key, svg_of(svg, n));
                        free(svg);
                        continue;
                }
                (void) cache_path(core, key, "err", path, sizeof(path));
                if (access(path, F_OK) == 0) {
                        json_object_set_new(out, key, json_null());
                        continue;
                }
                json_object_set_new(out, key, json_null()); /* until drawn */
                json_array_append(todo, item);
        }
        if (!json_array_size(todo))
                return out;

        /* The ones not drawn yet, in one run of python3. */
        char cache[4300], mpl[4300], mpl_env[4400];
        snprintf(cache, sizeof(cache), "%s/cache/formulas", core->config->data_dir);
        snprintf(mpl, sizeof(mpl), "%s/cache/matplotlib", core->config->data_dir);
        snprintf(mpl_env, sizeof(mpl_env), "MPLCONFIGDIR=%s", mpl);
        if (mp_mkdir_p(cache, 0700) < 0 || mp_mkdir_p(mpl, 0700) < 0)
                return out;
        /* Debian's interpreter, where python3-matplotlib is (not one earlier on PATH). */
        const char *argv[] = { "/usr/bin/python3", "-I", "-c", mp_formulas_py, NULL };
        const char *envp[] = { "PATH=/usr/bin:/bin", "LANG=C.UTF-8", "SOURCE_DATE_EPOCH=0", mpl_env, NULL };
        _cleanup_free_ char *in = json_dumps(todo, JSON_COMPACT), *answer = NULL;
        size_t answer_len = 0;
        int r = in ? mp_core_tool(core, argv, envp, in, strlen(in), FORMULAS_TIMEOUT_S,
                                  json_array_size(todo) * FORMULA_SVG_MAX + 4096, &answer, &answer_len)
                   : -ENOMEM;
        _cleanup_json_ json_t *drawn = r == 0 ? json_loadb(answer, answer_len, 0, NULL) : NULL;
        if (!json_is_array(drawn) || json_array_size(drawn) != json_array_size(todo)) {
                /* Not cached: the next sheet tries again (matplotlib installed since). */
                mp_warn("the sheet's formulas could not be typeset (%s): shown as their source",
                        r ? strerror(-r) : "unreadable answer");
                return out;
        }
        json_array_foreach(todo, i, item) {
                json_t *d = json_array_get(drawn, i);
                const char *svg = json_string_value(json_object_get(d, "svg"));
                key_of(item, key, sizeof(key));
                if (svg && json_string_length(json_object_get(d, "svg")) <= FORMULA_SVG_MAX) {
                        (void) cache_path(core, key, "svg", path, sizeof(path));
                        cache_put(path, svg, strlen(svg));
                        json_object_set_new(out, key, svg_of(svg, strlen(svg)));
                } else {
                        (void) cache_path(core, key, "err", path, sizeof(path));
                        const char *why = json_string_value(json_object_get(d, "error")) ?: "too large";
                        cache_put(path, why, strlen(why));
                }
        }
        return out;
}

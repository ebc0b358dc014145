/* Calculation sheets (docs/sheets.md): a task, or a workflow run, as one printable HTML
 * page, and that page as PDF through weasyprint. Everything that comes from a user (names,
 * descriptions, the docstring, inputs, results, check names) is escaped: a hostile string
 * stays text. The page references nothing outside itself (figures are data: URIs, the
 * style is inline), so the PDF renderer has nothing to fetch. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/json.h"
#include "base/limits.h"
#include "base/log.h"
#include "blobs/blobs.h"
#include "core/core-internal.h"

extern char **environ;

#define SHEET_MAX_BYTES (64u << 20)        /* the page, figures included */
#define SHEET_FIGURE_MAX_BYTES (4u << 20)  /* one figure inlined; a larger one is a line of text */
#define SHEET_FIGURES_MAX_BYTES (16u << 20) /* all figures of a sheet */
#define SHEET_VALUE_MAX_CHARS 2000         /* one value's JSON shown; longer is cut, said so */
#define SHEET_PDF_TIMEOUT_S 60             /* weasyprint's time for one sheet */

static const char STYLE[] =
        "body{font-family:'DejaVu Sans',Arial,sans-serif;font-size:10pt;color:#111;margin:0 auto;max-width:190mm}"
        "h1{font-size:16pt;margin:0 0 4pt}h2{font-size:12pt;border-bottom:1px solid #444;margin:14pt 0 4pt}"
        "table{border-collapse:collapse;width:100%;margin:4pt 0}th,td{border:1px solid #999;padding:2pt 4pt;"
        "text-align:left;vertical-align:top}th{background:#eee}td.num{text-align:right;font-family:monospace}"
        "code,pre{font-family:'DejaVu Sans Mono',monospace;font-size:9pt}pre{white-space:pre-wrap;"
        "background:#f6f6f6;padding:4pt}.pass{color:#060}.fail{color:#a00;font-weight:bold}.note{color:#555;"
        "font-size:9pt}img{max-width:100%}img.formula{vertical-align:middle}img.formula.display{display:block;"
        "margin:4pt auto}@page{size:A4;margin:15mm;@bottom-right{content:counter(page) ' / ' "
        "counter(pages);font-size:8pt}}";

struct sheet {
        struct mp_buf b;
        size_t figure_bytes;
        json_t *formulas; /* collecting the docstring's formulas: [{"tex", "display"}] */
        json_t *typeset;  /* then showing them: mp_core_formulas' answer */
        bool untypeset;   /* one was shown as its source */
};

static void put(struct sheet *s, const char *text) {
        mp_buf_append(&s->b, text, strlen(text));
}

static void putn(struct sheet *s, const char *text, size_t n) {
        mp_buf_append(&s->b, text, n);
}

/* HTML-escaped text: &, <, >, " and ' become entities; control characters but tab and
 * newline are dropped. */
static void esc_n(struct sheet *s, const char *text, size_t n) {
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) text[i];
                switch (c) {
                case '&': put(s, "&amp;"); break;
                case '<': put(s, "&lt;"); break;
                case '>': put(s, "&gt;"); break;
                case '"': put(s, "&quot;"); break;
                case '\'': put(s, "&#39;"); break;
                default:
                        if (c >= 0x20 || c == '\n' || c == '\t')
                                putn(s, (const char *) &text[i], 1);
                }
        }
}

static void esc(struct sheet *s, const char *text) {
        if (text)
                esc_n(s, text, strlen(text));
}

static void putf(struct sheet *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct sheet *s, const char *fmt, ...) {
        char buf[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        put(s, buf);
}

static void time_of(json_t *v, char *buf, size_t size) {
        if (json_is_string(v)) {
                snprintf(buf, size, "%s", json_string_value(v));
                return;
        }
        if (!json_is_integer(v) || json_integer_value(v) <= 0) {
                snprintf(buf, size, "-");
                return;
        }
        time_t t = (time_t) (json_integer_value(v) / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(buf, size, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/* A value: a string as itself, anything else as its JSON (reals with the fewest digits). */
static void value(struct sheet *s, json_t *v) {
        if (!v) {
                put(s, "-");
                return;
        }
        if (json_is_string(v)) {
                size_t n = json_string_length(v);
                esc_n(s, json_string_value(v), n > SHEET_VALUE_MAX_CHARS ? SHEET_VALUE_MAX_CHARS : n);
                if (n > SHEET_VALUE_MAX_CHARS)
                        put(s, " <span class=\"note\">[cut]</span>");
                return;
        }
        _cleanup_free_ char *text = mp_json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        if (!text)
                return;
        size_t n = strlen(text);
        esc_n(s, text, n > SHEET_VALUE_MAX_CHARS ? SHEET_VALUE_MAX_CHARS : n);
        if (n > SHEET_VALUE_MAX_CHARS)
                put(s, " <span class=\"note\">[cut: the whole value is in the task's JSON]</span>");
}

static const char *unit_of(json_t *schema, const char *key) {
        return json_string_value(json_object_get(json_object_get(json_object_get(schema, "properties"), key), "x-unit"));
}

/* A table of name, value, unit; obj not an object: one row with its value. */
static void values_table(struct sheet *s, json_t *obj, json_t *schema) {
        const char *k;
        json_t *v;
        if (!json_is_object(obj)) {
                put(s, "<table><tr><th>value</th></tr><tr><td class=\"num\">");
                value(s, obj ? obj : json_null());
                put(s, "</td></tr></table>\n");
                return;
        }
        put(s, "<table><tr><th>name</th><th>value</th><th>unit</th></tr>\n");
        json_object_foreach(obj, k, v) {
                if (!strcmp(k, "checks") && json_is_array(v))
                        continue; /* its own table */
                put(s, "<tr><td>");
                esc(s, k);
                put(s, json_is_number(v) ? "</td><td class=\"num\">" : "</td><td>");
                value(s, v);
                put(s, "</td><td>");
                esc(s, unit_of(schema, k) ?: "");
                put(s, "</td></tr>\n");
        }
        put(s, "</table>\n");
}

/* --- Markdown: a small, safe subset ------------------------------------------------
 * Headings (#), bullet lists (- or *), fenced code (```), paragraphs, and inline `code`,
 * **strong** and *emphasis*. Nothing else becomes markup: links, images and raw HTML stay
 * text, escaped. Formulas between $ signs ($$ for one shown on its own line), on one line,
 * are typeset (formulas.c): "$5 and $6" is no formula, as in pandoc (no space inside
 * the signs, no digit right after the closing one). */

/* The formula at t[i] == '$': its length with the signs (0: none), its text and kind. */
static size_t formula_at(const char *t, size_t n, size_t i, const char **tex, size_t *tex_len, bool *display) {
        *display = i + 1 < n && t[i + 1] == '$';
        size_t open = *display ? 2 : 1;
        if (i > 0 && t[i - 1] == '\\')
                return 0;
        if (i + open >= n || t[i + open] == ' ' || t[i + open] == '$')
                return 0;
        for (size_t j = i + open + 1; j + open <= n; j++) {
                if (t[j] != '$' || t[j - 1] == ' ' || t[j - 1] == '\\')
                        continue;
                if (*display ? (j + 1 >= n || t[j + 1] != '$') : (j + 1 < n && t[j + 1] >= '0' && t[j + 1] <= '9'))
                        return 0;
                *tex = t + i + open;
                *tex_len = j - (i + open);
                return j + open - i;
        }
        return 0;
}

/* src="data:type;base64,..." of data, then the tag's end. */
static void put_data_src(struct sheet *s, const char *type, const void *data, size_t len) {
        size_t b64 = sodium_base64_encoded_len(len, sodium_base64_VARIANT_ORIGINAL);
        _cleanup_free_ char *enc = malloc(b64);
        if (!enc) {
                put(s, ">");
                return;
        }
        sodium_bin2base64(enc, b64, data, len, sodium_base64_VARIANT_ORIGINAL);
        putf(s, " src=\"data:%s;base64,", type);
        put(s, enc);
        put(s, "\">");
}

static void formula(struct sheet *s, const char *tex, size_t tex_len, bool display) {
        _cleanup_free_ char *key = malloc(tex_len + 2);
        json_t *img = NULL;
        if (!key)
                return;
        key[0] = display ? 'D' : 'I';
        memcpy(key + 1, tex, tex_len);
        key[tex_len + 1] = 0;
        if (s->formulas && !s->typeset) {
                if (tex_len <= MP_FORMULA_MAX_CHARS && strlen(key) == tex_len + 1 &&
                    json_array_size(s->formulas) < MP_FORMULAS_MAX)
                        json_array_append_new(s->formulas, json_pack("{s:s,s:b}", "tex", key + 1, "display", display));
        } else if (s->typeset)
                img = json_object_get(s->typeset, key);
        if (json_is_string(img)) {
                put(s, display ? "<img class=\"formula display\" alt=\"" : "<img class=\"formula\" alt=\"");
                esc_n(s, tex, tex_len);
                put(s, "\"");
                put_data_src(s, "image/svg+xml", json_string_value(img), json_string_length(img));
                return;
        }
        s->untypeset = true;
        put(s, "<code class=\"tex\">");
        esc_n(s, display ? "$$" : "$", display ? 2 : 1);
        esc_n(s, tex, tex_len);
        esc_n(s, display ? "$$" : "$", display ? 2 : 1);
        put(s, "</code>");
}

static void inline_md(struct sheet *s, const char *t, size_t n) {
        size_t i = 0, start = 0;
        while (i < n) {
                const char *mark = NULL, *tag = NULL, *tex;
                size_t mlen = 0, tex_len, span;
                bool display;
                if (t[i] == '$' && (span = formula_at(t, n, i, &tex, &tex_len, &display))) {
                        esc_n(s, t + start, i - start);
                        formula(s, tex, tex_len, display);
                        i += span;
                        start = i;
                        continue;
                }
                if (t[i] == '`')
                        mark = "`", mlen = 1, tag = "code";
                else if (i + 1 < n && t[i] == '*' && t[i + 1] == '*')
                        mark = "**", mlen = 2, tag = "strong";
                else if (t[i] == '*' && i + 1 < n && t[i + 1] != ' ')
                        mark = "*", mlen = 1, tag = "em";
                if (mark) {
                        const char *end = memmem(t + i + mlen, n - i - mlen, mark, mlen);
                        if (end && end > t + i + mlen) {
                                esc_n(s, t + start, i - start);
                                putf(s, "<%s>", tag);
                                esc_n(s, t + i + mlen, (size_t) (end - (t + i + mlen)));
                                putf(s, "</%s>", tag);
                                i = (size_t) (end - t) + mlen;
                                start = i;
                                continue;
                        }
                }
                i++;
        }
        esc_n(s, t + start, n - start);
}

static void markdown(struct sheet *s, const char *text) {
        enum { NONE, PARA, LIST, CODE } state = NONE;
        const char *line = text;
        while (line && *line) {
                const char *nl = strchr(line, '\n');
                size_t n = nl ? (size_t) (nl - line) : strlen(line);
                const char *t = line;
                size_t tn = n;
                while (tn && (*t == ' ' || *t == '\t'))
                        t++, tn--;
                while (tn && (t[tn - 1] == ' ' || t[tn - 1] == '\r'))
                        tn--;
                if (tn >= 3 && !strncmp(t, "```", 3)) {
                        if (state == CODE) {
                                put(s, "</pre>\n");
                                state = NONE;
                        } else {
                                put(s, state == PARA ? "</p>\n" : state == LIST ? "</ul>\n" : "");
                                put(s, "<pre>");
                                state = CODE;
                        }
                } else if (state == CODE) {
                        esc_n(s, line, n);
                        put(s, "\n");
                } else if (tn == 0) {
                        put(s, state == PARA ? "</p>\n" : state == LIST ? "</ul>\n" : "");
                        state = NONE;
                } else if (t[0] == '#') {
                        size_t level = 0;
                        while (level < tn && t[level] == '#')
                                level++;
                        put(s, state == PARA ? "</p>\n" : state == LIST ? "</ul>\n" : "");
                        state = NONE;
                        put(s, "<h3>");
                        size_t skip = level < tn && t[level] == ' ' ? level + 1 : level;
                        inline_md(s, t + skip, tn - skip);
                        put(s, "</h3>\n");
                } else if (tn >= 2 && (t[0] == '-' || t[0] == '*') && t[1] == ' ') {
                        if (state != LIST) {
                                put(s, state == PARA ? "</p>\n" : "");
                                put(s, "<ul>\n");
                                state = LIST;
                        }
                        put(s, "<li>");
                        inline_md(s, t + 2, tn - 2);
                        put(s, "</li>\n");
                } else {
                        if (state != PARA) {
                                put(s, state == LIST ? "</ul>\n" : "");
                                put(s, "<p>");
                                state = PARA;
                        } else {
                                put(s, "\n");
                        }
                        inline_md(s, t, tn);
                }
                line = nl ? nl + 1 : NULL;
        }
        put(s, state == PARA ? "</p>\n" : state == LIST ? "</ul>\n" : state == CODE ? "</pre>\n" : "");
}

/* The docstring: read once for its formulas, which are typeset together, then shown. */
static void docstring(struct mp_core *core, struct sheet *s, const char *text) {
        struct sheet probe = { .formulas = json_array() };
        markdown(&probe, text);
        mp_buf_free(&probe.b);
        s->typeset = json_array_size(probe.formulas) ? mp_core_formulas(core, probe.formulas) : NULL;
        json_decref(probe.formulas);
        s->untypeset = false;
        markdown(s, text);
        json_decref(s->typeset);
        s->typeset = NULL;
        if (s->untypeset)
                put(s, "<p class=\"note\">Formulas shown as LaTeX source could not be typeset (matplotlib's "
                       "mathtext reads a subset of LaTeX).</p>\n");
}

/* The handler's whole docstring, read from its code (the schema keeps its first paragraph
 * only): the triple-quoted string that opens the body of "def <handler>(", its indent
 * removed as Python's inspect.cleandoc does, "\\" read as "\". NULL when there is none;
 * malloc'ed. A scanner, not a parser: a docstring it cannot find is the schema's. */
static char *docstring_of(const char *code, const char *handler) {
        char pat[160];
        const char *p = NULL, *q;
        if (!code || !handler)
                return NULL;
        snprintf(pat, sizeof(pat), "def %s(", handler);
        for (q = code; (q = strstr(q, pat)); q++)
                if (q == code || q[-1] == '\n' || q[-1] == ' ') {
                        p = q + strlen(pat);
                        break;
                }
        if (!p)
                return NULL;
        int depth = 1;
        for (; *p && depth > 0; p++)
                depth += *p == '(' ? 1 : *p == ')' ? -1 : 0;
        while (*p && *p != ':')
                p++;
        if (!*p)
                return NULL;
        p++;
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
                p++;
        if (*p == 'r' || *p == 'R' || *p == 'u' || *p == 'U')
                p++;
        if (strncmp(p, "\"\"\"", 3) && strncmp(p, "'''", 3))
                return NULL;
        char quote[4] = { p[0], p[0], p[0], 0 };
        p += 3;
        const char *end = strstr(p, quote);
        if (!end)
                return NULL;
        /* The common indent of the non-blank lines after the first. */
        size_t indent = (size_t) -1;
        for (const char *l = p; l < end;) {
                const char *nl = memchr(l, '\n', (size_t) (end - l));
                if (!nl)
                        break;
                const char *c = nl + 1;
                size_t n = 0;
                while (c + n < end && (c[n] == ' ' || c[n] == '\t'))
                        n++;
                if (c + n < end && c[n] != '\n' && n < indent)
                        indent = n;
                l = c;
        }
        struct mp_buf b = { 0 };
        bool first = true;
        for (const char *l = p; l < end;) {
                const char *nl = memchr(l, '\n', (size_t) (end - l));
                const char *le = nl ? nl : end;
                size_t n = 0;
                while ((first || n < indent) && l + n < le && (l[n] == ' ' || l[n] == '\t'))
                        n++;
                for (const char *c = l + n; c < le; c++) {
                        if (c[0] == '\\' && c + 1 < le && c[1] == '\\')
                                c++;
                        mp_buf_append(&b, c, 1);
                }
                mp_buf_append(&b, "\n", 1);
                first = false;
                l = nl ? nl + 1 : end;
        }
        return mp_buf_steal(&b);
}

/* --- parts of a sheet --- */

static void head(struct sheet *s, const char *title) {
        put(s, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
               "<meta name=\"generator\" content=\"MecaPy " MECAPY_VERSION "\"><title>");
        esc(s, title);
        put(s, "</title><style>");
        put(s, STYLE);
        put(s, "</style></head><body>\n");
}

static void meta_row(struct sheet *s, const char *name, const char *text) {
        put(s, "<tr><th>");
        put(s, name);
        put(s, "</th><td>");
        esc(s, text ? text : "-");
        put(s, "</td></tr>\n");
}

static const char *image_type(const char *name) {
        static const struct { const char *ext, *type; } types[] = {
                { ".png", "image/png" }, { ".jpg", "image/jpeg" }, { ".jpeg", "image/jpeg" },
                { ".gif", "image/gif" }, { ".svg", "image/svg+xml" },
        };
        const char *dot = name ? strrchr(name, '.') : NULL;
        for (size_t i = 0; dot && i < ELEMENTSOF(types); i++)
                if (!strcasecmp(dot, types[i].ext))
                        return types[i].type;
        return NULL;
}

/* Figures: the task's image artifacts, inlined as data: URIs (an <img> never runs a
 * script, an SVG's included). row: the task row, with its artifacts' blob keys. */
static void figures(struct mp_core *core, struct sheet *s, json_t *row) {
        json_t *a;
        size_t i;
        bool any = false;
        json_array_foreach(json_object_get(row, "artifacts"), i, a) {
                const char *name = json_string_value(json_object_get(a, "name"));
                const char *key = json_string_value(json_object_get(a, "blob"));
                const char *type = image_type(name);
                json_int_t size = json_integer_value(json_object_get(a, "size"));
                if (!type || !key)
                        continue;
                if (!any)
                        put(s, "<h2>Figures</h2>\n");
                any = true;
                put(s, "<figure>");
                _cleanup_free_ char *data = NULL;
                _cleanup_error_ struct mp_error err = { 0 };
                size_t len = 0;
                if (size > (json_int_t) SHEET_FIGURE_MAX_BYTES ||
                    s->figure_bytes + (size_t) size > SHEET_FIGURES_MAX_BYTES ||
                    MP_BLOBS(core->blobs)->get(core->blobs, key, SHEET_FIGURE_MAX_BYTES, &data, &len, &err) < 0) {
                        put(s, "<p class=\"note\">(this figure is too large to be included, or cannot be read now; "
                               "it is the task's artifact)</p>");
                } else {
                        put(s, "<img alt=\"figure\"");
                        put_data_src(s, type, data, len);
                        s->figure_bytes += len;
                }
                put(s, "<figcaption>");
                esc(s, name);
                put(s, "</figcaption></figure>\n");
        }
}

static void checks(struct sheet *s, json_t *list) {
        json_t *c;
        size_t i;
        if (!json_is_array(list) || json_array_size(list) == 0)
                return;
        put(s, "<h2>Checks</h2>\n<table><tr><th>check</th><th>value</th><th>limit</th><th>unit</th>"
               "<th>utilisation</th><th>result</th></tr>\n");
        json_array_foreach(list, i, c) {
                json_t *passed = json_object_get(c, "passed");
                put(s, "<tr><td>");
                value(s, json_object_get(c, "name"));
                put(s, "</td><td class=\"num\">");
                value(s, json_object_get(c, "value"));
                put(s, "</td><td class=\"num\">");
                value(s, json_object_get(c, "limit"));
                put(s, "</td><td>");
                esc(s, json_string_value(json_object_get(c, "unit")) ?: "");
                put(s, "</td><td class=\"num\">");
                json_t *u = json_object_get(c, "utilisation");
                if (json_is_number(u))
                        putf(s, "%.3g", json_number_value(u));
                else
                        put(s, "-");
                put(s, "</td><td>");
                put(s, json_is_true(passed) ? "<span class=\"pass\">pass</span>"
                       : json_is_false(passed) ? "<span class=\"fail\">FAIL</span>" : "-");
                put(s, "</td></tr>\n");
        }
        put(s, "</table>\n");
}

static json_t *result_of(json_t *task) {
        json_t *rj = json_object_get(task, "result_json");
        if (!json_is_string(rj))
                return NULL;
        return json_loadb(json_string_value(rj), json_string_length(rj), JSON_DECODE_ANY, NULL);
}

static const char *email_of(struct mp_core *core, const char *user_id, char *buf, size_t size) {
        _cleanup_json_ json_t *u = NULL;
        _cleanup_error_ struct mp_error err = { 0 };
        if (!user_id)
                return NULL;
        if (MP_STORE(core->store)->user_get(core->store, "id", user_id, &u, &err) < 0)
                return user_id;
        snprintf(buf, size, "%s", json_string_value(json_object_get(u, "email")) ?: user_id);
        return buf;
}

/* The version's verification cases and review (verify.c, review.c), as the function's
 * page shows them: what a reader of a design report needs to know it was checked. */
static void verification_and_review(struct mp_core *core, struct sheet *s, json_t *ver) {
        _cleanup_json_ json_t *v = mp_verify_render(ver), *rv = mp_review_render(ver);
        char when[64], email[320];
        json_t *c;
        size_t i;

        put(s, "<h2>Verification</h2>\n");
        const char *st = json_string_value(json_object_get(v, "status")) ?: "none";
        json_t *cases = json_object_get(v, "cases");
        if (!strcmp(st, "none") || !json_array_size(cases)) {
                put(s, "<p class=\"note\">This version has no reference cases.</p>\n");
        } else {
                put(s, "<p>Reference cases: ");
                put(s, !strcmp(st, "passed") ? "<span class=\"pass\">passed</span>"
                       : !strcmp(st, "failed") ? "<span class=\"fail\">FAILED</span>" : "still running");
                put(s, "</p>\n<table><tr><th>case</th><th>source</th><th>expected</th><th>got</th>"
                       "<th>result</th></tr>\n");
                json_array_foreach(cases, i, c) {
                        put(s, "<tr><td>");
                        value(s, json_object_get(c, "name"));
                        put(s, "</td><td>");
                        esc(s, json_string_value(json_object_get(c, "source")) ?: "");
                        put(s, "</td><td>");
                        value(s, json_object_get(c, "expected"));
                        put(s, "</td><td>");
                        value(s, json_object_get(c, "got") ?: json_object_get(c, "error"));
                        put(s, "</td><td>");
                        put(s, json_is_true(json_object_get(c, "passed")) ? "<span class=\"pass\">pass</span>"
                                                                          : "<span class=\"fail\">FAIL</span>");
                        put(s, "</td></tr>\n");
                }
                put(s, "</table>\n");
        }
        put(s, "<h2>Review</h2>\n<p>");
        const char *rs = json_string_value(json_object_get(rv, "status")) ?: "draft";
        if (!strcmp(rs, "approved")) {
                time_of(json_object_get(rv, "at"), when, sizeof(when));
                put(s, "<span class=\"pass\">Approved</span> by ");
                esc(s, email_of(core, json_string_value(json_object_get(rv, "reviewer_id")), email, sizeof(email)) ?: "-");
                put(s, " on ");
                esc(s, when);
        } else {
                put(s, "Not approved: ");
                esc(s, rs);
        }
        put(s, ".</p>\n");
        json_t *comments = json_object_get(rv, "comments");
        if (json_array_size(comments)) {
                put(s, "<table><tr><th>when</th><th>who</th><th>step</th><th>comment</th></tr>\n");
                json_array_foreach(comments, i, c) {
                        time_of(json_object_get(c, "at"), when, sizeof(when));
                        put(s, "<tr><td>");
                        esc(s, when);
                        put(s, "</td><td>");
                        esc(s, email_of(core, json_string_value(json_object_get(c, "by")), email, sizeof(email)) ?: "-");
                        put(s, "</td><td>");
                        esc(s, json_string_value(json_object_get(c, "action")) ?: "");
                        put(s, "</td><td>");
                        esc(s, json_string_value(json_object_get(c, "comment")) ?: "");
                        put(s, "</td></tr>\n");
                }
                put(s, "</table>\n");
        }
}

/* The body of one task's sheet; level 2 (a whole page) or 3 (a node of a run). */
static int task_part(struct mp_core *core, const struct mp_principal *p, struct sheet *s, const char *id,
                     bool whole, struct mp_error *err) {
        _cleanup_json_ json_t *row = NULL, *task = NULL, *fn = NULL, *ver = NULL, *result = NULL;
        char when[64], buf[256], email[320];
        int r;

        if ((r = mp_core_task_load(core, p, id, &row, err)) < 0 ||
            (r = mp_core_task_get(core, p, id, &task, NULL, err)) < 0)
                return r;
        const char *fid = json_string_value(json_object_get(task, "function_id"));
        _cleanup_error_ struct mp_error ferr = { 0 };
        (void) MP_STORE(core->store)->function_get(core->store, fid ?: "", &fn, &ferr);
        mp_error_clear(&ferr);
        (void) MP_STORE(core->store)->function_get_version(core->store, fid ?: "",
                        (int) json_integer_value(json_object_get(task, "version")), &ver, &ferr);
        json_t *schema = json_object_get(ver, "input_schema");
        const char *name = json_string_value(json_object_get(fn, "name")) ?: fid;
        const char *description = json_string_value(json_object_get(fn, "description"));
        json_t *prov = json_object_get(task, "provenance");

        if (whole) {
                put(s, "<header><h1>Calculation sheet: ");
                esc(s, name);
                put(s, "</h1>\n");
        } else {
                put(s, "<section><h2>");
                esc(s, name);
                put(s, "</h2>\n");
        }
        if (description) {
                put(s, "<p>");
                esc(s, description);
                put(s, "</p>\n");
        }
        if (whole)
                put(s, "</header>\n");
        put(s, "<table class=\"meta\">\n");
        meta_row(s, "Task", id);
        snprintf(buf, sizeof(buf), "%s (id %s)", name ?: "-", fid ?: "-");
        meta_row(s, "Function", buf);
        snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(json_object_get(task, "version")));
        meta_row(s, "Version", buf);
        meta_row(s, "Code SHA-256", json_string_value(json_object_get(prov, "code_sha256")));
        meta_row(s, "Environment", json_string_value(json_object_get(prov, "environment")));
        meta_row(s, "Run by", email_of(core, json_string_value(json_object_get(row, "owner_id")), email, sizeof(email)));
        time_of(json_object_get(task, "started_at"), when, sizeof(when));
        meta_row(s, "Started", when);
        time_of(json_object_get(task, "finished_at"), when, sizeof(when));
        meta_row(s, "Finished", when);
        meta_row(s, "Status", json_string_value(json_object_get(task, "status")));
        put(s, "</table>\n");

        put(s, "<h2>Inputs</h2>\n");
        values_table(s, json_object_get(task, "inputs"), schema);
        json_t *given = json_object_get(task, "inputs_given");
        if (json_is_object(given) && !json_equal(given, json_object_get(task, "inputs"))) {
                put(s, "<p class=\"note\">As given (before conversion to the declared units):</p>\n");
                values_table(s, given, NULL);
        }
        put(s, "<h2>Results</h2>\n");
        result = result_of(task);
        if (!strcmp(json_string_value(json_object_get(task, "status")) ?: "", "completed")) {
                values_table(s, result ? result : json_null(), json_object_get(ver, "output_schema"));
        } else {
                put(s, "<p class=\"fail\">No result: the task ");
                esc(s, json_string_value(json_object_get(task, "status")));
                put(s, ".</p>\n");
                json_t *e = json_object_get(task, "error");
                if (e) {
                        put(s, "<pre>");
                        value(s, json_object_get(e, "message") ?: e);
                        put(s, "</pre>\n");
                }
        }
        json_t *ch = json_object_get(task, "checks");
        checks(s, json_is_array(ch) ? ch : json_object_get(result, "checks"));
        if (ver)
                verification_and_review(core, s, ver);
        figures(core, s, row);
        _cleanup_free_ char *whole_doc = docstring_of(json_string_value(json_object_get(ver, "code")),
                                                      json_string_value(json_object_get(ver, "handler")) ?: "main");
        const char *doc = whole_doc ? whole_doc : json_string_value(json_object_get(schema, "description"));
        if (doc && *doc) {
                put(s, "<h2>Method</h2>\n<div class=\"doc\">");
                docstring(core, s, doc);
                put(s, "</div>\n");
        }
        put(s, "<h2>Provenance</h2>\n<table>\n");
        meta_row(s, "Code SHA-256", json_string_value(json_object_get(prov, "code_sha256")));
        meta_row(s, "Environment", json_string_value(json_object_get(prov, "environment")));
        meta_row(s, "Inputs SHA-256", json_string_value(json_object_get(prov, "inputs_sha256")));
        meta_row(s, "Platform version", json_string_value(json_object_get(prov, "platform_version")));
        put(s, "</table>\n");
        if (!whole)
                put(s, "</section>\n");
        return 0;
}

static int finish(struct sheet *s, char **ret, size_t *ret_len, struct mp_error *err) {
        char when[64];
        _cleanup_json_ json_t *now = json_integer((json_int_t) mp_now_ms());
        time_of(now, when, sizeof(when));
        put(s, "<footer class=\"note\"><p>Made by MecaPy " MECAPY_VERSION " on ");
        esc(s, when);
        put(s, ".</p></footer>\n</body></html>\n");
        if (s->b.len > SHEET_MAX_BYTES) {
                mp_buf_free(&s->b);
                return mp_error_set(err, EFBIG, 413, "too_large", "the sheet would exceed %u MiB",
                                    SHEET_MAX_BYTES >> 20);
        }
        *ret_len = s->b.len;
        *ret = mp_buf_steal(&s->b);
        return *ret ? 0 : -ENOMEM;
}

int mp_core_task_sheet(struct mp_core *core, const struct mp_principal *p, const char *id, char **ret,
                       size_t *ret_len, struct mp_error *err) {
        struct sheet s = { 0 };
        char title[128];
        snprintf(title, sizeof(title), "Calculation sheet, task %.40s", id);
        head(&s, title);
        int r = task_part(core, p, &s, id, true, err);
        if (r < 0) {
                mp_buf_free(&s.b);
                return r;
        }
        return finish(&s, ret, ret_len, err);
}

int mp_core_run_sheet(struct mp_core *core, const struct mp_principal *p, const char *id, char **ret,
                      size_t *ret_len, struct mp_error *err) {
        _cleanup_json_ json_t *run = NULL;
        struct sheet s = { 0 };
        char title[128], when[64];
        int r;

        if ((r = mp_core_workflow_run_get(core, p, id, &run, NULL, err)) < 0)
                return r;
        snprintf(title, sizeof(title), "Calculation sheet, workflow run %.40s", id);
        head(&s, title);
        put(&s, "<header><h1>Calculation sheet: workflow run</h1></header>\n<table>\n");
        meta_row(&s, "Run", id);
        meta_row(&s, "Workflow", json_string_value(json_object_get(run, "workflow_id")));
        char buf[32];
        snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(json_object_get(run, "version")));
        meta_row(&s, "Version", buf);
        meta_row(&s, "Status", json_string_value(json_object_get(run, "status")));
        time_of(json_object_get(run, "started_at"), when, sizeof(when));
        meta_row(&s, "Started", when);
        time_of(json_object_get(run, "finished_at"), when, sizeof(when));
        meta_row(&s, "Finished", when);
        put(&s, "</table>\n<h2>Inputs</h2>\n");
        values_table(&s, json_object_get(run, "inputs"), NULL);
        put(&s, "<h2>Outputs</h2>\n");
        values_table(&s, json_object_get(run, "outputs") ?: json_null(), NULL);
        /* Each node: its task's own sheet part, or its state when it has no task. */
        size_t i;
        json_t *n;
        json_array_foreach(json_object_get(run, "nodes"), i, n) {
                const char *tid = json_string_value(json_object_get(n, "task_id"));
                if (tid && task_part(core, p, &s, tid, false, err) >= 0)
                        continue;
                mp_error_clear(err);
                put(&s, "<section><h2>Node ");
                esc(&s, json_string_value(json_object_get(n, "id")));
                put(&s, "</h2><p>");
                esc(&s, json_string_value(json_object_get(n, "status")));
                put(&s, "</p></section>\n");
        }
        return finish(&s, ret, ret_len, err);
}

/* --- PDF ---------------------------------------------------------------------------- */

int mp_core_sheet_pdf(struct mp_core *core, const char *html, size_t len, char **ret, size_t *ret_len,
                      struct mp_error *err) {
        /* The page references nothing but itself (data: figures, inline style), so
         * weasyprint has nothing to fetch; it reads the page on stdin, writes the PDF
         * on stdout. */
        const char *argv[] = { "weasyprint", "--quiet", "--base-url", core->scratch, "-", "-", NULL };
        int r = mp_core_tool(core, argv, (const char *const *) environ, html, len, SHEET_PDF_TIMEOUT_S,
                             SHEET_MAX_BYTES, ret, ret_len);
        switch (r) {
        case 0: return 0;
        case -ENOENT:
                return mp_error_set(err, ENOENT, 503, "unavailable",
                                    "PDF sheets need weasyprint on the server, which cannot be started");
        case -ETIMEDOUT:
                return mp_error_set(err, ETIMEDOUT, 503, "unavailable", "the PDF renderer took more than %d s",
                                    SHEET_PDF_TIMEOUT_S);
        case -EIO: return mp_error_set(err, EIO, 500, "internal", "the PDF renderer failed on this sheet");
        default: return mp_error_set(err, -r, 500, "internal", "the PDF renderer could not be run: %s", strerror(-r));
        }
}

/* A list design uploaded as .xlsx, read into the CSV text that the CSV upload takes
 * (design-csv.c), so both go through one parser. The reader is small and bounded: the
 * zip is read with libarchive (entries counted and sized before anything grows), the
 * first worksheet's XML and the shared strings are scanned, not parsed into a tree.
 * A formula, a macro project or an external link is refused: an uploaded design is
 * values, and the server evaluates nothing. */
#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/limits.h"
#include "core/core.h"

#define XLSX_READ_MAX_ENTRIES 256
#define XLSX_READ_MAX_ENTRY_BYTES (32u << 20) /* one unpacked part (the worksheet) */
#define XLSX_READ_MAX_TOTAL_BYTES (64u << 20) /* all the parts read */
#define XLSX_READ_MAX_STRINGS 1000000
#define XLSX_READ_MAX_COLUMNS 1024

static int refuse(struct mp_error *err, const char *fmt, const char *what) __attribute__((format(printf, 2, 0)));
static int refuse(struct mp_error *err, const char *fmt, const char *what) {
        char msg[512];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        snprintf(msg, sizeof(msg), fmt, what);
#pragma GCC diagnostic pop
        mp_error_add_field(err, "xlsx", "%s", msg);
        return mp_error_set(err, EINVAL, 422, "validation", "%s", msg);
}

/* The parts this reader needs, unpacked; a refused part makes it fail. */
struct parts {
        struct mp_buf sheet, strings;
        char sheet_name[128];
};

static int unpack(const char *data, size_t len, struct parts *pt, struct mp_error *err) {
        struct archive *a = archive_read_new();
        struct archive_entry *e;
        size_t entries = 0, total = 0;
        int r = 0;

        if (!a)
                return -ENOMEM;
        archive_read_support_format_zip(a);
        if (archive_read_open_memory(a, data, len) != ARCHIVE_OK) {
                archive_read_free(a);
                return refuse(err, "the body is not an .xlsx file (%s)", "not a zip archive");
        }
        while (r == 0 && archive_read_next_header(a, &e) == ARCHIVE_OK) {
                const char *name = archive_entry_pathname(e) ?: "";
                struct mp_buf *to = NULL;
                if (++entries > XLSX_READ_MAX_ENTRIES) {
                        r = refuse(err, "the .xlsx file has more than %s parts", "256");
                        break;
                }
                if (!strcasecmp(name, "xl/vbaProject.bin") || strstr(name, "externalLink") ||
                    strstr(name, "activeX")) {
                        r = refuse(err, "the .xlsx file holds macros or external links (%s): upload values only",
                                   name);
                        break;
                }
                if (!strcmp(name, "xl/sharedStrings.xml"))
                        to = &pt->strings;
                else if (!strncmp(name, "xl/worksheets/sheet", 19) && strstr(name, ".xml") &&
                         !strchr(name + 19, '/') &&
                         (!pt->sheet_name[0] || strcmp(name, pt->sheet_name) < 0)) {
                        /* The first worksheet: sheet1.xml, or the lowest name there is. */
                        pt->sheet.len = 0;
                        snprintf(pt->sheet_name, sizeof(pt->sheet_name), "%s", name);
                        to = &pt->sheet;
                }
                if (!to)
                        continue;
                char chunk[65536];
                la_ssize_t n;
                while ((n = archive_read_data(a, chunk, sizeof(chunk))) > 0) {
                        total += (size_t) n;
                        if (to->len + (size_t) n > XLSX_READ_MAX_ENTRY_BYTES || total > XLSX_READ_MAX_TOTAL_BYTES) {
                                r = refuse(err, "the .xlsx file unpacks to more than %s", "the upload limit");
                                break;
                        }
                        if (mp_buf_append(to, chunk, (size_t) n) < 0) {
                                r = -ENOMEM;
                                break;
                        }
                }
                if (r == 0 && n < 0)
                        r = refuse(err, "the .xlsx file is damaged (%s)", "a part cannot be unpacked");
        }
        archive_read_free(a);
        if (r == 0 && !pt->sheet_name[0])
                r = refuse(err, "the .xlsx file has no worksheet (%s)", "xl/worksheets/sheet1.xml");
        return r;
}

/* XML text between p and end, entities decoded, appended to b. */
static void xml_text(struct mp_buf *b, const char *p, const char *end) {
        while (p < end) {
                if (*p != '&') {
                        const char *amp = memchr(p, '&', (size_t) (end - p));
                        const char *stop = amp ? amp : end;
                        mp_buf_append(b, p, (size_t) (stop - p));
                        p = stop;
                        continue;
                }
                const char *semi = memchr(p, ';', (size_t) (end - p));
                size_t n = semi ? (size_t) (semi - p) : 0;
                unsigned long cp = 0;
                char out[5];
                size_t olen = 0;
                if (n == 4 && !memcmp(p, "&amp", 4))
                        out[olen++] = '&';
                else if (n == 3 && !memcmp(p, "&lt", 3))
                        out[olen++] = '<';
                else if (n == 3 && !memcmp(p, "&gt", 3))
                        out[olen++] = '>';
                else if (n == 5 && !memcmp(p, "&quot", 5))
                        out[olen++] = '"';
                else if (n == 5 && !memcmp(p, "&apos", 5))
                        out[olen++] = '\'';
                else if (n > 2 && p[1] == '#') {
                        cp = p[2] == 'x' ? strtoul(p + 3, NULL, 16) : strtoul(p + 2, NULL, 10);
                        if (cp < 0x80)
                                out[olen++] = (char) cp;
                        else if (cp < 0x800) {
                                out[olen++] = (char) (0xC0 | (cp >> 6));
                                out[olen++] = (char) (0x80 | (cp & 0x3F));
                        } else if (cp < 0x10000) {
                                out[olen++] = (char) (0xE0 | (cp >> 12));
                                out[olen++] = (char) (0x80 | ((cp >> 6) & 0x3F));
                                out[olen++] = (char) (0x80 | (cp & 0x3F));
                        } else if (cp < 0x110000) {
                                out[olen++] = (char) (0xF0 | (cp >> 18));
                                out[olen++] = (char) (0x80 | ((cp >> 12) & 0x3F));
                                out[olen++] = (char) (0x80 | ((cp >> 6) & 0x3F));
                                out[olen++] = (char) (0x80 | (cp & 0x3F));
                        }
                }
                if (!semi || (olen == 0 && cp == 0)) {
                        mp_buf_append(b, "&", 1);
                        p++;
                        continue;
                }
                mp_buf_append(b, out, olen);
                p = semi + 1;
        }
}

/* The text of every <t>...</t> between p and end (a rich string is several runs). */
static void runs_text(struct mp_buf *b, const char *p, const char *end) {
        const char *t;
        while ((t = memmem(p, (size_t) (end - p), "<t", 2))) {
                const char *gt = memchr(t, '>', (size_t) (end - t));
                if (!gt)
                        return;
                if (t[2] != '>' && t[2] != ' ') { /* <tag...> that only starts with t */
                        p = gt + 1;
                        continue;
                }
                const char *close = memmem(gt, (size_t) (end - gt), "</t>", 4);
                if (gt[-1] == '/') { /* <t/> */
                        p = gt + 1;
                        continue;
                }
                if (!close)
                        return;
                xml_text(b, gt + 1, close);
                p = close + 4;
        }
}

/* Shared strings: offsets of each <si>'s text in one buffer. */
struct strings {
        struct mp_buf text;
        size_t *off;
        size_t n;
};

static int read_strings(const struct mp_buf *xml, struct strings *s, struct mp_error *err) {
        const char *p = xml->data, *end = xml->data ? xml->data + xml->len : NULL;
        size_t cap = 0;
        while (p && p < end) {
                const char *si = memmem(p, (size_t) (end - p), "<si", 3);
                if (!si)
                        break;
                const char *close = memmem(si, (size_t) (end - si), "</si>", 5);
                const char *gt = memchr(si, '>', (size_t) (end - si));
                if (!gt)
                        break;
                if (s->n == cap) {
                        if (cap >= XLSX_READ_MAX_STRINGS)
                                return refuse(err, "the .xlsx file has more than %s strings", "1000000");
                        cap = cap ? cap * 2 : 256;
                        size_t *o = realloc(s->off, (cap + 1) * sizeof(*o));
                        if (!o)
                                return -ENOMEM;
                        s->off = o;
                }
                s->off[s->n++] = s->text.len;
                if (gt[-1] != '/' && close)
                        runs_text(&s->text, gt + 1, close);
                mp_buf_append(&s->text, "", 1); /* NUL between strings */
                p = close ? close + 5 : gt + 1;
        }
        return 0;
}

/* The attribute name="..." of the tag between p and gt; NULL when absent. */
static const char *attr(const char *p, const char *gt, const char *name, size_t *ret_len) {
        size_t n = strlen(name);
        for (const char *a = p; a + n + 2 < gt; a++)
                if ((a[-1] == ' ' || a[-1] == '\t' || a[-1] == '\n') && !memcmp(a, name, n) && a[n] == '=' &&
                    (a[n + 1] == '"' || a[n + 1] == '\'')) {
                        const char *v = a + n + 2, *q = memchr(v, a[n + 1], (size_t) (gt - v));
                        if (!q)
                                return NULL;
                        *ret_len = (size_t) (q - v);
                        return v;
                }
        return NULL;
}

static void csv_quoted(struct mp_buf *b, const char *s, size_t n) {
        mp_buf_append(b, "\"", 1);
        for (size_t i = 0; i < n; i++) {
                mp_buf_append(b, s + i, 1);
                if (s[i] == '"')
                        mp_buf_append(b, "\"", 1);
        }
        mp_buf_append(b, "\"", 1);
}

int mp_xlsx_to_csv(const char *data, size_t len, char **ret, size_t *ret_len, struct mp_error *err) {
        struct parts pt = { 0 };
        struct strings ss = { 0 };
        struct mp_buf out = { 0 }, cell = { 0 };
        int r = unpack(data, len, &pt, err);
        if (r == 0)
                r = read_strings(&pt.strings, &ss, err);
        const char *p = pt.sheet.data, *end = p ? p + pt.sheet.len : NULL;
        long last_row = 0, ncols = -1;
        while (r == 0 && p && p < end) {
                const char *row = memmem(p, (size_t) (end - p), "<row", 4);
                if (!row)
                        break;
                const char *rgt = memchr(row, '>', (size_t) (end - row));
                const char *rclose = rgt && rgt[-1] != '/' ? memmem(rgt, (size_t) (end - rgt), "</row>", 6) : NULL;
                if (!rgt)
                        break;
                if (!rclose) { /* an empty <row/> */
                        p = rgt + 1;
                        continue;
                }
                size_t rl;
                const char *rn = attr(row, rgt, "r", &rl);
                long rownum = rn ? strtol(rn, NULL, 10) : last_row + 1;
                /* Skipped rows are empty lines of the CSV: none, they would be points. */
                if (last_row)
                        mp_buf_append(&out, "\r\n", 2);
                last_row = rownum;
                long col = 0;
                for (const char *c = rgt; r == 0 && (c = memmem(c, (size_t) (rclose - c), "<c", 2));) {
                        const char *cgt = memchr(c, '>', (size_t) (rclose - c));
                        if (!cgt)
                                break;
                        if (c[2] != ' ' && c[2] != '>' && c[2] != '/') {
                                c = cgt;
                                continue;
                        }
                        size_t refl = 0, tl = 0;
                        const char *ref = attr(c, cgt, "r", &refl), *type = attr(c, cgt, "t", &tl);
                        long target = 0;
                        for (size_t i = 0; ref && i < refl && ref[i] >= 'A' && ref[i] <= 'Z'; i++)
                                target = target * 26 + (ref[i] - 'A' + 1);
                        target = target ? target - 1 : col;
                        if (target >= XLSX_READ_MAX_COLUMNS) {
                                r = refuse(err, "the worksheet has more than %s columns", "1024");
                                break;
                        }
                        for (; col < target; col++)
                                mp_buf_append(&out, ",", 1);
                        const char *cclose = cgt[-1] == '/' ? cgt + 1 : memmem(cgt, (size_t) (rclose - cgt), "</c>", 4);
                        if (!cclose)
                                break;
                        if (memmem(cgt, (size_t) (cclose - cgt), "<f", 2)) {
                                char where[32];
                                snprintf(where, sizeof(where), "%.*s", (int) MP_MIN(refl, 16u), ref ? ref : "?");
                                r = refuse(err, "cell %s holds a formula: upload values only (paste as values)", where);
                                break;
                        }
                        const char *v = memmem(cgt, (size_t) (cclose - cgt), "<v>", 3);
                        const char *vend = v ? memmem(v, (size_t) (cclose - v), "</v>", 4) : NULL;
                        cell.len = 0;
                        if (type && tl == 9 && !memcmp(type, "inlineStr", 9)) {
                                runs_text(&cell, cgt, cclose);
                                csv_quoted(&out, cell.data ?: "", cell.len);
                        } else if (v && vend && type && tl == 1 && type[0] == 's') {
                                unsigned long i = strtoul(v + 3, NULL, 10);
                                const char *s = i < ss.n ? ss.text.data + ss.off[i] : "";
                                csv_quoted(&out, s, strlen(s));
                        } else if (v && vend && type && tl == 3 && !memcmp(type, "str", 3)) {
                                xml_text(&cell, v + 3, vend);
                                csv_quoted(&out, cell.data ?: "", cell.len);
                        } else if (v && vend && type && tl == 1 && type[0] == 'b') {
                                mp_buf_append(&out, v[3] == '1' ? "true" : "false", v[3] == '1' ? 4 : 5);
                        } else if (v && vend && type && tl == 1 && type[0] == 'e') {
                                char where[32];
                                snprintf(where, sizeof(where), "%.*s", (int) MP_MIN(refl, 16u), ref ? ref : "?");
                                r = refuse(err, "cell %s holds an error value", where);
                                break;
                        } else if (v && vend) {
                                /* A number as Excel wrote it ("0.1", "2E-3"): the CSV parser reads it. */
                                for (const char *q = v + 3; q < vend; q++)
                                        if (!strchr("0123456789+-.eE", *q)) {
                                                r = refuse(err, "a cell holds a value that is not a number (%s)",
                                                           "numeric cell");
                                                break;
                                        }
                                mp_buf_append(&out, v + 3, (size_t) (vend - v - 3));
                        }
                        c = cclose;
                }
                /* Every line as wide as the header: trailing empty cells are not written. */
                if (ncols < 0)
                        ncols = col + 1;
                for (; col + 1 < ncols; col++)
                        mp_buf_append(&out, ",", 1);
                p = rclose + 6;
        }
        if (r == 0)
                mp_buf_append(&out, "\r\n", 2);
        mp_buf_free(&pt.sheet);
        mp_buf_free(&pt.strings);
        mp_buf_free(&ss.text);
        mp_buf_free(&cell);
        free(ss.off);
        if (r < 0) {
                mp_buf_free(&out);
                return r;
        }
        *ret_len = out.len;
        *ret = mp_buf_steal(&out);
        return *ret ? 0 : -ENOMEM;
}

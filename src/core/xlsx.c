/* Spreadsheets (docs/sheets.md#spreadsheets): tables written as .xlsx by libxlsxwriter,
 * one row at a time (its constant-memory mode: a row is flushed to a temporary file as
 * soon as the next begins), then read back whole as the answer's bytes. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xlsxwriter.h>

#include "base/json.h"
#include "core/core.h"

#define XLSX_MAX_BYTES (256u << 20) /* the written file */
#define XLSX_MAX_ROWS 1048575u      /* Excel's rows, less the header */
#define XLSX_CELL_MAX 32767u        /* Excel's characters in one cell */

struct mp_xlsx {
        lxw_workbook *wb;
        lxw_worksheet *ws;
        lxw_format *bold;
        char path[4200];
        uint32_t row;
        bool failed;
};

struct mp_xlsx *mp_xlsx_free(struct mp_xlsx *x) {
        if (!x)
                return NULL;
        if (x->wb)
                workbook_close(x->wb); /* writes the file; it is removed below */
        if (x->path[0])
                unlink(x->path);
        free(x);
        return NULL;
}

int mp_xlsx_new(const char *dir, const char *sheet_name, struct mp_xlsx **ret) {
        struct mp_xlsx *x = calloc(1, sizeof(*x));
        if (!x)
                return -ENOMEM;
        if ((size_t) snprintf(x->path, sizeof(x->path), "%s/xlsx-XXXXXX", dir) >= sizeof(x->path)) {
                free(x);
                return -ENAMETOOLONG;
        }
        int fd = mkostemp(x->path, O_CLOEXEC);
        if (fd < 0) {
                x->path[0] = 0;
                mp_xlsx_free(x);
                return -errno;
        }
        close(fd);
        lxw_workbook_options opts = { .constant_memory = LXW_TRUE, .tmpdir = (char *) dir };
        x->wb = workbook_new_opt(x->path, &opts);
        x->ws = x->wb ? workbook_add_worksheet(x->wb, sheet_name) : NULL;
        x->bold = x->wb ? workbook_add_format(x->wb) : NULL;
        if (!x->ws || !x->bold) {
                mp_xlsx_free(x);
                return -ENOMEM;
        }
        format_set_bold(x->bold);
        *ret = x;
        return 0;
}

static void cell_string(struct mp_xlsx *x, uint16_t col, const char *s, size_t n, lxw_format *f) {
        char *copy = NULL;
        if (n > XLSX_CELL_MAX) {
                n = XLSX_CELL_MAX;
                /* Cut on a UTF-8 character's start. */
                while (n && ((unsigned char) s[n] & 0xC0) == 0x80)
                        n--;
        }
        if (s[n] != 0 || strlen(s) != n) {
                copy = strndup(s, n);
                if (!copy) {
                        x->failed = true;
                        return;
                }
                s = copy;
        }
        if (worksheet_write_string(x->ws, x->row, col, s, f) != LXW_NO_ERROR)
                x->failed = true;
        free(copy);
}

int mp_xlsx_row(struct mp_xlsx *x, json_t *values, bool header) {
        size_t i;
        json_t *v;
        if (x->row > XLSX_MAX_ROWS)
                return -EFBIG;
        json_array_foreach(values, i, v) {
                if (i > 16383)
                        break; /* Excel's columns */
                uint16_t col = (uint16_t) i;
                if (!v || json_is_null(v))
                        continue;
                if (json_is_string(v))
                        cell_string(x, col, json_string_value(v), json_string_length(v), header ? x->bold : NULL);
                else if (json_is_number(v))
                        worksheet_write_number(x->ws, x->row, col, json_number_value(v), NULL);
                else if (json_is_boolean(v))
                        worksheet_write_boolean(x->ws, x->row, col, json_is_true(v), NULL);
                else {
                        _cleanup_free_ char *text = mp_json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                        if (text)
                                cell_string(x, col, text, strlen(text), NULL);
                }
        }
        x->row++;
        return x->failed ? -EIO : 0;
}

int mp_xlsx_finish(struct mp_xlsx *x, char **ret, size_t *ret_len) {
        lxw_error e = workbook_close(x->wb);
        x->wb = NULL;
        if (e != LXW_NO_ERROR || x->failed)
                return -EIO;
        int fd = open(x->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        off_t size = lseek(fd, 0, SEEK_END);
        if (size < 0 || (uint64_t) size > XLSX_MAX_BYTES || lseek(fd, 0, SEEK_SET) < 0) {
                close(fd);
                return size < 0 ? -errno : -EFBIG;
        }
        char *data = malloc((size_t) size + 1);
        size_t got = 0;
        while (data && got < (size_t) size) {
                ssize_t n = read(fd, data + got, (size_t) size - got);
                if (n <= 0)
                        break;
                got += (size_t) n;
        }
        close(fd);
        if (!data || got != (size_t) size) {
                free(data);
                return data ? -EIO : -ENOMEM;
        }
        *ret = data;
        *ret_len = got;
        return 0;
}

/* A header cell: the name, and its unit in brackets when known. */
static json_t *header_cell(const char *name, const char *unit) {
        if (!unit || !*unit)
                return json_string(name);
        size_t n = strlen(name) + strlen(unit) + 4;
        _cleanup_free_ char *s = malloc(n);
        if (!s)
                return NULL;
        snprintf(s, n, "%s [%s]", name, unit);
        return json_string(s);
}

json_t *mp_xlsx_header_cell(const char *name, const char *unit) {
        return header_cell(name, unit);
}

/* core/: a user's data as one zip archive (GET /api/v1/me/export, docs/api.md#export):
 * every function they own (deleted ones too) with every version's code and metadata,
 * and every task they own with its inputs, result, error, logs and artifacts, listed
 * by a manifest.json.
 *
 * The archive is written by libarchive into a temporary file that is unlinked at once
 * (it vanishes with its descriptor): memory holds one object at a time and the
 * manifest, and the content is capped at MP_MAX_EXPORT_BYTES. */
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/json.h"
#include "base/limits.h"
#include "base/log.h"
#include "blobs/blobs.h"
#include "core/core-internal.h"

struct zip {
        struct archive *a;
        uint64_t total; /* content bytes so far */
        time_t now;
};

static int zip_add(struct zip *z, const char *path, const void *data, size_t len, struct mp_error *err) {
        struct archive_entry *e;
        int r = 0;

        if (z->total + len > MP_MAX_EXPORT_BYTES)
                return mp_error_set(err, EFBIG, 413, "too_large",
                                    "your data is more than the %llu bytes an export holds: delete tasks you "
                                    "no longer need, or ask an operator", (unsigned long long) MP_MAX_EXPORT_BYTES);
        if (!(e = archive_entry_new()))
                return -ENOMEM;
        archive_entry_set_pathname(e, path);
        archive_entry_set_size(e, (la_int64_t) len);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_mtime(e, z->now, 0);
        if (archive_write_header(z->a, e) != ARCHIVE_OK ||
            (len && archive_write_data(z->a, data, len) != (la_ssize_t) len))
                r = mp_error_set(err, EIO, 500, "storage", "writing the export (%s): %s", path,
                                 archive_error_string(z->a) ?: "failed");
        archive_entry_free(e);
        z->total += len;
        return r;
}

static int zip_json(struct zip *z, const char *path, json_t *j, struct mp_error *err) {
        _cleanup_free_ char *text = mp_json_dumps(j, JSON_INDENT(1) | JSON_ENCODE_ANY | JSON_SORT_KEYS);
        return text ? zip_add(z, path, text, strlen(text), err) : -ENOMEM;
}

/* The object a row names in field (at most max bytes) into the archive at path; the
 * manifest's files[name] = path. An object the row names that cannot be read is a 503:
 * an export never leaves out silently what the platform holds. */
static int zip_object(struct zip *z, struct mp_core *core, const char *key, size_t max, const char *path,
                      const char *what, const char *task_id, json_t *files, const char *name,
                      struct mp_error *err) {
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r = MP_BLOBS(core->blobs)->get(core->blobs, key, max, &data, &len, err);

        if (r < 0) {
                mp_err("export: the %s of task %s (object %s) cannot be read: %s", what, task_id, key, err->message);
                mp_error_clear(err);
                return mp_error_set(err, EAGAIN, 503, "unavailable",
                                    "the %s of task %s is kept in the object store, which cannot be read now; "
                                    "try the export again later", what, task_id);
        }
        if ((r = zip_add(z, path, data, len, err)) < 0)
                return r;
        return json_object_set_new(files, name, json_string(path));
}

/* A file name from what a user called an artifact: [A-Za-z0-9._-] kept, the rest '_'. */
static void safe_name(const char *name, char *out, size_t size) {
        size_t n = 0;
        for (; name && *name && n + 1 < size && n < 100; name++) {
                char c = *name;
                bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                          c == '.' || c == '_' || c == '-';
                out[n] = ok && !(n == 0 && c == '.') ? c : '_';
                n++;
        }
        out[n] = 0;
}

static int export_task(struct zip *z, struct mp_core *core, const char *id, json_t *manifest_tasks,
                       struct mp_error *err) {
        static const char *const times[] = { "queued_at", "started_at", "finished_at", NULL };
        static const char *const drop[] = { "owner_id", "company_id", "worker_id", "idempotency_key", "result_json",
                                            "result_blob", "logs_blob", "error_blob", "logs", "error", "inputs",
                                            "artifacts", "cache_key", "logs_truncated", NULL };
        _cleanup_json_ json_t *t = NULL, *files = json_object(), *arts = json_array();
        char path[256], name[128];
        const char *key;
        json_t *a, *v;
        size_t i;
        int r = MP_STORE(core->store)->task_get(core->store, id, &t, err);

        if (r == -ENOENT) { /* deleted while we listed */
                mp_error_clear(err);
                return 0;
        }
        if (r < 0)
                return r;
        if (!files || !arts)
                return -ENOMEM;
        snprintf(path, sizeof(path), "tasks/%s/inputs.json", id);
        if ((r = zip_json(z, path, json_object_get(t, "inputs"), err)) < 0)
                return r;
        json_object_set_new(files, "inputs", json_string(path));

        snprintf(path, sizeof(path), "tasks/%s/result.json", id);
        v = json_object_get(t, "result_json");
        if ((key = json_string_value(json_object_get(t, "result_blob"))))
                r = zip_object(z, core, key, MP_MAX_RESULT_BYTES + 1, path, "result", id, files, "result", err);
        else if (json_is_string(v) && (r = zip_add(z, path, json_string_value(v), json_string_length(v), err)) >= 0)
                r = json_object_set_new(files, "result", json_string(path));
        if (r < 0)
                return r;

        snprintf(path, sizeof(path), "tasks/%s/error.json", id);
        v = json_object_get(t, "error");
        if ((key = json_string_value(json_object_get(t, "error_blob"))))
                r = zip_object(z, core, key, MP_MAX_RESULT_BYTES + 1, path, "error", id, files, "error", err);
        else if (v && !json_is_null(v) && (r = zip_json(z, path, v, err)) >= 0)
                r = json_object_set_new(files, "error", json_string(path));
        if (r < 0)
                return r;

        snprintf(path, sizeof(path), "tasks/%s/logs.txt", id);
        v = json_object_get(t, "logs");
        if ((key = json_string_value(json_object_get(t, "logs_blob"))))
                r = zip_object(z, core, key, MP_MAX_LOG_BYTES + 1, path, "logs", id, files, "logs", err);
        else if (json_string_length(v) && (r = zip_add(z, path, json_string_value(v), json_string_length(v), err)) >= 0)
                r = json_object_set_new(files, "logs", json_string(path));
        if (r < 0)
                return r;

        json_array_foreach(json_object_get(t, "artifacts"), i, a) {
                _cleanup_json_ json_t *one = json_object();
                safe_name(json_string_value(json_object_get(a, "name")), name, sizeof(name));
                snprintf(path, sizeof(path), "tasks/%s/artifacts/%zu-%s", id, i, name);
                if (!one || (r = zip_object(z, core, json_string_value(json_object_get(a, "blob")) ?: "",
                                            MP_MAX_ARTIFACT_BYTES, path, "artifact", id, one, "path", err)) < 0)
                        return one ? r : -ENOMEM;
                json_object_set(one, "name", json_object_get(a, "name"));
                json_object_set(one, "size", json_object_get(a, "size"));
                json_array_append(arts, one);
        }
        json_object_set(files, "artifacts", arts);
        json_object_set_new(t, "logs_truncated", json_boolean(json_integer_value(json_object_get(t, "logs_truncated"))));
        mp_core_shape(t, times, drop);
        json_object_set(t, "files", files);
        return json_array_append(manifest_tasks, t);
}

static int export_tasks(struct zip *z, struct mp_core *core, const struct mp_principal *p, json_t *manifest_tasks,
                        struct mp_error *err) {
        _cleanup_free_ char *cursor = NULL;
        int r;

        do {
                _cleanup_json_ json_t *filter = json_pack("{s:s,s:i}", "owner_id", p->user_id, "limit", MP_MAX_PAGE);
                struct mp_store_list list = { 0 };
                json_t *row;
                size_t i;

                if (!filter)
                        return -ENOMEM;
                if (cursor)
                        json_object_set_new(filter, "cursor", json_string(cursor));
                if ((r = MP_STORE(core->store)->task_list(core->store, filter, &list, err)) < 0)
                        return r;
                json_array_foreach(list.items, i, row)
                        if ((r = export_task(z, core, json_string_value(json_object_get(row, "id")), manifest_tasks,
                                             err)) < 0)
                                break;
                json_decref(list.items);
                free(cursor);
                cursor = list.next_cursor;
                if (r < 0)
                        return r;
        } while (cursor);
        return 0;
}

static int export_functions(struct zip *z, struct mp_core *core, const struct mp_principal *p,
                            json_t *manifest_fns, struct mp_error *err) {
        static const char *const fn_times[] = { "created_at", "updated_at", "deleted_at", NULL };
        static const char *const fn_drop[] = { "owner_id", "company_id", "search", NULL };
        static const char *const v_times[] = { "created_at", NULL };
        static const char *const v_drop[] = { "code", "function_id", NULL };
        _cleanup_json_ json_t *fns = NULL;
        json_t *fn;
        size_t i;
        int r;

        if ((r = MP_STORE(core->store)->function_list_owned(core->store, p->user_id, &fns, err)) < 0)
                return r;
        json_array_foreach(fns, i, fn) {
                const char *fid = json_string_value(json_object_get(fn, "id"));
                _cleanup_json_ json_t *versions = json_array();
                json_int_t latest = json_integer_value(json_object_get(fn, "latest_version"));

                if (!versions)
                        return -ENOMEM;
                for (json_int_t v = 1; v <= latest; v++) {
                        _cleanup_json_ json_t *ver = NULL;
                        char path[256];
                        json_t *code;

                        r = MP_STORE(core->store)->function_get_version(core->store, fid, (int) v, &ver, err);
                        if (r == -ENOENT) {
                                mp_error_clear(err);
                                continue;
                        }
                        if (r < 0)
                                return r;
                        code = json_object_get(ver, "code");
                        snprintf(path, sizeof(path), "functions/%s/%" JSON_INTEGER_FORMAT "/code.py", fid, v);
                        if ((r = zip_add(z, path, json_string_value(code) ?: "", json_string_length(code), err)) < 0)
                                return r;
                        mp_core_shape(ver, v_times, v_drop);
                        json_object_set_new(ver, "code", json_string(path));
                        snprintf(path, sizeof(path), "functions/%s/%" JSON_INTEGER_FORMAT "/version.json", fid, v);
                        if ((r = zip_json(z, path, ver, err)) < 0)
                                return r;
                        json_array_append(versions, ver);
                }
                /* 0 is "live": null reads better than the epoch in an export. */
                if (json_integer_value(json_object_get(fn, "deleted_at")) == 0)
                        json_object_set_new(fn, "deleted_at", json_null());
                mp_core_shape(fn, fn_times, fn_drop);
                json_object_set(fn, "versions", versions);
                json_array_append(manifest_fns, fn);
        }
        return 0;
}

/* A file that vanishes with its descriptor, in the data folder's tmp/ (not /tmp: it may
 * be far larger than a tmpfs). */
static int tmp_file(struct mp_core *core, struct mp_error *err) {
        const char *dir = core->scratch;
        char path[4200];
        int fd;

        fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0)
                return fd;
        snprintf(path, sizeof(path), "%s/.export-XXXXXX", dir); /* no O_TMPFILE on this file system */
        fd = mkostemp(path, O_CLOEXEC);
        if (fd < 0)
                return mp_error_set(err, errno, 500, "storage", "cannot make the export's temporary file in %s: %s",
                                    dir, strerror(errno));
        unlink(path);
        return fd;
}

int mp_core_export(struct mp_core *core, const struct mp_principal *p, int *ret_fd, uint64_t *ret_size,
                   struct mp_error *err) {
        _cleanup_json_ json_t *manifest = NULL, *fns = json_array(), *tasks = json_array();
        _cleanup_close_ int fd = -1;
        struct zip z = { .now = time(NULL) };
        struct stat st;
        int r;

        if (!fns || !tasks)
                return -ENOMEM;
        if ((fd = tmp_file(core, err)) < 0)
                return fd;
        if (!(z.a = archive_write_new()))
                return -ENOMEM;
        if (archive_write_set_format_zip(z.a) != ARCHIVE_OK || archive_write_open_fd(z.a, fd) != ARCHIVE_OK) {
                r = mp_error_set(err, EIO, 500, "internal", "cannot start the export's archive: %s",
                                 archive_error_string(z.a) ?: "failed");
                archive_write_free(z.a);
                return r;
        }
        if ((r = export_functions(&z, core, p, fns, err)) >= 0 && (r = export_tasks(&z, core, p, tasks, err)) >= 0) {
                char at[40];
                mp_format_time(mp_now_ms(), at, sizeof(at));
                manifest = json_pack("{s:s,s:i,s:s,s:{s:s,s:s},s:O,s:O}", "format", "mecapy-export", "version", 1,
                                     "exported_at", at, "user", "id", p->user_id, "email", p->email, "functions",
                                     fns, "tasks", tasks);
                r = manifest ? zip_json(&z, "manifest.json", manifest, err) : -ENOMEM;
        }
        if (archive_write_close(z.a) != ARCHIVE_OK && r >= 0)
                r = mp_error_set(err, EIO, 500, "storage", "finishing the export: %s",
                                 archive_error_string(z.a) ?: "failed");
        archive_write_free(z.a);
        if (r < 0)
                return r;
        if (fstat(fd, &st) < 0 || lseek(fd, 0, SEEK_SET) < 0)
                return mp_error_set(err, errno, 500, "storage", "reading the export back: %s", strerror(errno));
        *ret_size = (uint64_t) st.st_size;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* Trusted helper programs run as children of the server: weasyprint for PDF sheets,
 * python3 with matplotlib for a sheet's formulas. They never run user code; what they
 * read is data. Their input and output go through temporary files in the data folder's
 * tmp/ (core->scratch), removed before the answer. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "core/core-internal.h"

/* An anonymous file in dir, or a named one removed at once where O_TMPFILE is missing. */
static int scratch_file(const char *dir) {
        char path[4200];
        int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0 || (size_t) snprintf(path, sizeof(path), "%s/tool-XXXXXX", dir) >= sizeof(path))
                return fd >= 0 ? fd : -ENAMETOOLONG;
        fd = mkostemp(path, O_CLOEXEC);
        if (fd < 0)
                return -errno;
        unlink(path);
        return fd;
}

int mp_core_tool(struct mp_core *core, const char *const argv[], const char *const envp[], const char *in,
                 size_t in_len, int timeout_s, size_t max, char **ret, size_t *ret_len) {
        _cleanup_close_ int in_fd = scratch_file(core->scratch), out_fd = scratch_file(core->scratch);
        posix_spawn_file_actions_t fa;
        pid_t pid;
        int r, status = 0;

        if (in_fd < 0 || out_fd < 0)
                return in_fd < 0 ? in_fd : out_fd;
        if (write(in_fd, in, in_len) != (ssize_t) in_len || lseek(in_fd, 0, SEEK_SET) < 0)
                return -EIO;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, in_fd, STDIN_FILENO);
        posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
        posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
        r = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *) argv, (char *const *) envp);
        posix_spawn_file_actions_destroy(&fa);
        if (r != 0)
                return -ENOENT;
        int64_t deadline = mp_mono_ms() + (int64_t) timeout_s * 1000;
        for (;;) {
                pid_t w = waitpid(pid, &status, WNOHANG);
                if (w == pid)
                        break;
                if (w < 0 && errno != EINTR)
                        return -ECHILD;
                if (mp_mono_ms() > deadline) {
                        kill(pid, SIGKILL);
                        (void) waitpid(pid, &status, 0);
                        return -ETIMEDOUT;
                }
                usleep(20000);
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                mp_err("%s failed (status %d)", argv[0], status);
                return -EIO;
        }
        if (lseek(out_fd, 0, SEEK_SET) < 0)
                return -errno;
        r = mp_read_fd(out_fd, max, ret, ret_len);
        return r < 0 ? r : *ret ? 0 : -ENOMEM;
}

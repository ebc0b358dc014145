/* Fuzz target: mp_frame_read (src/base/util.c), the length-prefixed frames of the guest
 * and executor protocol. The guest side is user code: its length word and its bytes
 * are hostile. Input: the byte stream on the socket (several frames, maybe cut short). */
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/util.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const size_t max = 4096; /* small, so the fuzzer reaches the cap */
        int fd = memfd_create("fuzz-frame", MFD_CLOEXEC);
        size_t consumed = 0;

        if (fd < 0)
                return 0;
        if (mp_write_all(fd, data, size) < 0 || lseek(fd, 0, SEEK_SET) != 0) {
                close(fd);
                return 0;
        }
        for (int k = 0; k < 64; k++) {
                char *frame = NULL;
                size_t len = 0;
                int r = mp_frame_read(fd, max, &frame, &len);
                if (r < 0) {
                        fuzz_check(r == -EPIPE || r == -E2BIG);
                        fuzz_check(!frame);
                        break;
                }
                fuzz_check(frame && len <= max);
                fuzz_check(frame[len] == 0);
                consumed += 4 + len;
                fuzz_check(consumed <= size);
                fuzz_check(memcmp(frame, data + consumed - len, len) == 0);
                free(frame);
        }
        close(fd);
        return 0;
}

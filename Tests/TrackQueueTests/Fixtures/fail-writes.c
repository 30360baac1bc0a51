/* A fault for whole-process tests, loaded with LD_PRELOAD: while the file named by
   TRACKQ_FAULT_FILE exists, every pwrite fails with EIO, as on a failing SD card, or, with
   TRACKQ_FAULT_MODE=hang, waits until the file is gone, as on storage that stopped
   answering. SQLite writes its database and WAL with pwrite; sockets and logs use write,
   and are untouched. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static int failing(void) {
    const char *flag = getenv("TRACKQ_FAULT_FILE");
    struct stat info;
    return flag != NULL && stat(flag, &info) == 0;
}

ssize_t pwrite64(int fd, const void *buffer, size_t count, off_t offset) {
    static ssize_t (*real)(int, const void *, size_t, off_t);
    if (real == NULL) real = (ssize_t (*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite64");
    const char *mode = getenv("TRACKQ_FAULT_MODE");
    if (mode != NULL && mode[0] == 'h') {
        while (failing()) usleep(10000);
    } else if (failing()) {
        errno = EIO;
        return -1;
    }
    return real(fd, buffer, count, offset);
}

ssize_t pwrite(int fd, const void *buffer, size_t count, off_t offset) {
    return pwrite64(fd, buffer, count, offset);
}

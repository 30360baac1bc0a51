#ifdef __linux__
#include <sys/timex.h>
#endif

// What the kernel says of the wall clock: 1 when it is disciplined (NTP, timesyncd, chrony:
// no STA_UNSYNC), 0 when it says unsynchronized, -1 when it cannot be asked (not Linux, or a
// seccomp filter such as systemd's ProtectClock= refuses adjtimex even to read).
// sys/timex.h is not in Swift's Glibc module, hence this header.
static inline int cclock_kernel_synced(void) {
#ifdef __linux__
    struct timex t = {0};
    int state = adjtimex(&t);
    if (state < 0) return -1;
    return (state == TIME_ERROR || (t.status & STA_UNSYNC)) ? 0 : 1;
#else
    return -1;
#endif
}

#include <zlib.h>

// deflateInit2 is a macro over deflateInit2_ that Swift cannot import: gzip framing is
// window bits 15 + 16.
static inline int czlib_deflate_init_gzip(z_streamp stream, int level) {
    return deflateInit2(stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
}

// inflateInit2, likewise (the tests' gzip-decoding sink): 15 + 32 reads gzip or zlib.
static inline int czlib_inflate_init_gzip(z_streamp stream) {
    return inflateInit2(stream, 15 + 32);
}

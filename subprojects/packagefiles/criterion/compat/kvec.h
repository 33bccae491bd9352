/*
 * A minimal kvec.h for Criterion 2.4.1 built from Debian's source tarball.
 *
 * Upstream Criterion takes klib (khash.h, kvec.h) as a git submodule, which
 * Debian's .orig tarball does not contain, and no Debian source package
 * ships klib's kvec.h (htslib, which carries khash.h, has no kvec.h). This
 * header provides the macros Criterion uses (src/io/output.c), with the
 * meaning klib gives them: kvec_t, kv_init, kv_destroy, kv_size, kv_A and
 * kv_push, the last growing the array by doubling. klib's kv_push writes
 * through a NULL pointer when realloc fails; this one aborts instead, since
 * the macro has no way to report the failure to its caller.
 */
#ifndef MOIRAI_CRITERION_KVEC_H
#define MOIRAI_CRITERION_KVEC_H

#include <stdlib.h>

#define kvec_t(type)                                                                               \
    struct {                                                                                       \
        size_t n, m;                                                                               \
        type *a;                                                                                   \
    }

#define kv_init(v)    ((v).n = (v).m = 0, (v).a = 0)
#define kv_destroy(v) free((v).a)
#define kv_A(v, i)    ((v).a[(i)])
#define kv_size(v)    ((v).n)
#define kv_max(v)     ((v).m)

#define kv_push(type, v, x)                                                                        \
    do {                                                                                           \
        if ((v).n == (v).m) {                                                                      \
            size_t kv_m_ = (v).m ? (v).m << 1 : 2;                                                 \
            type *kv_a_ = (type *)realloc((v).a, sizeof(type) * kv_m_);                            \
            if (!kv_a_)                                                                            \
                abort();                                                                           \
            (v).a = kv_a_;                                                                         \
            (v).m = kv_m_;                                                                         \
        }                                                                                          \
        (v).a[(v).n++] = (x);                                                                      \
    } while (0)

#endif

/* ThreadSanitizer annotations for moirai-sync's custom locks (internal).
 *
 * A lock built from atomics and futexes is only partly visible to TSan: it
 * sees the atomics, but not that they form a lock, so its reports lack the
 * set of held locks and it cannot detect lock-order inversions or unlocks
 * of a lock that is not held. The __tsan_mutex_* annotations tell it. While
 * an annotated lock operation runs (between pre_ and post_), TSan ignores
 * the lock's own atomics and models the hand-over from the annotations
 * alone; that is why a lock whose memory ordering is under test must be
 * built with MOIRAI_TSAN_NO_ANNOTATIONS (see the relaxed-unlock mutant in
 * mutex.c).
 *
 * Every macro is a no-op when the translation unit is not compiled for
 * TSan, so the annotations cost nothing in the plain build. */
#ifndef MOIRAI_SYNC_TSAN_H
#define MOIRAI_SYNC_TSAN_H

#if defined(__SANITIZE_THREAD__)
#define MOIRAI_TSAN_ENABLED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MOIRAI_TSAN_ENABLED 1
#endif
#endif

#if defined(MOIRAI_TSAN_ENABLED) && !defined(MOIRAI_TSAN_NO_ANNOTATIONS)

#include <sanitizer/tsan_interface.h>

#define MOIRAI_TSAN_READ       __tsan_mutex_read_lock
#define MOIRAI_TSAN_TRY        __tsan_mutex_try_lock
#define MOIRAI_TSAN_TRY_FAIL   __tsan_mutex_try_lock_failed
#define MOIRAI_TSAN_NOT_STATIC __tsan_mutex_not_static

/* A lock set up by an init function: TSan forgets any earlier lock at the
 * same address. Statically initialised locks need no call; TSan creates
 * its record on first use. */
#define moirai_tsan_create(addr, flags)  __tsan_mutex_create((void *)(addr), (flags))
#define moirai_tsan_destroy(addr, flags) __tsan_mutex_destroy((void *)(addr), (flags))
/* Before trying to acquire, and after: `flags` carries MOIRAI_TSAN_READ
 * for a shared acquisition and MOIRAI_TSAN_TRY for one that may fail; a
 * failed attempt adds MOIRAI_TSAN_TRY_FAIL to the post_ call. */
#define moirai_tsan_pre_lock(addr, flags)    __tsan_mutex_pre_lock((void *)(addr), (flags))
#define moirai_tsan_post_lock(addr, flags)   __tsan_mutex_post_lock((void *)(addr), (flags), 0)
#define moirai_tsan_pre_unlock(addr, flags)  ((void)__tsan_mutex_pre_unlock((void *)(addr), (flags)))
#define moirai_tsan_post_unlock(addr, flags) __tsan_mutex_post_unlock((void *)(addr), (flags))
/* Around parking inside a lock operation: a parking hook may run other
 * code (another fiber) on this thread meanwhile, and TSan must check that
 * code normally rather than ignore it as part of the lock. */
#define moirai_tsan_pre_divert(addr)  __tsan_mutex_pre_divert((void *)(addr), 0)
#define moirai_tsan_post_divert(addr) __tsan_mutex_post_divert((void *)(addr), 0)

#else

#define MOIRAI_TSAN_READ       0u
#define MOIRAI_TSAN_TRY        0u
#define MOIRAI_TSAN_TRY_FAIL   0u
#define MOIRAI_TSAN_NOT_STATIC 0u

#define moirai_tsan_create(addr, flags)      ((void)(addr), (void)(flags))
#define moirai_tsan_destroy(addr, flags)     ((void)(addr), (void)(flags))
#define moirai_tsan_pre_lock(addr, flags)    ((void)(addr), (void)(flags))
#define moirai_tsan_post_lock(addr, flags)   ((void)(addr), (void)(flags))
#define moirai_tsan_pre_unlock(addr, flags)  ((void)(addr), (void)(flags))
#define moirai_tsan_post_unlock(addr, flags) ((void)(addr), (void)(flags))
#define moirai_tsan_pre_divert(addr)         ((void)(addr))
#define moirai_tsan_post_divert(addr)        ((void)(addr))

#endif

#endif

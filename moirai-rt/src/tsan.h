/* ThreadSanitizer annotations for moirai-rt's futex locks (internal).
 *
 * The priority-inheritance mutex hands ownership over inside the kernel
 * (FUTEX_LOCK_PI / FUTEX_UNLOCK_PI), where TSan cannot see it; without the
 * __tsan_mutex_* annotations it would report every critical section as a
 * race. Every macro is a no-op outside a TSan build. */
#ifndef MOIRAI_RT_TSAN_H
#define MOIRAI_RT_TSAN_H

#if defined(__SANITIZE_THREAD__)
#define MOIRAI_RT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MOIRAI_RT_TSAN 1
#endif
#endif

#if defined(MOIRAI_RT_TSAN)
#include <sanitizer/tsan_interface.h>
#define RT_TSAN_TRY             __tsan_mutex_try_lock
#define RT_TSAN_TRY_FAIL        __tsan_mutex_try_lock_failed
#define rt_tsan_create(a)       __tsan_mutex_create((void *)(a), __tsan_mutex_not_static)
#define rt_tsan_destroy(a)      __tsan_mutex_destroy((void *)(a), __tsan_mutex_not_static)
#define rt_tsan_pre_lock(a, f)  __tsan_mutex_pre_lock((void *)(a), (f))
#define rt_tsan_post_lock(a, f) __tsan_mutex_post_lock((void *)(a), (f), 0)
#define rt_tsan_pre_unlock(a)   ((void)__tsan_mutex_pre_unlock((void *)(a), 0))
#define rt_tsan_post_unlock(a)  __tsan_mutex_post_unlock((void *)(a), 0)
#else
#define RT_TSAN_TRY             0
#define RT_TSAN_TRY_FAIL        0
#define rt_tsan_create(a)       ((void)(a))
#define rt_tsan_destroy(a)      ((void)(a))
#define rt_tsan_pre_lock(a, f)  ((void)(a), (void)(f))
#define rt_tsan_post_lock(a, f) ((void)(a), (void)(f))
#define rt_tsan_pre_unlock(a)   ((void)(a))
#define rt_tsan_post_unlock(a)  ((void)(a))
#endif

#endif

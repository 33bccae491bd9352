/* The public types whose C and C++ views must agree, with one field of
 * each whose offset is checked: every struct that holds a MOIRAI_ATOMIC()
 * member, and the park hook whose function pointers take atomic words.
 * Shared by layout_c.c (the C view) and test_cxx.cpp (the C++ view). */
#ifndef MOIRAI_TEST_HEADERS_LAYOUT_H
#define MOIRAI_TEST_HEADERS_LAYOUT_H

#include <stddef.h>

#define MOIRAI_TEST_LAYOUTS(X)                                                                     \
    X(moirai_park_hook_t, arg)                                                                     \
    X(moirai_mutex_t, priv_state)                                                                  \
    X(moirai_barrier_t, priv_count)                                                                \
    X(moirai_condvar_t, priv_waiters)                                                              \
    X(moirai_event_t, priv_mode)                                                                   \
    X(moirai_once_t, priv_state)                                                                   \
    X(moirai_rwlock_t, priv_slots)                                                                 \
    X(moirai_semaphore_t, priv_waiters)                                                            \
    X(moirai_spinlock_t, priv_locked)                                                              \
    X(moirai_ticketlock_t, priv_serving)                                                           \
    X(moirai_stack_node_t, next)                                                                   \
    X(moirai_node_stack_t, top)                                                                    \
    X(moirai_waitgroup_t, priv_state)                                                              \
    X(moirai_select_arm_t, expected)                                                               \
    X(moirai_sched_idle_hooks_t, arg)

typedef struct moirai_test_layout {
    const char *name;
    size_t size;
    size_t align;
    size_t offset;
} moirai_test_layout_t;

#ifdef __cplusplus
extern "C" {
#endif

/* The layouts as the C compiler sees them, in MOIRAI_TEST_LAYOUTS order;
 * `*count` receives the number of entries. */
const moirai_test_layout_t *moirai_test_c_layouts(size_t *count);

#ifdef __cplusplus
}
#endif

#endif

/* moirai_cpu_relax(): a spin-wait built on it sees another thread's store,
 * and a bounded spin ends by count. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdatomic.h>

#include <moirai/core/spin.h>

static _Atomic int flag;

static void *setter(void *arg)
{
    (void)arg;
    atomic_store_explicit(&flag, 1, memory_order_release);
    return NULL;
}

Test(spin, wait_loop_sees_other_threads_store, .timeout = 30)
{
    pthread_t t;
    atomic_store(&flag, 0);
    cr_assert_eq(pthread_create(&t, NULL, setter, NULL), 0);
    /* The relax call is a compiler barrier, so the load is re-issued on
     * every iteration; the loop ends once the store arrives. */
    while (atomic_load_explicit(&flag, memory_order_acquire) == 0) {
        moirai_cpu_relax();
    }
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_eq(atomic_load(&flag), 1);
}

Test(spin, bounded_spin_ends_by_count, .timeout = 30)
{
    /* Nobody sets the flag: a bounded spin must give up after exactly its
     * budget of iterations, as every Moirai spin-then-park loop does. */
    atomic_store(&flag, 0);
    int i = 0;
    while (i < 1000 && atomic_load_explicit(&flag, memory_order_relaxed) == 0) {
        moirai_cpu_relax();
        i++;
    }
    cr_assert_eq(i, 1000);
}

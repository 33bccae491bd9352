/* The counted wait of the event and the semaphore (counted_wait.h). */
#include "counted_wait.h"

#include <errno.h>

#include <moirai/core/park.h>

int moirai__counted_wait(_Atomic uint32_t *word, _Atomic uint32_t *waiters, uint64_t deadline,
                         const char *what, moirai__counted_take_fn take, void *obj)
{
    for (;;) {
        if (take(obj))
            return 0;
        /* Seq_cst: the waiter half of the Dekker pair (see the header). */
        atomic_fetch_add_explicit(waiters, 1, memory_order_seq_cst);
        int rc = moirai_park_for(word, 0, deadline, what);
        /* Relaxed: wakers only need the count, not an order. */
        atomic_fetch_sub_explicit(waiters, 1, memory_order_relaxed);
        if (rc == -ETIMEDOUT)
            return take(obj) ? 0 : -ETIMEDOUT;
    }
}

/* Fiber-local storage: process-wide keys, per-fiber values.
 *
 * Keys are a bitmap of MOIRAI_FIBER_KEYS_MAX slots with a destructor each.
 * A fiber's values live in an array allocated at its first set, so fibers
 * that never use fiber-local storage pay nothing for it. */
#include <errno.h>
#include <stdint.h>

#include <moirai/core/alloc.h>

#include "async_internal.h"

_Static_assert(MOIRAI_FIBER_KEYS_MAX == 64, "the key bitmap is one 64-bit word");

static _Atomic uint64_t keys_used = 0;
static _Atomic(moirai_fiber_local_cb) key_dtor[MOIRAI_FIBER_KEYS_MAX];

static bool key_valid(moirai_fiber_key_t key)
{
    return key.index < MOIRAI_FIBER_KEYS_MAX &&
           (atomic_load_explicit(&keys_used, memory_order_acquire) >> key.index & 1) != 0;
}

int moirai_fiber_key_create(moirai_fiber_key_t *key, moirai_fiber_local_cb destructor)
{
    if (key == NULL)
        return -EINVAL;
    uint64_t used = atomic_load_explicit(&keys_used, memory_order_relaxed);
    for (;;) {
        if (used == UINT64_MAX)
            return -EAGAIN;
        uint32_t i = (uint32_t)__builtin_ctzll(~used);
        /* The destructor is stored before the bit is published (release),
         * so a fiber that sees the key sees its destructor. */
        atomic_store_explicit(&key_dtor[i], destructor, memory_order_relaxed);
        if (atomic_compare_exchange_weak_explicit(&keys_used, &used, used | (UINT64_C(1) << i),
                                                  memory_order_release, memory_order_relaxed)) {
            key->index = i;
            return 0;
        }
    }
}

int moirai_fiber_key_delete(moirai_fiber_key_t key)
{
    if (!key_valid(key))
        return -EINVAL;
    atomic_fetch_and_explicit(&keys_used, ~(UINT64_C(1) << key.index), memory_order_release);
    return 0;
}

void *moirai_fiber_local_get(moirai_fiber_key_t key)
{
    struct moirai_fiber *f = moirai__fiber_self();
    if (f == NULL || f->locals == NULL || key.index >= MOIRAI_FIBER_KEYS_MAX)
        return NULL;
    return f->locals[key.index];
}

int moirai_fiber_local_set(moirai_fiber_key_t key, void *value)
{
    if (!key_valid(key))
        return -EINVAL;
    struct moirai_fiber *f = moirai__fiber_self();
    if (f == NULL)
        return -EPERM;
    if (f->locals == NULL) {
        if (value == NULL)
            return 0;
        f->locals = moirai_calloc(MOIRAI_FIBER_KEYS_MAX, sizeof(void *));
        if (f->locals == NULL)
            return -ENOMEM;
    }
    f->locals[key.index] = value;
    return 0;
}

void moirai__fls_clear(struct moirai_fiber *f)
{
    if (f->locals == NULL)
        return;
    /* Destructors may set values again (as with pthread keys): repeat a
     * bounded number of rounds. */
    for (int round = 0; round < 4; round++) {
        bool again = false;
        for (uint32_t i = 0; i < MOIRAI_FIBER_KEYS_MAX; i++) {
            void *v = f->locals[i];
            if (v == NULL)
                continue;
            f->locals[i] = NULL;
            moirai_fiber_key_t key = {i};
            moirai_fiber_local_cb dtor =
                key_valid(key) ? atomic_load_explicit(&key_dtor[i], memory_order_relaxed) : NULL;
            if (dtor != NULL) {
                dtor(v);
                again = true;
            }
        }
        if (!again)
            break;
    }
    moirai_free(f->locals);
    f->locals = NULL;
}

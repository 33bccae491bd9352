/* Atomic types in public headers, for C and C++ callers alike.
 *
 * C11's `_Atomic` does not exist in C++17, so a public header that declares
 * an atomic field or an atomic pointer parameter spells its type
 * MOIRAI_ATOMIC(T). C sees `_Atomic(T)`, which is the same type as the
 * `_Atomic T` callers have always written (`_Atomic uint32_t *` still
 * converts to and from `MOIRAI_ATOMIC(uint32_t) *` without a cast). C++
 * sees `std::atomic<T>`, the same mapping C++23 gives `_Atomic(T)` in its
 * <stdatomic.h>. The two are one object in memory because both are lock-free
 * and have the size and alignment of T, which the assertions below check
 * for every type Moirai's headers use. Code that reads or writes such a
 * field or word uses the atomic operations of its own language.
 *
 * Use the parenthesised form for pointers: MOIRAI_ATOMIC(struct node *) is
 * an atomic pointer, as `struct node *_Atomic` is. */
#ifndef MOIRAI_CORE_ATOMIC_H
#define MOIRAI_CORE_ATOMIC_H

#ifdef __cplusplus

#include <atomic>
#include <cstdint>

/* The atomic type of T as C++ spells it (see above). */
#define MOIRAI_ATOMIC(T) std::atomic<T>

/* The C library and the C++ caller must agree on the layout of every
 * atomic type they share: same size and alignment as the plain type, and
 * no lock hidden inside the object. */
#define MOIRAI__ATOMIC_SAME_LAYOUT(T)                                                              \
    static_assert(sizeof(std::atomic<T>) == sizeof(T) && alignof(std::atomic<T>) == alignof(T) &&  \
                      std::atomic<T>::is_always_lock_free,                                         \
                  "std::atomic<" #T "> does not have the layout of C's _Atomic(" #T ")")
MOIRAI__ATOMIC_SAME_LAYOUT(std::uint32_t);
MOIRAI__ATOMIC_SAME_LAYOUT(int);
MOIRAI__ATOMIC_SAME_LAYOUT(void *);

#else

#include <stdatomic.h>
#include <stdint.h>

/* The atomic type of T as C spells it (see above). */
#define MOIRAI_ATOMIC(T) _Atomic(T)

/* The C side of the agreement above: a lock-free atomic with the size and
 * alignment of the plain type. */
#define MOIRAI__ATOMIC_SAME_LAYOUT(T, lock_free)                                                   \
    _Static_assert(sizeof(_Atomic(T)) == sizeof(T) && _Alignof(_Atomic(T)) == _Alignof(T) &&       \
                       (lock_free) == 2,                                                           \
                   "_Atomic(" #T ") is not a lock-free word of the plain type's layout")
MOIRAI__ATOMIC_SAME_LAYOUT(uint32_t, ATOMIC_INT_LOCK_FREE);
MOIRAI__ATOMIC_SAME_LAYOUT(int, ATOMIC_INT_LOCK_FREE);
MOIRAI__ATOMIC_SAME_LAYOUT(void *, ATOMIC_POINTER_LOCK_FREE);

#endif

#endif

/* AddressSanitizer support for the pools and the arena: poisoning of
 * released memory, compiled to nothing in other builds. Never installed. */
#ifndef MOIRAI_MEM_SANITIZE_H
#define MOIRAI_MEM_SANITIZE_H

#include <stdbool.h>
#include <stddef.h>

#if defined(__SANITIZE_ADDRESS__)
#define MOIRAI_MEM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MOIRAI_MEM_ASAN 1
#endif
#endif
#ifndef MOIRAI_MEM_ASAN
#define MOIRAI_MEM_ASAN 0
#endif

#if MOIRAI_MEM_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

/* Marks [p, p + n) unusable: any access is reported as use-after-poison. */
static inline void moirai__mem_poison(const void *p, size_t n)
{
#if MOIRAI_MEM_ASAN
    __asan_poison_memory_region(p, n);
#else
    (void)p;
    (void)n;
#endif
}

/* Marks [p, p + n) usable again. */
static inline void moirai__mem_unpoison(const void *p, size_t n)
{
#if MOIRAI_MEM_ASAN
    __asan_unpoison_memory_region(p, n);
#else
    (void)p;
    (void)n;
#endif
}

/* True when the byte at `p` is poisoned (always false without ASan). */
static inline bool moirai__mem_is_poisoned(const void *p)
{
#if MOIRAI_MEM_ASAN
    return __asan_address_is_poisoned(p) != 0;
#else
    (void)p;
    return false;
#endif
}

/* Prints the current stack when a sanitizer runtime is present. */
static inline void moirai__mem_print_stack(void)
{
#if MOIRAI_MEM_ASAN
    __sanitizer_print_stack_trace();
#endif
}

#endif

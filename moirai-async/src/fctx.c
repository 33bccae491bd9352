/* The sanitizer-annotated switch (see fctx.h). The protocol, per switch
 * from A to B:
 *   A: B->resumed_from = A; ASan start_switch(&A->fake, B's stack);
 *      TSan switch_to_fiber(B); raw switch.
 *   B (in its own earlier switch call, or in fctx_start when fresh):
 *      ASan finish_switch(B->fake, &bounds of A's stack).
 * The bounds ASan reports are stored into A when A is a thread's own
 * context, whose stack we otherwise do not know; a fiber's bounds are
 * known from fctx_init and written again with the same values. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fctx.h"

#if defined(__SANITIZE_ADDRESS__)
#define FCTX_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FCTX_ASAN 1
#endif
#endif
#ifndef FCTX_ASAN
#define FCTX_ASAN 0
#endif

#if defined(__SANITIZE_THREAD__)
#define FCTX_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define FCTX_TSAN 1
#endif
#endif
#ifndef FCTX_TSAN
#define FCTX_TSAN 0
#endif

#if FCTX_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#if FCTX_TSAN
#include <sanitizer/tsan_interface.h>
#endif

/* Just before the jump from `from` to `to`; `fake_slot` is where ASan
 * keeps from's fake stack, NULL when `from` is finished for good.
 *
 * Always inlined: ThreadSanitizer instruments every function with entry
 * and exit hooks on the current fiber's shadow call stack, so a separate
 * function calling __tsan_switch_to_fiber() would enter on one fiber and
 * exit on the other, popping a frame the other never pushed (clang 14 at
 * -O1 did not inline it, and the main fiber's shadow stack underflowed). */
static inline __attribute__((always_inline)) void
before_switch(moirai__fctx_t *from, moirai__fctx_t *to, void **fake_slot)
{
#if FCTX_ASAN
    to->resumed_from = from;
    __sanitizer_start_switch_fiber(fake_slot, to->stack_lo, to->stack_size);
#else
    (void)from;
    (void)fake_slot;
#endif
#if FCTX_TSAN
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
#else
    (void)to;
#endif
}

/* First thing after `self` resumes (or first runs, with fake == NULL). */
static inline __attribute__((always_inline)) void after_switch(moirai__fctx_t *self, void *fake)
{
#if FCTX_ASAN
    const void *lo;
    size_t size;
    moirai__fctx_t *prev = self->resumed_from;

    __sanitizer_finish_switch_fiber(fake, &lo, &size);
    if (prev != NULL && prev->native) {
        prev->stack_lo = (void *)lo;
        prev->stack_size = size;
    }
#else
    (void)self;
    (void)fake;
#endif
}

/* A fresh context's first C function (the trampoline calls it). */
static void fctx_start(void *p)
{
    moirai__fctx_t *self = p;

    after_switch(self, NULL);
    self->entry(self->arg);
    /* entry must end with moirai__fctx_switch_final(); a return would run
     * off the top of the stack. */
    static const char msg[] = "moirai: a fiber entry function returned\n";
    ssize_t n = write(STDERR_FILENO, msg, sizeof(msg) - 1);
    (void)n;
    abort();
}

void moirai__fctx_thread_init(moirai__fctx_t *c)
{
    memset(c, 0, sizeof(*c));
    c->native = true;
#if FCTX_TSAN
    c->tsan_fiber = __tsan_get_current_fiber();
#endif
}

void moirai__fctx_init(moirai__fctx_t *c, void *stack_lo, size_t size, void (*entry)(void *),
                       void *arg)
{
    memset(c, 0, sizeof(*c));
    c->stack_lo = stack_lo;
    c->stack_size = size;
    c->entry = entry;
    c->arg = arg;
    moirai__context_make(&c->ctx, stack_lo, size, fctx_start, c);
#if FCTX_TSAN
    c->tsan_fiber = __tsan_create_fiber(0);
#endif
}

void moirai__fctx_switch(moirai__fctx_t *from, moirai__fctx_t *to)
{
    before_switch(from, to, &from->asan_fake_stack);
    moirai__context_switch(&from->ctx, &to->ctx);
    after_switch(from, from->asan_fake_stack);
}

void moirai__fctx_switch_final(moirai__fctx_t *from, moirai__fctx_t *to)
{
    before_switch(from, to, NULL);
    moirai__context_switch(&from->ctx, &to->ctx);
    static const char msg[] = "moirai: a finished fiber was resumed\n";
    ssize_t n = write(STDERR_FILENO, msg, sizeof(msg) - 1);
    (void)n;
    abort();
}

void moirai__fctx_destroy(moirai__fctx_t *c)
{
    if (c == NULL)
        return;
#if FCTX_TSAN
    if (!c->native && c->tsan_fiber != NULL)
        __tsan_destroy_fiber(c->tsan_fiber);
#endif
    c->tsan_fiber = NULL;
}

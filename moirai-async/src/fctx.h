/* The context switch as the runtime uses it: context.h's raw switch with
 * the annotations ThreadSanitizer and AddressSanitizer need to follow a
 * stack change, so that sanitizer builds of programs running fibers stay
 * correct and clean. Without a sanitizer every annotation compiles to
 * nothing and moirai__fctx_switch() is a plain call of the raw switch.
 *
 * AddressSanitizer: __sanitizer_start_switch_fiber() names the stack about
 * to run just before every switch, __sanitizer_finish_switch_fiber() runs
 * first thing after every resume, and a fiber's last switch passes a NULL
 * fake-stack slot so that its fake stack is freed (without these, gcc's
 * ASan crashes on the first switch). ThreadSanitizer: each fiber context
 * has a TSan fiber (__tsan_create_fiber), entered with
 * __tsan_switch_to_fiber() just before the jump, which also makes the
 * switch a happens-before edge, and freed by __tsan_destroy_fiber().
 *
 * The life of a fiber, as the runtime drives it (w = the worker's own
 * context from moirai__fctx_thread_init(), f = the fiber's):
 *   spawn:   moirai__stack_pool_get(pool, size, &st);
 *            moirai__fctx_init(&f, st->lo, st->size, trampoline, fiber);
 *   run:     moirai__stack_set_current(st, name, id);
 *            moirai__fctx_switch(&w, &f);          (returns when f parks or ends)
 *            moirai__stack_set_current(NULL, NULL, 0);
 *   park:    on f: moirai__fctx_switch(&f, &w);   (then w publishes f, release)
 *            where w is the context of the worker that resumed f this time:
 *            the runner stores &w in the fiber before switching in (as
 *            test_context.c's two-thread test does), never a pointer f
 *            read from a thread-local before an earlier switch.
 *   resume:  any worker that took f (acquire) runs it as in "run", with its
 *            own w; f's code continues after its park switch.
 *   finish:  on f: moirai__fctx_switch_final(&f, &w);
 *            on w: moirai__fctx_destroy(&f); moirai__stack_pool_put(pool, st)
 *            (its result is the fiber's high-water mark; above
 *            st->size - MOIRAI__STACK_CANARY the canary was reached).
 *
 * Thread-local variables across a switch: a fiber may resume on another
 * thread than the one it left, but the compiler assumes a function runs
 * on one thread and may keep the address of a thread-local variable it
 * computed before the switch (seen as a crash under clang's TSan). Code
 * that can run on a fiber and reads thread-local state after a switch
 * reads it through an accessor defined with MOIRAI__FIBER_TLS_ACCESSOR(),
 * never by naming the variable. */
#ifndef MOIRAI_ASYNC_FCTX_H
#define MOIRAI_ASYNC_FCTX_H

#include <stdbool.h>
#include <stddef.h>

#include "context.h"

/* A context plus what the sanitizers need to know about it. Fields are
 * private to fctx.c except where noted. */
typedef struct moirai__fctx {
    moirai__context_t ctx;
    /* The stack the context runs on (NULL/0 for a thread's own context
     * until AddressSanitizer has told us its bounds). */
    void *stack_lo;
    size_t stack_size;
    /* TSan's fiber for this context (NULL without TSan). */
    void *tsan_fiber;
    /* ASan's fake-stack slot, saved while the context is suspended. */
    void *asan_fake_stack;
    /* The context that last switched to this one: after a resume,
     * AddressSanitizer reports the bounds of the stack left behind, which
     * is how a thread's own context learns its stack. */
    struct moirai__fctx *resumed_from;
    void (*entry)(void *);
    void *arg;
    /* A thread's own context (moirai__fctx_thread_init). */
    bool native;
} moirai__fctx_t;

/* Makes `c` stand for the calling thread's own context (its native stack),
 * the context a worker runs its scheduling loop in and that fibers switch
 * back to. Must be called on that thread; `c` then may only be resumed on
 * that thread. Never fails. */
void moirai__fctx_thread_init(moirai__fctx_t *c);

/* Prepares `c` so that the first switch into it runs entry(arg) on the
 * stack [stack_lo, stack_lo + size). `entry` must never return: it ends
 * with moirai__fctx_switch_final(). Never blocks, never fails (under TSan
 * it creates the TSan fiber, which TSan allocates from its own heap). */
void moirai__fctx_init(moirai__fctx_t *c, void *stack_lo, size_t size, void (*entry)(void *),
                       void *arg);

/* Suspends the calling context into `from` and resumes `to`; returns when
 * something switches back to `from`, possibly on another thread. `from`
 * must be the context running now. Whoever hands `from` to another thread
 * to resume must publish it with a release store (or a lock) after this
 * switch has left it, and the other thread take it with acquire; the
 * switch itself only orders memory within one thread (under TSan it is
 * also a happens-before edge from `from` to `to`). */
void moirai__fctx_switch(moirai__fctx_t *from, moirai__fctx_t *to);

/* The last switch of a finished fiber `from`: as moirai__fctx_switch() but
 * frees the fiber's AddressSanitizer fake stack, and never returns. After
 * it, `from`'s stack may be reused and `from` destroyed by the context
 * that runs next. */
__attribute__((noreturn)) void moirai__fctx_switch_final(moirai__fctx_t *from, moirai__fctx_t *to);

/* Releases what `c` holds besides its stack (its TSan fiber). Must not be
 * called on the running context or on a suspended fiber that will still
 * be resumed. NULL is ignored. */
void moirai__fctx_destroy(moirai__fctx_t *c);

/* noinline that the compiler cannot see through: `noipa` where the
 * compiler has it (gcc), so that it cannot infer the accessor is `const`
 * and reuse one call's result after a switch. */
#if defined(__has_attribute)
#if __has_attribute(noipa)
#define MOIRAI__OPAQUE __attribute__((noinline, noipa))
#endif
#endif
#ifndef MOIRAI__OPAQUE
#define MOIRAI__OPAQUE __attribute__((noinline))
#endif

/* Defines `static type *fn(void)` returning the address of the
 * thread-local variable `var` on the thread running the call. The
 * function is opaque to the optimiser (noinline, noipa) and its asm
 * barrier clobbers memory and launders the pointer, so every call
 * recomputes the address: call it again after any switch instead of
 * keeping the pointer. Example:
 *     static __thread struct worker *tls_worker;
 *     MOIRAI__FIBER_TLS_ACCESSOR(struct worker *, tls_worker, worker_slot)
 *     ... moirai__fctx_switch(...); struct worker *w = *worker_slot(); */
#define MOIRAI__FIBER_TLS_ACCESSOR(type, var, fn)                                                  \
    static MOIRAI__OPAQUE type *fn(void)                                                           \
    {                                                                                              \
        type *moirai_tls_p_ = &(var);                                                              \
        __asm__ volatile("" : "+r"(moirai_tls_p_) : : "memory");                                   \
        return moirai_tls_p_;                                                                      \
    }

#endif

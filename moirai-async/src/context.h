/* The raw context switch: a few lines of assembly per architecture
 * (context_x86_64.S, context_aarch64.S) and the C that lays out a fresh
 * context's first frame (context.c). No ucontext: swapcontext() makes a
 * sigprocmask system call on every switch (about 225 ns here against
 * about 6 ns for a register switch).
 *
 * What a switch saves is what the ABI says a callee must preserve, plus
 * the floating-point control state, which is per context rather than per
 * thread (a fiber that sets a rounding mode keeps it, and does not leak it
 * to the worker or to the next fiber):
 *   x86-64 SysV: rbx, rbp, r12-r15, rsp, the return address, MXCSR and the
 *     x87 control word. The switch ends with a `jmp` to the popped return
 *     address instead of `ret`: a `ret` onto another stack mispredicts the
 *     return-stack buffer, which doubles the cost of a switch.
 *   aarch64 AAPCS64: x19-x28, fp (x29), lr (x30), d8-d15, sp and FPCR.
 * Everything else is caller-saved, so the compiler has already spilled it
 * around the call.
 *
 * This layer knows nothing of sanitizers: fctx.h wraps it with the
 * ThreadSanitizer and AddressSanitizer annotations the runtime needs. Use
 * the raw switch directly only where no sanitizer can see the switch (the
 * benchmarks, the aarch64 qemu test). */
#ifndef MOIRAI_ASYNC_CONTEXT_H
#define MOIRAI_ASYNC_CONTEXT_H

#include <stddef.h>

/* A suspended context: its saved stack pointer. The callee-saved registers
 * and the resume address live on the context's own stack, below `sp`. */
typedef struct moirai__context {
    void *sp;
} moirai__context_t;

/* Bytes the saved state occupies below a suspended context's `sp` is at
 * most this much; the first frame moirai__context_make() lays out is this
 * size plus alignment. A stack must be larger than this. */
#define MOIRAI__CONTEXT_FRAME 256

/* Prepares `ctx` so that the first switch into it calls `entry(arg)` on the
 * stack [stack_lo, stack_lo + size), with the stack pointer aligned as the
 * ABI requires and the floating-point control state of the caller of
 * moirai__context_make() (as a new thread inherits its creator's).
 * `entry` must never return: it leaves by switching away for the last
 * time (returning would execute a trap instruction). Never blocks, never
 * fails; `size` must exceed MOIRAI__CONTEXT_FRAME (not checked). The stack
 * memory is not read; only its top frame is written. */
void moirai__context_make(moirai__context_t *ctx, void *stack_lo, size_t size,
                          void (*entry)(void *), void *arg);

/* Saves the caller's callee-saved registers and floating-point control
 * state on its stack and its stack pointer into `*from`, then resumes
 * `*to` (made by moirai__context_make() or saved by an earlier switch).
 * Returns when something switches back to `*from`, possibly on another
 * thread. `from` and `to` may not be the same context. Orders no memory
 * between threads by itself: whoever hands a suspended context to another
 * thread publishes it with release and the resumer takes it with acquire.
 * Implemented in assembly. */
void moirai__context_switch(moirai__context_t *from, moirai__context_t *to);

#endif

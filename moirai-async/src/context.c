/* Lays out a fresh context's first frame: the frame moirai__context_switch()
 * pops when it resumes a context, filled so that the pop lands in the
 * assembly trampoline, which calls entry(arg). The frame layouts are
 * described at the top of context_x86_64.S and context_aarch64.S. */
#include <stdint.h>

#include "context.h"

/* In the architecture's .S file: where a fresh context resumes, just
 * inside the trampoline (see there). */
void moirai__context_trampoline_resume(void);

#if defined(__x86_64__)

void moirai__context_make(moirai__context_t *ctx, void *stack_lo, size_t size,
                          void (*entry)(void *), void *arg)
{
    /* The trampoline starts with the stack pointer 16-byte aligned, so the
     * call it makes leaves entry with the alignment the ABI promises. */
    uintptr_t top = ((uintptr_t)stack_lo + size) & ~(uintptr_t)15;
    uint64_t *frame = (uint64_t *)(top - 64);
    uint32_t mxcsr;
    uint16_t fpucw;

    /* The new context starts with the creator's floating-point control
     * state, as a new thread does. */
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    __asm__ volatile("fnstcw %0" : "=m"(fpucw));
    /* Control bits only: the status flags are not part of a context (the
     * ABI leaves them to the caller), and the switch skips reloading MXCSR
     * when the control bits already match. */
    frame[0] = (uint64_t)(mxcsr & ~UINT32_C(0x3f)) | ((uint64_t)fpucw << 32);
    frame[1] = 0;                          /* r15 */
    frame[2] = 0;                          /* r14 */
    frame[3] = (uint64_t)(uintptr_t)arg;   /* r13 */
    frame[4] = (uint64_t)(uintptr_t)entry; /* r12 */
    frame[5] = 0;                          /* rbx */
    frame[6] = 0;                          /* rbp: ends frame-pointer walks */
    frame[7] = (uint64_t)(uintptr_t)moirai__context_trampoline_resume; /* resume address */
    ctx->sp = frame;
}

#elif defined(__aarch64__)

void moirai__context_make(moirai__context_t *ctx, void *stack_lo, size_t size,
                          void (*entry)(void *), void *arg)
{
    uintptr_t top = ((uintptr_t)stack_lo + size) & ~(uintptr_t)15;
    uint64_t *frame = (uint64_t *)(top - 176);
    uint64_t fpcr;

    /* The new context starts with the creator's floating-point control
     * state, as a new thread does. */
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    for (int i = 0; i < 22; i++)
        frame[i] = 0;                      /* x21-x28 and d8-d15 start at zero */
    frame[0] = (uint64_t)(uintptr_t)entry; /* x19 */
    frame[1] = (uint64_t)(uintptr_t)arg;   /* x20 */
    frame[10] = 0;                         /* x29: ends fp walks */
    frame[11] = (uint64_t)(uintptr_t)moirai__context_trampoline_resume; /* x30 */
    frame[20] = fpcr;
    frame[21] = 0;
    ctx->sp = frame;
}

#else
#error "moirai-async: no context switch for this architecture (x86-64 and aarch64 only)"
#endif

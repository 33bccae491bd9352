/* The x86-64 SysV context switch (see context.h for the contract).
 *
 * A suspended context's stack, from its saved stack pointer upward:
 *    0  MXCSR's control bits (4 bytes; the six status flags are cleared),
 *       x87 control word (2 bytes), 2 bytes unused
 * Resuming reloads MXCSR only when its control bits differ from the
 * running ones: LDMXCSR of a value that differs from the current one
 * costs about 100 ns here, so two contexts that differ only in a sticky
 * exception flag (status bits, which the ABI does not preserve across
 * calls) would pay it on every switch.
 *    8  r15
 *   16  r14
 *   24  r13
 *   32  r12
 *   40  rbx
 *   48  rbp
 *   56  resume address (the switch's return address)
 * context.c lays out the same frame for a fresh context, with the
 * trampoline below as resume address, the entry function in r12 and its
 * argument in r13. */

#if defined(__CET__)
#define LANDING_PAD endbr64
#else
#define LANDING_PAD
#endif

    .text

/* void moirai__context_switch(moirai__context_t *from (rdi),
 *                             moirai__context_t *to (rsi)) */
    .globl  moirai__context_switch
    .hidden moirai__context_switch
    .type   moirai__context_switch, @function
    .p2align 4
moirai__context_switch:
    .cfi_startproc
    LANDING_PAD
    /* Stores rather than pushes, and the resume address loaded before
     * the floating-point control words, so the indirect jump's target is
     * known early (the same shape as Boost.Context's jump_fcontext; about
     * 10-15% faster here than a push/pop sequence). */
    leaq    -56(%rsp), %rsp
    .cfi_adjust_cfa_offset 56
    /* The floating-point control state belongs to the context. */
    stmxcsr (%rsp)
    andl    $~0x3f, (%rsp)
    fnstcw  4(%rsp)
    movq    %r15, 8(%rsp)
    .cfi_rel_offset r15, 8
    movq    %r14, 16(%rsp)
    .cfi_rel_offset r14, 16
    movq    %r13, 24(%rsp)
    .cfi_rel_offset r13, 24
    movq    %r12, 32(%rsp)
    .cfi_rel_offset r12, 32
    movq    %rbx, 40(%rsp)
    .cfi_rel_offset rbx, 40
    movq    %rbp, 48(%rsp)
    .cfi_rel_offset rbp, 48

    /* Park this context and adopt the other stack. From here on the
     * unwind rules above describe the other context's frame, which has
     * the same layout. */
    movq    %rsp, (%rdi)
    movq    (%rsi), %rsp

    /* jmp, not ret, at the end: the return-stack buffer predicts a return
     * to the caller of this switch, which is wrong whenever the contexts
     * differ; an indirect jmp is predicted from its own history instead.
     * rcx is caller-saved and the function returns nothing, so it is
     * free. */
    movq    56(%rsp), %rcx
    stmxcsr -8(%rsp)
    movl    -8(%rsp), %eax
    andl    $~0x3f, %eax
    cmpl    (%rsp), %eax
    je      1f
    ldmxcsr (%rsp)
1:
    fldcw   4(%rsp)
    movq    8(%rsp), %r15
    .cfi_restore r15
    movq    16(%rsp), %r14
    .cfi_restore r14
    movq    24(%rsp), %r13
    .cfi_restore r13
    movq    32(%rsp), %r12
    .cfi_restore r12
    movq    40(%rsp), %rbx
    .cfi_restore rbx
    movq    48(%rsp), %rbp
    .cfi_restore rbp
    leaq    64(%rsp), %rsp
    .cfi_adjust_cfa_offset -64
    .cfi_register rip, rcx
    jmp     *%rcx
    .cfi_endproc
    .size   moirai__context_switch, .-moirai__context_switch

/* The first code a fresh context runs, with the stack pointer 16-byte
 * aligned: calls entry (r12) with arg (r13). The return address is marked
 * undefined, so debuggers and unwinders end a fiber's backtrace here
 * instead of walking into whatever lies above the stack's top. */
    .globl  moirai__context_trampoline
    .hidden moirai__context_trampoline
    .type   moirai__context_trampoline, @function
    .p2align 4
moirai__context_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    /* Fresh contexts resume past this nop: an unwinder looks up the
     * resume address minus one, which must lie in this function too. */
    nop
    .globl  moirai__context_trampoline_resume
    .hidden moirai__context_trampoline_resume
moirai__context_trampoline_resume:
    LANDING_PAD
    movq    %r13, %rdi
    callq   *%r12
    /* entry must never return. */
    ud2
    .cfi_endproc
    .size   moirai__context_trampoline, .-moirai__context_trampoline

/* The stacks this file touches are data: no executable stack. */
    .section .note.GNU-stack, "", @progbits

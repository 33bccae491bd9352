/* The x86-64 SysV context switch (see context.h for the contract).
 *
 * A suspended context's stack, from its saved stack pointer upward:
 *    0  MXCSR (4 bytes), x87 control word (2 bytes), 2 bytes unused
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
    pushq   %rbp
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset rbp, 0
    pushq   %rbx
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset rbx, 0
    pushq   %r12
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset r12, 0
    pushq   %r13
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset r13, 0
    pushq   %r14
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset r14, 0
    pushq   %r15
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset r15, 0
    subq    $8, %rsp
    .cfi_adjust_cfa_offset 8
    /* The floating-point control state belongs to the context. */
    stmxcsr (%rsp)
    fnstcw  4(%rsp)

    /* Park this context and adopt the other stack. From here on the
     * unwind rules above describe the other context's frame, which has
     * the same layout. */
    movq    %rsp, (%rdi)
    movq    (%rsi), %rsp

    ldmxcsr (%rsp)
    fldcw   4(%rsp)
    addq    $8, %rsp
    .cfi_adjust_cfa_offset -8
    popq    %r15
    .cfi_adjust_cfa_offset -8
    .cfi_restore r15
    popq    %r14
    .cfi_adjust_cfa_offset -8
    .cfi_restore r14
    popq    %r13
    .cfi_adjust_cfa_offset -8
    .cfi_restore r13
    popq    %r12
    .cfi_adjust_cfa_offset -8
    .cfi_restore r12
    popq    %rbx
    .cfi_adjust_cfa_offset -8
    .cfi_restore rbx
    popq    %rbp
    .cfi_adjust_cfa_offset -8
    .cfi_restore rbp
    /* jmp, not ret: the return-stack buffer predicts a return to the
     * caller of this switch, which is wrong whenever the contexts differ;
     * an indirect jmp is predicted from its own history instead. rcx is
     * caller-saved and the function returns nothing, so it is free. */
    popq    %rcx
    .cfi_adjust_cfa_offset -8
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

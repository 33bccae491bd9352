/* The aarch64 AAPCS64 context switch (see context.h for the contract).
 *
 * A suspended context's stack, from its saved stack pointer upward
 * (176 bytes, keeping sp 16-byte aligned):
 *     0  x19, x20
 *    16  x21, x22
 *    32  x23, x24
 *    48  x25, x26
 *    64  x27, x28
 *    80  x29 (fp), x30 (lr: the resume address)
 *    96  d8,  d9
 *   112  d10, d11
 *   128  d12, d13
 *   144  d14, d15
 *   160  FPCR, 8 bytes unused
 * context.c lays out the same frame for a fresh context, with the
 * trampoline below in x30, the entry function in x19 and its argument in
 * x20. */

    .text

/* void moirai__context_switch(moirai__context_t *from (x0),
 *                             moirai__context_t *to (x1)) */
    .globl  moirai__context_switch
    .hidden moirai__context_switch
    .type   moirai__context_switch, %function
    .p2align 4
moirai__context_switch:
    .cfi_startproc
    sub     sp, sp, #176
    .cfi_def_cfa_offset 176
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    .cfi_offset x19, -176
    .cfi_offset x20, -168
    .cfi_offset x21, -160
    .cfi_offset x22, -152
    .cfi_offset x23, -144
    .cfi_offset x24, -136
    .cfi_offset x25, -128
    .cfi_offset x26, -120
    .cfi_offset x27, -112
    .cfi_offset x28, -104
    .cfi_offset x29, -96
    .cfi_offset x30, -88
    stp     d8,  d9,  [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    /* The floating-point control state belongs to the context. */
    mrs     x9, fpcr
    str     x9, [sp, #160]

    /* Park this context and adopt the other stack. From here on the
     * unwind rules above describe the other context's frame, which has
     * the same layout. */
    mov     x9, sp
    str     x9, [x0]
    ldr     x9, [x1]
    mov     sp, x9

    ldr     x9, [sp, #160]
    msr     fpcr, x9
    ldp     d8,  d9,  [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    add     sp, sp, #176
    .cfi_def_cfa_offset 0
    .cfi_restore x19
    .cfi_restore x20
    .cfi_restore x21
    .cfi_restore x22
    .cfi_restore x23
    .cfi_restore x24
    .cfi_restore x25
    .cfi_restore x26
    .cfi_restore x27
    .cfi_restore x28
    .cfi_restore x29
    /* `ret` rather than `br`: a `br` to a return site would need a BTI
     * landing pad there once branch protection is enabled, and the return
     * predictor cost cannot be measured here (qemu). */
    ret
    .cfi_endproc
    .size   moirai__context_switch, .-moirai__context_switch

/* The first code a fresh context runs: calls entry (x19) with arg (x20).
 * The return address is marked undefined, so debuggers and unwinders end
 * a fiber's backtrace here. */
    .globl  moirai__context_trampoline
    .hidden moirai__context_trampoline
    .type   moirai__context_trampoline, %function
    .p2align 4
moirai__context_trampoline:
    .cfi_startproc
    .cfi_undefined x30
    /* Fresh contexts resume past this nop: an unwinder looks up the
     * resume address minus one, which must lie in this function too. */
    nop
    .globl  moirai__context_trampoline_resume
    .hidden moirai__context_trampoline_resume
moirai__context_trampoline_resume:
    mov     x0, x20
    blr     x19
    /* entry must never return. */
    brk     #0
    .cfi_endproc
    .size   moirai__context_trampoline, .-moirai__context_trampoline

/* The stacks this file touches are data: no executable stack. */
    .section .note.GNU-stack, "", %progbits

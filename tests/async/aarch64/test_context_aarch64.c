/* The aarch64 context switch, built with a cross compiler and run under
 * qemu-user by run.sh (no Criterion: a plain program that exits non-zero
 * on the first failure and prints what it covered).
 *
 * Covers: a fresh context runs entry(arg) on its own stack with sp 16-byte
 * aligned; values handed back and forth across many switches arrive in
 * order; x19-x28, x29 (fp) and d8-d15 survive every round trip through a
 * context that loads other values into all of them; FPCR is kept per
 * context (one context rounds toward minus infinity, the other to
 * nearest, and the arithmetic follows each); a context made while its
 * creator rounds up starts rounding up; and a backtrace taken on a fiber
 * ends at the trampoline (the CFI marks its return address undefined). */
#include <execinfo.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "context.h"

#define STACK_BYTES ((size_t)128 * 1024)
#define ROUNDS      100000L

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static void *stack_map(void)
{
    void *p = mmap(NULL, STACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED, "mmap");
    return p;
}

/* uint64_t regs_roundtrip(moirai__context_t *from, moirai__context_t *to,
 *                         uint64_t seed)
 * Loads x19-x28, x29 with seed+0..10 and d8-d15 with the bit patterns
 * seed+11..18, switches from -> to, and when resumed returns a mask with
 * bit i set when register i of that list lost its value. Preserves them
 * for its own caller. */
__asm__(".text\n"
        ".p2align 4\n"
        ".type regs_roundtrip, %function\n"
        "regs_roundtrip:\n"
        "  stp x29, x30, [sp, #-176]!\n"
        "  stp x19, x20, [sp, #16]\n  stp x21, x22, [sp, #32]\n  stp x23, x24, [sp, #48]\n"
        "  stp x25, x26, [sp, #64]\n  stp x27, x28, [sp, #80]\n"
        "  stp d8, d9, [sp, #96]\n  stp d10, d11, [sp, #112]\n"
        "  stp d12, d13, [sp, #128]\n  stp d14, d15, [sp, #144]\n"
        "  str x2, [sp, #160]\n"
        "  mov x19, x2\n  add x20, x2, #1\n  add x21, x2, #2\n  add x22, x2, #3\n"
        "  add x23, x2, #4\n  add x24, x2, #5\n  add x25, x2, #6\n  add x26, x2, #7\n"
        "  add x27, x2, #8\n  add x28, x2, #9\n  add x29, x2, #10\n"
        "  add x9, x2, #11\n  fmov d8, x9\n  add x9, x2, #12\n  fmov d9, x9\n"
        "  add x9, x2, #13\n  fmov d10, x9\n  add x9, x2, #14\n  fmov d11, x9\n"
        "  add x9, x2, #15\n  fmov d12, x9\n  add x9, x2, #16\n  fmov d13, x9\n"
        "  add x9, x2, #17\n  fmov d14, x9\n  add x9, x2, #18\n  fmov d15, x9\n"
        "  bl moirai__context_switch\n"
        "  ldr x2, [sp, #160]\n"
        "  mov x0, #0\n"
        "  cmp x19, x2\n  cset x10, ne\n  orr x0, x0, x10, lsl #0\n"
        "  add x9, x2, #1\n  cmp x20, x9\n  cset x10, ne\n  orr x0, x0, x10, lsl #1\n"
        "  add x9, x2, #2\n  cmp x21, x9\n  cset x10, ne\n  orr x0, x0, x10, lsl #2\n"
        "  add x9, x2, #3\n  cmp x22, x9\n  cset x10, ne\n  orr x0, x0, x10, lsl #3\n"
        "  add x9, x2, #4\n  cmp x23, x9\n  cset x10, ne\n  orr x0, x0, x10, lsl #4\n"
        "  add x9, x2, #5\n  cmp x24, x9\n  cset x10, ne\n  orr x0, x0, x10, lsl #5\n"
        "  add x9, x2, #6\n  cmp x25, x9\n  cset x10, ne\n  orr x0, x0, x10, lsl #6\n"
        "  add x9, x2, #7\n  cmp x26, x9\n  cset x10, ne\n  orr x0, x0, x10, lsl #7\n"
        "  add x9, x2, #8\n  cmp x27, x9\n  cset x10, ne\n  orr x0, x0, x10, lsl #8\n"
        "  add x9, x2, #9\n  cmp x28, x9\n  cset x10, ne\n  orr x0, x0, x10, lsl #9\n"
        "  add x9, x2, #10\n  cmp x29, x9\n  cset x10, ne\n  orr x0, x0, x10, lsl #10\n"
        "  fmov x11, d8\n  add x9, x2, #11\n  cmp x11, x9\n  cset x10, ne\n"
        "  orr x0, x0, x10, lsl #11\n"
        "  fmov x11, d9\n  add x9, x2, #12\n  cmp x11, x9\n  cset x10, ne\n"
        "  orr x0, x0, x10, lsl #12\n"
        "  fmov x11, d10\n  add x9, x2, #13\n  cmp x11, x9\n  cset x10, ne\n"
        "  orr x0, x0, x10, lsl #13\n"
        "  fmov x11, d11\n  add x9, x2, #14\n  cmp x11, x9\n  cset x10, ne\n"
        "  orr x0, x0, x10, lsl #14\n"
        "  fmov x11, d12\n  add x9, x2, #15\n  cmp x11, x9\n  cset x10, ne\n"
        "  orr x0, x0, x10, lsl #15\n"
        "  fmov x11, d13\n  add x9, x2, #16\n  cmp x11, x9\n  cset x10, ne\n"
        "  orr x0, x0, x10, lsl #16\n"
        "  fmov x11, d14\n  add x9, x2, #17\n  cmp x11, x9\n  cset x10, ne\n"
        "  orr x0, x0, x10, lsl #17\n"
        "  fmov x11, d15\n  add x9, x2, #18\n  cmp x11, x9\n  cset x10, ne\n"
        "  orr x0, x0, x10, lsl #18\n"
        "  ldp x19, x20, [sp, #16]\n  ldp x21, x22, [sp, #32]\n  ldp x23, x24, [sp, #48]\n"
        "  ldp x25, x26, [sp, #64]\n  ldp x27, x28, [sp, #80]\n"
        "  ldp d8, d9, [sp, #96]\n  ldp d10, d11, [sp, #112]\n"
        "  ldp d12, d13, [sp, #128]\n  ldp d14, d15, [sp, #144]\n"
        "  ldp x29, x30, [sp], #176\n"
        "  ret\n"
        ".size regs_roundtrip, .-regs_roundtrip\n");

uint64_t regs_roundtrip(moirai__context_t *from, moirai__context_t *to, uint64_t seed);

static const char *const reg_names[] = {"x19", "x20", "x21", "x22", "x23", "x24", "x25",
                                        "x26", "x27", "x28", "x29", "d8",  "d9",  "d10",
                                        "d11", "d12", "d13", "d14", "d15"};

static void check_mask(uint64_t mask, const char *side)
{
    for (int i = 0; i < 19; i++)
        CHECK(!(mask & (1ull << i)), "%s lost %s across a switch", side, reg_names[i]);
}

static uint64_t get_fpcr(void)
{
    uint64_t v;
    __asm__ volatile("mrs %0, fpcr" : "=r"(v));
    return v;
}

static void set_fpcr(uint64_t v)
{
    __asm__ volatile("msr fpcr, %0" : : "r"(v));
}

#define FPCR_RMODE_MASK (3ull << 22)
#define FPCR_RMODE_UP   (1ull << 22) /* toward +infinity */
#define FPCR_RMODE_DOWN (2ull << 22) /* toward -infinity */

/* 1.5 rounded to an integer in the current rounding mode. */
static double round_current(double x)
{
    volatile double in = x;
    double out;
    __asm__ volatile("frintx %d0, %d1" : "=w"(out) : "w"(in));
    return out;
}

/* ---- first entry ---- */

static moirai__context_t main_ctx, other_ctx;
static void *seen_arg;
static uintptr_t seen_sp;

static void first_entry(void *arg)
{
    uintptr_t sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    seen_arg = arg;
    seen_sp = sp;
    moirai__context_switch(&other_ctx, &main_ctx);
    CHECK(0, "a context was resumed after its last switch");
}

/* ---- unwinding ---- */

void moirai__context_trampoline(void);
static int bt_frames;
static uintptr_t bt_outermost;

static __attribute__((noinline)) void unwind_here(void)
{
    void *pcs[64];
    bt_frames = backtrace(pcs, 64);
    bt_outermost = bt_frames > 0 ? (uintptr_t)pcs[bt_frames - 1] : 0;
    __asm__ volatile("" : : : "memory");
}

static void unwind_entry(void *arg)
{
    (void)arg;
    unwind_here();
    moirai__context_switch(&other_ctx, &main_ctx);
}

/* ---- values ---- */

static long value;
static long value_mismatches;

static void value_entry(void *arg)
{
    (void)arg;
    for (long i = 0;; i++) {
        if (value != 2 * i)
            value_mismatches++;
        value = 2 * i + 1;
        moirai__context_switch(&other_ctx, &main_ctx);
    }
}

/* ---- registers ---- */

static uint64_t other_mask;

static void regs_entry(void *arg)
{
    (void)arg;
    for (uint64_t i = 0;; i++)
        other_mask |= regs_roundtrip(&other_ctx, &main_ctx, 0x5a5a000000000000ull + i * 32);
}

/* ---- FPCR ---- */

static long fp_wrong;
static uint64_t fp_inherited;

static void fp_entry(void *arg)
{
    (void)arg;
    set_fpcr((get_fpcr() & ~FPCR_RMODE_MASK) | FPCR_RMODE_DOWN);
    for (;;) {
        moirai__context_switch(&other_ctx, &main_ctx);
        if ((get_fpcr() & FPCR_RMODE_MASK) != FPCR_RMODE_DOWN || round_current(1.5) != 1.0)
            fp_wrong++;
    }
}

static void inherit_entry(void *arg)
{
    (void)arg;
    fp_inherited = get_fpcr();
    moirai__context_switch(&other_ctx, &main_ctx);
}

int main(void)
{
    char *stack = stack_map();
    int token;

    /* First entry. */
    moirai__context_make(&other_ctx, stack, STACK_BYTES, first_entry, &token);
    moirai__context_switch(&main_ctx, &other_ctx);
    CHECK(seen_arg == &token, "entry got the wrong argument");
    CHECK(seen_sp % 16 == 0, "entry's sp %#lx is not 16-byte aligned", (unsigned long)seen_sp);
    CHECK(seen_sp > (uintptr_t)stack && seen_sp < (uintptr_t)stack + STACK_BYTES,
          "entry did not run on its stack");
    printf("ok: a fresh context runs entry(arg) on its stack, sp 16-byte aligned\n");

    /* Unwinding. */
    moirai__context_make(&other_ctx, stack, STACK_BYTES, unwind_entry, NULL);
    moirai__context_switch(&main_ctx, &other_ctx);
    uintptr_t tramp = (uintptr_t)moirai__context_trampoline;
    CHECK(bt_frames >= 3 && bt_frames < 64, "backtrace gave %d frames", bt_frames);
    CHECK(bt_outermost > tramp && bt_outermost < tramp + 32,
          "outermost frame %#lx, trampoline at %#lx", (unsigned long)bt_outermost,
          (unsigned long)tramp);
    printf("ok: a backtrace on a fiber ends at the trampoline (%d frames)\n", bt_frames);

    /* Values. */
    moirai__context_make(&other_ctx, stack, STACK_BYTES, value_entry, NULL);
    for (long i = 0; i < ROUNDS; i++) {
        value = 2 * i;
        moirai__context_switch(&main_ctx, &other_ctx);
        CHECK(value == 2 * i + 1, "round %ld: got %ld", i, value);
    }
    CHECK(value_mismatches == 0, "the other side saw %ld wrong values", value_mismatches);
    printf("ok: values passed in order across %ld round trips (%ld switches)\n", ROUNDS,
           2 * ROUNDS);

    /* Registers. */
    uint64_t mask = 0;
    moirai__context_make(&other_ctx, stack, STACK_BYTES, regs_entry, NULL);
    for (long i = 0; i < ROUNDS; i++)
        mask |= regs_roundtrip(&main_ctx, &other_ctx, 0x1234000000000000ull + (uint64_t)i * 32);
    check_mask(mask, "the main context");
    check_mask(other_mask, "the other context");
    printf("ok: x19-x28, x29 and d8-d15 preserved on both sides across %ld round trips\n", ROUNDS);

    /* FPCR per context. */
    uint64_t fpcr = get_fpcr();
    CHECK((fpcr & FPCR_RMODE_MASK) == 0, "expected round-to-nearest at start");
    moirai__context_make(&other_ctx, stack, STACK_BYTES, fp_entry, NULL);
    for (long i = 0; i < ROUNDS / 10; i++) {
        moirai__context_switch(&main_ctx, &other_ctx);
        CHECK(get_fpcr() == fpcr, "round %ld: FPCR leaked from the other context", i);
        CHECK(round_current(1.5) == 2.0, "round %ld: arithmetic not rounding to nearest", i);
    }
    CHECK(fp_wrong == 0, "the other context lost its rounding mode %ld times", fp_wrong);
    set_fpcr((fpcr & ~FPCR_RMODE_MASK) | FPCR_RMODE_UP);
    moirai__context_make(&other_ctx, stack, STACK_BYTES, inherit_entry, NULL);
    set_fpcr(fpcr);
    moirai__context_switch(&main_ctx, &other_ctx);
    CHECK((fp_inherited & FPCR_RMODE_MASK) == FPCR_RMODE_UP,
          "a fresh context did not inherit its creator's FPCR");
    CHECK(get_fpcr() == fpcr, "FPCR leaked back");
    printf("ok: FPCR kept per context (rounding mode and arithmetic) across %ld round trips; "
           "fresh contexts inherit the creator's\n",
           ROUNDS / 10);

    munmap(stack, STACK_BYTES);
    printf("aarch64 context switch: all checks passed\n");
    return 0;
}

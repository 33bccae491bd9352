/* The context switch (internal): a fresh context runs entry(arg) with an
 * ABI-aligned stack; values handed back and forth across many switches
 * arrive in order; every callee-saved register survives a round trip
 * through another context that scribbles on all of them; MXCSR and the
 * x87 control word are kept per context (a rounding mode set in one does
 * not leak into the other, and the arithmetic follows it); the annotated
 * switch (fctx) runs the same ping-pong; and one fiber resumed by two
 * threads alternately sees each thread's own thread-local state through
 * the accessor, clean under ThreadSanitizer and AddressSanitizer. */
#include <criterion/criterion.h>
#include <execinfo.h>
#include <fenv.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "context.h"
#include "fctx.h"
#include "test_scale.h"

#define STACK_BYTES ((size_t)128 * 1024)

static void *stack_map(void)
{
    void *p = mmap(NULL, STACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(p, MAP_FAILED);
    return p;
}

static void stack_unmap(void *p)
{
    cr_assert_eq(munmap(p, STACK_BYTES), 0);
}

/* ---- raw switch: first entry, argument, alignment ---- */

static moirai__context_t main_ctx, fiber_ctx;

struct first {
    void *arg_seen;
    uintptr_t local_addr;
    int runs;
};

static void first_entry(void *arg)
{
    struct first *f = arg;
    /* A 16-byte aligned local proves the ABI alignment at entry (the
     * compiler aligns it relative to a correctly aligned stack only). */
    _Alignas(16) volatile char probe[16] = {1};
    f->arg_seen = arg;
    f->local_addr = (uintptr_t)probe;
    f->runs++;
    moirai__context_switch(&fiber_ctx, &main_ctx);
    cr_assert_fail("a context was resumed after its last switch");
}

Test(context, first_switch_runs_entry_with_its_argument, .timeout = 10)
{
    void *stack = stack_map();
    struct first f = {0};

    moirai__context_make(&fiber_ctx, stack, STACK_BYTES, first_entry, &f);
    cr_assert(fiber_ctx.sp > stack && (char *)fiber_ctx.sp < (char *)stack + STACK_BYTES);
    moirai__context_switch(&main_ctx, &fiber_ctx);
    cr_assert_eq(f.runs, 1);
    cr_assert_eq(f.arg_seen, &f);
    cr_assert_eq(f.local_addr % 16, 0);
    cr_assert(f.local_addr > (uintptr_t)stack && f.local_addr < (uintptr_t)stack + STACK_BYTES,
              "entry did not run on the given stack");
    stack_unmap(stack);
}

/* ---- raw switch: value passing ---- */

struct pingpong {
    moirai__context_t a, b;
    long value; /* written by one side, read by the other after a switch */
    long rounds;
    long mismatches;
};

static void pong_entry(void *arg)
{
    struct pingpong *pp = arg;
    for (long i = 0;; i++) {
        /* The main side wrote 2*i before switching here. */
        if (pp->value != 2 * i)
            pp->mismatches++;
        pp->value = 2 * i + 1;
        moirai__context_switch(&pp->b, &pp->a);
    }
}

Test(context, values_pass_through_many_switches_in_order, .timeout = 30)
{
    void *stack = stack_map();
    struct pingpong pp = {.rounds = scaled(1000000)};

    moirai__context_make(&pp.b, stack, STACK_BYTES, pong_entry, &pp);
    for (long i = 0; i < pp.rounds; i++) {
        pp.value = 2 * i;
        moirai__context_switch(&pp.a, &pp.b);
        cr_assert_eq(pp.value, 2 * i + 1, "round %ld", i);
    }
    cr_assert_eq(pp.mismatches, 0);
    stack_unmap(stack);
}

/* ---- raw switch: callee-saved registers ---- */

#if defined(__x86_64__)
/* uint64_t regs_roundtrip(moirai__context_t *from, moirai__context_t *to,
 *                         uint64_t seed)
 * Loads rbx, rbp, r12-r15 with seed+0..5, switches from -> to, and when
 * resumed returns a bit mask of the registers that no longer hold their
 * value (0: all preserved). Itself preserves them for its caller. */
__asm__(".text\n"
        ".p2align 4\n"
        "regs_roundtrip:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  subq $8, %rsp\n"
        "  movq %rdx, (%rsp)\n"
        "  movq %rdx, %rbx\n"
        "  leaq 1(%rdx), %rbp\n"
        "  leaq 2(%rdx), %r12\n"
        "  leaq 3(%rdx), %r13\n"
        "  leaq 4(%rdx), %r14\n"
        "  leaq 5(%rdx), %r15\n"
        "  call moirai__context_switch\n"
        "  movq (%rsp), %rdx\n"
        "  xorl %eax, %eax\n"
        "  cmpq %rdx, %rbx\n  je 1f\n  orq $1, %rax\n1:\n"
        "  incq %rdx\n  cmpq %rdx, %rbp\n  je 1f\n  orq $2, %rax\n1:\n"
        "  incq %rdx\n  cmpq %rdx, %r12\n  je 1f\n  orq $4, %rax\n1:\n"
        "  incq %rdx\n  cmpq %rdx, %r13\n  je 1f\n  orq $8, %rax\n1:\n"
        "  incq %rdx\n  cmpq %rdx, %r14\n  je 1f\n  orq $16, %rax\n1:\n"
        "  incq %rdx\n  cmpq %rdx, %r15\n  je 1f\n  orq $32, %rax\n1:\n"
        "  addq $8, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n");
#define REG_COUNT 6
#endif

/* aarch64's registers are checked by tests/async/aarch64/run.sh under
 * qemu; this suite runs natively. */
#if defined(__x86_64__)
uint64_t regs_roundtrip(moirai__context_t *from, moirai__context_t *to, uint64_t seed);

struct regs {
    moirai__context_t a, b;
    long rounds;
    uint64_t b_failures; /* bits of registers the other side lost */
};

static void regs_entry(void *arg)
{
    struct regs *r = arg;
    for (uint64_t i = 0;; i++)
        r->b_failures |= regs_roundtrip(&r->b, &r->a, 0x5a5a000000000000ull + i * 64);
}

Test(context, callee_saved_registers_survive_every_round_trip, .timeout = 30)
{
    void *stack = stack_map();
    struct regs r = {.rounds = scaled(200000)};
    uint64_t failures = 0;

    moirai__context_make(&r.b, stack, STACK_BYTES, regs_entry, &r);
    for (long i = 0; i < r.rounds; i++)
        failures |= regs_roundtrip(&r.a, &r.b, 0x1234000000000000ull + (uint64_t)i * 64);
    cr_assert_eq(failures, 0, "registers lost on the main side: mask %#llx",
                 (unsigned long long)failures);
    cr_assert_eq(r.b_failures, 0, "registers lost on the other side: mask %#llx",
                 (unsigned long long)r.b_failures);
    stack_unmap(stack);
}
#endif

/* ---- raw switch: floating-point control state per context ---- */

#if defined(__x86_64__)
static unsigned get_mxcsr(void)
{
    unsigned v;
    __asm__ volatile("stmxcsr %0" : "=m"(v));
    return v;
}

static void set_mxcsr(unsigned v)
{
    __asm__ volatile("ldmxcsr %0" : : "m"(v));
}

static unsigned short get_x87cw(void)
{
    unsigned short v;
    __asm__ volatile("fnstcw %0" : "=m"(v));
    return v;
}

static void set_x87cw(unsigned short v)
{
    __asm__ volatile("fldcw %0" : : "m"(v));
}

#define MXCSR_RC_MASK 0x6000u /* rounding control */
#define MXCSR_RC_DOWN 0x2000u
#define X87_RC_MASK   0x0c00u
#define X87_RC_UP     0x0800u
#define X87_PC_MASK   0x0300u
#define X87_PC_SINGLE 0x0000u

struct fpstate {
    moirai__context_t a, b;
    long rounds;
    long b_wrong;
};

/* Rounds 1.5 to an integer with the SSE rounding mode in force (the
 * "current direction" instruction), so the test sees the arithmetic, not
 * just the register. */
static double sse_round(double x)
{
    volatile double in = x;
    double out;
    __asm__ volatile("roundsd $4, %1, %0" : "=x"(out) : "x"(in));
    return out;
}

static void fp_entry(void *arg)
{
    struct fpstate *f = arg;
    /* This context rounds SSE down and x87 up with single precision. */
    set_mxcsr((get_mxcsr() & ~MXCSR_RC_MASK) | MXCSR_RC_DOWN);
    set_x87cw(
        (unsigned short)((get_x87cw() & ~(X87_RC_MASK | X87_PC_MASK)) | X87_RC_UP | X87_PC_SINGLE));
    for (;;) {
        moirai__context_switch(&f->b, &f->a);
        if ((get_mxcsr() & MXCSR_RC_MASK) != MXCSR_RC_DOWN || sse_round(1.5) != 1.0 ||
            (get_x87cw() & (X87_RC_MASK | X87_PC_MASK)) != (X87_RC_UP | X87_PC_SINGLE))
            f->b_wrong++;
    }
}

Test(context, fp_control_state_is_kept_per_context, .timeout = 30)
{
    void *stack = stack_map();
    struct fpstate f = {.rounds = scaled(100000)};
    unsigned mxcsr = get_mxcsr();
    unsigned short cw = get_x87cw();

    cr_assert_eq(mxcsr & MXCSR_RC_MASK, 0, "the test expects round-to-nearest to start");
    moirai__context_make(&f.b, stack, STACK_BYTES, fp_entry, &f);
    for (long i = 0; i < f.rounds; i++) {
        moirai__context_switch(&f.a, &f.b);
        /* The low six bits are sticky exception flags the arithmetic here
         * sets; the rest is control state. */
        cr_assert_eq(get_mxcsr() & ~0x3fu, mxcsr & ~0x3fu,
                     "round %ld: MXCSR leaked from the other context", i);
        cr_assert_eq(get_x87cw(), cw, "round %ld: x87 control word leaked", i);
        cr_assert_eq(sse_round(1.5), 2.0);
    }
    cr_assert_eq(f.b_wrong, 0, "the other context lost its own rounding mode %ld times", f.b_wrong);
    stack_unmap(stack);
}

/* A context made while the creator rounds up starts rounding up. */
static void inherit_entry(void *arg)
{
    struct fpstate *f = arg;
    f->b_wrong = (long)get_mxcsr();
    moirai__context_switch(&f->b, &f->a);
}

Test(context, fresh_context_inherits_the_creators_fp_control, .timeout = 10)
{
    void *stack = stack_map();
    struct fpstate f = {0};
    unsigned mxcsr = get_mxcsr();
    unsigned up = (mxcsr & ~MXCSR_RC_MASK) | 0x4000u;

    set_mxcsr(up);
    moirai__context_make(&f.b, stack, STACK_BYTES, inherit_entry, &f);
    set_mxcsr(mxcsr);
    moirai__context_switch(&f.a, &f.b);
    cr_assert_eq((unsigned)f.b_wrong, up);
    cr_assert_eq(get_mxcsr(), mxcsr);
    stack_unmap(stack);
}
#endif

/* ---- annotated switch: ping-pong and final switch ---- */

struct fpp {
    moirai__fctx_t main, fiber;
    long rounds;
    long value;
    long mismatches;
    int finished;
};

static void fpp_entry(void *arg)
{
    struct fpp *p = arg;
    for (long i = 0; i < p->rounds; i++) {
        /* Stack use on the fiber, so that ASan has frames to track. */
        volatile char buf[256];
        memset((char *)buf, (int)i, sizeof(buf));
        if (p->value != 2 * i || buf[255] != (char)i)
            p->mismatches++;
        p->value = 2 * i + 1;
        moirai__fctx_switch(&p->fiber, &p->main);
    }
    p->finished = 1;
    moirai__fctx_switch_final(&p->fiber, &p->main);
}

Test(fctx, ping_pong_then_final_switch, .timeout = 30)
{
    void *stack = stack_map();
    struct fpp p = {.rounds = scaled(200000)};

    moirai__fctx_thread_init(&p.main);
    moirai__fctx_init(&p.fiber, stack, STACK_BYTES, fpp_entry, &p);
    for (long i = 0; i < p.rounds; i++) {
        p.value = 2 * i;
        moirai__fctx_switch(&p.main, &p.fiber);
        cr_assert_eq(p.value, 2 * i + 1);
    }
    cr_assert_eq(p.finished, 0);
    moirai__fctx_switch(&p.main, &p.fiber);
    cr_assert_eq(p.finished, 1);
    cr_assert_eq(p.mismatches, 0);
    moirai__fctx_destroy(&p.fiber);
    moirai__fctx_destroy(NULL);
    stack_unmap(stack);
}

/* Many fibers created, run to completion and destroyed in turn on reused
 * stacks (the runtime's life cycle), each visited several times. */
struct many {
    moirai__fctx_t main, fiber;
    long visits;
};

static void many_entry(void *arg)
{
    struct many *m = arg;
    for (int k = 0; k < 3; k++) {
        m->visits++;
        moirai__fctx_switch(&m->fiber, &m->main);
    }
    moirai__fctx_switch_final(&m->fiber, &m->main);
}

Test(fctx, fibers_created_and_destroyed_on_reused_stacks, .timeout = 30)
{
    void *stack = stack_map();
    struct many m = {0};
    long fibers = scaled(20000);

    moirai__fctx_thread_init(&m.main);
    for (long f = 0; f < fibers; f++) {
        moirai__fctx_init(&m.fiber, stack, STACK_BYTES, many_entry, &m);
        for (int k = 0; k < 4; k++)
            moirai__fctx_switch(&m.main, &m.fiber);
        moirai__fctx_destroy(&m.fiber);
    }
    cr_assert_eq(m.visits, 3 * fibers);
    stack_unmap(stack);
}

/* ---- one fiber resumed by two threads alternately ---- */

static __thread int tls_thread_no;
MOIRAI__FIBER_TLS_ACCESSOR(int, tls_thread_no, thread_no_slot)

struct shared {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int turn;    /* which thread (1 or 2) resumes the fiber next; guarded by lock */
    long rounds; /* resumes in total */
    moirai__fctx_t fiber;
    moirai__fctx_t *back; /* the native context of the thread resuming now */
    long counter;         /* written only on the fiber; ordered by the hand-off */
    long seen[3];         /* resumes the fiber saw on thread 1 and 2 */
    long wrong_thread;    /* resumes where the accessor disagreed with `back` */
    int done;
};

struct thread_arg {
    struct shared *s;
    int no;
    moirai__fctx_t native;
};

static void shared_entry(void *arg)
{
    struct shared *s = arg;
    for (long i = 0; i < s->rounds; i++) {
        /* Resumed by some thread: which one, read again after every
         * switch through the accessor. */
        int no = *thread_no_slot();
        s->seen[no]++;
        if (no != (int)(i % 2) + 1)
            s->wrong_thread++;
        s->counter++;
        if (i + 1 == s->rounds)
            break;
        moirai__fctx_switch(&s->fiber, s->back);
    }
    s->done = 1;
    moirai__fctx_switch_final(&s->fiber, s->back);
}

static void *resumer(void *p)
{
    struct thread_arg *t = p;
    struct shared *s = t->s;

    tls_thread_no = t->no;
    moirai__fctx_thread_init(&t->native);
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (s->turn != t->no && !s->done)
            pthread_cond_wait(&s->cond, &s->lock);
        if (s->done)
            break;
        /* The lock orders the fiber's state (its saved registers and stack)
         * from the thread that last suspended it to this one. */
        s->back = &t->native;
        moirai__fctx_switch(&t->native, &s->fiber);
        s->turn = 3 - t->no;
        pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

Test(fctx, fiber_resumed_by_two_threads_alternately, .timeout = 60)
{
    void *stack = stack_map();
    struct shared s = {.turn = 1, .rounds = scaled(20000)};
    struct thread_arg t1 = {.s = &s, .no = 1}, t2 = {.s = &s, .no = 2};
    pthread_t th1, th2;

    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.cond, NULL);
    moirai__fctx_init(&s.fiber, stack, STACK_BYTES, shared_entry, &s);
    cr_assert_eq(pthread_create(&th1, NULL, resumer, &t1), 0);
    cr_assert_eq(pthread_create(&th2, NULL, resumer, &t2), 0);
    pthread_join(th1, NULL);
    pthread_join(th2, NULL);
    cr_assert_eq(s.done, 1);
    cr_assert_eq(s.counter, s.rounds);
    cr_assert_eq(s.seen[1], (s.rounds + 1) / 2);
    cr_assert_eq(s.seen[2], s.rounds / 2);
    cr_assert_eq(s.wrong_thread, 0);
    moirai__fctx_destroy(&s.fiber);
    pthread_mutex_destroy(&s.lock);
    pthread_cond_destroy(&s.cond);
    stack_unmap(stack);
}

/* ---- unwinding stops at the fiber's entry ---- */

/* Defined in the architecture's .S file. */
void moirai__context_trampoline(void);

struct unwind {
    moirai__context_t a, b;
    int frames;
    void *outermost;
};

static __attribute__((noinline)) void unwind_here(struct unwind *u)
{
    void *pcs[64];
    u->frames = backtrace(pcs, 64);
    u->outermost = u->frames > 0 ? pcs[u->frames - 1] : NULL;
    __asm__ volatile("" : : : "memory"); /* no tail call */
}

static void unwind_entry(void *arg)
{
    struct unwind *u = arg;
    unwind_here(u);
    moirai__context_switch(&u->b, &u->a);
}

Test(context, backtrace_on_a_fiber_ends_at_its_entry, .timeout = 10)
{
    void *stack = stack_map();
    struct unwind u = {0};

    moirai__context_make(&u.b, stack, STACK_BYTES, unwind_entry, &u);
    moirai__context_switch(&u.a, &u.b);
    /* backtrace, unwind_here, unwind_entry, the trampoline: the unwinder
     * stops at the trampoline, whose return address the CFI marks
     * undefined, instead of walking above the stack's top. */
    cr_assert_geq(u.frames, 3);
    cr_assert_lt(u.frames, 64);
    uintptr_t t = (uintptr_t)moirai__context_trampoline, pc = (uintptr_t)u.outermost;
    cr_assert(pc > t && pc < t + 32, "outermost frame %#lx, trampoline at %#lx", (unsigned long)pc,
              (unsigned long)t);
    stack_unmap(stack);
}

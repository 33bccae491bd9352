/* Dumps of a fiber runtime (moirai/async/dump.h): the registry of fibers,
 * the parking record, and the report.
 *
 * Which runtime may be dumped: `target`, under `dump_lock`. Create sets it
 * last; destroy clears it first (after closing its gate), waiting on the
 * lock for a dump in progress, and only then tears anything down. So a
 * dump either finishes before destroy begins its work or finds no target
 * and returns -ESHUTDOWN, without reading `rt`: the check compares
 * pointers only. One runtime exists at a time (runtime.c), so one target
 * is enough.
 *
 * The fibers: every fiber struct, from its allocation to its free, is in
 * its runtime's intrusive list under `fibers_lock`, including those kept
 * in the per-worker caches (state ENDED, skipped by the report). Cached
 * structs are reused without touching the list, so the lock is taken
 * only when a fiber struct is allocated or freed, not on every spawn. A
 * fiber leaves the list before its stack is unmapped, so a dump holding
 * the lock may scan any listed fiber's stack. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include <moirai/async/dump.h>
#include <moirai/core/clock.h>
#include <moirai/core/park.h>
#include <moirai/sched/dump.h>

#include "async_internal.h"

_Static_assert(MOIRAI_RUNTIME_DUMP_BACKTRACES == MOIRAI_SCHED_DUMP_BACKTRACES,
               "the flag is passed on as it is");

static pthread_mutex_t dump_lock = PTHREAD_MUTEX_INITIALIZER;
static moirai_runtime_t *target; /* under dump_lock */

void moirai__runtime_dump_open(moirai_runtime_t *rt)
{
    pthread_mutex_lock(&dump_lock);
    target = rt;
    pthread_mutex_unlock(&dump_lock);
}

void moirai__runtime_dump_close(moirai_runtime_t *rt)
{
    pthread_mutex_lock(&dump_lock);
    if (target == rt)
        target = NULL;
    pthread_mutex_unlock(&dump_lock);
}

void moirai__fiber_register(moirai_runtime_t *rt, struct moirai_fiber *f)
{
    pthread_mutex_lock(&rt->fibers_lock);
    f->reg_prev = NULL;
    f->reg_next = rt->fibers;
    if (rt->fibers != NULL)
        rt->fibers->reg_prev = f;
    rt->fibers = f;
    pthread_mutex_unlock(&rt->fibers_lock);
}

void moirai__fiber_unregister(moirai_runtime_t *rt, struct moirai_fiber *f)
{
    pthread_mutex_lock(&rt->fibers_lock);
    if (f->reg_prev != NULL)
        f->reg_prev->reg_next = f->reg_next;
    else
        rt->fibers = f->reg_next;
    if (f->reg_next != NULL)
        f->reg_next->reg_prev = f->reg_prev;
    f->reg_prev = f->reg_next = NULL;
    pthread_mutex_unlock(&rt->fibers_lock);
}

/* The clock of parking times: coarse, because it is read on every park
 * (about 5 ns against 20 for the precise clock) and a dump reports
 * milliseconds. */
static uint64_t coarse_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * MOIRAI_NS_PER_S + (uint64_t)ts.tv_nsec;
}

void moirai__fiber_parking(struct moirai_fiber *f, _Atomic uint32_t *addr)
{
    const char *what = addr == &f->sleep_word ? "sleep" : moirai_park_what();
    /* Relaxed: they travel with the state, stored with release below. */
    atomic_store_explicit(&f->dump_what, what, memory_order_relaxed);
    atomic_store_explicit(&f->dump_addr, (uintptr_t)addr, memory_order_relaxed);
    atomic_store_explicit(&f->dump_since, coarse_now_ns(), memory_order_relaxed);
    /* Release: a dump that reads PARKED with acquire sees the three above
     * (or those of a later park). */
    atomic_store_explicit(&f->dump_state, MOIRAI__FIBER_PARKED, memory_order_release);
}

typedef struct report {
    FILE *out;
    int err;
} report_t;

__attribute__((format(printf, 2, 3))) static void emit(report_t *r, const char *fmt, ...)
{
    if (r->err != 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    if (vfprintf(r->out, fmt, ap) < 0)
        r->err = -EIO;
    va_end(ap);
}

/* One fiber's entry; returns false for an ended (cached) fiber. */
static bool report_fiber(report_t *r, struct moirai_fiber *f, uint64_t now, unsigned flags)
{
    /* Acquire: pairs with the release of every state store, so the name
     * and id of the fiber's spawn, and the wait record of a PARKED, are
     * seen (see dump_state). */
    uint32_t state = atomic_load_explicit(&f->dump_state, memory_order_acquire);
    if (state == MOIRAI__FIBER_ENDED)
        return false;
    uint64_t id = atomic_load_explicit(&f->dump_id, memory_order_relaxed);
    /* Relaxed: published by the state read above (the string too). */
    const char *name = atomic_load_explicit(&f->dump_name, memory_order_relaxed);
    if (name != NULL)
        emit(r, "fiber %" PRIu64 " \"%s\": ", id, name);
    else
        emit(r, "fiber %" PRIu64 " (unnamed): ", id);
    if (state == MOIRAI__FIBER_PARKED) {
        const char *what = atomic_load_explicit(&f->dump_what, memory_order_relaxed);
        uintptr_t addr = atomic_load_explicit(&f->dump_addr, memory_order_relaxed);
        uint64_t since = atomic_load_explicit(&f->dump_since, memory_order_relaxed);
        emit(r, "parked on %s %#" PRIxPTR " for %" PRIu64 " ms",
             what != NULL ? what : "unspecified", addr,
             (now > since ? now - since : 0) / MOIRAI_NS_PER_MS);
    } else {
        emit(r, "%s", state == MOIRAI__FIBER_RUNNING ? "running" : "runnable");
    }
    /* The stack is the fiber struct's for as long as it is listed. */
    emit(r, ", stack %zu/%zu bytes\n", moirai__stack_used_racy(f->stack), f->stack->size);
    if (flags & MOIRAI_RUNTIME_DUMP_BACKTRACES) {
        if (state == MOIRAI__FIBER_RUNNING)
            emit(r, "  backtrace: see its worker in the scheduler section\n");
        else
            emit(r, "  backtrace: not available (a fiber off its worker is not unwound: see "
                    "moirai/async/dump.h)\n");
    }
    return true;
}

int moirai_runtime_dump(moirai_runtime_t *rt, FILE *out, unsigned flags)
{
    if (rt == NULL || out == NULL || (flags & ~MOIRAI_RUNTIME_DUMP_BACKTRACES) != 0)
        return -EINVAL;
    pthread_mutex_lock(&dump_lock);
    if (target != rt) {
        pthread_mutex_unlock(&dump_lock);
        return -ESHUTDOWN;
    }
    report_t r = {out, 0};
    emit(&r, "moirai-async dump: runtime %p\n", (void *)rt);
    if (r.err == 0) {
        int rc = moirai_sched_dump(rt->sched, out, flags);
        /* -ESHUTDOWN: a scheduler the caller owns, destroyed before the
         * runtime (a misuse); the fibers are still reported. */
        if (rc == -ESHUTDOWN)
            emit(&r, "scheduler: not available (destroyed before the runtime)\n");
        else if (rc != 0)
            r.err = rc;
    }
    moirai_runtime_stats_t st;
    (void)moirai_runtime_stats(rt, &st);
    emit(&r,
         "fibers: alive %" PRIu64 " spawned %" PRIu64 " switches %" PRIu64 " parks %" PRIu64
         " stack_high_water %" PRIu64 " stacks_mapped %" PRIu64 " stacks_cached %" PRIu64 "\n",
         st.fibers_alive, st.fibers_spawned, st.switches, st.parks, st.stack_high_water,
         st.stacks_mapped, st.stacks_cached);
    uint64_t now = coarse_now_ns();
    uint64_t listed = 0;
    pthread_mutex_lock(&rt->fibers_lock);
    for (struct moirai_fiber *f = rt->fibers; f != NULL && r.err == 0; f = f->reg_next)
        listed += report_fiber(&r, f, now, flags);
    pthread_mutex_unlock(&rt->fibers_lock);
    emit(&r, "end of runtime dump: %" PRIu64 " fibers listed\n", listed);
    if (r.err == 0 && fflush(out) != 0)
        r.err = -EIO;
    pthread_mutex_unlock(&dump_lock);
    return r.err;
}

/* moirai-async's internals shared by its source files (never installed).
 *
 * Layout: a runtime owns the wait table (waitq.c), the timer heap
 * (timer.c), the reactor thread (reactor.c) and the stack cache
 * (stack.c). A fiber owns its context, its stack, its wait entry and the
 * scheduler job that resumes it (fiber.c).
 *
 * How a fiber runs: its resume job runs on a worker, switches from the
 * worker's own context (the "native" context of that thread) into the
 * fiber, and comes back when the fiber parks, yields or ends. Whatever the
 * fiber wants done once it is off its stack (release the wait-queue lock it
 * parked under, resubmit itself after a yield, free itself after its end)
 * it leaves in the thread's `after` slot, and the native side runs it right
 * after the switch. That is what makes a parked fiber impossible to resume
 * twice or too early: it is not visible to wakers until it has switched
 * out. */
#ifndef MOIRAI_ASYNC_INTERNAL_H
#define MOIRAI_ASYNC_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <moirai/async/fiber.h>
#include <moirai/async/runtime.h>
#include <moirai/core/executor.h>
#include <moirai/core/park.h>
#include <moirai/sched/job.h>

#include "fctx.h"
#include "lock.h"
#include "stack.h"

struct moirai__bucket;

/* A parked fiber's entry in the wait table and, with a deadline, in the
 * timer heap. Every field but `heap_index` is written under the lock of
 * the bucket the entry is queued in; `heap_index` under the timer lock. */
typedef struct moirai__waiter {
    struct moirai__waiter *next;
    struct moirai__waiter *prev;
    _Atomic uint32_t *addr;
    struct moirai_fiber *fiber;
    struct moirai__bucket *bucket; /* where it is queued */
    uint64_t deadline;
    size_t heap_index; /* MOIRAI__NOT_IN_HEAP when not in the timer heap */
    int result;        /* 0 (woken), -ETIMEDOUT or -ECANCELED */
    bool queued;
    /* A watcher (fiber NULL) instead of a parked fiber: called by the
     * unparker that takes it off, after the bucket lock is released, or
     * by the timer side for a timer object (see timer_object.c). */
    void (*notify)(struct moirai__waiter *w);
    /* Timer objects: 1 while the reactor runs `notify` (set under the
     * timer lock, cleared after), so their destroy can wait it out. */
    _Atomic uint32_t busy;
} moirai__waiter_t;

#define MOIRAI__NOT_IN_HEAP SIZE_MAX

struct moirai_fiber {
    moirai_sched_job_t job; /* resumes the fiber; first member */
    /* The fiber's scheduler context while it is off a worker, and the
     * worker's while it runs (see fiber.c). */
    moirai_sched_thread_ctx_t sched_ctx;
    moirai__fctx_t ctx;
    moirai_runtime_t *rt;
    moirai_task_fn fn;
    void *arg;
    moirai_handle_t *handle; /* the executor's reference, or NULL */
    const char *name;
    moirai_task_id_t id;
    moirai_priority_t priority;
    /* Fiber-local values (fls.c), allocated at the first set. */
    void **locals;
    moirai__waiter_t wait;
    /* The bucket the fiber is parked in, or NULL: lets a canceller find
     * it. Seq_cst with `cancel_pending` (see waitq.c). */
    _Atomic(struct moirai__bucket *) wait_bucket;
    /* A cancellation not yet delivered to a wait. */
    _Atomic uint32_t cancel_pending;
    /* A word nobody else wakes: sleeps park on it. */
    _Atomic uint32_t sleep_word;
    /* Counted by the fiber's own worker only; summed into the runtime's
     * statistics when it ends. */
    uint64_t switches;
    uint64_t parks;
    /* From here on, kept when a cached fiber is reused (its spawn clears
     * only what comes before `stack`): the stack, and what dumps read
     * (dump.c) while the fiber is in its runtime's registry, which is
     * from its allocation to its free, cached or not. */
    moirai__stack_t *stack;
    /* MOIRAI__FIBER_*: written by whoever moves the fiber (spawn, the
     * fiber before it parks, its waker before it resubmits it, its worker
     * before it switches in), always with release: every store carries
     * what came before it in the fiber's history (the name and id of its
     * spawn, the wait record of its park), since a dump that reads any
     * state with acquire must see those; a release store is a plain store
     * on x86-64. Stores of one fiber are ordered by the hand-offs between
     * them, so the latest is what a dump sees. */
    _Atomic uint32_t dump_state;
    _Atomic(const char *) dump_what; /* what it parked on (moirai_park_what()) */
    _Atomic uintptr_t dump_addr;     /* the address it parked on */
    _Atomic uint64_t dump_since;     /* CLOCK_MONOTONIC_COARSE ns when it parked */
    _Atomic(const char *) dump_name; /* its name, or NULL */
    _Atomic uint64_t dump_id;        /* its task id */
    /* The runtime's registry of fibers (dump.c), under rt->fibers_lock. */
    struct moirai_fiber *reg_prev, *reg_next;
};

/* `dump_state` of a fiber. Zero is ENDED, the state of a fresh or cached
 * fiber struct. */
#define MOIRAI__FIBER_ENDED    0u
#define MOIRAI__FIBER_RUNNABLE 1u /* queued on the scheduler */
#define MOIRAI__FIBER_RUNNING  2u /* on a worker */
#define MOIRAI__FIBER_PARKED   3u /* in the wait table */

/* Records that `f` is now in `state` (release: see dump_state). */
static inline void moirai__fiber_state(struct moirai_fiber *f, uint32_t state)
{
    atomic_store_explicit(&f->dump_state, state, memory_order_release);
}

/* What a worker thread keeps while it runs fibers (thread-local). */
typedef struct moirai__thread {
    moirai__fctx_t native;
    bool native_ready;
    struct moirai_fiber *current;
    /* The worker index of this thread while `current` runs (its scheduler
     * context is swapped out then): which fiber cache a spawn uses. */
    int slot;
    void (*after)(void *arg);
    void *after_arg;
} moirai__thread_t;

/* The wait table: buckets of parked fibers, hashed by address. It is
 * process-wide and never freed, like the parking hook (one runtime at a
 * time): a thread may still be inside an unpark that found the hook just
 * before the runtime was destroyed, and it only ever touches a bucket. */
#define MOIRAI__BUCKETS 256

typedef struct moirai__bucket {
    moirai__lock_t lock;
    moirai__waiter_t *head;
    moirai__waiter_t *tail;
} __attribute__((aligned(64))) moirai__bucket_t;

/* The timer heap: waiters with a deadline, earliest first. */
typedef struct moirai__timers {
    moirai__lock_t lock;
    moirai__waiter_t **heap;
    size_t count;
    /* Only grows, under the lock; read without it to skip the lock when
     * there is room already. */
    _Atomic size_t capacity;
} moirai__timers_t;

typedef struct moirai__reactor moirai__reactor_t;

struct uv_loop_s;

/* An operation handed to the reactor thread: `run(op, loop)` is called
 * once, on the reactor thread, with the reactor's libuv loop. Intrusive
 * and owned by the submitter, who must keep it alive until `run` has
 * started (`run` may free it). */
typedef struct moirai__reactor_op {
    struct moirai__reactor_op *next; /* the reactor's, while queued */
    void (*run)(struct moirai__reactor_op *op, struct uv_loop_s *loop);
} moirai__reactor_op_t;

/* Finished fibers of the default stack size, kept with their stacks by the
 * worker they ended on, so that a spawn on that worker (a fiber spawning
 * and joining a child, the common case) allocates nothing and takes no
 * lock. Touched only by the thread that is worker `slot`: no atomics. */
#define MOIRAI__FIBER_CACHE 16

typedef struct moirai__fiber_cache {
    struct moirai_fiber *fibers[MOIRAI__FIBER_CACHE];
    int count;
} __attribute__((aligned(64))) moirai__fiber_cache_t;

struct moirai_runtime {
    moirai_executor_t executor; /* moirai_runtime_executor(); first member */
    moirai_sched_t *sched;
    bool owns_sched;
    size_t stack_size;
    moirai__stack_pool_t *stacks;
    moirai__reactor_t *reactor;
    struct moirai__netpoll *netpoll; /* sockets and pipes (netpoll.c) */
    moirai__timers_t timers;
    moirai__fiber_cache_t *caches; /* one per worker slot of the scheduler */
    int ncaches;

    /* Live fibers, plus MOIRAI__GATE_SHUT once destroy has begun. */
    _Atomic uint64_t gate;
    /* Set to 1 when the last fiber ends after destroy began. */
    _Atomic uint32_t drained;

    _Atomic uint64_t timer_objects; /* moirai_timer_t alive (timer_object.c) */
    _Atomic uint64_t spawned;
    _Atomic uint64_t switches;
    _Atomic uint64_t parks;
    _Atomic uint64_t high_water;
    _Atomic uint64_t timers_armed;

    /* Every allocated fiber, running, parked or cached (dump.c). A mutex:
     * a dump holds it while it writes, and fibers are allocated and freed
     * rarely (the caches reuse them). */
    pthread_mutex_t fibers_lock;
    struct moirai_fiber *fibers;
};

#define MOIRAI__GATE_SHUT (UINT64_C(1) << 63)

/* `drained`: 0 while fibers live after destroy began; DRAINED once the
 * last one ended; DRAINED_DONE once its worker no longer touches the
 * runtime. */
#define MOIRAI__DRAINED      UINT32_C(1)
#define MOIRAI__DRAINED_DONE UINT32_C(2)

/* The calling thread's state. noinline with a compiler barrier: a fiber
 * may resume on another thread, and a thread-local address computed before
 * a switch must never be reused after it. */
moirai__thread_t *moirai__thread_get(void);

/* The fiber running on this thread, or NULL (same care as above). */
struct moirai_fiber *moirai__fiber_self(void);

/* Switches the calling fiber `f` out to its worker, which then runs
 * `after(arg)` (may be NULL) on its own stack. Returns when the fiber is
 * resumed, possibly on another thread. */
void moirai__fiber_switch_out(struct moirai_fiber *f, void (*after)(void *), void *arg);

/* Makes `f` runnable again (it has switched out). Any thread. Never fails:
 * the job is embedded in the fiber. */
void moirai__fiber_resume(struct moirai_fiber *f);

/* waitq.c: the parking hook's halves for fibers. */
int moirai__waitq_park(struct moirai_fiber *f, _Atomic uint32_t *addr, uint32_t expected,
                       uint64_t deadline);
int moirai__waitq_unpark(_Atomic uint32_t *addr, int max);
/* Wakes `f` from its current wait with -ECANCELED, or makes its next wait
 * return -ECANCELED at once. Any thread; never blocks for long. */
void moirai__waitq_cancel(struct moirai_fiber *f);
/* Watchers (select.c): queues `w` (fiber NULL, notify set) on `addr`
 * unless `*addr != expected` (then returns false and queues nothing).
 * Every unpark of `addr` takes all its watchers, whatever its count, and
 * calls their notify: watchers are not waiters, and an unpark_one meant
 * for a parked fiber still reaches one. */
bool moirai__waitq_watch(moirai__waiter_t *w, _Atomic uint32_t *addr, uint32_t expected);
/* Takes `w` back: true if it was still queued; false if an unparker took
 * it, whose notify then runs (or ran). */
bool moirai__waitq_unwatch(moirai__waiter_t *w);
/* Called by the timer side under both locks: takes `w` off its bucket. */
void moirai__waitq_dequeue_locked(moirai__waiter_t *w, int result);

/* timer.c */
int moirai__timers_init(moirai__timers_t *t);
void moirai__timers_fini(moirai__timers_t *t);
/* Makes room for one more timed waiter (spawn calls it, so parking never
 * allocates). Returns 0 or -ENOMEM. */
int moirai__timers_reserve(moirai__timers_t *t, size_t fibers);
/* Adds `w` (timer lock not held by the caller). Returns true when `w` is
 * now the earliest deadline, so the reactor must re-arm. */
bool moirai__timers_add(moirai__timers_t *t, moirai__waiter_t *w);
/* Removes `w` if it is in the heap (caller holds w's bucket lock). */
void moirai__timers_remove(moirai__timers_t *t, moirai__waiter_t *w);
/* Timer objects (timer_object.c), whose entries have no fiber: replaces
 * `w`'s deadline (removing it first if it is in the heap; NEVER: only
 * remove). Returns true when `w` is now the earliest. Runs `and_then(w)`
 * under the timer lock, so that the reactor sees its effect together
 * with the entry. */
/* A timer object's state word: its low bits, and an arming count above. */
#define MOIRAI__TIMER_IDLE  0u
#define MOIRAI__TIMER_ARMED 1u
#define MOIRAI__TIMER_FIRED 2u
#define MOIRAI__TIMER_MASK  3u
struct moirai_timer;
/* The state word of a timer object (timer_object.c). */
_Atomic uint32_t *moirai__timer_word(struct moirai_timer *timer);
bool moirai__timers_set(moirai__timers_t *t, moirai__waiter_t *w, uint64_t deadline,
                        void (*and_then)(moirai__waiter_t *w));
/* Wakes every waiter whose deadline is at or before `now` with
 * -ETIMEDOUT and returns the earliest deadline left (or
 * MOIRAI_DEADLINE_NEVER). Reactor thread. */
uint64_t moirai__timers_expire(moirai_runtime_t *rt, uint64_t now);

/* reactor.c */
int moirai__reactor_start(moirai__reactor_t **out, moirai_runtime_t *rt);
void moirai__reactor_stop(moirai__reactor_t *r);
/* Tells the reactor a new earliest deadline exists. Any thread. */
void moirai__reactor_kick(moirai__reactor_t *r);
/* Queues `op` for the reactor thread and wakes it (a pending wake is
 * reused). Any thread, never blocks, never fails. Everything the caller
 * wrote before happens before `op->run` runs (the queue's CAS and
 * exchange are a release/acquire pair). Operations run in the order they
 * were submitted; an operation submitted after moirai_runtime_destroy()
 * began stopping the reactor may never run. */
void moirai__reactor_submit(moirai__reactor_t *r, moirai__reactor_op_t *op);

/* fiber.c: frees the fibers the caches hold (destroy, once all ended). */
void moirai__fiber_caches_free(moirai_runtime_t *rt);

/* fiber.c: the runtime executor's spawn (default stack size). */
int moirai__fiber_spawn_default(moirai_executor_t *executor, moirai_task_fn fn, void *arg,
                                const moirai_task_attr_t *attr, moirai_handle_t *handle);

/* dump.c: records that `f` parks on `addr` now, and on what (the hooked
 * call's moirai_park_what(), or "sleep" for its own sleep word). Called
 * by the fiber just before it switches out to park. A coarse clock read
 * and four relaxed or release stores. */
void moirai__fiber_parking(struct moirai_fiber *f, _Atomic uint32_t *addr);

/* dump.c: adds a freshly allocated fiber to its runtime's registry, or
 * takes one out before its stack and memory are freed. Any thread. */
void moirai__fiber_register(moirai_runtime_t *rt, struct moirai_fiber *f);
void moirai__fiber_unregister(moirai_runtime_t *rt, struct moirai_fiber *f);

/* dump.c: makes `rt` the runtime moirai_runtime_dump() accepts (create,
 * last), or no runtime (destroy, first: waits for a dump in progress). */
void moirai__runtime_dump_open(moirai_runtime_t *rt);
void moirai__runtime_dump_close(moirai_runtime_t *rt);

/* fls.c: runs the destructors of `f`'s values and frees them. */
void moirai__fls_clear(struct moirai_fiber *f);

#endif

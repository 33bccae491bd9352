/* Runtime jobs: work items whose memory the submitter owns, for runtimes
 * built on the scheduler (moirai-async resumes a fiber by submitting the
 * job embedded in it; when the fiber parks, its worker returns from the
 * job and runs other work).
 *
 * A job is initialised once (moirai_sched_job_init) and may be submitted
 * any number of times, one submission at a time: each submission calls
 * `run` once, on one of the scheduler's workers. Unlike a task, a
 * submission allocates nothing and, once its arguments are valid, cannot
 * fail, not even while the scheduler is being destroyed: a runtime whose
 * wake-up could fail would leave a fiber parked for ever.
 *
 * Where a submitted job goes (see moirai/sched/sched.h for the queues):
 *   - NORMAL, without MOIRAI_SCHED_JOB_YIELD, submitted on a worker of the
 *     same scheduler: where a local NORMAL spawn goes (the worker's LIFO
 *     slot, the previous occupant moving to its deque; or the deque), so
 *     a fiber woken by the fiber that ran just before resumes next, on a
 *     warm cache. Should the deque be unable to grow, the job goes to the
 *     injector instead.
 *   - Everything else (another priority, MOIRAI_SCHED_JOB_YIELD, or a
 *     submission from any other thread): the injector at its level, FIFO
 *     behind the work already waiting there (tasks and jobs alike).
 * Jobs on the injector take part in priorities and aging exactly as tasks
 * do (a level's aging clock restarts when any of its items, task or job,
 * is taken); a job in a worker's LIFO slot or deque counts as NORMAL.
 *
 * Shutdown: a submitted job always runs, also after
 * moirai_sched_destroy(MOIRAI_SHUTDOWN_DRAIN or _CANCEL) has begun, and
 * destroy does not stop the workers until every submitted job has run.
 * Submissions from inside the scheduler's own tasks and jobs are always
 * safe, since destroy waits for those. A submission from any other thread
 * (a reactor, a timer thread) must return before destroy does: a runtime
 * stops submitting from outside (all its fibers done, its reactor
 * stopped) before it destroys the scheduler, as it must stop using any
 * object before freeing it. */
#ifndef MOIRAI_SCHED_JOB_H
#define MOIRAI_SCHED_JOB_H

#include <stdbool.h>
#include <stdint.h>

#include <moirai/core/task.h>
#include <moirai/sched/export.h>
#include <moirai/sched/sched.h>

typedef struct moirai_sched_job moirai_sched_job_t;

/* A job's body: runs on a worker of the scheduler it was submitted to,
 * once per submission. From the moment it is called, the scheduler no
 * longer touches `job`: the body may submit it again (a fiber that parks
 * and is woken), free it, or reuse it. It must not return to the
 * scheduler through a non-local jump. */
typedef void (*moirai_sched_job_cb)(moirai_sched_job_t *job);

/* Caller-owned storage, typically embedded in a larger object (a fiber);
 * `container_of` gets back from the job to it. Plain memory, no atomics,
 * so it compiles in C and C++ alike. */
struct moirai_sched_job {
    uintptr_t reserved[4];   /* the scheduler's (queue link etc.); never touched by the user */
    moirai_sched_job_cb run; /* called once per submission, on a worker */
    /* Reported by the scheduler's watchdog (may be NULL: "(unnamed)").
     * Borrowed: with the watchdog on it must stay readable while the job
     * is queued or running and until the scheduler is destroyed (a string
     * literal, or a name that lives as long as the scheduler), since the
     * watchdog thread may read it a moment after the job has ended. */
    const char *name;
};

/* Flags of moirai_sched_job_submit(). */
/* Queue the job behind the work already waiting at its priority level
 * (FIFO), also on a worker: for a fiber that yields, so that it lets
 * every other waiting item run first. */
#define MOIRAI_SCHED_JOB_YIELD 1u

/* ---- Idle hooks ----
 *
 * A runtime that serves I/O from the scheduler's own workers (moirai-async
 * polls its sockets from idle workers, so that a fiber woken by I/O
 * resumes on the thread that saw the event, with no hop) replaces the
 * futex an idle regular worker parks on with its own wait, through
 * moirai_sched_config_t.idle_hooks. Compensating workers and workers
 * waiting inside a join still park on their futex.
 *
 *   wait(arg, worker)  blocks regular worker `worker` (0 .. workers - 1)
 *                      until wake(arg, worker) is called, where a wake
 *                      that came first counts (an eventfd does this), or
 *                      until outside work is ready; returns true in the
 *                      latter case. May return early for no reason.
 *   wake(arg, worker)  ends that worker's current or next wait. Called
 *                      from any thread; must not block.
 *   poll(arg, worker, busy)
 *                      runs the outside work that is ready (it may submit
 *                      jobs, which then go to this worker), without
 *                      blocking. Called by the worker after a wait
 *                      returned true and while it searches for work
 *                      before sleeping (busy false), and once every
 *                      MOIRAI_SCHED_IDLE_POLL_JOBS jobs it runs (busy
 *                      true), so that outside work is not starved while
 *                      every worker is busy.
 *
 * A worker whose poll left exactly one runnable job, in its own LIFO
 * slot, runs it without waking another worker (there is nothing for a
 * second worker to take); with work anywhere else it wakes one, as a
 * spawn does.
 *
 * The hooks are called only by the scheduler's own threads (and wake also
 * by any thread that submits work); they must not call back into the
 * scheduler except to submit jobs from poll. */
typedef struct moirai_sched_idle_hooks {
    bool (*wait)(void *arg, int worker);
    void (*wake)(void *arg, int worker);
    void (*poll)(void *arg, int worker, bool busy);
    void *arg;
} moirai_sched_idle_hooks_t;

/* A busy worker calls the poll hook once per this many jobs. */
#define MOIRAI_SCHED_IDLE_POLL_JOBS 61

#ifdef __cplusplus
extern "C" {
#endif

/* Initialises `job` with its body and name (see struct moirai_sched_job)
 * and clears the reserved words. Call it before the first submission, and
 * never while a submission is pending. Does nothing if `job` is NULL.
 * Never blocks; touches only `job`. */
MOIRAI_SCHED_API void moirai_sched_job_init(moirai_sched_job_t *job, moirai_sched_job_cb run,
                                            const char *name);

/* Submits `job` to `sched` at priority `prio` (see the routing at the top
 * of this file; `flags` 0 or MOIRAI_SCHED_JOB_YIELD) and wakes a parked
 * worker if none is searching, as a spawn does. `run` is read when the
 * job starts, so it may be changed between submissions.
 *
 * The same job may be submitted again only once its `run` of the previous
 * submission has started (typically from inside `run`, or after the
 * runtime has seen it start); a job submitted twice before that is a bug
 * that corrupts the scheduler's queues (not detected).
 *
 * Never blocks, never allocates; thread-safe: callable from workers, from
 * inside running tasks and jobs, and from any other thread (see the
 * shutdown rules above). Memory ordering: everything the submitter wrote
 * before the call happens before `run` starts. Returns 0, or -EINVAL
 * (NULL sched or job, NULL job->run, `prio` not one of the five levels,
 * unknown bits in `flags`); on -EINVAL nothing is queued and `job` is
 * untouched. Once the arguments are valid it cannot fail: it accepts the
 * job also while destroy runs. */
MOIRAI_SCHED_API int moirai_sched_job_submit(moirai_sched_t *sched, moirai_sched_job_t *job,
                                             moirai_priority_t prio, unsigned flags);

/* ---- Running other stacks on a worker (fibers) ----
 *
 * A runtime that switches a worker thread onto stacks of its own must not
 * let scheduler code running on such a stack act as that worker: a fiber
 * that calls moirai_join() and parks half-way could resume on another
 * worker and pop the first worker's deque from the wrong thread. So the
 * runtime swaps the thread's scheduler context when it switches: while a
 * fiber runs, the thread looks like an outside thread to the scheduler
 * (moirai_sched_current() is NULL, joins and scopes wait by parking, which
 * parks the fiber), and whatever external joins the fiber has in progress
 * travel with the fiber. */

/* A thread's scheduler context: which worker it is, and the external
 * joins it takes part in. Zero-initialised it is "an outside thread with
 * no join in progress", which is what a new fiber starts with. */
typedef struct moirai_sched_thread_ctx {
    void *priv[3];
} moirai_sched_thread_ctx_t;

/* Exchanges the calling thread's scheduler context with `*ctx`: call it
 * with the fiber's context right after switching onto the fiber's stack
 * and again right after switching back (then `*ctx` holds the fiber's own
 * context again). Never blocks; touches only the calling thread's state
 * and `*ctx`. NULL is ignored. */
MOIRAI_SCHED_API void moirai_sched_thread_ctx_swap(moirai_sched_thread_ctx_t *ctx);

/* As moirai_sched_job_submit(), submitted as the worker that `ctx` holds
 * (a worker context swapped out by moirai_sched_thread_ctx_swap() on the
 * calling thread): a fiber waking another fiber thereby puts it in its
 * worker's LIFO slot, to run next on a warm cache. If `ctx` holds no worker
 * of `sched`, or is NULL, this is moirai_sched_job_submit(). Must be called
 * on the thread whose context `ctx` holds. Same errors. */
MOIRAI_SCHED_API int moirai_sched_job_submit_from(moirai_sched_t *sched,
                                                  const moirai_sched_thread_ctx_t *ctx,
                                                  moirai_sched_job_t *job, moirai_priority_t prio,
                                                  unsigned flags);

#ifdef __cplusplus
}
#endif

#endif

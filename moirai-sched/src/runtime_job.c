/* Runtime jobs (moirai/sched/job.h): submissions that never allocate and
 * never fail, with the scheduler's header kept in the job's reserved
 * words. */
#include <errno.h>
#include <stdalign.h>
#include <stddef.h>
#include <string.h>

#include <moirai/sched/job.h>

#include "sched_internal.h"

/* The internal header (execute, injector link) lives in `reserved`, at
 * the start of the job, so a job pointer is a moirai__job_t pointer. */
_Static_assert(sizeof(moirai__job_t) <= sizeof(((moirai_sched_job_t *)0)->reserved),
               "the job header must fit in the reserved words");
_Static_assert(alignof(moirai__job_t) <= alignof(moirai_sched_job_t),
               "the job header must be aligned in the reserved words");
_Static_assert(offsetof(moirai_sched_job_t, reserved) == 0, "the header must come first");

static inline moirai__job_t *job_header(moirai_sched_job_t *job)
{
    return (moirai__job_t *)(void *)job->reserved;
}

void moirai__runtime_job_execute(moirai__job_t *header, moirai__worker_t *w)
{
    moirai_sched_job_t *job = (moirai_sched_job_t *)(void *)header;
    moirai_sched_job_cb run = job->run;
    moirai__watchdog_job_begin(w, job->name);
    MOIRAI_TRACE(MOIRAI_TRACE_PHASE_BEGIN, "sched", job->name != NULL ? job->name : "job", NULL, 0);
    /* Nothing of the job is read after `run` starts: it may be submitted
     * again (and run elsewhere) or freed from inside it. */
    run(job);
    MOIRAI_TRACE(MOIRAI_TRACE_PHASE_END, "sched", NULL, NULL, 0);
    /* Counted as finished only now, so destroy waits for the body. */
    moirai__worker_job_done(w);
}

void moirai_sched_job_init(moirai_sched_job_t *job, moirai_sched_job_cb run, const char *name)
{
    if (job == NULL)
        return;
    memset(job->reserved, 0, sizeof job->reserved);
    job->run = run;
    job->name = name;
}

int moirai_sched_job_submit(moirai_sched_t *s, moirai_sched_job_t *job, moirai_priority_t prio,
                            unsigned flags)
{
    if (s == NULL || job == NULL || job->run == NULL || (unsigned)prio >= MOIRAI_PRIORITY_COUNT ||
        (flags & ~MOIRAI_SCHED_JOB_YIELD) != 0)
        return -EINVAL;
    moirai__job_t *header = job_header(job);
    /* Plain store: the job is in no queue now (the caller's contract), and
     * the queue that takes it publishes it with release. */
    header->execute = moirai__runtime_job_execute;

    moirai__worker_t *w = moirai__worker_current();
    /* A guest (an outside thread inside a join) submits as the outside
     * thread it is: runtime jobs run on the pool's own workers only. */
    if (w != NULL && w->sched == s && !w->guest) {
        /* Counted before it becomes visible (see "Shutdown accounting" in
         * sched_internal.h); the executing worker counts it out. */
        moirai__worker_count_in(w, 1);
        moirai__stat_add(&w->stats.spawned, 1);
        if (prio == MOIRAI_PRIORITY_NORMAL && (flags & MOIRAI_SCHED_JOB_YIELD) == 0 &&
            moirai__worker_push_local(w, header) == 0) {
            moirai__sched_notify(s);
            return 0;
        }
        /* Any other level, a yield, or a deque that could not grow. */
        moirai__sched_inject(s, header, (int)prio);
        return 0;
    }
    /* From any other thread: counted among the accepted external jobs,
     * also once destroy has begun (a job is never refused). Relaxed: the
     * count is sequenced before the push, whose release reaches the worker
     * that runs the job and, through that worker's release of tasks_out,
     * the destroy that counts it finished (see wait_quiescent()). */
    atomic_fetch_add_explicit(&s->gate, 1, memory_order_relaxed);
    moirai__sched_inject(s, header, (int)prio);
    return 0;
}

/* The unit every queue of the scheduler holds (internal).
 *
 * Deques, LIFO slots, the injector and the inboxes store pointers to jobs.
 * A job is a header embedded at the start of something larger: a heap task
 * (sched.c), a join frame on a caller's stack (join.c), a runtime job in
 * memory its submitter owns (runtime_job.c, the header sits in the public
 * struct's `reserved` words), or whatever scopes, parallel loops and
 * pipelines build. Whoever takes a job from a queue calls its `execute`
 * exactly once; `execute` owns the job from then on (a heap task frees
 * itself, a stack frame signals its owner, a runtime job's owner may
 * submit it again). */
#ifndef MOIRAI_SCHED_JOB_INTERNAL_H
#define MOIRAI_SCHED_JOB_INTERNAL_H

#include <stdatomic.h>

struct moirai__worker;

typedef struct moirai__job {
    /* Runs the job on worker `w` (never NULL: jobs run on workers only).
     * Called exactly once, by whichever thread took the job. */
    void (*execute)(struct moirai__job *job, struct moirai__worker *w);
    /* The injector's intrusive link (injector.c): written by the injector
     * only, while the job is queued there; meaningless elsewhere. Because
     * every job carries its own link, queueing on the injector never
     * allocates and never fails. */
    _Atomic(struct moirai__job *) next;
} moirai__job_t;

#endif

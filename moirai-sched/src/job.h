/* The unit every queue of the scheduler holds (internal).
 *
 * Deques, LIFO slots, the injector and the inboxes store pointers to jobs.
 * A job is a header embedded at the start of something larger: a heap task
 * (sched.c), a join frame on a caller's stack (join.c), or whatever scopes,
 * parallel loops and pipelines build. Whoever takes a job from a queue
 * calls its `execute` exactly once; `execute` owns the job from then on (a
 * heap task frees itself, a stack frame signals its owner). */
#ifndef MOIRAI_SCHED_JOB_H
#define MOIRAI_SCHED_JOB_H

struct moirai__worker;

typedef struct moirai__job {
    /* Runs the job on worker `w` (never NULL: jobs run on workers only).
     * Called exactly once, by whichever thread took the job. */
    void (*execute)(struct moirai__job *job, struct moirai__worker *w);
} moirai__job_t;

#endif

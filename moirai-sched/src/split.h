/* Where a parallel loop runs and how finely it splits: shared by
 * moirai_parallel_* (parallel.c) and their fallible variants
 * (parallel_fallible.c). */
#ifndef MOIRAI_SCHED_SPLIT_H
#define MOIRAI_SCHED_SPLIT_H

#include <stddef.h>

#include <moirai/sched/join.h>
#include <moirai/sched/sched.h>

/* Pieces per worker with an automatic grain (parallel.h). */
#define MOIRAI__SPLIT_PIECES_PER_WORKER 8

/* Runs a(arg_a) and b(arg_b): through moirai_join() on `sched`, or one
 * after the other when there is no scheduler. A join that fails (which
 * documented use on a worker never does) also falls back to plain calls,
 * so no piece is ever lost. */
void moirai__split_fork2(moirai_sched_t *sched, moirai_join_fn a, void *arg_a, moirai_join_fn b,
                         void *arg_b);

/* Works out where to run: stores the scheduler to split on in `*out`
 * (`sched`, or for NULL the calling worker's, else the process default)
 * and sets `*outside` when the caller is not one of its workers, so the
 * top level has to go through the injector. Returns 0, or the default
 * scheduler's creation error (-ENOMEM, -EAGAIN). */
int moirai__split_resolve(moirai_sched_t *sched, moirai_sched_t **out, int *outside);

/* The grain actually used: `grain`, or about
 * MOIRAI__SPLIT_PIECES_PER_WORKER pieces per worker (at least one index
 * each). */
size_t moirai__split_grain(moirai_sched_t *sched, size_t n, size_t grain);

#endif

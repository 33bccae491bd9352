/* The pool of threads for blocking calls behind moirai_sched_spawn_blocking()
 * (internal; see sched.h for the behaviour users see).
 *
 * Threads are created on demand: a submit that finds no idle thread starts
 * one, up to `max_threads`; beyond that, tasks wait in a FIFO queue. A
 * thread that stays idle for `keepalive_ns` exits. */
#ifndef MOIRAI_SCHED_BLOCKING_H
#define MOIRAI_SCHED_BLOCKING_H

#include <stddef.h>
#include <stdint.h>

#include <moirai/core/handle.h>
#include <moirai/core/task.h>

typedef struct moirai__blocking moirai__blocking_t;

/* Creates an empty pool (no thread yet). Returns 0, -EINVAL (max_threads
 * < 1) or -ENOMEM. */
int moirai__blocking_create(moirai__blocking_t **out, int max_threads, uint64_t keepalive_ns,
                            size_t stack_size);

/* Queues `fn(arg)`. `handle` is NULL or bound and retained as core's
 * executor contract says: the pool runs it with moirai_handle_run() and
 * then releases it. Never blocks (beyond a short lock); thread-safe.
 * Returns 0, -ENOMEM, -ESHUTDOWN (after moirai__blocking_destroy() began),
 * or -EAGAIN (no thread exists and none can be created); on error nothing
 * was queued. */
int moirai__blocking_submit(moirai__blocking_t *pool, moirai_task_fn fn, void *arg,
                            moirai_handle_t *handle);

/* Number of threads alive now (for tests and statistics). */
int moirai__blocking_threads(moirai__blocking_t *pool);

/* Tasks queued and not yet taken by a thread, and threads alive, read
 * together under the pool's lock (for dumps). */
void moirai__blocking_load(moirai__blocking_t *pool, long *queued, int *threads);

/* Refuses new work, runs everything queued, joins every thread and frees
 * the pool. Blocks. */
void moirai__blocking_destroy(moirai__blocking_t *pool);

#endif

/* Backtraces of worker threads for dumps (internal; see
 * moirai/sched/dump.h for what users are told). */
#ifndef MOIRAI_SCHED_BACKTRACE_H
#define MOIRAI_SCHED_BACKTRACE_H

#include <pthread.h>
#include <stdio.h>

/* Most frames a backtrace keeps (the innermost ones). */
#define MOIRAI__BACKTRACE_FRAMES 48

/* Takes the backtrace of `thread` (the calling thread's own, directly;
 * another's through MOIRAI_SCHED_DUMP_SIGNAL) into `frames` (cap
 * MOIRAI__BACKTRACE_FRAMES). Returns the number of frames, or a negative
 * errno with `*why` set to a sentence: -EBUSY (the process has its own
 * handler for the signal), -ETIMEDOUT (no answer within 200 ms), -ESRCH
 * (the signal could not be sent). The caller serialises calls (the dump
 * registry's lock); blocks the thread (not a fiber park) up to 200 ms. */
int moirai__backtrace_thread(pthread_t thread, void **frames, const char **why);

/* Writes `n` frames, one line each, prefixed with `indent`: number,
 * address, symbol+offset and object as dladdr() finds them. Returns 0 or
 * -EIO. */
int moirai__backtrace_print(FILE *out, const char *indent, void *const *frames, int n);

#endif

/* The trace recorder's shared state (internal): the per-thread buffers and
 * the session they belong to, used by trace.c (recording, sessions) and
 * trace_write.c (the JSON writer). */
#ifndef MOIRAI_CORE_TRACE_INTERNAL_H
#define MOIRAI_CORE_TRACE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* One recorded event: 48 bytes. The strings are borrowed from the caller
 * (the header says they must outlive the written trace). */
typedef struct moirai__trace_event {
    uint64_t ts_ns;       /* moirai_clock_now_ns() when recorded */
    const char *cat;      /* category */
    const char *name;     /* event name */
    const char *arg_name; /* NULL: no argument */
    int64_t arg_value;
    char phase; /* 'B', 'E' or 'i' */
} moirai__trace_event_t;

/* A thread's buffer. Only its owner thread appends events; other threads
 * read it under moirai__trace_lock. The fields marked "lock" change only
 * with moirai__trace_lock held. */
typedef struct moirai__trace_buf {
    struct moirai__trace_buf *next; /* lock: the list of all buffers */
    moirai__trace_event_t *events;  /* lock (owner only, at attach) */
    uint32_t capacity;              /* lock (owner only, at attach) */
    int session;                    /* lock: the session its events belong to */
    bool orphaned;                  /* lock: its thread has exited */
    pid_t tid;                      /* the owner's kernel thread id */
    char name[16];                  /* the owner's thread name at attach */
    /* Events published: written by the owner only, with release after
     * the event is complete, so a reader that loads it with acquire reads
     * only whole events. */
    _Atomic uint32_t count;
    /* Events this thread dropped: written by the owner only (relaxed; a
     * counter guarding nothing). */
    _Atomic uint64_t dropped;
} moirai__trace_buf_t;

/* Guards the list, the session bookkeeping below and the "lock" fields of
 * every buffer. Never held while user code runs. */
extern pthread_mutex_t moirai__trace_lock;
/* lock: every buffer, newest first. */
extern moirai__trace_buf_t *moirai__trace_bufs;
/* lock: the session whose events the buffers hold (0: none). While
 * recording it equals moirai__trace_session. */
extern int moirai__trace_data_session;
/* lock: the clock at the start and stop of that session (stop is 0 while
 * recording). */
extern uint64_t moirai__trace_start_ns, moirai__trace_stop_ns;
/* lock: events_per_thread of that session. */
extern uint32_t moirai__trace_capacity;
/* Events dropped by threads that had no buffer (thread limit, allocation
 * failure, exited thread): relaxed, a counter guarding nothing. */
extern _Atomic uint64_t moirai__trace_dropped_nobuf;

#endif

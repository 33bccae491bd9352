/* The trace recorder: a timeline a person can look at.
 *
 * While recording, every thread that records an event appends it to a
 * buffer of its own (allocated on its first event through the allocation
 * hook, bounded by moirai_trace_config_t), with no lock and no atomic
 * read-modify-write. Moirai's scheduler records each job it runs as a span
 * and each steal as an instant; fibers record their run slices; programs
 * add their own spans. After moirai_trace_stop(), moirai_trace_write_json()
 * writes the Chrome trace-event JSON format, which Perfetto
 * (ui.perfetto.dev) and chrome://tracing open: one lane per thread.
 *
 * A full buffer never blocks and never grows: the event is dropped and
 * counted (moirai_trace_stats(), and "dropped" in the file's otherData).
 * Names and categories are borrowed, not copied: pass string literals or
 * strings that outlive the written trace.
 *
 * Off, recording costs one relaxed load of a global word at each
 * instrumentation point (MOIRAI_TRACE_ENABLED()). See docs/observability.md,
 * "Trace recorder". */
#ifndef MOIRAI_CORE_TRACE_H
#define MOIRAI_CORE_TRACE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <moirai/core/atomic.h>
#include <moirai/core/export.h>

/* Events each thread's buffer holds when the configuration leaves it 0. */
#define MOIRAI_TRACE_EVENTS_DEFAULT 32768u
/* The largest events_per_thread accepted (48 bytes an event: 768 MiB). */
#define MOIRAI_TRACE_EVENTS_MAX (1u << 24)
/* The smallest events_per_thread accepted: room for one span. */
#define MOIRAI_TRACE_EVENTS_MIN 2u
/* Threads that may record in one session when the configuration leaves it 0. */
#define MOIRAI_TRACE_THREADS_DEFAULT 256u
/* The largest max_threads accepted. */
#define MOIRAI_TRACE_THREADS_MAX 65536u

/* How a recording session is bounded. Zero in a field means its default,
 * so a zeroed struct and moirai_trace_config_init() agree. The memory a
 * session may take is at most max_threads * events_per_thread * 48 bytes
 * plus a small header per thread. */
typedef struct moirai_trace_config {
    /* Events one thread's buffer holds (0: MOIRAI_TRACE_EVENTS_DEFAULT;
     * else MOIRAI_TRACE_EVENTS_MIN..MOIRAI_TRACE_EVENTS_MAX). */
    uint32_t events_per_thread;
    /* Threads that may record in the session (0:
     * MOIRAI_TRACE_THREADS_DEFAULT; else 1..MOIRAI_TRACE_THREADS_MAX). The
     * events of any further thread are dropped and counted. */
    uint32_t max_threads;
} moirai_trace_config_t;

/* Counts of the current session, or of the last one once stopped. */
typedef struct moirai_trace_stats {
    uint64_t recorded; /* events in the buffers, ready to be written */
    uint64_t dropped;  /* events lost: buffer full, thread limit, allocation failure */
    uint32_t threads;  /* threads that have a buffer in this session */
    bool recording;    /* true between moirai_trace_start() and moirai_trace_stop() */
} moirai_trace_stats_t;

/* The kind of an event; the values are the trace format's "ph" letters. */
typedef enum moirai_trace_phase {
    MOIRAI_TRACE_PHASE_BEGIN = 'B',   /* a span starts on this thread */
    MOIRAI_TRACE_PHASE_END = 'E',     /* the innermost open span of this thread ends */
    MOIRAI_TRACE_PHASE_INSTANT = 'i', /* a point in time on this thread */
} moirai_trace_phase_t;

#ifdef __cplusplus
extern "C" {
#endif

/* The current session's number, 0 while not recording. Internal to
 * MOIRAI_TRACE_ENABLED(); use moirai_trace_stats() instead. */
MOIRAI_CORE_API extern MOIRAI_ATOMIC(int) moirai__trace_session;

/* Fills `cfg` with the defaults (all zero). Ignores NULL. */
MOIRAI_CORE_API void moirai_trace_config_init(moirai_trace_config_t *cfg);

/* Starts a recording session with `cfg` (NULL: defaults). The events of
 * the previous session, if any, are discarded first (as by
 * moirai_trace_reset()). Takes the recorder's lock, which a writer holds
 * for the length of a write, so it may wait for one; thread-safe. Threads see the start promptly
 * (relaxed: an event racing with it may be recorded or not). Returns 0; -EALREADY while a session
 * is recording; -EINVAL for an out-of-range field (nothing changes). */
MOIRAI_CORE_API int moirai_trace_start(const moirai_trace_config_t *cfg);

/* Stops recording; the events stay in their buffers for
 * moirai_trace_write_json() and moirai_trace_stats(). An event racing with
 * the stop may still be recorded. Never blocks beyond a short internal
 * lock; thread-safe. Returns 0, or -EALREADY when not recording. */
MOIRAI_CORE_API int moirai_trace_stop(void);

/* True while a session is recording (relaxed load). Thread-safe. */
MOIRAI_CORE_API bool moirai_trace_recording(void);

/* Writes the stopped session as Chrome trace-event JSON to `out`: an
 * object whose "traceEvents" array holds process_name and thread_name
 * metadata events ("ph":"M") and the B, E and i events of each thread in
 * the order it recorded them, "ts" in microseconds since the start (with
 * nanosecond decimals); "otherData" carries "recorded", "dropped",
 * "threads" and "events_per_thread". A span still open when the session
 * stopped is closed at the stop time with "args":{"unfinished":1}, so
 * every B has its E. Blocks on stdio; thread-safe (one writer at a time).
 * Returns 0; -EINVAL if `out` is NULL; -EBUSY while recording (stop
 * first); -EIO if the stream reports an error. */
MOIRAI_CORE_API int moirai_trace_write_json(FILE *out);

/* As moirai_trace_write_json(), into the file at `path` (created or
 * truncated, mode 0666 before the umask). Returns also -EINVAL if `path`
 * is NULL and the negated errno of fopen() or fclose(). */
MOIRAI_CORE_API int moirai_trace_write_json_path(const char *path);

/* Copies the session's counts into `*out`. Takes the recorder's lock (so
 * it may wait for a write in progress); thread-safe; while recording, the counts are a snapshot
 * (acquire: every event counted in `recorded` is complete). Returns 0, or
 * -EINVAL if `out` is NULL. */
MOIRAI_CORE_API int moirai_trace_stats(moirai_trace_stats_t *out);

/* Discards the recorded events and frees the buffers of threads that have
 * exited; a live thread keeps its buffer for its next session and frees
 * it when it exits. Takes the recorder's lock (may wait for a write in
 * progress); thread-safe. Returns 0, or -EBUSY while recording. */
MOIRAI_CORE_API int moirai_trace_reset(void);

/* Records one event on the calling thread, when recording: `phase`, a
 * category `cat` and a `name` (both borrowed: they must outlive the
 * written trace; NULL is written as "?"), and one integer argument
 * `arg_name`: `arg_value` when `arg_name` is not NULL. A span's END closes
 * the thread's innermost open span; an END with no span open in this
 * session is ignored. When the buffer is full the event is dropped and
 * counted: a BEGIN is recorded only if its END will fit, and an END (or
 * a nested BEGIN) whose BEGIN was dropped is dropped too, so spans stay
 * balanced. The thread's first event allocates its buffer; if that fails
 * the event is dropped and counted and the next event tries again. Never
 * blocks (the first event of a thread takes a short internal lock);
 * thread-safe. Costs one relaxed load when not recording; wrap it in
 * MOIRAI_TRACE() to skip the call as well. */
MOIRAI_CORE_API void moirai_trace_emit(moirai_trace_phase_t phase, const char *cat,
                                       const char *name, const char *arg_name, int64_t arg_value);

/* Opens a span called `name` (borrowed) in category "user" on the calling
 * thread. End it with moirai_trace_end() on the same thread, before the
 * code parks a fiber or returns to a scheduler. As moirai_trace_emit(). */
MOIRAI_CORE_API void moirai_trace_begin(const char *name);

/* Closes the calling thread's innermost open span. As moirai_trace_emit(). */
MOIRAI_CORE_API void moirai_trace_end(void);

/* Records an instant called `name` (borrowed) in category "user" on the
 * calling thread. As moirai_trace_emit(). */
MOIRAI_CORE_API void moirai_trace_instant(const char *name);

#ifdef __cplusplus
}
#endif

/* The session number, read with a relaxed load in the caller's own
 * language (an event racing with start or stop may go either way).
 * Internal to the macros below. */
#ifdef __cplusplus
#define MOIRAI__TRACE_SESSION() moirai__trace_session.load(std::memory_order_relaxed)
#else
#define MOIRAI__TRACE_SESSION() atomic_load_explicit(&moirai__trace_session, memory_order_relaxed)
#endif

/* True while a session records: one relaxed load and a branch predicted
 * not taken. */
#define MOIRAI_TRACE_ENABLED() __builtin_expect(MOIRAI__TRACE_SESSION() != 0, 0)

/* Records an event as moirai_trace_emit() does; when not recording, costs
 * one relaxed load and does not evaluate the arguments. */
#define MOIRAI_TRACE(phase, cat, name, arg_name, arg_value)                                        \
    do {                                                                                           \
        if (MOIRAI_TRACE_ENABLED())                                                                \
            moirai_trace_emit((phase), (cat), (name), (arg_name), (arg_value));                    \
    } while (0)

#endif

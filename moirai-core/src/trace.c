/* The trace recorder: sessions (start, stop, reset, stats) and recording
 * events into per-thread buffers. The JSON writer is trace_write.c.
 *
 * The fast path touches only the calling thread's own state: one relaxed
 * load of the session number, the thread-local bookkeeping, one event
 * written into the thread's buffer and one release store of its count.
 * The lock is taken once per thread and session, when a thread attaches
 * its buffer to the session.
 *
 * Why buffers are never freed under a live thread: a thread may have
 * loaded the session number just before a stop and be about to write an
 * event, and nothing cheap tells another thread when it is done. So only
 * the owner replaces its own buffer (when it attaches to a new session),
 * and other threads free a buffer only once its owner has exited. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/core/error.h>
#include <moirai/core/trace.h>

#include "trace_internal.h"

_Atomic int moirai__trace_session;

pthread_mutex_t moirai__trace_lock = PTHREAD_MUTEX_INITIALIZER;
moirai__trace_buf_t *moirai__trace_bufs;
int moirai__trace_data_session;
uint64_t moirai__trace_start_ns, moirai__trace_stop_ns;
uint32_t moirai__trace_capacity;
_Atomic uint64_t moirai__trace_dropped_nobuf;

/* lock: the configuration of the recording session and how many threads
 * have attached to it. */
static uint32_t max_threads;
static uint32_t session_threads;
/* lock: the number the last session took (sessions count up from 1,
 * skipping 0, which means "not recording"). */
static int last_session;

/* The calling thread's recording state. `session` is the session the rest
 * describes; a thread that sees another session number starts afresh. */
typedef struct trace_tls {
    moirai__trace_buf_t *buf; /* this thread's buffer, kept across sessions */
    int session;
    bool attached;         /* buf holds this session's events */
    bool exited;           /* the thread-exit destructor has run */
    uint32_t open;         /* recorded BEGINs not yet ended (their END slots are reserved) */
    uint32_t dropped_open; /* dropped BEGINs not yet ended (their ENDs are dropped too) */
} trace_tls_t;

static __thread trace_tls_t tls __attribute__((tls_model("initial-exec")));

/* The key whose destructor tells the recorder that a thread with a buffer
 * has exited. */
static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;
static bool exit_key_ok;

/* ---- Buffers ---- */

static void buf_unlink_locked(moirai__trace_buf_t *b)
{
    for (moirai__trace_buf_t **p = &moirai__trace_bufs; *p != NULL; p = &(*p)->next) {
        if (*p == b) {
            *p = b->next;
            return;
        }
    }
}

static void buf_free(moirai__trace_buf_t *b)
{
    moirai_free(b->events);
    moirai_free(b);
}

/* Frees the buffers whose threads have exited: nobody can write to them
 * any more. */
static void free_orphans_locked(void)
{
    moirai__trace_buf_t **p = &moirai__trace_bufs;
    while (*p != NULL) {
        moirai__trace_buf_t *b = *p;
        if (b->orphaned) {
            *p = b->next;
            buf_free(b);
        } else {
            p = &b->next;
        }
    }
}

/* Runs when a thread that owns a buffer exits. Its events stay readable
 * if they belong to the session the buffers hold; else nothing needs the
 * buffer. */
static void thread_exit(void *arg)
{
    moirai__trace_buf_t *b = arg;
    pthread_mutex_lock(&moirai__trace_lock);
    if (moirai__trace_data_session != 0 && b->session == moirai__trace_data_session) {
        b->orphaned = true;
    } else {
        buf_unlink_locked(b);
        buf_free(b);
    }
    pthread_mutex_unlock(&moirai__trace_lock);
    tls.buf = NULL;
    tls.attached = false;
    tls.exited = true;
}

static void make_exit_key(void)
{
    exit_key_ok = pthread_key_create(&exit_key, thread_exit) == 0;
}

/* What attach() did. */
enum attach_result {
    ATTACHED, /* tls.buf now records this session's events */
    FAILED,   /* no buffer: the event is dropped and counted */
    GONE,     /* the session ended meanwhile: the event is ignored */
};

/* Gives the calling thread a buffer in session `cur`: its old buffer
 * (emptied; reallocated if the session wants another size) or a new one.
 * Slow path: once per thread and session, or after a failure. */
static enum attach_result attach(int cur)
{
    if (tls.exited)
        return FAILED;
    (void)pthread_once(&exit_key_once, make_exit_key);
    if (!exit_key_ok)
        return FAILED;
    enum attach_result r = FAILED;
    pthread_mutex_lock(&moirai__trace_lock);
    /* Relaxed is enough under the lock: start and stop change the number
     * with the lock held. */
    if (atomic_load_explicit(&moirai__trace_session, memory_order_relaxed) != cur) {
        r = GONE;
        goto out;
    }
    if (session_threads >= max_threads)
        goto out;
    moirai__trace_buf_t *b = tls.buf;
    if (b != NULL && b->capacity != moirai__trace_capacity) {
        /* Ours, and out of every session the writer reads (its session is
         * not this one, and the lock keeps the writer out). */
        moirai_free(b->events);
        b->events = NULL;
        b->capacity = 0;
    }
    if (b == NULL) {
        b = moirai_calloc(1, sizeof *b);
        if (b == NULL)
            goto out;
        if (pthread_setspecific(exit_key, b) != 0) {
            moirai_free(b);
            goto out;
        }
        b->tid = gettid();
        if (pthread_getname_np(pthread_self(), b->name, sizeof b->name) != 0)
            b->name[0] = '\0';
        b->next = moirai__trace_bufs;
        moirai__trace_bufs = b;
        tls.buf = b;
    }
    if (b->events == NULL) {
        b->session = 0;
        b->events = moirai_malloc((size_t)moirai__trace_capacity * sizeof *b->events);
        if (b->events == NULL)
            goto out;
        b->capacity = moirai__trace_capacity;
    }
    b->session = cur;
    /* Relaxed: readers read these under the lock we hold. */
    atomic_store_explicit(&b->count, 0, memory_order_relaxed);
    atomic_store_explicit(&b->dropped, 0, memory_order_relaxed);
    session_threads++;
    tls.attached = true;
    r = ATTACHED;
out:
    pthread_mutex_unlock(&moirai__trace_lock);
    return r;
}

/* ---- Recording ---- */

/* Counts one dropped event of the calling thread. Single writer, so a
 * relaxed load and store suffice for the buffer's counter. */
static void count_drop(moirai__trace_buf_t *b)
{
    if (b != NULL)
        atomic_store_explicit(&b->dropped,
                              atomic_load_explicit(&b->dropped, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&moirai__trace_dropped_nobuf, 1, memory_order_relaxed);
}

/* Drops an event, keeping spans balanced: a dropped BEGIN makes its END
 * (and everything opened inside it) dropped too. */
static void drop(moirai__trace_buf_t *b, char phase)
{
    if (phase == 'B') {
        tls.dropped_open++;
    } else if (phase == 'E') {
        if (tls.dropped_open == 0)
            return; /* an END with no span open in this session: ignored */
        tls.dropped_open--;
    }
    count_drop(b);
}

void moirai_trace_emit(moirai_trace_phase_t phase, const char *cat, const char *name,
                       const char *arg_name, int64_t arg_value)
{
    /* Relaxed: the number guards no data of its own (attach() takes the
     * lock); an event racing with start or stop may go either way. */
    int cur = atomic_load_explicit(&moirai__trace_session, memory_order_relaxed);
    if (cur == 0)
        return;
    char ph = (char)phase;
    if (ph != 'B' && ph != 'E' && ph != 'i')
        return;
    if (tls.session != cur) {
        /* A new session: spans of the old one are not ours to close. */
        tls.session = cur;
        tls.attached = false;
        tls.open = 0;
        tls.dropped_open = 0;
    }
    if (!tls.attached) {
        if (ph == 'E') {
            /* Unattached, nothing of this session was recorded here: the
             * END is of a dropped span (counted) or of none (ignored). */
            drop(NULL, ph);
            return;
        }
        enum attach_result r = attach(cur);
        if (r == GONE)
            return;
        if (r == FAILED) {
            drop(NULL, ph);
            return;
        }
    }
    moirai__trace_buf_t *b = tls.buf;
    /* Relaxed: only this thread writes the count. */
    uint32_t n = atomic_load_explicit(&b->count, memory_order_relaxed);
    uint32_t room = b->capacity - n; /* never below tls.open: those slots are reserved */
    if (ph == 'B') {
        if (tls.dropped_open != 0 || room < tls.open + 2) {
            drop(b, ph);
            return;
        }
        tls.open++;
    } else if (ph == 'E') {
        if (tls.dropped_open != 0) {
            drop(b, ph);
            return;
        }
        if (tls.open == 0)
            return; /* an END with no span open in this session: ignored */
        tls.open--; /* uses the slot its BEGIN reserved */
    } else if (room < tls.open + 1) {
        drop(b, ph);
        return;
    }
    moirai__trace_event_t *e = &b->events[n];
    e->ts_ns = moirai_clock_now_ns();
    e->cat = cat;
    e->name = name;
    e->arg_name = arg_name;
    e->arg_value = arg_value;
    e->phase = ph;
    /* Release: a reader that loads the count with acquire sees the whole
     * event written above. */
    atomic_store_explicit(&b->count, n + 1, memory_order_release);
}

void moirai_trace_begin(const char *name)
{
    moirai_trace_emit(MOIRAI_TRACE_PHASE_BEGIN, "user", name, NULL, 0);
}

void moirai_trace_end(void)
{
    moirai_trace_emit(MOIRAI_TRACE_PHASE_END, "user", NULL, NULL, 0);
}

void moirai_trace_instant(const char *name)
{
    moirai_trace_emit(MOIRAI_TRACE_PHASE_INSTANT, "user", name, NULL, 0);
}

/* ---- Sessions ---- */

void moirai_trace_config_init(moirai_trace_config_t *cfg)
{
    if (cfg != NULL)
        memset(cfg, 0, sizeof *cfg);
}

/* Forgets the held session's events (live threads empty their buffers
 * when they next attach). */
static void discard_locked(void)
{
    free_orphans_locked();
    moirai__trace_data_session = 0;
    moirai__trace_start_ns = 0;
    moirai__trace_stop_ns = 0;
    session_threads = 0;
    atomic_store_explicit(&moirai__trace_dropped_nobuf, 0, memory_order_relaxed);
}

int moirai_trace_start(const moirai_trace_config_t *cfg)
{
    moirai_trace_config_t c;
    moirai_trace_config_init(&c);
    if (cfg != NULL)
        c = *cfg;
    if (c.events_per_thread == 0)
        c.events_per_thread = MOIRAI_TRACE_EVENTS_DEFAULT;
    if (c.max_threads == 0)
        c.max_threads = MOIRAI_TRACE_THREADS_DEFAULT;
    pthread_mutex_lock(&moirai__trace_lock);
    if (atomic_load_explicit(&moirai__trace_session, memory_order_relaxed) != 0) {
        pthread_mutex_unlock(&moirai__trace_lock);
        return -EALREADY;
    }
    if (c.events_per_thread < MOIRAI_TRACE_EVENTS_MIN ||
        c.events_per_thread > MOIRAI_TRACE_EVENTS_MAX || c.max_threads > MOIRAI_TRACE_THREADS_MAX) {
        pthread_mutex_unlock(&moirai__trace_lock);
        return MOIRAI_EINVAL;
    }
    discard_locked();
    last_session = last_session == INT_MAX ? 1 : last_session + 1;
    moirai__trace_data_session = last_session;
    moirai__trace_capacity = c.events_per_thread;
    max_threads = c.max_threads;
    moirai__trace_start_ns = moirai_clock_now_ns();
    /* Relaxed: what a recording thread needs of the session (capacity,
     * limits) it reads in attach() under the lock held here. */
    atomic_store_explicit(&moirai__trace_session, last_session, memory_order_relaxed);
    pthread_mutex_unlock(&moirai__trace_lock);
    return 0;
}

int moirai_trace_stop(void)
{
    pthread_mutex_lock(&moirai__trace_lock);
    if (atomic_load_explicit(&moirai__trace_session, memory_order_relaxed) == 0) {
        pthread_mutex_unlock(&moirai__trace_lock);
        return -EALREADY;
    }
    /* Relaxed: events racing with the stop may go either way; the writer
     * reads each buffer's count with acquire. */
    atomic_store_explicit(&moirai__trace_session, 0, memory_order_relaxed);
    moirai__trace_stop_ns = moirai_clock_now_ns();
    pthread_mutex_unlock(&moirai__trace_lock);
    return 0;
}

bool moirai_trace_recording(void)
{
    return atomic_load_explicit(&moirai__trace_session, memory_order_relaxed) != 0;
}

int moirai_trace_reset(void)
{
    pthread_mutex_lock(&moirai__trace_lock);
    if (atomic_load_explicit(&moirai__trace_session, memory_order_relaxed) != 0) {
        pthread_mutex_unlock(&moirai__trace_lock);
        return -EBUSY;
    }
    discard_locked();
    pthread_mutex_unlock(&moirai__trace_lock);
    return 0;
}

int moirai_trace_stats(moirai_trace_stats_t *out)
{
    if (out == NULL)
        return MOIRAI_EINVAL;
    moirai_trace_stats_t s = {0};
    pthread_mutex_lock(&moirai__trace_lock);
    s.recording = atomic_load_explicit(&moirai__trace_session, memory_order_relaxed) != 0;
    int held = moirai__trace_data_session;
    for (moirai__trace_buf_t *b = moirai__trace_bufs; held != 0 && b != NULL; b = b->next) {
        if (b->session != held)
            continue;
        /* Acquire: pairs with the owner's release, so every event counted
         * is complete (the header promises it). */
        s.recorded += atomic_load_explicit(&b->count, memory_order_acquire);
        s.dropped += atomic_load_explicit(&b->dropped, memory_order_relaxed);
        s.threads++;
    }
    s.dropped += atomic_load_explicit(&moirai__trace_dropped_nobuf, memory_order_relaxed);
    pthread_mutex_unlock(&moirai__trace_lock);
    *out = s;
    return 0;
}

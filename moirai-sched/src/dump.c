/* Dumps (moirai/sched/dump.h): the registry of live schedulers and the
 * report itself.
 *
 * The registry is what makes a dump of a scheduler being destroyed, or
 * already freed, safe: a dump looks the pointer up under the registry
 * lock and holds the lock until its report is written, and destroy takes
 * the scheduler out under the same lock before it stops anything. So a
 * dump either runs entirely before destroy begins its work, or finds the
 * scheduler gone and returns -ESHUTDOWN without touching it. The lock is
 * process-wide and held while the report is written: dumps are rare, and
 * one at a time also serialises the backtrace request slot
 * (backtrace.c). */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <moirai/core/clock.h>
#include <moirai/sched/dump.h>

#include "backtrace.h"
#include "sched_internal.h"

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct moirai_sched *registry; /* under registry_lock */

void moirai__dump_register(struct moirai_sched *s)
{
    pthread_mutex_lock(&registry_lock);
    s->dump_prev = NULL;
    s->dump_next = registry;
    if (registry != NULL)
        registry->dump_prev = s;
    registry = s;
    pthread_mutex_unlock(&registry_lock);
}

void moirai__dump_unregister(struct moirai_sched *s)
{
    pthread_mutex_lock(&registry_lock);
    if (s->dump_prev != NULL)
        s->dump_prev->dump_next = s->dump_next;
    else if (registry == s)
        registry = s->dump_next;
    if (s->dump_next != NULL)
        s->dump_next->dump_prev = s->dump_prev;
    s->dump_prev = s->dump_next = NULL;
    pthread_mutex_unlock(&registry_lock);
}

/* Under registry_lock. Compares pointers only: `s` may be freed. */
static bool registered(const struct moirai_sched *s)
{
    for (const struct moirai_sched *r = registry; r != NULL; r = r->dump_next)
        if (r == s)
            return true;
    return false;
}

/* The report's output: the first write error is kept. */
typedef struct report {
    FILE *out;
    int err;
} report_t;

__attribute__((format(printf, 2, 3))) static void emit(report_t *r, const char *fmt, ...)
{
    if (r->err != 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    if (vfprintf(r->out, fmt, ap) < 0)
        r->err = -EIO;
    va_end(ap);
}

static const char *const level_names[MOIRAI_PRIORITY_COUNT] = {"critical", "high", "normal", "low",
                                                               "background"};

static void report_queues(report_t *r, moirai_sched_t *s)
{
    emit(r, "injector:");
    for (int p = 0; p < MOIRAI_PRIORITY_COUNT; p++) {
        /* Relaxed: a snapshot (see dump.h). A count may dip below zero for
         * an instant while a pop overtakes its push's increment. */
        int64_t n = atomic_load_explicit(&s->inj.count[p], memory_order_relaxed);
        emit(r, " %s %" PRId64, level_names[p], n > 0 ? n : 0);
    }
    emit(r, "\n");
    long queued = 0;
    int threads = 0;
    if (s->blocking != NULL)
        moirai__blocking_load(s->blocking, &queued, &threads);
    emit(r, "blocking pool: threads %d queued %ld\n", threads, queued);
}

/* What worker `i` does, on one line; returns whether it runs a job. */
static bool report_state(report_t *r, moirai_sched_t *s, int i, uint64_t now)
{
    moirai__worker_t *w = &s->workers[i];
    /* Relaxed: whether the worker sits in the sleeper list, a hint. */
    bool parked = atomic_load_explicit(&w->listed, memory_order_relaxed);
    if (!s->cfg.watchdog_ns) {
        emit(r, "%s\n", parked ? "parked" : "active (job names need the watchdog)");
        return !parked;
    }
    /* Acquire: pairs with the worker's release store of the name, so the
     * string may be read (it lives until the scheduler is destroyed). */
    const char *name = atomic_load_explicit(&w->stats.job_name, memory_order_acquire);
    if (name == NULL) {
        emit(r, "%s\n", parked ? "parked" : "looking for work");
        return false;
    }
    uint64_t seq = atomic_load_explicit(&w->stats.executed, memory_order_relaxed);
    const char *vname;
    uint64_t vseq, since;
    bool reported;
    if (moirai__watchdog_view(s, i, &vname, &vseq, &since, &reported) && vname == name &&
        vseq == seq) {
        uint64_t ran = now > since ? now - since : 0;
        emit(r, "running \"%s\" for at least %" PRIu64 " ms%s\n", name, ran / MOIRAI_NS_PER_MS,
             reported ? " STUCK (reported by the watchdog)" : "");
    } else {
        emit(r, "running \"%s\" (not sampled yet)\n", name);
    }
    return true;
}

static void report_backtrace(report_t *r, moirai__worker_t *w)
{
    void *frames[MOIRAI__BACKTRACE_FRAMES];
    const char *why = NULL;
    int n = moirai__backtrace_thread(w->thread, frames, &why);
    if (n < 0) {
        emit(r, "  backtrace: not available (%s)\n", why);
        return;
    }
    emit(r, "  backtrace:\n");
    if (r->err == 0 && moirai__backtrace_print(r->out, "    ", frames, n) != 0)
        r->err = -EIO;
}

static void report_worker(report_t *r, moirai_sched_t *s, int i, uint64_t now, unsigned flags)
{
    moirai__worker_t *w = &s->workers[i];
    bool comp = i >= s->nregular;
    /* Acquire: a compensating slot seen running was started with its
     * fields written (see watchdog.c). */
    if (comp &&
        atomic_load_explicit(&w->comp_state, memory_order_acquire) != MOIRAI__COMP_RUNNING) {
        emit(r, "worker %d (compensating): not running\n", i);
        return;
    }
    emit(r, "worker %d%s: ", i, comp ? " (compensating)" : "");
    bool busy = report_state(r, s, i, now);
    moirai__job_t *lifo = atomic_load_explicit(&w->lifo, memory_order_relaxed);
    int64_t inbox = atomic_load_explicit(&w->inbox_count, memory_order_relaxed);
    emit(r, "  queues: lifo %d deque %zu inbox %" PRId64 "\n", lifo != NULL,
         moirai__deque_size(w->deque), inbox > 0 ? inbox : 0);
    moirai_sched_worker_stats_t st;
    (void)moirai_sched_worker_stats(s, i, &st);
    emit(r,
         "  counters: executed %" PRIu64 " spawned %" PRIu64 " steals %" PRIu64 "/%" PRIu64
         " stolen %" PRIu64 " parks %" PRIu64 " watchdog_reports %" PRIu64 "\n",
         st.executed, st.spawned, st.steals, st.steal_attempts, st.stolen, st.parks,
         st.watchdog_reports);
    if (!(flags & MOIRAI_SCHED_DUMP_BACKTRACES))
        return;
    if (!busy)
        emit(r, "  backtrace: not available (the worker runs no job)\n");
    else if (comp)
        emit(r, "  backtrace: not available (compensating workers are not signalled: their "
                "threads come and go)\n");
    else
        report_backtrace(r, w);
}

/* The report of `s`, under registry_lock. */
static int dump_locked(moirai_sched_t *s, FILE *out, unsigned flags)
{
    report_t r = {out, 0};
    uint64_t now = moirai_clock_now_ns();
    emit(&r, "moirai-sched dump: scheduler %p at %" PRIu64 " ms\n", (void *)s,
         now / MOIRAI_NS_PER_MS);
    emit(&r, "workers %d compensating_slots %d guests_active %d", s->nregular,
         s->nworkers - s->nregular,
         (int)atomic_load_explicit(&s->guests_active, memory_order_relaxed));
    if (s->cfg.watchdog_ns != 0)
        emit(&r, " watchdog %" PRIu64 " ms\n", s->cfg.watchdog_ns / MOIRAI_NS_PER_MS);
    else
        emit(&r, " watchdog off\n");
    report_queues(&r, s);
    for (int i = 0; i < s->nworkers; i++)
        report_worker(&r, s, i, now, flags);
    emit(&r, "end of scheduler dump\n");
    if (r.err == 0 && fflush(out) != 0)
        r.err = -EIO;
    return r.err;
}

int moirai_sched_dump(moirai_sched_t *sched, FILE *out, unsigned flags)
{
    if (sched == NULL || out == NULL || (flags & ~MOIRAI_SCHED_DUMP_BACKTRACES) != 0)
        return -EINVAL;
    pthread_mutex_lock(&registry_lock);
    int rc = registered(sched) ? dump_locked(sched, out, flags) : -ESHUTDOWN;
    pthread_mutex_unlock(&registry_lock);
    return rc;
}

int moirai__dump_all(FILE *out, unsigned flags)
{
    pthread_mutex_lock(&registry_lock);
    int rc = 0, n = 0;
    for (moirai_sched_t *s = registry; s != NULL && rc == 0; s = s->dump_next, n++)
        rc = dump_locked(s, out, flags);
    if (rc == 0 && fprintf(out, "moirai-sched: %d live schedulers dumped\n", n) < 0)
        rc = -EIO;
    if (rc == 0 && fflush(out) != 0)
        rc = -EIO;
    pthread_mutex_unlock(&registry_lock);
    return rc;
}

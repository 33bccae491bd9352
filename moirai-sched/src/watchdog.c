/* The blocked-worker watchdog (see "Watchdog" in sched.h).
 *
 * Workers publish, per job, only the job's name (one store, and only with
 * the watchdog on); the job's sequence number is their `executed` counter,
 * which they keep anyway. One watchdog thread samples both every
 * watchdog_ns / 2 and keeps, per slot, what it saw last and since when.
 * A worker whose (sequence, name) has not changed, and that is not idle
 * (name NULL), for watchdog_ns since the watchdog first saw that pair has
 * run one job at least that long: it is reported once, and counted as
 * stuck for as long as it stays so. So a report never comes early (the
 * job began before the first sighting) and comes at most one period late.
 *
 * Compensation: slots nregular .. nworkers-1 are spare workers, built at
 * create (deque, inbox, victim order) with no thread. After each scan the
 * watchdog wants min(stuck workers, watchdog_compensate) of them running
 * (`comp_wanted`), starts threads in the lowest idle slots up to that,
 * joins those that have exited, and wakes sleeping ones that are no longer
 * wanted so that they exit (see moirai__worker_comp_main()). Spares steal
 * like any worker, so the queued work (injector, the stuck worker's LIFO
 * slot, deque and inbox) keeps running. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>

#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>
#include <moirai/core/log.h>
#include <moirai/core/park.h>

#include "sched_internal.h"

const char moirai__watchdog_unnamed[] = "(unnamed)";

/* What the watchdog last saw of one slot (watchdog thread only). */
typedef struct slot_view {
    const char *name; /* NULL: idle, or not running */
    uint64_t seq;
    uint64_t since; /* moirai_clock_now_ns() of the first sighting */
    bool reported;
} slot_view_t;

typedef struct moirai__watchdog {
    pthread_t thread;
    _Atomic uint32_t stop; /* 1: the thread returns; its park word */
    slot_view_t *view;     /* one per slot */
    /* Held by each scan and by moirai__watchdog_view(), so that a dump
     * reads a slot's view whole. Once per period: no cost worth a word. */
    pthread_mutex_t view_lock;
} moirai__watchdog_t;

static bool slot_running(moirai_sched_t *s, int i)
{
    /* Acquire: a slot seen EXITED is joined next, and its writes seen. */
    return i < s->nregular || atomic_load_explicit(&s->workers[i].comp_state,
                                                   memory_order_acquire) == MOIRAI__COMP_RUNNING;
}

/* One look at every slot; returns how many workers are stuck now. */
static int scan(moirai_sched_t *s, moirai__watchdog_t *wd, uint64_t now)
{
    uint64_t limit = s->cfg.watchdog_ns;
    int stuck = 0;
    for (int i = 0; i < s->nworkers; i++) {
        slot_view_t *v = &wd->view[i];
        moirai__worker_t *w = &s->workers[i];
        if (!slot_running(s, i)) {
            v->name = NULL;
            continue;
        }
        /* Acquire: pairs with the worker's release store of the name, so
         * the string it points to may be read. The counter is relaxed: a
         * change only restarts the timing. */
        const char *name = atomic_load_explicit(&w->stats.job_name, memory_order_acquire);
        uint64_t seq = atomic_load_explicit(&w->stats.executed, memory_order_relaxed);
        if (name == NULL) {
            v->name = NULL;
            continue;
        }
        if (name != v->name || seq != v->seq) {
            v->name = name;
            v->seq = seq;
            v->since = now;
            v->reported = false;
            continue;
        }
        uint64_t ran = now - v->since;
        if (ran < limit)
            continue;
        stuck++;
        if (!v->reported) {
            v->reported = true;
            moirai__stat_add(&w->stats.watchdog_reports, 1);
            MOIRAI_LOG(MOIRAI_LOG_WARN,
                       "moirai-sched watchdog: worker %d has been running job \"%s\" for %" PRIu64
                       " ms (limit %" PRIu64 " ms)%s",
                       i, name, ran / MOIRAI_NS_PER_MS, limit / MOIRAI_NS_PER_MS,
                       s->cfg.watchdog_compensate > 0 ? "; compensating" : "");
        }
    }
    return stuck;
}

/* Joins the thread of compensating slot `w` if it has exited. */
static void reap(moirai__worker_t *w)
{
    if (atomic_load_explicit(&w->comp_state, memory_order_acquire) != MOIRAI__COMP_EXITED)
        return;
    pthread_join(w->thread, NULL);
    w->thread_started = false;
    atomic_store_explicit(&w->comp_state, MOIRAI__COMP_IDLE, memory_order_relaxed);
}

/* Brings the compensating workers in line with `wanted`. */
static void compensate(moirai_sched_t *s, int wanted)
{
    /* Relaxed: see comp_wanted. Published before any start or wake, so a
     * worker started or woken below reads it as new as this at least. */
    atomic_store_explicit(&s->comp_wanted, wanted, memory_order_relaxed);
    for (int k = 0; k < s->cfg.watchdog_compensate; k++) {
        moirai__worker_t *w = &s->workers[s->nregular + k];
        reap(w);
        uint32_t state = atomic_load_explicit(&w->comp_state, memory_order_relaxed);
        if (k < wanted && state == MOIRAI__COMP_IDLE) {
            atomic_store_explicit(&w->comp_state, MOIRAI__COMP_RUNNING, memory_order_relaxed);
            w->searching = false;
            /* Counted before the thread exists, so whoever sees the work it
             * did also sees it counted; taken back if it cannot start. */
            moirai__stat_add(&w->stats.compensating_started, 1);
            /* The thread's creation orders everything above before it. */
            pthread_attr_t attr;
            int rc = pthread_attr_init(&attr);
            if (rc == 0) {
                (void)pthread_attr_setstacksize(&attr, s->cfg.stack_size);
                rc = pthread_create(&w->thread, &attr, moirai__worker_comp_main, w);
                pthread_attr_destroy(&attr);
            }
            if (rc != 0) {
                atomic_store_explicit(
                    &w->stats.compensating_started,
                    atomic_load_explicit(&w->stats.compensating_started, memory_order_relaxed) - 1,
                    memory_order_relaxed);
                atomic_store_explicit(&w->comp_state, MOIRAI__COMP_IDLE, memory_order_relaxed);
                MOIRAI_LOG(MOIRAI_LOG_WARN,
                           "moirai-sched watchdog: cannot start a compensating worker");
                break;
            }
            w->thread_started = true;
            MOIRAI_LOG(MOIRAI_LOG_INFO, "moirai-sched watchdog: compensating worker %d started",
                       w->index);
        } else if (k >= wanted && state == MOIRAI__COMP_RUNNING) {
            /* Not wanted any more: if it sleeps, it wakes, finds nothing
             * and exits. One that is busy exits once it finds no work. A
             * wake that comes just before it lists itself is lost, so this
             * is repeated on every scan until it has exited. */
            moirai__idle_wake_worker(s, w);
        }
    }
}

static void *watchdog_main(void *arg)
{
    moirai_sched_t *s = arg;
    moirai__watchdog_t *wd = s->watchdog;
    uint64_t period = s->cfg.watchdog_ns / 2;
    uint64_t next = moirai_clock_now_ns() + period;
    for (;;) {
        /* A timed park on the stop word: no CPU between scans. Acquire:
         * destroy's request is seen with what it wrote before. */
        while (atomic_load_explicit(&wd->stop, memory_order_acquire) == 0 &&
               moirai_clock_now_ns() < next)
            (void)moirai_park_nospin(&wd->stop, 0, next);
        if (atomic_load_explicit(&wd->stop, memory_order_acquire) != 0)
            break;
        uint64_t now = moirai_clock_now_ns();
        pthread_mutex_lock(&wd->view_lock);
        int stuck = scan(s, wd, now);
        pthread_mutex_unlock(&wd->view_lock);
        if (s->cfg.watchdog_compensate > 0)
            compensate(s, stuck < s->cfg.watchdog_compensate ? stuck : s->cfg.watchdog_compensate);
        next = now + period;
    }
    return NULL;
}

int moirai__watchdog_start(moirai_sched_t *s)
{
    moirai__watchdog_t *wd = moirai_calloc(1, sizeof *wd);
    if (wd == NULL)
        return -ENOMEM;
    wd->view = moirai_calloc((size_t)s->nworkers, sizeof *wd->view);
    if (wd->view == NULL) {
        moirai_free(wd);
        return -ENOMEM;
    }
    atomic_init(&wd->stop, 0);
    pthread_mutex_init(&wd->view_lock, NULL);
    s->watchdog = wd;
    if (pthread_create(&wd->thread, NULL, watchdog_main, s) != 0) {
        s->watchdog = NULL;
        pthread_mutex_destroy(&wd->view_lock);
        moirai_free(wd->view);
        moirai_free(wd);
        return -EAGAIN;
    }
    return 0;
}

void moirai__watchdog_stop(moirai_sched_t *s)
{
    moirai__watchdog_t *wd = s->watchdog;
    if (wd == NULL)
        return;
    /* Release: pairs with the thread's acquire load. */
    atomic_store_explicit(&wd->stop, 1, memory_order_release);
    moirai_unpark_all(&wd->stop);
    pthread_join(wd->thread, NULL);
    for (int k = s->nregular; k < s->nworkers; k++)
        reap(&s->workers[k]);
    pthread_mutex_destroy(&wd->view_lock);
    moirai_free(wd->view);
    moirai_free(wd);
    s->watchdog = NULL;
}

bool moirai__watchdog_view(struct moirai_sched *s, int i, const char **name, uint64_t *seq,
                           uint64_t *since, bool *reported)
{
    moirai__watchdog_t *wd = s->watchdog;
    if (wd == NULL || i < 0 || i >= s->nworkers)
        return false;
    pthread_mutex_lock(&wd->view_lock);
    const slot_view_t *v = &wd->view[i];
    *name = v->name;
    *seq = v->seq;
    *since = v->since;
    *reported = v->reported;
    pthread_mutex_unlock(&wd->view_lock);
    return *name != NULL;
}

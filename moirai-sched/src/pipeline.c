/* Pipelines: items carried through stages by scheduler tasks.
 *
 * A task carries one item from stage to stage for as long as it can: it
 * runs a parallel stage at once, and a serial stage if the stage is free
 * (and, in order, if the item's ticket is the stage's next one). Otherwise
 * it parks the item in that stage's buffer and ends. Whoever leaves a
 * serial stage takes the next item waiting there (the next ticket, or the
 * oldest arrival) and hands it, together with the stage, to a new task. So
 * a serial stage never runs twice at once and no item waits for a thread.
 *
 * The source is a serial stage that only one task at a time may hold (the
 * `source_busy` flag): that task reserves an item slot and a ticket, calls
 * the source, schedules the next source call if another item may start,
 * and carries its item on. When the pool of slots is empty the source is
 * not called; the task that finishes an item restarts it.
 *
 * Items: one slot per item allowed in flight, preallocated with the rest
 * of the state, so nothing is allocated once a stage has run. Tickets are
 * consecutive, and every ticket from a serial-in-order stage's next one up
 * to the newest belongs to an item still in flight, so at most `slots`
 * tickets are pending at a stage and `ticket % slots` names a unique
 * buffer entry.
 *
 * All bookkeeping (free slots, stage ownership, buffers, the source state,
 * the first error) sits under one mutex; stages themselves run outside it.
 * The mutex also carries the memory ordering between tasks: an item's data
 * and a serial stage's writes pass from one task to the next through a
 * critical section or a spawn.
 *
 * Completion: `tasks` counts live tasks. A task is counted before it is
 * spawned by a task that is itself counted, so the count reaches zero only
 * when no task runs and none is queued; since every waiting item has an
 * owner task in charge of restarting it, nothing is left in flight then.
 * The last task sets the latch and touches nothing afterwards. */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <moirai/core/alloc.h>
#include <moirai/core/trace.h>
#include <moirai/sched/pipeline.h>
#include <moirai/sync/mutex.h>

#include "latch.h"
#include "sched_internal.h"

/* Slots preallocated at most: larger max_in_flight values act as this
 * (documented in pipeline.h). */
#define SLOTS_MAX 1024u

typedef struct pipe pipe_t;

enum job_kind { JOB_SOURCE, JOB_ITEM };

/* What a task is asked to do. */
typedef struct job {
    pipe_t *pipe;
    enum job_kind kind;
    struct job *next; /* in a task's to-do list or a stage's FIFO */
} job_t;

typedef struct item {
    job_t job;         /* kind JOB_ITEM; first member */
    void *data;        /* what the last stage put in *out */
    uint64_t ticket;   /* source order, from 0 */
    size_t stage;      /* the next stage to run */
    bool owns_stage;   /* the carrier already holds stage `stage` (serial) */
    bool failed;       /* a stage failed on it: the rest are skipped */
    struct item *free; /* free-slot list */
} item_t;

typedef struct stage_state {
    bool busy;      /* a task holds this serial stage */
    uint64_t next;  /* in order: the ticket allowed in next */
    item_t **order; /* in order: waiting items by ticket % slots */
    job_t *head;    /* out of order: waiting items, oldest first */
    job_t *tail;
} stage_state_t;

struct pipe {
    moirai_sched_t *sched;
    const moirai_pipeline_stage_t *stages;
    size_t count;
    size_t slots;

    moirai_mutex_t lock;
    /* Under lock. */
    item_t *free_items;
    size_t in_flight;     /* slots taken: source called or item not yet out */
    uint64_t ticket;      /* the next ticket to hand out */
    bool source_busy;     /* a source job is queued or running */
    bool source_ended;    /* the source returned MOIRAI_PIPELINE_END */
    bool stopped;         /* a stage failed: the source is not called again */
    int error;            /* the first stage error */
    stage_state_t *state; /* per stage; [0] unused (the source) */

    job_t source_job;
    _Atomic size_t tasks;
    moirai__latch_t done;
};

typedef struct todo {
    job_t *head;
} todo_t;

static void todo_push(todo_t *todo, job_t *job)
{
    job->next = todo->head;
    todo->head = job;
}

static int pipe_task(void *arg, const moirai_cancel_token_t *cancel, void **result);

/* Queues `job` as a new task. If the pool refuses (no memory, shutting
 * down), the calling task keeps the job on its own list instead, so
 * nothing is lost; it only runs later and on this thread. */
static void spawn_job(pipe_t *p, job_t *job, todo_t *todo)
{
    /* Relaxed: the caller is a counted task, so the count cannot reach
     * zero meanwhile; the new task's decrement is ordered after this by
     * the spawn. */
    atomic_fetch_add_explicit(&p->tasks, 1, memory_order_relaxed);
    if (moirai__sched_spawn_owned(p->sched, pipe_task, job, NULL) != 0) {
        /* Not the last count: the caller holds its own. */
        atomic_fetch_sub_explicit(&p->tasks, 1, memory_order_relaxed);
        todo_push(todo, job);
    }
}

/* Records a stage error; the first one wins and stops the source. */
static void record_error(pipe_t *p, int rc)
{
    moirai_mutex_lock(&p->lock);
    if (!p->stopped) {
        p->stopped = true;
        p->error = rc;
    }
    moirai_mutex_unlock(&p->lock);
}

/* Whether the source may be called now. Under lock. */
static bool source_may_run(const pipe_t *p)
{
    return !p->source_busy && !p->source_ended && !p->stopped && p->in_flight < p->slots;
}

/* Runs stage `s` on `item` (skipped once the item has failed). */
static void run_stage(pipe_t *p, item_t *item, size_t s)
{
    if (item->failed)
        return;
    const moirai_pipeline_stage_t *st = &p->stages[s];
    void *out = NULL;
    MOIRAI_TRACE(MOIRAI_TRACE_PHASE_BEGIN, "sched", "stage", "stage", (int64_t)s);
    int rc = st->fn(st->arg, item->data, &out);
    MOIRAI_TRACE(MOIRAI_TRACE_PHASE_END, "sched", NULL, NULL, 0);
    if (rc < 0) {
        item->failed = true;
        item->data = NULL;
        record_error(p, rc);
        return;
    }
    item->data = out;
}

/* The item has left the last stage: frees its slot and restarts the source
 * if it was waiting for one. */
static void finish_item(pipe_t *p, item_t *item, todo_t *todo)
{
    moirai_mutex_lock(&p->lock);
    item->free = p->free_items;
    p->free_items = item;
    p->in_flight--;
    bool restart = source_may_run(p);
    if (restart)
        p->source_busy = true;
    moirai_mutex_unlock(&p->lock);
    if (restart)
        todo_push(todo, &p->source_job);
}

/* Tries to take serial stage `s` for `item`; otherwise leaves the item in
 * the stage's buffer for whoever holds the stage. Under lock. */
static bool enter_or_wait(pipe_t *p, item_t *item, size_t s)
{
    stage_state_t *st = &p->state[s];
    if (p->stages[s].mode == MOIRAI_STAGE_SERIAL_IN_ORDER) {
        if (!st->busy && st->next == item->ticket) {
            st->busy = true;
            return true;
        }
        st->order[item->ticket % p->slots] = item;
        return false;
    }
    if (!st->busy) {
        st->busy = true;
        return true;
    }
    item->job.next = NULL;
    if (st->tail != NULL)
        st->tail->next = &item->job;
    else
        st->head = &item->job;
    st->tail = &item->job;
    return false;
}

/* Leaves serial stage `s` after an item passed it. Returns the waiting item
 * that now holds the stage, or NULL if the stage is free. Under lock. */
static item_t *leave(pipe_t *p, size_t s)
{
    stage_state_t *st = &p->state[s];
    item_t *next = NULL;
    if (p->stages[s].mode == MOIRAI_STAGE_SERIAL_IN_ORDER) {
        st->next++;
        item_t **slot = &st->order[st->next % p->slots];
        if (*slot != NULL && (*slot)->ticket == st->next) {
            next = *slot;
            *slot = NULL;
        }
    } else if (st->head != NULL) {
        next = (item_t *)st->head;
        st->head = st->head->next;
        if (st->head == NULL)
            st->tail = NULL;
    }
    if (next == NULL)
        st->busy = false;
    return next;
}

/* Carries `item` through the stages from item->stage on, until it leaves
 * the pipeline or has to wait at a serial stage. */
static void carry(pipe_t *p, item_t *item, todo_t *todo)
{
    size_t s = item->stage;
    bool owned = item->owns_stage;
    for (; s < p->count; s++, owned = false) {
        if (p->stages[s].mode == MOIRAI_STAGE_PARALLEL) {
            run_stage(p, item, s);
            continue;
        }
        if (!owned) {
            moirai_mutex_lock(&p->lock);
            bool entered = enter_or_wait(p, item, s);
            moirai_mutex_unlock(&p->lock);
            if (!entered)
                return; /* the stage's holder will hand it on */
        }
        run_stage(p, item, s);
        moirai_mutex_lock(&p->lock);
        item_t *next = leave(p, s);
        moirai_mutex_unlock(&p->lock);
        if (next != NULL) {
            next->stage = s;
            next->owns_stage = true;
            spawn_job(p, &next->job, todo);
        }
    }
    finish_item(p, item, todo);
}

/* Holds the source: calls it once if it still may, then carries the item
 * it made. */
static void run_source(pipe_t *p, todo_t *todo)
{
    moirai_mutex_lock(&p->lock);
    if (p->stopped || p->source_ended || p->in_flight >= p->slots) {
        /* Stopped, or no slot any more: a finishing item restarts us. */
        p->source_busy = false;
        moirai_mutex_unlock(&p->lock);
        return;
    }
    item_t *item = p->free_items;
    p->free_items = item->free;
    p->in_flight++;
    item->ticket = p->ticket++;
    moirai_mutex_unlock(&p->lock);

    const moirai_pipeline_stage_t *src = &p->stages[0];
    void *out = NULL;
    MOIRAI_TRACE(MOIRAI_TRACE_PHASE_BEGIN, "sched", "source", "item", (int64_t)item->ticket);
    int rc = src->fn(src->arg, NULL, &out);
    MOIRAI_TRACE(MOIRAI_TRACE_PHASE_END, "sched", NULL, NULL, 0);

    moirai_mutex_lock(&p->lock);
    if (rc < 0 || rc == MOIRAI_PIPELINE_END) {
        if (rc < 0 && !p->stopped) {
            p->stopped = true;
            p->error = rc;
        }
        if (rc == MOIRAI_PIPELINE_END)
            p->source_ended = true;
        /* The ticket was the last one ever handed out, so no in-order
         * stage waits for it. */
        item->free = p->free_items;
        p->free_items = item;
        p->in_flight--;
        p->source_busy = false;
        moirai_mutex_unlock(&p->lock);
        return;
    }
    /* Keep the source busy and schedule its next call if another item may
     * start; otherwise let it go (a finishing item restarts it). */
    bool again = !p->stopped && p->in_flight < p->slots;
    p->source_busy = again;
    moirai_mutex_unlock(&p->lock);

    item->data = out;
    item->stage = 1;
    item->owns_stage = false;
    item->failed = false;
    if (again)
        spawn_job(p, &p->source_job, todo);
    carry(p, item, todo);
}

static int pipe_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    job_t *job = arg;
    pipe_t *p = job->pipe;
    todo_t todo = {job};
    job->next = NULL;
    /* Under MOIRAI_SHUTDOWN_CANCEL this task still runs (it is owned: the
     * pipeline's caller waits for it), but the stream stops as if a stage
     * had failed with -ECANCELED; items already in flight drain. */
    if (moirai__sched_cancelling(p->sched))
        record_error(p, -ECANCELED);
    while (todo.head != NULL) {
        job = todo.head;
        todo.head = job->next;
        if (job->kind == JOB_SOURCE)
            run_source(p, &todo);
        else
            carry(p, (item_t *)job, &todo);
    }
    /* Release: this task's writes happen before the decrement. Acquire:
     * the last task has seen every other task's writes when it sets the
     * latch (release), so moirai_pipeline_run() sees them all. */
    if (atomic_fetch_sub_explicit(&p->tasks, 1, memory_order_acq_rel) == 1)
        moirai__latch_set(&p->done);
    return 0;
}

/* Checks the arguments. */
static int validate(size_t max_in_flight, const moirai_pipeline_stage_t *stages, size_t count)
{
    if (stages == NULL || count == 0 || max_in_flight == 0)
        return -EINVAL;
    for (size_t s = 0; s < count; s++) {
        if (stages[s].fn == NULL)
            return -EINVAL;
        switch (stages[s].mode) {
        case MOIRAI_STAGE_SERIAL_IN_ORDER:
        case MOIRAI_STAGE_SERIAL_OUT_OF_ORDER:
            break;
        case MOIRAI_STAGE_PARALLEL:
            if (s == 0)
                return -EINVAL;
            break;
        default:
            return -EINVAL;
        }
    }
    return 0;
}

/* Rounds `n` up to a multiple of the strictest alignment. */
static size_t round_up(size_t n)
{
    size_t a = _Alignof(max_align_t);
    return (n + a - 1) / a * a;
}

/* A pipeline with a NULL scheduler on a thread that is not a worker: one
 * item at a time through every stage, on the caller, which every stage
 * mode allows. A failing stage stops it as in parallel: its item goes no
 * further and the source is not called again. */
static int run_serially(const moirai_pipeline_stage_t *stages, size_t count)
{
    for (;;) {
        void *item = NULL;
        int rc = stages[0].fn(stages[0].arg, NULL, &item);
        if (rc == MOIRAI_PIPELINE_END)
            return 0;
        if (rc < 0)
            return rc;
        for (size_t s = 1; s < count; s++) {
            void *out = NULL;
            rc = stages[s].fn(stages[s].arg, item, &out);
            if (rc < 0)
                return rc;
            item = out;
        }
    }
}

int moirai_pipeline_run(moirai_sched_t *sched, size_t max_in_flight,
                        const moirai_pipeline_stage_t *stages, size_t count)
{
    int rc = validate(max_in_flight, stages, count);
    if (rc != 0)
        return rc;
    if (sched == NULL) {
        sched = moirai_sched_current();
        if (sched == NULL)
            return run_serially(stages, count);
    }
    size_t slots = max_in_flight < SLOTS_MAX ? max_in_flight : SLOTS_MAX;
    size_t in_order = 0;
    for (size_t s = 1; s < count; s++)
        in_order += stages[s].mode == MOIRAI_STAGE_SERIAL_IN_ORDER;

    /* One allocation: the state, the item slots, the per-stage states and
     * the in-order buffers. Sizes are small (count is the caller's array,
     * slots at most SLOTS_MAX), but check the products anyway. */
    size_t off_items = round_up(sizeof(pipe_t));
    if (count > SIZE_MAX / 2 / sizeof(stage_state_t) || in_order > SIZE_MAX / 2 / SLOTS_MAX)
        return -ENOMEM;
    size_t off_states = off_items + round_up(slots * sizeof(item_t));
    size_t off_order = off_states + round_up(count * sizeof(stage_state_t));
    size_t total = off_order + in_order * slots * sizeof(item_t *);
    unsigned char *mem = moirai_calloc(1, total);
    if (mem == NULL)
        return -ENOMEM;

    pipe_t *p = (pipe_t *)mem;
    item_t *items = (item_t *)(mem + off_items);
    p->sched = sched;
    p->stages = stages;
    p->count = count;
    p->slots = slots;
    moirai_mutex_init(&p->lock);
    p->state = (stage_state_t *)(mem + off_states);
    item_t **order = (item_t **)(mem + off_order);
    for (size_t s = 1; s < count; s++) {
        if (stages[s].mode == MOIRAI_STAGE_SERIAL_IN_ORDER) {
            p->state[s].order = order;
            order += slots;
        }
    }
    for (size_t i = 0; i < slots; i++) {
        items[i].job.pipe = p;
        items[i].job.kind = JOB_ITEM;
        items[i].free = i + 1 < slots ? &items[i + 1] : NULL;
    }
    p->free_items = &items[0];
    p->source_job.pipe = p;
    p->source_job.kind = JOB_SOURCE;
    p->source_busy = true;
    atomic_init(&p->tasks, 1);
    moirai__latch_init(&p->done);

    /* The first task runs the source; nothing has run if it is refused. */
    rc = moirai__sched_spawn_owned(sched, pipe_task, &p->source_job, NULL);
    if (rc == 0) {
        moirai__latch_wait(&p->done);
        /* The latch ordered every task's writes before this point. */
        rc = p->error;
    }
    moirai_mutex_destroy(&p->lock);
    moirai_free(mem);
    return rc;
}

/* Priorities and aging of moirai-sched, as sched.h documents them: the
 * injector runs the most urgent level first and FIFO within a level; a
 * task more urgent than NORMAL runs before a worker's own local work, which
 * counts as NORMAL; with aging a BACKGROUND task gets to run under a
 * never-ending stream of HIGH tasks, and without it it waits for the
 * stream to end. Invalid priorities are rejected.
 *
 * Every ordering test uses one worker and holds it on a "gate" task while
 * the tasks to order are spawned, so the order observed is the scheduler's
 * choice and not a race between the spawner and the worker. Tasks never
 * call Criterion's asserts (they run on worker threads); they record what
 * they saw, and the test thread checks it. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include <moirai/core/clock.h>
#include <moirai/core/executor.h>
#include <moirai/core/handle.h>
#include <moirai/core/task.h>
#include <moirai/sched/sched.h>
#include <moirai/sync/event.h>
#include <moirai/sync/waitgroup.h>

/* Every wait on another thread is bounded by this: long enough for any
 * noisy machine, short enough that a lost task fails the test instead of
 * hanging it. */
#define WAIT_NS (30 * MOIRAI_NS_PER_S)

/* An aging period no test outlives: the order tests must see the nominal
 * levels, whatever the machine's delays. */
#define NO_AGING_NS MOIRAI_SCHED_STRICT_PRIORITIES

static moirai_sched_t *make_sched(int workers, uint64_t aging_ns, bool lifo)
{
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = workers;
    cfg.aging_ns = aging_ns == 0 ? MOIRAI_SCHED_STRICT_PRIORITIES : aging_ns;
    cfg.no_lifo_slot = !lifo;
    moirai_sched_t *s = NULL;
    cr_assert_eq(moirai_sched_create(&s, &cfg), 0);
    cr_assert_eq(moirai_sched_worker_count(s), workers);
    return s;
}

static moirai_task_attr_t prio_attr(moirai_priority_t p)
{
    moirai_task_attr_t a = MOIRAI_TASK_ATTR_INIT;
    a.priority = p;
    return a;
}

/* ---- The run-order recorder ---- */

#define REC_MAX 512

/* Tasks append their tag; with one worker the appends are sequential, the
 * atomic index only keeps a wrong runtime (two workers) from corrupting
 * the array. The test reads `tags` after the waitgroup says every task is
 * done (done releases, the wait acquires). */
typedef struct recorder {
    _Atomic int n;
    int tags[REC_MAX];
    moirai_waitgroup_t wg;
} recorder_t;

static void rec_init(recorder_t *r)
{
    memset(r, 0, sizeof(*r));
    moirai_waitgroup_init(&r->wg);
}

static void rec_push(recorder_t *r, int tag)
{
    /* Relaxed: the index only has to be unique; the tags are published by
     * the waitgroup's done/wait pair. */
    int i = atomic_fetch_add_explicit(&r->n, 1, memory_order_relaxed);
    if (i < REC_MAX)
        r->tags[i] = tag;
}

static void rec_wait(recorder_t *r, int expected)
{
    cr_assert_eq(moirai_waitgroup_wait_timed(&r->wg, moirai_deadline_after(WAIT_NS)), 0,
                 "tasks did not all run: %d of %d recorded", atomic_load(&r->n), expected);
    cr_assert_eq(atomic_load(&r->n), expected, "each task must run exactly once");
}

/* A task that records its tag and returns tag + 1 as its result. */
typedef struct item {
    recorder_t *rec;
    int tag;
} item_t;

static int item_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    item_t *it = arg;
    rec_push(it->rec, it->tag);
    *result = (void *)(uintptr_t)(it->tag + 1);
    moirai_waitgroup_done(&it->rec->wg);
    return 0;
}

/* ---- The gate: holds the only worker until the test opens it ---- */

typedef struct gate {
    moirai_event_t started;
    moirai_event_t open;
    _Atomic int timed_out;
} gate_t;

static void gate_init(gate_t *g)
{
    moirai_event_init(&g->started, MOIRAI_EVENT_MANUAL, false);
    moirai_event_init(&g->open, MOIRAI_EVENT_MANUAL, false);
    atomic_init(&g->timed_out, 0);
}

/* Run by a gate task: say the worker is held, then wait for the test. */
static void gate_hold(gate_t *g)
{
    moirai_event_set(&g->started);
    if (moirai_event_wait_timed(&g->open, moirai_deadline_after(WAIT_NS)) != 0)
        atomic_store(&g->timed_out, 1);
}

static int gate_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    gate_hold(arg);
    return 0;
}

/* Spawns a gate task from the test thread and waits until the worker runs
 * it. */
static void gate_close(moirai_sched_t *s, gate_t *g)
{
    gate_init(g);
    cr_assert_eq(moirai_sched_spawn(s, gate_task, g, NULL, NULL), 0);
    cr_assert_eq(moirai_event_wait_timed(&g->started, moirai_deadline_after(WAIT_NS)), 0,
                 "the gate task never started");
}

/* A fixed, well mixed sequence of levels: a small LCG, so every run sees
 * the same interleaving and each level appears in several runs. */
static moirai_priority_t mixed_level(unsigned *state)
{
    *state = *state * 1103515245u + 12345u;
    return (moirai_priority_t)((*state >> 16) % MOIRAI_PRIORITY_COUNT);
}

/* The expected run order of tasks 0..n-1 with levels `level`: by level,
 * most urgent first, then by spawn order. */
static void expect_by_level(const moirai_priority_t *level, int n, int *out)
{
    int k = 0;
    for (int p = 0; p < MOIRAI_PRIORITY_COUNT; p++)
        for (int i = 0; i < n; i++)
            if ((int)level[i] == p)
                out[k++] = i;
}

static void assert_order(const recorder_t *r, const int *expected, int n, const char *what)
{
    for (int i = 0; i < n; i++)
        cr_assert_eq(r->tags[i], expected[i], "%s: position %d ran tag %d, expected %d", what, i,
                     r->tags[i], expected[i]);
}

/* ---- Injector order: levels, FIFO within a level ---- */

#define ORDER_N 60

/* Spawns ORDER_N tasks at mixed levels from the test thread while the
 * single worker is held, through the three entry points (plain spawn,
 * spawn with a handle, the executor interface), then checks the run order
 * and every handle's result. */
static void check_injector_order(uint64_t aging_ns)
{
    moirai_sched_t *s = make_sched(1, aging_ns, true);
    gate_t g;
    gate_close(s, &g);

    static recorder_t rec;
    rec_init(&rec);
    item_t items[ORDER_N];
    moirai_priority_t level[ORDER_N];
    moirai_handle_t *h[ORDER_N] = {0};
    unsigned seed = 7;
    cr_assert_eq(moirai_waitgroup_add(&rec.wg, ORDER_N), 0);
    for (int i = 0; i < ORDER_N; i++) {
        level[i] = mixed_level(&seed);
        items[i] = (item_t){&rec, i};
        moirai_task_attr_t a = prio_attr(level[i]);
        if (i % 3 == 1) {
            cr_assert_eq(moirai_handle_create(&h[i]), 0);
            cr_assert_eq(moirai_sched_spawn(s, item_task, &items[i], &a, h[i]), 0);
        } else if (i % 3 == 2) {
            cr_assert_eq(
                moirai_executor_spawn(moirai_sched_executor(s), item_task, &items[i], &a, NULL), 0);
        } else {
            cr_assert_eq(moirai_sched_spawn(s, item_task, &items[i], &a, NULL), 0);
        }
    }
    cr_assert_eq(atomic_load(&rec.n), 0, "a task ran while the only worker was held");
    moirai_event_set(&g.open);
    rec_wait(&rec, ORDER_N);
    cr_assert_eq(atomic_load(&g.timed_out), 0);

    int expected[ORDER_N];
    expect_by_level(level, ORDER_N, expected);
    assert_order(&rec, expected, ORDER_N, "injector order");
    for (int i = 0; i < ORDER_N; i++) {
        if (h[i] == NULL)
            continue;
        void *v = NULL;
        cr_assert_eq(moirai_handle_join_timed(h[i], moirai_deadline_after(WAIT_NS), &v), 0);
        cr_assert_eq((uintptr_t)v, (uintptr_t)i + 1);
        moirai_handle_release(h[i]);
    }
    cr_assert_eq(moirai_sched_destroy(s, MOIRAI_SHUTDOWN_DRAIN), 0);
}

Test(priority, levels_run_most_urgent_first, .timeout = 60)
{
    check_injector_order(NO_AGING_NS);
}

Test(priority, strict_levels_without_aging, .timeout = 60)
{
    check_injector_order(0);
}

/* ---- Spawns from a worker ---- */

/* A gate task that, before holding the worker, spawns ORDER_N tasks at
 * mixed levels itself. Non-NORMAL ones go to the injector; NORMAL ones are
 * local work (LIFO slot and deque), which the worker takes newest first,
 * after the injector's levels above NORMAL and before those below. */
typedef struct inner_spawn {
    moirai_sched_t *s;
    gate_t gate;
    item_t items[ORDER_N];
    moirai_priority_t level[ORDER_N];
    _Atomic int spawn_errors;
} inner_spawn_t;

static int inner_spawner_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    inner_spawn_t *c = arg;
    for (int i = 0; i < ORDER_N; i++) {
        moirai_task_attr_t a = prio_attr(c->level[i]);
        /* Half of them with attributes that carry a name: still NORMAL. */
        a.name = (i % 2) ? "inner" : NULL;
        if (moirai_sched_spawn(c->s, item_task, &c->items[i], &a, NULL) != 0)
            atomic_fetch_add(&c->spawn_errors, 1);
    }
    gate_hold(&c->gate);
    return 0;
}

static void check_worker_spawn_order(bool lifo)
{
    moirai_sched_t *s = make_sched(1, NO_AGING_NS, lifo);
    static recorder_t rec;
    static inner_spawn_t c;
    rec_init(&rec);
    memset(&c, 0, sizeof(c));
    c.s = s;
    gate_init(&c.gate);
    unsigned seed = 11;
    for (int i = 0; i < ORDER_N; i++) {
        c.level[i] = mixed_level(&seed);
        c.items[i] = (item_t){&rec, i};
    }
    cr_assert_eq(moirai_waitgroup_add(&rec.wg, ORDER_N), 0);
    cr_assert_eq(moirai_sched_spawn(s, inner_spawner_task, &c, NULL, NULL), 0);
    cr_assert_eq(moirai_event_wait_timed(&c.gate.started, moirai_deadline_after(WAIT_NS)), 0);
    cr_assert_eq(atomic_load(&rec.n), 0, "a task ran while the only worker was held");
    moirai_event_set(&c.gate.open);
    rec_wait(&rec, ORDER_N);
    cr_assert_eq(atomic_load(&c.spawn_errors), 0);
    cr_assert_eq(atomic_load(&c.gate.timed_out), 0);

    int expected[ORDER_N];
    int k = 0;
    for (int p = MOIRAI_PRIORITY_CRITICAL; p <= MOIRAI_PRIORITY_HIGH; p++)
        for (int i = 0; i < ORDER_N; i++)
            if ((int)c.level[i] == p)
                expected[k++] = i;
    for (int i = ORDER_N - 1; i >= 0; i--) /* local work: newest first */
        if (c.level[i] == MOIRAI_PRIORITY_NORMAL)
            expected[k++] = i;
    for (int p = MOIRAI_PRIORITY_LOW; p <= MOIRAI_PRIORITY_BACKGROUND; p++)
        for (int i = 0; i < ORDER_N; i++)
            if ((int)c.level[i] == p)
                expected[k++] = i;
    cr_assert_eq(k, ORDER_N);
    assert_order(&rec, expected, ORDER_N, "worker spawn order");
    cr_assert_eq(moirai_sched_destroy(s, MOIRAI_SHUTDOWN_DRAIN), 0);
}

Test(priority, worker_spawns_follow_the_same_levels, .timeout = 60)
{
    check_worker_spawn_order(true);
}

Test(priority, worker_spawns_follow_the_same_levels_without_lifo_slot, .timeout = 60)
{
    check_worker_spawn_order(false);
}

/* ---- Local work counts as NORMAL ---- */

#define LOCAL_N 64

/* Tags: the local children are 0..LOCAL_N-1; injected tasks are
 * INJECTED_TAG + their level. */
#define INJECTED_TAG 1000

typedef struct local_ctx {
    moirai_sched_t *s;
    recorder_t *rec;
    item_t children[LOCAL_N];
    moirai_event_t spawned;
    moirai_event_t injected;
    _Atomic int spawn_errors;
    _Atomic int timed_out;
} local_ctx_t;

/* Spawns LOCAL_N NORMAL children onto its own worker, then holds the
 * worker until the test has injected one task at every level. */
static int local_parent_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    local_ctx_t *c = arg;
    for (int i = 0; i < LOCAL_N; i++)
        if (moirai_sched_spawn(c->s, item_task, &c->children[i], NULL, NULL) != 0)
            atomic_fetch_add(&c->spawn_errors, 1);
    moirai_event_set(&c->spawned);
    if (moirai_event_wait_timed(&c->injected, moirai_deadline_after(WAIT_NS)) != 0)
        atomic_store(&c->timed_out, 1);
    return 0;
}

static void check_local_counts_as_normal(bool lifo, uint64_t aging_ns)
{
    moirai_sched_t *s = make_sched(1, aging_ns, lifo);
    static recorder_t rec;
    static local_ctx_t c;
    rec_init(&rec);
    memset(&c, 0, sizeof(c));
    c.s = s;
    c.rec = &rec;
    moirai_event_init(&c.spawned, MOIRAI_EVENT_MANUAL, false);
    moirai_event_init(&c.injected, MOIRAI_EVENT_MANUAL, false);
    for (int i = 0; i < LOCAL_N; i++)
        c.children[i] = (item_t){&rec, i};
    cr_assert_eq(moirai_waitgroup_add(&rec.wg, LOCAL_N + MOIRAI_PRIORITY_COUNT), 0);
    cr_assert_eq(moirai_sched_spawn(s, local_parent_task, &c, NULL, NULL), 0);
    cr_assert_eq(moirai_event_wait_timed(&c.spawned, moirai_deadline_after(WAIT_NS)), 0);

    /* Injected least urgent first, so that arrival order cannot explain a
     * correct result. */
    item_t injected[MOIRAI_PRIORITY_COUNT];
    for (int p = MOIRAI_PRIORITY_BACKGROUND; p >= MOIRAI_PRIORITY_CRITICAL; p--) {
        injected[p] = (item_t){&rec, INJECTED_TAG + p};
        moirai_task_attr_t a = prio_attr((moirai_priority_t)p);
        cr_assert_eq(moirai_sched_spawn(s, item_task, &injected[p], &a, NULL), 0);
    }
    cr_assert_eq(atomic_load(&rec.n), 0, "a task ran while the only worker was held");
    moirai_event_set(&c.injected);
    rec_wait(&rec, LOCAL_N + MOIRAI_PRIORITY_COUNT);
    cr_assert_eq(atomic_load(&c.spawn_errors), 0);
    cr_assert_eq(atomic_load(&c.timed_out), 0);

    /* CRITICAL and HIGH beat local work; local work runs newest first (the
     * LIFO slot, then the deque's bottom); NORMAL, LOW and BACKGROUND from
     * the injector come after it. */
    int expected[LOCAL_N + MOIRAI_PRIORITY_COUNT];
    int k = 0;
    expected[k++] = INJECTED_TAG + MOIRAI_PRIORITY_CRITICAL;
    expected[k++] = INJECTED_TAG + MOIRAI_PRIORITY_HIGH;
    for (int i = LOCAL_N - 1; i >= 0; i--)
        expected[k++] = i;
    expected[k++] = INJECTED_TAG + MOIRAI_PRIORITY_NORMAL;
    expected[k++] = INJECTED_TAG + MOIRAI_PRIORITY_LOW;
    expected[k++] = INJECTED_TAG + MOIRAI_PRIORITY_BACKGROUND;
    assert_order(&rec, expected, k, "local work vs injected");
    cr_assert_eq(moirai_sched_destroy(s, MOIRAI_SHUTDOWN_DRAIN), 0);
}

Test(priority, local_work_counts_as_normal, .timeout = 60)
{
    check_local_counts_as_normal(true, NO_AGING_NS);
}

Test(priority, local_work_counts_as_normal_without_lifo_slot, .timeout = 60)
{
    check_local_counts_as_normal(false, NO_AGING_NS);
}

Test(priority, local_work_counts_as_normal_strict, .timeout = 60)
{
    check_local_counts_as_normal(true, 0);
}

/* ---- Aging ---- */

/* A stream of HIGH tasks, each spinning briefly and then spawning its
 * successor (a spawn from a worker at HIGH goes to the injector), so that
 * the HIGH level is never empty while the stream runs. */
typedef struct stream {
    moirai_sched_t *s;
    moirai_priority_t level; /* of the stream's tasks */
    long limit;              /* fixed length of the stream; 0: until the BACKGROUND task ran */
    long hold_at;            /* the task with this number waits for `bg_spawned` */
    uint64_t stop_at;        /* safety limit of an unbounded stream */
    _Atomic long done;       /* HIGH tasks finished */
    _Atomic int chains;
    _Atomic int bg_ran;
    _Atomic long done_seen_by_bg;
    _Atomic long done_at_bg_spawn;
    _Atomic int hit_limit;
    _Atomic int errors;
    moirai_event_t bg_spawned;
    moirai_event_t stream_over;
    moirai_event_t bg_over;
} stream_t;

#define STREAM_SPIN_NS   (50 * MOIRAI_NS_PER_US)
#define STREAM_SAFETY_NS (20 * MOIRAI_NS_PER_S)

static void spin_for(uint64_t ns)
{
    uint64_t end = moirai_clock_now_ns() + ns;
    while (moirai_clock_now_ns() < end)
        ;
}

static int high_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    stream_t *st = arg;
    spin_for(STREAM_SPIN_NS);
    /* Relaxed: the count is read by the BACKGROUND task on the same single
     * worker, or by the test after the stream_over event (release/acquire). */
    long n = atomic_fetch_add_explicit(&st->done, 1, memory_order_relaxed) + 1;
    if (n == st->hold_at &&
        moirai_event_wait_timed(&st->bg_spawned, moirai_deadline_after(WAIT_NS)) != 0)
        atomic_fetch_add(&st->errors, 1);
    bool more;
    if (st->limit > 0) {
        more = n < st->limit;
    } else {
        /* Relaxed: the flag only ends the stream; nothing the BACKGROUND
         * task wrote is read through it. */
        more = !atomic_load_explicit(&st->bg_ran, memory_order_relaxed);
        if (more && moirai_clock_now_ns() >= st->stop_at) {
            atomic_store(&st->hit_limit, 1);
            more = false;
        }
    }
    if (more) {
        moirai_task_attr_t a = prio_attr(st->level);
        if (moirai_sched_spawn(st->s, high_task, st, &a, NULL) == 0)
            return 0;
        atomic_fetch_add(&st->errors, 1);
    }
    if (atomic_fetch_sub(&st->chains, 1) == 1)
        moirai_event_set(&st->stream_over);
    return 0;
}

static int background_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    stream_t *st = arg;
    /* Relaxed: these are counters and flags, published to the test by the
     * bg_over event (release) and read after its wait (acquire). */
    atomic_store_explicit(&st->done_seen_by_bg,
                          atomic_load_explicit(&st->done, memory_order_relaxed),
                          memory_order_relaxed);
    atomic_store_explicit(&st->bg_ran, 1, memory_order_relaxed);
    moirai_event_set(&st->bg_over);
    return 0;
}

static void stream_init(stream_t *st, moirai_sched_t *s, moirai_priority_t level, int chains,
                        long limit, long hold_at)
{
    memset(st, 0, sizeof(*st));
    st->s = s;
    st->level = level;
    st->limit = limit;
    st->hold_at = hold_at;
    st->stop_at = moirai_deadline_after(STREAM_SAFETY_NS);
    atomic_init(&st->chains, chains);
    moirai_event_init(&st->bg_spawned, MOIRAI_EVENT_MANUAL, false);
    moirai_event_init(&st->stream_over, MOIRAI_EVENT_MANUAL, false);
    moirai_event_init(&st->bg_over, MOIRAI_EVENT_MANUAL, false);
    moirai_task_attr_t a = prio_attr(level);
    for (int i = 0; i < chains; i++)
        cr_assert_eq(moirai_sched_spawn(s, high_task, st, &a, NULL), 0);
}

static void spawn_background(stream_t *st)
{
    atomic_store(&st->done_at_bg_spawn, atomic_load(&st->done));
    moirai_task_attr_t a = prio_attr(MOIRAI_PRIORITY_BACKGROUND);
    cr_assert_eq(moirai_sched_spawn(st->s, background_task, st, &a, NULL), 0);
    moirai_event_set(&st->bg_spawned);
}

/* With a 1 ms aging period, a BACKGROUND task must get through a stream of
 * tasks at `level` that would otherwise go on for 20 s. */
static void check_aging_through(moirai_priority_t level)
{
    moirai_sched_t *s = make_sched(1, MOIRAI_NS_PER_MS, true);
    static stream_t st;
    /* Two chains, so that the stream's level is never empty when the
     * worker picks its next task. The tenth task holds the worker until
     * the BACKGROUND task is queued, so the stream is surely running. */
    stream_init(&st, s, level, 2, 0, 10);
    while (atomic_load(&st.done) < 10 && !moirai_event_is_set(&st.stream_over))
        spin_for(10 * MOIRAI_NS_PER_US);
    spawn_background(&st);
    cr_assert_eq(moirai_event_wait_timed(&st.bg_over, moirai_deadline_after(2 * STREAM_SAFETY_NS)),
                 0, "the BACKGROUND task never ran");
    cr_assert_eq(moirai_event_wait_timed(&st.stream_over, moirai_deadline_after(WAIT_NS)), 0);
    cr_assert_eq(atomic_load(&st.errors), 0);
    cr_assert_eq(atomic_load(&st.hit_limit), 0,
                 "the BACKGROUND task only ran once the %s stream gave up after %lld s",
                 moirai_priority_name(level), (long long)(STREAM_SAFETY_NS / MOIRAI_NS_PER_S));
    long before = atomic_load(&st.done_seen_by_bg);
    cr_assert_gt(before, 0, "HIGH tasks must have run before the BACKGROUND one");
    cr_log_info("aging: %ld %s tasks ran before the BACKGROUND task (%ld after it was spawned), "
                "%ld in all",
                before, moirai_priority_name(level), before - atomic_load(&st.done_at_bg_spawn),
                atomic_load(&st.done));
    cr_assert_eq(moirai_sched_destroy(s, MOIRAI_SHUTDOWN_DRAIN), 0);
}

Test(priority, aging_lets_background_through_a_high_stream, .timeout = 90)
{
    check_aging_through(MOIRAI_PRIORITY_HIGH);
}

/* Against the most urgent level too: an aged level becomes more urgent
 * than a fresh CRITICAL one. Before that, aging stopped at CRITICAL and a
 * tie went to the CRITICAL level, so a CRITICAL stream starved BACKGROUND
 * work for as long as it lasted. */
Test(priority, aging_lets_background_through_a_critical_stream, .timeout = 90)
{
    check_aging_through(MOIRAI_PRIORITY_CRITICAL);
}

#define STRICT_STREAM 200

/* With aging off, the BACKGROUND task must wait until a stream of 200 HIGH
 * tasks has ended. The fifth task holds the worker until the BACKGROUND task
 * is queued. */
Test(priority, strict_levels_starve_background_until_the_stream_ends, .timeout = 60)
{
    moirai_sched_t *s = make_sched(1, 0, true);
    static stream_t st;
    stream_init(&st, s, MOIRAI_PRIORITY_HIGH, 1, STRICT_STREAM, 5);
    while (atomic_load(&st.done) < 5)
        spin_for(10 * MOIRAI_NS_PER_US);
    spawn_background(&st);
    cr_assert_eq(moirai_event_wait_timed(&st.stream_over, moirai_deadline_after(WAIT_NS)), 0);
    cr_assert_eq(moirai_event_wait_timed(&st.bg_over, moirai_deadline_after(WAIT_NS)), 0);
    cr_assert_eq(atomic_load(&st.errors), 0);
    cr_assert_eq(atomic_load(&st.done), STRICT_STREAM);
    cr_assert_lt(atomic_load(&st.done_at_bg_spawn), STRICT_STREAM);
    cr_assert_eq(atomic_load(&st.done_seen_by_bg), STRICT_STREAM,
                 "the BACKGROUND task ran after only %ld of %d HIGH tasks",
                 atomic_load(&st.done_seen_by_bg), STRICT_STREAM);
    cr_assert_eq(moirai_sched_destroy(s, MOIRAI_SHUTDOWN_DRAIN), 0);
}

/* ---- Invalid attributes ---- */

static _Atomic int never_ran;

static int never_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    atomic_fetch_add(&never_ran, 1);
    return 0;
}

static int ok_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    *result = arg;
    return 0;
}

static const int bad_priorities[] = {-1, MOIRAI_PRIORITY_COUNT, 99, -1000};

/* What a worker task got back from spawning with each bad attribute. */
typedef struct bad_from_worker {
    moirai_sched_t *s;
    int rc[8];
    int n;
} bad_from_worker_t;

static int bad_spawner_task(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    bad_from_worker_t *b = arg;
    b->n = 0;
    for (size_t i = 0; i < sizeof(bad_priorities) / sizeof(bad_priorities[0]); i++) {
        moirai_task_attr_t a = prio_attr((moirai_priority_t)bad_priorities[i]);
        b->rc[b->n++] = moirai_sched_spawn(b->s, never_task, NULL, &a, NULL);
    }
    moirai_task_attr_t a = MOIRAI_TASK_ATTR_INIT;
    a.locality = (moirai_locality_t)7;
    b->rc[b->n++] = moirai_sched_spawn(b->s, never_task, NULL, &a, NULL);
    return 0;
}

Test(priority, invalid_priority_is_rejected, .timeout = 60)
{
    atomic_store(&never_ran, 0);
    moirai_sched_t *s = make_sched(2, NO_AGING_NS, true);
    moirai_handle_t *h = NULL;
    cr_assert_eq(moirai_handle_create(&h), 0);
    for (size_t i = 0; i < sizeof(bad_priorities) / sizeof(bad_priorities[0]); i++) {
        moirai_task_attr_t a = prio_attr((moirai_priority_t)bad_priorities[i]);
        cr_assert_eq(moirai_sched_spawn(s, never_task, NULL, &a, NULL), -EINVAL,
                     "priority %d accepted", bad_priorities[i]);
        cr_assert_eq(moirai_sched_spawn(s, never_task, NULL, &a, h), -EINVAL);
        cr_assert_eq(moirai_executor_spawn(moirai_sched_executor(s), never_task, NULL, &a, NULL),
                     -EINVAL);
    }
    moirai_task_attr_t a = MOIRAI_TASK_ATTR_INIT;
    a.locality = (moirai_locality_t)7;
    cr_assert_eq(moirai_sched_spawn(s, never_task, NULL, &a, h), -EINVAL, "unknown locality kind");
    /* The rejected spawns left the handle untouched: still pending, and
     * good for a task. */
    cr_assert_not(moirai_handle_is_finished(h));
    cr_assert_eq(moirai_handle_try_join(h, NULL), -EAGAIN);

    /* The same checks on a spawn made by a worker. */
    static bad_from_worker_t b;
    memset(&b, 0, sizeof(b));
    b.s = s;
    moirai_handle_t *hb = NULL;
    cr_assert_eq(moirai_handle_create(&hb), 0);
    cr_assert_eq(moirai_sched_spawn(s, bad_spawner_task, &b, NULL, hb), 0);
    cr_assert_eq(moirai_handle_join_timed(hb, moirai_deadline_after(WAIT_NS), NULL), 0);
    moirai_handle_release(hb);
    cr_assert_eq(b.n, 5);
    for (int i = 0; i < b.n; i++)
        cr_assert_eq(b.rc[i], -EINVAL, "bad attribute %d accepted from a worker", i);

    moirai_task_attr_t good = prio_attr(MOIRAI_PRIORITY_LOW);
    cr_assert_eq(moirai_sched_spawn(s, ok_task, (void *)(uintptr_t)42, &good, h), 0);
    void *v = NULL;
    cr_assert_eq(moirai_handle_join_timed(h, moirai_deadline_after(WAIT_NS), &v), 0);
    cr_assert_eq((uintptr_t)v, 42);
    moirai_handle_release(h);
    cr_assert_eq(moirai_sched_destroy(s, MOIRAI_SHUTDOWN_DRAIN), 0);
    cr_assert_eq(atomic_load(&never_ran), 0, "a rejected task ran");
}

/* Every valid level is accepted and runs, with or without a handle. */
Test(priority, every_level_is_accepted, .timeout = 60)
{
    moirai_sched_t *s = make_sched(2, MOIRAI_NS_PER_MS, true);
    moirai_handle_t *h[MOIRAI_PRIORITY_COUNT];
    for (int p = 0; p < MOIRAI_PRIORITY_COUNT; p++) {
        moirai_task_attr_t a = prio_attr((moirai_priority_t)p);
        cr_assert_eq(moirai_handle_create(&h[p]), 0);
        cr_assert_eq(moirai_sched_spawn(s, ok_task, (void *)(uintptr_t)(p + 1), &a, h[p]), 0);
    }
    for (int p = 0; p < MOIRAI_PRIORITY_COUNT; p++) {
        void *v = NULL;
        cr_assert_eq(moirai_handle_join_timed(h[p], moirai_deadline_after(WAIT_NS), &v), 0);
        cr_assert_eq((uintptr_t)v, (uintptr_t)p + 1);
        moirai_handle_release(h[p]);
    }
    cr_assert_eq(moirai_sched_destroy(s, MOIRAI_SHUTDOWN_DRAIN), 0);
}

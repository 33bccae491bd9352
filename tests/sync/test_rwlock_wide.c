/* moirai_rwlock_t with more readers than reader slots, every slot in use.
 *
 * A reader announces itself in one of MOIRAI_RWLOCK_READER_SLOTS counters,
 * chosen by the thread's number, and a writer must find readers in every
 * one of them. The other rwlock tests run at most a few readers at once,
 * so a writer that looked at only the first few slots would pass them.
 * Here:
 *   - 2 x MOIRAI_RWLOCK_READER_SLOTS readers are inside together (a
 *     barrier in the read section proves it) while two writers try,
 *     with try_wrlock and wrlock_timed, and then write;
 *   - one reader at a time holds the lock, in turn in every slot, and
 *     the writer's try and timed attempts must fail each time;
 *   - a blocking writer waits for readers spread over every slot, released
 *     one by one, and enters only after the last.
 *
 * Slot coverage: a thread takes the next slot number on its first read
 * lock (round-robin, process-wide). Each test lets its reader threads
 * take their first read lock one after another, before any other thread
 * of the test read-locks, so they get consecutive numbers and cover every
 * slot; the tests check that through the private slot counters, so a
 * change of the slot scheme shows up as a failed precondition, not as a
 * test that quietly stopped covering the slots.
 *
 * Worker threads only count violations; the test thread asserts. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

#include <moirai/core/clock.h>
#include <moirai/sync/rwlock.h>

#include "lock_test_util.h"

enum {
    SLOTS = MOIRAI_RWLOCK_READER_SLOTS,
    /* Every slot shared by two readers: a slot whose count is 2 must not
     * look free after one of them leaves. */
    READERS = 2 * MOIRAI_RWLOCK_READER_SLOTS,
    WRITERS = 2,
};

/* The private counter of slot `i` (see the file comment). */
static uint32_t slot_count(moirai_rwlock_t *rw, int i)
{
    return atomic_load(&rw->priv_slots[i].count);
}

/* Takes the read lock by one of the three read paths. `timed_ms` bounds
 * the timed variant's wait. Returns 0 or what rdlock_timed returned. */
static int read_lock_by(moirai_rwlock_t *rw, int how, uint64_t timed_ms)
{
    switch (how % 3) {
    case 0:
        moirai_rwlock_rdlock(rw);
        return 0;
    case 1:
        while (!moirai_rwlock_try_rdlock(rw))
            sched_yield();
        return 0;
    default:
        return moirai_rwlock_rdlock_timed(rw, test_deadline_ms(timed_ms));
    }
}

/* ---- all readers inside at once, writers trying ---- */

typedef struct crowd_ctx {
    moirai_rwlock_t rw;
    pthread_barrier_t enter;   /* readers are all inside when it opens */
    pthread_barrier_t leave;   /* the writers' attempts are over */
    pthread_barrier_t next;    /* the round's blocking writes are over */
    pthread_barrier_t startup; /* readers take their slots in order */
    _Atomic int first_turn;    /* reader whose first read lock is next */
    long rounds;
    long data;                   /* plain: written by writers only */
    _Atomic long readers_inside; /* readers between lock and unlock */
    _Atomic long writers_inside;
    _Atomic long violations;
    _Atomic long read_errors;   /* rdlock_timed failed without a writer in the way */
    _Atomic long try_successes; /* writes through try_wrlock between rounds */
    _Atomic long full_slots;    /* rounds in which every slot counted two readers */
    long reads[READERS];        /* per reader: completed read sections */
    long writes[WRITERS];       /* per writer: completed write sections */
} crowd_ctx_t;

static void crowd_violation(crowd_ctx_t *c)
{
    atomic_fetch_add(&c->violations, 1);
}

/* A write section: exclusive, and no reader inside. */
static void crowd_write(crowd_ctx_t *c, int w)
{
    if (atomic_fetch_add(&c->writers_inside, 1) != 0 || atomic_load(&c->readers_inside) != 0)
        crowd_violation(c);
    c->data++;
    c->writes[w]++;
    atomic_fetch_sub(&c->writers_inside, 1);
}

static void *crowd_reader(void *arg, int r)
{
    crowd_ctx_t *c = arg;
    /* First read lock in reader order: consecutive slot numbers. */
    while (atomic_load(&c->first_turn) != r)
        sched_yield();
    moirai_rwlock_rdlock(&c->rw);
    moirai_rwlock_rdunlock(&c->rw);
    atomic_fetch_add(&c->first_turn, 1);
    pthread_barrier_wait(&c->startup);

    for (long round = 0; round < c->rounds; round++) {
        /* Every read path in turn; a timed read only meets a writer's try
         * or timed attempt, which it outlasts by far. */
        if (read_lock_by(&c->rw, r + (int)round, 60000) != 0) {
            atomic_fetch_add(&c->read_errors, 1);
            continue;
        }
        atomic_fetch_add(&c->readers_inside, 1);
        if (atomic_load(&c->writers_inside) != 0)
            crowd_violation(c);
        long seen = c->data;
        /* All READERS are inside together once this opens. */
        pthread_barrier_wait(&c->enter);
        pthread_barrier_wait(&c->leave);
        if (c->data != seen || atomic_load(&c->writers_inside) != 0)
            crowd_violation(c);
        c->reads[r]++;
        atomic_fetch_sub(&c->readers_inside, 1);
        moirai_rwlock_rdunlock(&c->rw);
        pthread_barrier_wait(&c->next);
    }
    return NULL;
}

static void *crowd_writer(void *arg, int w)
{
    crowd_ctx_t *c = arg;
    pthread_barrier_wait(&c->startup);
    for (long round = 0; round < c->rounds; round++) {
        /* While readers come in: try to write; a success is a write
         * section like any other, and readers turned away retry. */
        for (int tries = 0; atomic_load(&c->readers_inside) < READERS && tries < 100; tries++) {
            if (moirai_rwlock_try_wrlock(&c->rw)) {
                crowd_write(c, w);
                atomic_fetch_add(&c->try_successes, 1);
                moirai_rwlock_wrunlock(&c->rw);
            }
            sched_yield();
        }
        pthread_barrier_wait(&c->enter);
        /* Every reader is inside, two in each slot: both attempts fail. */
        if (w == 0) {
            int full = 1;
            for (int i = 0; i < SLOTS; i++)
                full &= slot_count(&c->rw, i) == 2;
            atomic_fetch_add(&c->full_slots, full);
        }
        if (atomic_load(&c->readers_inside) != READERS)
            crowd_violation(c);
        if (moirai_rwlock_try_wrlock(&c->rw)) {
            crowd_violation(c);
            moirai_rwlock_wrunlock(&c->rw);
        }
        int rc = moirai_rwlock_wrlock_timed(&c->rw, test_deadline_ms(1));
        if (rc != -ETIMEDOUT) {
            crowd_violation(c);
            if (rc == 0)
                moirai_rwlock_wrunlock(&c->rw);
        }
        pthread_barrier_wait(&c->leave);
        /* The readers leave; each writer then writes once. */
        moirai_rwlock_wrlock(&c->rw);
        crowd_write(c, w);
        moirai_rwlock_wrunlock(&c->rw);
        pthread_barrier_wait(&c->next);
    }
    return NULL;
}

static void *crowd_thread(void *arg, int i)
{
    return i < READERS ? crowd_reader(arg, i) : crowd_writer(arg, i - READERS);
}

Test(rwlock_wide, every_slot_full_while_writers_try, .timeout = 60)
{
    static crowd_ctx_t c;
    c = (crowd_ctx_t){.rw = MOIRAI_RWLOCK_INIT, .rounds = test_iters(300, 20)};
    cr_assert_eq(pthread_barrier_init(&c.enter, NULL, READERS + WRITERS), 0);
    cr_assert_eq(pthread_barrier_init(&c.leave, NULL, READERS + WRITERS), 0);
    cr_assert_eq(pthread_barrier_init(&c.next, NULL, READERS + WRITERS), 0);
    cr_assert_eq(pthread_barrier_init(&c.startup, NULL, READERS + WRITERS), 0);
    test_run_threads(READERS + WRITERS, crowd_thread, &c);

    cr_assert_eq(atomic_load(&c.full_slots), c.rounds,
                 "precondition: every slot held two readers in %ld of %ld rounds",
                 atomic_load(&c.full_slots), c.rounds);
    cr_assert_eq(atomic_load(&c.violations), 0,
                 "%ld times a writer was inside with readers, or got in while all %d "
                 "readers were",
                 atomic_load(&c.violations), READERS);
    cr_assert_eq(atomic_load(&c.read_errors), 0);
    for (int r = 0; r < READERS; r++)
        cr_assert_eq(c.reads[r], c.rounds, "reader %d read %ld times, not %ld", r, c.reads[r],
                     c.rounds);
    long writes = 0;
    for (int w = 0; w < WRITERS; w++)
        writes += c.writes[w];
    cr_assert_eq(writes, WRITERS * c.rounds + atomic_load(&c.try_successes));
    cr_assert_eq(c.data, writes, "lost writes: %ld of %ld", c.data, writes);
    for (int i = 0; i < SLOTS; i++)
        cr_assert_eq(slot_count(&c.rw, i), 0, "slot %d still counts readers", i);
    moirai_rwlock_destroy(&c.rw);
    pthread_barrier_destroy(&c.enter);
    pthread_barrier_destroy(&c.leave);
    pthread_barrier_destroy(&c.next);
    pthread_barrier_destroy(&c.startup);
}

/* ---- one reader at a time, in every slot ---- */

typedef struct turn_ctx {
    moirai_rwlock_t rw;
    _Atomic int turn;     /* reader that holds the lock next; READERS ends */
    _Atomic int held;     /* the reader of `turn` holds the read lock */
    _Atomic int released; /* the test has let the reader of `turn` go */
    _Atomic long read_errors;
    int sweeps;
} turn_ctx_t;

static void *turn_reader(void *arg, int r)
{
    turn_ctx_t *c = arg;
    for (int sweep = 0; sweep < c->sweeps; sweep++) {
        int me = sweep * READERS + r;
        while (atomic_load(&c->turn) != me)
            sched_yield();
        if (read_lock_by(&c->rw, r + sweep, 60000) != 0) {
            atomic_fetch_add(&c->read_errors, 1);
            atomic_store(&c->held, -1);
        } else {
            atomic_store(&c->held, 1);
        }
        while (!atomic_load(&c->released))
            sched_yield();
        if (atomic_load(&c->held) == 1)
            moirai_rwlock_rdunlock(&c->rw);
        atomic_store(&c->held, 0);
    }
    return NULL;
}

static void *turn_readers(void *arg)
{
    test_run_threads(READERS, turn_reader, arg);
    return NULL;
}

Test(rwlock_wide, writer_finds_a_lone_reader_in_every_slot, .timeout = 60)
{
    static turn_ctx_t c;
    c = (turn_ctx_t){.rw = MOIRAI_RWLOCK_INIT, .sweeps = (int)test_iters(20, 3)};
    atomic_store(&c.turn, -1);
    pthread_t group = test_spawn(turn_readers, &c);
    int seen_in_slot[SLOTS] = {0};
    for (int t = 0; t < c.sweeps * READERS; t++) {
        atomic_store(&c.released, 0);
        atomic_store(&c.turn, t);
        while (atomic_load(&c.held) == 0)
            sched_yield();
        cr_assert_eq(atomic_load(&c.held), 1, "reader %d could not take the free lock",
                     t % READERS);
        /* Exactly one slot counts the lone reader. */
        int in = -1, total = 0;
        for (int i = 0; i < SLOTS; i++) {
            total += (int)slot_count(&c.rw, i);
            if (slot_count(&c.rw, i) != 0)
                in = i;
        }
        cr_assert_eq(total, 1);
        seen_in_slot[in]++;
        cr_assert_not(moirai_rwlock_try_wrlock(&c.rw),
                      "try_wrlock succeeded beside a reader in slot %d", in);
        cr_assert_eq(moirai_rwlock_wrlock_timed(&c.rw, test_deadline_ms(1)), -ETIMEDOUT,
                     "wrlock_timed did not wait for a reader in slot %d", in);
        atomic_store(&c.released, 1);
        while (atomic_load(&c.held) != 0)
            sched_yield();
        /* Gone: the writer gets in at once. */
        cr_assert(moirai_rwlock_try_wrlock(&c.rw), "try_wrlock failed after slot %d emptied", in);
        moirai_rwlock_wrunlock(&c.rw);
    }
    atomic_store(&c.turn, c.sweeps * READERS);
    pthread_join(group, NULL);
    cr_assert_eq(atomic_load(&c.read_errors), 0);
    for (int i = 0; i < SLOTS; i++)
        cr_assert_eq(seen_in_slot[i], 2 * c.sweeps,
                     "precondition: slot %d held a lone reader %d times, not %d", i,
                     seen_in_slot[i], 2 * c.sweeps);
    moirai_rwlock_destroy(&c.rw);
}

/* ---- a blocking writer drains readers spread over every slot ---- */

typedef struct drain_ctx {
    moirai_rwlock_t rw;
    _Atomic int first_turn;        /* reader whose first read lock is next */
    _Atomic long holding;          /* readers holding the read lock */
    _Atomic int release_upto;      /* readers below this index let go */
    _Atomic int left;              /* readers that have unlocked */
    _Atomic int writer_in;         /* the writer holds the lock */
    _Atomic long readers_at_write; /* `holding` when the writer got in */
    int release_order[READERS];
} drain_ctx_t;

static void *drain_reader(void *arg, int r)
{
    drain_ctx_t *c = arg;
    while (atomic_load(&c->first_turn) != r)
        sched_yield();
    /* Every read path; no writer is present yet, so each succeeds at
     * once (the timed one is checked by the test through `holding`). */
    if (read_lock_by(&c->rw, r, 60000) == 0)
        atomic_fetch_add(&c->holding, 1);
    atomic_fetch_add(&c->first_turn, 1);
    int pos = 0;
    while (c->release_order[pos] != r)
        pos++;
    while (atomic_load(&c->release_upto) <= pos)
        sched_yield();
    atomic_fetch_sub(&c->holding, 1);
    moirai_rwlock_rdunlock(&c->rw);
    atomic_fetch_add(&c->left, 1);
    return NULL;
}

static void *drain_readers(void *arg)
{
    test_run_threads(READERS, drain_reader, arg);
    return NULL;
}

static void *drain_writer(void *arg)
{
    drain_ctx_t *c = arg;
    moirai_rwlock_wrlock(&c->rw);
    atomic_store(&c->readers_at_write, atomic_load(&c->holding));
    atomic_store(&c->writer_in, 1);
    moirai_rwlock_wrunlock(&c->rw);
    return NULL;
}

/* One drain: readers take slots first_slot, first_slot + 1, ... (mod
 * SLOTS), twice around, and are released in `order`. */
static void drain_once(const int *order)
{
    static drain_ctx_t c;
    c = (drain_ctx_t){.rw = MOIRAI_RWLOCK_INIT};
    for (int i = 0; i < READERS; i++)
        c.release_order[i] = order[i];
    pthread_t readers = test_spawn(drain_readers, &c);
    while (atomic_load(&c.first_turn) != READERS)
        sched_yield();
    cr_assert_eq(atomic_load(&c.holding), READERS, "a reader could not take the free lock");
    for (int i = 0; i < SLOTS; i++)
        cr_assert_eq(slot_count(&c.rw, i), 2, "precondition: slot %d counts %u readers, not 2", i,
                     slot_count(&c.rw, i));

    pthread_t writer = test_spawn(drain_writer, &c);
    /* Wait until the writer has raised its flag: new readers are turned
     * away, by every read path. This thread's own read lock (its slot is
     * taken after the readers', so coverage is unchanged) probes it. */
    while (moirai_rwlock_try_rdlock(&c.rw)) {
        moirai_rwlock_rdunlock(&c.rw);
        sched_yield();
    }
    cr_assert_eq(moirai_rwlock_rdlock_timed(&c.rw, test_deadline_ms(1)), -ETIMEDOUT,
                 "a timed reader got in past a draining writer");

    for (int k = 0; k < READERS; k++) {
        cr_assert_eq(atomic_load(&c.writer_in), 0, "the writer got in with %d readers still inside",
                     READERS - k);
        atomic_store(&c.release_upto, k + 1);
        while (atomic_load(&c.left) != k + 1)
            sched_yield();
        /* Give a writer that wrongly stops waiting time to show it; a
         * correct one keeps waiting however long this is. */
        if (k + 1 < READERS)
            test_sleep_ms(1);
    }
    pthread_join(writer, NULL);
    pthread_join(readers, NULL);
    cr_assert_eq(atomic_load(&c.writer_in), 1);
    cr_assert_eq(atomic_load(&c.readers_at_write), 0, "the writer got in beside %ld readers",
                 atomic_load(&c.readers_at_write));
    for (int i = 0; i < SLOTS; i++)
        cr_assert_eq(slot_count(&c.rw, i), 0);
    moirai_rwlock_destroy(&c.rw);
}

Test(rwlock_wide, blocking_writer_waits_for_every_slot, .timeout = 60)
{
    int forward[READERS], backward[READERS], interleaved[READERS];
    for (int i = 0; i < READERS; i++) {
        forward[i] = i;
        backward[i] = READERS - 1 - i;
        /* Odd readers first, then even: slots empty late in both halves. */
        interleaved[i] = i < READERS / 2 ? 2 * i + 1 : 2 * (i - READERS / 2);
    }
    long reps = test_iters(4, 1);
    for (long rep = 0; rep < reps; rep++) {
        drain_once(forward);
        drain_once(backward);
        drain_once(interleaved);
    }
}

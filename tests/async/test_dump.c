/* Runtime dumps (moirai/async/dump.h): fibers parked on a mutex, an
 * event, a sleep and a join are each listed by name with the right reason
 * and the address they wait on; a fiber that dirtied 40 KiB of its stack
 * shows a high-water mark of at least that, and a fiber reusing its
 * cached stack afterwards shows only its own use; a fiber holding the
 * only worker reads running (and the scheduler section names it, watchdog
 * on) while the one queued behind it reads runnable; with backtraces,
 * fibers off their workers say why they have none; bad arguments, a
 * failing FILE, a dump during destroy (from a fiber and from a thread)
 * and after destroy give their errors. Reports go to open_memstream()
 * and are parsed back.
 *
 * Fibers never call Criterion's asserts. Every wait is bounded by WAIT_NS
 * or the test's Meson timeout. */
#include <criterion/criterion.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <moirai/async.h>
#include <moirai/core.h>
#include <moirai/sched.h>
#include <moirai/sync.h>

#include "dump_text.h"
#include "async_test_util.h"

static void sleep_ms(int ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void quiet_log(void *ctx, moirai_log_level_t level, const char *message)
{
    (void)ctx;
    (void)level;
    (void)message;
}

static moirai_runtime_t *make_rt(int workers, uint64_t watchdog_ns)
{
    moirai_sched_config_t sc;
    moirai_sched_config_init(&sc);
    sc.workers = workers;
    sc.watchdog_ns = watchdog_ns;
    moirai_runtime_config_t rc;
    moirai_runtime_config_init(&rc);
    rc.sched_config = &sc;
    moirai_runtime_t *rt = NULL;
    cr_assert_eq(moirai_runtime_create(&rt, &rc), 0);
    return rt;
}

static char *dump_str(moirai_runtime_t *rt, unsigned flags, int *rc)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    *rc = moirai_runtime_dump(rt, f, flags);
    fclose(f);
    return buf;
}

/* Parses `... parked on <what> <addr> for <ms> ms, stack <used>/<size> bytes`. */
static bool parse_parked(const char *line, const char *what, uintptr_t *addr, uint64_t *used,
                         uint64_t *size)
{
    char needle[64];
    snprintf(needle, sizeof needle, "parked on %s 0x", what);
    const char *p = strstr(line, needle);
    if (p == NULL)
        return false;
    uint64_t ms;
    return sscanf(p + strlen(needle) - 2,
                  "%" SCNxPTR " for %" SCNu64 " ms, stack %" SCNu64 "/%" SCNu64 " bytes", addr, &ms,
                  used, size) == 4;
}

static void fiber_attr(moirai_fiber_attr_t *attr, const char *name)
{
    moirai_fiber_attr_init(attr);
    attr->task.name = name;
}

/* ---- Parked fibers ---- */

static moirai_mutex_t mutex;
static moirai_event_t event;

static int lock_mutex(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    moirai_mutex_lock(&mutex);
    moirai_mutex_unlock(&mutex);
    return 0;
}

static int wait_event(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    moirai_event_wait(&event);
    return 0;
}

/* Dirties 40 KiB of its stack, then waits on the event. */
static int deep_wait(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    volatile char buf[40 * 1024];
    for (size_t i = 0; i < sizeof buf; i += 64)
        buf[i] = 1;
    moirai_event_wait(&event);
    return buf[0] - 1;
}

static int long_sleep(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    /* Ended by cancellation, well before this. */
    return moirai_fiber_sleep(60 * MOIRAI_NS_PER_S);
}

static int join_it(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    return moirai_handle_join(arg, NULL);
}

/* Dumps until every name in `names` is listed as parked; returns the dump. */
static char *dump_when_parked(moirai_runtime_t *rt, const char *const *names, int n, unsigned flags)
{
    for (;;) {
        int rc;
        char *text = dump_str(rt, flags, &rc);
        cr_assert_eq(rc, 0);
        int parked = 0;
        char line[512];
        for (int i = 0; i < n; i++)
            if (dump_find_fiber(text, names[i], line, sizeof line) &&
                strstr(line, "parked on ") != NULL)
                parked++;
        if (parked == n)
            return text;
        free(text);
        sleep_ms(2);
    }
}

Test(async_dump, parked_fibers_named_with_reason_and_address)
{
    moirai_runtime_t *rt = make_rt(2, 0);
    moirai_mutex_init(&mutex);
    cr_assert_eq(moirai_event_init(&event, MOIRAI_EVENT_MANUAL, false), 0);
    moirai_mutex_lock(&mutex);
    moirai_fiber_attr_t attr;
    fiber_attr(&attr, "mutex_waiter");
    moirai_handle_t *hm = spawn_with_handle(rt, lock_mutex, NULL, &attr);
    fiber_attr(&attr, "event_waiter");
    moirai_handle_t *he = spawn_with_handle(rt, wait_event, NULL, &attr);
    fiber_attr(&attr, "deep_waiter");
    moirai_handle_t *hd = spawn_with_handle(rt, deep_wait, NULL, &attr);
    fiber_attr(&attr, "sleeper");
    moirai_handle_t *hs = spawn_with_handle(rt, long_sleep, NULL, &attr);
    fiber_attr(&attr, "joiner");
    moirai_handle_t *hj = spawn_with_handle(rt, join_it, hs, &attr);

    const char *names[] = {"mutex_waiter", "event_waiter", "deep_waiter", "sleeper", "joiner"};
    char *text = dump_when_parked(rt, names, 5, MOIRAI_RUNTIME_DUMP_BACKTRACES);
    char line[512];
    uintptr_t addr;
    uint64_t used, size;

    cr_assert(dump_find_fiber(text, "mutex_waiter", line, sizeof line), "%s", text);
    cr_assert(parse_parked(line, "mutex", &addr, &used, &size), "%s", line);
    cr_assert(addr >= (uintptr_t)&mutex && addr < (uintptr_t)&mutex + sizeof mutex, "%s", line);
    cr_assert_gt(used, 0);
    cr_assert_leq(used, size);
    cr_assert_geq(size, MOIRAI_FIBER_STACK_DEFAULT - 4096, "%s", line);

    cr_assert(dump_find_fiber(text, "event_waiter", line, sizeof line), "%s", text);
    cr_assert(parse_parked(line, "event", &addr, &used, &size), "%s", line);
    cr_assert(addr >= (uintptr_t)&event && addr < (uintptr_t)&event + sizeof event, "%s", line);
    uint64_t shallow = used;

    cr_assert(dump_find_fiber(text, "deep_waiter", line, sizeof line), "%s", text);
    cr_assert(parse_parked(line, "event", &addr, &used, &size), "%s", line);
    /* Its 40 KiB buffer lies below its entry frames: the mark covers it. */
    cr_assert_geq(used, 40 * 1024, "%s", line);
    cr_assert_lt(shallow, 40 * 1024, "%" PRIu64, shallow);

    cr_assert(dump_find_fiber(text, "sleeper", line, sizeof line), "%s", text);
    cr_assert(parse_parked(line, "sleep", &addr, &used, &size), "%s", line);

    cr_assert(dump_find_fiber(text, "joiner", line, sizeof line), "%s", text);
    cr_assert(parse_parked(line, "join", &addr, &used, &size), "%s", line);
    cr_assert(addr >= (uintptr_t)hs && addr < (uintptr_t)hs + 256, "%s", line);

    /* Backtraces: a parked fiber says why it has none. */
    cr_assert(
        dump_find_line(text,
                       "  backtrace: not available (a fiber off its worker is not unwound: see "
                       "moirai/async/dump.h)",
                       line, sizeof line),
        "%s", text);
    /* The scheduler's section comes first, and the summary. */
    cr_assert(dump_find_line(text, "moirai-async dump: runtime ", line, sizeof line), "%s", text);
    cr_assert(dump_find_line(text, "moirai-sched dump: scheduler ", line, sizeof line), "%s", text);
    cr_assert(dump_find_line(text, "fibers: alive 5 ", line, sizeof line), "%s", text);
    cr_assert(dump_find_line(text, "end of runtime dump: 5 fibers listed", line, sizeof line), "%s",
              text);
    free(text);

    moirai_mutex_unlock(&mutex);
    moirai_event_set(&event);
    moirai_handle_cancel(hs);
    cr_assert_eq(join_and_release(hm, NULL), 0);
    cr_assert_eq(join_and_release(he, NULL), 0);
    cr_assert_eq(join_and_release(hd, NULL), 0);
    cr_assert_eq(join_and_release(hj, NULL), -ECANCELED);
    cr_assert_eq(join_and_release(hs, NULL), -ECANCELED);
    /* Ended fibers are not listed. */
    moirai_runtime_stats_t st = idle_stats(rt);
    cr_assert_eq(st.fibers_alive, 0);
    int rc;
    text = dump_str(rt, 0, &rc);
    cr_assert_eq(rc, 0);
    cr_assert(dump_find_line(text, "end of runtime dump: 0 fibers listed", line, sizeof line), "%s",
              text);
    free(text);
    drop_runtime(rt);
}

/* A fiber that reuses a deep fiber's cached stack measures its own use. */
static int deep_return(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    volatile char buf[64 * 1024];
    for (size_t i = 0; i < sizeof buf; i += 64)
        buf[i] = 1;
    return buf[0] - 1;
}

/* On the only worker: runs the deep fiber to its end (its struct and
 * stack go to that worker's cache), then spawns "shallow", which reuses
 * them, and hands its handle back. */
static int parent(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    moirai_runtime_t *rt = moirai_runtime_current();
    moirai_handle_t *h = NULL;
    if (moirai_handle_create(&h) != 0 || moirai_fiber_spawn(rt, deep_return, NULL, NULL, h) != 0)
        return -ENOMEM;
    int rc = moirai_handle_join(h, NULL);
    moirai_handle_release(h);
    if (rc != 0)
        return rc;
    moirai_fiber_attr_t attr;
    moirai_fiber_attr_init(&attr);
    attr.task.name = "shallow";
    if (moirai_handle_create(&h) != 0 || moirai_fiber_spawn(rt, wait_event, NULL, &attr, h) != 0)
        return -ENOMEM;
    *result = h;
    return 0;
}

Test(async_dump, reused_stack_measures_its_current_fiber)
{
    moirai_runtime_t *rt = make_rt(1, 0);
    cr_assert_eq(moirai_event_init(&event, MOIRAI_EVENT_MANUAL, false), 0);
    void *value = NULL;
    cr_assert_eq(run_fiber(rt, parent, NULL, &value), 0);
    moirai_handle_t *h = value;
    const char *names[] = {"shallow"};
    char *text = dump_when_parked(rt, names, 1, 0);
    char line[512];
    uintptr_t addr;
    uint64_t used, size;
    cr_assert(dump_find_fiber(text, "shallow", line, sizeof line), "%s", text);
    cr_assert(parse_parked(line, "event", &addr, &used, &size), "%s", line);
    /* The deep fiber dirtied 64 KiB of this stack; the re-zeroing on reuse
     * leaves only what "shallow" itself wrote. */
    cr_assert_lt(used, 16 * 1024, "%s", line);
    /* The deep fiber's stack was reused: two stacks were ever mapped (the
     * parent's and the deep one's), and the runtime saw the deep use. */
    cr_assert(dump_find_line(text, "fibers: alive 1 ", line, sizeof line), "%s", text);
    cr_assert_not_null(strstr(line, "stacks_mapped 2 "), "%s", line);
    uint64_t hw = 0;
    const char *p = strstr(line, "stack_high_water ");
    cr_assert_not_null(p);
    cr_assert_eq(sscanf(p, "stack_high_water %" SCNu64, &hw), 1);
    cr_assert_geq(hw, 64 * 1024, "%s", line);
    free(text);
    moirai_event_set(&event);
    cr_assert_eq(join_and_release(h, NULL), 0);
    drop_runtime(rt);
}

/* ---- Running and runnable ---- */

static int nothing(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    return 0;
}

Test(async_dump, running_and_runnable)
{
    moirai_log_sink_set(quiet_log, NULL);
    moirai_runtime_t *rt = make_rt(1, 20 * MOIRAI_NS_PER_MS);
    struct holder holder;
    atomic_init(&holder.running, 0);
    atomic_init(&holder.release, 0);
    moirai_fiber_attr_t attr;
    fiber_attr(&attr, "spinner");
    moirai_handle_t *hh = spawn_with_handle(rt, hold_worker, &holder, &attr);
    while (!atomic_load(&holder.running))
        sleep_ms(1);
    fiber_attr(&attr, "queued_fiber");
    moirai_handle_t *hq = spawn_with_handle(rt, nothing, NULL, &attr);
    int rc;
    char *text = dump_str(rt, MOIRAI_RUNTIME_DUMP_BACKTRACES, &rc);
    cr_assert_eq(rc, 0);
    char line[512];
    cr_assert(dump_find_fiber(text, "spinner", line, sizeof line), "%s", text);
    cr_assert_not_null(strstr(line, "\"spinner\": running, stack "), "%s", line);
    cr_assert(dump_find_line(text, "  backtrace: see its worker in the scheduler section", line,
                             sizeof line),
              "%s", text);
    cr_assert(dump_find_fiber(text, "queued_fiber", line, sizeof line), "%s", text);
    cr_assert_not_null(strstr(line, "\"queued_fiber\": runnable, stack "), "%s", line);
    /* The scheduler names the fiber its worker runs (the watchdog is on). */
    cr_assert(dump_find_line(text, "worker 0: running \"spinner\"", line, sizeof line), "%s", text);
    /* The queued fiber's job waits on the injector (spawned from outside). */
    cr_assert(dump_find_line(text, "injector: critical 0 high 0 normal 1 low 0 background 0", line,
                             sizeof line),
              "%s", text);
    free(text);
    atomic_store(&holder.release, 1);
    cr_assert_eq(join_and_release(hh, NULL), 0);
    cr_assert_eq(join_and_release(hq, NULL), 0);
    drop_runtime(rt);
}

/* ---- Errors ---- */

Test(async_dump, bad_arguments_and_failing_file)
{
    moirai_runtime_t *rt = make_rt(1, 0);
    FILE *f = fopen("/dev/null", "w");
    cr_assert_not_null(f);
    cr_assert_eq(moirai_runtime_dump(NULL, f, 0), -EINVAL);
    cr_assert_eq(moirai_runtime_dump(rt, NULL, 0), -EINVAL);
    cr_assert_eq(moirai_runtime_dump(rt, f, 4), -EINVAL);
    cr_assert_eq(moirai_runtime_dump(rt, f, 0), 0);
    fclose(f);
    FILE *ro = fopen("/dev/null", "r");
    cr_assert_not_null(ro);
    cr_assert_eq(moirai_runtime_dump(rt, ro, 0), -EIO);
    fclose(ro);
    drop_runtime(rt);
}

Test(async_dump, after_destroy_is_shutdown)
{
    moirai_runtime_t *rt = make_rt(1, 0);
    drop_runtime(rt);
    FILE *f = fopen("/dev/null", "w");
    cr_assert_not_null(f);
    /* Freed: compared, never read (ASan would report a read). */
    cr_assert_eq(moirai_runtime_dump(rt, f, MOIRAI_RUNTIME_DUMP_BACKTRACES), -ESHUTDOWN);
    /* A new runtime is dumped normally. */
    moirai_runtime_t *rt2 = make_rt(1, 0);
    cr_assert_eq(moirai_runtime_dump(rt2, f, 0), 0);
    drop_runtime(rt2);
    fclose(f);
}

static moirai_runtime_t *during_rt;
static atomic_int during_fiber_rc;
static atomic_int during_running;

/* Dumps its own runtime until refused; destroy waits for this fiber. */
static int dump_until_refused(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    FILE *f = fopen("/dev/null", "w");
    if (f == NULL)
        return -EIO;
    atomic_store(&during_running, 1);
    int rc;
    while ((rc = moirai_runtime_dump(during_rt, f, 0)) == 0)
        moirai_fiber_sleep(MOIRAI_NS_PER_MS);
    atomic_store(&during_fiber_rc, rc);
    fclose(f);
    return 0;
}

static void *dump_thread(void *arg)
{
    (void)arg;
    FILE *f = fopen("/dev/null", "w");
    int rc;
    while ((rc = moirai_runtime_dump(during_rt, f, 0)) == 0) {
        /* A pause between dumps: the dump lock is not fair, and a loop
         * that takes it back at once could hold destroy off for long. */
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    fclose(f);
    return (void *)(intptr_t)rc;
}

Test(async_dump, during_destroy_is_shutdown)
{
    during_rt = make_rt(2, 0);
    cr_assert_eq(moirai_fiber_spawn(during_rt, dump_until_refused, NULL, NULL, NULL), 0);
    while (!atomic_load(&during_running))
        sleep_ms(1);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, dump_thread, NULL), 0);
    cr_assert_eq(moirai_runtime_destroy(during_rt), 0);
    cr_assert_eq(atomic_load(&during_fiber_rc), -ESHUTDOWN);
    void *trc;
    cr_assert_eq(pthread_join(t, &trc), 0);
    cr_assert_eq((int)(intptr_t)trc, -ESHUTDOWN);
}

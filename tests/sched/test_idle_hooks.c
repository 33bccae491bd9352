/* Idle hooks: an idle worker waits in the runtime's hook instead of its
 * futex, a wake reaches it through the hook, "outside work" reported by
 * the wait is polled on that worker, and a busy worker polls once per
 * MOIRAI_SCHED_IDLE_POLL_JOBS jobs. The hooks here wait on an eventfd per
 * worker plus one shared "outside" eventfd, as moirai-async's poller does
 * with its epoll set. */
#include <criterion/criterion.h>

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <moirai/core/clock.h>
#include <moirai/core/handle.h>
#include <moirai/sched/job.h>
#include <moirai/sched/sched.h>

#define WAIT_NS (30 * MOIRAI_NS_PER_S)
#define WORKERS 2

struct hooks {
    int efd[WORKERS];
    int outside; /* readable: outside work is ready */
    _Atomic long waits, wakes, polls, polled_outside;
    moirai_sched_t *sched;
    moirai_sched_job_t job;
    _Atomic int job_ran_on; /* worker index + 1 */
};

static bool h_wait(void *arg, int worker)
{
    struct hooks *h = arg;
    atomic_fetch_add(&h->waits, 1);
    struct pollfd p[2] = {{.fd = h->efd[worker], .events = POLLIN},
                          {.fd = h->outside, .events = POLLIN}};
    poll(p, 2, -1);
    uint64_t v;
    if (p[0].revents & POLLIN) {
        ssize_t r = read(h->efd[worker], &v, sizeof v);
        (void)r;
    }
    return (p[1].revents & POLLIN) != 0;
}

static void h_wake(void *arg, int worker)
{
    struct hooks *h = arg;
    atomic_fetch_add(&h->wakes, 1);
    uint64_t one = 1;
    ssize_t r = write(h->efd[worker], &one, sizeof one);
    (void)r;
}

static void h_poll(void *arg, int worker, bool busy)
{
    struct hooks *h = arg;
    (void)worker;
    if (busy)
        atomic_fetch_add(&h->polls, 1);
    uint64_t v;
    /* Non-blocking: the outside eventfd was made with EFD_NONBLOCK. */
    if (read(h->outside, &v, sizeof v) == sizeof v) {
        atomic_fetch_add(&h->polled_outside, 1);
        moirai_sched_job_submit(h->sched, &h->job, MOIRAI_PRIORITY_NORMAL, 0);
    }
}

static void outside_job(moirai_sched_job_t *job)
{
    struct hooks *h = (struct hooks *)((char *)job - offsetof(struct hooks, job));
    atomic_store(&h->job_ran_on, moirai_sched_worker_index() + 1);
}

static moirai_sched_idle_hooks_t table;

static struct hooks *make(void)
{
    static struct hooks h;
    for (int i = 0; i < WORKERS; i++)
        h.efd[i] = eventfd(0, EFD_NONBLOCK);
    h.outside = eventfd(0, EFD_NONBLOCK);
    atomic_init(&h.waits, 0);
    atomic_init(&h.wakes, 0);
    atomic_init(&h.polls, 0);
    atomic_init(&h.polled_outside, 0);
    atomic_init(&h.job_ran_on, 0);
    moirai_sched_job_init(&h.job, outside_job, "outside");
    table = (moirai_sched_idle_hooks_t){h_wait, h_wake, h_poll, &h};
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = WORKERS;
    cfg.spin_ns = 1000;
    cfg.idle_hooks = &table;
    cr_assert_eq(moirai_sched_create(&h.sched, &cfg), 0);
    return &h;
}

static void drop(struct hooks *h)
{
    cr_assert_eq(moirai_sched_destroy(h->sched, MOIRAI_SHUTDOWN_DRAIN), 0);
    for (int i = 0; i < WORKERS; i++)
        close(h->efd[i]);
    close(h->outside);
}

static void wait_until(_Atomic long *v, long at_least)
{
    uint64_t until = moirai_deadline_after(WAIT_NS);
    while (atomic_load(v) < at_least && moirai_clock_now_ns() < until)
        sched_yield();
    cr_assert_geq(atomic_load(v), at_least);
}

static int count_task(void *arg, const moirai_cancel_token_t *c, void **r)
{
    (void)c;
    (void)r;
    atomic_fetch_add((_Atomic long *)arg, 1);
    return 0;
}

Test(idle_hooks, idle_workers_wait_in_the_hook_and_wake_through_it, .timeout = 60)
{
    struct hooks *h = make();
    /* Both workers end up idle in the hook. */
    wait_until(&h->waits, WORKERS);
    _Atomic long ran;
    atomic_init(&ran, 0);
    moirai_handle_t *handle;
    cr_assert_eq(moirai_handle_create(&handle), 0);
    cr_assert_eq(moirai_sched_spawn(h->sched, count_task, &ran, NULL, handle), 0);
    cr_assert_eq(moirai_handle_join_timed(handle, moirai_deadline_after(WAIT_NS), NULL), 0);
    moirai_handle_release(handle);
    cr_assert_eq(atomic_load(&ran), 1);
    /* The spawn found the workers asleep: it woke one through the hook. */
    cr_assert_geq(atomic_load(&h->wakes), 1);
    drop(h);
}

Test(idle_hooks, outside_work_is_polled_on_the_worker_that_saw_it, .timeout = 60)
{
    struct hooks *h = make();
    wait_until(&h->waits, WORKERS);
    uint64_t one = 1;
    cr_assert_eq(write(h->outside, &one, sizeof one), (ssize_t)sizeof one);
    wait_until(&h->polled_outside, 1);
    uint64_t until = moirai_deadline_after(WAIT_NS);
    while (atomic_load(&h->job_ran_on) == 0 && moirai_clock_now_ns() < until)
        sched_yield();
    cr_assert_gt(atomic_load(&h->job_ran_on), 0, "the polled job never ran");
    drop(h);
}

Test(idle_hooks, a_busy_worker_polls_every_so_many_jobs, .timeout = 60)
{
    struct hooks *h = make();
    wait_until(&h->waits, WORKERS);
    long before = atomic_load(&h->polls);
    _Atomic long ran;
    atomic_init(&ran, 0);
    enum { TASKS = 20 * MOIRAI_SCHED_IDLE_POLL_JOBS };
    for (int i = 0; i < TASKS; i++)
        cr_assert_eq(moirai_sched_spawn(h->sched, count_task, &ran, NULL, NULL), 0);
    wait_until(&ran, TASKS);
    /* At least one poll per MOIRAI_SCHED_IDLE_POLL_JOBS jobs run (two
     * workers may split them, so half that, conservatively). */
    cr_assert_geq(atomic_load(&h->polls) - before, TASKS / MOIRAI_SCHED_IDLE_POLL_JOBS / 2 - 1);
    drop(h);
}

Test(idle_hooks, a_hook_table_with_a_null_function_is_refused)
{
    moirai_sched_idle_hooks_t bad = {h_wait, NULL, h_poll, NULL};
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.idle_hooks = &bad;
    moirai_sched_t *s = NULL;
    cr_assert_eq(moirai_sched_create(&s, &cfg), -EINVAL);
    cr_assert_null(s);
}

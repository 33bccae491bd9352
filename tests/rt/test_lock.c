/* The priority-inheritance and ceiling mutexes: mutual exclusion with an
 * exact count, every documented error, deadlines, the ceiling raise and
 * the inheritance boost (as root), and the inversion scenario on one CPU:
 * with the PI mutex the high task waits about one critical section; with
 * a plain mutex it also waits for the medium task's whole spin.
 *
 * The root-only tests skip with a reason when SCHED_FIFO is refused. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <moirai/core/clock.h>
#include <moirai/rt/lock.h>

#include "test_scale.h"

static moirai_rt_pi_mutex_t shared = MOIRAI_RT_PI_MUTEX_INIT;
static long counter;

static void *contend(void *arg)
{
    long n = (long)(intptr_t)arg;
    for (long i = 0; i < n; i++) {
        cr_assert_eq(moirai_rt_pi_mutex_lock(&shared), 0);
        counter++;
        cr_assert_eq(moirai_rt_pi_mutex_unlock(&shared), 0);
    }
    return NULL;
}

Test(rt_lock, pi_mutex_excludes_exactly)
{
    long n = scaled(200000);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, contend, (void *)(intptr_t)n), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(counter, 4 * n);
    cr_assert_eq(moirai_rt_locks_held(), 0);
}

static void *try_from_other(void *arg)
{
    moirai_rt_pi_mutex_t *m = arg;
    intptr_t rc = moirai_rt_pi_mutex_try_lock(m);
    if (rc == -EBUSY) {
        /* Unlocking what another thread holds is refused. */
        rc = moirai_rt_pi_mutex_unlock(m) == -EPERM ? -EBUSY : -999;
    }
    if (rc == -EBUSY) {
        uint64_t before = moirai_clock_now_ns();
        int t = moirai_rt_pi_mutex_lock_timed(m, moirai_deadline_after(20 * MOIRAI_NS_PER_MS));
        if (t != -ETIMEDOUT || moirai_clock_now_ns() - before < 20 * MOIRAI_NS_PER_MS)
            rc = -998;
    }
    return (void *)rc;
}

Test(rt_lock, pi_mutex_errors)
{
    moirai_rt_pi_mutex_t m;
    moirai_rt_pi_mutex_init(&m);
    cr_assert_eq(moirai_rt_pi_mutex_unlock(&m), -EPERM, "unlock of a free mutex");
    cr_assert_eq(moirai_rt_pi_mutex_lock(&m), 0);
    cr_assert_eq(moirai_rt_locks_held(), 1);
    cr_assert_eq(moirai_rt_pi_mutex_lock(&m), -EDEADLK, "recursive lock");
    cr_assert_eq(moirai_rt_pi_mutex_try_lock(&m), -EDEADLK);
    cr_assert_eq(moirai_rt_pi_mutex_lock_timed(&m, 0), -EDEADLK);
    pthread_t th;
    void *rc;
    cr_assert_eq(pthread_create(&th, NULL, try_from_other, &m), 0);
    pthread_join(th, &rc);
    cr_assert_eq((intptr_t)rc, -EBUSY);
    cr_assert_eq(moirai_rt_locks_held(), 1);
    cr_assert_eq(moirai_rt_pi_mutex_unlock(&m), 0);
    cr_assert_eq(moirai_rt_locks_held(), 0);
    cr_assert_eq(moirai_rt_pi_mutex_try_lock(&m), 0);
    cr_assert_eq(moirai_rt_pi_mutex_unlock(&m), 0);
    cr_assert_eq(moirai_rt_pi_mutex_lock_timed(&m, MOIRAI_DEADLINE_NEVER), 0);
    cr_assert_eq(moirai_rt_pi_mutex_unlock(&m), 0);
    moirai_rt_pi_mutex_destroy(&m);
    cr_assert_eq(moirai_rt_pi_mutex_lock(NULL), -EINVAL);
    cr_assert_eq(moirai_rt_pi_mutex_try_lock(NULL), -EINVAL);
    cr_assert_eq(moirai_rt_pi_mutex_lock_timed(NULL, 0), -EINVAL);
    cr_assert_eq(moirai_rt_pi_mutex_unlock(NULL), -EINVAL);
    moirai_rt_pi_mutex_init(NULL);
    moirai_rt_pi_mutex_destroy(NULL);
}

Test(rt_lock, ceiling_mutex_errors)
{
    moirai_rt_ceiling_mutex_t m;
    cr_assert_eq(moirai_rt_ceiling_mutex_init(&m, 0), -EINVAL);
    cr_assert_eq(moirai_rt_ceiling_mutex_init(&m, 100), -EINVAL);
    cr_assert_eq(moirai_rt_ceiling_mutex_init(NULL, 10), -EINVAL);
    cr_assert_eq(moirai_rt_ceiling_mutex_init(&m, 40), 0);
    cr_assert_eq(moirai_rt_ceiling_mutex_ceiling(&m), 40);
    cr_assert_eq(moirai_rt_ceiling_mutex_ceiling(NULL), -EINVAL);
    cr_assert_eq(moirai_rt_ceiling_mutex_unlock(&m), -EPERM);
    cr_assert_eq(moirai_rt_ceiling_mutex_lock(&m), 0);
    cr_assert_eq(moirai_rt_ceiling_mutex_lock(&m), -EDEADLK);
    cr_assert_eq(moirai_rt_ceiling_mutex_try_lock(&m), -EDEADLK);
    cr_assert_eq(moirai_rt_ceiling_mutex_unlock(&m), 0);
    cr_assert_eq(moirai_rt_ceiling_mutex_try_lock(&m), 0);
    cr_assert_eq(moirai_rt_ceiling_mutex_unlock(&m), 0);
    cr_assert_eq(moirai_rt_ceiling_mutex_lock(NULL), -EINVAL);
    cr_assert_eq(moirai_rt_ceiling_mutex_try_lock(NULL), -EINVAL);
    cr_assert_eq(moirai_rt_ceiling_mutex_unlock(NULL), -EINVAL);
    moirai_rt_ceiling_mutex_destroy(&m);
    moirai_rt_ceiling_mutex_destroy(NULL);
}

/* ---- root: SCHED_FIFO ---- */

/* Creates a SCHED_FIFO thread at `prio` pinned to `cpu`; returns the
 * pthread_create error (EPERM without privilege). */
static int fifo_thread(pthread_t *th, int prio, int cpu, void *(*fn)(void *), void *arg)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
    pthread_attr_setschedpolicy(&attr, SCHED_FIFO);
    struct sched_param sp = {.sched_priority = prio};
    pthread_attr_setschedparam(&attr, &sp);
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
    }
    int e = pthread_create(th, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    return e;
}

static bool fifo_permitted(void)
{
    struct sched_param sp = {.sched_priority = 1};
    pthread_attr_t attr;
    (void)attr;
    if (sched_setscheduler(0, SCHED_FIFO, &sp) != 0)
        return false;
    sp.sched_priority = 0;
    sched_setscheduler(0, SCHED_OTHER, &sp);
    return true;
}

/* The kernel's view of the calling thread's priority: field 18 of
 * /proc/thread-self/stat, -1 - rt_priority for an RT thread. It shows a
 * PI boost, which sched_getparam does not. */
static int kernel_prio(pid_t tid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    int field = 2, prio = 0;
    for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " "))
        if (++field == 18) {
            prio = atoi(tok);
            break;
        }
    return prio;
}

static moirai_rt_ceiling_mutex_t ceiling_m;

static void *ceiling_body(void *arg)
{
    int *seen = arg;
    struct sched_param sp;
    int policy;
    cr_assert_eq(moirai_rt_ceiling_mutex_lock(&ceiling_m), 0);
    pthread_getschedparam(pthread_self(), &policy, &sp);
    seen[0] = sp.sched_priority;
    cr_assert_eq(moirai_rt_ceiling_mutex_unlock(&ceiling_m), 0);
    pthread_getschedparam(pthread_self(), &policy, &sp);
    seen[1] = sp.sched_priority;
    return NULL;
}

Test(rt_lock, ceiling_raises_and_restores)
{
    if (!fifo_permitted())
        cr_skip_test("SCHED_FIFO not permitted here (needs root or CAP_SYS_NICE)");
    cr_assert_eq(moirai_rt_ceiling_mutex_init(&ceiling_m, 30), 0);
    int seen[2] = {0, 0};
    pthread_t th;
    cr_assert_eq(fifo_thread(&th, 10, -1, ceiling_body, seen), 0);
    pthread_join(th, NULL);
    cr_assert_eq(seen[0], 30, "inside: %d", seen[0]);
    cr_assert_eq(seen[1], 10, "after: %d", seen[1]);
}

/* ---- the inversion scenario ---- */

typedef struct scenario {
    bool use_pi;
    moirai_rt_pi_mutex_t pi;
    pthread_mutex_t plain;
    _Atomic int low_holds, high_waiting, low_tid;
    uint64_t cs_cpu_ns, medium_spin_ns;
    uint64_t high_wait_ns;
    int low_prio_seen; /* kernel priority of the low thread while high waits */
} scenario_t;

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * MOIRAI_NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void scen_lock(scenario_t *s)
{
    if (s->use_pi)
        cr_assert_eq(moirai_rt_pi_mutex_lock(&s->pi), 0);
    else
        pthread_mutex_lock(&s->plain);
}

static void scen_unlock(scenario_t *s)
{
    if (s->use_pi)
        cr_assert_eq(moirai_rt_pi_mutex_unlock(&s->pi), 0);
    else
        pthread_mutex_unlock(&s->plain);
}

static void *low_body(void *arg)
{
    scenario_t *s = arg;
    atomic_store(&s->low_tid, (int)syscall(SYS_gettid));
    scen_lock(s);
    atomic_store(&s->low_holds, 1);
    /* The critical section: a fixed amount of this thread's CPU time, so
     * it lasts as long as the scheduler lets it run. */
    uint64_t start = thread_cpu_ns();
    bool sampled = false;
    while (thread_cpu_ns() - start < s->cs_cpu_ns) {
        if (!sampled && atomic_load(&s->high_waiting) &&
            thread_cpu_ns() - start > s->cs_cpu_ns / 2) {
            s->low_prio_seen = kernel_prio((pid_t)atomic_load(&s->low_tid));
            sampled = true;
        }
    }
    scen_unlock(s);
    return NULL;
}

static void *high_body(void *arg)
{
    scenario_t *s = arg;
    atomic_store(&s->high_waiting, 1);
    uint64_t t0 = moirai_clock_now_ns();
    scen_lock(s);
    s->high_wait_ns = moirai_clock_now_ns() - t0;
    scen_unlock(s);
    return NULL;
}

static void *medium_body(void *arg)
{
    scenario_t *s = arg;
    uint64_t t0 = moirai_clock_now_ns();
    while (moirai_clock_now_ns() - t0 < s->medium_spin_ns) {
    }
    return NULL;
}

static void nap_ms(long ms)
{
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

static void run_scenario(scenario_t *s)
{
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutex_init(&s->plain, &ma);
    pthread_mutexattr_destroy(&ma);
    moirai_rt_pi_mutex_init(&s->pi);
    pthread_t low, high, medium;
    /* Everything contends for CPU 0; this thread watches from CPU 1. */
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(1, &set);
    pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    cr_assert_eq(fifo_thread(&low, 10, 0, low_body, s), 0);
    while (!atomic_load(&s->low_holds))
        nap_ms(1);
    cr_assert_eq(fifo_thread(&high, 30, 0, high_body, s), 0);
    while (!atomic_load(&s->high_waiting))
        nap_ms(1);
    nap_ms(5);
    cr_assert_eq(fifo_thread(&medium, 20, 0, medium_body, s), 0);
    pthread_join(high, NULL);
    pthread_join(low, NULL);
    pthread_join(medium, NULL);
    moirai_rt_pi_mutex_destroy(&s->pi);
    pthread_mutex_destroy(&s->plain);
}

Test(rt_lock, inheritance_bounds_the_inversion, .timeout = 30)
{
    if (!fifo_permitted())
        cr_skip_test("SCHED_FIFO not permitted here (needs root or CAP_SYS_NICE)");
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
        cr_skip_test("needs two CPUs (one for the scenario, one to watch)");
    /* Critical section 30 ms of CPU, medium spin 400 ms. */
    scenario_t pi = {.use_pi = true,
                     .cs_cpu_ns = 30 * MOIRAI_NS_PER_MS,
                     .medium_spin_ns = 400 * MOIRAI_NS_PER_MS};
    run_scenario(&pi);
    scenario_t plain = {.use_pi = false,
                        .cs_cpu_ns = 30 * MOIRAI_NS_PER_MS,
                        .medium_spin_ns = 400 * MOIRAI_NS_PER_MS};
    run_scenario(&plain);
    /* With inheritance the low thread ran at the high one's priority (30:
     * kernel priority -31) and the high thread waited about the critical
     * section, far less than the medium spin; without, it waited for the
     * medium spin too. Margins are wide: half the spin either way. */
    cr_log_info("high task's wait: %llu us with PI, %llu us with a plain mutex",
                (unsigned long long)(pi.high_wait_ns / 1000),
                (unsigned long long)(plain.high_wait_ns / 1000));
    cr_assert_eq(pi.low_prio_seen, -31, "boosted kernel priority %d", pi.low_prio_seen);
    cr_assert_lt(pi.high_wait_ns, 200 * MOIRAI_NS_PER_MS, "PI wait %llu ns",
                 (unsigned long long)pi.high_wait_ns);
    cr_assert_gt(plain.high_wait_ns, 200 * MOIRAI_NS_PER_MS, "plain wait %llu ns",
                 (unsigned long long)plain.high_wait_ns);
    cr_assert_eq(plain.low_prio_seen, -11, "unboosted kernel priority %d", plain.low_prio_seen);
}

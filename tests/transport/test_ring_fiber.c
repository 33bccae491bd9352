/* A fiber waiting on a shared-memory ring parks, never its worker: on a
 * one-worker runtime a second fiber still runs while the first waits in
 * peek, and a cancellation of the waiting fiber ends its wait. */
#include <criterion/criterion.h>

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include <moirai/async.h>
#include <moirai/transport.h>

#define WAIT_NS (30 * MOIRAI_NS_PER_S)

static moirai_runtime_t *rt;
static moirai_shm_ring_t *cons, *prod;

static void setup(void)
{
    moirai_sched_config_t sc;
    moirai_sched_config_init(&sc);
    sc.workers = 1;
    moirai_runtime_config_t rc;
    moirai_runtime_config_init(&rc);
    rc.sched_config = &sc;
    cr_assert_eq(moirai_runtime_create(&rt, &rc), 0);
    int fd = -1;
    cr_assert_eq(moirai_shm_ring_create(&fd, NULL), 0);
    cr_assert_eq(moirai_shm_ring_attach(&cons, fd, MOIRAI_SHM_RING_CONSUMER), 0);
    cr_assert_eq(moirai_shm_ring_attach(&prod, fd, MOIRAI_SHM_RING_PRODUCER), 0);
    close(fd);
}

static void teardown(void)
{
    moirai_shm_ring_detach(prod);
    moirai_shm_ring_detach(cons);
    cr_assert_eq(moirai_runtime_destroy(rt), 0);
}

TestSuite(ring_fiber, .init = setup, .fini = teardown, .timeout = 60);

struct peeked {
    _Atomic int started;
    int rc;
    char got[8];
};

static int peek_fiber(void *arg, const moirai_cancel_token_t *c, void **r)
{
    (void)c;
    (void)r;
    struct peeked *p = arg;
    atomic_store(&p->started, 1);
    void *buf;
    size_t len;
    p->rc = moirai_shm_ring_peek(cons, &buf, &len);
    if (p->rc == 0) {
        memcpy(p->got, buf, len < sizeof p->got ? len : sizeof p->got);
        moirai_shm_ring_release(cons);
    }
    return 0;
}

static int produce_fiber(void *arg, const moirai_cancel_token_t *c, void **r)
{
    (void)c;
    (void)r;
    (void)arg;
    void *buf;
    int rc = moirai_shm_ring_reserve(prod, 5, &buf);
    if (rc != 0)
        return rc;
    memcpy(buf, "hello", 5);
    return moirai_shm_ring_commit(prod);
}

static moirai_handle_t *spawn(moirai_task_fn fn, void *arg)
{
    moirai_handle_t *h = NULL;
    cr_assert_eq(moirai_handle_create(&h), 0);
    cr_assert_eq(moirai_fiber_spawn(rt, fn, arg, NULL, h), 0);
    return h;
}

static int join(moirai_handle_t *h)
{
    int rc = moirai_handle_join_timed(h, moirai_deadline_after(WAIT_NS), NULL);
    cr_assert_neq(rc, -ETIMEDOUT, "a fiber did not finish: its worker was blocked?");
    moirai_handle_release(h);
    return rc;
}

Test(ring_fiber, a_waiting_fiber_leaves_its_worker_to_others)
{
    struct peeked p = {0};
    moirai_handle_t *a = spawn(peek_fiber, &p);
    while (!atomic_load(&p.started))
        sched_yield();
    /* Let the consumer get past its spin into the wait. */
    usleep(20000);
    /* The only worker must be free to run the producer. */
    moirai_handle_t *b = spawn(produce_fiber, NULL);
    cr_assert_eq(join(b), 0);
    cr_assert_eq(join(a), 0);
    cr_assert_eq(p.rc, 0);
    cr_assert_eq(memcmp(p.got, "hello", 5), 0);
}

Test(ring_fiber, cancelling_a_waiting_fiber_ends_its_wait)
{
    struct peeked p = {0};
    moirai_handle_t *a = spawn(peek_fiber, &p);
    while (!atomic_load(&p.started))
        sched_yield();
    usleep(20000);
    uint64_t t0 = moirai_clock_now_ns();
    moirai_handle_cancel(a);
    cr_assert_eq(join(a), 0);
    cr_assert_eq(p.rc, -ECANCELED);
    /* A wide bound: one liveness slice (50 ms) plus scheduling. */
    cr_assert_lt(moirai_clock_now_ns() - t0, 5 * MOIRAI_NS_PER_S);
    /* Nothing was consumed: a message sent now is the next one peeked. */
    moirai_handle_t *b = spawn(produce_fiber, NULL);
    cr_assert_eq(join(b), 0);
    void *buf;
    size_t len;
    cr_assert_eq(moirai_shm_ring_try_peek(cons, &buf, &len), 0);
    cr_assert_eq(len, 5);
    moirai_shm_ring_release(cons);
}

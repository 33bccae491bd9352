/* Select: the first of a timer, a socket, a handle and a park word wins,
 * the others are left untouched; deadlines, cancellation, bad input. */
#include "async_test_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

static moirai_runtime_t *rt;

static void setup(void)
{
    rt = make_runtime(2);
}

static void teardown(void)
{
    drop_runtime(rt);
}

TestSuite(select, .init = setup, .fini = teardown, .timeout = 60);

/* A connected pair of TCP streams on loopback. */
static void tcp_pair(moirai_io_t **a, moirai_io_t **b)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    moirai_io_t *l;
    cr_assert_eq(moirai_tcp_listen(&l, rt, (struct sockaddr *)&addr, NULL), 0);
    socklen_t len = sizeof addr;
    cr_assert_eq(moirai_io_local_addr(l, (struct sockaddr *)&addr, &len), 0);
    cr_assert_eq(moirai_tcp_connect(a, rt, (struct sockaddr *)&addr, NULL), 0);
    cr_assert_eq(moirai_stream_accept(l, b), 0);
    cr_assert_eq(moirai_io_close(l), 0);
}

static int sleeper(void *arg, const moirai_cancel_token_t *c, void **r)
{
    (void)c;
    (void)r;
    moirai_fiber_sleep((uint64_t)(uintptr_t)arg);
    return 0;
}

struct three {
    moirai_io_t *rd, *wr;
    moirai_timer_t *timer;
    moirai_handle_t *handle;
};

static int select3(struct three *t, uint64_t deadline)
{
    moirai_select_arm_t arms[3] = {
        {.kind = MOIRAI_SELECT_TIMER, .timer = t->timer},
        {.kind = MOIRAI_SELECT_READABLE, .io = t->rd},
        {.kind = MOIRAI_SELECT_HANDLE, .handle = t->handle},
    };
    return moirai_select_timed(deadline, arms, 3);
}

static void three_make(struct three *t, uint64_t timer_ns, uint64_t handle_ns)
{
    tcp_pair(&t->rd, &t->wr);
    cr_assert_eq(moirai_timer_create(&t->timer, rt), 0);
    cr_assert_eq(moirai_timer_arm(t->timer, moirai_deadline_after(timer_ns)), 0);
    t->handle = spawn_with_handle(rt, sleeper, (void *)(uintptr_t)handle_ns, NULL);
}

static void three_free(struct three *t)
{
    moirai_io_close(t->rd);
    moirai_io_close(t->wr);
    moirai_timer_destroy(t->timer);
    join_and_release(t->handle, NULL);
}

Test(select, the_timer_first)
{
    struct three t;
    three_make(&t, 5 * MOIRAI_NS_PER_MS, 30 * MOIRAI_NS_PER_S);
    cr_assert_eq(select3(&t, moirai_deadline_after(WAIT_NS)), 0);
    /* The socket and the handle are untouched. */
    cr_assert_not(moirai_handle_is_finished(t.handle));
    moirai_handle_cancel(t.handle);
    three_free(&t);
}

Test(select, the_socket_first_and_its_data_is_left_for_the_read)
{
    struct three t;
    three_make(&t, 30 * MOIRAI_NS_PER_S, 30 * MOIRAI_NS_PER_S);
    cr_assert_eq(moirai_stream_write(t.wr, "ping", 4), 4);
    cr_assert_eq(select3(&t, moirai_deadline_after(WAIT_NS)), 1);
    /* Readiness is reported, not consumed: a second select agrees. */
    cr_assert_eq(select3(&t, moirai_deadline_after(WAIT_NS)), 1);
    char buf[8];
    cr_assert_eq(moirai_stream_read(t.rd, buf, sizeof buf), 4);
    cr_assert_eq(memcmp(buf, "ping", 4), 0);
    /* The timer was not disarmed by losing. */
    cr_assert_eq(moirai_timer_disarm(t.timer), 0);
    moirai_handle_cancel(t.handle);
    three_free(&t);
}

Test(select, the_handle_first)
{
    struct three t;
    three_make(&t, 30 * MOIRAI_NS_PER_S, 5 * MOIRAI_NS_PER_MS);
    cr_assert_eq(select3(&t, moirai_deadline_after(WAIT_NS)), 2);
    cr_assert(moirai_handle_is_finished(t.handle));
    cr_assert_eq(moirai_timer_disarm(t.timer), 0);
    three_free(&t);
}

struct in_fiber {
    struct three *t;
    int rc;
};

static int select_fiber(void *arg, const moirai_cancel_token_t *c, void **r)
{
    (void)c;
    (void)r;
    struct in_fiber *f = arg;
    f->rc = select3(f->t, moirai_deadline_after(WAIT_NS));
    return 0;
}

static int write_later(void *arg, const moirai_cancel_token_t *c, void **r)
{
    (void)c;
    (void)r;
    moirai_fiber_sleep(5 * MOIRAI_NS_PER_MS);
    return moirai_stream_write(arg, "x", 1) == 1 ? 0 : -EIO;
}

Test(select, from_a_fiber_woken_by_a_socket)
{
    struct three t;
    three_make(&t, 30 * MOIRAI_NS_PER_S, 30 * MOIRAI_NS_PER_S);
    struct in_fiber f = {.t = &t};
    moirai_handle_t *s = spawn_with_handle(rt, select_fiber, &f, NULL);
    cr_assert_eq(run_fiber(rt, write_later, t.wr, NULL), 0);
    cr_assert_eq(join_and_release(s, NULL), 0);
    cr_assert_eq(f.rc, 1);
    moirai_handle_cancel(t.handle);
    three_free(&t);
}

Test(select, deadline)
{
    struct three t;
    three_make(&t, 30 * MOIRAI_NS_PER_S, 30 * MOIRAI_NS_PER_S);
    cr_assert_eq(select3(&t, moirai_deadline_after(5 * MOIRAI_NS_PER_MS)), -ETIMEDOUT);
    cr_assert_eq(moirai_timer_disarm(t.timer), 0);
    moirai_handle_cancel(t.handle);
    three_free(&t);
}

static int select_forever(void *arg, const moirai_cancel_token_t *c, void **r)
{
    (void)c;
    (void)r;
    struct in_fiber *f = arg;
    f->rc = select3(f->t, MOIRAI_DEADLINE_NEVER);
    return 0;
}

Test(select, cancelling_the_fiber_ends_the_select)
{
    struct three t;
    three_make(&t, 30 * MOIRAI_NS_PER_S, 30 * MOIRAI_NS_PER_S);
    struct in_fiber f = {.t = &t};
    moirai_handle_t *s = spawn_with_handle(rt, select_forever, &f, NULL);
    moirai_fiber_sleep(10 * MOIRAI_NS_PER_MS);
    moirai_handle_cancel(s);
    cr_assert_eq(join_and_release(s, NULL), 0);
    cr_assert_eq(f.rc, -ECANCELED);
    /* Every arm was taken back: the socket can be waited on again. */
    cr_assert_eq(moirai_stream_write(t.wr, "y", 1), 1);
    cr_assert_eq(select3(&t, moirai_deadline_after(WAIT_NS)), 1);
    moirai_handle_cancel(t.handle);
    three_free(&t);
}

struct word_arm {
    _Atomic uint32_t word;
};

static int bump_later(void *arg, const moirai_cancel_token_t *c, void **r)
{
    (void)c;
    (void)r;
    struct word_arm *w = arg;
    moirai_fiber_sleep(5 * MOIRAI_NS_PER_MS);
    atomic_store_explicit(&w->word, 1, memory_order_release);
    moirai_unpark_all(&w->word);
    return 0;
}

Test(select, a_park_word_changed_by_another_fiber)
{
    struct word_arm w;
    atomic_init(&w.word, 0);
    moirai_timer_t *timer;
    cr_assert_eq(moirai_timer_create(&timer, rt), 0);
    cr_assert_eq(moirai_timer_arm(timer, moirai_deadline_after(30 * MOIRAI_NS_PER_S)), 0);
    moirai_handle_t *h = spawn_with_handle(rt, bump_later, &w, NULL);
    moirai_select_arm_t arms[2] = {
        {.kind = MOIRAI_SELECT_TIMER, .timer = timer},
        {.kind = MOIRAI_SELECT_WORD, .word = &w.word, .expected = 0},
    };
    cr_assert_eq(moirai_select_timed(moirai_deadline_after(WAIT_NS), arms, 2), 1);
    cr_assert_eq(atomic_load(&w.word), 1);
    /* Changed already: ready at once. */
    cr_assert_eq(moirai_select_timed(moirai_deadline_after(WAIT_NS), arms, 2), 1);
    cr_assert_eq(join_and_release(h, NULL), 0);
    moirai_timer_destroy(timer);
}

Test(select, fair_when_several_are_ready)
{
    moirai_timer_t *a, *b;
    cr_assert_eq(moirai_timer_create(&a, rt), 0);
    cr_assert_eq(moirai_timer_create(&b, rt), 0);
    cr_assert_eq(moirai_timer_arm(a, moirai_deadline_after(0)), 0);
    cr_assert_eq(moirai_timer_arm(b, moirai_deadline_after(0)), 0);
    cr_assert_eq(moirai_timer_wait(a), 0);
    cr_assert_eq(moirai_timer_wait(b), 0);
    moirai_select_arm_t arms[2] = {
        {.kind = MOIRAI_SELECT_TIMER, .timer = a},
        {.kind = MOIRAI_SELECT_TIMER, .timer = b},
    };
    int wins[2] = {0, 0};
    for (int i = 0; i < 100; i++) {
        int rc = moirai_select(arms, 2);
        cr_assert(rc == 0 || rc == 1);
        wins[rc]++;
    }
    cr_assert_gt(wins[0], 0, "arm 0 never won");
    cr_assert_gt(wins[1], 0, "arm 1 never won");
    moirai_timer_destroy(a);
    moirai_timer_destroy(b);
}

Test(select, bad_input)
{
    moirai_io_t *rd, *wr;
    tcp_pair(&rd, &wr);
    moirai_select_arm_t arm = {.kind = MOIRAI_SELECT_READABLE, .io = rd};
    cr_assert_eq(moirai_select(NULL, 1), -EINVAL);
    cr_assert_eq(moirai_select(&arm, 0), -EINVAL);
    cr_assert_eq(moirai_select(&arm, MOIRAI_SELECT_MAX_ARMS + 1), -EINVAL);
    moirai_select_arm_t bad[2] = {{.kind = (moirai_select_kind_t)99},
                                  {.kind = MOIRAI_SELECT_HANDLE}};
    cr_assert_eq(moirai_select(&bad[0], 1), -EINVAL);
    cr_assert_eq(moirai_select(&bad[1], 1), -EINVAL, "NULL handle");
    /* The same direction of one socket twice: the second arm is refused. */
    moirai_select_arm_t twice[2] = {arm, arm};
    cr_assert_eq(moirai_select_timed(moirai_deadline_after(WAIT_NS), twice, 2), -EBUSY);
    cr_assert_eq(moirai_io_close(rd), 0);
    cr_assert_eq(moirai_select(&arm, 1), -EBADF);
    moirai_io_close(wr);
}

/* Without a runtime nothing watches handles or words: select refuses. */
Test(select_no_runtime, needs_a_runtime)
{
    cr_assert_null(moirai_runtime_current());
    _Atomic uint32_t word;
    atomic_init(&word, 0);
    moirai_select_arm_t arm = {.kind = MOIRAI_SELECT_WORD, .word = &word, .expected = 0};
    cr_assert_eq(moirai_select_timed(moirai_deadline_after(WAIT_NS), &arm, 1), -EPERM);
}

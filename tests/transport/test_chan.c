/* Channels: each kind's semantics (bounded, unbounded, rendezvous,
 * one-shot), try and deadline forms, close with Go's semantics while
 * senders and receivers are blocked, endpoint counts, statistics, bad
 * input and allocation failure. */
#include "chan_test_util.h"

#include <stdatomic.h>
#include <string.h>

#include "oom.h"

TestSuite(chan, .timeout = 60);

Test(chan, config_init_is_all_zero_and_null_config_is_default)
{
    moirai_chan_config_t cfg, zero;
    memset(&cfg, 0xff, sizeof cfg);
    memset(&zero, 0, sizeof zero);
    moirai_chan_config_init(&cfg);
    cr_assert_eq(memcmp(&cfg, &zero, sizeof cfg), 0);
    moirai_chan_config_init(NULL);

    /* Defaults: pointer-sized elements, rendezvous. */
    moirai_chan_t *ch = NULL;
    cr_assert_eq(moirai_chan_create(&ch, NULL), 0);
    cr_assert_eq(moirai_chan_elem_size(ch), sizeof(void *));
    void *p = &cfg;
    cr_assert_eq(moirai_chan_try_send(ch, &p), -EAGAIN, "rendezvous: no receiver waits");
    drop_chan(ch);
}

Test(chan, bad_input_is_einval)
{
    moirai_chan_config_t cfg;
    moirai_chan_t *ch = (moirai_chan_t *)&cfg; /* must stay untouched */
    moirai_chan_t *const sentinel = ch;
    cr_assert_eq(moirai_chan_create(NULL, NULL), -EINVAL);

    moirai_chan_config_init(&cfg);
    cfg.elem_size = MOIRAI_CHAN_ELEM_MAX + 1;
    cr_assert_eq(moirai_chan_create(&ch, &cfg), -EINVAL);
    cfg.elem_size = SIZE_MAX;
    cr_assert_eq(moirai_chan_create(&ch, &cfg), -EINVAL);

    moirai_chan_config_init(&cfg);
    cfg.capacity = MOIRAI_CHAN_CAPACITY_MAX + 1;
    cr_assert_eq(moirai_chan_create(&ch, &cfg), -EINVAL);
    cfg.capacity = SIZE_MAX - 1;
    cr_assert_eq(moirai_chan_create(&ch, &cfg), -EINVAL);
    /* Each alone is allowed; the product is too large. */
    cfg.capacity = MOIRAI_CHAN_CAPACITY_MAX;
    cfg.elem_size = MOIRAI_CHAN_ELEM_MAX;
    cr_assert_eq(moirai_chan_create(&ch, &cfg), -EINVAL);

    moirai_chan_config_init(&cfg);
    cfg.oneshot = true;
    cfg.capacity = 2;
    cr_assert_eq(moirai_chan_create(&ch, &cfg), -EINVAL);
    cfg.capacity = MOIRAI_CHAN_UNBOUNDED;
    cr_assert_eq(moirai_chan_create(&ch, &cfg), -EINVAL);
    cr_assert_eq(ch, sentinel, "a failed create does not write *out");

    /* NULL objects. */
    uint64_t v = 1;
    cr_assert_eq(moirai_chan_send(NULL, &v), -EINVAL);
    cr_assert_eq(moirai_chan_send_timed(NULL, MOIRAI_DEADLINE_NEVER, &v), -EINVAL);
    cr_assert_eq(moirai_chan_try_send(NULL, &v), -EINVAL);
    cr_assert_eq(moirai_chan_recv(NULL, &v), -EINVAL);
    cr_assert_eq(moirai_chan_recv_timed(NULL, MOIRAI_DEADLINE_NEVER, &v), -EINVAL);
    cr_assert_eq(moirai_chan_try_recv(NULL, &v), -EINVAL);
    cr_assert_eq(moirai_chan_close(NULL), -EINVAL);
    cr_assert_eq(moirai_chan_sender_add(NULL), -EINVAL);
    cr_assert_eq(moirai_chan_sender_drop(NULL), -EINVAL);
    cr_assert_eq(moirai_chan_receiver_add(NULL), -EINVAL);
    cr_assert_eq(moirai_chan_receiver_drop(NULL), -EINVAL);
    cr_assert_not(moirai_chan_is_closed(NULL));
    cr_assert_eq(moirai_chan_elem_size(NULL), 0);
    moirai_chan_stats_t st;
    cr_assert_eq(moirai_chan_stats(NULL, &st), -EINVAL);
    cr_assert_eq(moirai_chan_destroy(NULL), 0);

    ch = make_chan(8, 4, false);
    cr_assert_eq(moirai_chan_send(ch, NULL), -EINVAL);
    cr_assert_eq(moirai_chan_send_timed(ch, MOIRAI_DEADLINE_NEVER, NULL), -EINVAL);
    cr_assert_eq(moirai_chan_try_send(ch, NULL), -EINVAL);
    cr_assert_eq(moirai_chan_stats(ch, NULL), -EINVAL);
    /* Dropping an endpoint nobody added. */
    cr_assert_eq(moirai_chan_sender_drop(ch), -EINVAL);
    cr_assert_eq(moirai_chan_receiver_drop(ch), -EINVAL);
    drop_chan(ch);
}

Test(chan, bounded_is_fifo_full_is_eagain_and_elements_are_copied_whole)
{
    struct big {
        uint64_t a, b, c;
        char tag[13];
    };
    moirai_chan_t *ch = make_chan(sizeof(struct big), 3, false);
    cr_assert_eq(moirai_chan_elem_size(ch), sizeof(struct big));
    /* Wrap the ring several times. */
    for (int round = 0; round < 5; round++) {
        for (uint64_t i = 0; i < 3; i++) {
            struct big e = {i, ~i, i * 7, "element"};
            e.tag[0] = (char)('a' + i);
            cr_assert_eq(moirai_chan_try_send(ch, &e), 0);
        }
        struct big extra = {0};
        cr_assert_eq(moirai_chan_try_send(ch, &extra), -EAGAIN);
        cr_assert_eq(moirai_chan_send_timed(ch, moirai_deadline_after(MOIRAI_NS_PER_MS), &extra),
                     -ETIMEDOUT);
        for (uint64_t i = 0; i < 3; i++) {
            struct big e;
            memset(&e, 0, sizeof e);
            cr_assert_eq(moirai_chan_recv(ch, &e), 0);
            cr_assert_eq(e.a, i);
            cr_assert_eq(e.b, ~i);
            cr_assert_eq(e.c, i * 7);
            cr_assert_eq(e.tag[0], (char)('a' + i));
            cr_assert_str_eq(e.tag + 1, "lement");
        }
        struct big e;
        cr_assert_eq(moirai_chan_try_recv(ch, &e), -EAGAIN);
        cr_assert_eq(moirai_chan_recv_timed(ch, moirai_deadline_after(MOIRAI_NS_PER_MS), &e),
                     -ETIMEDOUT);
    }
    /* A NULL destination drops the element. */
    struct big e = {42, 0, 0, ""};
    cr_assert_eq(moirai_chan_send(ch, &e), 0);
    cr_assert_eq(moirai_chan_try_recv(ch, NULL), 0);
    cr_assert_eq(moirai_chan_try_recv(ch, &e), -EAGAIN);
    drop_chan(ch);
}

Test(chan, expired_deadline_does_not_wait)
{
    moirai_chan_t *ch = make_chan(8, 1, false);
    uint64_t v = 5;
    cr_assert_eq(moirai_chan_recv_timed(ch, 0, &v), -ETIMEDOUT);
    cr_assert_eq(moirai_chan_send_timed(ch, 0, &v), 0, "room: a past deadline still sends");
    cr_assert_eq(moirai_chan_send_timed(ch, 0, &v), -ETIMEDOUT);
    cr_assert_eq(moirai_chan_recv_timed(ch, 0, &v), 0, "an element: a past deadline receives");
    cr_assert_eq(v, 5);
    moirai_chan_stats_t st;
    cr_assert_eq(moirai_chan_stats(ch, &st), 0);
    cr_assert_eq(st.blocked_sends + st.blocked_recvs, 0, "nothing parked");
    drop_chan(ch);
}

Test(chan, unbounded_grows_across_segments_and_keeps_order)
{
    moirai_chan_t *ch = make_chan(24, MOIRAI_CHAN_UNBOUNDED, false);
    const uint64_t n = 5000; /* about 30 segments of 4 KiB */
    for (int round = 0; round < 2; round++) {
        for (uint64_t i = 0; i < n; i++) {
            uint64_t e[3] = {i, i * 3, ~i};
            cr_assert_eq(moirai_chan_try_send(ch, e), 0);
        }
        moirai_chan_stats_t st;
        cr_assert_eq(moirai_chan_stats(ch, &st), 0);
        cr_assert_eq(st.len, n);
        /* Half out, half more in, then all out: segments are recycled. */
        for (uint64_t i = 0; i < n / 2; i++) {
            uint64_t e[3];
            cr_assert_eq(moirai_chan_recv(ch, e), 0);
            cr_assert(e[0] == i && e[1] == i * 3 && e[2] == ~i);
        }
        for (uint64_t i = n; i < n + 100; i++) {
            uint64_t e[3] = {i, i * 3, ~i};
            cr_assert_eq(moirai_chan_send(ch, e), 0);
        }
        for (uint64_t i = n / 2; i < n + 100; i++) {
            uint64_t e[3];
            cr_assert_eq(moirai_chan_try_recv(ch, e), 0);
            cr_assert(e[0] == i && e[1] == i * 3 && e[2] == ~i, "at %lu got %lu", i, e[0]);
        }
        uint64_t e[3];
        cr_assert_eq(moirai_chan_try_recv(ch, e), -EAGAIN);
    }
    /* Elements left inside are freed by destroy (LeakSanitizer checks). */
    for (uint64_t i = 0; i < 1000; i++)
        cr_assert_eq(moirai_chan_send(ch, &(uint64_t[3]){i, 0, 0}), 0);
    drop_chan(ch);
}

/* Rendezvous: a send completes only once a receiver has taken it. */
struct rv {
    moirai_chan_t *ch;
    _Atomic int sent;
    uint64_t value;
};

static void *rv_sender(void *arg)
{
    struct rv *r = arg;
    uint64_t v = r->value;
    int rc = moirai_chan_send(r->ch, &v);
    atomic_store(&r->sent, rc == 0 ? 1 : rc);
    return NULL;
}

static bool one_blocked_sender(void *arg)
{
    return blocked_sends(arg) == 1;
}

Test(chan, rendezvous_send_completes_only_when_received)
{
    moirai_chan_t *ch = make_chan(8, 0, false);
    for (int round = 0; round < 20; round++) {
        struct rv r = {.ch = ch, .value = 1000 + (uint64_t)round};
        atomic_init(&r.sent, 0);
        pthread_t t = start_thread(rv_sender, &r);
        if (round == 0) {
            /* The sender is parked, not done: nobody has received. */
            wait_until(one_blocked_sender, ch, "the sender blocks");
            cr_assert_eq(atomic_load(&r.sent), 0);
            moirai_chan_stats_t st;
            cr_assert_eq(moirai_chan_stats(ch, &st), 0);
            cr_assert_eq(st.sent, 0, "not accepted before a receiver takes it");
            cr_assert_eq(st.len, 0, "a rendezvous channel buffers nothing");
        }
        uint64_t v = 0;
        cr_assert_eq(moirai_chan_recv_timed(ch, moirai_deadline_after(CHAN_WAIT_NS), &v), 0);
        cr_assert_eq(v, 1000 + (uint64_t)round);
        pthread_join(t, NULL);
        cr_assert_eq(atomic_load(&r.sent), 1);
    }
    /* try_send succeeds exactly when a receiver waits. */
    uint64_t v = 7;
    cr_assert_eq(moirai_chan_try_send(ch, &v), -EAGAIN);
    cr_assert_eq(moirai_chan_try_recv(ch, &v), -EAGAIN);
    drop_chan(ch);
}

struct rv_recv {
    moirai_chan_t *ch;
    uint64_t got;
    _Atomic int rc;
};

static void *rv_receiver(void *arg)
{
    struct rv_recv *r = arg;
    atomic_store(&r->rc,
                 moirai_chan_recv_timed(r->ch, moirai_deadline_after(CHAN_WAIT_NS), &r->got));
    return NULL;
}

static bool one_blocked_receiver(void *arg)
{
    return blocked_recvs(arg) == 1;
}

Test(chan, rendezvous_try_send_hands_to_a_waiting_receiver)
{
    moirai_chan_t *ch = make_chan(8, 0, false);
    struct rv_recv r = {.ch = ch};
    atomic_init(&r.rc, 1);
    pthread_t t = start_thread(rv_receiver, &r);
    wait_until(one_blocked_receiver, ch, "the receiver blocks");
    uint64_t v = 99;
    cr_assert_eq(moirai_chan_try_send(ch, &v), 0);
    pthread_join(t, NULL);
    cr_assert_eq(atomic_load(&r.rc), 0);
    cr_assert_eq(r.got, 99);
    drop_chan(ch);
}

Test(chan, oneshot_delivers_once_then_epipe)
{
    moirai_chan_t *ch = make_chan(8, 0, true);
    uint64_t v = 11;
    cr_assert_eq(moirai_chan_send(ch, &v), 0);
    cr_assert(moirai_chan_is_closed(ch), "the one send closes it");
    v = 12;
    cr_assert_eq(moirai_chan_send(ch, &v), -EPIPE);
    cr_assert_eq(moirai_chan_try_send(ch, &v), -EPIPE);
    cr_assert_eq(moirai_chan_close(ch), -EALREADY);
    cr_assert_eq(moirai_chan_recv(ch, &v), 0);
    cr_assert_eq(v, 11);
    cr_assert_eq(moirai_chan_recv(ch, &v), -EPIPE);
    cr_assert_eq(moirai_chan_try_recv(ch, &v), -EPIPE);
    drop_chan(ch);

    /* A receiver waiting before the send gets the value directly. */
    ch = make_chan(8, 1, true);
    struct rv_recv r = {.ch = ch};
    atomic_init(&r.rc, 1);
    pthread_t t = start_thread(rv_receiver, &r);
    wait_until(one_blocked_receiver, ch, "the receiver blocks");
    v = 21;
    cr_assert_eq(moirai_chan_send(ch, &v), 0);
    pthread_join(t, NULL);
    cr_assert_eq(atomic_load(&r.rc), 0);
    cr_assert_eq(r.got, 21);
    cr_assert_eq(moirai_chan_try_recv(ch, &v), -EPIPE);
    drop_chan(ch);
}

/* Close while senders and receivers are blocked. */
struct blocked {
    moirai_chan_t *ch;
    uint64_t value;
    _Atomic int rc;
};

static void *blocked_send(void *arg)
{
    struct blocked *b = arg;
    atomic_store(&b->rc,
                 moirai_chan_send_timed(b->ch, moirai_deadline_after(CHAN_WAIT_NS), &b->value));
    return NULL;
}

static void *blocked_recv(void *arg)
{
    struct blocked *b = arg;
    atomic_store(&b->rc,
                 moirai_chan_recv_timed(b->ch, moirai_deadline_after(CHAN_WAIT_NS), &b->value));
    return NULL;
}

static bool three_blocked_receivers(void *arg)
{
    return blocked_recvs(arg) == 3;
}

static bool three_blocked_senders(void *arg)
{
    return blocked_sends(arg) == 3;
}

Test(chan, close_wakes_blocked_receivers_with_epipe)
{
    size_t caps[] = {0, 4, MOIRAI_CHAN_UNBOUNDED};
    for (size_t k = 0; k < 3; k++) {
        moirai_chan_t *ch = make_chan(8, caps[k], false);
        struct blocked b[3];
        pthread_t t[3];
        for (int i = 0; i < 3; i++) {
            b[i] = (struct blocked){.ch = ch, .value = 77};
            atomic_init(&b[i].rc, 1);
            t[i] = start_thread(blocked_recv, &b[i]);
        }
        wait_until(three_blocked_receivers, ch, "three receivers block");
        cr_assert_eq(moirai_chan_close(ch), 0);
        for (int i = 0; i < 3; i++) {
            pthread_join(t[i], NULL);
            cr_assert_eq(atomic_load(&b[i].rc), -EPIPE);
            cr_assert_eq(b[i].value, 77, "nothing was written to the destination");
        }
        cr_assert_eq(moirai_chan_close(ch), -EALREADY);
        drop_chan(ch);
    }
}

Test(chan, close_wakes_blocked_senders_and_receivers_drain_exactly_once)
{
    /* Full ring of 2 (values 1, 2) plus 3 blocked senders (10, 11, 12). */
    moirai_chan_t *ch = make_chan(8, 2, false);
    uint64_t v = 1;
    cr_assert_eq(moirai_chan_send(ch, &v), 0);
    v = 2;
    cr_assert_eq(moirai_chan_send(ch, &v), 0);
    struct blocked b[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        b[i] = (struct blocked){.ch = ch, .value = 10 + (uint64_t)i};
        atomic_init(&b[i].rc, 1);
        t[i] = start_thread(blocked_send, &b[i]);
    }
    wait_until(three_blocked_senders, ch, "three senders block");
    cr_assert_eq(moirai_chan_close(ch), 0);
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(atomic_load(&b[i].rc), -EPIPE, "a blocked send is not accepted by close");
    }
    v = 3;
    cr_assert_eq(moirai_chan_send(ch, &v), -EPIPE);
    cr_assert_eq(moirai_chan_try_send(ch, &v), -EPIPE);
    /* The two buffered elements drain once each, then -EPIPE for good. */
    cr_assert_eq(moirai_chan_recv(ch, &v), 0);
    cr_assert_eq(v, 1);
    cr_assert_eq(moirai_chan_try_recv(ch, &v), 0);
    cr_assert_eq(v, 2);
    cr_assert_eq(moirai_chan_recv(ch, &v), -EPIPE);
    cr_assert_eq(moirai_chan_recv_timed(ch, MOIRAI_DEADLINE_NEVER, &v), -EPIPE);
    cr_assert_eq(moirai_chan_try_recv(ch, &v), -EPIPE);
    moirai_chan_stats_t st;
    cr_assert_eq(moirai_chan_stats(ch, &st), 0);
    cr_assert_eq(st.sent, 2);
    cr_assert_eq(st.received, 2);
    drop_chan(ch);
}

Test(chan, last_sender_leaving_closes_when_asked)
{
    moirai_chan_config_t cfg;
    moirai_chan_config_init(&cfg);
    cfg.capacity = 8;
    cfg.close_on_last_sender = true;
    moirai_chan_t *ch = NULL;
    cr_assert_eq(moirai_chan_create(&ch, &cfg), 0);
    cr_assert_eq(moirai_chan_sender_add(ch), 0);
    cr_assert_eq(moirai_chan_sender_add(ch), 0);
    uint64_t v = 5;
    cr_assert_eq(moirai_chan_send(ch, &v), 0);
    cr_assert_eq(moirai_chan_sender_drop(ch), 0);
    cr_assert_not(moirai_chan_is_closed(ch), "one sender is left");
    /* A receiver blocked after draining is woken by the last drop. */
    cr_assert_eq(moirai_chan_recv(ch, &v), 0);
    struct blocked b = {.ch = ch, .value = 0};
    atomic_init(&b.rc, 1);
    pthread_t t = start_thread(blocked_recv, &b);
    wait_until(one_blocked_receiver, ch, "the receiver blocks");
    cr_assert_eq(moirai_chan_sender_drop(ch), 0);
    pthread_join(t, NULL);
    cr_assert_eq(atomic_load(&b.rc), -EPIPE);
    cr_assert(moirai_chan_is_closed(ch));
    cr_assert_eq(moirai_chan_sender_drop(ch), -EINVAL);
    drop_chan(ch);

    /* Without the option, the count reaching zero changes nothing. */
    moirai_chan_config_init(&cfg);
    cfg.capacity = 8;
    cr_assert_eq(moirai_chan_create(&ch, &cfg), 0);
    cr_assert_eq(moirai_chan_sender_add(ch), 0);
    cr_assert_eq(moirai_chan_sender_drop(ch), 0);
    cr_assert_not(moirai_chan_is_closed(ch));
    cr_assert_eq(moirai_chan_receiver_add(ch), 0);
    cr_assert_eq(moirai_chan_receiver_drop(ch), 0);
    cr_assert_not(moirai_chan_is_closed(ch));
    drop_chan(ch);
}

Test(chan, last_receiver_leaving_closes_when_asked)
{
    moirai_chan_config_t cfg;
    moirai_chan_config_init(&cfg);
    cfg.capacity = 1;
    cfg.close_on_last_receiver = true;
    moirai_chan_t *ch = NULL;
    cr_assert_eq(moirai_chan_create(&ch, &cfg), 0);
    cr_assert_eq(moirai_chan_receiver_add(ch), 0);
    uint64_t v = 1;
    cr_assert_eq(moirai_chan_send(ch, &v), 0);
    /* A sender blocked on the full ring learns that nobody will read. */
    struct blocked b = {.ch = ch, .value = 2};
    atomic_init(&b.rc, 1);
    pthread_t t = start_thread(blocked_send, &b);
    wait_until(one_blocked_sender, ch, "the sender blocks");
    cr_assert_eq(moirai_chan_receiver_drop(ch), 0);
    pthread_join(t, NULL);
    cr_assert_eq(atomic_load(&b.rc), -EPIPE);
    cr_assert_eq(moirai_chan_send(ch, &v), -EPIPE);
    drop_chan(ch);
}

Test(chan, destroy_refuses_while_someone_is_blocked)
{
    moirai_chan_t *ch = make_chan(8, 0, false);
    struct blocked b = {.ch = ch};
    atomic_init(&b.rc, 1);
    pthread_t t = start_thread(blocked_recv, &b);
    wait_until(one_blocked_receiver, ch, "the receiver blocks");
    cr_assert_eq(moirai_chan_destroy(ch), -EBUSY);
    uint64_t v = 3;
    cr_assert_eq(moirai_chan_send(ch, &v), 0, "the channel still works after the refusal");
    pthread_join(t, NULL);
    cr_assert_eq(atomic_load(&b.rc), 0);
    cr_assert_eq(b.value, 3);
    drop_chan(ch);
}

Test(chan, stats_count_messages_bytes_and_blocked_waits)
{
    moirai_chan_t *ch = make_chan(16, 2, false);
    uint64_t e[2] = {1, 2};
    for (int i = 0; i < 2; i++)
        cr_assert_eq(moirai_chan_send(ch, e), 0);
    cr_assert_eq(moirai_chan_try_send(ch, e), -EAGAIN);
    cr_assert_eq(moirai_chan_recv(ch, e), 0);
    moirai_chan_stats_t st;
    cr_assert_eq(moirai_chan_stats(ch, &st), 0);
    cr_assert_eq(st.sent, 2);
    cr_assert_eq(st.received, 1);
    cr_assert_eq(st.bytes_sent, 32);
    cr_assert_eq(st.bytes_received, 16);
    cr_assert_eq(st.len, 1);
    cr_assert_eq(st.blocked_sends, 0, "a failed try does not count as blocked");
    cr_assert_eq(st.blocked_recvs, 0);
    cr_assert_eq(moirai_chan_recv(ch, e), 0);
    /* One receive that has to wait, completed by a thread. */
    struct blocked b = {.ch = ch};
    atomic_init(&b.rc, 1);
    pthread_t t = start_thread(blocked_recv, &b);
    wait_until(one_blocked_receiver, ch, "the receiver blocks");
    cr_assert_eq(moirai_chan_send(ch, e), 0);
    pthread_join(t, NULL);
    cr_assert_eq(moirai_chan_stats(ch, &st), 0);
    cr_assert_eq(st.blocked_recvs, 1);
    cr_assert_eq(st.sent, 3);
    cr_assert_eq(st.received, 3);
    cr_assert_eq(st.len, 0);
    drop_chan(ch);
}

/* -ENOMEM: create fails cleanly at every allocation. */
static int create_op(void *ctx)
{
    moirai_chan_config_t *cfg = ctx;
    moirai_chan_t *ch = NULL;
    int rc = moirai_chan_create(&ch, cfg);
    if (rc == 0) {
        moirai_test_oom_fail_at(-1);
        moirai_chan_destroy(ch);
    } else if (ch != NULL) {
        return -EFAULT;
    }
    return rc;
}

Test(chan, create_returns_enomem_at_every_allocation)
{
    moirai_chan_config_t cfg;
    moirai_chan_config_init(&cfg);
    cfg.capacity = 64;
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(create_op, NULL, &cfg);
    cr_assert_geq(failures, 2, "a bounded channel allocates itself and its ring");
    cfg.capacity = MOIRAI_CHAN_UNBOUNDED;
    failures = MOIRAI_TEST_OOM_SWEEP(create_op, NULL, &cfg);
    cr_assert_geq(failures, 1);
    moirai_test_oom_uninstall();
}

Test(chan, unbounded_growth_failure_is_enomem_and_loses_nothing)
{
    moirai_chan_t *ch = make_chan(8, MOIRAI_CHAN_UNBOUNDED, false);
    moirai_test_oom_install();
    uint64_t sent = 0;
    /* Fill segments until a send needs a new one, making that allocation
     * fail: the send reports -ENOMEM and changes nothing. */
    int failed = 0;
    while (failed < 3 && sent < 100000) {
        moirai_test_oom_fail_at(0);
        int rc = moirai_chan_send(ch, &sent);
        if (rc == -ENOMEM) {
            failed++;
            moirai_chan_stats_t st;
            cr_assert_eq(moirai_chan_stats(ch, &st), 0);
            cr_assert_eq(st.len, sent);
            cr_assert_eq(st.sent, sent);
            moirai_test_oom_fail_at(-1);
            cr_assert_eq(moirai_chan_send(ch, &sent), 0, "a retry succeeds");
        } else {
            cr_assert_eq(rc, 0);
        }
        sent++;
    }
    moirai_test_oom_fail_at(-1);
    cr_assert_eq(failed, 3, "segment growth allocates");
    /* select's unbounded send case reports -ENOMEM as its result. */
    moirai_chan_case_t c = {.chan = ch, .dir = MOIRAI_CHAN_SEND, .elem = &sent};
    for (;;) {
        moirai_test_oom_fail_at(0);
        int idx = moirai_chan_try_select(&c, 1);
        cr_assert_eq(idx, 0);
        if (c.result == -ENOMEM)
            break;
        cr_assert_eq(c.result, 0);
        sent++;
    }
    moirai_test_oom_fail_at(-1);
    moirai_test_oom_uninstall();
    for (uint64_t i = 0; i < sent; i++) {
        uint64_t v;
        cr_assert_eq(moirai_chan_try_recv(ch, &v), 0);
        cr_assert_eq(v, i, "element %lu lost or out of order", i);
    }
    uint64_t v;
    cr_assert_eq(moirai_chan_try_recv(ch, &v), -EAGAIN);
    drop_chan(ch);
}

/* moirai-async: ten thousand fibers that wait like threads and cost like
 * tasks.
 *
 * A producer fiber and 10 000 consumer fibers share a mutex, a condition
 * variable and a counter: every consumer waits (parking only itself) until
 * the producer has released its ticket, takes it, sleeps a millisecond on
 * the reactor's timers and records it. The workers never block: while
 * fibers wait, they run the others. Exits 0 only if every ticket was taken
 * exactly once. */
#include <moirai/async.h>
#include <moirai/core.h>
#include <moirai/sync.h>
#include <stdio.h>
#include <stdlib.h>

enum { CONSUMERS = 10000 };

typedef struct shop {
    moirai_mutex_t lock;
    moirai_condvar_t ready;
    int released;                   /* tickets released so far, under lock */
    unsigned char taken[CONSUMERS]; /* written by ticket owners only */
} shop_t;

typedef struct consumer {
    shop_t *shop;
    int ticket;
} consumer_t;

static int consume(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    consumer_t *c = arg;
    moirai_mutex_lock(&c->shop->lock);
    while (c->shop->released <= c->ticket)
        moirai_condvar_wait(&c->shop->ready, &c->shop->lock); /* parks this fiber */
    moirai_mutex_unlock(&c->shop->lock);
    int rc = moirai_fiber_sleep(MOIRAI_NS_PER_MS); /* a reactor timer, no thread asleep */
    c->shop->taken[c->ticket]++;
    return rc;
}

static int produce(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    shop_t *shop = arg;
    for (int i = 0; i < CONSUMERS; i += 100) {
        moirai_mutex_lock(&shop->lock);
        shop->released = i + 100;
        moirai_condvar_broadcast(&shop->ready);
        moirai_mutex_unlock(&shop->lock);
        moirai_fiber_yield();
    }
    return 0;
}

int main(void)
{
    moirai_runtime_t *rt;
    int rc = moirai_runtime_create(&rt, NULL); /* its own scheduler, one worker per CPU */
    if (rc != 0) {
        fprintf(stderr, "runtime: %s\n", moirai_strerror(rc));
        return 1;
    }
    static shop_t shop;
    moirai_mutex_init(&shop.lock);
    moirai_condvar_init(&shop.ready);
    static consumer_t consumers[CONSUMERS];
    static moirai_handle_t *handles[CONSUMERS];
    int failed = 0;
    for (int i = 0; i < CONSUMERS && rc == 0; i++) {
        consumers[i] = (consumer_t){&shop, i};
        rc = moirai_handle_create(&handles[i]);
        if (rc == 0)
            rc = moirai_fiber_spawn(rt, consume, &consumers[i], NULL, handles[i]);
    }
    if (rc == 0)
        rc = moirai_fiber_spawn(rt, produce, &shop, NULL, NULL);
    for (int i = 0; i < CONSUMERS && handles[i] != NULL; i++) {
        if (moirai_handle_join(handles[i], NULL) != 0) /* a plain thread: blocks */
            failed++;
        moirai_handle_release(handles[i]);
    }
    moirai_runtime_destroy(rt);
    int once = 0;
    for (int i = 0; i < CONSUMERS; i++)
        once += shop.taken[i] == 1;
    printf("%d of %d tickets taken exactly once, %d fibers failed\n", once, CONSUMERS, failed);
    return rc == 0 && failed == 0 && once == CONSUMERS ? 0 : 1;
}

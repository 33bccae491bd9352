/* moirai-sync: a bounded buffer from a mutex and two condition variables.
 *
 * Two producers put 20000 numbered items each into an 8-slot ring; two
 * consumers take them out. A producer waits on `not_full` while the ring
 * is full, a consumer on `not_empty` while it is empty; each waits in a
 * loop, because a wake-up only says the state may have changed. Producers
 * stop the consumers with one sentinel each consumer. Exits non-zero
 * unless every item arrived exactly once. */
#include <moirai/sync.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

enum { SLOTS = 8, PRODUCERS = 2, CONSUMERS = 2, PER_PRODUCER = 20000 };
#define DONE UINT32_MAX /* the sentinel that stops a consumer */

typedef struct buffer {
    moirai_mutex_t lock;
    moirai_condvar_t not_full;  /* signalled when a slot frees up */
    moirai_condvar_t not_empty; /* signalled when an item arrives */
    uint32_t items[SLOTS];
    unsigned head, count;
} buffer_t;

static buffer_t buf = {MOIRAI_MUTEX_INIT, MOIRAI_CONDVAR_INIT, MOIRAI_CONDVAR_INIT, {0}, 0, 0};
/* How often each item was received; written under no lock, because each
 * consumer increments only the items it took, and main reads them after
 * joining every thread. */
static unsigned char seen[PRODUCERS * PER_PRODUCER];

static void put(uint32_t item)
{
    moirai_mutex_lock(&buf.lock);
    while (buf.count == SLOTS)
        moirai_condvar_wait(&buf.not_full, &buf.lock);
    buf.items[(buf.head + buf.count) % SLOTS] = item;
    buf.count++;
    moirai_condvar_signal(&buf.not_empty);
    moirai_mutex_unlock(&buf.lock);
}

static uint32_t take(void)
{
    moirai_mutex_lock(&buf.lock);
    while (buf.count == 0)
        moirai_condvar_wait(&buf.not_empty, &buf.lock);
    uint32_t item = buf.items[buf.head];
    buf.head = (buf.head + 1) % SLOTS;
    buf.count--;
    moirai_condvar_signal(&buf.not_full);
    moirai_mutex_unlock(&buf.lock);
    return item;
}

static void *producer(void *arg)
{
    uint32_t first = (uint32_t)(uintptr_t)arg * PER_PRODUCER;
    for (uint32_t i = 0; i < PER_PRODUCER; i++)
        put(first + i);
    return NULL;
}

static void *consumer(void *arg)
{
    (void)arg;
    for (uint32_t item; (item = take()) != DONE;)
        seen[item]++;
    return NULL;
}

int main(void)
{
    pthread_t producers[PRODUCERS], consumers[CONSUMERS];
    for (uintptr_t i = 0; i < CONSUMERS; i++)
        if (pthread_create(&consumers[i], NULL, consumer, NULL) != 0)
            return 1;
    for (uintptr_t i = 0; i < PRODUCERS; i++)
        if (pthread_create(&producers[i], NULL, producer, (void *)i) != 0)
            return 1;
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(producers[i], NULL);
    /* Every real item is in the buffer or taken; now stop the consumers. */
    for (int i = 0; i < CONSUMERS; i++)
        put(DONE);
    for (int i = 0; i < CONSUMERS; i++)
        pthread_join(consumers[i], NULL);

    unsigned lost = 0, duplicated = 0;
    for (size_t i = 0; i < PRODUCERS * PER_PRODUCER; i++) {
        lost += seen[i] == 0;
        duplicated += seen[i] > 1;
    }
    printf("bounded buffer: %d items through %d slots, %u lost, %u duplicated\n",
           PRODUCERS * PER_PRODUCER, SLOTS, lost, duplicated);
    return lost == 0 && duplicated == 0 && buf.count == 0 ? 0 : 1;
}

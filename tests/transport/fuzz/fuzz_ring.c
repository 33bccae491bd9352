/* libFuzzer target for the shared-memory ring's untrusted side: arbitrary
 * bytes become the shared header and data region a peer would have
 * written, and then keep changing under the handle as a hostile peer
 * would, while a consumer (and, if asked, a producer) handle works on
 * them. The region is an exactly-sized heap buffer, so AddressSanitizer
 * reports any access outside the "mapping"; UBSan reports overflows and
 * misaligned accesses. Built by run-fuzz.sh with clang -fsanitize=fuzzer.
 *
 * Input: [mode][region: up to 8192 bytes][steps: 11 bytes each]
 *   mode bit 0: stamp a valid geometry over the region's header (so the
 *               fuzzer spends its time on indices, slots and records);
 *   mode bit 1: the stamped ring is MPSC;
 *   mode bit 2: keep the producer slots as given (else: this process is
 *               producer 0, alive);
 *   mode bit 3: also attach a producer handle and let it reserve/commit.
 *   step: u16 offset, u64 value, u8 op: the peer writes `value` at the
 *   8-byte aligned `offset` of the region, then the handles act (op bit
 *   0: consumer try_peek, read every byte, release; bit 1: producer
 *   try_reserve of op >> 2 bytes... scaled, fill, commit). */
#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <moirai/transport/ring.h>

#include "ring_internal.h"

#define REGION (RING_HEADER_SIZE + 4096u)

/* The fuzz target builds the ring without moirai-async (ring_park.c):
 * this process has no fibers, and the calls it makes never wait (only
 * the try_ functions are fuzzed), so a fiber's wait is never reached. */
bool moirai__ring_in_fiber(void)
{
    return false;
}

void moirai__ring_yield(void)
{
    sched_yield();
}

int moirai__ring_fiber_wait(_Atomic uint32_t *word, uint32_t expected, uint64_t deadline)
{
    (void)word;
    (void)expected;
    (void)deadline;
    abort();
}

static void stamp(struct ring_shared *sh, uint8_t mode)
{
    bool mpsc = (mode & 2) != 0;
    atomic_store_explicit(&sh->magic, RING_MAGIC, memory_order_relaxed);
    atomic_store_explicit(&sh->version, MOIRAI_SHM_RING_LAYOUT_VERSION, memory_order_relaxed);
    atomic_store_explicit(&sh->header_size, RING_HEADER_SIZE, memory_order_relaxed);
    atomic_store_explicit(&sh->size, 4096, memory_order_relaxed);
    atomic_store_explicit(&sh->flags, mpsc ? MOIRAI_SHM_RING_MPSC : 0u, memory_order_relaxed);
    atomic_store_explicit(&sh->max_producers, mpsc ? MOIRAI_SHM_RING_MAX_PRODUCERS : 1u,
                          memory_order_relaxed);
    atomic_store_explicit(&sh->consumer.state, RING_SLOT_FREE, memory_order_relaxed);
    atomic_store_explicit(&sh->consumer.pid, 0, memory_order_relaxed);
    if ((mode & 4) == 0) {
        for (unsigned i = 0; i < MOIRAI_SHM_RING_MAX_PRODUCERS; i++) {
            atomic_store_explicit(&sh->producers[i].state, RING_SLOT_FREE, memory_order_relaxed);
            atomic_store_explicit(&sh->producers[i].pid, 0, memory_order_relaxed);
        }
        atomic_store_explicit(&sh->producers[0].state, RING_SLOT_ATTACHED, memory_order_relaxed);
        atomic_store_explicit(&sh->producers[0].pid, (uint32_t)getpid(), memory_order_relaxed);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    /* 64-byte aligned like a mapping's cache lines; exactly REGION bytes
     * so that one byte more is outside. */
    unsigned char *region = aligned_alloc(64, REGION);
    if (region == NULL)
        return 0;
    memset(region, 0, REGION);
    size_t n = size < REGION ? size : REGION;
    memcpy(region, data, n);
    data += n;
    size -= n;
    struct ring_shared *sh = (struct ring_shared *)region;
    if (mode & 1)
        stamp(sh, mode);

    moirai_shm_ring_t *c = NULL, *p = NULL;
    if (moirai__ring_attach_mapped(&c, region, REGION, false, MOIRAI_SHM_RING_CONSUMER) != 0) {
        free(region);
        return 0;
    }
    if ((mode & 8) &&
        moirai__ring_attach_mapped(&p, region, REGION, false, MOIRAI_SHM_RING_PRODUCER) != 0)
        p = NULL;

    volatile uint64_t sink = 0;
    /* At least one look even with no steps. */
    for (int step = 0; step < 256; step++) {
        uint8_t op = 1;
        if (step > 0 || size >= 11) {
            if (size < 11)
                break;
            uint16_t off;
            uint64_t val;
            memcpy(&off, data, 2);
            memcpy(&val, data + 2, 8);
            op = data[10];
            data += 11;
            size -= 11;
            /* The peer's concurrent write (aligned, as a real peer's
             * atomic store would be). */
            uint32_t o = (uint32_t)(off % (REGION / 8)) * 8;
            atomic_store_explicit((_Atomic uint64_t *)(region + o), val, memory_order_relaxed);
        }
        if (op & 1) {
            void *buf;
            size_t len;
            int rc = moirai_shm_ring_try_peek(c, &buf, &len);
            if (rc == 0) {
                const unsigned char *b = buf;
                for (size_t i = 0; i < len; i++)
                    sink += b[i];
                if (moirai_shm_ring_release(c) != 0)
                    abort();
            } else if (rc != -EAGAIN && rc != -EPROTO && rc != -EPIPE && rc != -ECONNRESET) {
                abort(); /* an error the contract does not list */
            }
        }
        if ((op & 2) && p != NULL) {
            void *buf;
            size_t len = (size_t)(op >> 2) * 37u;
            int rc = moirai_shm_ring_try_reserve(p, len, &buf);
            if (rc == 0) {
                memset(buf, 0xa5, len);
                if (moirai_shm_ring_commit(p) != 0)
                    abort();
            } else if (rc != -EAGAIN && rc != -EPROTO && rc != -EPIPE && rc != -ECONNRESET) {
                abort();
            }
        }
    }
    (void)sink;
    moirai_shm_ring_detach(p);
    moirai_shm_ring_detach(c);
    free(region);
    return 0;
}

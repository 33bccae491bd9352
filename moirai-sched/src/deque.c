/* The per-worker Chase-Lev work-stealing deque.
 *
 * This is the C11 formulation of Lê, Pop, Cohen and Zappa Nardelli,
 * "Correct and Efficient Work-Stealing for Weak Memory Models" (PPoPP 2013),
 * with the growable ring of Chase and Lev (SPAA 2005). `top` and `bottom`
 * count from 0 and never wrap in practice (64 bits); the live jobs are the
 * indices top .. bottom-1, stored at index & mask in the current ring.
 *
 * The paper places two standalone seq_cst fences: in take (pop) between
 * the store of `bottom` and the load of `top`, and in steal between the
 * load of `top` and the load of `bottom`. ThreadSanitizer does not model
 * standalone fences, so here the operations those fences order are
 * seq_cst themselves: pop's store of `bottom` and load of `top`, steal's
 * loads of `top` and `bottom`, and every CAS on `top`. All of them are then
 * in the single total order S, which gives the Dekker-style guarantee the
 * fences gave: the owner and a thief cannot both miss each other's claim on
 * the last job. On x86-64 this costs one locked instruction (the store of
 * `bottom` in pop, an XCHG), exactly what the fence cost; the seq_cst loads
 * are plain loads.
 *
 * Ring slots are relaxed atomics: a thief may read a slot that the owner is
 * overwriting (the thief's CAS then fails and the value is dropped), and
 * that read must not be a data race. */
#include "deque.h"

#include <errno.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>

#include <moirai/core/alloc.h>

/* The largest capacity_log2 that create accepts, and the largest ring
 * growth may produce on a 64-bit machine before the size computation
 * would overflow (far beyond any real deque). */
#define DEQUE_MIN_LOG2 1u
#define DEQUE_MAX_LOG2 30u

static moirai__deque_ring_t *ring_alloc(unsigned log2)
{
    size_t cap = (size_t)1 << log2;
    moirai__deque_ring_t *r = moirai_malloc(sizeof(*r) + cap * sizeof(r->slots[0]));
    if (r == NULL)
        return NULL;
    r->mask = (int64_t)cap - 1;
    r->retired = NULL;
    /* The slots need no initial value: a slot is read only at an index
     * below a `bottom` that was published after the slot was written. */
    return r;
}

int moirai__deque_create(moirai__deque_t **out, unsigned capacity_log2)
{
    if (out == NULL || capacity_log2 < DEQUE_MIN_LOG2 || capacity_log2 > DEQUE_MAX_LOG2)
        return -EINVAL;
    moirai__deque_t *d = moirai_aligned_alloc(MOIRAI_FALSE_SHARING_RANGE, sizeof(*d));
    if (d == NULL)
        return -ENOMEM;
    moirai__deque_ring_t *r = ring_alloc(capacity_log2);
    if (r == NULL) {
        moirai_free(d);
        return -ENOMEM;
    }
    atomic_init(&d->top, 0);
    atomic_init(&d->bottom, 0);
    atomic_init(&d->ring, r);
    d->top_cache = 0;
    d->retired = NULL;
    *out = d;
    return 0;
}

void moirai__deque_destroy(moirai__deque_t *deque)
{
    if (deque == NULL)
        return;
    /* Relaxed: no other thread uses the deque any more (the caller's
     * contract), so whatever made that so already ordered their accesses
     * before this. */
    moirai_free(atomic_load_explicit(&deque->ring, memory_order_relaxed));
    for (moirai__deque_ring_t *r = deque->retired; r != NULL;) {
        moirai__deque_ring_t *next = r->retired;
        moirai_free(r);
        r = next;
    }
    moirai_free(deque);
}

/* Owner only. Replaces `old`, which holds the jobs top .. bottom-1, by a
 * ring twice its size holding the same jobs at the same indices. Returns
 * the new ring, or NULL (nothing changed) when out of memory. */
static moirai__deque_ring_t *grow(moirai__deque_t *d, moirai__deque_ring_t *old, int64_t top,
                                  int64_t bottom)
{
    int64_t cap = old->mask + 1;
    if ((uint64_t)cap > ((SIZE_MAX - sizeof(moirai__deque_ring_t)) / sizeof(old->slots[0])) / 2)
        return NULL;
    unsigned log2 = (unsigned)__builtin_ctzll((unsigned long long)cap) + 1;
    moirai__deque_ring_t *r = ring_alloc(log2);
    if (r == NULL)
        return NULL;
    /* Relaxed copies: only the owner writes slots, and the release store
     * of `ring` below publishes these writes to a thief that loads the new
     * ring with acquire. Jobs a thief has already claimed (below the real
     * `top`) are copied too; they are harmless, since no index below `top`
     * is ever read again. */
    for (int64_t i = top; i < bottom; i++) {
        struct moirai__job *j =
            atomic_load_explicit(&old->slots[i & old->mask], memory_order_relaxed);
        atomic_store_explicit(&r->slots[i & r->mask], j, memory_order_relaxed);
    }
    /* release: a thief that acquires the new ring sees the copies. The old
     * ring stays readable (retired, freed only by destroy): a thief that
     * loaded it before this store still reads valid jobs from it, because
     * the owner never writes to it again and every index the thief can
     * claim with its CAS was filled before this point. */
    atomic_store_explicit(&d->ring, r, memory_order_release);
    old->retired = d->retired;
    d->retired = old;
    return r;
}

/* Out of line, to keep push small: refreshes the view of `top` and grows
 * the ring until `need` more jobs fit. */
moirai__deque_ring_t *moirai__deque_reserve_slow(moirai__deque_t *d, moirai__deque_ring_t *r,
                                                 int64_t bottom, int64_t need)
{
    /* acquire: pairs with the thieves' seq_cst (hence release) CAS on
     * `top`. A thief reads its slot before that CAS; acquiring the new
     * `top` makes the read happen-before the owner's overwrite of the
     * slot, so the thief can never read the newer job from it. */
    d->top_cache = atomic_load_explicit(&d->top, memory_order_acquire);
    while (bottom - d->top_cache + need > r->mask + 1) {
        r = grow(d, r, d->top_cache, bottom);
        if (r == NULL)
            return NULL;
    }
    return r;
}

moirai__steal_t moirai__deque_steal(moirai__deque_t *deque, struct moirai__job **out)
{
    /* seq_cst loads of `top` then `bottom`: the thief's half of the
     * store-load pairing with pop (see there). The load of `bottom` is
     * also the acquire that pairs with push's release, making the slot and
     * the job's contents visible. */
    int64_t t = atomic_load_explicit(&deque->top, memory_order_seq_cst);
    int64_t b = atomic_load_explicit(&deque->bottom, memory_order_seq_cst);
    if (t >= b)
        return MOIRAI__STEAL_EMPTY;
    /* acquire: pairs with grow()'s release, so a new ring's copied slots
     * are visible. Loaded after `bottom`: if the job at t was pushed after
     * a growth, the acquire of `bottom` already made the new ring visible;
     * otherwise the job is in the old ring as well. */
    moirai__deque_ring_t *r = atomic_load_explicit(&deque->ring, memory_order_acquire);
    /* Relaxed: ordered by the acquires above; it may race with the owner
     * overwriting the slot only when `top` has moved on, and then the CAS
     * fails and the value is dropped. */
    struct moirai__job *job = atomic_load_explicit(&r->slots[t & r->mask], memory_order_relaxed);
    /* seq_cst: claims index t in the total order shared with pop. On
     * failure another thief or the owner took it; relaxed, nothing read. */
    if (!atomic_compare_exchange_strong_explicit(&deque->top, &t, t + 1, memory_order_seq_cst,
                                                 memory_order_relaxed))
        return MOIRAI__STEAL_RETRY;
    *out = job;
    return MOIRAI__STEAL_SUCCESS;
}

size_t moirai__deque_steal_batch(moirai__deque_t *victim, moirai__deque_t *dest,
                                 struct moirai__job **first, size_t max, moirai__steal_t *status)
{
    /* The first steal also measures the victim; seq_cst as in steal. */
    int64_t t = atomic_load_explicit(&victim->top, memory_order_seq_cst);
    int64_t b = atomic_load_explicit(&victim->bottom, memory_order_seq_cst);
    if (t >= b) {
        *status = MOIRAI__STEAL_EMPTY;
        return 0;
    }
    /* Half the observed size rounded up (so a single job is taken), at
     * most `max` (0 counts as 1). */
    uint64_t want = ((uint64_t)(b - t) + 1) / 2;
    if (max < 1)
        max = 1;
    if (want > max)
        want = max;
    /* Room on `dest` for all but the first, reserved before anything is
     * taken: a job already claimed from the victim could not be handed
     * back, so a growth that fails shortens the batch instead. The caller
     * owns `dest`, so nothing else can use up the room. */
    int64_t db = atomic_load_explicit(&dest->bottom, memory_order_relaxed);
    moirai__deque_ring_t *dr = NULL;
    while (want > 1 && (dr = moirai__deque_reserve(dest, db, (int64_t)want - 1)) == NULL)
        want /= 2;
    moirai__steal_t st = moirai__deque_steal(victim, first);
    if (st != MOIRAI__STEAL_SUCCESS) {
        *status = st;
        return 0;
    }
    size_t taken = 1;
    while (taken < want) {
        struct moirai__job *job;
        /* A lost race or an emptied victim ends the batch: what was taken
         * is enough to work on, and retrying would contend further. */
        if (moirai__deque_steal(victim, &job) != MOIRAI__STEAL_SUCCESS)
            break;
        /* Relaxed slot store, published by the release store of `bottom`
         * right after, as in push; room was reserved above. */
        atomic_store_explicit(&dr->slots[db & dr->mask], job, memory_order_relaxed);
        db++;
        atomic_store_explicit(&dest->bottom, db, memory_order_release);
        taken++;
    }
    *status = MOIRAI__STEAL_SUCCESS;
    return taken;
}

size_t moirai__deque_size(const moirai__deque_t *deque)
{
    /* Relaxed: the answer is a snapshot that may be stale anyway. `top`
     * is read first, so a concurrent steal cannot make the difference
     * exceed the real size by more than in-flight operations. */
    int64_t t = atomic_load_explicit(&deque->top, memory_order_relaxed);
    int64_t b = atomic_load_explicit(&deque->bottom, memory_order_relaxed);
    return b > t ? (size_t)(b - t) : 0;
}

/* A concurrent hash map: resizable, lock-free lookups, keys of any bytes.
 *
 * Built on liburcu's lock-free hash table (rculfhash, a split-ordered list
 * whose bucket array can grow and shrink while it is used), reclaimed
 * through Moirai's RCU layer (moirai/sync/rcu.h). liburcu is an
 * implementation detail: nothing in this header names it.
 *
 * Model.
 * - A key is a byte string (pointer + length, any bytes, length 0 allowed);
 *   the map copies it into its own entry, so the caller's buffer may be
 *   reused as soon as a call returns. Keys compare by length, then bytes.
 * - A value is a `void *` the map stores and hands back; the map never
 *   dereferences or frees it. NULL is a valid value.
 * - The map never holds two entries with the same key: every function that
 *   adds an entry either fails on an existing key (insert, insert_unique)
 *   or replaces it atomically (replace).
 * - An entry's key is immutable once published; its value changes in
 *   place only through moirai_map_fetch_add() and moirai_map_update()
 *   (an atomic word), and replace swaps in a new entry. A removed or
 *   replaced entry is freed after an RCU grace period, so a concurrent
 *   lookup never touches freed memory.
 *
 * Threads. Every function except destroy may be called from any number of
 * threads at once, including foreign threads (they register with RCU on
 * their own, see rcu.h). None of them blocks, except
 * moirai_map_get_or_insert() when it inserts (a stripe lock): lookups and iteration
 * are lock-free reads under an RCU read-side critical section, updates are
 * lock-free (compare-and-swap retries).
 *
 * Resizing. Each map keeps its load (entries per bucket) between 1/8 and
 * 1: when an update finds it outside, the map is queued for one Moirai
 * thread per process (started with the first map, joined by the last
 * destroy) that grows or shrinks the bucket array to twice the entries,
 * rounded up to a power of two, never below the initial size. Readers and
 * updaters keep going meanwhile. (liburcu's own automatic resizing is not
 * used: in liburcu 0.13 it can stop resizing a table for good; see
 * src/map_resize.c.) After fork(), maps inherited by the child stay correct but
 * no longer resize.
 *
 * Memory ordering (for every key).
 * - A successful insert, insert_unique or replace is a release: a lookup,
 *   insert_unique (failing), replace or iteration that returns the value it
 *   stored also sees everything the storing thread wrote before the call
 *   (for example the object `value` points to). liburcu issues a full
 *   barrier around each commit and reads entries with dependency ordering.
 * - Updates of one key are linearizable: they take effect at one atomic
 *   step between call and return, in one total order. Once remove returned
 *   0, a lookup that starts after it (happens-after, e.g. the looking
 *   thread learned of the removal through an acquire load) does not find
 *   that entry; the same holds for the old value after replace returned.
 *   A lookup concurrent with the remove may still return the old value.
 * - A failing call (-ENOENT, -EEXIST, -EINVAL, -ENOMEM) changes nothing.
 *   The value a failing insert_unique reports is ordered like a lookup's
 *   result; other failures order nothing.
 *
 * Values and their lifetime. The map frees its entries, never the values.
 * If you free what a value points to after removing it, a concurrent
 * lookup may still hold the pointer. Either make values outlive all
 * readers by your own means, or read them inside moirai_rcu_read_lock() /
 * moirai_rcu_read_unlock() and retire them with moirai_rcu_call() after a
 * successful remove or replace; then the object stays valid for every
 * reader that obtained the pointer inside its read-side critical section.
 *
 * Allocation. Entries and the map object come from moirai_malloc() and
 * friends, so every allocating call reports -ENOMEM with the map unchanged
 * when the allocation hook fails. The bucket arrays and liburcu's table
 * header are allocated by liburcu itself with the C library's allocator
 * (its API offers no hook), and the resizer thread's stack by the C
 * library's pthread_create(); both are outside Moirai's allocation hook.
 */
#ifndef MOIRAI_SYNC_MAP_H
#define MOIRAI_SYNC_MAP_H

#include <stddef.h>
#include <stdint.h>

#include <moirai/sync/export.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A concurrent hash map (see above). Opaque; created and destroyed by the functions below. */
typedef struct moirai_map moirai_map_t;

/* A hash function for keys: returns a 64-bit hash of `len` bytes at `key`.
 * It must be deterministic for the life of the map, thread-safe and must
 * not call back into the map. Quality matters in both the low bits (bucket
 * index) and the high bits (the split-ordered list sorts by the bit-reversed
 * hash). */
typedef uint64_t (*moirai_map_hash_cb)(void *arg, const void *key, size_t len);

/* Called by moirai_map_iterate() for each entry; returning non-zero stops
 * the iteration and that value is returned by moirai_map_iterate(). `key`
 * points into the entry and stays valid until the callback returns. */
typedef int (*moirai_map_iter_cb)(void *arg, const void *key, size_t len, void *value);

/* Builds the value of a key that moirai_map_get_or_insert() did not find:
 * stores it in `*value` and returns 0, or returns a negative errno, which
 * get_or_insert returns with nothing inserted. `key` and `len` are the
 * caller's key. It runs on the calling thread, at most once per call,
 * with a lock of the map's key stripe held: it must not call back into
 * this map. */
typedef int (*moirai_map_ctor_cb)(void *arg, const void *key, size_t len, void **value);

/* Disposes of a value that moirai_map_get_or_insert() constructed but
 * could not insert (see there). */
typedef void (*moirai_map_value_cb)(void *arg, void *value);

/* Computes a key's new value for moirai_map_update(): `present` is 1 when
 * the key has an entry whose value is `old`, 0 when it has none (`old` is
 * then NULL). Stores the new value in `*value` and returns 0, or returns a
 * negative errno to leave the map unchanged (update returns it). It may be
 * called more than once per update (a concurrent update of the same key
 * makes the step retry), so it must compute from its arguments alone and
 * have no side effects that matter if its result is discarded; it must
 * not call into this map. It runs inside an RCU read-side critical
 * section, so it must not block for long (that delays every grace period,
 * hence memory reclamation, for the whole process) and must not call
 * moirai_rcu_synchronize() or moirai_rcu_barrier(). */
typedef int (*moirai_map_update_cb)(void *arg, const void *key, size_t len, void *old, int present,
                                    void **value);

/* The largest accepted `initial_buckets`. */
#define MOIRAI_MAP_MAX_INITIAL_BUCKETS ((size_t)1 << 24)

/* Creation parameters; a zeroed struct (or NULL) gives the defaults. */
typedef struct moirai_map_config {
    /* Bucket array size to start with, rounded up to a power of two;
     * 0 means 16. The map grows on its own from there, and shrinks back
     * to no less than this. */
    size_t initial_buckets;
    /* A caller-supplied hash, called with `hash_arg`; NULL selects the
     * built-in moirai_map_hash() with `seed`. */
    moirai_map_hash_cb hash;
    void *hash_arg;
    /* Seed of the built-in hash. 0 draws a random seed for this map (from
     * getrandom), which keeps an adversary who chooses keys from forcing
     * collisions; give a fixed non-zero seed for reproducible layouts.
     * Ignored when `hash` is set. */
    uint64_t seed;
} moirai_map_config_t;

/* The built-in hash: a 64-bit multiply-mix hash in the style of wyhash
 * (each step multiplies two 64-bit words into 128 bits and folds the halves
 * together). Keys up to 16 bytes take no loop; longer ones are consumed 16
 * bytes per step, 48 per step above 48 bytes. It is fast and mixes well
 * (every input bit affects every output bit) but it is NOT cryptographic:
 * anyone who knows the seed can craft colliding keys, hence the random
 * default seed. Deterministic for a given (bytes, seed) on every platform;
 * a map created with seed S and no custom hash hashes its keys with
 * exactly this function and S. `key` may be NULL when `len` is 0.
 * Thread-safe; never blocks. */
MOIRAI_SYNC_API uint64_t moirai_map_hash(const void *key, size_t len, uint64_t seed);

/* A snapshot of a map's size, for monitoring and tests. */
typedef struct moirai_map_stats {
    size_t entries;   /* as moirai_map_count() */
    size_t buckets;   /* size of the bucket array after the last resize */
    uint64_t resizes; /* resizes done so far */
} moirai_map_stats_t;

/* Creates an empty map in `*out` with `cfg` (NULL for the defaults).
 * Blocks for allocation and, when no other map exists, to start the
 * resizer thread. Thread-safe.
 * Errors: -EINVAL if `out` is NULL or cfg->initial_buckets exceeds
 * MOIRAI_MAP_MAX_INITIAL_BUCKETS; -ENOMEM if an allocation failed; -EAGAIN
 * if the system refused to start the resizer thread. On error nothing is
 * leaked and `*out` is untouched. */
MOIRAI_SYNC_API int moirai_map_create(moirai_map_t **out, const moirai_map_config_t *cfg);

/* Destroys `map` and frees every entry, including entries removed earlier
 * that were still waiting for their grace period (it waits for pending RCU
 * callbacks, moirai_rcu_barrier()). Values are not touched: iterate first
 * if they need freeing. The last map's destroy also joins the resizer
 * thread. NULL does nothing.
 * Blocks (a resize in flight, RCU callbacks). NOT thread-safe with respect
 * to this map: no other thread may use it during or after the call, and
 * the caller must not be inside an RCU read-side critical section or an
 * RCU callback. Other maps may be created, used and destroyed
 * concurrently. */
MOIRAI_SYNC_API void moirai_map_destroy(moirai_map_t *map);

/* Adds `key` -> `value` if the key is absent (add-or-fail).
 * Equivalent to moirai_map_insert_unique(map, key, len, value, NULL).
 * Lock-free; never blocks. Release on success (see the header comment).
 * Errors: -EEXIST if the key is present (nothing changes); -EINVAL if `map`
 * is NULL or `key` is NULL with `len` > 0; -ENOMEM if the entry could not
 * be allocated (or this thread's one-time RCU registration failed). */
MOIRAI_SYNC_API int moirai_map_insert(moirai_map_t *map, const void *key, size_t len, void *value);

/* Adds `key` -> `value` if the key is absent; otherwise changes nothing and,
 * when `existing` is not NULL, stores the value of the entry that is
 * present in `*existing` (read atomically with the failure, so of all
 * threads racing to insert one key exactly one gets 0 and all others learn
 * its value, unless it is removed or replaced meanwhile).
 * Lock-free; never blocks. Release on success; on -EEXIST, `*existing` is
 * ordered like a lookup's result.
 * Errors: -EEXIST (key present); -EINVAL (`map` NULL, or `key` NULL with
 * `len` > 0); -ENOMEM (allocation or one-time RCU registration failed).
 * `*existing` is written only on -EEXIST. */
MOIRAI_SYNC_API int moirai_map_insert_unique(moirai_map_t *map, const void *key, size_t len,
                                             void *value, void **existing);

/* Sets `key` -> `value` whether or not the key is present (insert or
 * replace, one atomic step: lookups see either the old or the new entry,
 * never neither). Returns 1 if an entry was replaced, storing its value in
 * `*old` when `old` is not NULL; returns 0 if the key was absent and was
 * inserted (`*old` is set to NULL).
 * Lock-free; never blocks. Release (see the header comment).
 * Errors: -EINVAL (`map` NULL, or `key` NULL with `len` > 0); -ENOMEM
 * (allocation or one-time RCU registration failed; the old entry stays,
 * `*old` untouched). */
MOIRAI_SYNC_API int moirai_map_replace(moirai_map_t *map, const void *key, size_t len, void *value,
                                       void **old);

/* Removes the entry of `key`. On success stores its value in `*old` when
 * `old` is not NULL. The entry's memory is freed after a grace period.
 * Lock-free; never blocks; never allocates (except RCU registration on a
 * thread's first call). After it returns 0, lookups that start after it do
 * not find that entry (see the header comment).
 * Errors: -ENOENT (no such key; `*old` untouched); -EINVAL (`map` NULL, or
 * `key` NULL with `len` > 0); -ENOMEM (this thread's one-time RCU
 * registration failed, see rcu.h). */
MOIRAI_SYNC_API int moirai_map_remove(moirai_map_t *map, const void *key, size_t len, void **old);

/* Returns the value of `key`, inserting one built by `ctor` if the key is
 * absent: the counting idiom in one call. Stores the value in `*value`
 * (NULL to discard it) and returns 0 if the key was present, 1 if this
 * call constructed and inserted it.
 * Exactly once: among concurrent get_or_insert calls on one key, `ctor`
 * runs in exactly one of them (the one that returns 1) and all others
 * return its value. Lookups of a present key are lock-free; the insert of
 * an absent key serializes with other get_or_insert inserts whose keys
 * share one of the map's 64 lock stripes, and `ctor` runs inside that lock.
 * If a concurrent moirai_map_insert(), insert_unique(), replace(),
 * fetch_add() or update() (which do not take the stripe lock) adds the key
 * after `ctor` ran, the entry they added wins: `*value` gets its value,
 * the call returns 0, and the constructed value is passed to `dtor(arg,
 * value)` (not called when `dtor` is NULL).
 * May block (the stripe lock, `ctor`). Thread-safe. Release on insert,
 * acquire on the value it returns (as lookup).
 * Errors: -EINVAL (`map` or `ctor` NULL, `key` NULL with `len` > 0, or
 * `ctor` produced the value the map reserves, see moirai_map_update());
 * -ENOMEM (the entry could not be allocated, the constructed value is
 * then passed to `dtor`; or this thread's one-time RCU registration
 * failed, before `ctor` ran); any negative errno `ctor` returned. On error
 * the map is unchanged. */
MOIRAI_SYNC_API int moirai_map_get_or_insert(moirai_map_t *map, const void *key, size_t len,
                                             moirai_map_ctor_cb ctor, moirai_map_value_cb dtor,
                                             void *arg, void **value);

/* Adds `delta` to the value of `key`, taken as an integer (intptr_t), in
 * one atomic step, inserting the key with value `delta` when it is
 * absent. Stores the value before the step in `*old` (0 for an absent key)
 * when `old` is not NULL. Returns 0 if the key was present, 1 if this call
 * inserted it. For counters: no lookup, allocation or -EEXIST handling in
 * the caller, and no allocation at all once the key exists.
 * Linearizable with every other call on the key: concurrent fetch_adds
 * never lose an increment, and an increment that races with a remove or
 * replace is either part of the value they return or applied afterwards
 * (to the new entry, or a re-inserted key).
 * Lock-free; never blocks. Acquire-release on the value word (a
 * read-modify-write that sees the last update's writes).
 * Errors: -EINVAL (`map` NULL, or `key` NULL with `len` > 0); -EOVERFLOW
 * (the sum would be the value the map reserves, see moirai_map_update();
 * in practice never for counts below 2^46); -ENOMEM (the entry of an
 * absent key could not be allocated, or this thread's one-time RCU
 * registration failed). On error nothing changes. */
MOIRAI_SYNC_API int moirai_map_fetch_add(moirai_map_t *map, const void *key, size_t len,
                                         intptr_t delta, intptr_t *old);

/* Replaces the value of `key` by `fn(arg, key, len, old, present, &new)`
 * in one atomic step (compute): when the key is present, the value is
 * swapped by compare-and-swap from the `old` that `fn` saw (retrying with
 * the current value if another update came first); when it is absent, the
 * entry is inserted with `fn`'s value for present = 0. Stores the value
 * now in the map in `*value` when `value` is not NULL. Returns 0 if the
 * key was present, 1 if this call inserted it.
 * Linearizable like moirai_map_fetch_add(). The map's one reserved value,
 * which no value may equal, is the address of an object private to this
 * library (never a pointer a caller owns, nor an integer below 2^46).
 * Lock-free with respect to other updates of the key (some update always
 * succeeds); never blocks except inside `fn`. Acquire-release on the value
 * word: `fn` sees, through `old`, everything the thread that stored it
 * wrote before storing it.
 * Errors: -EINVAL (`map` or `fn` NULL, `key` NULL with `len` > 0, or `fn`
 * produced the reserved value); -ENOMEM (allocation of an absent key's
 * entry, or RCU registration, failed); any negative errno `fn` returned.
 * On error nothing changes. */
MOIRAI_SYNC_API int moirai_map_update(moirai_map_t *map, const void *key, size_t len,
                                      moirai_map_update_cb fn, void *arg, void **value);

/* Looks `key` up and copies its value to `*value` (which may be NULL to
 * test presence only). The entry is read inside an RCU read-side critical
 * section, so the copy is consistent; the pointed-to object is yours to
 * protect (see "Values and their lifetime"): called inside the caller's
 * own moirai_rcu_read_lock() section, an object that updaters retire with
 * moirai_rcu_call() after removing or replacing it stays valid until the
 * caller's moirai_rcu_read_unlock().
 * Lock-free, wait-free with respect to updaters; never blocks; never
 * allocates (except RCU registration on a thread's first call). Acquire
 * with respect to the update that stored the value.
 * Errors: -ENOENT (no such key; `*value` untouched); -EINVAL (`map` NULL, or
 * `key` NULL with `len` > 0); -ENOMEM (this thread's one-time RCU
 * registration failed, see rcu.h). */
MOIRAI_SYNC_API int moirai_map_lookup(moirai_map_t *map, const void *key, size_t len, void **value);

/* Calls `cb(arg, key, len, value)` for the entries of the map, inside one
 * RCU read-side critical section, in no particular order. Stops when `cb`
 * returns non-zero and returns that value; returns 0 after the last entry.
 * Under concurrent updates: every key present for the whole iteration is
 * visited exactly once; a key inserted or removed during it may or may not
 * be visited; a key replaced during it is visited once, with either value;
 * a key removed and inserted again during it may be visited twice. It is
 * not a snapshot. Each visited value is ordered like a lookup's result.
 * `cb` may call lookup, insert, replace and remove on this map or others,
 * but must not block for long (it delays every grace period, hence memory
 * reclamation, for the whole process) and must not call
 * moirai_map_destroy(), moirai_rcu_synchronize() or moirai_rcu_barrier().
 * Lock-free; never blocks by itself.
 * Errors: -EINVAL if `map` or `cb` is NULL; -ENOMEM if this thread's
 * one-time RCU registration failed (see rcu.h); `cb` is then never
 * called. */
MOIRAI_SYNC_API int moirai_map_iterate(moirai_map_t *map, moirai_map_iter_cb cb, void *arg);

/* The number of entries, approximate under concurrency: exact when no
 * insert, replace or remove runs concurrently with the call (every one
 * that happened-before it is counted); otherwise it may be off by the
 * number of updates that run during the call, and it is never negative.
 * O(number of CPUs): it sums per-thread-group counters that updaters bump
 * without sharing a cache line. Relaxed: it orders nothing. Lock-free;
 * never blocks. Returns 0 for a NULL map. */
MOIRAI_SYNC_API size_t moirai_map_count(const moirai_map_t *map);

/* Fills `*out` with `map`'s entry count, bucket array size and number of
 * resizes. Each field is read on its own (relaxed): under concurrent
 * updates they need not agree with each other. Never blocks; thread-safe.
 * Errors: -EINVAL if `map` or `out` is NULL. */
MOIRAI_SYNC_API int moirai_map_stats(const moirai_map_t *map, moirai_map_stats_t *out);

#ifdef __cplusplus
}
#endif

#endif

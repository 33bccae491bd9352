/* A chained hash table keyed by 64-bit ids, for the tasks a node waits
 * for (remote_spawn.c) and the tasks it runs for a peer (remote_exec.c).
 * Intrusive: entries embed a struct hnode. Not thread-safe: its owner
 * guards it with a lock. */
#ifndef MOIRAI_TRANSPORT_HTAB_H
#define MOIRAI_TRANSPORT_HTAB_H

#include <stddef.h>
#include <stdint.h>

struct hnode {
    struct hnode *next;
    uint64_t key;
};

struct htab {
    struct hnode **buckets;
    size_t nbuckets; /* a power of two, or 0 before the first insert */
    size_t count;
    size_t cursor; /* where moirai__htab_pop() looks first */
};

/* Inserts `n` under `n->key` (keys are unique: the caller checks).
 * Returns 0 or -ENOMEM (only when the very first bucket array cannot be
 * allocated; a failed growth keeps the old array, only longer chains). */
int moirai__htab_insert(struct htab *t, struct hnode *n);
/* The entry with `key`, or NULL. */
struct hnode *moirai__htab_find(const struct htab *t, uint64_t key);
/* Removes and returns the entry with `key`, or NULL. */
struct hnode *moirai__htab_remove(struct htab *t, uint64_t key);
/* Removes and returns any entry, or NULL when empty. */
struct hnode *moirai__htab_pop(struct htab *t);
/* Frees the bucket array (the entries are the caller's). */
void moirai__htab_fini(struct htab *t);

/* Iterates: for (b = 0; b < t->nbuckets; b++) for (n = t->buckets[b]; ...) */

#endif

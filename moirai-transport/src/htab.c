/* The id-keyed hash table (see htab.h). Ids are issued by a counter, so a
 * multiplicative hash spreads them well enough; the table doubles when it
 * holds twice as many entries as buckets, keeping chains short. */
#include "htab.h"

#include <errno.h>

#include <moirai/core/alloc.h>

static size_t slot(uint64_t key, size_t nbuckets)
{
    return (size_t)((key * 0x9e3779b97f4a7c15ull) >> 32) & (nbuckets - 1);
}

static void grow(struct htab *t)
{
    size_t nb = t->nbuckets * 2;
    struct hnode **b = moirai_calloc(nb, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct hnode *n = t->buckets[i];
        while (n) {
            struct hnode *next = n->next;
            size_t s = slot(n->key, nb);
            n->next = b[s];
            b[s] = n;
            n = next;
        }
    }
    moirai_free(t->buckets);
    t->buckets = b;
    t->nbuckets = nb;
    t->cursor = 0;
}

int moirai__htab_insert(struct htab *t, struct hnode *n)
{
    if (t->nbuckets == 0) {
        t->buckets = moirai_calloc(64, sizeof *t->buckets);
        if (!t->buckets)
            return -ENOMEM;
        t->nbuckets = 64;
    } else if (t->count >= 2 * t->nbuckets) {
        grow(t);
    }
    size_t s = slot(n->key, t->nbuckets);
    n->next = t->buckets[s];
    t->buckets[s] = n;
    t->count++;
    return 0;
}

struct hnode *moirai__htab_find(const struct htab *t, uint64_t key)
{
    if (t->nbuckets == 0)
        return NULL;
    for (struct hnode *n = t->buckets[slot(key, t->nbuckets)]; n; n = n->next)
        if (n->key == key)
            return n;
    return NULL;
}

struct hnode *moirai__htab_remove(struct htab *t, uint64_t key)
{
    if (t->nbuckets == 0)
        return NULL;
    for (struct hnode **p = &t->buckets[slot(key, t->nbuckets)]; *p; p = &(*p)->next) {
        if ((*p)->key == key) {
            struct hnode *n = *p;
            *p = n->next;
            t->count--;
            return n;
        }
    }
    return NULL;
}

struct hnode *moirai__htab_pop(struct htab *t)
{
    /* Buckets before the cursor were found empty by earlier pops and
     * stay so unless an insert refilled them, so a draining loop costs
     * O(buckets + entries), not their product. */
    for (int pass = 0; pass < 2 && t->count > 0; pass++) {
        for (size_t i = pass ? 0 : t->cursor; i < t->nbuckets; i++) {
            struct hnode *n = t->buckets[i];
            if (n) {
                t->buckets[i] = n->next;
                t->count--;
                t->cursor = i;
                return n;
            }
        }
    }
    return NULL;
}

void moirai__htab_fini(struct htab *t)
{
    moirai_free(t->buckets);
    t->buckets = NULL;
    t->nbuckets = 0;
    t->count = 0;
    t->cursor = 0;
}

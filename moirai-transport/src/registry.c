/* The registry of task functions: the only names a peer can call. A
 * sorted array under a lock; registration is rare and lookups are a
 * binary search, so a spawn frame costs a few comparisons. */
#include <errno.h>
#include <string.h>

#include <moirai/core/alloc.h>

#include "node_internal.h"

static int cmp_name(const uint8_t *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c != 0)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/* The index of `name`, or where it would go (as ~index). */
static long search(const struct moirai_node *node, const uint8_t *name, size_t len)
{
    size_t lo = 0, hi = node->nreg;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_name(name, len, node->reg[mid].name);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return ~(long)lo;
}

int moirai_node_register(moirai_node_t *node, const char *name, moirai_remote_fn fn, void *arg)
{
    if (!node || !name || !fn)
        return -EINVAL;
    size_t len = strnlen(name, FRAME_NAME_MAX + 1);
    if (!moirai__frame_name_valid((const uint8_t *)name, len))
        return -EINVAL;
    int rc = 0;
    moirai_mutex_lock(&node->reg_lock);
    long at = search(node, (const uint8_t *)name, len);
    if (at >= 0) {
        rc = -EEXIST;
        goto out;
    }
    if (node->nreg == node->capreg) {
        size_t cap = node->capreg ? node->capreg * 2 : 8;
        struct reg_entry *r = moirai_realloc(node->reg, cap * sizeof *r);
        if (!r) {
            rc = -ENOMEM;
            goto out;
        }
        node->reg = r;
        node->capreg = cap;
    }
    size_t i = (size_t)~at;
    memmove(&node->reg[i + 1], &node->reg[i], (node->nreg - i) * sizeof *node->reg);
    memcpy(node->reg[i].name, name, len);
    node->reg[i].name[len] = '\0';
    node->reg[i].fn = fn;
    node->reg[i].arg = arg;
    node->nreg++;
out:
    moirai_mutex_unlock(&node->reg_lock);
    return rc;
}

moirai_remote_fn moirai__registry_find(struct moirai_node *node, const uint8_t *name, size_t len,
                                       void **arg)
{
    moirai_remote_fn fn = NULL;
    moirai_mutex_lock(&node->reg_lock);
    long at = search(node, name, len);
    if (at >= 0) {
        fn = node->reg[at].fn;
        *arg = node->reg[at].arg;
    }
    moirai_mutex_unlock(&node->reg_lock);
    return fn;
}

void moirai__registry_fini(struct moirai_node *node)
{
    moirai_free(node->reg);
    node->reg = NULL;
    node->nreg = node->capreg = 0;
}

/* Data keys: the names of data a node holds, so that a spawn can run
 * where its data lives (MOIRAI_PLACEMENT_LOCALITY, remote_spawn.c).
 *
 * A node keeps its own keys in a sorted set under node->keys_lock and
 * tells its peers about them in KEY frames, one key per frame: every key
 * when a connection goes live, then each addition and removal as it
 * happens. Both are sent under keys_lock, and a connection is marked
 * synced under the same lock, so each peer sees the snapshot and then
 * every later change, in order, exactly once. What a peer announced is
 * kept in its member entry (node->lock) for the life of its connection:
 * a new connection (or a new incarnation) starts from an empty set, and
 * the set is dropped when the connection dies. A peer that announces more
 * than MOIRAI_NODE_KEYS_MAX keys is cut off, so a key holder cannot make
 * this node store more than that per peer. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <moirai/core/alloc.h>

#include "node_internal.h"

_Static_assert(MOIRAI_NODE_KEY_MAX == FRAME_NAME_MAX, "a data key is a frame name");

/* The index where the key is, or would be inserted; *found says which. */
static uint32_t find(const struct keyset *set, const uint8_t *key, size_t len, bool *found)
{
    uint32_t lo = 0, hi = set->count;
    *found = false;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const char *k = set->keys[mid];
        int c = strncmp(k, (const char *)key, len);
        if (c == 0 && k[len] != '\0')
            c = 1; /* k is longer, with `key` as its prefix */
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

bool moirai__keyset_has(const struct keyset *set, const uint8_t *key, size_t len)
{
    bool found;
    find(set, key, len, &found);
    return found;
}

/* Adds a key known to be absent at index `at`. Returns 0, -ENOSPC (full),
 * -ENOMEM. */
static int keyset_insert(struct keyset *set, uint32_t at, const uint8_t *key, size_t len)
{
    if (set->count == MOIRAI_NODE_KEYS_MAX)
        return -ENOSPC;
    if (set->count == set->cap) {
        uint32_t cap = set->cap ? set->cap * 2 : 8;
        if (cap > MOIRAI_NODE_KEYS_MAX)
            cap = MOIRAI_NODE_KEYS_MAX;
        void *nk = moirai_realloc(set->keys, (size_t)cap * sizeof *set->keys);
        if (!nk)
            return -ENOMEM;
        set->keys = nk;
        set->cap = cap;
    }
    memmove(set->keys + at + 1, set->keys + at, (size_t)(set->count - at) * sizeof *set->keys);
    memcpy(set->keys[at], key, len);
    set->keys[at][len] = '\0';
    set->count++;
    return 0;
}

static void keyset_erase(struct keyset *set, uint32_t at)
{
    memmove(set->keys + at, set->keys + at + 1, (size_t)(set->count - at - 1) * sizeof *set->keys);
    set->count--;
}

void moirai__keyset_clear(struct keyset *set)
{
    moirai_free(set->keys);
    set->keys = NULL;
    set->count = set->cap = 0;
}

/* Validates a key from the API; its length, or -EINVAL. */
static long key_len(const char *key)
{
    if (!key)
        return -EINVAL;
    size_t len = strnlen(key, FRAME_NAME_MAX + 1);
    if (!moirai__frame_name_valid((const uint8_t *)key, len))
        return -EINVAL;
    return (long)len;
}

/* Sends one KEY frame (keys_lock held). A closing connection refuses it;
 * its peer forgets every key with it, so nothing is lost. */
static void send_key(struct peer *p, uint8_t op, const char *key, size_t len)
{
    if (len > 0)
        moirai__peer_send(p, FRAME_KEY, 0, 0, &op, 1, key, len);
}

/* The connections a change must reach: every synced one, referenced.
 * keys_lock held, so no connection becomes synced meanwhile and the count
 * taken first is an upper bound. */
struct targets {
    struct peer **peers;
    size_t n;
};

static int targets_get(struct moirai_node *node, struct targets *t)
{
    size_t n = 0;
    t->peers = NULL;
    t->n = 0;
    moirai_mutex_lock(&node->lock);
    for (struct peer *p = node->conns; p; p = p->next)
        n += p->keys_synced;
    moirai_mutex_unlock(&node->lock);
    /* Keys change rarely: one allocation per change is no cost worth
     * avoiding with a fixed array, which would also leave this path
     * untested below its size. */
    if (n > 0) {
        t->peers = moirai_malloc(n * sizeof *t->peers);
        if (!t->peers)
            return -ENOMEM;
    }
    moirai_mutex_lock(&node->lock);
    for (struct peer *p = node->conns; p && t->n < n; p = p->next) {
        if (p->keys_synced) {
            moirai__peer_ref(p);
            t->peers[t->n++] = p;
        }
    }
    moirai_mutex_unlock(&node->lock);
    return 0;
}

/* Sends the change to every target and lets them go (keys_lock held). */
static void targets_send(struct targets *t, uint8_t op, const char *key, size_t len)
{
    for (size_t i = 0; i < t->n; i++) {
        send_key(t->peers[i], op, key, len);
        moirai__peer_unref(t->peers[i]);
    }
    moirai_free(t->peers);
}

int moirai_node_key_add(moirai_node_t *node, const char *key)
{
    long len = key_len(key);
    if (!node || len < 0)
        return -EINVAL;
    moirai_mutex_lock(&node->keys_lock);
    bool found;
    uint32_t at = find(&node->keys, (const uint8_t *)key, (size_t)len, &found);
    struct targets t;
    int rc = found ? -EEXIST : targets_get(node, &t);
    if (rc == 0) {
        rc = keyset_insert(&node->keys, at, (const uint8_t *)key, (size_t)len);
        /* On failure nobody is told: the list is let go empty-handed. */
        targets_send(&t, FRAME_KEY_ADD, key, rc == 0 ? (size_t)len : 0);
    }
    moirai_mutex_unlock(&node->keys_lock);
    return rc;
}

int moirai_node_key_remove(moirai_node_t *node, const char *key)
{
    long len = key_len(key);
    if (!node || len < 0)
        return -EINVAL;
    moirai_mutex_lock(&node->keys_lock);
    bool found;
    uint32_t at = find(&node->keys, (const uint8_t *)key, (size_t)len, &found);
    struct targets t;
    int rc = found ? targets_get(node, &t) : -ENOENT;
    if (rc == 0) {
        keyset_erase(&node->keys, at);
        targets_send(&t, FRAME_KEY_REMOVE, key, (size_t)len);
    }
    moirai_mutex_unlock(&node->keys_lock);
    return rc;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

long moirai_node_key_holders(moirai_node_t *node, const char *key, uint64_t *ids, size_t max)
{
    long len = key_len(key);
    if (!node || len < 0 || (!ids && max > 0))
        return -EINVAL;
    size_t n = 0;
    moirai_mutex_lock(&node->lock);
    for (size_t i = 0; i < node->nmembers; i++) {
        struct member *m = &node->members[i];
        if (m->state == MEMBER_ALIVE && m->peer &&
            atomic_load_explicit(&m->peer->state, memory_order_relaxed) == PEER_LIVE &&
            moirai__keyset_has(&m->keys, (const uint8_t *)key, (size_t)len)) {
            if (n < max)
                ids[n] = m->id;
            n++;
        }
    }
    moirai_mutex_unlock(&node->lock);
    if (ids && n > 0)
        qsort(ids, n < max ? n : max, sizeof *ids, cmp_u64);
    return (long)n;
}

int moirai__keys_apply(struct peer *p, const struct frame *f)
{
    struct moirai_node *node = p->node;
    int rc = 0;
    moirai_mutex_lock(&node->lock);
    struct keyset *set = &p->m->keys;
    bool found;
    uint32_t at = find(set, f->u.key.name, f->u.key.len, &found);
    if (f->u.key.op == FRAME_KEY_ADD && !found)
        rc = keyset_insert(set, at, f->u.key.name, f->u.key.len);
    else if (f->u.key.op == FRAME_KEY_REMOVE && found)
        keyset_erase(set, at);
    moirai_mutex_unlock(&node->lock);
    return rc == -ENOSPC ? -EPROTO : rc;
}

void moirai__keys_sync(struct peer *p)
{
    struct moirai_node *node = p->node;
    moirai_mutex_lock(&node->keys_lock);
    p->keys_synced = true;
    for (uint32_t i = 0; i < node->keys.count; i++)
        send_key(p, FRAME_KEY_ADD, node->keys.keys[i], strlen(node->keys.keys[i]));
    moirai_mutex_unlock(&node->keys_lock);
}

void moirai__keys_fini(struct moirai_node *node)
{
    moirai__keyset_clear(&node->keys);
    for (size_t i = 0; i < node->nmembers; i++)
        moirai__keyset_clear(&node->members[i].keys);
}

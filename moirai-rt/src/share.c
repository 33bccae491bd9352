/* Proportional share: the exact split of a window and a stride scheduler.
 * Pass values are kept as (time * SCALE / weight) in 128 bits so that
 * weights up to 2^32 and charges of any 64-bit size neither overflow nor
 * lose the fraction that decides ties between close clients. */
#include <errno.h>
#include <string.h>

#include <moirai/core/alloc.h>
#include <moirai/rt/share.h>

/* 128-bit products (a GNU extension; -Wpedantic wants it marked). */
__extension__ typedef unsigned __int128 u128;

#define MAX_CLIENTS 65536u
#define PASS_SCALE  ((u128)1 << 32)

struct moirai_rt_share {
    size_t n;
    uint32_t *weight;
    u128 *pass;
    uint64_t *used;
};

int moirai_rt_share_split(const uint32_t *weights, size_t n, uint64_t window_ns, uint64_t *out)
{
    if (n > MAX_CLIENTS || (n > 0 && (!weights || !out)))
        return -EINVAL;
    u128 total = 0;
    for (size_t i = 0; i < n; i++)
        total += weights[i];
    if (n > 0 && total == 0)
        return -EINVAL;
    uint64_t given = 0;
    for (size_t i = 0; i < n; i++) {
        out[i] = (uint64_t)((u128)window_ns * weights[i] / total);
        given += out[i];
    }
    /* Hand the remainder out one ns at a time to the largest fractional
     * parts: at most n - 1 ns, each a pass over the clients. */
    uint64_t left = n ? window_ns - given : 0;
    while (left > 0) {
        size_t best = n;
        u128 best_frac = 0;
        for (size_t i = 0; i < n; i++) {
            u128 exact = (u128)window_ns * weights[i];
            u128 frac = exact - (u128)out[i] * total;
            /* A client already rounded up has frac "negative": skip it. */
            if (exact < (u128)out[i] * total)
                continue;
            if (weights[i] && (best == n || frac > best_frac)) {
                best = i;
                best_frac = frac;
            }
        }
        out[best]++;
        left--;
    }
    return 0;
}

int moirai_rt_share_create(moirai_rt_share_t **out, const uint32_t *weights, size_t n)
{
    if (!out || !weights || n == 0 || n > MAX_CLIENTS)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!weights[i])
            return -EINVAL;
    moirai_rt_share_t *s = moirai_calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->n = n;
    s->weight = moirai_calloc(n, sizeof(*s->weight));
    s->pass = moirai_calloc(n, sizeof(*s->pass));
    s->used = moirai_calloc(n, sizeof(*s->used));
    if (!s->weight || !s->pass || !s->used) {
        moirai_rt_share_destroy(s);
        return -ENOMEM;
    }
    memcpy(s->weight, weights, n * sizeof(*weights));
    *out = s;
    return 0;
}

void moirai_rt_share_destroy(moirai_rt_share_t *s)
{
    if (!s)
        return;
    moirai_free(s->weight);
    moirai_free(s->pass);
    moirai_free(s->used);
    moirai_free(s);
}

int moirai_rt_share_pick(const moirai_rt_share_t *s)
{
    if (!s)
        return -EINVAL;
    size_t best = 0;
    for (size_t i = 1; i < s->n; i++)
        if (s->pass[i] < s->pass[best])
            best = i;
    return (int)best;
}

int moirai_rt_share_charge(moirai_rt_share_t *s, int client, uint64_t used_ns)
{
    if (!s || client < 0 || (size_t)client >= s->n)
        return -EINVAL;
    s->pass[client] += (u128)used_ns * PASS_SCALE / s->weight[client];
    s->used[client] += used_ns;
    return 0;
}

int moirai_rt_share_set_weight(moirai_rt_share_t *s, int client, uint32_t weight)
{
    if (!s || client < 0 || (size_t)client >= s->n || !weight)
        return -EINVAL;
    s->weight[client] = weight;
    return 0;
}

uint64_t moirai_rt_share_used(const moirai_rt_share_t *s, int client)
{
    if (!s || client < 0 || (size_t)client >= s->n)
        return 0;
    return s->used[client];
}

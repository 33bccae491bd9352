/* moirai-bench, suite "sched": the skewed tree of tree_search_external,
 * shared by the Moirai side (bench_sched.c) and the TBB peer
 * (peer_tbb.cpp), so both search exactly the same tree.
 *
 * A subtree of `nodes` nodes with seed `seed` is one node, whose work is
 * TREE_NODE_WORK rounds of a 64-bit mix, and two child subtrees that split
 * the remaining nodes unevenly: the left one gets between 5% and 95% of
 * them, chosen by the seed. The tree is deterministic and has exactly
 * `nodes` nodes, but its shape is unbalanced at every level, as an
 * unbalanced tree search (UTS) is: which half is the big one is unknown
 * until it is split, so a static split of the work cannot balance it. The
 * search returns the sum of every node's value, which the bench checks
 * against a serial run. Compiles as C and C++. */
#ifndef MOIRAI_BENCH_SCHED_TREE_H
#define MOIRAI_BENCH_SCHED_TREE_H

#include <stdint.h>

/* About 1 us of work per node on the reference machine. */
#define TREE_NODE_WORK 300

/* splitmix64's finaliser. */
static inline uint64_t tree_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The value of one node (its work). */
static inline uint64_t tree_node_value(uint64_t seed)
{
    uint64_t r = seed;
    for (int k = 0; k < TREE_NODE_WORK; k++)
        r = tree_mix(r);
    return r & 0xffff;
}

/* How many of the `rest` nodes below a node go to its left subtree. */
static inline uint64_t tree_left_nodes(uint64_t seed, uint64_t rest)
{
    uint64_t pct = 5 + tree_mix(seed ^ 0x5bd1e995u) % 91; /* 5 .. 95 */
    return rest * pct / 100;
}

/* The seeds of the two children. */
static inline uint64_t tree_left_seed(uint64_t seed)
{
    return tree_mix(seed * 2 + 1);
}

static inline uint64_t tree_right_seed(uint64_t seed)
{
    return tree_mix(seed * 2 + 2);
}

/* The search run serially: the reference sum. */
static inline uint64_t tree_search_serial(uint64_t seed, uint64_t nodes)
{
    if (nodes == 0)
        return 0;
    uint64_t rest = nodes - 1, left = tree_left_nodes(seed, rest);
    return tree_node_value(seed) + tree_search_serial(tree_left_seed(seed), left) +
           tree_search_serial(tree_right_seed(seed), rest - left);
}

/* The root seed. */
#define TREE_ROOT_SEED 0x2545f4914f6cdd1dull

#endif

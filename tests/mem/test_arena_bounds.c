/* The arena's fit check at its exact edge: a request that fills the rest
 * of the current chunk to the byte is served from it, and one byte more is
 * not. An off-by-one in the check would hand out memory past the chunk's
 * end; the chunk count and the addresses show it in any build, where a
 * sanitizer could not (the arena unpoisons what it hands out). */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>

#include <moirai/mem/arena.h>

enum { CHUNK = 1024 };

static moirai_arena_stats_t stats_of(moirai_arena_t *a)
{
    moirai_arena_stats_t s;
    cr_assert_eq(moirai_arena_stats(a, &s), 0);
    return s;
}

/* True when `p` points into the chunk that starts at `base`, or just past
 * its end (where no other chunk's memory can start: a chunk's data follows
 * its header). */
static bool in_chunk(const char *base, const char *p)
{
    return p >= base && p <= base + CHUNK;
}

Test(arena_bounds, a_request_one_byte_larger_than_the_rest_takes_a_new_chunk, .timeout = 10)
{
    /* For every split of the chunk into a first request and the rest: the
     * rest fits exactly, one more byte never does. */
    for (size_t first = 1; first < CHUNK; first += 37) {
        size_t rest = CHUNK - first;
        for (int over = 0; over < 2; over++) {
            moirai_arena_t *a;
            cr_assert_eq(moirai_arena_create(&a, CHUNK), 0);
            char *base;
            /* Alignment 1 everywhere, so that no padding hides the edge. */
            cr_assert_eq(moirai_arena_alloc(a, first, 1, (void **)&base), 0);
            char *p;
            cr_assert_eq(moirai_arena_alloc(a, rest + (size_t)over, 1, (void **)&p), 0);
            memset(p, 0x5a, rest + (size_t)over);
            moirai_arena_stats_t s = stats_of(a);
            if (over == 0) {
                cr_assert_eq(p, base + first, "an exact fit is served from the current chunk");
                cr_assert_eq(s.chunks, 1);
                /* The chunk is full now: a single byte needs a new one. */
                char *q;
                cr_assert_eq(moirai_arena_alloc(a, 1, 1, (void **)&q), 0);
                cr_assert_not(in_chunk(base, q), "a byte past the full chunk was handed out");
                cr_assert_eq(stats_of(a).chunks, 2);
            } else {
                cr_assert_not(in_chunk(base, p),
                              "first %zu: %zu bytes handed out where %zu were left", first,
                              rest + 1, rest);
                cr_assert_eq(s.chunks, 2);
            }
            moirai_arena_destroy(a);
        }
    }
}

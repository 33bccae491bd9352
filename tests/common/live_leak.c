/* Tests of the live-allocation check itself (live.c), run by
 * check_live_leak.py: the leaking tests here must fail, naming what they
 * leaked, and the others must pass. */
#include <criterion/criterion.h>

#include <moirai/core/alloc.h>

#include "oom.h"

static void *kept;

Test(live, a_block_left_live_fails_the_test)
{
    kept = moirai_malloc(24);
    cr_assert_not_null(kept);
}

Test(live, a_block_made_by_calloc_and_grown_by_realloc_is_counted)
{
    void *p = moirai_calloc(3, 8);
    cr_assert_not_null(p);
    kept = moirai_realloc(p, 4000);
    cr_assert_not_null(kept);
}

Test(live, blocks_freed_by_the_end_pass)
{
    void *p = moirai_malloc(10);
    void *q = moirai_aligned_alloc(256, 100);
    cr_assert(p != NULL && q != NULL);
    p = moirai_realloc(p, 5000);
    cr_assert_not_null(p);
    moirai_free(p);
    moirai_free(q);
}

static void free_kept(void)
{
    moirai_free(kept);
}

Test(live, a_block_freed_by_the_teardown_passes, .fini = free_kept)
{
    kept = moirai_malloc(24);
    cr_assert_not_null(kept);
}

Test(live, an_unchecked_test_is_not_checked, .init = moirai_test_live_unchecked)
{
    kept = moirai_malloc(24);
    cr_assert_not_null(kept);
}

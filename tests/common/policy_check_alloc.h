/* An allocator (for moirai_set_allocator()) that checks, for every block
 * it frees, that the block carries no NUMA memory policy any more: code
 * that binds memory to a node must reset the binding before it hands the
 * memory back. checked_frees counts the blocks it could ask the kernel
 * about, bound_frees those still bound. Header-only. */
#ifndef MOIRAI_TEST_POLICY_CHECK_ALLOC_H
#define MOIRAI_TEST_POLICY_CHECK_ALLOC_H

#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/mempolicy.h>

#include <moirai/core/alloc.h>

static atomic_long checked_frees, bound_frees;

static void *chk_malloc(void *ctx, size_t size)
{
    (void)ctx;
    return malloc(size);
}
static void *chk_calloc(void *ctx, size_t n, size_t size)
{
    (void)ctx;
    return calloc(n, size);
}
static void *chk_realloc(void *ctx, void *p, size_t size)
{
    (void)ctx;
    return realloc(p, size);
}
static void *chk_aligned(void *ctx, size_t align, size_t size)
{
    void *p;

    (void)ctx;
    return posix_memalign(&p, align, size) == 0 ? p : NULL;
}
static void chk_free(void *ctx, void *p)
{
    int mode = -1;

    (void)ctx;
    if (p != NULL &&
        syscall(SYS_get_mempolicy, &mode, NULL, 0ul, p, (unsigned long)MPOL_F_ADDR) == 0) {
        atomic_fetch_add(&checked_frees, 1);
        if ((mode & 0xff) != MPOL_DEFAULT)
            atomic_fetch_add(&bound_frees, 1);
    }
    free(p);
}

static const moirai_allocator_t checking_allocator = {
    chk_malloc, chk_calloc, chk_realloc, chk_aligned, chk_free, NULL,
};

#endif

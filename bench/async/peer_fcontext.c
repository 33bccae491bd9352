/* moirai-bench, suite "async": the Boost.Context peer of fiber_switch,
 * impl "fcontext" (see peer.h).
 *
 * make_fcontext and jump_fcontext are the assembly switch under every
 * Boost.Context and Boost.Fiber context; libboost_context exports them
 * with C linkage, so this module is C and declares them itself (their
 * header, boost/context/detail/fcontext.hpp, is C++ only). It is a module
 * of its own, loaded with dlopen(RTLD_LOCAL), so that moirai-bench does not
 * link Boost. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "peer.h"

/* The declarations of boost/context/detail/fcontext.hpp (Boost 1.81). */
typedef void *fcontext_t;
typedef struct transfer_t {
    fcontext_t fctx;
    void *data;
} transfer_t;
transfer_t jump_fcontext(fcontext_t const to, void *vp);
fcontext_t make_fcontext(void *sp, size_t size, void (*fn)(transfer_t));

#define STACK_SIZE ((size_t)64 * 1024)

/* The other side of the ping-pong: switches straight back, forever. It is
 * abandoned, suspended, when the measurement ends; it owns nothing. */
static void pong(transfer_t t)
{
    for (;;)
        t = jump_fcontext(t.fctx, NULL);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double moirai_peer_fiber_switch(uint64_t switches)
{
    char *stack = malloc(STACK_SIZE);
    if (!stack)
        return -1.0;
    /* The stack grows down: make_fcontext takes its top. */
    fcontext_t f = make_fcontext(stack + STACK_SIZE, STACK_SIZE, pong);
    /* The first round trip, untimed, runs pong's entry. */
    transfer_t t = jump_fcontext(f, NULL);
    uint64_t pairs = switches / 2 ? switches / 2 : 1;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < pairs; i++)
        t = jump_fcontext(t.fctx, NULL);
    uint64_t t1 = now_ns();
    free(stack);
    return (double)(t1 - t0) / (double)(2 * pairs);
}

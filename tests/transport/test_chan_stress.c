/* Long runs of the many-producer many-consumer check (chan_mpmc.h):
 * 4 producers x 4 consumers, threads and fibers mixed, 10^6 messages
 * (MOIRAI_TEST_CHAN_MESSAGES overrides; divided by MOIRAI_TEST_SCALE under
 * sanitizers), each kind of channel. */
#include "chan_mpmc.h"

#include "../async/async_test_util.h"
#include "test_scale.h"

static moirai_runtime_t *rt;

static void setup(void)
{
    rt = make_runtime(2);
}

static void teardown(void)
{
    drop_runtime(rt);
}

TestSuite(chan_stress, .init = setup, .fini = teardown, .timeout = 600);

static uint64_t messages(void)
{
    return (uint64_t)scaled(env_long("MOIRAI_TEST_CHAN_MESSAGES", 1000000));
}

Test(chan_stress, bounded_1024_4x4)
{
    mpmc_run(rt, 1024, 4, 4, messages());
}

Test(chan_stress, bounded_4_4x4)
{
    mpmc_run(rt, 4, 4, 4, messages());
}

Test(chan_stress, unbounded_4x4)
{
    mpmc_run(rt, MOIRAI_CHAN_UNBOUNDED, 4, 4, messages());
}

Test(chan_stress, rendezvous_4x4)
{
    mpmc_run(rt, 0, 4, 4, messages());
}

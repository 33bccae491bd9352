#include <moirai/sched/version.h>

const char *moirai_sched_version(void)
{
    return MOIRAI_SCHED_VERSION_STRING;
}

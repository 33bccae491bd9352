#include <moirai/rt/version.h>

const char *moirai_rt_version(void)
{
    return MOIRAI_RT_VERSION_STRING;
}

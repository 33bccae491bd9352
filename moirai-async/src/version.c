#include <moirai/async/version.h>

const char *moirai_async_version(void)
{
    return MOIRAI_ASYNC_VERSION_STRING;
}

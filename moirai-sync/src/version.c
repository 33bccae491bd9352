#include <moirai/sync/version.h>

const char *moirai_sync_version(void)
{
    return MOIRAI_SYNC_VERSION_STRING;
}

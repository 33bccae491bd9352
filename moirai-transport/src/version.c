#include <moirai/transport/version.h>

const char *moirai_transport_version(void)
{
    return MOIRAI_TRANSPORT_VERSION_STRING;
}

#include <moirai/mem/version.h>

const char *moirai_mem_version(void)
{
    return MOIRAI_MEM_VERSION_STRING;
}

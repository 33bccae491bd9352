/* The version of the library actually loaded. The string comes from the
 * header generated at build time, so a program compiled against other
 * headers can compare it with its own MOIRAI_CORE_VERSION_STRING. */
#include <moirai/core/version.h>

const char *moirai_core_version(void)
{
    return MOIRAI_CORE_VERSION_STRING;
}

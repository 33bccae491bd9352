/* The library and its headers agree on the version. */
#include <criterion/criterion.h>

#include <string.h>

#include <moirai/transport.h>

Test(transport_version, library_matches_headers)
{
    cr_assert_str_eq(moirai_transport_version(), MOIRAI_TRANSPORT_VERSION_STRING);
    cr_assert_eq(MOIRAI_TRANSPORT_VERSION_MAJOR, 0);
}

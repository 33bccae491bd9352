#include <criterion/criterion.h>

Test(placeholder_topology, being_written)
{
    cr_assert(1);
}

#include <criterion/criterion.h>

Test(placeholder_park, being_written)
{
    cr_assert(1);
}

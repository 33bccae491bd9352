#include <criterion/criterion.h>

Test(placeholder_park_stress, being_written)
{
    cr_assert(1);
}

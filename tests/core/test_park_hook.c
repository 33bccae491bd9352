#include <criterion/criterion.h>

Test(placeholder_park_hook, being_written)
{
    cr_assert(1);
}

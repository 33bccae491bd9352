#include <criterion/criterion.h>

Test(placeholder_handle, being_written)
{
    cr_assert(1);
}

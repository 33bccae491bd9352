#include <criterion/criterion.h>

Test(placeholder_task, being_written)
{
    cr_assert(1);
}

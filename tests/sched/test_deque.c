/* Placeholder until this suite is written. */
#include <criterion/criterion.h>

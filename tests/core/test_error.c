/* Error names and descriptions, and the version string. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include <moirai/core/error.h>
#include <moirai/core/version.h>

static const struct {
    int code;
    const char *name;
} codes[] = {
    {MOIRAI_EINVAL, "EINVAL"},       {MOIRAI_ENOMEM, "ENOMEM"},     {MOIRAI_ETIMEDOUT, "ETIMEDOUT"},
    {MOIRAI_ECANCELED, "ECANCELED"}, {MOIRAI_EAGAIN, "EAGAIN"},     {MOIRAI_EPIPE, "EPIPE"},
    {MOIRAI_EBUSY, "EBUSY"},         {MOIRAI_EALREADY, "EALREADY"}, {MOIRAI_ENOENT, "ENOENT"},
    {MOIRAI_EEXIST, "EEXIST"},       {MOIRAI_ENOSYS, "ENOSYS"},     {MOIRAI_EPERM, "EPERM"},
    {MOIRAI_EOVERFLOW, "EOVERFLOW"}, {MOIRAI_EDEADLK, "EDEADLK"},   {MOIRAI_ENOTSUP, "ENOTSUP"},
    {MOIRAI_ESHUTDOWN, "ESHUTDOWN"}, {MOIRAI_ERANGE, "ERANGE"},     {MOIRAI_EIO, "EIO"},
};
#define NCODES ((int)(sizeof(codes) / sizeof(codes[0])))

Test(error, every_code_has_a_distinct_known_name_and_description, .timeout = 10)
{
    for (int i = 0; i < NCODES; i++) {
        const char *desc = moirai_strerror(codes[i].code);
        const char *name = moirai_err_name(codes[i].code);

        cr_assert(codes[i].code < 0, "MOIRAI_ codes are negative errno values");
        cr_assert_str_eq(name, codes[i].name);
        cr_assert_str_neq(desc, "unknown error", "%s has no description", codes[i].name);
        cr_assert(strlen(desc) > 0);
        for (int j = 0; j < i; j++) {
            cr_assert_neq(codes[i].code, codes[j].code, "%s aliases %s", codes[i].name,
                          codes[j].name);
            cr_assert_str_neq(desc, moirai_strerror(codes[j].code), "%s and %s share a description",
                              codes[i].name, codes[j].name);
            cr_assert_str_neq(name, moirai_err_name(codes[j].code));
        }
    }
}

Test(error, lookups_ignore_the_sign, .timeout = 10)
{
    for (int i = 0; i < NCODES; i++) {
        cr_assert_eq(moirai_strerror(codes[i].code), moirai_strerror(-codes[i].code));
        cr_assert_eq(moirai_err_name(codes[i].code), moirai_err_name(-codes[i].code));
    }
    /* The positive form is what errno itself holds. */
    cr_assert_str_eq(moirai_err_name(ETIMEDOUT), "ETIMEDOUT");
    cr_assert_str_eq(moirai_err_name(-ECANCELED), "ECANCELED");
}

Test(error, zero_is_success, .timeout = 10)
{
    cr_assert_eq(MOIRAI_OK, 0);
    cr_assert_str_eq(moirai_err_name(0), "OK");
    cr_assert_str_eq(moirai_strerror(0), "success");
}

Test(error, unknown_codes_say_so, .timeout = 10)
{
    const int unknown[] = {4095, -4095, 100000, -100000, INT_MAX, INT_MIN, INT_MIN + 1};

    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        cr_assert_str_eq(moirai_strerror(unknown[i]), "unknown error", "code %d", unknown[i]);
        cr_assert_str_eq(moirai_err_name(unknown[i]), "UNKNOWN", "code %d", unknown[i]);
    }
}

Test(error, pass_through_errno_values_are_described, .timeout = 10)
{
    /* Higher modules pass OS errors through; the common ones are named. */
    cr_assert_str_eq(moirai_err_name(-EINTR), "EINTR");
    cr_assert_str_eq(moirai_err_name(-ECONNREFUSED), "ECONNREFUSED");
    cr_assert_str_neq(moirai_strerror(-EBADF), "unknown error");
}

Test(version, library_matches_header, .timeout = 10)
{
    char expect[32];

    cr_assert_str_eq(moirai_core_version(), MOIRAI_CORE_VERSION_STRING);
    snprintf(expect, sizeof(expect), "%d.%d.%d", MOIRAI_CORE_VERSION_MAJOR,
             MOIRAI_CORE_VERSION_MINOR, MOIRAI_CORE_VERSION_PATCH);
    cr_assert_str_eq(moirai_core_version(), expect);
}

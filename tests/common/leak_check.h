/* Explicit leak checks for tests that must fail on a leak. Criterion
 * reports a test's result before LeakSanitizer's exit-time check runs, so
 * a leak would not fail the test; under ASan, check explicitly. Header-only:
 * a test includes it once, after <criterion/criterion.h>. */
#ifndef MOIRAI_TEST_LEAK_CHECK_H
#define MOIRAI_TEST_LEAK_CHECK_H

#include <criterion/criterion.h>

#if defined(__SANITIZE_ADDRESS__)
#define MOIRAI_TEST_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MOIRAI_TEST_LSAN 1
#endif
#endif
#ifdef MOIRAI_TEST_LSAN
#include <sanitizer/lsan_interface.h>
#define assert_no_leaks()                                                                          \
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "LeakSanitizer found leaks")
#else
#define assert_no_leaks() ((void)0)
#endif

/* A test whose body runs in a function of its own, followed by a leak
 * check: by then the body's frame is gone, so pointers left in its stack
 * slots cannot hide a leak from LeakSanitizer. */
#define LEAK_CHECKED_TEST(suite, name, ...)                                                        \
    static void suite##_##name##_body(void);                                                       \
    Test(suite, name, __VA_ARGS__)                                                                 \
    {                                                                                              \
        suite##_##name##_body();                                                                   \
        assert_no_leaks();                                                                         \
    }                                                                                              \
    static __attribute__((noinline)) void suite##_##name##_body(void)

#endif

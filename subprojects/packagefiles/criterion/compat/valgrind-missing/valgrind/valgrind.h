/*
 * Used only where the system has no <valgrind/valgrind.h> (Valgrind's own
 * header, which Criterion includes unconditionally with GCC and clang;
 * upstream ships it as the dependencies/valgrind git submodule, absent from
 * Debian's Criterion tarball, and Debian's valgrind source tarball is 16 MB
 * for this one header). These are the values Valgrind's header itself
 * gives when built with NVALGRIND: the program is taken as not running
 * under Valgrind, and the client requests that switch error reporting off
 * around Criterion's worker setup do nothing. Running the tests under
 * Valgrind then reports errors in that setup too, nothing else changes.
 */
#ifndef MOIRAI_CRITERION_VALGRIND_H
#define MOIRAI_CRITERION_VALGRIND_H

#define RUNNING_ON_VALGRIND 0
#define VALGRIND_DISABLE_ERROR_REPORTING                                                           \
    do {                                                                                           \
    } while (0)
#define VALGRIND_ENABLE_ERROR_REPORTING                                                            \
    do {                                                                                           \
    } while (0)

#endif

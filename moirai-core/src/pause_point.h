/* Pause points: named places inside a few-instruction race window where a
 * test can stop one thread while others act (internal, never installed).
 *
 * A race whose window is a few instructions wide (two completers of one
 * handle, a joiner announcing itself while the result is published) is
 * reached by luck in a stress test, if ever. A test that compiles the
 * source into itself with -DMOIRAI_TEST_PAUSE_POINTS defines
 * moirai__test_pause(), which every MOIRAI_PAUSE_POINT() then calls with
 * its name, and can hold the thread there for as long as it needs
 * (tests/core/test_handle_pause.c). In the library the macro is nothing. */
#ifndef MOIRAI_CORE_PAUSE_POINT_H
#define MOIRAI_CORE_PAUSE_POINT_H

#ifdef MOIRAI_TEST_PAUSE_POINTS
void moirai__test_pause(const char *point);
#define MOIRAI_PAUSE_POINT(name) moirai__test_pause(name)
#else
#define MOIRAI_PAUSE_POINT(name) ((void)0)
#endif

#endif

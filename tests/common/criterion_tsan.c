/* Lets Criterion 2.4 start under ThreadSanitizer.
 *
 * Criterion's sandbox (BoxFort) maps a shared arena at a random address
 * between 0x2000'0000'0000 and 0x6000'0000'0000, probing with mincore()
 * and giving up after a few tries. ThreadSanitizer reserves almost all of
 * that range for its shadow memory, so most probes hit a reservation and
 * the runner aborts with "Could not initialize inheritable arena" or
 * crashes (Criterion issue #274). The only application range TSan leaves
 * free there is 0x5500'0000'0000-0x5680'0000'0000, where the kernel puts
 * PIE executables below 0x5656'0000'0000.
 *
 * BoxFort draws its probe from rand_r(). This definition, linked into
 * TSan test binaries only, interposes on the C library's: it computes
 * glibc's exact rand_r sequence, and when the caller is libcriterion it
 * folds the number into an offset that lands in the free range above the
 * executable (BoxFort's base is 0x2000'0000'0000 plus the number times
 * 16 MiB). Every other caller gets the ordinary result. */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

/* (0x5660'0000'0000 - 0x2000'0000'0000) / 16 MiB; 0x2000 steps of 16 MiB
 * stay below 0x5680'0000'0000. */
#define ARENA_SLOT_FIRST 0x366000
#define ARENA_SLOT_MASK  0x1fff

int rand_r(unsigned int *seed)
{
    unsigned int next = *seed;
    int result;

    next = next * 1103515245u + 12345u;
    result = (int)((next / 65536u) % 2048u);
    next = next * 1103515245u + 12345u;
    result = (result << 10) ^ (int)((next / 65536u) % 1024u);
    next = next * 1103515245u + 12345u;
    result = (result << 10) ^ (int)((next / 65536u) % 1024u);
    *seed = next;

    Dl_info info;
    if (dladdr(__builtin_return_address(0), &info) && info.dli_fname &&
        strstr(info.dli_fname, "libcriterion"))
        return ARENA_SLOT_FIRST + (result & ARENA_SLOT_MASK);
    return result;
}

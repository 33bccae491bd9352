/* Backtraces of worker threads for dumps (see moirai/sched/dump.h).
 *
 * glibc's backtrace() walks the unwind tables, so it needs no frame
 * pointers, and it can only walk the calling thread. For another thread
 * the dump raises MOIRAI_SCHED_DUMP_SIGNAL on it; the handler, running on
 * that thread on top of whatever it was doing, takes the backtrace into
 * the one request slot below and wakes the dump with a raw futex wake
 * (the only thing it does besides backtrace(): no lock, no allocation,
 * nothing that could deadlock with the code it interrupted). backtrace()
 * is called once by the dump itself before the handler is installed,
 * because its first call loads libgcc's unwinder with dlopen(), which is
 * not safe in a signal handler; after that it only reads unwind tables.
 *
 * The request slot: `state` holds a generation (above the low two bits)
 * and a phase. The dump sets REQUESTED with a new generation and signals;
 * the handler of the target thread moves REQUESTED to WRITING (CAS), fills
 * the frames and stores DONE. A dump that times out moves REQUESTED back
 * to IDLE (CAS): whichever CAS wins decides, so a late handler never
 * writes frames a later request reads, and a dump that lost the race to a
 * handler already WRITING waits for its DONE (backtrace() is bounded).
 * Only one request is in flight at a time: dumps hold the registry lock
 * (dump.c). */
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <moirai/core/clock.h>
#include <moirai/sched/dump.h>

#include "backtrace.h"

#define PHASE_IDLE      0u
#define PHASE_REQUESTED 1u
#define PHASE_WRITING   2u
#define PHASE_DONE      3u
#define PHASE_MASK      3u

/* How long a dump waits for a thread to answer. */
#define ANSWER_NS (200 * MOIRAI_NS_PER_MS)

static struct {
    _Atomic uint32_t state;
    pthread_t target; /* written before REQUESTED is published */
    int count;        /* written by the handler before DONE */
    void *frames[MOIRAI__BACKTRACE_FRAMES];
} slot;

/* Under the registry lock (dump.c), like every use of `slot`. */
static bool installed;

static void on_signal(int sig)
{
    (void)sig;
    int saved = errno;
    /* Acquire: `target` was written before the request was published. */
    uint32_t st = atomic_load_explicit(&slot.state, memory_order_acquire);
    if ((st & PHASE_MASK) == PHASE_REQUESTED && pthread_equal(pthread_self(), slot.target) &&
        atomic_compare_exchange_strong_explicit(&slot.state, &st,
                                                (st & ~PHASE_MASK) | PHASE_WRITING,
                                                memory_order_acquire, memory_order_relaxed)) {
        /* Frame 0 is this handler: left out, the trace starts at the
         * signal frame over the interrupted code. */
        void *raw[MOIRAI__BACKTRACE_FRAMES + 1];
        int n = backtrace(raw, MOIRAI__BACKTRACE_FRAMES + 1);
        slot.count = n > 0 ? n - 1 : 0;
        for (int i = 1; i < n; i++)
            slot.frames[i - 1] = raw[i];
        /* Release: the dump, reading DONE with acquire, sees the frames. */
        atomic_store_explicit(&slot.state, (st & ~PHASE_MASK) | PHASE_DONE, memory_order_release);
        syscall(SYS_futex, &slot.state, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
    }
    errno = saved;
}

/* Installs the handler unless the process has one of its own. */
static int install(const char **why)
{
    if (installed)
        return 0;
    struct sigaction old;
    if (sigaction(MOIRAI_SCHED_DUMP_SIGNAL, NULL, &old) != 0) {
        *why = "the dump signal cannot be queried";
        return -EINVAL;
    }
    if ((old.sa_flags & SA_SIGINFO) || (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN)) {
        *why = "the process has its own handler for the dump signal";
        return -EBUSY;
    }
    /* Loads the unwinder now, outside any handler (see above). */
    void *prime[2];
    (void)backtrace(prime, 2);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* SA_RESTART: the interrupted job's system calls resume rather than
     * fail with EINTR, where the kernel allows it. */
    sa.sa_flags = SA_RESTART;
    if (sigaction(MOIRAI_SCHED_DUMP_SIGNAL, &sa, NULL) != 0) {
        *why = "the dump signal's handler cannot be installed";
        return -EINVAL;
    }
    installed = true;
    return 0;
}

int moirai__backtrace_thread(pthread_t thread, void **frames, const char **why)
{
    if (pthread_equal(thread, pthread_self()))
        return backtrace(frames, MOIRAI__BACKTRACE_FRAMES);
    int rc = install(why);
    if (rc != 0)
        return rc;
    uint32_t gen = atomic_load_explicit(&slot.state, memory_order_relaxed) & ~PHASE_MASK;
    gen += PHASE_MASK + 1;
    slot.target = thread;
    /* Release: the handler sees `target` with the request. */
    atomic_store_explicit(&slot.state, gen | PHASE_REQUESTED, memory_order_release);
    if (pthread_kill(thread, MOIRAI_SCHED_DUMP_SIGNAL) != 0) {
        atomic_store_explicit(&slot.state, gen | PHASE_IDLE, memory_order_relaxed);
        *why = "the signal could not be sent";
        return -ESRCH;
    }
    uint64_t deadline = moirai_clock_now_ns() + ANSWER_NS;
    for (;;) {
        /* Acquire: pairs with the handler's release of DONE. */
        uint32_t st = atomic_load_explicit(&slot.state, memory_order_acquire);
        if (st == (gen | PHASE_DONE)) {
            int n = slot.count;
            memcpy(frames, slot.frames, (size_t)n * sizeof *frames);
            atomic_store_explicit(&slot.state, gen | PHASE_IDLE, memory_order_relaxed);
            return n;
        }
        uint64_t now = moirai_clock_now_ns();
        if (st == (gen | PHASE_REQUESTED) && now >= deadline) {
            /* Relaxed: nothing is published by withdrawing the request. */
            if (atomic_compare_exchange_strong_explicit(&slot.state, &st, gen | PHASE_IDLE,
                                                        memory_order_relaxed,
                                                        memory_order_relaxed)) {
                *why = "the thread did not answer the dump signal within 200 ms (it blocks the "
                       "signal, or a sanitizer delays it over a system call)";
                return -ETIMEDOUT;
            }
            continue;
        }
        /* A plain futex wait, also from a fiber: the handler can only
         * make a raw futex wake (see above). WRITING waits untimed. */
        struct timespec ts = {0, 0}, *tsp = NULL;
        if (st == (gen | PHASE_REQUESTED)) {
            uint64_t left = deadline - now;
            ts.tv_sec = (time_t)(left / MOIRAI_NS_PER_S);
            ts.tv_nsec = (long)(left % MOIRAI_NS_PER_S);
            tsp = &ts;
        }
        syscall(SYS_futex, &slot.state, FUTEX_WAIT_PRIVATE, st, tsp, NULL, 0);
    }
}

int moirai__backtrace_print(FILE *out, const char *indent, void *const *frames, int n)
{
    for (int i = 0; i < n; i++) {
        Dl_info info;
        int rc;
        if (dladdr(frames[i], &info) != 0 && info.dli_fname != NULL) {
            const char *obj = strrchr(info.dli_fname, '/');
            obj = obj != NULL ? obj + 1 : info.dli_fname;
            if (info.dli_sname != NULL)
                rc =
                    fprintf(out, "%s#%d %p %s+0x%lx (%s)\n", indent, i, frames[i], info.dli_sname,
                            (unsigned long)((uintptr_t)frames[i] - (uintptr_t)info.dli_saddr), obj);
            else
                rc = fprintf(out, "%s#%d %p ?? (%s+0x%lx)\n", indent, i, frames[i], obj,
                             (unsigned long)((uintptr_t)frames[i] - (uintptr_t)info.dli_fbase));
        } else {
            rc = fprintf(out, "%s#%d %p ??\n", indent, i, frames[i]);
        }
        if (rc < 0)
            return -EIO;
    }
    return 0;
}

/* Fiber stacks (see stack.h): mapping, the zero-fill high-water mark and
 * canary, the cache, and the overflow handler. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <moirai/async/runtime.h>
#include <moirai/core/alloc.h>

#include "stack.h"

#if defined(__SANITIZE_ADDRESS__)
#define STACK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STACK_ASAN 1
#endif
#endif
#ifndef STACK_ASAN
#define STACK_ASAN 0
#endif
#if STACK_ASAN
#include <sanitizer/asan_interface.h>
/* Reads of a stack's memory from outside the code that ran on it: frames
 * a fiber left by switching away keep their AddressSanitizer redzones
 * poisoned, and reading them is not a bug here. */
#define NO_ASAN __attribute__((no_sanitize_address))
#else
#define NO_ASAN
#endif

/* Resident zero pages below what the last user touched are returned to
 * the kernel once they span more than this: scanning them again on every
 * reuse would cost more than faulting them back in when needed. */
#define STACK_TRIM_BYTES ((size_t)64 * 1024)

static size_t page_size(void)
{
    static size_t cached;
    size_t p = __atomic_load_n(&cached, __ATOMIC_RELAXED);

    if (p == 0) {
        /* Racing first calls store the same value; relaxed is enough. */
        p = (size_t)sysconf(_SC_PAGESIZE);
        __atomic_store_n(&cached, p, __ATOMIC_RELAXED);
    }
    return p;
}

int moirai__stack_size(size_t requested, size_t *usable)
{
    size_t page = page_size();

    if (requested == 0)
        requested = MOIRAI_FIBER_STACK_DEFAULT;
    if (requested < MOIRAI_FIBER_STACK_MIN || requested > MOIRAI_FIBER_STACK_MAX)
        return -EINVAL;
    *usable = (requested + page - 1) & ~(page - 1);
    return 0;
}

int moirai__stack_create(moirai__stack_t **out, size_t size)
{
    size_t usable, page = page_size();

    if (out == NULL || moirai__stack_size(size, &usable) != 0)
        return -EINVAL;
    moirai__stack_t *s = moirai_malloc(sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    /* MAP_NORESERVE: only touched pages count against overcommit, which is
     * the point of a large default stack. MAP_STACK: newer kernels then
     * keep transparent huge pages off it, which would make one touched
     * byte cost 2 MiB of a large stack. */
    void *map = mmap(NULL, usable + page, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (map == MAP_FAILED) {
        moirai_free(s);
        return -ENOMEM;
    }
    if (mprotect(map, page, PROT_NONE) != 0) {
        munmap(map, usable + page);
        moirai_free(s);
        return -ENOMEM;
    }
    s->guard = map;
    s->lo = (char *)map + page;
    s->size = usable;
    s->floor = (uintptr_t)moirai__stack_hi(s);
    s->window_resets = 0;
    s->next = NULL;
    *out = s;
    return 0;
}

void moirai__stack_destroy(moirai__stack_t *s)
{
    if (s == NULL)
        return;
#if STACK_ASAN
    /* The next mapping at these addresses must not inherit the redzones
     * of frames abandoned here. */
    ASAN_UNPOISON_MEMORY_REGION(s->lo, s->size);
#endif
    munmap(s->guard, s->size + page_size());
    moirai_free(s);
}

/* The lowest resident page of [lo, hi) (page-aligned bounds), or hi when
 * none is. */
static uintptr_t lowest_resident(uintptr_t lo, uintptr_t hi)
{
    size_t page = page_size();
    unsigned char vec[256];

    while (lo < hi) {
        size_t pages = (hi - lo) / page;
        if (pages > sizeof(vec))
            pages = sizeof(vec);
        if (mincore((void *)lo, pages * page, vec) != 0)
            return lo; /* cannot happen on our own mapping; scan it all */
        for (size_t i = 0; i < pages; i++)
            if (vec[i] & 1)
                return lo + i * page;
        lo += pages * page;
    }
    return hi;
}

/* The lowest non-zero word in [from, hi), or hi. `from` is 8-byte
 * aligned and `hi` page-aligned. Not seen by ThreadSanitizer either: a
 * dump (moirai__stack_used_racy()) scans the stack of a fiber that may be
 * running on another thread, a race by design (see stack.h). */
static NO_ASAN __attribute__((no_sanitize_thread)) uintptr_t lowest_nonzero(uintptr_t from,
                                                                            uintptr_t hi)
{
    const uint64_t *w = (const uint64_t *)from;
    const uint64_t *end = (const uint64_t *)hi;

    /* Single words up to a 64-byte boundary, then whole lines eight words
     * at a time (the OR of a line vectorises), then the line that holds
     * the first non-zero word, word by word. */
    while (((uintptr_t)w & 63) != 0 && w < end) {
        if (*w != 0)
            return (uintptr_t)w;
        w++;
    }
#if defined(__SSE2__)
    const __m128i zero = _mm_setzero_si128();
    while (w + 8 <= end) {
        const __m128i *v = (const __m128i *)w;
        __m128i any = _mm_or_si128(_mm_or_si128(_mm_load_si128(v), _mm_load_si128(v + 1)),
                                   _mm_or_si128(_mm_load_si128(v + 2), _mm_load_si128(v + 3)));
        if (_mm_movemask_epi8(_mm_cmpeq_epi8(any, zero)) != 0xffff)
            break;
        w += 8;
    }
#else
    while (w + 8 <= end) {
        uint64_t any = 0;
        for (int i = 0; i < 8; i++)
            any |= w[i];
        if (any != 0)
            break;
        w += 8;
    }
#endif
    for (; w < end; w++)
        if (*w != 0)
            return (uintptr_t)w;
    return hi;
}

/* The lowest non-zero word, and in *resident the lowest resident page. */
static uintptr_t deepest(const moirai__stack_t *s, uintptr_t *resident)
{
    uintptr_t lo = (uintptr_t)s->lo, hi = (uintptr_t)moirai__stack_hi(s);
    uintptr_t r = lowest_resident(lo, hi);

    *resident = r;
    return lowest_nonzero(r, hi);
}

size_t moirai__stack_used(const moirai__stack_t *s)
{
    uintptr_t resident;

    return (uintptr_t)moirai__stack_hi(s) - deepest(s, &resident);
}

size_t moirai__stack_used_racy(const moirai__stack_t *s)
{
    /* The same pass: the scan is the part that races, and it reads each
     * word once, so the answer is a depth some word really had. */
    return moirai__stack_used(s);
}

bool moirai__stack_check(const moirai__stack_t *s)
{
    uintptr_t lo = (uintptr_t)s->lo;

    /* Not resident: never written, so still zero. Reading it instead
     * would map the zero page for nothing. */
    if (lowest_resident(lo, lo + page_size()) != lo)
        return true;
    return lowest_nonzero(lo, lo + MOIRAI__STACK_CANARY) == lo + MOIRAI__STACK_CANARY;
}

/* The window's band below the deepest word seen (see stack.h): the
 * window pass scans it for nothing but zeros, so its size is the pass's
 * fixed cost (512 bytes: 64 words); a user that went deeper is caught
 * unless a hole of at least this size in one of its frames spans it. */
#define STACK_BAND 512

/* Window passes between two exact ones. */
#define STACK_EXACT_EVERY 64

size_t moirai__stack_reset(moirai__stack_t *s)
{
    uintptr_t lo = (uintptr_t)s->lo, hi = (uintptr_t)moirai__stack_hi(s);
    uintptr_t low = hi, resident = 0;
    bool exact = true;

    if (s->window_resets > 0 && s->floor < hi) {
        /* The window pass: trusted unless the user's lowest word lies in
         * the band above the floor, where a deeper user would have left one, or
         * nothing at all was found (every real user leaves its entry
         * frame at the top). */
        low = lowest_nonzero(s->floor, hi);
        if (low >= s->floor + STACK_BAND && low < hi) {
            exact = false;
            s->window_resets--;
        }
    }
    if (exact) {
        low = deepest(s, &resident);
        s->window_resets = STACK_EXACT_EVERY - 1;
    }
#if STACK_ASAN
    ASAN_UNPOISON_MEMORY_REGION(s->lo, s->size);
#endif
    /* Only the dirtied range is re-zeroed: the cost of a reuse follows
     * what the last user used. */
    memset((void *)low, 0, hi - low);
    uintptr_t low_line = low & ~(uintptr_t)63;
    uintptr_t floor = low_line > lo + STACK_BAND ? low_line - STACK_BAND : lo;
    if (exact) {
        if (floor > resident && floor - resident > STACK_TRIM_BYTES) {
            /* MADV_DONTNEED on a private anonymous mapping drops the
             * pages: they read as zero again and are no longer resident. */
            (void)madvise((void *)resident, floor - resident, MADV_DONTNEED);
        }
        /* The exact pass may raise the floor (the window shrinks back to
         * what this user needed). */
        s->floor = floor;
    }
    return hi - low;
}

/* ------------------------------------------------------------------ */
/* The cache. A mutex-protected LIFO list: the most recently used stack
 * is handed out first, while its pages are still warm. A get and a put
 * take the lock once each, for a few instructions. */

struct moirai__stack_pool {
    pthread_mutex_t lock;
    moirai__stack_t *free; /* guarded by lock */
    size_t cached;         /* guarded by lock; mirrored in n_cached */
    size_t capacity;
    size_t stack_size;
    /* Counters, relaxed: they order nothing. */
    atomic_size_t n_mapped;
    atomic_size_t n_cached;
    atomic_size_t high_water;
};

int moirai__stack_pool_create(moirai__stack_pool_t **out, size_t stack_size, size_t capacity)
{
    size_t usable;

    if (out == NULL || moirai__stack_size(stack_size, &usable) != 0)
        return -EINVAL;
    moirai__stack_pool_t *p = moirai_malloc(sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        moirai_free(p);
        return -ENOMEM;
    }
    p->free = NULL;
    p->cached = 0;
    p->capacity = capacity;
    p->stack_size = usable;
    atomic_init(&p->n_mapped, 0);
    atomic_init(&p->n_cached, 0);
    atomic_init(&p->high_water, 0);
    *out = p;
    return 0;
}

void moirai__stack_pool_destroy(moirai__stack_pool_t *p)
{
    if (p == NULL)
        return;
    moirai__stack_t *s = p->free;
    while (s != NULL) {
        moirai__stack_t *next = s->next;
        moirai__stack_destroy(s);
        s = next;
    }
    pthread_mutex_destroy(&p->lock);
    moirai_free(p);
}

size_t moirai__stack_pool_stack_size(const moirai__stack_pool_t *p)
{
    return p->stack_size;
}

int moirai__stack_pool_get(moirai__stack_pool_t *p, size_t size, moirai__stack_t **out)
{
    size_t usable;

    if (p == NULL || out == NULL)
        return -EINVAL;
    if (size == 0)
        usable = p->stack_size;
    else if (moirai__stack_size(size, &usable) != 0)
        return -EINVAL;
    if (usable == p->stack_size) {
        pthread_mutex_lock(&p->lock);
        moirai__stack_t *s = p->free;
        if (s != NULL) {
            p->free = s->next;
            p->cached--;
        }
        pthread_mutex_unlock(&p->lock);
        if (s != NULL) {
            atomic_fetch_sub_explicit(&p->n_cached, 1, memory_order_relaxed);
            s->next = NULL;
            *out = s;
            return 0;
        }
    }
    int rc = moirai__stack_create(out, usable);
    if (rc == 0)
        atomic_fetch_add_explicit(&p->n_mapped, 1, memory_order_relaxed);
    return rc;
}

size_t moirai__stack_pool_put(moirai__stack_pool_t *p, moirai__stack_t *s)
{
    size_t used = moirai__stack_reset(s);
    size_t hw = atomic_load_explicit(&p->high_water, memory_order_relaxed);

    while (used > hw && !atomic_compare_exchange_weak_explicit(
                            &p->high_water, &hw, used, memory_order_relaxed, memory_order_relaxed))
        ;
    if (s->size == p->stack_size) {
        pthread_mutex_lock(&p->lock);
        bool keep = p->cached < p->capacity;
        if (keep) {
            s->next = p->free;
            p->free = s;
            p->cached++;
        }
        pthread_mutex_unlock(&p->lock);
        if (keep) {
            atomic_fetch_add_explicit(&p->n_cached, 1, memory_order_relaxed);
            return used;
        }
    }
    moirai__stack_destroy(s);
    atomic_fetch_sub_explicit(&p->n_mapped, 1, memory_order_relaxed);
    return used;
}

void moirai__stack_pool_stats(const moirai__stack_pool_t *p, moirai__stack_pool_stats_t *out)
{
    moirai__stack_pool_t *q = (moirai__stack_pool_t *)p;

    out->mapped = atomic_load_explicit(&q->n_mapped, memory_order_relaxed);
    out->cached = atomic_load_explicit(&q->n_cached, memory_order_relaxed);
    out->high_water = atomic_load_explicit(&q->high_water, memory_order_relaxed);
}

/* ------------------------------------------------------------------ */
/* Overflow reporting. */

#define ALTSTACK_BYTES ((size_t)64 * 1024)
/* An alternate stack someone else installed is used when it has at least
 * this much: the handler itself needs well under a kilobyte. */
#define ALTSTACK_ENOUGH ((size_t)16 * 1024)
/* How far below a stack a faulting stack pointer still counts as that
 * stack's overflow (a frame larger than the guard page jumps over it). */
#define OVERFLOW_REACH ((uintptr_t)1024 * 1024)

/* What runs on this thread. initial-exec: the signal handler reads it,
 * and a dynamic TLS access could allocate inside the handler. */
struct current {
    const moirai__stack_t *stack;
    const char *name;
    uint64_t id;
    bool prepared;
};
static __thread struct current tls_current __attribute__((tls_model("initial-exec")));

#include "fctx.h"
/* Every access goes through this accessor: set_current runs on fibers,
 * which may move between threads (see fctx.h). */
MOIRAI__FIBER_TLS_ACCESSOR(struct current, tls_current, current_slot)

/* The handler is installed once per process, under the lock; a failed
 * attempt (no pthread key left) can be retried. `installed` is read
 * first without the lock: acquire, pairing with the release store after
 * installing, so that a thread seeing it also sees the key. */
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool installed;
static pthread_key_t altstack_key;
static struct sigaction previous_segv;

/* Appends `s` to buf at *len (bounded by cap). Async-signal-safe. */
static void put_str(char *buf, size_t *len, size_t cap, const char *s)
{
    while (*s != '\0' && *len < cap)
        buf[(*len)++] = *s++;
}

static void put_u64(char *buf, size_t *len, size_t cap, uint64_t v)
{
    char digits[20];
    int n = 0;

    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0 && *len < cap)
        buf[(*len)++] = digits[--n];
}

static uintptr_t fault_sp(void *ucv)
{
    ucontext_t *uc = ucv;
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.sp;
#else
    (void)uc;
    return 0;
#endif
}

static void on_segv(int sig, siginfo_t *info, void *ucv)
{
    struct current *cur = current_slot();
    const moirai__stack_t *s = cur->stack;

    if (s != NULL) {
        uintptr_t guard = (uintptr_t)s->guard, lo = (uintptr_t)s->lo;
        uintptr_t addr = (uintptr_t)info->si_addr, sp = fault_sp(ucv);
        bool in_guard = addr >= guard && addr < lo;
        bool below =
            sp < lo && sp + OVERFLOW_REACH >= guard && addr < lo && addr + OVERFLOW_REACH >= guard;
        if (in_guard || below) {
            char msg[512];
            size_t len = 0, cap = sizeof(msg) - 1;
            put_str(msg, &len, cap, "moirai: fiber '");
            size_t name_cap = len + 200 < cap ? len + 200 : cap;
            put_str(msg, &len, name_cap, cur->name != NULL ? cur->name : "(unnamed)");
            put_str(msg, &len, cap, "' (id ");
            put_u64(msg, &len, cap, cur->id);
            put_str(msg, &len, cap, ") overflowed its stack of ");
            put_u64(msg, &len, cap, s->size);
            put_str(msg, &len, cap, " bytes\n");
            ssize_t n = write(STDERR_FILENO, msg, len);
            (void)n;
            abort();
        }
    }
    /* Not ours: hand it on as if we had never been installed. */
    if (previous_segv.sa_flags & SA_SIGINFO) {
        previous_segv.sa_sigaction(sig, info, ucv);
    } else if (previous_segv.sa_handler == SIG_DFL || previous_segv.sa_handler == SIG_IGN) {
        /* Restore the default action and return: the faulting instruction
         * runs again and the kernel ends the process with SIGSEGV (an
         * ignored synchronous SIGSEGV kills as well). */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof(dfl));
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(SIGSEGV, &dfl, NULL);
    } else {
        previous_segv.sa_handler(sig);
    }
}

/* The pthread key destructor: the thread is exiting. */
static void altstack_release(void *mem)
{
    stack_t cur;

    if (sigaltstack(NULL, &cur) == 0 && cur.ss_sp == mem) {
        stack_t off;
        memset(&off, 0, sizeof(off));
        off.ss_flags = SS_DISABLE;
        sigaltstack(&off, NULL);
    }
    munmap(mem, ALTSTACK_BYTES);
    current_slot()->prepared = false;
}

static int install_handler(void)
{
    int rc = 0;

    pthread_mutex_lock(&install_lock);
    if (!atomic_load_explicit(&installed, memory_order_relaxed)) {
        if (pthread_key_create(&altstack_key, altstack_release) != 0) {
            rc = -EAGAIN;
        } else {
            struct sigaction sa;
            memset(&sa, 0, sizeof(sa));
            sa.sa_sigaction = on_segv;
            sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
            sigemptyset(&sa.sa_mask);
            sigaction(SIGSEGV, &sa, &previous_segv);
            atomic_store_explicit(&installed, true, memory_order_release);
        }
    }
    pthread_mutex_unlock(&install_lock);
    return rc;
}

int moirai__stack_thread_prepare(void)
{
    struct current *cur = current_slot();

    if (cur->prepared)
        return 0;
    if (!atomic_load_explicit(&installed, memory_order_acquire)) {
        int rc = install_handler();
        if (rc != 0)
            return rc;
    }
    stack_t have;
    if (sigaltstack(NULL, &have) == 0 && !(have.ss_flags & SS_DISABLE) &&
        have.ss_size >= ALTSTACK_ENOUGH) {
        /* Someone (a sanitizer runtime, the program) already gave this
         * thread a large enough signal stack: use it. */
        cur->prepared = true;
        return 0;
    }
    void *mem =
        mmap(NULL, ALTSTACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return -ENOMEM;
    if (pthread_setspecific(altstack_key, mem) != 0) {
        munmap(mem, ALTSTACK_BYTES);
        return -ENOMEM;
    }
    stack_t ss;
    memset(&ss, 0, sizeof(ss));
    ss.ss_sp = mem;
    ss.ss_size = ALTSTACK_BYTES;
    if (sigaltstack(&ss, NULL) != 0) {
        pthread_setspecific(altstack_key, NULL);
        munmap(mem, ALTSTACK_BYTES);
        return -ENOMEM;
    }
    cur->prepared = true;
    return 0;
}

void moirai__stack_set_current(const moirai__stack_t *s, const char *name, uint64_t id)
{
    struct current *cur = current_slot();

    if (!cur->prepared)
        (void)moirai__stack_thread_prepare();
    cur->stack = s;
    cur->name = name;
    cur->id = id;
}

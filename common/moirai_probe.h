/* USDT (user-level statically defined tracing) probes for every Moirai
 * library: internal, never installed.
 *
 * MOIRAI_PROBE(name) and MOIRAI_PROBE1(name, a) to MOIRAI_PROBE6 mark a
 * point a tracer (bpftrace, perf, SystemTap, bcc) can attach to by name,
 * under the provider `moirai`. They expand to the semaphore-less
 * DTRACE_PROBEn macros of <sys/sdt.h> (Debian's systemtap-sdt-dev): each
 * probe is a single `nop` in the code plus an ELF note (.note.stapsdt)
 * saying where the nop is and where its arguments live. With no tracer
 * attached that nop is the whole cost; an attached tracer replaces it with
 * a breakpoint. The semaphore forms were not used because a semaphore is a
 * counter in the library's data that every probe site tests with a load
 * and a branch, and they only pay off for arguments that are expensive to
 * compute; every argument here is a value the function has at hand.
 *
 * The arguments are still computed when probes are on (into a register or
 * a stack slot the note names), so pass only values already at hand, never
 * something that needs a call or a lock. A probe site that must compute
 * something costly should not exist.
 *
 * The build defines MOIRAI_HAVE_SDT to 1 when the `probes` option is on and
 * <sys/sdt.h> exists (top-level meson.build). Otherwise every macro
 * expands to a statement that names its arguments without evaluating them
 * (sizeof), so a variable used only by a probe raises no warning and no
 * code is generated.
 *
 * The provider is one for all libraries: a probe is addressed by the
 * library's path anyway (usdt:/usr/lib/.../libmoirai-sched.so.0:moirai:
 * task_start), and probe names are unique across the libraries so that
 * `usdt:*:moirai:*` traces everything. Names and arguments are a stable,
 * documented interface (docs/observability.md, "USDT probes"); the
 * observability tests check that each library carries its notes. */
#ifndef MOIRAI_PROBE_H
#define MOIRAI_PROBE_H

#if defined(MOIRAI_HAVE_SDT) && MOIRAI_HAVE_SDT

#include <sys/sdt.h>

#define MOIRAI_PROBE(name)                    DTRACE_PROBE(moirai, name)
#define MOIRAI_PROBE1(name, a)                DTRACE_PROBE1(moirai, name, a)
#define MOIRAI_PROBE2(name, a, b)             DTRACE_PROBE2(moirai, name, a, b)
#define MOIRAI_PROBE3(name, a, b, c)          DTRACE_PROBE3(moirai, name, a, b, c)
#define MOIRAI_PROBE4(name, a, b, c, d)       DTRACE_PROBE4(moirai, name, a, b, c, d)
#define MOIRAI_PROBE5(name, a, b, c, d, e)    DTRACE_PROBE5(moirai, name, a, b, c, d, e)
#define MOIRAI_PROBE6(name, a, b, c, d, e, f) DTRACE_PROBE6(moirai, name, a, b, c, d, e, f)

#else

#define MOIRAI_PROBE(name)     ((void)0)
#define MOIRAI_PROBE1(name, a) ((void)sizeof(a))
#define MOIRAI_PROBE2(name, a, b)                                                                  \
    do {                                                                                           \
        (void)sizeof(a);                                                                           \
        (void)sizeof(b);                                                                           \
    } while (0)
#define MOIRAI_PROBE3(name, a, b, c)                                                               \
    do {                                                                                           \
        MOIRAI_PROBE2(name, a, b);                                                                 \
        (void)sizeof(c);                                                                           \
    } while (0)
#define MOIRAI_PROBE4(name, a, b, c, d)                                                            \
    do {                                                                                           \
        MOIRAI_PROBE3(name, a, b, c);                                                              \
        (void)sizeof(d);                                                                           \
    } while (0)
#define MOIRAI_PROBE5(name, a, b, c, d, e)                                                         \
    do {                                                                                           \
        MOIRAI_PROBE4(name, a, b, c, d);                                                           \
        (void)sizeof(e);                                                                           \
    } while (0)
#define MOIRAI_PROBE6(name, a, b, c, d, e, f)                                                      \
    do {                                                                                           \
        MOIRAI_PROBE5(name, a, b, c, d, e);                                                        \
        (void)sizeof(f);                                                                           \
    } while (0)

#endif

#endif /* MOIRAI_PROBE_H */

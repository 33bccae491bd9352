/* Spin-wait support shared by every Moirai module. */
#ifndef MOIRAI_CORE_SPIN_H
#define MOIRAI_CORE_SPIN_H

/* One iteration of a spin-wait: `pause` on x86, `yield` on arm64, a
 * compiler barrier elsewhere. It tells the CPU the loop is waiting, which
 * frees the sibling hyper-thread, saves power and avoids the memory-order
 * mis-speculation penalty when the awaited store arrives. A pause costs
 * 10-140 cycles on bare metal and about 80 ns on VMs whose hypervisor
 * intercepts pause loops, so callers bound their spins by count or time,
 * never spin forever, and park (moirai/core/park.h) when the wait is long.
 * Never blocks; orders no memory (it is a compiler barrier only). */
static inline void moirai_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

#endif

/* Cache-line constants for laying out shared data: the one definition
 * every module pads and aligns by.
 *
 * Both are compile-time constants, because padding must be known when the
 * code is compiled. The machine's real line size, read from sysfs, is
 * moirai_topology_cache_line_size() (<moirai/core/topology.h>), for
 * decisions made at run time. */
#ifndef MOIRAI_CORE_CACHE_H
#define MOIRAI_CORE_CACHE_H

/* The cache-line size of x86-64 and most aarch64 parts: what a structure
 * pads to so that it does not share a line with its neighbours. */
#define MOIRAI_CACHE_LINE 64

/* How far apart two fields written by different threads must be never to
 * share coherence traffic: two lines, because Intel's adjacent-line
 * prefetcher moves lines in pairs (what C++17 calls
 * hardware_destructive_interference_size). For the hottest contended
 * fields only; it doubles their padding. */
#define MOIRAI_FALSE_SHARING_RANGE 128

#endif

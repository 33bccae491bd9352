/* Symbol visibility for moirai-core.
 *
 * The library is built with -fvisibility=hidden; only declarations marked
 * MOIRAI_CORE_API are exported, and the linker version script additionally
 * keeps anything not named moirai_* local. */
#ifndef MOIRAI_CORE_EXPORT_H
#define MOIRAI_CORE_EXPORT_H

#if defined(MOIRAI_CORE_BUILD)
#define MOIRAI_CORE_API __attribute__((visibility("default")))
#else
#define MOIRAI_CORE_API
#endif

#endif

/* Symbol visibility for moirai-sched (see moirai/core/export.h). */
#ifndef MOIRAI_SCHED_EXPORT_H
#define MOIRAI_SCHED_EXPORT_H

#if defined(MOIRAI_SCHED_BUILD)
#define MOIRAI_SCHED_API __attribute__((visibility("default")))
#else
#define MOIRAI_SCHED_API
#endif

#endif

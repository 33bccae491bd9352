/* Symbol visibility for moirai-rt (see moirai/core/export.h). */
#ifndef MOIRAI_RT_EXPORT_H
#define MOIRAI_RT_EXPORT_H

#if defined(MOIRAI_RT_BUILD)
#define MOIRAI_RT_API __attribute__((visibility("default")))
#else
#define MOIRAI_RT_API
#endif

#endif

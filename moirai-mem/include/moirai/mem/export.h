/* Symbol visibility for moirai-mem (see moirai/core/export.h). */
#ifndef MOIRAI_MEM_EXPORT_H
#define MOIRAI_MEM_EXPORT_H

#if defined(MOIRAI_MEM_BUILD)
#define MOIRAI_MEM_API __attribute__((visibility("default")))
#else
#define MOIRAI_MEM_API
#endif

#endif

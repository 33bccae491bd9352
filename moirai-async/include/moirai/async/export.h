/* Symbol visibility for moirai-async (see moirai/core/export.h). */
#ifndef MOIRAI_ASYNC_EXPORT_H
#define MOIRAI_ASYNC_EXPORT_H

#if defined(MOIRAI_ASYNC_BUILD)
#define MOIRAI_ASYNC_API __attribute__((visibility("default")))
#else
#define MOIRAI_ASYNC_API
#endif

#endif

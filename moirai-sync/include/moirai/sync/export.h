/* Symbol visibility for moirai-sync (see moirai/core/export.h). */
#ifndef MOIRAI_SYNC_EXPORT_H
#define MOIRAI_SYNC_EXPORT_H

#if defined(MOIRAI_SYNC_BUILD)
#define MOIRAI_SYNC_API __attribute__((visibility("default")))
#else
#define MOIRAI_SYNC_API
#endif

#endif

/* Symbol visibility for moirai-transport (see moirai/core/export.h). */
#ifndef MOIRAI_TRANSPORT_EXPOTRANSPORT_H
#define MOIRAI_TRANSPORT_EXPOTRANSPORT_H

#if defined(MOIRAI_TRANSPORT_BUILD)
#define MOIRAI_TRANSPORT_API __attribute__((visibility("default")))
#else
#define MOIRAI_TRANSPORT_API
#endif

#endif

/*
 * Included ahead of every Criterion source (-include), for BoxFort 0.1.2
 * as Debian's source tarball has it. Criterion 2.4.1 was written against a
 * later BoxFort that can fall back to a suspended sandbox when no debugger
 * server is installed (BXF_DBG_FALLBACK and its macros; Debian patches
 * them into its binary package, but its patches are not in the .orig
 * tarball). Where boxfort.h lacks them, these definitions keep Criterion's
 * meaning for everything but that fallback: `--debug` (native debugger)
 * spawns the debugger server with no fallback, so a missing gdbserver is
 * reported by Criterion's "Debugger does not exist" error
 * instead. Nothing changes for tests run without `--debug`.
 */
#ifndef MOIRAI_CRITERION_BOXFORT_COMPAT_H
#define MOIRAI_CRITERION_BOXFORT_COMPAT_H

#include <boxfort.h>

#ifndef BXF_DBG_ENABLE_FALLBACK
#define BXF_DBG_ENABLE_FALLBACK(debugger) ((void)(debugger))
#endif
#ifndef BXF_DBG_GET_DEBUGGER
#define BXF_DBG_GET_DEBUGGER(debugger) (debugger)
#endif

#endif

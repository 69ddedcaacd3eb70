/*
 * console.h - the web console's files (rest-bridge/console/), embedded in
 * the bridge at build time by cmake/embed_files.cmake, so a package or
 * `make run` serves them without reading any file.
 *
 * The table is constant data: read it from any thread.
 */
#ifndef TSB_BRIDGE_CONSOLE_H
#define TSB_BRIDGE_CONSOLE_H

#include <stddef.h>

/* One embedded file: its base name ("console.js"), its bytes (followed by
 * a NUL that size does not count). */
typedef struct tsb_asset {
    const char *name;
    const unsigned char *bytes;
    size_t size;
} tsb_asset;

/* The files of rest-bridge/console/ (console_assets.c, generated). */
extern const tsb_asset tsb_console_assets[];
extern const size_t tsb_console_assets_count;

#endif

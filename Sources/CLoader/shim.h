// glibc's dl_iterate_phdr for Swift, which Glibc does not export: it lists the objects the
// dynamic loader loaded, by the names it loaded them (WatcherBundle). The callback gets each
// object's name only, so no struct of <link.h> crosses into Swift.
#ifndef PGCLUSTER_CLOADER_SHIM_H
#define PGCLUSTER_CLOADER_SHIM_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <link.h>
#include <stddef.h>

typedef void (*pgc_loaded_object_callback)(const char *name, void *context);

struct pgc_loaded_objects_context {
    pgc_loaded_object_callback callback;
    void *context;
};

static inline int pgc_loaded_object(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    struct pgc_loaded_objects_context *context = (struct pgc_loaded_objects_context *)data;
    context->callback(info->dlpi_name ? info->dlpi_name : "", context->context);
    return 0;
}

/// Calls `callback` with the name of every loaded object ("" for the program itself).
static inline void pgc_loaded_objects(pgc_loaded_object_callback callback, void *context) {
    struct pgc_loaded_objects_context both = {callback, context};
    dl_iterate_phdr(pgc_loaded_object, &both);
}

#endif

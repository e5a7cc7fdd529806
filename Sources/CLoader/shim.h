// glibc's dl_iterate_phdr for Swift: it lists the objects the dynamic loader loaded, by the
// names it loaded them (WatcherBundle). <link.h> declares it only under _GNU_SOURCE, and a
// module that defines _GNU_SOURCE sees glibc's types (fd_set) otherwise than every other
// module, which clang refuses; so no glibc header is included here. The function is declared
// under a name of our own bound to glibc's symbol, with the two leading fields of its
// struct dl_phdr_info (ElfW(Addr) dlpi_addr; const char *dlpi_name), which is all we read.
#ifndef PGCLUSTER_CLOADER_SHIM_H
#define PGCLUSTER_CLOADER_SHIM_H

#include <stddef.h>
#include <stdint.h>

struct pgc_dl_phdr_info {
    uintptr_t dlpi_addr;
    const char *dlpi_name;
};

extern int pgc_dl_iterate_phdr(
    int (*callback)(struct pgc_dl_phdr_info *info, size_t size, void *data), void *data) __asm__("dl_iterate_phdr");

typedef void (*pgc_loaded_object_callback)(const char *name, void *context);

struct pgc_loaded_objects_context {
    pgc_loaded_object_callback callback;
    void *context;
};

static inline int pgc_loaded_object(struct pgc_dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    struct pgc_loaded_objects_context *context = (struct pgc_loaded_objects_context *)data;
    context->callback(info->dlpi_name ? info->dlpi_name : "", context->context);
    return 0;
}

/// Calls `callback` with the name of every loaded object ("" for the program itself).
static inline void pgc_loaded_objects(pgc_loaded_object_callback callback, void *context) {
    struct pgc_loaded_objects_context both = {callback, context};
    pgc_dl_iterate_phdr(pgc_loaded_object, &both);
}

#endif

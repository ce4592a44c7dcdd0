/* mproc: export macro for the public API. */
#ifndef MPROC_EXPORT_H
#define MPROC_EXPORT_H

/* A consumer of the shared library on Windows defines nothing (or USING_MPROC_SHARED);
 * the library itself is built with BUILDING_MPROC_SHARED; a static build defines
 * MPROC_STATIC for both the library and its consumers (carried by the CMake target
 * and the pkg-config file). */
#if defined(BUILDING_MPROC_SHARED) && defined(USING_MPROC_SHARED)
#error "Define either BUILDING_MPROC_SHARED or USING_MPROC_SHARED, not both."
#endif

#if defined(MPROC_STATIC)
#define MPROC_EXTERN /* nothing */
#elif defined(_WIN32)
#if defined(BUILDING_MPROC_SHARED)
#define MPROC_EXTERN __declspec(dllexport)
#else
#define MPROC_EXTERN __declspec(dllimport)
#endif
#elif defined(__GNUC__) && __GNUC__ >= 4
#define MPROC_EXTERN __attribute__((visibility("default")))
#else
#define MPROC_EXTERN /* nothing */
#endif

#endif /* MPROC_EXPORT_H */

/**
 * @file mproc/export.h
 * @brief mproc: export macro for the public API.
 *
 * A consumer of the shared library on Windows defines nothing (or
 * USING_MPROC_SHARED); the library itself is built with BUILDING_MPROC_SHARED; a
 * static build defines MPROC_STATIC for both the library and its consumers (carried
 * by the CMake target and the pkg-config file).
 */
#ifndef MPROC_EXPORT_H
#define MPROC_EXPORT_H

#if defined(BUILDING_MPROC_SHARED) && defined(USING_MPROC_SHARED)
#error "Define either BUILDING_MPROC_SHARED or USING_MPROC_SHARED, not both."
#endif

/**
 * @def MPROC_EXTERN
 * @brief Marks a public function: exported from the shared library (visibility
 * "default", or dllexport / dllimport on Windows); nothing for a static build.
 */
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

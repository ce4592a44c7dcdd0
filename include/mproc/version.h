/**
 * @file mproc/version.h
 * @brief mproc: version numbers. CMake reads them from here: this is the one place
 * they live.
 */
#ifndef MPROC_VERSION_H
#define MPROC_VERSION_H

/**
 * @addtogroup mproc_runtime
 * @{
 */

/** @brief Major version. */
#define MPROC_VERSION_MAJOR 0
/** @brief Minor version: while the major version is 0, a new one may break the API. */
#define MPROC_VERSION_MINOR 1
/** @brief Patch version. */
#define MPROC_VERSION_PATCH 0

/** @brief The version as one number, 0xMMmmpp; compare with mproc_version() at run time. */
#define MPROC_VERSION_HEX \
  ((MPROC_VERSION_MAJOR << 16) | (MPROC_VERSION_MINOR << 8) | (MPROC_VERSION_PATCH))

/** @} */

#endif /* MPROC_VERSION_H */

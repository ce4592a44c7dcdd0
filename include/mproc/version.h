/* mproc: version numbers. CMake reads them from here: this is the one place they live. */
#ifndef MPROC_VERSION_H
#define MPROC_VERSION_H

#define MPROC_VERSION_MAJOR 0
#define MPROC_VERSION_MINOR 1
#define MPROC_VERSION_PATCH 0

#define MPROC_VERSION_HEX \
  ((MPROC_VERSION_MAJOR << 16) | (MPROC_VERSION_MINOR << 8) | (MPROC_VERSION_PATCH))

#endif /* MPROC_VERSION_H */

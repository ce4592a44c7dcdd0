/* The library's version at run time, which may differ from the header a program was built with. */
#include "internal.h"

#define MPROC__STR2(x) #x
#define MPROC__STR(x) MPROC__STR2(x)

unsigned mproc_version(void) { return MPROC_VERSION_HEX; }

const char *mproc_version_string(void) {
  return MPROC__STR(MPROC_VERSION_MAJOR) "." MPROC__STR(MPROC_VERSION_MINOR) "." MPROC__STR(
      MPROC_VERSION_PATCH);
}

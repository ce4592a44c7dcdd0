# FindCMocka
# ----------
# Finds the CMocka unit testing library.
#
# Imported target:
#   CMocka::CMocka
# Result variables:
#   CMocka_FOUND, CMocka_VERSION
#
# Tried in order:
#   1. CMocka's own package config. CMocka 1.1.6 and later define the target
#      cmocka::cmocka; 1.1.5 (Debian 12) only sets CMOCKA_INCLUDE_DIR and
#      CMOCKA_LIBRARY / CMOCKA_LIBRARIES.
#   2. pkg-config (cmocka.pc), as hints for
#   3. find_path(cmocka.h) / find_library(cmocka).

if(TARGET CMocka::CMocka)
  set(CMocka_FOUND TRUE)
  return()
endif()

include(FindPackageHandleStandardArgs)

find_package(cmocka CONFIG QUIET)

if(cmocka_FOUND AND TARGET cmocka::cmocka)
  set(CMocka_VERSION "${cmocka_VERSION}")
  find_package_handle_standard_args(CMocka
    REQUIRED_VARS cmocka_DIR
    VERSION_VAR CMocka_VERSION)
  if(CMocka_FOUND)
    add_library(CMocka::CMocka INTERFACE IMPORTED)
    set_property(TARGET CMocka::CMocka PROPERTY INTERFACE_LINK_LIBRARIES cmocka::cmocka)
  endif()
  return()
endif()

if(cmocka_FOUND)
  # The old config's variables; CMOCKA_LIBRARY is the file, CMOCKA_LIBRARIES the same.
  set(CMocka_VERSION "${cmocka_VERSION}")
  if(NOT CMOCKA_LIBRARY AND CMOCKA_LIBRARIES)
    list(GET CMOCKA_LIBRARIES 0 CMOCKA_LIBRARY)
  endif()
  if(CMOCKA_LIBRARY AND NOT EXISTS "${CMOCKA_LIBRARY}")
    # A config written for another layout: fall back to searching.
    unset(CMOCKA_LIBRARY)
    unset(CMOCKA_INCLUDE_DIR)
  endif()
endif()

if(NOT CMOCKA_LIBRARY OR NOT CMOCKA_INCLUDE_DIR)
  find_package(PkgConfig QUIET)
  if(PKG_CONFIG_FOUND)
    pkg_check_modules(PC_CMOCKA QUIET cmocka)
    if(PC_CMOCKA_VERSION)
      set(CMocka_VERSION "${PC_CMOCKA_VERSION}")
    endif()
  endif()
  find_path(CMOCKA_INCLUDE_DIR
    NAMES cmocka.h
    HINTS ${PC_CMOCKA_INCLUDEDIR} ${PC_CMOCKA_INCLUDE_DIRS})
  find_library(CMOCKA_LIBRARY
    NAMES cmocka cmocka_shared cmocka-static
    HINTS ${PC_CMOCKA_LIBDIR} ${PC_CMOCKA_LIBRARY_DIRS})
  mark_as_advanced(CMOCKA_INCLUDE_DIR CMOCKA_LIBRARY)
endif()

find_package_handle_standard_args(CMocka
  REQUIRED_VARS CMOCKA_LIBRARY CMOCKA_INCLUDE_DIR
  VERSION_VAR CMocka_VERSION)

if(CMocka_FOUND)
  add_library(CMocka::CMocka UNKNOWN IMPORTED)
  set_target_properties(CMocka::CMocka PROPERTIES
    IMPORTED_LOCATION "${CMOCKA_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${CMOCKA_INCLUDE_DIR}")
endif()

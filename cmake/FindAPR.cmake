# FindAPR
# -------
# Finds the Apache Portable Runtime (APR 1.x), which ships no CMake package on Unix.
#
# Imported target:
#   APR::APR          the library, with APR's own compile definitions (-DLINUX
#                     -D_REENTRANT -D_GNU_SOURCE on Linux, from apr-1.pc)
# Result variables:
#   APR_FOUND, APR_VERSION, APR_INCLUDE_DIRS, APR_LIBRARIES
# Cache variables (set them to point at an unusual install):
#   APR_INCLUDE_DIR   the directory holding apr.h
#   APR_LIBRARY       the library file
# Hint:
#   APR_STATIC        link the static libapr-1 (e.g. the mingw cross build): adds
#                     APR_DECLARE_STATIC and the system libraries APR needs.
#
# pkg-config (apr-1) is asked first, then apr-1-config; their answers are hints for
# find_path/find_library, so a plain install without either is found too.

find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(PC_APR QUIET apr-1)
endif()
set(_apr_cflags ${PC_APR_CFLAGS_OTHER})
if(NOT PC_APR_FOUND AND NOT CMAKE_CROSSCOMPILING)
  # Without pkg-config, APR's own script knows the same flags.
  find_program(APR_CONFIG_EXECUTABLE NAMES apr-1-config)
  mark_as_advanced(APR_CONFIG_EXECUTABLE)
  if(APR_CONFIG_EXECUTABLE)
    execute_process(COMMAND "${APR_CONFIG_EXECUTABLE}" --cppflags
                    OUTPUT_VARIABLE _apr_cflags OUTPUT_STRIP_TRAILING_WHITESPACE)
    execute_process(COMMAND "${APR_CONFIG_EXECUTABLE}" --includedir
                    OUTPUT_VARIABLE PC_APR_INCLUDEDIR OUTPUT_STRIP_TRAILING_WHITESPACE)
    separate_arguments(_apr_cflags UNIX_COMMAND "${_apr_cflags}")
  endif()
endif()

if(APR_STATIC)
  set(_apr_names libapr-1.a apr-1.lib apr-1 libapr-1)
else()
  set(_apr_names apr-1 libapr-1)
endif()

find_path(APR_INCLUDE_DIR
  NAMES apr.h
  HINTS ${PC_APR_INCLUDEDIR} ${PC_APR_INCLUDE_DIRS}
  PATH_SUFFIXES apr-1 apr-1.0)
find_library(APR_LIBRARY
  NAMES ${_apr_names}
  HINTS ${PC_APR_LIBDIR} ${PC_APR_LIBRARY_DIRS})
mark_as_advanced(APR_INCLUDE_DIR APR_LIBRARY)
unset(_apr_names)

if(APR_INCLUDE_DIR AND EXISTS "${APR_INCLUDE_DIR}/apr_version.h")
  file(STRINGS "${APR_INCLUDE_DIR}/apr_version.h" _apr_version_lines
       REGEX "^#define[ \t]+APR_(MAJOR|MINOR|PATCH)_VERSION[ \t]+[0-9]+")
  set(APR_VERSION "")
  foreach(_part MAJOR MINOR PATCH)
    if(_apr_version_lines MATCHES "APR_${_part}_VERSION[ \t]+([0-9]+)")
      string(APPEND APR_VERSION ".${CMAKE_MATCH_1}")
    endif()
  endforeach()
  string(SUBSTRING "${APR_VERSION}" 1 -1 APR_VERSION)
  unset(_apr_version_lines)
  unset(_part)
elseif(PC_APR_VERSION)
  set(APR_VERSION "${PC_APR_VERSION}")
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(APR
  REQUIRED_VARS APR_LIBRARY APR_INCLUDE_DIR
  VERSION_VAR APR_VERSION)

if(APR_FOUND)
  set(APR_INCLUDE_DIRS "${APR_INCLUDE_DIR}")
  set(APR_LIBRARIES "${APR_LIBRARY}")

  if(NOT TARGET APR::APR)
    add_library(APR::APR UNKNOWN IMPORTED)
    set_target_properties(APR::APR PROPERTIES
      IMPORTED_LOCATION "${APR_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${APR_INCLUDE_DIR}")

    # APR's headers expect the flags apr-1.pc carries: split them into definitions
    # (-DLINUX -D_REENTRANT -D_GNU_SOURCE) and other options.
    set(_apr_defs)
    set(_apr_opts)
    foreach(_flag IN LISTS _apr_cflags)
      if(_flag MATCHES "^-D(.+)")
        list(APPEND _apr_defs "${CMAKE_MATCH_1}")
      else()
        list(APPEND _apr_opts "${_flag}")
      endif()
    endforeach()

    set(_apr_libs)
    if(APR_STATIC)
      list(APPEND _apr_defs APR_DECLARE_STATIC)
      if(WIN32)
        list(APPEND _apr_libs ws2_32 rpcrt4 mswsock advapi32 shell32 iphlpapi)
      else()
        # Libs.private of apr-1.pc (uuid, crypt, pthread on Debian).
        foreach(_lib IN LISTS PC_APR_STATIC_LIBRARIES)
          if(NOT _lib MATCHES "^apr-1$")
            list(APPEND _apr_libs "${_lib}")
          endif()
        endforeach()
      endif()
    endif()

    if(_apr_defs)
      set_property(TARGET APR::APR PROPERTY INTERFACE_COMPILE_DEFINITIONS "${_apr_defs}")
    endif()
    if(_apr_opts)
      set_property(TARGET APR::APR PROPERTY INTERFACE_COMPILE_OPTIONS "${_apr_opts}")
    endif()
    if(_apr_libs)
      set_property(TARGET APR::APR PROPERTY INTERFACE_LINK_LIBRARIES "${_apr_libs}")
    endif()
    unset(_apr_cflags)
    unset(_apr_defs)
    unset(_apr_opts)
    unset(_apr_libs)
    unset(_flag)
    unset(_lib)
  endif()
endif()

# Cross-compiling mproc for 64-bit Windows with Debian's mingw-w64 (gcc-mingw-w64-x86-64),
# running the built executables under Debian's wine.
#
#   cmake -S . -B build-ci/win64 \
#         -DCMAKE_TOOLCHAIN_FILE=cmake/mingw/toolchain-x86_64-w64-mingw32.cmake \
#         [-DMPROC_MINGW_DEPS=/path/to/mingw-deps]
#
# MPROC_MINGW_DEPS is the folder cmake/mingw/build-deps.sh fills (default
# build-ci/mingw-deps in this repository):
#   prefix/       static APR and CMocka built for mingw (include/, lib/, pkg-config, CMake config)
#   wineprefix/   the wine prefix the tests run in
#
# Compiler: the "-posix" variant of Debian's mingw gcc, named explicitly. Debian installs
# both variants and points the plain x86_64-w64-mingw32-gcc at "-win32" by default, so the
# plain name would depend on update-alternatives. The -posix variant is built with
# --enable-threads=posix on winpthreads: mproc's tests call the pthread API
# (pthread_create/pthread_join) and FindThreads expects -pthread to work, and with -posix the
# compiler's own runtime (libgcc, TLS emulation) uses the same thread library. APR itself
# uses Win32 threads either way.
#
# Linking: -static for executables and DLLs. Without it every executable needs
# libwinpthread-1.dll (and libgcc_s_seh-1.dll for some code) at run time, which wine only
# finds through WINEPATH; a dynamically linked test exits with status 53 (DLL not found)
# under wine. Static linking makes each .exe self-contained.

set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)

set(_mproc_mingw_triple x86_64-w64-mingw32)
set(CMAKE_C_COMPILER   ${_mproc_mingw_triple}-gcc-posix)
set(CMAKE_RC_COMPILER  ${_mproc_mingw_triple}-windres)
# The gcc-ar/gcc-ranlib wrappers understand LTO objects too.
set(CMAKE_AR     ${_mproc_mingw_triple}-gcc-ar-posix CACHE FILEPATH "Archiver")
set(CMAKE_RANLIB ${_mproc_mingw_triple}-gcc-ranlib-posix CACHE FILEPATH "Ranlib")

# Where the dependencies are. try_compile() projects re-read this file without the main
# project's cache, so the value is passed on to them explicitly.
if(NOT MPROC_MINGW_DEPS)
  if(DEFINED ENV{MPROC_MINGW_DEPS} AND NOT "$ENV{MPROC_MINGW_DEPS}" STREQUAL "")
    set(MPROC_MINGW_DEPS "$ENV{MPROC_MINGW_DEPS}")
  else()
    get_filename_component(MPROC_MINGW_DEPS "${CMAKE_CURRENT_LIST_DIR}/../../build-ci/mingw-deps" ABSOLUTE)
  endif()
endif()
set(MPROC_MINGW_DEPS "${MPROC_MINGW_DEPS}" CACHE PATH
    "Folder filled by cmake/mingw/build-deps.sh (prefix/ and wineprefix/)")
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES MPROC_MINGW_DEPS)
set(MPROC_MINGW_PREFIX "${MPROC_MINGW_DEPS}/prefix")

# Headers, libraries and packages come from the mingw sysroot and the dependency prefix
# only, never from the Linux host (whose libapr1-dev and libcmocka-dev may be installed
# for the native build); programs (pkg-config, the wine wrapper) come from the host.
set(CMAKE_FIND_ROOT_PATH "${MPROC_MINGW_PREFIX}" /usr/${_mproc_mingw_triple})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# pkg-config is the host's: point it at the prefix's .pc files alone, or FindAPR would
# read the Linux apr-1.pc (and its -DLINUX -D_GNU_SOURCE).
set(ENV{PKG_CONFIG_LIBDIR} "${MPROC_MINGW_PREFIX}/lib/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")
unset(ENV{PKG_CONFIG_SYSROOT_DIR})

# The prefix holds APR as a static library only: consumers need APR_DECLARE_STATIC and the
# Windows system libraries APR uses, which cmake/FindAPR.cmake adds when APR_STATIC is set.
set(APR_STATIC ON CACHE BOOL "Link the static APR (libapr-1.a)")

foreach(_kind EXE SHARED MODULE)
  set(CMAKE_${_kind}_LINKER_FLAGS_INIT "-static")
endforeach()
unset(_kind)

# ctest (and try_run) start the .exe files through wine; the wrapper sets up the wine
# prefix and passes the exit status on.
set(CMAKE_CROSSCOMPILING_EMULATOR
    "${CMAKE_CURRENT_LIST_DIR}/wine-run.sh;--prefix;${MPROC_MINGW_DEPS}/wineprefix")

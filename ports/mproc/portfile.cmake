# An overlay port that builds mproc from the checkout it lives in
# (vcpkg install mproc --overlay-ports=ports), so it needs no download and no hash:
# whatever is checked out is what gets built.
get_filename_component(SOURCE_PATH "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)

# vcpkg.json repeats the version that include/mproc/version.h defines; refuse to
# build a package whose version says something other than its sources.
file(STRINGS "${SOURCE_PATH}/include/mproc/version.h" _mproc_version_lines
     REGEX "^#define[ \t]+MPROC_VERSION_(MAJOR|MINOR|PATCH)[ \t]+[0-9]+")
set(_mproc_version "")
foreach(_part IN ITEMS MAJOR MINOR PATCH)
    if(NOT _mproc_version_lines MATCHES "MPROC_VERSION_${_part}[ \t]+([0-9]+)")
        message(FATAL_ERROR "MPROC_VERSION_${_part} not found in ${SOURCE_PATH}/include/mproc/version.h")
    endif()
    list(APPEND _mproc_version "${CMAKE_MATCH_1}")
endforeach()
list(JOIN _mproc_version "." _mproc_version)
if(NOT _mproc_version STREQUAL VERSION)
    message(FATAL_ERROR "ports/mproc/vcpkg.json says ${VERSION}, include/mproc/version.h says ${_mproc_version}: update vcpkg.json")
endif()

vcpkg_check_features(OUT_FEATURE_OPTIONS FEATURE_OPTIONS
    FEATURES
        test MPROC_BUILD_TESTS
)

set(_mproc_options "")
# vcpkg builds APR with the triplet's linkage. Against a static APR, FindAPR.cmake must
# look for the static library and add APR_DECLARE_STATIC (without it apr.h declares
# everything dllimport on Windows); the installed mprocConfig.cmake records the choice.
if(VCPKG_LIBRARY_LINKAGE STREQUAL "static")
    list(APPEND _mproc_options -DAPR_STATIC=ON)
endif()
# Outside Windows vcpkg's APR installs apr-1.pc. Give FindAPR.cmake a pkg-config so
# that it reads that file (found through CMAKE_PREFIX_PATH, which the vcpkg toolchain
# sets) rather than the system's: its Libs.private lists what a static libapr-1.a needs.
if(NOT VCPKG_TARGET_IS_WINDOWS)
    vcpkg_find_acquire_program(PKGCONFIG)
    list(APPEND _mproc_options "-DPKG_CONFIG_EXECUTABLE=${PKGCONFIG}")
endif()

# vcpkg_cmake_configure sets BUILD_SHARED_LIBS from VCPKG_LIBRARY_LINKAGE itself, and
# CMAKE_INSTALL_LIBDIR to lib, which the CONFIG_PATH below relies on.
vcpkg_cmake_configure(
    SOURCE_PATH "${SOURCE_PATH}"
    OPTIONS
        ${FEATURE_OPTIONS}
        ${_mproc_options}
        -DMPROC_BUILD_EXAMPLES=OFF
        -DMPROC_BUILD_BENCH=OFF
        -DMPROC_WARNINGS_AS_ERRORS=OFF
)
vcpkg_cmake_install()
vcpkg_copy_pdbs()

# CMakeLists.txt installs the package to ${CMAKE_INSTALL_LIBDIR}/cmake/mproc; this moves
# it to share/mproc and merges the debug and release target files.
vcpkg_cmake_config_fixup(CONFIG_PATH lib/cmake/mproc)
vcpkg_fixup_pkgconfig()

file(REMOVE_RECURSE
    "${CURRENT_PACKAGES_DIR}/debug/include"
    "${CURRENT_PACKAGES_DIR}/debug/share")

file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")

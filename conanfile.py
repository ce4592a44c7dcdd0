"""Conan 2 recipe for mproc, built from this source tree.

    conan create . --build=missing

builds mproc with conan center's APR and runs test_package/ against the result.
"""
import os
import re

from conan import ConanFile
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout
from conan.tools.files import copy, load, rmdir

required_conan_version = ">=2.0"


class MprocConan(ConanFile):
    name = "mproc"
    description = "Python's multiprocessing for C: processes, pipes, queues, locks and a process pool"
    license = "MIT"
    topics = ("multiprocessing", "process", "ipc", "pool")
    package_type = "library"
    settings = "os", "arch", "compiler", "build_type"
    options = {"shared": [True, False], "fPIC": [True, False]}
    default_options = {"shared": False, "fPIC": True}
    # What the library's own build reads; tests/, examples/ and bench/ stay out because
    # generate() turns them off.
    exports_sources = (
        "CMakeLists.txt",
        "LICENSE",
        "cmake/*",
        "include/*",
        "platform/*",
        "src/*",
    )

    def set_version(self):
        # include/mproc/version.h is the one place the version lives (CMakeLists.txt
        # reads it the same way).
        header = load(self, os.path.join(self.recipe_folder, "include", "mproc", "version.h"))
        parts = []
        for part in ("MAJOR", "MINOR", "PATCH"):
            m = re.search(rf"^#define\s+MPROC_VERSION_{part}\s+(\d+)", header, re.MULTILINE)
            if m is None:
                raise ValueError(f"MPROC_VERSION_{part} not found in include/mproc/version.h")
            parts.append(m.group(1))
        self.version = ".".join(parts)

    def config_options(self):
        if self.settings.os == "Windows":
            del self.options.fPIC

    def configure(self):
        if self.options.shared:
            self.options.rm_safe("fPIC")
        # A C library: the C++ settings do not change the binary.
        self.settings.rm_safe("compiler.cppstd")
        self.settings.rm_safe("compiler.libcxx")

    def layout(self):
        cmake_layout(self)

    def requirements(self):
        # mproc's headers include no APR header, so APR stays a private dependency of
        # the shared library; a static mproc needs it at the consumer's link.
        self.requires("apr/1.7.4")

    def generate(self):
        tc = CMakeToolchain(self)
        tc.cache_variables["MPROC_BUILD_TESTS"] = False
        tc.cache_variables["MPROC_BUILD_EXAMPLES"] = False
        tc.cache_variables["MPROC_BUILD_BENCH"] = False
        tc.generate()

        # CMakeLists.txt calls find_package(APR) and links APR::APR, which the project's
        # cmake/FindAPR.cmake provides from pkg-config or a file search. Have CMakeDeps
        # write a FindAPR.cmake of its own with that target instead: the toolchain puts
        # the generators folder first on CMAKE_MODULE_PATH, so it wins, and it carries
        # the include directory, APR_DECLARE_STATIC and the system libraries of the
        # exact APR package in the graph.
        deps = CMakeDeps(self)
        deps.set_property("apr", "cmake_find_mode", "module")
        deps.set_property("apr", "cmake_file_name", "APR")
        deps.set_property("apr", "cmake_target_name", "APR::APR")
        deps.generate()

    def build(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.build()

    def package(self):
        copy(self, "LICENSE", src=self.source_folder, dst=os.path.join(self.package_folder, "licenses"))
        cmake = CMake(self)
        cmake.install()
        # Consumers get mproc's CMake and pkg-config files from CMakeDeps and
        # PkgConfigDeps, generated from package_info(); the installed ones would find
        # APR on their own, outside the conan graph.
        rmdir(self, os.path.join(self.package_folder, "lib", "cmake"))
        rmdir(self, os.path.join(self.package_folder, "lib", "pkgconfig"))

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "mproc")
        self.cpp_info.set_property("cmake_target_name", "mproc::mproc")
        self.cpp_info.set_property("pkg_config_name", "mproc")
        self.cpp_info.libs = ["mproc"]
        if not self.options.shared:
            # include/mproc/export.h: without it a consumer on Windows would look for
            # __declspec(dllimport) symbols; CMakeLists.txt and mproc.pc set it too.
            self.cpp_info.defines = ["MPROC_STATIC"]
        if self.settings.os == "Linux":
            # Threads::Threads and CMAKE_DL_LIBS in CMakeLists.txt; librt for shm_open
            # on glibc older than 2.34 (an empty stub library on newer ones).
            self.cpp_info.system_libs = ["pthread", "dl", "rt"]
        elif self.settings.os == "FreeBSD":
            # dlopen and dladdr are in FreeBSD's libc (CMAKE_DL_LIBS is empty there).
            self.cpp_info.system_libs = ["pthread", "rt"]
        elif self.settings.os == "Windows":
            # WaitOnAddress (CMakeLists.txt's _mproc_system_libs); APR's own system
            # libraries come with the apr package.
            self.cpp_info.system_libs = ["synchronization"]

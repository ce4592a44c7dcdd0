#!/usr/bin/env bash
# The Windows lane of CI: cross-compiles for 64-bit Windows with Debian's mingw-w64 and
# runs the tests under Debian's wine. Runs as root on a fresh Debian 12, from any directory.
#
#   .ci/windows-lane.sh [BUILD_DIR]            (default: build-ci in the repository)
#
#   1. packages        apt-get install of the cross compiler, wine and the build tools
#   2. dependencies    cmake/mingw/build-deps.sh: static APR and CMocka for mingw from
#                      Debian's source packages, and the wine prefix, cached in
#                      BUILD_DIR/mingw-deps (skipped when the cache is complete)
#   3. selftest        cmake/mingw/selftest cross-built with the toolchain file, run by ctest
#                      under wine
#   4. mproc           configure with the toolchain file; build the library and the
#                      Windows layer's tests (win32.*) and run them under wine
#   5. the suite       build and ctest everything else (fork runs report themselves
#                      skipped: Windows has no fork), then the `large` tests one at a time
#   6. examples        every example program under wine (the run-examples target)
#
# Exit status: 0 when everything passed; 3 when mproc does not configure for Windows
# because platform/win32 is incomplete (steps 1-3 passed); anything else is a failure.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
mkdir -p "${1:-$repo/build-ci}"
out=$(cd "${1:-$repo/build-ci}" && pwd)
deps=$out/mingw-deps
toolchain=$repo/cmake/mingw/toolchain-x86_64-w64-mingw32.cmake
wine_run=$repo/cmake/mingw/wine-run.sh
jobs=$(nproc 2>/dev/null || echo 2)
ctest_timeout=600

export DEBIAN_FRONTEND=noninteractive
lane_start=$SECONDS
phase() { printf '\n=== windows: %s (%s, %ds into the lane)\n' "$1" "$(date -u +%H:%M:%S)" "$((SECONDS - lane_start))"; }

# Whatever happens, end the wine processes of the prefix: a test killed on timeout may
# leave Windows children behind, and a wineserver lingering after the lane would hold
# the build folder.
trap 'exec 8>&- 2>/dev/null; "$wine_run" --prefix "$deps/wineprefix" --stop || true' EXIT

phase "packages"
apt-get update
# gcc-mingw-w64-x86-64 brings both thread variants (-posix, -win32); the toolchain file
# uses -posix. wine64 is the 64-bit loader; wine is the command-line front end.
# dpkg-dev: apt-get source (and dpkg-source, perl). make: the generator of the cross builds.
apt-get install -y --no-install-recommends \
  cmake make pkg-config dpkg-dev \
  gcc-mingw-w64-x86-64 wine wine64
cmake --version | head -n 1
x86_64-w64-mingw32-gcc-posix --version | head -n 1
dpkg-query -W -f='wine ${Version}\n' wine64

phase "dependencies (APR, CMocka, wine prefix)"
cmake/mingw/build-deps.sh "$deps"

# One wine process kept alive for the rest of the lane. The first wine process of a
# prefix starts wine's own services (services.exe, winedevice.exe, ...), which inherit
# its standard output and live until the last wine process ends. Started by a test, they
# would hold that test's output pipe open, and ctest would wait for them: every test
# would seem to last as long as the longest one beside it. Started here, they hold only
# /dev/null. cmd.exe waits on the FIFO for commands that never come; closing descriptor
# 8 ends it, and the EXIT trap ends the rest.
keeper_fifo=$out/wine-keeper.fifo
rm -f "$keeper_fifo"
mkfifo "$keeper_fifo"
"$wine_run" --prefix "$deps/wineprefix" cmd.exe <"$keeper_fifo" >/dev/null 2>&1 &
exec 8>"$keeper_fifo"

phase "selftest: configure, build, ctest under wine"
cmake -S cmake/mingw/selftest -B "$out/mingw-selftest" \
  -DCMAKE_TOOLCHAIN_FILE="$toolchain" -DMPROC_MINGW_DEPS="$deps"
cmake --build "$out/mingw-selftest" -j "$jobs"
ctest --test-dir "$out/mingw-selftest" --output-on-failure --no-tests=error \
  --timeout "$ctest_timeout"

# ============================================================================ mproc
# mproc itself, cross-built. Static: a shared mproc would be libmproc.dll in the build
# root while the tests run from tests/, and wine would not find it.
phase "mproc: configure for Windows"
mproc_build=$out/win64
configure_log=$out/win64-configure.log
if ! cmake -S . -B "$mproc_build" \
     -DCMAKE_TOOLCHAIN_FILE="$toolchain" -DMPROC_MINGW_DEPS="$deps" \
     -DCMAKE_BUILD_TYPE=Debug -DBUILD_SHARED_LIBS=OFF -DMPROC_BUILD_BENCH=OFF \
     -DMPROC_BUILD_TESTS=ON -DMPROC_BUILD_EXAMPLES=ON \
     >"$configure_log" 2>&1; then
  cat "$configure_log"
  # CMakeLists.txt stops on purpose while platform/win32/ has no sources ("has no sources
  # yet"); a missing platform/win32 file is the same situation.
  if grep -Eq 'platform/win32/ has no sources yet|platform/win32/[^ ]*\.c' "$configure_log"; then
    echo
    echo "windows: STOPPED: mproc does not configure for Windows yet: platform/win32/ is not"
    echo "windows: complete. The toolchain, APR, CMocka and wine are ready (the selftest passed)."
    exit 3
  fi
  echo "windows: mproc's configure for Windows failed (log: $configure_log)" >&2
  exit 1
fi
cat "$configure_log"

# The library and the Windows layer's own tests (win32.*) first: the quickest verdict
# on platform/win32, before the longer build of the suite.
phase "mproc: build the library and the win32 tests"
cmake --build "$mproc_build" -j "$jobs" --target mproc win32_seam_test win32_core_test

phase "mproc: win32 tests under wine"
ctest --test-dir "$mproc_build" --output-on-failure --no-tests=error \
  --timeout "$ctest_timeout" -R '^win32\.' -j "$jobs"

# The whole suite. Windows has no fork: the .fork runs exit with the skip code and ctest
# lists them as skipped. The `large` tests (messages of more than 4 GiB, about 9 GiB of
# memory each; about 5 minutes together under wine) run after the rest, one at a time.
phase "mproc: build the whole suite for Windows"
cmake --build "$mproc_build" -j "$jobs"

phase "mproc: the whole suite under wine"
ctest --test-dir "$mproc_build" --output-on-failure --no-tests=error \
  --timeout "$ctest_timeout" -LE large -E '^win32\.' -j "$jobs"
phase "mproc: the large tests under wine"
ctest --test-dir "$mproc_build" --output-on-failure --no-tests=error \
  --timeout 1800 -L large -j 1
# The examples, each with the default start method (spawn here) and with `spawn`.
phase "mproc: the examples under wine"
cmake --build "$mproc_build" --target run-examples

phase "windows lane passed"

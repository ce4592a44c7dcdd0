#!/bin/sh
# Builds the Windows platform layer's own test with MinGW and runs it under wine
# (or, on Windows with MSYS2, directly). Needs no APR and no CMocka.
#   tests/win32/run.sh [build-dir]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-${TMPDIR:-/tmp}/mproc-win32-seam}
cc=${MINGW_CC:-x86_64-w64-mingw32-gcc}
mkdir -p "$out"
# _WIN32_WINNT=0x0602 (Windows 8) is set by platform/win32/win32.h; MinGW's own
# printf is needed for %zu.
build() {
  "$cc" -std=c11 -O1 -g -Wall -Wextra -Wconversion -Wshadow -Wstrict-prototypes -Werror \
    -D__USE_MINGW_ANSI_STDIO=1 -DMPROC_STATIC \
    -I "$root/include" -I "$root/platform" -I "$root/src" \
    "$@" "$root/src/error.c" "$root"/platform/win32/*.c -lsynchronization -lshell32
}
build "$here/seam_test.c" -o "$out/seam_test.exe"
build "$here/core_test.c" "$root/src/wire.c" "$root/src/conn.c" "$root/src/share.c" \
  "$root/src/queue.c" -o "$out/core_test.exe"
case "$(uname -s)" in
  MINGW* | MSYS* | CYGWIN*) run() { "$@"; } ;;
  *)
    # wine-run.sh rather than plain wine: it passes the program's exit status on (a
    # crash too, which wine's debugger would otherwise race with) and keeps wine quiet.
    # Its default prefix is the lane's (build-ci/mingw-deps/wineprefix); WINEPREFIX
    # picks another.
    run() { "$root/cmake/mingw/wine-run.sh" "$@"; }
    ;;
esac
rc=0
run "$out/seam_test.exe" || rc=1
run "$out/core_test.exe" || rc=1
exit $rc

#!/usr/bin/env bash
# Builds static APR and CMocka for 64-bit Windows with Debian's mingw-w64 cross compiler,
# from Debian's own source packages, and prepares the wine prefix the tests run in.
#
#   cmake/mingw/build-deps.sh [CACHE_DIR]        (default: build-ci/mingw-deps in the repo)
#
# Needs (as .ci/windows-lane.sh installs them): cmake make pkg-config dpkg-dev
# gcc-mingw-w64-x86-64 wine wine64, and root for the deb-src entry and apt-get update.
#
# CACHE_DIR afterwards:
#   prefix/        include/apr-1/ (APR headers), include/cmocka*.h,
#                  lib/libapr-1.a, lib/libcmocka.a (static, renamed from libcmocka-static.a),
#                  lib/pkgconfig/{apr-1,cmocka}.pc, lib/cmake/cmocka/ (CMocka's config)
#   wineprefix/    the wine prefix (created by wine-run.sh --init)
#   downloads/     the source packages (.dsc, .orig.tar, .debian.tar), kept so a rebuild
#                  needs no network
#   src/, build/   unpacked and patched sources and build trees (removed when done)
#   .complete      stamp: when it holds the current key, the whole script is skipped
#
# The key covers this script, the toolchain file, the compiler and the mingw runtime
# versions, so editing any of them rebuilds everything; delete CACHE_DIR to force it.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
toolchain=$here/toolchain-x86_64-w64-mingw32.cmake
wine_run=$here/wine-run.sh

cache=${1:-$repo/build-ci/mingw-deps}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
case "$cache" in
  / | "$repo" | "$HOME") echo "build-deps: refusing to use $cache as the cache" >&2; exit 2 ;;
esac
prefix=$cache/prefix
downloads=$cache/downloads
jobs=$(nproc 2>/dev/null || echo 2)
cc=x86_64-w64-mingw32-gcc-posix

start=$SECONDS
say() { printf 'build-deps [%3ds]: %s\n' "$((SECONDS - start))" "$*" >&2; }
die() { printf 'build-deps: error: %s\n' "$*" >&2; exit 1; }

for tool in cmake make pkg-config "$cc" apt-get dpkg-source perl flock; do
  command -v "$tool" >/dev/null || die "$tool not found (see .ci/windows-lane.sh for the packages)"
done

key=$(
  {
    sha256sum "${BASH_SOURCE[0]}" "$toolchain" | cut -d' ' -f1
    "$cc" --version | head -n 1
    dpkg-query -W -f='${Package} ${Version}\n' mingw-w64-x86-64-dev 2>/dev/null || true
  } | sha256sum | cut -d' ' -f1
)
if [ -f "$cache/.complete" ] && [ "$(cat "$cache/.complete")" = "$key" ] \
   && [ -f "$prefix/lib/libapr-1.a" ] && [ -f "$prefix/lib/libcmocka.a" ] \
   && [ -f "$cache/wineprefix/.mproc-wineprefix-ready" ]; then
  say "cache complete in $cache, nothing to build"
  exit 0
fi
rm -f "$cache/.complete"
say "building into $cache"

# ------------------------------------------------------------------ sources

# apt-get source needs deb-src lines. They go into a file of their own, a copy of the
# machine's Debian entries with the type changed, so the same mirror (and snapshot, if
# any) serves the sources; the machine's own files stay as they are.
src_list=/etc/apt/sources.list.d/mproc-src.sources
ensure_deb_src() {
  local want
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    want=$(awk 'BEGIN { RS = ""; ORS = "\n\n" } /(^|\n)Types:[^\n]*deb/' \
             /etc/apt/sources.list.d/debian.sources | sed -E 's/^Types:.*/Types: deb-src/')
  else
    # Older layout (sources.list only): Debian's main archive for this release.
    local codename
    codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    want="Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $codename $codename-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: $codename-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
  fi
  [ -n "$want" ] || die "no Debian entry found to derive deb-src lines from"
  if [ ! -f "$src_list" ] || [ "$(cat "$src_list")" != "$want" ]; then
    say "adding deb-src entries in $src_list"
    printf '%s\n' "$want" >"$src_list"
  fi
  # Always refresh: the deb-src indexes may be missing or stale even when the file is not new.
  apt-get update -q >/dev/null
}

if ! ls "$downloads"/apr_*.dsc >/dev/null 2>&1 || ! ls "$downloads"/cmocka_*.dsc >/dev/null 2>&1; then
  ensure_deb_src
  # Unpacking happens below, from these files. Run the download as root: the _apt sandbox
  # user cannot write into a root-owned cache folder.
  # A partial download (no network, say) must not look like a complete one next time.
  rm -rf "$downloads.part"
  mkdir -p "$downloads.part"
  (cd "$downloads.part" && apt-get source -q --download-only --only-source \
      -o APT::Sandbox::User=root apr cmocka)
  rm -rf "$downloads"
  mv "$downloads.part" "$downloads"
fi

rm -rf "$cache/src" "$cache/build" "$cache/logs"
mkdir -p "$cache/src" "$cache/build" "$cache/logs"
unpack() { # NAME -> prints the unpacked directory
  local dsc
  dsc=$(ls "$downloads"/"$1"_*.dsc | sort -V | tail -n 1)
  # dpkg-source checks the files against the .dsc and applies Debian's own patches
  # (debian/patches/series). It cannot check the .dsc's signature without debian-keyring
  # and says so; apt-get has already verified the files against the signed archive.
  (cd "$cache/src" && dpkg-source -x "$dsc" "$1") >"$cache/logs/unpack-$1.log" 2>&1 || {
    cat "$cache/logs/unpack-$1.log" >&2
    die "cannot unpack $dsc; delete $downloads to download the sources again"
  }
  echo "$cache/src/$1"
}
apr_src=$(unpack apr)
cmocka_src=$(unpack cmocka)
apr_version=$(sed -nE 's/^#define APR_(MAJOR|MINOR|PATCH)_VERSION +([0-9]+).*/\2/p' \
                "$apr_src/include/apr_version.h" | paste -sd.)
cmocka_version=$(dpkg-parsechangelog -l "$cmocka_src/debian/changelog" -S Version 2>/dev/null || echo '?')
say "APR $apr_version (Debian $(dpkg-parsechangelog -l "$apr_src/debian/changelog" -S Version 2>/dev/null || echo '?')), CMocka $cmocka_version"
[ "$apr_version" = 1.7.2 ] || say "warning: the adjustments below were written for APR 1.7.2"

# ------------------------------------------------------------- adjustments

# edit FILE ID OLD NEW: replace the literal text OLD (it may span lines) by NEW, which
# must contain the marker "mproc-mingw: ID". A file that has the marker already is left
# alone (running twice is harmless); a file with neither is an error, so a changed
# upstream source stops the build here rather than in a puzzling compile error.
edit() {
  local file=$1 id=$2 old=$3 new=$4
  [ -f "$file" ] || die "$file: not found"
  case "$new" in *"mproc-mingw: $id"*) ;; *) die "edit $id: replacement lacks its marker" ;; esac
  if grep -qF "mproc-mingw: $id" "$file"; then
    say "$file: $id already applied"
    return 0
  fi
  OLD=$old NEW=$new perl -0777 -i -ne \
    '$n = s/\Q$ENV{OLD}\E/$ENV{NEW}/g; print; END { exit($n ? 0 : 3) }' "$file" \
    || die "$file: text for '$id' not found; the source changed, review the adjustments"
}

cd "$apr_src"

# APR hides accctrl.h's dependence on wtypes.h by faking its include guard; mingw's
# accctrl.h includes what it needs and then lacks the types the fake guard skipped.
edit include/arch/win32/apr_private.h accctrl \
'#ifdef __wtypes_h__
#include <accctrl.h>
#else
#define __wtypes_h__
#include <accctrl.h>
#undef __wtypes_h__
#endif' \
'/* mproc-mingw: accctrl: a plain include, mingw'"'"'s header is self-contained */
#include <accctrl.h>'

# NOUSER drops winuser.h from windows.h, but mingw's ole2.h (pulled in by the same
# windows.h) needs LPMSG from it. Same block in the three apr.h templates.
for f in include/apr.hw include/apr.hwc include/apr.h.in; do
  edit "$f" nouser \
'#ifndef NOUSER
#define NOUSER
#endif' \
'/* mproc-mingw: nouser: NOUSER left undefined, mingw'"'"'s ole2.h needs LPMSG */'
done

# APR declares if_nametoindex/if_indextoname itself, with types from netioapi.h, which
# it never includes (MSVC's windows.h happens to bring them); mingw's netioapi.h has no
# NETIOAPI_API_ either.
edit include/arch/win32/apr_arch_misc.h netioapi \
'#if HAVE_IF_NAMETOINDEX
#ifdef if_nametoindex' \
'/* mproc-mingw: netioapi: the types of the declarations below */
#include <ifdef.h>
#include <netioapi.h>
#ifndef NETIOAPI_API_
#define NETIOAPI_API_ WINAPI
#endif

#if HAVE_IF_NAMETOINDEX
#ifdef if_nametoindex'

# sockaddr.c includes those declarations for MSVC only; without them mingw compiles
# if_indextoname as an implicit function returning int, which truncates the returned
# pointer on 64-bit Windows.
edit network_io/unix/sockaddr.c sockaddr-misc \
'#if defined(HAVE_IF_INDEXTONAME) && defined(_MSC_VER)' \
'/* mproc-mingw: sockaddr-misc: mingw needs the declarations too */
#if defined(HAVE_IF_INDEXTONAME) && (defined(_MSC_VER) || defined(__MINGW32__))'

# The win32 atomics include the Unix apr_arch_atomic.h, which, seeing GCC on x86-64,
# asks for the mutex-based generic 64-bit atomics (NEED_ATOMICS_GENERIC64); those
# (atomic/unix/mutex64.c) are not part of the win32 build, whose own
# atomic/win32/apr_atomic64.c implements the 64-bit calls with Interlocked*.
edit atomic/win32/apr_atomic.c generic64 \
'#if defined (NEED_ATOMICS_GENERIC64)
    return apr__atomic_generic64_init(p);' \
'#if 0 /* mproc-mingw: generic64: atomic/win32/apr_atomic64.c needs no init */
    return apr__atomic_generic64_init(p);'

# ------------------------------------------------------------------- build

# logged NAME COMMAND...: the build's output (APR has many warnings under gcc 12) goes to
# CACHE_DIR/logs/NAME.log; on failure its end is shown.
logged() {
  local log=$cache/logs/$1.log
  shift
  if ! "$@" >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    die "failed: $* (whole output in $log)"
  fi
}

common_args=(
  -DCMAKE_TOOLCHAIN_FILE="$toolchain"
  -DMPROC_MINGW_DEPS="$cache"
  -DCMAKE_BUILD_TYPE=RelWithDebInfo
  -DCMAKE_INSTALL_PREFIX="$prefix"
  -Wno-dev
)
rm -rf "$prefix"
mkdir -p "$prefix/include/apr-1" "$prefix/lib/pkgconfig"

# The wine prefix is needed for gen_test_char below and by every test after.
"$wine_run" --prefix "$cache/wineprefix" --init

say "APR: configure"
# IF_NAMESIZE is in the Unix net/if.h, which mingw does not have; 256 is Windows'
# IF_MAX_STRING_SIZE + 1.
logged apr-configure cmake -S "$apr_src" -B "$cache/build/apr" "${common_args[@]}" \
  -DCMAKE_C_FLAGS="-DIF_NAMESIZE=256" \
  -DAPR_HAVE_IPV6=ON -DAPR_BUILD_TESTAPR=OFF -DINSTALL_PDB=OFF

# gen_test_char is a Windows program that writes a generated header; the build would
# run it directly, which cannot work when cross-compiling. Build it, run it under wine,
# and leave the header newer than the program so that make does not try again.
say "APR: gen_test_char under wine"
logged apr-gen_test_char cmake --build "$cache/build/apr" --target gen_test_char -j "$jobs"
gen=$(find "$cache/build/apr" -maxdepth 2 -name gen_test_char.exe | head -n 1)
[ -n "$gen" ] || die "gen_test_char.exe was not built"
"$wine_run" --prefix "$cache/wineprefix" "$gen" | tr -d '\r' >"$cache/build/apr/apr_escape_test_char.h.tmp"
grep -q 'test_char_table' "$cache/build/apr/apr_escape_test_char.h.tmp" \
  || die "gen_test_char under wine wrote no table"
mv "$cache/build/apr/apr_escape_test_char.h.tmp" "$cache/build/apr/apr_escape_test_char.h"

say "APR: build the static library"
logged apr-build cmake --build "$cache/build/apr" --target apr-1 -j "$jobs"
[ -f "$cache/build/apr/libapr-1.a" ] || die "libapr-1.a was not built"

# APR's install() rule also wants the DLL and libaprapp, which are not built: install
# by hand what a static consumer needs. The headers go into include/apr-1 as on Unix.
cp "$cache/build/apr/libapr-1.a" "$prefix/lib/"
cp "$apr_src"/include/apr_*.h "$prefix/include/apr-1/"
cp "$cache/build/apr/apr.h" "$prefix/include/apr-1/"
# ${pcfiledir} keeps the file valid when the cache folder is moved.
cat >"$prefix/lib/pkgconfig/apr-1.pc" <<EOF
# Written by mproc's cmake/mingw/build-deps.sh: APR $apr_version built static for mingw.
prefix=\${pcfiledir}/../..
exec_prefix=\${prefix}
libdir=\${prefix}/lib
includedir=\${prefix}/include/apr-1

Name: APR
Description: The Apache Portable Runtime library (static, x86_64-w64-mingw32)
Version: $apr_version
Libs: -L\${libdir} -lapr-1 -lws2_32 -lrpcrt4 -lmswsock -ladvapi32 -lshell32 -liphlpapi
Cflags: -DAPR_DECLARE_STATIC -I\${includedir}
EOF

say "CMocka: configure, build, install"
logged cmocka-configure cmake -S "$cmocka_src" -B "$cache/build/cmocka" "${common_args[@]}" \
  -DWITH_STATIC_LIB=ON -DWITH_EXAMPLES=OFF -DUNIT_TESTING=OFF
logged cmocka-build cmake --build "$cache/build/cmocka" -j "$jobs"
logged cmocka-install cmake --install "$cache/build/cmocka"
# CMocka 1.1.5 always builds the DLL as well, names the static library
# libcmocka-static.a, and its CMake config and cmocka.pc point at the DLL's import
# library. Keep the static library alone, under the name they use (-lcmocka), so that
# no consumer can end up needing cmocka.dll at run time.
[ -f "$prefix/lib/libcmocka-static.a" ] || die "libcmocka-static.a was not installed"
mv "$prefix/lib/libcmocka-static.a" "$prefix/lib/libcmocka.a"
rm -f "$prefix/lib/libcmocka.dll.a" "$prefix"/bin/*cmocka*.dll
rmdir "$prefix/bin" 2>/dev/null || true
edit "$prefix/lib/cmake/cmocka/cmocka-config.cmake" static-lib \
'set(CMOCKA_LIBRARY ${PACKAGE_PREFIX_DIR}/lib/cmocka.dll.a)
set(CMOCKA_LIBRARIES ${PACKAGE_PREFIX_DIR}/lib/cmocka.dll.a)' \
'# mproc-mingw: static-lib: the static library, the DLL is not installed
set(CMOCKA_LIBRARY ${PACKAGE_PREFIX_DIR}/lib/libcmocka.a)
set(CMOCKA_LIBRARIES ${PACKAGE_PREFIX_DIR}/lib/libcmocka.a)'

# cmocka.pc names the prefix absolutely; relative to the .pc file, like apr-1.pc, it
# stays valid when the cache folder is moved.
PREFIX=$prefix perl -pi -e 's/\Q$ENV{PREFIX}\E/\$\{pcfiledir\}\/..\/../g' "$prefix/lib/pkgconfig/cmocka.pc"
grep -q 'pcfiledir' "$prefix/lib/pkgconfig/cmocka.pc" || die "cmocka.pc: prefix not found in it"

rm -rf "$cache/src" "$cache/build"
echo "$key" >"$cache/.complete"
say "done: $(du -sh "$prefix" | cut -f1) in $prefix, wine prefix $(du -sh "$cache/wineprefix" | cut -f1)"

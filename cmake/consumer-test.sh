#!/usr/bin/env bash
# Installs mproc (shared, then static) into two fresh prefixes and uses each the way a
# user would: the install tree's layout, find_package(mproc) + mproc::mproc, the version
# check, and pkg-config (plain for shared, --static for static).
#
#   cmake/consumer-test.sh SOURCE_DIR WORK_DIR
#
# WORK_DIR is emptied first. Prints "consumer: N passed, M failed"; exits non-zero on
# any failure. Extra configure arguments can be given in MPROC_CONSUMER_CMAKE_ARGS
# (e.g. a toolchain or -DCMAKE_C_COMPILER=clang).
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 SOURCE_DIR WORK_DIR" >&2
  exit 2
fi
src=$(cd "$1" && pwd)
mkdir -p "$2"
work=$(cd "$2" && pwd)
case "$work" in
  / | "$src") echo "consumer: refusing to use $work as the work directory" >&2; exit 2 ;;
esac
rm -rf "${work:?}"/*

jobs=$(nproc 2>/dev/null || echo 2)
read -r -a extra_args <<<"${MPROC_CONSUMER_CMAKE_ARGS:-}"
consumer_src="$src/tests/consumer"
cc=${CC:-cc}

version=$(sed -nE 's/^#define MPROC_VERSION_(MAJOR|MINOR|PATCH) +([0-9]+).*/\2/p' \
  "$src/include/mproc/version.h" | paste -sd.)
major=${version%%.*}
minor=${version#*.}
minor=${minor%%.*}
# The SONAME carries the minor number too while the version is 0.x (see CMakeLists.txt).
if [ "$major" = 0 ]; then soversion=$major.$minor; else soversion=$major; fi

passed=0
failed=0
failures=()

# check NAME COMMAND...: runs COMMAND with its output in a log file; counts the result.
check() {
  local name=$1
  shift
  local log
  log="$work/logs/$(printf '%02d' $((passed + failed)))-${name//[^A-Za-z0-9_.-]/_}.log"
  mkdir -p "$work/logs"
  if "$@" >"$log" 2>&1; then
    passed=$((passed + 1))
    echo "  ok    $name"
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "  FAIL  $name (log: $log)"
    sed 's/^/        | /' "$log" | tail -n 40
  fi
}

# The commands behind the checks.

install_mproc() { # KIND PREFIX
  local shared=ON
  [ "$1" = static ] && shared=OFF
  cmake -S "$src" -B "$work/build-$1" \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=$shared \
    -DMPROC_BUILD_TESTS=OFF -DMPROC_BUILD_EXAMPLES=OFF \
    -DCMAKE_INSTALL_PREFIX="$2" -DCMAKE_INSTALL_LIBDIR=lib \
    "${extra_args[@]}" &&
    cmake --build "$work/build-$1" -j "$jobs" &&
    cmake --install "$work/build-$1"
}

files_exist() { # PREFIX FILE...
  local prefix=$1 f rc=0
  shift
  for f in "$@"; do
    if [ -e "$prefix/$f" ]; then echo "present: $f"; else echo "missing: $f"; rc=1; fi
  done
  return $rc
}

shared_chain() { # PREFIX: libmproc.so -> libmproc.so.SOVERSION -> libmproc.so.VERSION
  local lib=$1/lib
  [ -L "$lib/libmproc.so" ] && [ -L "$lib/libmproc.so.$soversion" ] && [ -f "$lib/libmproc.so.$version" ] &&
    [ "$(readlink "$lib/libmproc.so")" = "libmproc.so.$soversion" ] &&
    [ "$(readlink "$lib/libmproc.so.$soversion")" = "libmproc.so.$version" ] &&
    [ "$(objdump -p "$lib/libmproc.so.$version" | awk '$1 == "SONAME" { print $2 }')" = "libmproc.so.$soversion" ] &&
    [ ! -e "$lib/libmproc.a" ]
}

exports_only_api() { # PREFIX: hidden visibility leaves only mproc_* in the dynamic table
  local others
  nm -D --defined-only "$1/lib/libmproc.so" | awk '{ print $NF }' | sort >"$work/exports.txt"
  cat "$work/exports.txt"
  others=$(grep -v '^mproc_' "$work/exports.txt" || true)
  [ -z "$others" ] && grep -q '^mproc_init$' "$work/exports.txt"
}

static_interface() { # PREFIX: link dependencies and MPROC_STATIC travel with the target
  local targets=$1/lib/cmake/mproc/mprocTargets.cmake
  grep -E 'INTERFACE_LINK_LIBRARIES' "$targets" &&
    grep -q 'APR::APR' "$targets" && grep -q 'Threads::Threads' "$targets" &&
    grep -q 'MPROC_STATIC' "$targets" && [ ! -e "$1/lib/libmproc.so" ]
}

pc_fields() { # PREFIX KIND
  local pc=$1/lib/pkgconfig/mproc.pc
  cat "$pc"
  grep -q '^Requires.private: *apr-1' "$pc" && grep -q '^Libs: .*-lmproc' "$pc" &&
    grep -q '^Libs.private: .*-lpthread' "$pc" &&
    [ "$(PKG_CONFIG_PATH="$1/lib/pkgconfig" pkg-config --modversion mproc)" = "$version" ] &&
    if [ "$2" = static ]; then
      grep -q '^Cflags: .*-DMPROC_STATIC' "$pc"
    elif grep -q MPROC_STATIC "$pc"; then
      return 1
    fi
}

run_consumer() { # EXE PREFIX
  local out
  out=$(LD_LIBRARY_PATH="$2/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$1")
  echo "$out"
  grep -qx "mproc $version" <<<"$out" && grep -qx 'pipe round trip: ok' <<<"$out"
}

cmake_consumer() { # KIND PREFIX
  cmake -S "$consumer_src" -B "$work/consumer-$1" -DCMAKE_PREFIX_PATH="$2" \
    -DMPROC_CONSUMER_REQUIRE="$major.$minor" -DCMAKE_BUILD_TYPE=Release "${extra_args[@]}" &&
    cmake --build "$work/consumer-$1" &&
    run_consumer "$work/consumer-$1/consumer" "$2"
}

pc_relocatable() { # PREFIX: a copied install tree's mproc.pc points into the copy
  local moved=$work/moved-prefix flags
  rm -rf "$moved" && cp -a "$1" "$moved" || return 1
  flags=$(PKG_CONFIG_PATH="$moved/lib/pkgconfig" pkg-config --cflags --libs mproc) || return 1
  echo "$flags"
  grep -q -- "-I$moved/lib/pkgconfig/../../include" <<<"$flags" &&
    grep -q -- "-L$moved/lib/pkgconfig/../../lib" <<<"$flags"
}

version_refused() { # PREFIX REQUEST: find_package(mproc REQUEST) must fail on the version
  local out
  if out=$(cmake -S "$consumer_src" -B "$work/refuse-$2" -DCMAKE_PREFIX_PATH="$1" \
    -DMPROC_CONSUMER_REQUIRE="$2" "${extra_args[@]}" 2>&1); then
    echo "$out"
    echo "find_package(mproc $2) was accepted by version $version"
    return 1
  fi
  echo "$out"
  grep -q 'compatible' <<<"$out" && grep -q "mprocConfig.cmake, version: $version" <<<"$out"
}

pkgconfig_consumer() { # KIND PREFIX
  local flags deps static=()
  [ "$1" = static ] && static=(--static)
  flags=$(PKG_CONFIG_PATH="$2/lib/pkgconfig" pkg-config "${static[@]}" --cflags --libs mproc)
  echo "$cc main.c $flags"
  # shellcheck disable=SC2086 # the flags are meant to split
  "$cc" -o "$work/pc-$1" "$consumer_src/main.c" $flags || return 1
  # Not `ldd | grep -q`: grep quitting early makes ldd fail on SIGPIPE under pipefail.
  deps=$(LD_LIBRARY_PATH="$2/lib" ldd "$work/pc-$1") || return 1
  echo "$deps"
  if [ "$1" = static ]; then
    ! grep -q libmproc <<<"$deps" || return 1
  else
    grep -q "$2/lib/libmproc.so.$major" <<<"$deps" || return 1
  fi
  run_consumer "$work/pc-$1" "$2"
}

echo "consumer: mproc $version from $src, work dir $work"
common_files=(
  include/mproc.h include/mproc/version.h include/mproc/export.h
  lib/cmake/mproc/mprocConfig.cmake lib/cmake/mproc/mprocConfigVersion.cmake
  lib/cmake/mproc/FindAPR.cmake lib/cmake/mproc/mprocTargets.cmake
  lib/pkgconfig/mproc.pc
)

for kind in shared static; do
  prefix=$work/prefix-$kind
  echo "--- $kind"
  check "$kind: configure, build, install" install_mproc "$kind" "$prefix"
  check "$kind: install tree" files_exist "$prefix" "${common_files[@]}"
  if [ "$kind" = shared ]; then
    check "shared: libmproc.so symlink chain and SONAME" shared_chain "$prefix"
    check "shared: exports only mproc_ symbols" exports_only_api "$prefix"
  else
    check "static: libmproc.a" files_exist "$prefix" lib/libmproc.a
    check "static: exported link interface" static_interface "$prefix"
  fi
  check "$kind: mproc.pc fields" pc_fields "$prefix" "$kind"
  check "$kind: find_package(mproc $major.$minor) consumer" cmake_consumer "$kind" "$prefix"
  check "$kind: pkg-config consumer" pkgconfig_consumer "$kind" "$prefix"
done
check "mproc.pc follows a moved install tree" pc_relocatable "$work/prefix-shared"

# SameMinorVersion (see CMakeLists.txt): the next major is refused, and so is an
# older minor of the same major while the major is 0.
next_major="$((major + 1)).0"
check "find_package(mproc $next_major) refused" version_refused "$work/prefix-shared" "$next_major"
if [ "$major" -eq 0 ] && [ "$minor" -gt 0 ]; then
  older_minor="0.$((minor - 1))"
  check "find_package(mproc $older_minor) refused" version_refused "$work/prefix-shared" "$older_minor"
fi

echo "consumer: $passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then
  printf 'consumer: failed: %s\n' "${failures[@]}"
  exit 1
fi

#!/usr/bin/env bash
# Runs a Windows executable under Debian's 64-bit wine, for CMAKE_CROSSCOMPILING_EMULATOR
# (ctest, try_run) and for the scripts of the Windows lane.
#
#   wine-run.sh [--prefix WINEPREFIX] PROGRAM.exe [ARGS...]   run it; exits with its status
#   wine-run.sh [--prefix WINEPREFIX] --init                  create the wine prefix only
#   wine-run.sh [--prefix WINEPREFIX] --stop                  end the prefix's wineserver
#
# The prefix defaults to $WINEPREFIX, then to build-ci/mingw-deps/wineprefix in this
# repository. A missing prefix is created on first use, under a lock, so that the first
# tests of a parallel ctest do not all try to create it at once.
#
# Exit status: the program's own, as wine passes it on: its low byte (a status whose low
# byte is 0 but which is not 0 came out as 1, not as success); a crash gives the exception
# code's low byte, e.g. 5 for an access violation, 3 for abort(). 127 when no wine is found.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

prefix=${WINEPREFIX:-$repo/build-ci/mingw-deps/wineprefix}
action=run
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#--prefix=}; shift ;;
    --init) action=init; shift ;;
    --stop) action=stop; shift ;;
    --) shift; break ;;
    *) break ;;
  esac
done
if [ "$action" = run ] && [ $# -eq 0 ]; then
  echo "usage: $0 [--prefix WINEPREFIX] PROGRAM.exe [ARGS...] | --init | --stop" >&2
  exit 2
fi

# wine refuses a relative prefix.
mkdir -p "$(dirname "$prefix")"
prefix=$(cd "$(dirname "$prefix")" && pwd)/$(basename "$prefix")
export WINEPREFIX=$prefix

# Debian 12 ships the 64-bit loader as /usr/lib/wine/wine64; /usr/bin/wine is a shell
# script that looks for the 32-bit loader first and prints a hint about wine32 when it is
# missing. Calling the loader directly keeps the output clean and lets exec below hand the
# process (and ctest's signals) to wine itself. WINELOADER tells wine how to start the
# child processes a test creates.
loader=
for candidate in /usr/lib/wine/wine64 "$(command -v wine64 || true)" "$(command -v wine || true)"; do
  if [ -n "$candidate" ] && [ -x "$candidate" ]; then loader=$candidate; break; fi
done
if [ -z "$loader" ]; then
  echo "wine-run.sh: no wine loader found (apt-get install wine wine64)" >&2
  exit 127
fi
export WINELOADER=$loader
server=/usr/lib/wine/wineserver64
[ -x "$server" ] || server=$(command -v wineserver || true)

# Quiet, and never a window: without a display nothing can wait on a dialog that nobody
# would close.
export WINEDEBUG=${WINEDEBUG:--all}
unset DISPLAY WAYLAND_DISPLAY
# Programs wine would start on its own, disabled:
# - mscoree, mshtml: wineboot would offer to install Mono and Gecko (no network here, and
#   nothing uses .NET or HTML);
# - winemenubuilder: writes menu entries and file associations into $HOME;
# - winedbg: on an unhandled exception wine starts winedbg --auto, which prints a backtrace
#   and then ends the process from outside, racing with its exit: the status seen here was
#   then 0 or 5 at random, so a crashing test could pass. Without the debugger the process
#   ends itself with the exception code (5 for an access violation), every time; wine still
#   prints "Unhandled page fault ... at address ...". MPROC_WINE_BACKTRACE=1 brings the
#   backtrace back when debugging, exit status unreliable.
overrides="mscoree,mshtml=;winemenubuilder.exe=d"
if [ "${MPROC_WINE_BACKTRACE:-0}" != 1 ]; then overrides="$overrides;winedbg.exe=d"; fi
export WINEDLLOVERRIDES="$overrides${WINEDLLOVERRIDES:+;$WINEDLLOVERRIDES}"

stamp=$prefix/.mproc-wineprefix-ready

init_prefix() {
  [ -f "$stamp" ] && return 0
  mkdir -p "$prefix"
  (
    # One creator at a time; the others wait and then find the stamp.
    exec 9>"$prefix.lock"
    flock 9
    if [ ! -f "$stamp" ]; then
      echo "wine-run.sh: creating the wine prefix $prefix" >&2
      # wineboot -i creates the registry and C:\windows; wineserver -w waits until every
      # process of that start-up has finished writing. The "syswow64\rundll32.exe" message
      # it prints is expected without the 32-bit wine32 package.
      "$loader" wineboot -i </dev/null
      if [ -n "$server" ]; then "$server" -w; fi
      [ -f "$prefix/system.reg" ] || { echo "wine-run.sh: wineboot did not create $prefix" >&2; exit 1; }
      touch "$stamp"
    fi
  )
}

case "$action" in
  init)
    init_prefix
    ;;
  stop)
    if [ -n "$server" ] && [ -d "$prefix" ]; then "$server" -k 2>/dev/null || true; fi
    ;;
  run)
    init_prefix
    exec "$loader" "$@"
    ;;
esac

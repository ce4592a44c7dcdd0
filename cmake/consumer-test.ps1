# The find_package part of cmake/consumer-test.sh, for Windows (MSVC or MinGW-w64): uses an
# mproc already installed under -Prefix the way a user would. The install tree's layout,
# find_package(mproc MAJOR.MINOR) + mproc::mproc with a program that runs, and the refusal
# of the next major version. The shell script's SONAME, ldd and pkg-config checks are
# about ELF systems and stay there.
#
#   cmake/consumer-test.ps1 -Source . -Prefix C:\mproc -Work C:\consumer `
#       -CMakeArgs @('-G', 'Visual Studio 17 2022', '-A', 'x64') -RuntimePath C:\vcpkg\installed\x64-windows\bin
#
# -RuntimePath: directories holding the DLLs mproc.dll needs (APR's), put on PATH to run
# the consumer. Exits non-zero on the first failure.
param(
  [Parameter(Mandatory)] [string] $Source,
  [Parameter(Mandatory)] [string] $Prefix,
  [Parameter(Mandatory)] [string] $Work,
  [string[]] $CMakeArgs = @(),
  [string[]] $RuntimePath = @(),
  [string] $Config = 'Release'
)

# Not 'Stop': Windows PowerShell turns every line a native program writes to stderr into a
# terminating error under it. Exit codes are checked instead.
$ErrorActionPreference = 'Continue'

function Invoke-Checked {
  # Runs a native command, echoes its output, throws on a non-zero exit code.
  $exe, $rest = $args
  & $exe @rest 2>&1 | ForEach-Object { "$_" }
  if ($LASTEXITCODE -ne 0) { throw "failed ($LASTEXITCODE): $exe $rest" }
}

$Source = (Resolve-Path $Source).Path
$Prefix = (Resolve-Path $Prefix).Path
if (Test-Path $Work) { Remove-Item -Recurse -Force $Work }
New-Item -ItemType Directory $Work | Out-Null
$consumerSrc = Join-Path $Source 'tests/consumer'

$header = Get-Content (Join-Path $Source 'include/mproc/version.h') -Raw
$parts = foreach ($p in 'MAJOR', 'MINOR', 'PATCH') {
  if ($header -notmatch "#define MPROC_VERSION_$p +(\d+)") { throw "MPROC_VERSION_$p not in version.h" }
  $Matches[1]
}
$version = $parts -join '.'
$request = "$($parts[0]).$($parts[1])"
Write-Host "consumer: mproc $version installed in $Prefix"

# 1. The install tree: what find_package and pkg-config read, and the DLL.
$expected = 'include/mproc.h', 'include/mproc/version.h', 'include/mproc/export.h',
  'lib/cmake/mproc/mprocConfig.cmake', 'lib/cmake/mproc/mprocConfigVersion.cmake',
  'lib/cmake/mproc/mprocTargets.cmake', 'lib/cmake/mproc/FindAPR.cmake', 'lib/pkgconfig/mproc.pc'
foreach ($f in $expected) {
  if (-not (Test-Path (Join-Path $Prefix $f))) { throw "missing from the install: $f" }
}
# mproc.dll (MSVC) or libmproc.dll (MinGW); a static install has none.
$dll = Get-ChildItem (Join-Path $Prefix 'bin') -Filter '*mproc*.dll' -ErrorAction SilentlyContinue
Write-Host "  ok    install tree ($(if ($dll) { $dll.Name } else { 'static' }))"

# 2. find_package(mproc MAJOR.MINOR) + mproc::mproc: build the consumer and run it.
$build = Join-Path $Work 'consumer'
Invoke-Checked cmake -S $consumerSrc -B $build "-DCMAKE_PREFIX_PATH=$Prefix" `
  "-DMPROC_CONSUMER_REQUIRE=$request" "-DCMAKE_BUILD_TYPE=$Config" @CMakeArgs
Invoke-Checked cmake --build $build --config $Config
# Multi-config generators (Visual Studio) put the program in a per-configuration folder.
$exe = @((Join-Path $build "$Config/consumer.exe"), (Join-Path $build 'consumer.exe')) |
  Where-Object { Test-Path $_ } | Select-Object -First 1
if (-not $exe) { throw "consumer.exe not found under $build" }
$savedPath = $env:PATH
$env:PATH = ((@(Join-Path $Prefix 'bin') + $RuntimePath) -join ';') + ';' + $env:PATH
$out = & $exe 2>&1 | ForEach-Object { "$_" }
$rc = $LASTEXITCODE
$env:PATH = $savedPath
$out | ForEach-Object { Write-Host "        | $_" }
if ($rc -ne 0) { throw "consumer exited with $rc" }
if ($out -notcontains "mproc $version" -or $out -notcontains 'pipe round trip: ok') {
  throw 'consumer output is not the expected one'
}
Write-Host "  ok    find_package(mproc $request) consumer"

# 3. SameMinorVersion (CMakeLists.txt): the next major version must be refused.
$next = "$([int]$parts[0] + 1).0"
$out = & cmake -S $consumerSrc -B (Join-Path $Work 'refuse') "-DCMAKE_PREFIX_PATH=$Prefix" `
  "-DMPROC_CONSUMER_REQUIRE=$next" @CMakeArgs 2>&1 | ForEach-Object { "$_" }
if ($LASTEXITCODE -eq 0) { throw "find_package(mproc $next) was accepted by version $version" }
if (-not ($out -match 'compatible')) { $out; throw "find_package(mproc $next) failed, but not on the version" }
Write-Host "  ok    find_package(mproc $next) refused"
Write-Host 'consumer: all passed'

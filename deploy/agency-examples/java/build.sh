#!/usr/bin/env bash
# Builds the example reader with Maven (dependencies from Maven Central) into the user's cache, once per
# version of its sources, and prints its classpath: java -cp "$(build.sh)" example.AlertReader ...
# `make agency-java` runs it; so does tests/integration/test_agency_java_reader.py.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
command -v mvn >/dev/null || { echo "build.sh: Maven (mvn) is needed to build the Java reader" >&2; exit 1; }
key="$(cd "$here" && cat pom.xml $(find src -type f | sort) | sha256sum | cut -c1-16)"
out="${XDG_CACHE_HOME:-$HOME/.cache}/rctc/agency-java/$key"
if [[ ! -f "$out/alert-reader-1.jar" ]]; then
  mkdir -p "${out%/*}"
  work="$(mktemp -d "${out%/*}/build.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  cp -r "$here/pom.xml" "$here/src" "$work/"
  if ! mvn -q -B -f "$work/pom.xml" package dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$work/lib" >"$work/mvn.log" 2>&1; then
    cat "$work/mvn.log" >&2
    echo "build.sh: Maven could not build the Java reader" >&2
    exit 1
  fi
  mkdir -p "$out.tmp" && rm -rf "$out.tmp"/* && mv "$work/target/alert-reader-1.jar" "$work/lib" "$out.tmp/"
  rm -rf "$out" && mv "$out.tmp" "$out"
fi
echo "$out/alert-reader-1.jar:$out/lib/*"

#!/usr/bin/env bash
# Puts a runnable Apache Kafka broker's jars in .brokers/kafka/libs/, from Maven
# Central (the only place this project's machines can download from).
#
# Idempotent: a stamp holding the pom's checksum makes a second run a no-op; a
# change to pom.xml (say, a new kafka.version) fetches again. The jars are
# copied to a temporary folder first and moved into place whole, so an
# interrupted run never leaves a half-filled libs/ that looks complete.
#
# Needs: java >= 17 (Kafka 4.x brokers) and mvn on PATH.
# Usage: bash scripts/kafka/fetch.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dest="$root/.brokers/kafka"
libs="$dest/libs"
stamp="$libs/.pom.sha256"
want="$(sha256sum "$here/pom.xml" | cut -d' ' -f1)"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "kafka: jars already in $libs"
    exit 0
fi

for tool in java mvn; do
    command -v "$tool" >/dev/null || { echo "kafka: '$tool' not found on PATH" >&2; exit 1; }
done
# `java -version` prints e.g. 'openjdk version "17.0.15"' (or "1.8.0_..." on old JDKs).
java_major="$(java -version 2>&1 | sed -n 's/.* version "\([0-9]*\)[."].*/\1/p' | head -n1)"
if [[ -z "$java_major" || "$java_major" -lt 17 ]]; then
    echo "kafka: Kafka 4.x needs Java 17 or newer, found '${java_major:-unknown}'" >&2
    exit 1
fi

mkdir -p "$dest"
staging="$(mktemp -d "$dest/libs.tmp.XXXXXX")"
trap 'rm -rf "$staging"' EXIT

mvn -q -B -Dstyle.color=never -f "$here/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$staging"

if ! compgen -G "$staging/kafka_2.13-*.jar" >/dev/null; then
    echo "kafka: maven finished but no kafka_2.13 jar arrived in $staging" >&2
    exit 1
fi
echo "$want" >"$staging/.pom.sha256"
rm -rf "$libs"
mv "$staging" "$libs"
trap - EXIT
echo "kafka: $(find "$libs" -name '*.jar' | wc -l) jars in $libs"

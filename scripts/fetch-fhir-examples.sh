#!/usr/bin/env bash
# FHIR's published R4 example resources (npm hl7.fhir.r4.examples@4.0.1, CC0; JSON data,
# not code), unpacked into .tools/fhir-examples/package for tests/test_fhir.py. Fetched once;
# later runs reuse them.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=4.0.1
DEST=.tools/fhir-examples
if [ -f "$DEST/.version" ] && [ "$(cat "$DEST/.version")" = "$VERSION" ]; then
    exit 0
fi
rm -rf "$DEST"
mkdir -p "$DEST"
(cd "$DEST" && npm pack --silent "hl7.fhir.r4.examples@$VERSION" > /dev/null \
    && tar xzf "hl7.fhir.r4.examples-$VERSION.tgz" && rm "hl7.fhir.r4.examples-$VERSION.tgz")
echo "$VERSION" > "$DEST/.version"

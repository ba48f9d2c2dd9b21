#!/bin/sh
# Regenerate the build system from a git checkout (release tarballs ship it).
set -e
cd "$(dirname "$0")"
mkdir -p config m4
autoreconf --install --force
# automake ships tap-driver.sh but does not install it on its own.
for f in tap-driver.sh test-driver; do
    cp -f "$(automake --print-libdir)/$f" "config/$f"
done

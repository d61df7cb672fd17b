#!/bin/sh
# Assembles the installable Arduino library: this folder's class and example plus the portable
# core (../core) and the ESP-IDF port (../esp-idf/aegis_ota), flat in src/ as the Arduino
# library format needs. Output: build/AegisOTA/ and build/AegisOTA.zip
# (Arduino IDE: Sketch > Include Library > Add .ZIP Library; PlatformIO: lib_deps = file://...zip).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$here/build/AegisOTA"
rm -rf "$here/build"
mkdir -p "$out/src"
cp "$here/library.properties" "$out/"
cp -R "$here/examples" "$out/"
cp "$here/src/AegisOTA.h" "$here/src/AegisOTA.cpp" "$out/src/"
cp "$here/../core/include/"*.h "$here/../core/src/"*.c "$here/../core/src/"*.h "$out/src/"
cp "$here/../esp-idf/aegis_ota/port_esp_idf.c" "$here/../esp-idf/aegis_ota/include/aegis_ota_esp.h" "$out/src/"
(cd "$here/build" && rm -f AegisOTA.zip && zip -qr AegisOTA.zip AegisOTA)
echo "$here/build/AegisOTA.zip"

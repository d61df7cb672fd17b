#!/bin/sh
# Syntax/type check of the ESP-IDF port, the example and the Arduino wrapper against the stub
# headers in this directory (see README.md): gcc/g++ -fsyntax-only, warnings as errors.
# Not a build. Needs gcc, g++ and mbedTLS headers (Debian: libmbedtls-dev).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
fw="$here/../.."
warn="-Wall -Wextra -Wshadow -Wwrite-strings -Wformat=2 -Werror"
inc="-I$here -I$fw/core/include -I$fw/esp-idf/aegis_ota/include"
set -x
gcc -std=gnu11 -fsyntax-only $warn $inc "$fw/esp-idf/aegis_ota/port_esp_idf.c"
gcc -std=gnu11 -fsyntax-only $warn $inc -DSTUB_ARDUINO "$fw/esp-idf/aegis_ota/port_esp_idf.c"
gcc -std=gnu11 -fsyntax-only $warn $inc -DSTUB_OPTIONS "$fw/esp-idf/aegis_ota/port_esp_idf.c"
gcc -std=gnu11 -fsyntax-only $warn -Wno-format-nonliteral $inc "$fw/esp-idf/examples/basic/main/main.c"
g++ -std=gnu++17 -fsyntax-only $warn -I"$here/arduino" $inc "$fw/arduino/src/AegisOTA.cpp"
g++ -std=gnu++17 -fsyntax-only $warn -I"$here/arduino" -I"$fw/arduino/src" $inc \
    -include Arduino.h -x c++ "$fw/arduino/examples/BasicOTA/BasicOTA.ino"
set +x
echo "syntax check passed (stubs, not a build)"

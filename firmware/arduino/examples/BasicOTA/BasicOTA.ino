// AegisOTA BasicOTA: join Wi-Fi, announce to the aegis server, and keep a freshly updated
// image only after it proved itself. Flash once by USB; afterwards `aegis deploy` updates it.
//
// Board: any ESP32 with arduino-esp32 3.x and a partition scheme with two OTA slots
// (Tools > Partition Scheme > "Default 4MB with spiffs" has app0/app1 + otadata).
#include <WiFi.h>
#include <AegisOTA.h>

const char *WIFI_SSID = "your-ssid";
const char *WIFI_PASSWORD = "your-password";
// The server's public key: paste the output of `aegis keys export --format hex`.
// Empty = accept unsigned triggers (development only).
const char *AEGIS_SERVER_KEY = "";

AegisOTA ota;
unsigned long bootedAt = 0;

// What "this release works" means for your device. Here: Wi-Fi stayed up for 30 s.
bool healthy() {
  return WiFi.status() == WL_CONNECTED && millis() - bootedAt > 30000;
}

void setup() {
  Serial.begin(115200);
  WiFi.mode(WIFI_STA);
  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);
  while (WiFi.status() != WL_CONNECTED) delay(200);
  bootedAt = millis();
  if (!ota.begin(AEGIS_SERVER_KEY)) Serial.println("AegisOTA did not start");
  Serial.printf("running %s%s\n", ota.runningVersion(), ota.pendingVerify() ? " (pending verify)" : "");
}

void loop() {
  if (ota.pendingVerify()) {
    if (healthy()) {
      ota.confirm();  // keep this image; the server sees the device `booted`
    } else if (millis() - bootedAt > 120000) {
      ota.rollback(); // never became healthy: back to the previous image
    }
  }
  delay(100);
}

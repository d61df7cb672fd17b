//! Simulated ESP32 devices speaking the Aegis protocol: flash slots, otadata, bootloader
//! rollback, mDNS announcements, fault injection. Not built yet (issue 3).

//! The operator-facing JSON API, server-sent events and dashboard, and the device-facing
//! listener (firmware downloads, reports).

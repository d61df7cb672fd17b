//! Integration tests for aegis-protocol: PROTOCOL.md's rules, one module per concept.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod acceptance;
mod fixtures;
mod json;
mod props;
mod trigger;
mod txt;
mod vector;

//! Integration tests of the simulator: one binary, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod announce;
mod faults;
mod faults_e2e;
mod fleet;
mod model;
mod node_kit;
mod protocol;

//! Integration tests of aegis-image: agreement with the real-firmware corpus and with
//! esptool, corruption detection, and property tests over random and mutated inputs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod corpus;
mod corruption;
mod esptool;
mod fuzz;
mod support;

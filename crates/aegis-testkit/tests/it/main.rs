//! Tests of the test kit itself: the network namespace really is private and usable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod netns;

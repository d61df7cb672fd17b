//! Test doubles shared by the integration tests.

pub mod mem_store;

pub use mem_store::MemStore;

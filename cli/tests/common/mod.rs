//! The helpers of the library's integration tests (`tests/common/mod.rs` at the repository's
//! root), and running the real binary (`cli`).

#![allow(dead_code)]

#[path = "../../../tests/common/mod.rs"]
mod shared;

pub mod cli;

pub use shared::*;

//! Test support: real servers, the native transport and helpers shared by the tests.
#![allow(dead_code)]

pub mod compare;
pub mod dir;
pub mod native;
pub mod scram;
pub mod server;

//! Shared helpers for the integration tests in `tests/`. Each test file that
//! needs them declares `mod support;`.

pub mod admin;
pub mod cluster;
pub mod drivers;
pub mod http;
pub mod panics;
pub mod pki;
pub mod proxy;
pub mod script;
pub mod wire;

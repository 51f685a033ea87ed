//! pgsplit: a PostgreSQL wire-protocol proxy that sends provably read-only
//! statements to replicas and everything else to the primary.
//!
//! The data flows listener -> client session -> router -> pool -> server,
//! and the modules follow that path.

pub mod admin;
pub mod app;
pub mod cancel;
pub mod catalog;
pub mod client;
pub mod config;
pub mod fd_limit;
pub mod fleet;
pub mod health;
pub mod http;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod pool;
pub mod protocol;
pub mod role;
pub mod router;
pub mod secret;
pub mod server;
pub mod socket;
pub mod tls;

pub use app::Reloader;
pub use listener::{run, run_reloadable};

//! Panics on the in-process proxy's threads, recorded so a test can assert
//! there were none. A panic in a client task does not stop pgsplit: tokio
//! catches it and only that task ends (its client sees the connection
//! drop), so without this a test would not notice one.
//!
//! The hook is process-wide: it records panics on every thread whose name
//! starts with `pgsplit-proxy` (the names `proxy.rs` gives the proxy's
//! threads), whichever test's proxy they belong to, and leaves the test's
//! own threads alone.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::sync::{Mutex, Once};

/// Panic messages seen so far. A static because a panic hook is one per
/// process; only this module writes it.
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static INSTALL: Once = Once::new();

/// Starts recording (once per process; later calls do nothing). The
/// default hook still prints each panic.
pub fn record() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("");
            if name.starts_with("pgsplit-proxy") {
                if let Ok(mut panics) = PANICS.lock() {
                    panics.push(format!("{name}: {info}"));
                }
            }
            previous(info);
        }));
    });
}

/// The proxy panics recorded since [`record`] was first called.
pub fn recorded() -> Vec<String> {
    PANICS.lock().map(|p| p.clone()).unwrap_or_default()
}

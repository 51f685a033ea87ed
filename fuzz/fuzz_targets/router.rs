//! The router: classifying any text and making its cache key never panic,
//! and texts that share a cache key route alike, since the cache (and a
//! session's memo) serves the route kept for a key to every text of it.
//! The same property as `random_text_never_panics_and_texts_sharing_a_cache_key_route_alike`
//! in src/router/tests.rs, with libFuzzer choosing the texts.
//!
//! Input: a template, in which each `?` takes a literal, then (after a
//! 0xff byte) which literals: two texts are made from the template with
//! other literals and compared.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pgsplit::router::{self, Classification, Destination, Route, RouteMemo, Router, RouterConfig};
use std::collections::HashMap;

/// Whole literals, numbers and strings, as the router test has them.
const LITERALS: &[&str] = &[
    "1",
    "23",
    "4.5",
    "6e7",
    "'a'",
    "''",
    "'transaction_read_only'",
    "'work_mem'",
    "E'b'",
    "$$c$$",
    "$q$d$q$",
];

fuzz_target!(|data: &[u8]| {
    let (template, choices) = match data.iter().position(|&b| b == 0xff) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(template) = std::str::from_utf8(template) else {
        return;
    };
    let config = config();
    let catalog = catalog();
    let router = Router::new(RouterConfig {
        cache_size: 64,
        ..config.clone()
    });
    let _ = router.classify(template, &catalog);
    let _ = router::cache_key(template);
    let mut choice = choices.iter().cycle().map(|&c| c as usize);
    let mut variant = || -> String {
        let mut parts = template.split('?');
        let mut text = parts.next().unwrap_or_default().to_string();
        for part in parts {
            text.push_str(LITERALS[choice.next().unwrap_or(0) % LITERALS.len()]);
            text.push_str(part);
        }
        text
    };
    let (a, b) = (variant(), variant());
    if router::cache_key(&a) != router::cache_key(&b) || !parses(&a) || !parses(&b) {
        return;
    }
    let (class_a, cacheable_a) = router::classify_for_cache(&a, &config, &catalog);
    let (class_b, cacheable_b) = router::classify_for_cache(&b, &config, &catalog);
    if let (Classification::Routed(kept), true) = (&class_a, cacheable_a) {
        alike(&b, &class_b, cacheable_b, kept, &a);
    }
    if let (Classification::Routed(kept), true) = (&class_b, cacheable_b) {
        alike(&a, &class_a, cacheable_a, kept, &b);
    }
    // A session's memo answers as the cache would.
    let mut memo = RouteMemo::default();
    let _ = router.classify_remembering(&a, &catalog, &mut memo);
    if let Some(remembered) = memo.find(&router, &b) {
        alike(&b, &class_b, cacheable_b, &remembered, &a);
    }
});

/// What `sql` may get from the route `kept` for `first`, which shares its
/// key: the same route where its own would be kept too; else nothing sent
/// to a replica that needs the primary.
fn alike(sql: &str, own: &Classification, cacheable: bool, kept: &Route, first: &str) {
    let ok = match own {
        Classification::Routed(route) if cacheable => route == kept,
        Classification::Routed(route) => {
            kept.destination == Destination::Primary || route.destination == Destination::Replica
        }
        Classification::NeedsCatalog(_) => kept.destination == Destination::Primary,
    };
    assert!(
        ok,
        "{sql:?} ({own:?}) shares its cache key with {first:?}, whose route is served for it ({kept:?})"
    );
}

/// The router test's exceptions: texts sqlparser cannot parse have their
/// pins read from the raw text, literals included.
fn parses(sql: &str) -> bool {
    sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::PostgreSqlDialect {}, sql).is_ok()
}

fn config() -> RouterConfig {
    RouterConfig {
        read_only_functions: vec!["cheap_volatile".into(), "reporting.my_volatile".into()],
        write_functions: vec!["app.bump_counter".into(), "touch".into()],
        ..RouterConfig::default()
    }
}

fn catalog() -> HashMap<String, bool> {
    [
        ("my_volatile", true),
        ("audit_log", true),
        ("my_stable", false),
        ("slugify", false),
        ("cheap_volatile", true),
    ]
    .into_iter()
    .map(|(name, volatile)| (name.to_string(), volatile))
    .collect()
}

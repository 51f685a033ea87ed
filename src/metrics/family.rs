//! Metric families built directly for one scrape, from values read at
//! that moment (session shards, pools, servers, clients): no registry,
//! no temporary vectors.

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

/// A family of `kind` holding `metrics`.
pub(super) fn family(
    name: &str,
    help: &str,
    kind: MetricType,
    metrics: Vec<Metric>,
) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    *f.mut_metric() = metrics;
    f
}

/// A metric with `labels` (sorted by name, as the prometheus crate's own
/// metrics are) and no value yet.
pub(super) fn labelled(labels: &[(&str, &str)]) -> Metric {
    let mut m = Metric::default();
    let mut sorted = labels.to_vec();
    sorted.sort_by_key(|(name, _)| *name);
    let pairs = sorted
        .iter()
        .map(|(name, value)| {
            let mut pair = LabelPair::default();
            pair.set_name(name.to_string());
            pair.set_value(value.to_string());
            pair
        })
        .collect();
    m.set_label(pairs);
    m
}

pub(super) fn counter(labels: &[(&str, &str)], value: u64) -> Metric {
    let mut m = labelled(labels);
    let mut c = Counter::default();
    c.set_value(value as f64);
    m.set_counter(c);
    m
}

pub(super) fn gauge(labels: &[(&str, &str)], value: f64) -> Metric {
    let mut m = labelled(labels);
    let mut g = Gauge::default();
    g.set_value(value);
    m.set_gauge(g);
    m
}

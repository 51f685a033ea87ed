//! The Grafana dashboards in `dashboards/` are importable and query only
//! metrics pgsplit exports: each has a `datasource` variable of type
//! prometheus that every panel and query uses, and every PromQL expression
//! names only metrics from the list below (the metrics module's contract).

mod support;

use serde_json::Value;
use std::path::Path;
use support::cluster::{free_port, Cluster};
use support::proxy::{connect, proxy_config, Proxy};

/// Every metric pgsplit exports (histograms by their base name).
const METRICS: &[&str] = &[
    "pgsplit_pool_connections",
    "pgsplit_pool_size",
    "pgsplit_pool_max_overflow",
    "pgsplit_pool_waiting_clients",
    "pgsplit_pool_max_wait_seconds",
    "pgsplit_pool_checkout_wait_seconds",
    "pgsplit_pool_checkout_timeouts_total",
    "pgsplit_statements_total",
    "pgsplit_statement_duration_seconds",
    "pgsplit_server_statement_duration_seconds",
    "pgsplit_transactions_total",
    "pgsplit_transaction_duration_seconds",
    "pgsplit_errors_total",
    "pgsplit_server_up",
    "pgsplit_server_primary",
    "pgsplit_replica_lag_bytes",
    "pgsplit_replica_lag_seconds",
    "pgsplit_health_check_failures_total",
    "pgsplit_replica_bans_total",
    "pgsplit_consistency_waits_total",
    "pgsplit_client_connections",
    "pgsplit_client_connections_accepted_total",
    "pgsplit_pinned_clients",
    "pgsplit_pins_total",
    "pgsplit_client_received_bytes_total",
    "pgsplit_client_sent_bytes_total",
    "pgsplit_routing_cache_hits_total",
    "pgsplit_routing_cache_misses_total",
    "pgsplit_build_info",
    "pgsplit_uptime_seconds",
    "pgsplit_reloads_total",
    "pgsplit_client_auth_total",
    "pgsplit_auth_query_total",
    "pgsplit_server_logins_total",
    "pgsplit_tls_negotiations_total",
];
const HISTOGRAMS: &[&str] = &[
    "pgsplit_pool_checkout_wait_seconds",
    "pgsplit_statement_duration_seconds",
    "pgsplit_server_statement_duration_seconds",
    "pgsplit_transaction_duration_seconds",
];
const DASHBOARDS: &[&str] = &["overview.json", "pools.json", "replicas.json"];

fn known(name: &str) -> bool {
    METRICS.contains(&name)
        || HISTOGRAMS.iter().any(|h| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name == format!("{h}{suffix}"))
        })
}

/// Every `pgsplit_...` identifier in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("pgsplit_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

fn load(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dashboards")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

fn uses_variable(datasource: &Value) -> bool {
    datasource["uid"] == "${datasource}" && datasource["type"] == "prometheus"
}

#[test]
fn dashboards_use_the_datasource_variable_everywhere() {
    for name in DASHBOARDS {
        let board = load(name);
        assert!(
            board["uid"].is_string() && board["title"].is_string(),
            "{name}"
        );
        let vars = board["templating"]["list"].as_array().unwrap();
        let ds = vars
            .iter()
            .find(|v| v["name"] == "datasource")
            .unwrap_or_else(|| panic!("{name}: no datasource variable"));
        assert_eq!(ds["type"], "datasource", "{name}");
        assert_eq!(ds["query"], "prometheus", "{name}");
        for var in vars.iter().filter(|v| v["type"] == "query") {
            assert!(uses_variable(&var["datasource"]), "{name}: {var}");
        }
        let panels = board["panels"].as_array().unwrap();
        assert!(panels.len() > 3, "{name}");
        for panel in panels {
            assert!(uses_variable(&panel["datasource"]), "{name}: {panel}");
            for target in panel["targets"].as_array().into_iter().flatten() {
                assert!(uses_variable(&target["datasource"]), "{name}: {target}");
            }
        }
    }
}

#[test]
fn dashboards_query_only_exported_metrics() {
    let mut seen = Vec::new();
    for name in DASHBOARDS {
        let board = load(name);
        let mut exprs: Vec<String> = Vec::new();
        for panel in board["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name}: {target}"));
                exprs.push(expr.to_string());
            }
        }
        for var in board["templating"]["list"].as_array().unwrap() {
            if let Some(q) = var["query"]["query"].as_str() {
                exprs.push(q.to_string());
            }
        }
        for expr in exprs {
            let names = metric_names(&expr);
            assert!(
                !names.is_empty(),
                "{name}: {expr} queries no pgsplit metric"
            );
            for metric in names {
                assert!(
                    known(&metric),
                    "{name}: {metric} is not exported by pgsplit ({expr})"
                );
                seen.push(metric);
            }
        }
    }
    // The dashboards cover every exported metric.
    for metric in METRICS {
        let covered = seen
            .iter()
            .any(|s| s == metric || s.strip_suffix("_bucket") == Some(metric));
        assert!(covered, "no dashboard shows {metric}");
    }
}

/// Several instances scraped by one Prometheus: each dashboard has an
/// `instance` variable (from pgsplit_build_info), and every metric in
/// every query and variable is filtered on it.
#[test]
fn every_query_filters_on_the_instance_variable() {
    for name in DASHBOARDS {
        let board = load(name);
        let vars = board["templating"]["list"].as_array().unwrap();
        let instance = vars
            .iter()
            .find(|v| v["name"] == "instance")
            .unwrap_or_else(|| panic!("{name}: no instance variable"));
        assert_eq!(
            instance["query"]["query"], "label_values(pgsplit_build_info, instance)",
            "{name}"
        );
        let mut exprs: Vec<String> = Vec::new();
        for panel in board["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                exprs.push(target["expr"].as_str().unwrap().to_string());
            }
        }
        for var in vars.iter().filter(|v| v["name"] != "instance") {
            if let Some(q) = var["query"]["query"].as_str() {
                exprs.push(q.to_string());
            }
        }
        for expr in exprs {
            let selectors = expr.matches("pgsplit_").count();
            let filtered = expr.matches("{instance=~\"$instance\"").count();
            assert_eq!(
                selectors, filtered,
                "{name}: a metric not filtered on $instance: {expr}"
            );
        }
    }
}

/// The list above is what /metrics really exports: every name in it has a
/// `# TYPE` line after a little traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listed_metric_is_exported() {
    let cluster = Cluster::start();
    let port = free_port();
    let mut config = proxy_config(&cluster);
    config.metrics_listen = Some(format!("127.0.0.1:{port}"));
    let proxy = Proxy::start(config);
    let client = connect(proxy.port()).await;
    client.simple_query("SELECT 1").await.unwrap();
    assert!(client
        .simple_query("SELECT * FROM no_such_table")
        .await
        .is_err());
    let (code, text) = support::http::get(port, "/metrics");
    assert_eq!(code, 200);
    for name in METRICS {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} is not exported:\n{text}"
        );
    }
}

//! `docs/grafana/deadbolt.json` charts only what the processes export: every
//! `deadbolt_*` series its queries name is in the operator's or a proxy's
//! `/metrics`, so a renamed metric fails here instead of blanking a panel.

use std::sync::Arc;

use deadbolt_operator::admin::Metrics as OperatorMetrics;
use deadbolt_operator::subscribers::Subscribers;
use deadbolt_operator::view::ViewStore;
use deadbolt_runtime::admin::AdminEndpoints;
use deadbolt_sidecar::audit::AuditSink;
use deadbolt_sidecar::metrics::{Metrics as ProxyMetrics, ProxyAdmin};
use deadbolt_sidecar::session::SessionRegistry;
use deadbolt_sidecar::view::Enforcer;

/// The metric families (`# TYPE` names) a process renders.
fn families(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split(' ').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn every_series_on_the_dashboard_is_exported() {
    let metrics = OperatorMetrics::new();
    // Failures by error appear with the first failure.
    metrics.reconcile.fail("Lock", "api_409");
    let operator = metrics.render(&ViewStore::default(), &Subscribers::new());
    let proxy = ProxyAdmin {
        metrics: Arc::new(ProxyMetrics::new()),
        view: Arc::new(Enforcer::new("p", SessionRegistry::default())),
        audit: AuditSink::memory().0,
    }
    .render_metrics();
    let exported: Vec<String> = [families(&operator), families(&proxy)].concat();

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/grafana/deadbolt.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut named = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(start) = rest.find("deadbolt_") {
                let name: String = rest[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[start + name.len()..];
                named.push(name);
            }
        }
    }
    assert!(named.len() >= 15, "{named:?}");
    for name in named {
        let family = ["_total", "_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(&name);
        assert!(
            exported.iter().any(|exported| exported == family),
            "the dashboard charts {name}, which no process exports (families: {exported:?})"
        );
    }
}

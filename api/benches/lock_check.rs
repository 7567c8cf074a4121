//! How long one in-force check takes at 10, 10,000 and 100,000 locks: the
//! indexed `LockIndex` against the naive scan, measured in the same run.
//!
//! `cargo bench -p deadbolt-api --bench lock_check` prints criterion's report,
//! then a table of ns per check and the naive/indexed ratio.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use deadbolt_api::engine::{LockEntry, LockIndex, Target, scan};
use deadbolt_api::resources::LockTargetSpec;
use deadbolt_api::{Identity, TargetKind};
use jiff::Timestamp;

const SIZES: [usize; 3] = [10, 10_000, 100_000];
const GROUP: &str = "lock_check";

/// Locks spread over every target kind, none of which matches the probe identity,
/// so the check does its full work (the common case: nobody is locked).
fn locks(count: usize) -> Vec<LockEntry> {
    (0..count)
        .map(|i| {
            let kind = TargetKind::ALL[i % TargetKind::ALL.len()];
            let mut target = LockTargetSpec::default();
            *target.field_mut(kind) = Some(format!("{}-{i}", kind.field()));
            LockEntry {
                name: format!("lock-{i}"),
                target,
                message: Some("Suspicious activity.".into()),
                created: Timestamp::from_second(i as i64).unwrap(),
                // A third of the locks carry an expiry, half of those already past.
                expires_at: (i % 3 == 0)
                    .then(|| Timestamp::from_second(1_000 + (i as i64 % 2) * 1_000_000).unwrap()),
            }
        })
        .collect()
}

fn probe() -> Vec<Target> {
    Identity {
        user: "alice".into(),
        roles: vec!["dev".into(), "ops".into()],
        login: Some("postgres".into()),
        mfa_device: Some("d6c06a18-e147-4232-9dfe-6f83a28d5850".into()),
        device: Some("laptop-7".into()),
        access_requests: vec![],
    }
    .targets(Some("proxy-1"))
}

fn bench(c: &mut Criterion) {
    let now = Timestamp::from_second(500_000).unwrap();
    let targets = probe();
    let mut group = c.benchmark_group(GROUP);
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for size in SIZES {
        let entries = locks(size);
        let view = LockIndex::from_entries(entries.clone());
        group.bench_with_input(BenchmarkId::new("indexed", size), &size, |b, _| {
            b.iter(|| black_box(view.find_in_force(black_box(&targets), now)))
        });
        group.bench_with_input(BenchmarkId::new("naive_scan", size), &size, |b, _| {
            b.iter(|| black_box(scan(black_box(&entries), black_box(&targets), now)))
        });
    }
    group.finish();
}

/// Criterion's mean estimate for one benchmark, in ns, read back from its report.
fn mean_ns(function: &str, size: usize) -> Option<f64> {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target_dir
        .join("criterion")
        .join(GROUP)
        .join(function)
        .join(size.to_string())
        .join("new/estimates.json");
    let estimates: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    estimates["mean"]["point_estimate"].as_f64()
}

fn print_ratios() {
    println!(
        "\nlock_check: ns per in-force check ({} targets, no match)",
        probe().len()
    );
    println!(
        "{:>8} {:>12} {:>14} {:>10}",
        "locks", "indexed", "naive scan", "speed-up"
    );
    for size in SIZES {
        if let (Some(indexed), Some(naive)) =
            (mean_ns("indexed", size), mean_ns("naive_scan", size))
        {
            println!(
                "{size:>8} {indexed:>12.1} {naive:>14.1} {:>9.1}x",
                naive / indexed
            );
        }
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
    print_ratios();
}

//! `--charts DIR`: the report's figures as SVG charts
//! (`caucus_bench::charts`): delivered envelopes per second at saturation
//! and latency percentiles at half load, one bar (group) per relay, medians
//! of the runs; and a mediation service's day, sessions against p99.
//!
//! The charts are drawn from the report as its JSON (`--json`), so that
//! `--charts-from FILE` draws the same charts again from a saved run.

use std::path::Path;

use anyhow::Context;
use caucus_bench::charts;
use caucus_bench::stats::median;
use serde_json::Value;

/// The median over `runs` (a JSON list of runs) of the number at `path`.
fn med(runs: &Value, path: &[&str]) -> f64 {
    let values: Vec<f64> = runs
        .as_array()
        .map(|runs| {
            runs.iter()
                .filter_map(|run| path.iter().try_fold(run, |v, key| v.get(key))?.as_f64())
                .collect()
        })
        .unwrap_or_default();
    median(&values)
}

/// `(relay, runs)` for each relay in the report's list `key`.
fn per_relay<'a>(report: &'a Value, key: &str) -> Vec<(&'a str, &'a Value)> {
    report
        .get(key)
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|pair| Some((pair.get(0)?.as_str()?, pair.get(1)?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Write `delivered.svg` and `latency.svg` into `dir` (made if missing),
/// and `day.svg` when the day was measured; each only if it has figures.
/// `report` is the report as JSON.
pub(crate) fn write(report: &Value, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut drawn = Vec::new();
    let delivered: Vec<(&str, f64)> = per_relay(report, "saturation")
        .into_iter()
        .map(|(name, runs)| (name, med(runs, &["delivered_per_sec"])))
        .collect();
    if !delivered.is_empty() {
        drawn.push(("delivered.svg", charts::delivered_per_relay(&delivered)?));
    }
    let latency: Vec<(&str, [f64; 3])> = per_relay(report, "half_load")
        .into_iter()
        .map(|(name, runs)| {
            // µs to ms
            let at = |p| med(runs, &["latency", p]) / 1000.0;
            (name, [at("p50"), at("p99"), at("p999")])
        })
        .collect();
    if !latency.is_empty() {
        drawn.push(("latency.svg", charts::latency_per_relay(&latency)?));
    }
    let day: Vec<(usize, f64, f64)> = report
        .pointer("/day/points")
        .and_then(Value::as_array)
        .map(|points| {
            points
                .iter()
                .filter_map(|p| {
                    let sessions = usize::try_from(p.get(0)?.as_u64()?).ok()?;
                    Some((sessions, p.get(1)?.as_f64()?, p.get(2)?.as_f64()?))
                })
                .collect()
        })
        .unwrap_or_default();
    if !day.is_empty() {
        drawn.push(("day.svg", charts::sessions_vs_p99(&day)?));
    }
    for (file, svg) in drawn {
        let path = dir.join(file);
        std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("chart: {}", path.display());
    }
    Ok(())
}

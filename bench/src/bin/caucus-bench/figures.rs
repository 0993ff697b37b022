//! `--charts DIR`: the report's figures as SVG charts
//! (`caucus_bench::charts`): delivered envelopes per second at saturation
//! and latency percentiles at half load, one bar (group) per relay, medians
//! of the runs; and a mediation service's day, sessions against p99.

use std::path::Path;

use anyhow::Context;
use caucus_bench::charts;

use crate::{Report, med, med_latency};

/// Write `delivered.svg` and `latency.svg` into `dir` (made if missing),
/// and `day.svg` when the day was measured; each only if it has figures.
pub(crate) fn write(report: &Report, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut charts = Vec::new();
    let delivered: Vec<(&str, f64)> = report
        .saturation
        .iter()
        .map(|(name, runs)| (name.as_str(), med(runs, |r| r.delivered_per_sec)))
        .collect();
    let latency: Vec<(&str, [f64; 3])> = report
        .half_load
        .iter()
        .map(|(name, runs)| {
            let l = med_latency(runs);
            // µs to ms
            (name.as_str(), [l.p50, l.p99, l.p999].map(|v| v / 1000.0))
        })
        .collect();
    if !delivered.is_empty() {
        charts.push(("delivered.svg", charts::delivered_per_relay(&delivered)?));
        charts.push(("latency.svg", charts::latency_per_relay(&latency)?));
    }
    if let Some(day) = report.day.as_ref().filter(|d| !d.points.is_empty()) {
        charts.push(("day.svg", charts::sessions_vs_p99(&day.points)?));
    }
    for (file, svg) in charts {
        let path = dir.join(file);
        std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("chart: {}", path.display());
    }
    Ok(())
}

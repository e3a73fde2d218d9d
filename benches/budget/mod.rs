//! Budgets of the micro-benchmarks: after the groups of a bench have run, each budget's measured
//! function is set against its baseline from the medians criterion wrote in the same run, and one
//! line per budget is printed (met, missed, reported, or not measured).
//!
//! Shared by the bench targets with `mod budget;`. Cargo only makes bench targets of
//! `benches/*.rs` and `benches/*/main.rs`, so this directory is not one.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A benchmark as criterion names its directory: the group, then the function and/or parameter
/// of its `BenchmarkId` (one or two parts).
#[derive(Debug, Clone)]
pub struct Id {
    /// The benchmark group, e.g. `stream/one_chunk`.
    group: String,
    /// The rest of the id, e.g. `["small", "specter"]` or `["serde_json_parse"]`.
    parts: Vec<String>,
}

impl Id {
    /// The benchmark `parts` (function and/or parameter) of `group`.
    pub fn new(group: &str, parts: &[&str]) -> Id {
        Id {
            group: group.to_string(),
            parts: parts.iter().map(|p| p.to_string()).collect(),
        }
    }

    /// The directory criterion writes this benchmark's results to, under its home.
    fn directory(&self, home: &Path) -> PathBuf {
        let mut dir = home.join(filename_safe(&self.group));
        for part in &self.parts {
            dir.push(filename_safe(part));
        }
        dir
    }

    /// The id as criterion prints it.
    fn name(&self) -> String {
        std::iter::once(&self.group)
            .chain(&self.parts)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// One side of a budget: what it is called in the printed line and which benchmark measured it.
#[derive(Debug, Clone)]
pub struct Figure {
    /// E.g. `specter` or `serde_json parse`.
    pub label: &'static str,
    /// The benchmark.
    pub id: Id,
}

/// A budget: `measured` at most `limit` times `baseline` (`None`: the ratio is only reported).
#[derive(Debug, Clone)]
pub struct Budget {
    /// What is measured, e.g. `extract/small`.
    pub name: String,
    /// Whether message content is captured (`capture on` / `capture off`).
    pub capture: &'static str,
    /// The instrumentation's cost.
    pub measured: Figure,
    /// What it is compared to.
    pub baseline: Figure,
    /// The largest ratio that meets the budget.
    pub limit: Option<f64>,
    /// Printed after the figures, e.g. that both capture modes run the same code.
    pub note: Option<&'static str>,
}

/// Prints one line per budget from the estimates criterion wrote since `run_start` (earlier
/// files are from another run and do not count).
pub fn report(budgets: &[Budget], run_start: SystemTime) {
    let home = criterion_home();
    println!(
        "\nBudgets (criterion medians of this run, {}):",
        home.display()
    );
    for budget in budgets {
        println!("{}", line(budget, &home, run_start));
    }
}

/// The printed line of one budget.
fn line(budget: &Budget, home: &Path, run_start: SystemTime) -> String {
    let head = format!("{}, {}", budget.name, budget.capture);
    let measured = median_ns(&budget.measured.id, home, run_start);
    let baseline = median_ns(&budget.baseline.id, home, run_start);
    let (measured_ns, baseline_ns) = match (measured, baseline) {
        (Ok(m), Ok(b)) => (m, b),
        (Err(missing), _) | (_, Err(missing)) => {
            return format!("[  --  ] {head}: not measured in this run ({missing})")
        }
    };
    let ratio = measured_ns / baseline_ns;
    let (tag, limit) = match budget.limit {
        Some(limit) if ratio <= limit => ("[ MET  ]", format!(" (limit {limit}×)")),
        Some(limit) => ("[MISSED]", format!(" (limit {limit}×)")),
        None => ("[REPORT]", String::new()),
    };
    let note = budget.note.map(|n| format!("; {n}")).unwrap_or_default();
    format!(
        "{tag} {head}: {} {} / {} {} = {ratio:.2}×{limit}{note}",
        budget.measured.label,
        duration(measured_ns),
        budget.baseline.label,
        duration(baseline_ns),
    )
}

/// The median criterion estimated for `id` in this run, in nanoseconds; otherwise why there is
/// none.
fn median_ns(id: &Id, home: &Path, run_start: SystemTime) -> Result<f64, String> {
    let path = id.directory(home).join("new").join("estimates.json");
    let missing = || format!("no estimate of {} written by this run", id.name());
    let modified = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .map_err(|_| missing())?;
    if modified < run_start {
        return Err(missing());
    }
    let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let estimates: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    estimates["median"]["point_estimate"]
        .as_f64()
        .filter(|ns| *ns > 0.0)
        .ok_or_else(|| format!("{}: no median point estimate", path.display()))
}

/// Where criterion writes its results, found as criterion finds it: `CRITERION_HOME`, else
/// `criterion` under `CARGO_TARGET_DIR`, else under the target directory `cargo metadata`
/// reports, else `target/criterion`.
fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    metadata_target_dir()
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("criterion")
}

/// The target directory from `cargo metadata` (with the `cargo` that runs the bench).
fn metadata_target_dir() -> Option<PathBuf> {
    let output = std::process::Command::new(std::env::var_os("CARGO")?)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .ok()?;
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    metadata["target_directory"].as_str().map(PathBuf::from)
}

/// A directory name as criterion makes it from an id part.
fn filename_safe(part: &str) -> String {
    part.replace(['?', '"', '/', '\\', '*', '<', '>', ':', '|', '^'], "_")
}

/// A duration in nanoseconds in the unit that suits it.
fn duration(ns: f64) -> String {
    match ns {
        ns if ns < 1e3 => format!("{ns:.1} ns"),
        ns if ns < 1e6 => format!("{:.2} µs", ns / 1e3),
        ns if ns < 1e9 => format!("{:.2} ms", ns / 1e6),
        ns => format!("{:.2} s", ns / 1e9),
    }
}

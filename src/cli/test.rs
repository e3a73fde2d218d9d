//! `specter test`: replays every recorded case through `specter extract` and compares the output
//! with its snapshot; new and changed snapshots wait as `.snap.new` for `--accept` or `--review`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use specter::harness::snapshot::{diff, DiffKind};
use specter::harness::{self, CaseResult, Outcome, Report, RunOptions, Update};

/// Prints a line to standard output; a closed output (`specter test | head`) is not an error.
macro_rules! out {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// The `source` in the header of snapshots this command creates.
const SOURCE: &str = "specter test";

/// Arguments of `specter test`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run only these cases. A provider id (`openai`) selects that provider's cases; any other
    /// text selects the cases whose `provider/case` contains it (`openai/chat_plain`, `stream`).
    #[arg(value_name = "CASE_FILTER")]
    filters: Vec<String>,
    /// Directory of the recorded cases: `<DIR>/<provider>/<case>/meta.yaml` and body files.
    #[arg(long, value_name = "DIR", default_value = "tests/fixtures")]
    fixtures: PathBuf,
    /// Directory of the snapshots `fixtures__<provider>__<case>.snap`.
    #[arg(long, value_name = "DIR", default_value = "tests/snapshots")]
    snapshots: PathBuf,
    /// Accept every new and changed snapshot (write the `.snap`, remove the `.snap.new`).
    #[arg(long, conflicts_with = "review")]
    accept: bool,
    /// Review each new and changed snapshot: answer `a` (accept), `r` (reject) or `s` (skip) on
    /// standard input.
    #[arg(long)]
    review: bool,
    #[command(flatten)]
    providers: super::ProviderArgs,
}

/// What `--review` decided.
#[derive(Debug, Default)]
struct Reviewed {
    accepted: usize,
    rejected: usize,
    skipped: usize,
}

/// Runs the cases and prints the report.
pub fn run(args: &Args) -> ExitCode {
    let catalog = match args.providers.catalog() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let options = RunOptions::new(args.fixtures.clone(), args.snapshots.clone())
        .with_filters(args.filters.clone())
        .with_source(SOURCE.to_string())
        .with_update(if args.accept {
            Update::Accept
        } else {
            Update::Pending
        });
    let report = match harness::run_cases(&catalog, &options) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("help: pass the fixture directory with --fixtures (default tests/fixtures)");
            return ExitCode::from(2);
        }
    };
    let style = Style::detect();
    for result in &report.results {
        print_result(&style, result, !args.review);
    }
    let reviewed = if args.review {
        match review(&style, &report) {
            Ok(r) => Some(r),
            Err(code) => return code,
        }
    } else {
        None
    };
    print_stale(&report);
    out!();
    out!("{}", summary(&report, reviewed.as_ref()));
    print_help(&report, reviewed.as_ref());
    exit_code(&report, reviewed.as_ref())
}

/// Colours, on a terminal without `NO_COLOR` only.
struct Style {
    color: bool,
}

impl Style {
    fn detect() -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            color: !no_color && std::io::stdout().is_terminal(),
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// One line per case; the diff of a new or changed snapshot when `with_diff`.
fn print_result(style: &Style, result: &CaseResult, with_diff: bool) {
    let id = result.case.id();
    match &result.outcome {
        Outcome::Matched => out!("{} {id}", style.paint("32", "ok     ")),
        Outcome::New(_) => {
            out!(
                "{} {id}: no snapshot yet, {}",
                style.paint("33;1", "new    "),
                written(result)
            );
        }
        Outcome::Changed { .. } => {
            out!(
                "{} {id}: the output differs from {}, {}",
                style.paint("31;1", "FAILED "),
                result.snapshot_path.display(),
                written(result)
            );
        }
        Outcome::Failed(problem) => {
            out!("{} {id}: {problem}", style.paint("31;1", "FAILED "));
        }
        other => out!("{} {id}: {other:?}", style.paint("31;1", "FAILED ")),
    }
    if with_diff {
        print_diff(style, result);
    }
}

/// Where a new or changed snapshot went.
fn written(result: &CaseResult) -> String {
    if result.accepted {
        format!("accepted as {}", result.snapshot_path.display())
    } else {
        format!("written to {}", result.pending_path().display())
    }
}

/// The unified diff from the stored snapshot (or nothing) to the new one.
fn print_diff(style: &Style, result: &CaseResult) {
    let (old, new) = match &result.outcome {
        Outcome::New(new) => (String::new(), new),
        Outcome::Changed { old, new } => (format!("{}\n", old.contents), new),
        _ => return,
    };
    out!(
        "{}",
        style.paint("2", &format!("--- {}", result.snapshot_path.display()))
    );
    out!(
        "{}",
        style.paint("2", &format!("+++ {}", result.pending_path().display()))
    );
    for line in diff(&old, &format!("{}\n", new.contents)) {
        let text = match line.kind {
            DiffKind::Hunk => style.paint("36", &line.text),
            DiffKind::Same => format!(" {}", line.text),
            DiffKind::Removed => style.paint("31", &format!("-{}", line.text)),
            DiffKind::Added => style.paint("32", &format!("+{}", line.text)),
        };
        out!("{text}");
    }
}

/// Walks the new and changed snapshots, reading one answer per line from standard input.
fn review(style: &Style, report: &Report) -> Result<Reviewed, ExitCode> {
    let mut reviewed = Reviewed::default();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    for result in report.results.iter().filter(|r| r.proposed().is_some()) {
        out!();
        out!(
            "{}",
            style.paint("1", &format!("review {}", result.case.id()))
        );
        print_diff(style, result);
        let answer = ask(&mut input)?;
        let done = match answer {
            Answer::Accept => harness::accept(result).map(|()| reviewed.accepted += 1),
            Answer::Reject => harness::reject(result).map(|()| reviewed.rejected += 1),
            Answer::Skip => {
                reviewed.skipped += 1;
                Ok(())
            }
        };
        if let Err(e) = done {
            eprintln!("error: {e}");
            return Err(ExitCode::from(2));
        }
    }
    Ok(reviewed)
}

/// An answer of `--review`.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Accept,
    Reject,
    Skip,
}

/// Asks until a line is `a`, `r` or `s`; the end of input skips.
fn ask(input: &mut impl BufRead) -> Result<Answer, ExitCode> {
    loop {
        let mut stdout = std::io::stdout();
        let _ = write!(stdout, "accept (a), reject (r) or skip (s)? ");
        let _ = stdout.flush();
        let mut line = String::new();
        let read = input.read_line(&mut line).map_err(|e| {
            eprintln!("error: cannot read standard input: {e}");
            ExitCode::from(2)
        })?;
        if read == 0 {
            out!();
            return Ok(Answer::Skip);
        }
        if !std::io::stdin().is_terminal() {
            // Echo an answer that was not typed, so that the output reads as a dialogue.
            out!("{}", line.trim());
        }
        match line.trim() {
            "a" => return Ok(Answer::Accept),
            "r" => return Ok(Answer::Reject),
            "s" => return Ok(Answer::Skip),
            _ => out!("answer a, r or s"),
        }
    }
}

/// Lists snapshot files that belong to no case (they are kept).
fn print_stale(report: &Report) {
    if report.stale.is_empty() {
        return;
    }
    out!();
    let (count, verb) = match report.stale.len() {
        1 => ("1 snapshot".to_string(), "has"),
        n => (format!("{n} snapshots"), "have"),
    };
    out!("{count} {verb} no case (kept; remove them if their case is gone):");
    for path in &report.stale {
        out!("  {}", path.display());
    }
}

/// `N passed, N failed`, then the non-zero counts of new, accepted, rejected, skipped and
/// filtered-out cases.
fn summary(report: &Report, reviewed: Option<&Reviewed>) -> String {
    let mut parts = vec![
        format!("{} passed", report.passed()),
        format!("{} failed", report.failed()),
    ];
    let (accepted, rejected, skipped) = match reviewed {
        Some(r) => (r.accepted, r.rejected, r.skipped),
        None => (report.accepted(), 0, 0),
    };
    for (n, what) in [
        (report.new_snapshots(), "new"),
        (accepted, "accepted"),
        (rejected, "rejected"),
        (skipped, "skipped"),
        (report.filtered_out, "filtered out"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    parts.join(", ")
}

/// What to do next, when snapshots are pending.
fn print_help(report: &Report, reviewed: Option<&Reviewed>) {
    let pending = match reviewed {
        Some(r) => r.skipped,
        None => report
            .results
            .iter()
            .filter(|r| r.proposed().is_some() && !r.accepted)
            .count(),
    };
    if pending > 0 {
        out!("help: check each new value against the recorded bodies, then rerun with `--review` (one by one) or `--accept` (all)");
    }
}

/// 0 when every case matched or its new value was accepted, 1 otherwise.
fn exit_code(report: &Report, reviewed: Option<&Reviewed>) -> ExitCode {
    let failed = report
        .results
        .iter()
        .any(|r| matches!(r.outcome, Outcome::Failed(_)));
    let unresolved = match reviewed {
        Some(r) => r.rejected + r.skipped > 0,
        None => !report.all_passed(),
    };
    if failed || unresolved {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

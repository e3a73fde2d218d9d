//! `specter view`: the trace viewer over traces files written earlier.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use specter::unstable::viewer::{Limits, Viewer};

/// Arguments of `specter view`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Traces files (OTLP JSON lines), oldest first. Default: `specter-traces.jsonl` and its
    /// rotated backups. The last one is followed as it grows.
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8788")]
    listen: String,
    /// Allow a non-loopback listen address (the page shows every prompt and answer recorded).
    #[arg(long)]
    allow_remote: bool,
    /// Calls kept indexed, the oldest dropped first (about 120 bytes each).
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    max_calls: usize,
}

/// A traces file named on the command line that cannot be read.
#[derive(Debug)]
struct NotAFile {
    path: PathBuf,
    why: &'static str,
}

impl std::fmt::Display for NotAFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot read {}: {}", self.path.display(), self.why)
    }
}

impl std::error::Error for NotAFile {}

/// Indexes the files, serves the viewer and prints its address, until SIGINT or SIGTERM.
pub fn run(args: &Args) -> ExitCode {
    match view(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "error: {}",
                specter::unstable::printable::escape_controls(&format!("{e:#}"))
            );
            if e.downcast_ref::<NotAFile>().is_some() {
                eprintln!(
                    "help: pass the traces files `specter serve` wrote (default specter-traces.jsonl in its working directory)"
                );
            }
            ExitCode::from(2)
        }
    }
}

fn view(args: &Args) -> anyhow::Result<()> {
    let listen: SocketAddr = args
        .listen
        .parse()
        .map_err(|e| anyhow::anyhow!("invalid --listen address {}: {e}", args.listen))?;
    if !(listen.ip().is_loopback() || args.allow_remote) {
        anyhow::bail!(
            "{listen} is not a loopback address; the viewer shows every prompt and answer recorded: pass --allow-remote to listen there"
        );
    }
    let files = if args.files.is_empty() {
        let default = PathBuf::from("specter-traces.jsonl");
        specter::unstable::viewer::with_rotated(
            &default,
            specter::unstable::telemetry::traces_file::Rotation::DEFAULT_MAX_FILES,
        )
    } else {
        args.files.clone()
    };
    for file in &files {
        if !file.is_file() && !args.files.is_empty() {
            let why = if file.exists() {
                "not a regular file"
            } else {
                "no such file"
            };
            return Err(NotAFile {
                path: file.clone(),
                why,
            }
            .into());
        }
    }
    let limits = Limits {
        max_calls: args.max_calls.max(1),
        ..Limits::default()
    };
    let viewer = Arc::new(Viewer::over_files(files.clone(), limits));
    let status = viewer.load();
    eprintln!(
        "specter: indexed {} from {}{}",
        super::count(status.calls, "call", "calls"),
        super::display_paths(&files),
        if status.skipped_lines > 0 {
            format!(
                " ({} not spans, skipped)",
                super::count(
                    usize::try_from(status.skipped_lines).unwrap_or(usize::MAX),
                    "line",
                    "lines"
                )
            )
        } else {
            String::new()
        }
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let address = listener.local_addr()?;
        eprintln!("specter: trace viewer at http://{address}/-/viewer/ (Ctrl-C stops it)");
        let local_only = address.ip().is_loopback();
        specter::unstable::viewer::serve(
            listener,
            viewer,
            local_only,
            specter::unstable::gateway::shutdown_signal(),
        )
        .await;
        anyhow::Ok(())
    })
}

//! `specter serve` as a child process: started on a free loopback port with a clean `OTEL_*`
//! environment, its stderr collected line by line, signalled and stopped like an operator would.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running gateway process.
pub struct Served {
    child: Option<Child>,
    /// Where it listens.
    pub address: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

/// Variables of the parent environment that would change what the child does.
const INHERITED: &[&str] = &[
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
    "SPECTER_LISTEN",
    "SPECTER_PROVIDERS",
    "SPECTER_NO_BUNDLED",
    "SPECTER_VERBOSE",
    "SPECTER_TRACES_FILE",
    "SPECTER_QUIET",
    "SPECTER_CONFIG",
    "SPECTER_UPSTREAM_CA",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
];

impl Served {
    /// Starts `specter serve --listen 127.0.0.1:0 ARGS` with `envs` and waits (up to 20 s) for
    /// its "listening on" line.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Served {
        Served::start_wrapped(&[], args, envs)
    }

    /// [`Served::start`] run through `wrapper`, e.g. `["prlimit", "--nofile=256", "--"]`.
    pub fn start_wrapped(wrapper: &[&str], args: &[&str], envs: &[(&str, &str)]) -> Served {
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(env!("CARGO_BIN_EXE_specter"));
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_specter")),
        };
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for key in INHERITED {
            command.env_remove(key);
        }
        command.envs(envs.iter().copied());
        let mut child = command.spawn().expect("the specter binary runs");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let mut served = Served {
            child: Some(child),
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            lines,
        };
        let line = served
            .wait_for("listening on http://", Duration::from_secs(20))
            .unwrap_or_else(|| panic!("the gateway did not start: {:#?}", served.lines()));
        let address = line
            .split("listening on http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap();
        served.address = address.parse().unwrap();
        served
    }

    /// `http://ADDRESS{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// The stderr lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits (bounded) for a stderr line containing `needle`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| l.contains(needle)) {
                return Some(line);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Counts the stderr lines containing `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(needle)).count()
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends a signal (`HUP`, `TERM`, `INT`) with `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -s {name}");
    }

    /// Sends SIGTERM and waits (up to 30 s) for the process to end; returns its status and all of
    /// its stderr.
    pub fn stop(mut self) -> (ExitStatus, Vec<String>) {
        self.signal("TERM");
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the gateway did not stop on SIGTERM: {:#?}", self.lines());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader thread sees the end of stderr once the process is gone.
        std::thread::sleep(Duration::from_millis(100));
        (status, self.lines())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Served {
    /// [`Served::start`] from async code, on a blocking thread.
    pub async fn start_async(args: &[&str], envs: &[(&str, &str)]) -> Served {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let envs: Vec<(String, String)> = envs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let envs: Vec<(&str, &str)> =
                envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            Served::start(&args, &envs)
        })
        .await
        .unwrap()
    }

    /// [`Served::stop`] from async code; also checks that the process exited cleanly.
    pub async fn stop_async(self) -> Vec<String> {
        let (status, lines) = tokio::task::spawn_blocking(move || self.stop())
            .await
            .unwrap();
        assert!(status.success(), "clean exit: {lines:#?}");
        lines
    }
}

/// Serves HTTP/1.1 and HTTP/2 (prior knowledge) on a free loopback port with `handler`, one
/// task per connection; returns the address.
pub async fn http_server<F, Fut, B>(handler: F) -> SocketAddr
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<hyper::Response<B>, std::convert::Infallible>>
        + Send
        + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(handler);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            });
        }
    });
    address
}

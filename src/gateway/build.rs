//! The gateway assembled from its [`Settings`]: the provider catalog and the checks of the
//! upstreams against it, the export pipeline, the instrumentation, the reload watcher, the
//! upstream client and the proxy. [`Gateway`] is what `specter serve` runs: bind, serve until a
//! shutdown signal, stop with a report of what was exported.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::config::GatewayConfig;
use super::reload::{ReloadReport, ReloadSettings};
use super::settings::Settings;
use super::sign::{AwsSigning, SignError};
use super::Proxy;
use crate::gateway::upstream_check::MetadataUpstreams;
use crate::instrument::{Instrumentor, Options};
use crate::telemetry::pipeline::{OtlpProtocol, Pipeline, PipelineError};
use crate::telemetry::CallCounts;
use crate::{Catalog, CatalogSlot, LoadError};

/// Why the gateway cannot be built or bound.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The providers cannot be loaded.
    #[error(transparent)]
    Catalog(LoadError),
    /// An upstream override names a provider that is not loaded.
    #[error("--upstream names `{0}`, which is not a loaded provider (see `specter list`)")]
    UnknownUpstream(String),
    /// Upstreams at metadata addresses.
    #[error(transparent)]
    Metadata(#[from] MetadataUpstreams),
    /// A provider to re-sign is not loaded.
    #[error("--aws-sign names `{0}`, which is not a loaded provider (see `specter list`)")]
    UnknownSigned(String),
    /// Re-signing cannot be set up.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// The export pipeline cannot start.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The instrumentation cannot be built.
    #[error(transparent)]
    Instrument(#[from] crate::instrument::BuildError),
    /// The provider directory cannot be watched.
    #[error(transparent)]
    Watch(#[from] notify::Error),
    /// The upstream client cannot be built.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// No provider is loaded: the bundled ones are off and the directory holds none (or there is
    /// no directory).
    #[error("{}", no_providers(.0.as_deref()))]
    NoProviders(Option<std::path::PathBuf>),
    /// The listen address cannot be bound.
    #[error("cannot listen on {address}")]
    Listen {
        /// The address.
        address: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Where the gateway's spans go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outputs {
    /// OTLP, with its protocol.
    pub otlp: Option<OtlpProtocol>,
    /// A line per span on the console sink.
    pub console: bool,
    /// The traces file.
    pub traces_file: Option<PathBuf>,
}

/// What the gateway exported, once stopped.
#[derive(Debug, Clone)]
pub struct StopReport {
    /// Where spans went.
    pub outputs: Outputs,
    /// What the OTLP exporter sent or lost.
    pub otlp: String,
    /// What the traces file exporter wrote or lost.
    pub file: String,
    /// What the console exporter wrote or lost.
    pub console: String,
    /// Calls started and spans ended.
    pub calls: Arc<CallCounts>,
}

/// A gateway ready to serve.
pub struct Gateway {
    proxy: Arc<Proxy>,
    pipeline: Pipeline,
    providers: usize,
    provider_ids: Vec<String>,
    replaced: Vec<crate::catalog::Replacement>,
    outputs: Outputs,
    _watch: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("providers", &self.providers)
            .field("outputs", &self.outputs)
            .finish()
    }
}

impl Gateway {
    /// Builds the gateway; call it inside the Tokio runtime that will run it (the OTLP exporter
    /// and the reload watcher bind to it). Reload outcomes go to `report`.
    pub fn build(settings: Settings, report: ReloadReport) -> Result<Gateway, BuildError> {
        let Settings {
            gateway: mut config,
            export,
            dialects,
            content,
            spec_limits,
            allow_metadata_upstreams,
            aws_sign,
            fd_allowed: _,
        } = settings;
        let crate::catalog::Loaded { catalog, replaced } = load_catalog(&config, &spec_limits)?;
        crate::gateway::upstream_check::refuse_metadata_upstreams(
            &catalog,
            &config.upstreams,
            allow_metadata_upstreams,
        )?;
        config.aws_signing = signing(&catalog, &config, &aws_sign)?;
        let pipeline = Pipeline::start(&export)?;
        let slot = CatalogSlot::new(catalog.clone());
        let instrumentor = if config.instrument {
            let telemetry = pipeline
                .telemetry(dialects, content)
                .with_metric_attributes(config.context.metric_attributes().to_vec());
            Some(
                Instrumentor::builder()
                    .catalog_slot(slot.clone())
                    .telemetry(telemetry)
                    .options(Options {
                        context: config.context.clone(),
                        prices: config.prices.clone(),
                        ..Options::default()
                    })
                    .build()?,
            )
        } else {
            None
        };
        let watch = match &config.providers {
            Some(dir) => {
                let settings = ReloadSettings {
                    limits: spec_limits,
                    upstreams: config.upstreams.clone(),
                    allow_metadata_upstreams,
                    report,
                    bundled: config.bundled_providers,
                };
                Some(super::watch_providers(dir.clone(), slot.clone(), settings)?)
            }
            None => None,
        };
        let client = super::upstream_client(&config)?;
        let viewer = crate::viewer::gateway_viewer(&config, export.traces_file.as_deref());
        let mut proxy = Proxy::new(config, instrumentor, slot, client);
        proxy.metrics = pipeline.scrape.clone();
        proxy.viewer = viewer;
        Ok(Gateway {
            proxy: Arc::new(proxy),
            pipeline,
            providers: catalog.providers().len(),
            provider_ids: catalog
                .providers()
                .iter()
                .map(|p| p.id.to_string())
                .collect(),
            replaced,
            outputs: Outputs {
                otlp: export.otlp,
                console: export.console.is_some(),
                traces_file: export.traces_file,
            },
            _watch: watch,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &GatewayConfig {
        &self.proxy.config
    }

    /// Providers loaded at start-up.
    pub fn providers(&self) -> usize {
        self.providers
    }

    /// The ids of the providers loaded at start-up, base providers first.
    pub fn provider_ids(&self) -> &[String] {
        &self.provider_ids
    }

    /// The bundled providers that files of the providers directory replaced at start-up.
    pub fn replaced(&self) -> &[crate::catalog::Replacement] {
        &self.replaced
    }

    /// Sends each route (provider, method, path) that matches no operation to `report`, once;
    /// see [`super::unmatched`]. Only the first callback installed is kept.
    pub fn report_unmatched(&self, report: super::unmatched::UnmatchedReport) {
        self.proxy.unmatched.set_report(report);
    }

    /// Where spans go.
    pub fn outputs(&self) -> &Outputs {
        &self.outputs
    }

    /// Bytes of a torn last line cut from the traces file when it was opened.
    pub fn traces_file_repaired(&self) -> u64 {
        self.pipeline.traces_file_repaired
    }

    /// Binds the configured listen address.
    pub async fn bind(&self) -> Result<TcpListener, BuildError> {
        let address = self.proxy.config.listen;
        TcpListener::bind(address)
            .await
            .map_err(|source| BuildError::Listen { address, source })
    }

    /// Serves `listener` until `shutdown` resolves and the requests in flight are done (or the
    /// shutdown grace period ran out).
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        super::serve(listener, self.proxy.clone(), shutdown).await;
    }

    /// Flushes and stops the export pipeline.
    pub fn stop(self) -> StopReport {
        self.pipeline.shutdown();
        StopReport {
            outputs: self.outputs,
            otlp: self.pipeline.otlp_stats.summary(),
            file: self.pipeline.file_stats.summary(),
            console: self.pipeline.console_stats.summary(),
            calls: self.pipeline.calls.clone(),
        }
    }
}

/// The catalog of the configured directory on top of the bundled one (or either alone), whose
/// providers the upstream overrides must name. A catalog without providers is refused.
fn load_catalog(
    config: &GatewayConfig,
    limits: &crate::files::ReadLimits,
) -> Result<crate::catalog::Loaded, BuildError> {
    let loaded = match &config.providers {
        Some(dir) => {
            Catalog::load_layered(std::slice::from_ref(dir), limits, config.bundled_providers)
        }
        None if config.bundled_providers => {
            Catalog::bundled().map(|catalog| crate::catalog::Loaded {
                catalog,
                replaced: Vec::new(),
            })
        }
        None => return Err(BuildError::NoProviders(None)),
    }
    .map_err(BuildError::Catalog)?;
    if loaded.catalog.providers().is_empty() {
        return Err(BuildError::NoProviders(config.providers.clone()));
    }
    let catalog = &loaded.catalog;
    if let Some(provider) = config
        .upstreams
        .keys()
        .find(|p| catalog.provider(p).is_none())
    {
        return Err(BuildError::UnknownUpstream(provider.clone()));
    }
    Ok(loaded)
}

/// Why no provider is loaded.
fn no_providers(dir: Option<&std::path::Path>) -> String {
    match dir {
        Some(dir) => format!(
            "no provider to serve: {} holds no provider spec (*.yaml) and the bundled providers are off",
            dir.display()
        ),
        None => "no provider to serve: the bundled providers are off and no providers directory is given".into(),
    }
}

/// SigV4 re-signing of the named providers with the gateway's own credentials.
fn signing(
    catalog: &Catalog,
    config: &GatewayConfig,
    names: &[String],
) -> Result<std::collections::BTreeMap<String, AwsSigning>, BuildError> {
    let mut signing = std::collections::BTreeMap::new();
    for provider_id in names {
        let Some(provider) = catalog.provider(provider_id) else {
            return Err(BuildError::UnknownSigned(provider_id.clone()));
        };
        let base = config
            .upstreams
            .get(provider_id)
            .cloned()
            .or_else(|| provider.base_url.clone())
            .unwrap_or_default();
        let aws = AwsSigning::from_env(provider_id, provider.aws_service.as_deref(), &base)?;
        signing.insert(provider_id.clone(), aws);
    }
    Ok(signing)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use crate::gateway::settings::Flags;
    use crate::telemetry::export::LineSink;

    fn settings(flags: &Flags) -> Settings {
        Settings::resolve(flags, None, LineSink::new(|_| {})).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_built_gateway_serves_until_shut_down_and_reports_its_outputs() {
        let flags = Flags {
            listen: Some("127.0.0.1:0".into()),
            quiet: true,
            no_traces_file: true,
            ..Flags::default()
        };
        let gateway = Gateway::build(settings(&flags), Arc::new(|_| {})).unwrap();
        assert_eq!(
            gateway.providers(),
            Catalog::bundled().unwrap().providers().len()
        );
        assert!(gateway.config().instrument);
        let listener = gateway.bind().await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let client = tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await.unwrap();
            let _ = stop.send(());
            String::from_utf8(answer).unwrap()
        });
        let shutdown = async {
            let _ = stopped.await;
        };
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            gateway.serve(listener, shutdown),
        )
        .await
        .unwrap();
        let answer = client.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nok\n"), "{answer}");
        let report = tokio::task::spawn_blocking(move || gateway.stop())
            .await
            .unwrap();
        assert_eq!(
            report.outputs,
            Outputs {
                otlp: None,
                console: false,
                traces_file: None
            }
        );
        assert_eq!((report.calls.started(), report.calls.ended()), (0, 0));
    }

    #[test]
    fn an_upstream_for_a_provider_not_loaded_is_refused() {
        let flags = Flags {
            upstreams: vec!["nosuch=http://127.0.0.1:1".into()],
            quiet: true,
            no_traces_file: true,
            ..Flags::default()
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _entered = runtime.enter();
        let error = Gateway::build(settings(&flags), Arc::new(|_| {})).unwrap_err();
        assert_eq!(
            error.to_string(),
            "--upstream names `nosuch`, which is not a loaded provider (see `specter list`)"
        );
    }
}

//! `specter init-provider`: scaffolds a provider spec and its fixture folder, then prints the
//! steps from a recorded exchange to a reviewed snapshot.
//!
//! The generated spec is compiled together with the other specs of the target directory and the
//! bundled specs before anything is written, so a scaffold always passes `specter validate`
//! (including when it extends a provider of that directory or a bundled one). The spec's
//! `$schema` comment names a schema file that exists: the repository's
//! `schemas/provider.schema.json` next to the spec directory, else `provider.schema.json`
//! written into the spec directory. Existing files are never overwritten.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use specter::unstable::catalog::read_sources;
use specter::unstable::compile::{compile_sources, Source};

/// Name of the case folder created under `tests/fixtures/<NAME>/`.
const CASE: &str = "chat";

/// The default fixture directory (also `specter test`'s).
const DEFAULT_FIXTURES: &str = "tests/fixtures";

/// How deep an `extends` chain is followed to find the inherited `path_prefixes`.
const MAX_EXTENDS_DEPTH: usize = 16;

/// Arguments of `specter init-provider`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Id of the new provider: lower-case letters, digits and `_` (e.g. `my_provider`). It names
    /// the spec file `<DIR>/<NAME>.yaml` and the fixture folder `<FIXTURES>/<NAME>/`.
    #[arg(value_name = "NAME")]
    name: String,
    /// Start from this provider's spec (e.g. `openai` for an OpenAI-compatible API): its file in
    /// `--dir`, else the bundled provider.
    #[arg(long, value_name = "PROVIDER")]
    extends: Option<String>,
    /// Directory of the provider specs.
    #[arg(long, value_name = "DIR", default_value = "providers")]
    dir: PathBuf,
    /// Directory of the recorded fixtures.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_FIXTURES)]
    fixtures: PathBuf,
}

/// Why a provider could not be scaffolded.
#[derive(Debug, thiserror::Error)]
enum InitError {
    /// The provider name is not a valid id.
    #[error("invalid provider name `{name}`: use only lower-case letters, digits and `_`")]
    BadName {
        /// The name as given.
        name: String,
    },
    /// The provider to extend has no spec in the directory and is not bundled.
    #[error("cannot extend `{parent}`: no {dir}/{parent}.yaml and no bundled provider `{parent}`")]
    UnknownParent {
        /// The provider to extend.
        parent: String,
        /// The spec directory searched.
        dir: String,
    },
    /// A file to create exists already.
    #[error("{0} already exists")]
    Exists(PathBuf),
    /// A file or directory could not be read or written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The generated spec does not compile (a bug of this command, or a broken parent spec).
    #[error("the generated spec has problems:\n{0}")]
    Invalid(specter::Diagnostics),
}

impl InitError {
    /// The exit status: 1 when a file exists or the spec does not compile, 2 for bad arguments
    /// and I/O errors.
    fn exit_code(&self) -> ExitCode {
        match self {
            InitError::Exists(_) | InitError::Invalid(_) => ExitCode::from(1),
            InitError::BadName { .. } | InitError::UnknownParent { .. } | InitError::Io { .. } => {
                ExitCode::from(2)
            }
        }
    }

    /// A hint printed after the error, if any.
    fn help(&self) -> Option<String> {
        match self {
            InitError::BadName { name } => {
                let suggestion = suggest_name(name);
                if suggestion.is_empty() {
                    Some("e.g. `my_provider`".into())
                } else {
                    Some(format!("e.g. `{suggestion}`"))
                }
            }
            InitError::UnknownParent { .. } => {
                Some("pass the id of a bundled provider (`specter list` shows them) or of a spec in --dir".into())
            }
            InitError::Exists(_) => {
                Some("init-provider never overwrites a file; choose another name or remove the file".into())
            }
            InitError::Io { .. } | InitError::Invalid(_) => None,
        }
    }
}

/// Scaffolds the provider and prints the next steps.
pub fn run(args: &Args) -> ExitCode {
    match scaffold(args) {
        Ok(steps) => super::emit(&steps),
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(help) = e.help() {
                eprintln!("help: {help}");
            }
            e.exit_code()
        }
    }
}

/// Checks the arguments, writes the spec and the fixture template, and returns the text to print.
fn scaffold(args: &Args) -> Result<String, InitError> {
    check_name(&args.name)?;
    if let Some(parent) = &args.extends {
        check_name(parent)?;
    }
    let spec_path = args.dir.join(format!("{}.yaml", args.name));
    let meta_path = args.fixtures.join(&args.name).join(CASE).join("meta.yaml");
    for path in [
        spec_path.clone(),
        args.dir.join(format!("{}.yml", args.name)),
        meta_path.clone(),
    ] {
        if path.exists() {
            return Err(InitError::Exists(path));
        }
    }
    let (spec, prefix) = match &args.extends {
        Some(parent) => {
            let prefixes = inherited_prefixes(&args.dir, parent)?;
            let first = prefixes.first().cloned().unwrap_or_default();
            (extending_spec(&args.name, parent, &prefixes), first)
        }
        None => (plain_spec(&args.name), "/v1".to_string()),
    };
    let schema = schema_place(&args.dir);
    let spec = spec.replace(SCHEMA_PLACEHOLDER, &schema.reference);
    check_spec(&args.dir, &spec_path, &spec)?;
    let url = format!("https://{}{prefix}/chat/completions", host_of(&args.name));
    let meta = meta_template(&args.name, &url);
    create_dir(&args.dir)?;
    write_new(&spec_path, &spec)?;
    let mut created = vec![spec_path.clone()];
    if let Some(path) = schema.write {
        write_new(&path, &schema_text()?)?;
        created.push(path);
    }
    if let Some(case_dir) = meta_path.parent() {
        create_dir(case_dir)?;
    }
    write_new(&meta_path, &meta)?;
    created.push(meta_path.clone());
    Ok(next_steps(args, &created, &spec_path, &meta_path))
}

/// Stands for the schema reference in the spec templates.
const SCHEMA_PLACEHOLDER: &str = "@SCHEMA@";

/// The file name of the provider schema.
const SCHEMA_FILE: &str = "provider.schema.json";

/// Where the spec's `$schema` comment points, and the schema file to write, if any.
struct SchemaPlace {
    /// The reference, relative to the spec.
    reference: String,
    /// The file to write.
    write: Option<PathBuf>,
}

/// The repository's `schemas/provider.schema.json` next to the spec directory when it exists,
/// else `provider.schema.json` in the spec directory (written unless it exists).
fn schema_place(dir: &Path) -> SchemaPlace {
    let repository = parent_dir(dir).join("schemas").join(SCHEMA_FILE);
    if repository.is_file() {
        return SchemaPlace {
            reference: format!("../schemas/{SCHEMA_FILE}"),
            write: None,
        };
    }
    let beside = dir.join(SCHEMA_FILE);
    SchemaPlace {
        reference: SCHEMA_FILE.to_string(),
        write: (!beside.exists()).then_some(beside),
    }
}

/// The directory holding `dir`, found without `dir` having to exist yet.
fn parent_dir(dir: &Path) -> PathBuf {
    match (dir.file_name(), dir.parent()) {
        (Some(_), Some(parent)) if parent.as_os_str().is_empty() => PathBuf::from("."),
        (Some(_), Some(parent)) => parent.to_path_buf(),
        _ => dir.join(".."),
    }
}

/// The provider schema as `specter schema` prints it.
fn schema_text() -> Result<String, InitError> {
    serde_json::to_string_pretty(&specter::unstable::spec::provider_schema())
        .map(|text| format!("{text}\n"))
        .map_err(|e| InitError::Io {
            path: PathBuf::from(SCHEMA_FILE),
            source: std::io::Error::other(e),
        })
}

/// Accepts a non-empty name of lower-case ASCII letters, digits and `_`.
fn check_name(name: &str) -> Result<(), InitError> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(InitError::BadName { name: name.into() })
    }
}

/// A valid name close to `name`: lower-cased, other characters replaced by `_`.
fn suggest_name(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .collect();
    mapped.trim_matches('_').to_string()
}

/// The placeholder host of a provider (`_` is not allowed in host names).
fn host_of(name: &str) -> String {
    format!("api.{}.example", name.replace('_', "-"))
}

/// Writes a path prefix as a YAML flow scalar, quoted unless it is plain.
fn yaml_scalar(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '.'));
    if plain {
        text.to_string()
    } else {
        serde_json::Value::String(text.to_string()).to_string()
    }
}

/// The spec of a provider written from scratch: one `chat` operation in the OpenAI style.
fn plain_spec(name: &str) -> String {
    let host = host_of(name);
    format!(
        r#"# yaml-language-server: $schema=@SCHEMA@
#
# Scaffolded by `specter init-provider {name}`. Replace every TODO with the provider's real values;
# `specter validate providers/` checks the file and `specter schema` documents every key.
id: {name}
name: {name} # TODO: human-readable name, e.g. `Example AI`
# TODO: the `gen_ai.provider.name` value as the semantic conventions spell it.
provider_name: {name}
docs: https://{host}/docs # TODO: link to the API reference
upstream:
  base_url: https://{host} # TODO: scheme and host of the API
  hosts: [{host}] # TODO: host names the API answers on (`*` matches any text)
path_prefixes: [/v1] # TODO: put in front of every operation's `match.path`

operations:
  - id: chat
    operation_name: chat
    match: {{ method: POST, path: /chat/completions }}
    request:
      attributes:
        gen_ai.request.model: $.model
        gen_ai.request.temperature: $.temperature
        gen_ai.request.top_p: $.top_p
        gen_ai.request.max_tokens: $.max_tokens
        gen_ai.request.stop_sequences: {{ path: $.stop, type: string_array }}
        gen_ai.request.stream: $.stream
      input_messages:
        - each: $.messages[*]
          role: $.role
          parts:
            - type: text
              content: $.content
              when: {{ value: $.content, is: string }}
    response:
      attributes:
        gen_ai.response.id: $.id
        gen_ai.response.model: $.model
        gen_ai.response.finish_reasons: {{ path: "$.choices[*].finish_reason", type: string_array }}
        gen_ai.usage.input_tokens: $.usage.prompt_tokens
        gen_ai.usage.output_tokens: $.usage.completion_tokens
      output_messages:
        - each: $.choices[*]
          role: {{ first: [$.message.role, {{ const: assistant }}] }}
          finish_reason: $.finish_reason
          parts:
            - type: text
              content: $.message.content
    error:
      when: {{ value: $.error, exists: true }}
      type: $.error.type
      message: $.error.message
    # A streamed response is folded back into the response shape above, e.g. for SSE chunks:
    # stream:
    #   when: {{ value: $.stream, equals: true }}
    #   framing: sse
    #   done: "[DONE]"
    #   fold:
    #     - set_once: {{ id: $.id, model: $.model }}
    #       merge: {{ usage: $.usage }}
    #     - each: $.choices[*]
    #       at: "choices[{{$.index}}]"
    #       set: {{ finish_reason: $.finish_reason }}
    #       append: {{ message.content: $.delta.content }}
"#
    )
}

/// The spec of a provider that extends another one.
fn extending_spec(name: &str, parent: &str, prefixes: &[String]) -> String {
    let host = host_of(name);
    let prefixes: Vec<String> = prefixes.iter().map(|p| yaml_scalar(p)).collect();
    format!(
        r#"# yaml-language-server: $schema=@SCHEMA@
#
# Scaffolded by `specter init-provider {name} --extends {parent}`. Every operation of `{parent}` is
# inherited (`specter list` shows them). To change one, add an operation with its `id`: keys are
# merged one by one and `null` removes an inherited key; `enabled: false` drops an operation.
id: {name}
name: {name} # TODO: human-readable name, e.g. `Example AI`
extends: {parent}
# TODO: the `gen_ai.provider.name` value as the semantic conventions spell it.
provider_name: {name}
upstream:
  base_url: https://{host} # TODO: scheme and host of the API
  hosts: [{host}] # TODO: host names the API answers on (`*` matches any text)
path_prefixes: [{}] # TODO: `{parent}`'s prefixes; put this API's here
"#,
        prefixes.join(", ")
    )
}

/// The `path_prefixes` a provider inherits, read from its spec (in `dir`, else bundled) and its
/// ancestors'.
/// A chain that sets none has the default single empty prefix.
fn inherited_prefixes(dir: &Path, parent: &str) -> Result<Vec<String>, InitError> {
    let mut current = parent.to_string();
    for depth in 0..MAX_EXTENDS_DEPTH {
        let Some(text) = spec_text(dir, &current)? else {
            if depth == 0 {
                return Err(InitError::UnknownParent {
                    parent: parent.into(),
                    dir: dir.display().to_string(),
                });
            }
            break;
        };
        // A file that does not parse is reported by the compile check that follows.
        let Ok(doc) = specter::unstable::yaml::parse(&text) else {
            break;
        };
        if let Some(list) = doc.value.get("path_prefixes").and_then(|v| v.as_array()) {
            return Ok(list
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect());
        }
        match doc.value.get("extends").and_then(|v| v.as_str()) {
            Some(next) => current = next.to_string(),
            None => break,
        }
    }
    Ok(vec![String::new()])
}

/// The text of a provider's spec: its file in `dir`, else the bundled spec.
fn spec_text(dir: &Path, id: &str) -> Result<Option<String>, InitError> {
    if let Some(path) = spec_file(dir, id) {
        return std::fs::read_to_string(&path)
            .map(Some)
            .map_err(|source| InitError::Io { path, source });
    }
    Ok(bundled_text(id).map(str::to_string))
}

/// The bundled spec of a provider.
fn bundled_text(id: &str) -> Option<&'static str> {
    let file = format!("{id}.yaml");
    specter::unstable::catalog::bundled::PROVIDERS
        .iter()
        .find(|(name, _)| *name == file)
        .map(|(_, text)| *text)
}

/// The spec file of a provider in `dir`, if there is one.
fn spec_file(dir: &Path, id: &str) -> Option<PathBuf> {
    ["yaml", "yml"]
        .iter()
        .map(|ext| dir.join(format!("{id}.{ext}")))
        .find(|p| p.is_file())
}

/// Compiles the new spec with the specs already in `dir` and the bundled ones `dir` does not
/// have, and fails on any problem in it.
fn check_spec(dir: &Path, spec_path: &Path, text: &str) -> Result<(), InitError> {
    let mut sources = if dir.is_dir() {
        read_sources(&[dir.to_path_buf()]).map_err(|e| match e {
            specter::LoadError::Io { path, source } => InitError::Io { path, source },
            specter::LoadError::Invalid(diags) => InitError::Invalid(diags),
            specter::LoadError::File(e) => InitError::Io {
                path: e.path().to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            },
            e => InitError::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            },
        })?
    } else {
        Vec::new()
    };
    let bundled: Vec<Source> = specter::unstable::catalog::bundled::PROVIDERS
        .iter()
        .filter(|(file, _)| !sources.iter().any(|s| Path::new(&s.name).ends_with(file)))
        .map(|(file, text)| Source {
            name: format!("bundled/{file}"),
            text: (*text).to_string(),
        })
        .collect();
    sources.extend(bundled);
    let name = spec_path.display().to_string();
    sources.push(Source {
        name: name.clone(),
        text: text.to_string(),
    });
    let (_, diags) = compile_sources(&sources);
    let own: Vec<specter::Diagnostic> = diags.0.into_iter().filter(|d| d.file == name).collect();
    if own.is_empty() {
        Ok(())
    } else {
        Err(InitError::Invalid(specter::Diagnostics(own)))
    }
}

/// The `meta.yaml` template of the first fixture case: every key `specter test` reads, with
/// valid values and what to put there in comments on their own lines (a value left as it is
/// cannot break the file; a missing body file is reported by `specter test`).
fn meta_template(name: &str, url: &str) -> String {
    format!(
        r#"# One recorded exchange with {name}: this file, the request body (request.json) and the
# response body exactly as received (response.json, or response.sse / response.ndjson /
# response.eventstream for a stream). Rename this folder after the case (`chat_tool_calls`,
# `chat_stream`, `chat_error_404_model`, ...) and make one folder per case.
#
# `specter test` replays the case through `specter extract` and compares the output with the
# snapshot tests/snapshots/fixtures__{name}__<case>.snap. It reads `method`, `url`, `status`,
# `request_file`, `response_file`, `response_content_type`, `request_headers`,
# `response_headers` and `streaming`; the other keys document the recording. Remove credentials
# (authorization, api keys, cookies) from headers and bodies.
provider: {name}
# The folder's name.
case: {CASE}
# What this exchange shows (plain chat, tool calls, stream, error, ...).
description: chat completion
method: POST
# The full URL the request was sent to; its host must be one of the spec's `upstream.hosts`.
url: {url}
# The HTTP status of the response.
status: 200
# true when the response body is a stream.
streaming: false
request_file: request.json
# The response body file of this folder.
response_file: response.json
# The response's Content-Type, or null to take it from response_headers.
response_content_type: application/json
# What was done to the bodies (decoded base64, gunzipped, redacted, ...).
transforms: []
notes: []
# Where the recording comes from (a repository, or `recorded` for your own) and its licence.
source:
  repo: recorded
  license: null
# The request headers, without credentials.
request_headers:
  content-type: application/json
# The response headers as received.
response_headers:
  content-type: application/json
"#
    )
}

/// The numbered steps printed after the scaffold.
fn next_steps(args: &Args, created: &[PathBuf], spec_path: &Path, meta_path: &Path) -> String {
    let name = &args.name;
    let dir = args.dir.display().to_string();
    let dir_arg = if dir.ends_with('/') {
        dir.clone()
    } else {
        format!("{dir}/")
    };
    let case_dir = meta_path
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let fixtures = if args.fixtures == Path::new(DEFAULT_FIXTURES) {
        String::new()
    } else {
        format!(" --fixtures {}", args.fixtures.display())
    };
    let mut out = String::new();
    // Writing to a String cannot fail.
    for path in created {
        let _ = writeln!(out, "created {}", path.display());
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "Next steps:");
    let _ = writeln!(
        out,
        "  1. Record a real exchange with {name}: through a recording proxy (e.g. mitmproxy), or with the provider's SDK and an HTTP recorder (e.g. vcrpy)."
    );
    let _ = writeln!(
        out,
        "  2. Copy the request body to {case_dir}/request.json and the response body as received to {case_dir}/response.json, then fill in {} (rename the folder after the case).",
        meta_path.display()
    );
    let _ = writeln!(
        out,
        "  3. Edit {} until `specter validate {dir_arg}` reports no problems; `specter extract --providers {dir} --case {case_dir}` shows the span.",
        spec_path.display()
    );
    let _ = writeln!(
        out,
        "  4. Run `specter test --providers {dir}{fixtures} {name}`: it writes the new snapshot as tests/snapshots/fixtures__{name}__<case>.snap.new. Check it by hand against the bodies (model, ids, token counts, text, tool arguments, finish reasons), then accept it with `specter test --providers {dir}{fixtures} --accept {name}` (or one by one with `--review`)."
    );
    let _ = writeln!(
        out,
        "  5. Run `specter test --providers {dir}{fixtures}` after every change to the spec: it exits with 1 and shows the diff when a span changes."
    );
    out
}

/// Creates a directory and its parents.
fn create_dir(path: &Path) -> Result<(), InitError> {
    std::fs::create_dir_all(path).map_err(|source| InitError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a file that must not exist yet.
fn write_new(path: &Path, text: &str) -> Result<(), InitError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => InitError::Exists(path.to_path_buf()),
            _ => InitError::Io {
                path: path.to_path_buf(),
                source,
            },
        })?;
    file.write_all(text.as_bytes())
        .map_err(|source| InitError::Io {
            path: path.to_path_buf(),
            source,
        })
}

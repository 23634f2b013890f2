//! `authgate import oauth2-proxy`: reads what an oauth2-proxy fleet really has (configuration
//! files, command lines, environment files, Kubernetes manifests) and writes an authgate
//! configuration plus a report of everything that needs a human.
//!
//! Pipeline: [`detect`] the kind of each input → parse it ([`cfg`], [`cmdline`], [`envfile`],
//! [`alpha`], [`k8s`]) into [`Instance`]s (one per oauth2-proxy process, with the sites it
//! guards) → [`build`] maps every option through [`table`] into a [`build::Plan`] → [`writer`]
//! writes `gateway.yaml` and `apps.d/`, [`report`] writes `import-report.md`.
//! Secret values are never kept past parsing: a literal secret becomes a digest (to tell equal
//! from different secrets) and every secret becomes an environment variable name.

mod alpha;
mod build;
mod cfg;
mod cmdline;
mod detect;
mod envfile;
mod k8s;
mod report;
mod shell;
pub(crate) mod table;
mod writer;

use std::path::{Path, PathBuf};

/// What to import and where.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Files or directories to read.
    pub inputs: Vec<PathBuf>,
    /// The output directory (created if missing).
    pub out: PathBuf,
    /// The host of a single sidecar whose `redirect_url` does not say it.
    pub host: Option<String>,
}

/// What an import wrote.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    /// Apps written to `apps.d/`.
    pub apps: usize,
    /// Providers written to `gateway.yaml`.
    pub providers: usize,
    /// Options or values reported as not mapped (unsupported, pending, unknown).
    pub unmapped: usize,
    /// Where the report is.
    pub report: PathBuf,
}

/// Why an import failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// An input could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The input.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An input is not in a format the importer knows, or is malformed.
    #[error("{path}: {message}")]
    Parse {
        /// The input.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The output could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Where an option's value comes from, when it is not written literally.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ValueRef {
    /// A key of a Kubernetes Secret.
    Secret {
        /// Namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// Key in the Secret.
        key: String,
    },
    /// An environment variable of the process (`$(VAR)`, `${VAR}`), not resolved here.
    Env(String),
}

impl std::fmt::Display for ValueRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValueRef::Secret { namespace, name, key } => {
                write!(f, "key `{key}` of Secret `{name}` (namespace `{namespace}`)")
            }
            ValueRef::Env(var) => write!(f, "the environment variable `{var}` of the old process"),
        }
    }
}

/// One option as found in an input, before mapping.
#[derive(Debug, Clone)]
pub(crate) struct RawOpt {
    /// As written: `email-domain`, `email_domains`, `EMAIL_DOMAINS`.
    pub name: String,
    /// Its values (lists split; a flag given twice has two).
    pub values: Vec<String>,
    /// Set when the value is a reference instead of a literal.
    pub reference: Option<ValueRef>,
    /// Where it was found (`file:line`, `container oauth2-proxy arg`).
    pub origin: String,
}

impl RawOpt {
    /// An option with literal values.
    pub(crate) fn new(name: &str, values: Vec<String>, origin: String) -> Self {
        Self {
            name: name.to_owned(),
            values,
            reference: None,
            origin,
        }
    }
}

/// A host (and paths) routed to an oauth2-proxy instance, found in Kubernetes routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Site {
    /// App name (file name of the app).
    pub name: String,
    /// The host clients use.
    pub host: String,
    /// Where the app really is (the application container behind the sidecar), `host:port`.
    pub upstream: Option<String>,
    /// Path prefixes routed to it other than `/`.
    pub paths: Vec<String>,
    /// The routing object that says so.
    pub origin: String,
}

/// One oauth2-proxy process: its options and what it guards.
#[derive(Debug, Clone, Default)]
pub(crate) struct Instance {
    /// Base name for its app(s).
    pub name: String,
    /// Where it was found.
    pub origin: String,
    /// Its options, in order of precedence (later wins for single values).
    pub opts: Vec<RawOpt>,
    /// Hosts routed to it (Kubernetes); empty for plain files.
    pub sites: Vec<Site>,
    /// Findings made while reading it.
    pub notes: Vec<build::Finding>,
    /// Kubernetes: the ports (name, number) of the other containers of its pod.
    pub app_ports: Vec<(String, u16)>,
    /// Kubernetes: names its Services answer to (`svc`, `svc.ns`, `svc.ns.svc.cluster.local`).
    pub service_names: Vec<String>,
}

/// A certificate the gateway will need, from Kubernetes TLS secrets.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct CertNeed {
    /// Secret namespace.
    pub namespace: String,
    /// Secret name.
    pub secret: String,
    /// Hosts it serves.
    pub hosts: Vec<String>,
}

/// Everything read from the inputs.
#[derive(Debug, Default)]
pub(crate) struct Inventory {
    /// oauth2-proxy processes.
    pub instances: Vec<Instance>,
    /// TLS secrets named by Gateways and Ingresses.
    pub certs: Vec<CertNeed>,
    /// Findings not tied to one instance.
    pub notes: Vec<build::Finding>,
}

/// Reads every input, maps it, writes `DIR/gateway.yaml`, `DIR/apps.d/*.yaml` and
/// `DIR/import-report.md`.
pub fn import(options: &ImportOptions) -> Result<ImportSummary, ImportError> {
    let inventory = read_inputs(&options.inputs, options.host.as_deref())?;
    let plan = build::plan(inventory);
    writer::write(&options.out, &plan)?;
    let report = options.out.join("import-report.md");
    let text = report::render(&plan, &options.inputs);
    std::fs::write(&report, text).map_err(|source| ImportError::Write {
        path: report.clone(),
        source,
    })?;
    Ok(ImportSummary {
        apps: plan.apps.len(),
        providers: plan.gateway.providers.len(),
        unmapped: plan.unmapped(),
        report,
    })
}

/// The option table as Markdown (`--print-mapping-table`; embedded in docs/migration.md).
pub fn mapping_table() -> String {
    table::markdown()
}

fn read_inputs(inputs: &[PathBuf], host: Option<&str>) -> Result<Inventory, ImportError> {
    let mut inventory = Inventory::default();
    let mut plain: Vec<(String, Instance)> = Vec::new();
    let mut manifests: Vec<(PathBuf, String)> = Vec::new();
    for path in inputs {
        for (file, text) in read_path(path)? {
            match detect::detect(&text) {
                detect::InputKind::Kubernetes => manifests.push((file, text)),
                detect::InputKind::Unknown if path.is_dir() => inventory.notes.push(build::Finding::info(
                    &file.display().to_string(),
                    "skipped: not an oauth2-proxy configuration, command line, environment file or manifest",
                )),
                kind => {
                    let parsed = parse_plain(kind, &file, &text)?;
                    let stem = format!(
                        "{}/{}",
                        file.parent().map(|p| p.display().to_string()).unwrap_or_default(),
                        stem(&file)
                    );
                    match plain.iter_mut().find(|(s, _)| *s == stem) {
                        Some((_, inst)) => {
                            inst.origin.push_str(&format!(", {}", file.display()));
                            inst.opts.extend(parsed.opts);
                            inst.notes.extend(parsed.notes);
                        }
                        None => plain.push((stem, parsed)),
                    }
                }
            }
        }
    }
    if !manifests.is_empty() {
        let found = k8s::read(&manifests).map_err(|(path, message)| ImportError::Parse { path, message })?;
        inventory.instances.extend(found.instances);
        inventory.certs.extend(found.certs);
        inventory.notes.extend(found.notes);
    }
    merge_config_files(&mut plain);
    let single = plain.len() == 1 && inventory.instances.is_empty();
    for (_, mut inst) in plain {
        if let (Some(h), true) = (host, single) {
            inst.sites.push(Site {
                name: inst.name.clone(),
                host: h.to_owned(),
                upstream: None,
                paths: Vec::new(),
                origin: "--host".to_owned(),
            });
        }
        inventory.instances.push(inst);
    }
    Ok(inventory)
}

/// A command line's `--config=PATH` whose file is another input: that file's options come
/// first (oauth2-proxy's precedence: file, then environment, then flags), as one instance.
fn merge_config_files(plain: &mut Vec<(String, Instance)>) {
    let mut i = 0;
    while i < plain.len() {
        let target = plain[i]
            .1
            .opts
            .iter()
            .find(|o| o.name.trim_start_matches('-') == "config")
            .and_then(|o| o.values.last())
            .map(|p| {
                Path::new(p)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
        let found = target.and_then(|base| {
            plain.iter().position(|(_, inst)| {
                inst.origin
                    .split(", ")
                    .any(|f| f.ends_with(&format!("/{base}")) || f == base)
            })
        });
        match found {
            Some(j) if j != i => {
                let (_, file) = plain.remove(j);
                let i = if j < i { i - 1 } else { i };
                let inst = &mut plain[i].1;
                inst.origin = format!("{} + {}", inst.origin, file.origin);
                let mut opts = file.opts;
                opts.append(&mut inst.opts);
                inst.opts = opts;
                inst.notes.extend(file.notes);
            }
            _ => i += 1,
        }
    }
}

fn parse_plain(kind: detect::InputKind, file: &Path, text: &str) -> Result<Instance, ImportError> {
    let name = file.display().to_string();
    let opts = match kind {
        detect::InputKind::Cfg => cfg::parse(text, &name),
        detect::InputKind::CommandLine => cmdline::parse(text, &name),
        detect::InputKind::EnvFile => Ok(envfile::parse(text, &name)),
        detect::InputKind::Alpha => alpha::parse(text, &name),
        detect::InputKind::Kubernetes | detect::InputKind::Unknown => Err(
            "not an oauth2-proxy configuration file, command line, environment file, alpha config or Kubernetes manifest"
                .to_owned(),
        ),
    }
    .map_err(|message| ImportError::Parse {
        path: file.to_path_buf(),
        message,
    })?;
    Ok(Instance {
        name: stem(file),
        origin: name,
        opts,
        ..Instance::default()
    })
}

/// The file name without directory and extension(s): `billing.cfg` → `billing`.
fn stem(file: &Path) -> String {
    let base = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = base.split('.').next().unwrap_or_default();
    if stem.is_empty() {
        base
    } else {
        stem.to_owned()
    }
}

/// `(file, content)` of a file, or of every file under a directory (sorted; hidden ones skipped).
fn read_path(path: &Path) -> Result<Vec<(PathBuf, String)>, ImportError> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|source| ImportError::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    if !path.is_dir() {
        return Ok(vec![(path.to_path_buf(), read(path)?)]);
    }
    let mut files = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| ImportError::Read {
            path: dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let p = entry.path();
            let hidden = p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if hidden {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    files.into_iter().map(|f| Ok((f.clone(), read(&f)?))).collect()
}

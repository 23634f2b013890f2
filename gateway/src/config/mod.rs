//! Configuration: the YAML schema, loading the main file and the apps directory, and the
//! errors that name the file and the field at fault.
//!
//! Loading only parses; [`crate::state::Snapshot::build`] checks meaning (hosts, addresses,
//! certificates) and compiles. `authgate check` runs both and prints every error at once.

pub mod auth_schema;
pub mod schema;
pub mod traces;
pub mod watch;

use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use schema::{AppFile, GatewayFile};

/// One problem in the configuration, tied to the file and the field it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file at fault.
    pub file: PathBuf,
    /// The field, as a path such as `tls.certificates[0].key_file`; empty for the whole file.
    pub field: String,
    /// What is wrong, and how to fix it.
    pub message: String,
}

impl ConfigError {
    /// A new error for `field` of `file`.
    pub fn new(file: &Path, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.field, self.message)
        }
    }
}

/// Every problem found in one load; a load with any error is rejected whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// Records one more error.
    pub fn push(&mut self, error: ConfigError) {
        self.0.push(error);
    }

    /// `Ok(value)` when nothing was recorded, else all the errors.
    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// One app file as loaded.
#[derive(Debug, Clone)]
pub struct AppEntry {
    /// The file it came from.
    pub file: PathBuf,
    /// The app's name: the file name without its extension (used in logs and metrics).
    pub name: String,
    /// Its content.
    pub spec: AppFile,
}

/// The whole configuration as parsed from disk, before it is checked and compiled.
#[derive(Debug, Clone)]
pub struct Config {
    /// The main file.
    pub main_path: PathBuf,
    /// Its content.
    pub gateway: GatewayFile,
    /// `apps_dir`, resolved against the main file's directory.
    pub apps_dir: PathBuf,
    /// Every app file, sorted by file name.
    pub apps: Vec<AppEntry>,
    /// A digest of every byte read so far; [`Snapshot::build`](crate::state::Snapshot::build)
    /// adds the certificate files. Equal digests mean nothing changed.
    pub fingerprint: Fingerprint,
    /// App files that could not be read or parsed; the build adds its own errors to these so
    /// one check reports everything.
    pub errors: ConfigErrors,
}

/// A running digest of configuration bytes, used to skip reloads that change nothing.
#[derive(Debug, Clone, Default)]
pub struct Fingerprint(std::collections::hash_map::DefaultHasher);

impl Fingerprint {
    /// Mixes `bytes` (read from `path`) into the digest.
    pub fn add(&mut self, path: &Path, bytes: &[u8]) {
        path.hash(&mut self.0);
        bytes.hash(&mut self.0);
    }

    /// The digest so far.
    pub fn value(&self) -> u64 {
        self.0.finish()
    }
}

/// Resolves `path` against `base` unless it is absolute.
pub fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// The directory a file's relative paths are resolved against.
pub fn base_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Reads and parses the main file and every app file. Fails only when the main file itself
/// is unusable; broken app files are listed in [`Config::errors`].
pub fn load(main_path: &Path) -> Result<Config, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let mut fingerprint = Fingerprint::default();
    let gateway: GatewayFile = match read_yaml(main_path, &mut fingerprint) {
        Ok(g) => g,
        Err(e) => {
            errors.push(e);
            return Err(errors);
        }
    };
    let apps_dir = resolve(&base_dir(main_path), &gateway.apps_dir);
    let mut apps = Vec::new();
    match app_files(&apps_dir) {
        Ok(files) => {
            for file in files {
                match read_yaml::<AppFile>(&file, &mut fingerprint) {
                    Ok(spec) => apps.push(AppEntry {
                        name: app_name(&file),
                        file,
                        spec,
                    }),
                    Err(e) => errors.push(e),
                }
            }
        }
        Err(e) => errors.push(ConfigError::new(
            main_path,
            "apps_dir",
            format!("cannot read directory {}: {e}", apps_dir.display()),
        )),
    }
    Ok(Config {
        main_path: main_path.to_path_buf(),
        gateway,
        apps_dir,
        apps,
        fingerprint,
        errors,
    })
}

/// The `*.yaml` / `*.yml` files of the apps directory, sorted; hidden entries (such as the
/// `..data` links of a Kubernetes ConfigMap) are skipped.
fn app_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        if is_yaml && !name.starts_with('.') && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn app_name(file: &Path) -> String {
    file.file_stem().and_then(|s| s.to_str()).unwrap_or("app").to_owned()
}

/// Reads `path` and parses it as YAML into `T`, naming the field of any error.
fn read_yaml<T: serde::de::DeserializeOwned>(path: &Path, fingerprint: &mut Fingerprint) -> Result<T, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError::new(path, "", format!("cannot read file: {e}")))?;
    fingerprint.add(path, text.as_bytes());
    parse_yaml(path, &text)
}

/// Parses `text` (the content of `path`) as YAML into `T`.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        let message = e.into_inner().to_string();
        let message = strip_path_prefix(&field, &message).to_owned();
        ConfigError::new(path, field, message)
    })
}

/// serde_yaml prefixes its messages with the path of the enclosing value (`health_check: …`);
/// the field is reported separately, so drop that prefix.
fn strip_path_prefix<'a>(field: &str, message: &'a str) -> &'a str {
    if let Some((prefix, rest)) = message.split_once(": ") {
        let encloses = |sep: char| {
            field
                .strip_prefix(prefix)
                .is_some_and(|r| r.is_empty() || r.starts_with(sep))
        };
        if !prefix.is_empty() && (encloses('.') || encloses('[')) {
            return rest;
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_is_named_with_its_path() {
        let text = "host: a.example.com\nupstreams: [\"127.0.0.1:1\"]\nhealth_check: { pth: /x }\n";
        let err = parse_yaml::<AppFile>(Path::new("apps.d/a.yaml"), text).unwrap_err();
        assert_eq!(err.file, Path::new("apps.d/a.yaml"));
        assert_eq!(err.field, "health_check.pth");
        assert!(err.message.starts_with("unknown field `pth`"), "{}", err.message);
    }

    #[test]
    fn durations_are_human() {
        let text = "host: a.example.com\nupstreams: []\ntimeouts: { connect: 250ms, read: 2m }\n";
        let app = parse_yaml::<AppFile>(Path::new("a.yaml"), text).unwrap();
        assert_eq!(app.timeouts.connect.0, std::time::Duration::from_millis(250));
        assert_eq!(app.timeouts.read.0, std::time::Duration::from_secs(120));
        let bad = "host: a\nupstreams: []\ntimeouts: { read: soon }\n";
        let err = parse_yaml::<AppFile>(Path::new("a.yaml"), bad).unwrap_err();
        assert_eq!(err.field, "timeouts.read");
        assert!(err.message.contains("invalid duration"), "{}", err.message);
    }

    #[test]
    fn load_reads_every_app_and_reports_all_errors() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("gateway.yaml");
        std::fs::write(
            &main,
            "listen: { https: \"127.0.0.1:0\" }\ntls: { certificates: [] }\napps_dir: apps\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("apps")).unwrap();
        std::fs::write(dir.path().join("apps/a.yaml"), "host: a.example.com\nupstreams: []\n").unwrap();
        std::fs::write(dir.path().join("apps/b.yaml"), "host: [\n").unwrap();
        std::fs::write(dir.path().join("apps/c.yml"), "hots: c\n").unwrap();
        std::fs::write(dir.path().join("apps/.hidden.yaml"), "garbage: [").unwrap();
        std::fs::write(dir.path().join("apps/notes.txt"), "ignored").unwrap();
        let errors = load(&main).unwrap().errors;
        assert_eq!(errors.0.len(), 2, "{errors}");
        assert!(errors.0[0].file.ends_with("apps/b.yaml"));
        assert!(errors.0[1].file.ends_with("apps/c.yml"));

        std::fs::remove_file(dir.path().join("apps/b.yaml")).unwrap();
        std::fs::remove_file(dir.path().join("apps/c.yml")).unwrap();
        let config = load(&main).unwrap();
        assert!(config.errors.0.is_empty());
        assert_eq!(config.apps.len(), 1);
        assert_eq!(config.apps[0].name, "a");
    }

    #[test]
    fn missing_apps_dir_names_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("gateway.yaml");
        std::fs::write(&main, "listen: { https: \"127.0.0.1:0\" }\ntls: { certificates: [] }\n").unwrap();
        let errors = load(&main).unwrap().errors;
        assert_eq!(errors.0[0].field, "apps_dir");
    }
}

//! Loading a rule file and hot reload.
//!
//! [`load_policy`] reads, checks and compiles a rule file (and everything it includes) into a
//! [`Compiled`] policy, or returns every diagnostic rendered for people. [`Reloader`] runs on a
//! control thread: on SIGHUP or when one of the policy's files changes it loads the file again
//! away from the packet path, prepares one [`crate::engine::policy::Prepared`] per engine (all allocation happens
//! here), and hands them to the workers through [`crate::dataplane::inbox::PolicyInbox`]es; each worker installs its
//! copy between two batches ([`crate::Engine::install`]: one swap). A file that does not check
//! or compile leaves the running policy in place; the failure is logged and counted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rulespec::{Compiled, FsSource};

use crate::dataplane::inbox::PolicyFeed;
use crate::engine::EngineConfig;

/// A policy loaded from a rule file.
#[derive(Debug)]
pub struct LoadedPolicy {
    /// The compiled tables.
    pub compiled: Arc<Compiled>,
    /// What `scrubber check` prints: settings, sets, services, rules, estimated memory.
    pub summary: String,
    /// Warnings, rendered (empty when none).
    pub warnings: String,
    /// Number of warnings.
    pub warning_count: usize,
    /// Every file read (rule files and list files), for change detection.
    pub files: Vec<String>,
}

impl LoadedPolicy {
    /// One line on the compiled tables, as `scrubber check` prints it.
    pub fn compiled_line(&self) -> String {
        let st = self.compiled.stats();
        format!(
            "compiled: {} IPv4 + {} IPv6 prefixes in {} address classes, {} port sets; tables {:.1} MiB",
            st.prefixes_v4,
            st.prefixes_v6,
            st.classes,
            st.port_sets,
            st.memory_bytes as f64 / (1024.0 * 1024.0)
        )
    }
}

/// Why a rule file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyLoadError {
    /// The file has errors; `rendered` shows each with file:line:column and a caret.
    #[error("{path}: {errors} error(s), {warnings} warning(s)\n{rendered}")]
    Invalid {
        /// The rule file.
        path: String,
        /// Number of errors.
        errors: usize,
        /// Number of warnings.
        warnings: usize,
        /// All diagnostics rendered.
        rendered: String,
    },
    /// The policy checked but could not be compiled.
    #[error("{path}: cannot compile the policy: {source}")]
    Compile {
        /// The rule file.
        path: String,
        /// What failed.
        source: rulespec::CompileError,
    },
    /// The policy compiled but the engine cannot run it (e.g. too many services).
    #[error("{path}: {source}")]
    Engine {
        /// The rule file.
        path: String,
        /// What the engine refused.
        source: crate::engine::EngineError,
    },
    /// The cookie-secret file the policy names cannot be used.
    #[error("{path}: the cookie-secret setting: {detail}")]
    Secret {
        /// The rule file.
        path: String,
        /// What is wrong with the secret file (its message carries the cause).
        detail: super::secret::SecretError,
    },
}

/// How rule files are loaded.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Largest rule or list file read, in bytes (`--max-file-size`).
    pub max_file_bytes: u64,
    /// Whether the cookie-secret file the policy names must be readable (not when the command
    /// line gives its own `--cookie-secret`).
    pub check_secret: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { max_file_bytes: FsSource::DEFAULT_MAX_BYTES, check_secret: true }
    }
}

/// Read, check and compile the rule file at `path`, with the default [`LoadOptions`].
pub fn load_policy(path: &Path) -> Result<LoadedPolicy, PolicyLoadError> {
    load_policy_with(path, &LoadOptions::default())
}

/// Read, check and compile the rule file at `path`, and run every check `run` and `replay`
/// would run on the result (the engine's limits, the cookie-secret file): what `check` accepts,
/// they accept.
pub fn load_policy_with(path: &Path, o: &LoadOptions) -> Result<LoadedPolicy, PolicyLoadError> {
    let root = path.to_string_lossy().into_owned();
    let checked = rulespec::check(&root, &FsSource::with_max(o.max_file_bytes));
    let rendered = checked.render();
    let Some(policy) = checked.policy.as_ref().filter(|_| !checked.has_errors()) else {
        return Err(PolicyLoadError::Invalid {
            path: root,
            errors: checked.error_count().max(1),
            warnings: checked.warning_count(),
            rendered,
        });
    };
    let compiled =
        Arc::new(rulespec::compile(policy).map_err(|source| PolicyLoadError::Compile { path: root.clone(), source })?);
    // The engine's own checks, as a worker would run them.
    let cfg = EngineConfig { policy: Some(compiled.clone()), ..EngineConfig::default() };
    cfg.prepare(compiled.clone(), 0).map_err(|source| PolicyLoadError::Engine { path: root.clone(), source })?;
    if o.check_secret {
        if let Some(s) = compiled.settings().cookie_secret.as_deref() {
            super::secret::load_cookie_secret(Path::new(s))
                .map_err(|detail| PolicyLoadError::Secret { path: root.clone(), detail })?;
        }
    }
    Ok(LoadedPolicy {
        compiled,
        summary: policy.summary(),
        warnings: rendered,
        warning_count: checked.warning_count(),
        files: checked.sources.files().iter().map(|f| f.name.clone()).collect(),
    })
}

/// Modification time and size of each file, to notice changes without reading them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileStamps(Vec<(String, Option<(SystemTime, u64)>)>);

impl FileStamps {
    /// Stamp `files` now.
    pub fn of(files: &[String]) -> Self {
        FileStamps(
            files
                .iter()
                .map(|f| {
                    let m = std::fs::metadata(f).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
                    (f.clone(), m)
                })
                .collect(),
        )
    }

    /// The same files stamped again now.
    pub fn restamp(&self) -> Self {
        let names: Vec<String> = self.0.iter().map(|(f, _)| f.clone()).collect();
        FileStamps::of(&names)
    }

    /// Whether any file changed (or appeared, or vanished) since these stamps.
    pub fn changed(&self) -> bool {
        self.restamp() != *self
    }
}

/// Why a reload did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file did not load; the running policy stays.
    #[error(transparent)]
    Load(#[from] PolicyLoadError),
    /// Preparing the per-engine state failed; the running policy stays.
    #[error("cannot prepare the policy: {0}")]
    Prepare(#[from] crate::engine::EngineError),
    /// A worker has stopped.
    #[error(transparent)]
    WorkerGone(#[from] crate::dataplane::inbox::WorkerGone),
    /// The cookie-secret file could not be read again (the running secret stays).
    #[error("the cookie secret: {0}")]
    Secret(#[from] super::secret::SecretError),
}

crate::counters! {
    /// Reloads of the rule file (SIGHUP, file changes).
    pub struct ReloadStats("reload") {
        /// Policies loaded and handed to every worker after the first.
        counter "reloads" reloads_ok,
        /// Reloads refused (the file had errors or did not compile); the old policy stayed.
        counter "reloads" reloads_failed,
        /// Generation id of the policy in force (a hash of its files' contents).
        gauge "reloads" generation,
    }
}

/// Hot reload of one rule file (runs on a control thread).
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    stamps: FileStamps,
    configs: Vec<EngineConfig>,
    feed: PolicyFeed,
    stats: ReloadStats,
    /// `--cookie-secret`, which wins over the rule file's setting.
    secret_arg: Option<PathBuf>,
    load: LoadOptions,
}

/// The cookie-secret file in force: the argument, else the policy's setting.
fn secret_path(arg: Option<&Path>, loaded: &LoadedPolicy) -> Option<PathBuf> {
    arg.map(Path::to_path_buf).or_else(|| loaded.compiled.settings().cookie_secret.as_deref().map(PathBuf::from))
}

/// The files whose changes trigger a reload: the policy's and the cookie secret's.
fn watched(loaded: &LoadedPolicy, secret: Option<&Path>) -> Vec<String> {
    let mut f = loaded.files.clone();
    f.extend(secret.map(|p| p.to_string_lossy().into_owned()));
    f
}

impl Reloader {
    /// `loaded` is the policy the workers start with; `configs` the engine configuration of
    /// each worker (in inbox order).
    pub fn new(path: PathBuf, loaded: &LoadedPolicy, configs: Vec<EngineConfig>, feed: PolicyFeed) -> Self {
        Self::with_options(path, loaded, configs, feed, None, LoadOptions::default())
    }

    /// [`Reloader::new`] with the `--cookie-secret` argument (`None`: the rule file's
    /// `cookie-secret` setting, if any) and the loader's limits. The secret file is watched
    /// with the rule files: a new secret in it is rotated to on the next reload.
    pub fn with_options(
        path: PathBuf,
        loaded: &LoadedPolicy,
        configs: Vec<EngineConfig>,
        feed: PolicyFeed,
        secret_arg: Option<PathBuf>,
        load: LoadOptions,
    ) -> Self {
        let stats = ReloadStats { generation: loaded.compiled.generation_id(), ..ReloadStats::default() };
        let secret = secret_path(secret_arg.as_deref(), loaded);
        let stamps = FileStamps::of(&watched(loaded, secret.as_deref()));
        Reloader { path, stamps, configs, feed, stats, secret_arg, load: LoadOptions { check_secret: false, ..load } }
    }

    /// The counters.
    pub fn stats(&self) -> ReloadStats {
        self.stats
    }

    /// Whether one of the policy's files changed since the last (attempted) load.
    pub fn changed(&self) -> bool {
        self.stamps.changed()
    }

    /// Load the file again and hand it to every worker. On failure the running policy stays,
    /// the failure is counted, and the error (with every diagnostic) is returned for logging.
    pub fn reload(&mut self, now_ns: u64) -> Result<LoadedPolicy, ReloadError> {
        let r = self.try_reload(now_ns);
        match &r {
            Ok(_) => self.stats.reloads_ok += 1,
            Err(_) => self.stats.reloads_failed += 1,
        };
        r
    }

    fn try_reload(&mut self, now_ns: u64) -> Result<LoadedPolicy, ReloadError> {
        let attempt = load_policy_with(&self.path, &self.load).map_err(ReloadError::from).and_then(|loaded| {
            let secret = secret_path(self.secret_arg.as_deref(), &loaded);
            let key = secret.as_deref().map(super::secret::load_cookie_secret).transpose()?;
            Ok((loaded, secret, key))
        });
        let (loaded, secret, key) = match attempt {
            Ok(x) => x,
            Err(e) => {
                // Do not retry the same broken files on every poll: wait for the next change.
                self.stamps = self.stamps.restamp();
                return Err(e);
            }
        };
        self.stamps = FileStamps::of(&watched(&loaded, secret.as_deref()));
        let mut prepared = Vec::with_capacity(self.configs.len());
        for c in &self.configs {
            let p = c.prepare(loaded.compiled.clone(), now_ns)?;
            prepared.push(match &key {
                Some(k) => p.with_cookie_key(k.bytes(), now_ns),
                None => p,
            });
        }
        self.feed.send(prepared)?;
        self.stats.generation = loaded.compiled.generation_id();
        Ok(loaded)
    }

    /// Drop retired policies (call now and then).
    pub fn collect(&self) {
        self.feed.collect();
    }
}

//! Choosing the cluster the way kubectl does.
//!
//! kubectl does not hand its global flags to plugins, so the plugin reads
//! `--kubeconfig`, `--context` and `--cluster` itself and applies kubectl's
//! precedence: `--kubeconfig` (that one file), else `KUBECONFIG` (a
//! `:`-separated list, merged first-wins and skipping files that do not exist,
//! as client-go does), else `~/.kube/config`, else the in-cluster service
//! account. kubectl's `--user` is not offered: `tctl lock --user` owns that name.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Args;
use kube::Config;
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};

use crate::Error;
use crate::error::chain;

/// What is said when there is neither a kubeconfig nor an in-cluster service account.
const NO_CONFIG: &str = "no kubeconfig found (checked --kubeconfig, KUBECONFIG and ~/.kube/config) and not running inside a cluster";

/// kubectl's cluster-selection flags, which the plugin must parse itself. They
/// are global, so they work before or after the subcommand, as with kubectl.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
#[command(next_help_heading = "Cluster options")]
pub struct KubeArgs {
    /// Path to the kubeconfig file to use (instead of KUBECONFIG or ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The name of the kubeconfig context to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The name of the kubeconfig cluster to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub cluster: Option<String>,
}

/// The parts of the process environment the plugin depends on (the
/// kubeconfig, and for the MFA commands the credential cache and kubectl's
/// credential-plugin marker), passed in explicitly so tests need not change
/// the real environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    /// The value of `KUBECONFIG`, if set.
    pub kubeconfig: Option<OsString>,
    /// The home directory holding `.kube/config`, if known.
    pub home: Option<PathBuf>,
    /// `DEADBOLT_CACHE_DIR`: where MFA session credentials are cached.
    pub deadbolt_cache_dir: Option<PathBuf>,
    /// `XDG_CACHE_HOME`.
    pub xdg_cache_home: Option<PathBuf>,
    /// `KUBERNETES_EXEC_INFO`, which kubectl sets when it runs a credential plugin.
    pub exec_info: Option<String>,
}

impl Environment {
    /// Reads `KUBECONFIG`, `HOME`, `DEADBOLT_CACHE_DIR`, `XDG_CACHE_HOME` and
    /// `KUBERNETES_EXEC_INFO` from this process's environment.
    pub fn from_process() -> Self {
        let path = |name: &str| {
            std::env::var_os(name)
                .filter(|value| !value.is_empty())
                .map(PathBuf::from)
        };
        Self {
            kubeconfig: std::env::var_os("KUBECONFIG"),
            home: path("HOME"),
            deadbolt_cache_dir: path(crate::mfa::cache::CACHE_DIR_ENV),
            xdg_cache_home: path("XDG_CACHE_HOME"),
            exec_info: std::env::var_os(crate::mfa::exec::EXEC_INFO_ENV)
                .map(|info| info.to_string_lossy().into_owned()),
        }
    }

    /// The MFA credential cache: `DEADBOLT_CACHE_DIR`, else
    /// `XDG_CACHE_HOME/deadbolt`, else `HOME/.cache/deadbolt`.
    pub fn credential_cache(&self) -> Option<crate::mfa::CredentialCache> {
        crate::mfa::CredentialCache::locate(
            self.deadbolt_cache_dir.as_deref(),
            self.xdg_cache_home.as_deref(),
            self.home.as_deref(),
        )
    }
}

/// The kubeconfig kubectl would use with these flags and this environment, or
/// `None` when there is none (then kubectl falls back to in-cluster config).
pub fn read_kubeconfig(args: &KubeArgs, env: &Environment) -> Result<Option<Kubeconfig>, Error> {
    if let Some(path) = &args.kubeconfig {
        return read(path).map(Some);
    }
    if let Some(value) = &env.kubeconfig {
        let paths: Vec<PathBuf> = std::env::split_paths(value)
            .filter(|path| !path.as_os_str().is_empty())
            .collect();
        if !paths.is_empty() {
            // Same merge as kube's `Kubeconfig::from_env`, except that, like client-go,
            // files that do not exist are skipped rather than fatal.
            let mut merged: Option<Kubeconfig> = None;
            for path in paths.iter().filter(|path| path.exists()) {
                let next = read(path)?;
                merged = Some(match merged {
                    None => next,
                    Some(config) => config.merge(next).map_err(|error| {
                        Error::Kubeconfig(format!("merging KUBECONFIG files: {}", chain(&error)))
                    })?,
                });
            }
            return Ok(merged);
        }
    }
    if let Some(home) = &env.home {
        let path = home.join(".kube").join("config");
        if path.exists() {
            return read(&path).map(Some);
        }
    }
    Ok(None)
}

fn read(path: &Path) -> Result<Kubeconfig, Error> {
    Kubeconfig::read_from(path)
        .map_err(|error| Error::Kubeconfig(format!("loading kubeconfig: {}", chain(&error))))
}

/// The client configuration for these flags and this environment: the kubeconfig
/// from [`read_kubeconfig`] with `--context`/`--cluster` applied, or in-cluster config.
pub async fn load_config(args: &KubeArgs, env: &Environment) -> Result<Config, Error> {
    match read_kubeconfig(args, env)? {
        Some(kubeconfig) => {
            let options = KubeConfigOptions {
                context: args.context.clone(),
                cluster: args.cluster.clone(),
                user: None,
            };
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(config_error)
        }
        None if args.context.is_none() && args.cluster.is_none() => {
            Config::incluster().map_err(|_| Error::Kubeconfig(NO_CONFIG.to_string()))
        }
        None => Err(Error::Kubeconfig(NO_CONFIG.to_string())),
    }
}

/// kubectl's wording for the common mistakes, kube's for the rest.
fn config_error(error: KubeconfigError) -> Error {
    Error::Kubeconfig(match error {
        KubeconfigError::LoadContext(name) => {
            format!("context was not found for specified context: {name}")
        }
        KubeconfigError::LoadClusterOfContext(name) => {
            format!("cluster {name:?} was not found in the kubeconfig")
        }
        KubeconfigError::CurrentContextNotSet => {
            "current-context is not set in the kubeconfig; pass --context or run `kubectl config use-context NAME`".to_string()
        }
        other => format!("loading kubeconfig: {}", chain(&other)),
    })
}

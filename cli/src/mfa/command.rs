//! The MFA commands of `kubectl deadbolt`: `mfa add/ls/rm`, `login --mfa` and
//! `status`. As with the lock commands, flags are checked without I/O first
//! ([`MfaAction`] from the `prepare_*` functions), then [`MfaAction::run`]
//! reads the files it names, connects to the MFA service once and does the
//! work.
//!
//! The caller's credential for the MFA service is, in order: `--token-file`,
//! `--cert`/`--key`, else the bearer token of the kubeconfig's current user.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use jiff::Timestamp;
use url::Url;

use super::cache::CacheKey;
use super::client::check_url;
use super::exec::{api_version_for, render_exec_credential};
use super::files::{PRIVATE, PUBLIC, write_atomically};
use super::render;
use super::{
    Authenticator, Caller, IssuedLogin, MfaClient, MfaError, MfaService, check_device_name, login,
    register,
};
use crate::Error;
use crate::kubeconfig::{self, Environment, KubeArgs};

/// What is said when no caller credential can be found.
pub const NO_CALLER: &str = "no credential for the MFA service: pass --token-file FILE \
     (or set DEADBOLT_TOKEN_FILE), or --cert FILE --key FILE (or DEADBOLT_CERT and DEADBOLT_KEY), \
     or use a kubeconfig context whose user has a bearer token";

/// What is said when `login` is run without `--mfa`.
pub const MFA_FLAG_REQUIRED: &str = "only MFA logins exist: run `kubectl deadbolt login --mfa`";

/// What is said when `login` is not told where the credential goes.
pub const NO_OUTPUT: &str = "say where the session credential goes: --out PREFIX \
     (certificate and key files for psql and mysql) or --exec-credential (for kubectl)";

/// Where the MFA service is and who calls it: flattened into every MFA command.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
#[command(next_help_heading = "MFA service")]
pub struct ServiceArgs {
    /// URL of Deadbolt's MFA service, https and a host, with a port if not 443 (required).
    #[arg(long, env = "DEADBOLT_MFA_URL", value_name = "URL")]
    pub mfa_url: Option<String>,
    /// The Deadbolt CA (PEM) that the MFA service's certificate chains to (required).
    #[arg(long, env = "DEADBOLT_MFA_CA", value_name = "FILE")]
    pub mfa_ca: Option<PathBuf>,
    /// A file holding the Kubernetes bearer token to call the service with.
    #[arg(long, env = "DEADBOLT_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// A Deadbolt client certificate (PEM) to call the service with; needs --key.
    #[arg(long, env = "DEADBOLT_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(long, env = "DEADBOLT_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
}

/// Which security key answers, and the origin it is told.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
#[command(next_help_heading = "Security key")]
pub struct KeyArgs {
    /// Use a software token kept in FILE (created if missing) instead of a USB security key.
    #[arg(long, value_name = "FILE")]
    pub soft_token: Option<PathBuf>,
    /// The WebAuthn origin (default: https:// and the relying party id the service sends).
    #[arg(long, value_name = "URL")]
    pub origin: Option<Url>,
}

/// `kubectl deadbolt mfa ...`.
#[derive(Args, Debug, Clone)]
pub struct MfaArgs {
    /// What to do with MFA devices.
    #[command(subcommand)]
    pub command: MfaCommand,
}

/// The MFA device subcommands, like `tsh mfa add/ls/rm`.
#[derive(Subcommand, Debug, Clone)]
pub enum MfaCommand {
    /// Register a security key as an MFA device.
    Add(MfaAddArgs),
    /// List your MFA devices.
    #[command(visible_alias = "list")]
    Ls(MfaLsArgs),
    /// Remove one of your MFA devices.
    #[command(visible_alias = "delete")]
    Rm(MfaRmArgs),
}

/// Flags of `mfa add`.
#[derive(Args, Debug, Clone)]
pub struct MfaAddArgs {
    /// A name for the device, e.g. yubikey (1 to 64 characters).
    #[arg(long)]
    pub name: String,
    /// The key to register.
    #[command(flatten)]
    pub key: KeyArgs,
    /// The MFA service.
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// Flags of `mfa ls`.
#[derive(Args, Debug, Clone)]
pub struct MfaLsArgs {
    /// The MFA service.
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// Flags of `mfa rm`.
#[derive(Args, Debug, Clone)]
pub struct MfaRmArgs {
    /// The device's UUID, as `mfa ls` shows it.
    #[arg(value_name = "UUID")]
    pub uuid: String,
    /// The MFA service.
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// Flags of `login`.
#[derive(Args, Debug, Clone)]
pub struct LoginArgs {
    /// Pass an MFA check with a security key (the only kind of login there is).
    #[arg(long)]
    pub mfa: bool,
    /// Narrow the credential to one proxy (its server id).
    #[arg(long, value_name = "SERVER_ID")]
    pub target: Option<String>,
    /// Write PREFIX.crt, PREFIX.key and PREFIX-ca.crt (for psql sslcert/sslkey/sslrootcert, mysql --ssl-*).
    #[arg(long, value_name = "PREFIX")]
    pub out: Option<PathBuf>,
    /// Print a kubectl ExecCredential (implied when kubectl runs the plugin as a credential plugin).
    #[arg(long)]
    pub exec_credential: bool,
    /// The key to check with.
    #[command(flatten)]
    pub key: KeyArgs,
    /// The MFA service.
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// Flags of `status`.
#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    /// The MFA service.
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// Where the caller's credential comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallerSource {
    /// A token in this file.
    TokenFile(PathBuf),
    /// A certificate and key in these files.
    Certificate {
        /// The certificate (PEM).
        cert: PathBuf,
        /// Its key (PEM).
        key: PathBuf,
    },
    /// The current kubeconfig user's bearer token.
    Kubeconfig,
}

/// The MFA service's checked flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePlan {
    /// The URL (checked).
    pub url: String,
    /// The CA file.
    pub ca_file: PathBuf,
    /// Where the caller's credential comes from.
    pub caller: CallerSource,
}

/// A checked MFA command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MfaAction {
    /// The service and the caller.
    pub service: ServicePlan,
    /// What to do.
    pub operation: Operation,
}

/// What an MFA command does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `mfa add`.
    AddDevice {
        /// The device's name.
        name: String,
        /// The key.
        key: KeyArgs,
    },
    /// `mfa ls`.
    ListDevices,
    /// `mfa rm`.
    RemoveDevice {
        /// The device's UUID (lowercase, hyphenated).
        uuid: String,
    },
    /// `login --mfa`.
    Login {
        /// `--target`.
        target: Option<String>,
        /// `--out`.
        out: Option<PathBuf>,
        /// `--exec-credential`.
        exec_credential: bool,
        /// The key.
        key: KeyArgs,
    },
    /// `status`.
    Status,
}

fn usage(message: impl Into<String>) -> Error {
    Error::MfaUsage(message.into())
}

impl ServiceArgs {
    /// Checks the flags: URL and CA present and well-formed, one caller credential at most.
    pub fn plan(&self) -> Result<ServicePlan, Error> {
        let url = self
            .mfa_url
            .clone()
            .filter(|url| !url.trim().is_empty())
            .ok_or_else(|| {
                usage("the MFA service URL is required: pass --mfa-url URL or set DEADBOLT_MFA_URL")
            })?;
        check_url(&url)?;
        let ca_file = self
            .mfa_ca
            .clone()
            .filter(|path| !path.as_os_str().is_empty())
            .ok_or_else(|| {
                usage(
                    "the Deadbolt CA is required to trust the MFA service: pass --mfa-ca FILE or set DEADBOLT_MFA_CA",
                )
            })?;
        let non_empty =
            |path: &Option<PathBuf>| path.clone().filter(|path| !path.as_os_str().is_empty());
        let caller = match (
            non_empty(&self.token_file),
            non_empty(&self.cert),
            non_empty(&self.key),
        ) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(usage(
                    "use either --token-file or --cert/--key to call the MFA service, not both",
                ));
            }
            (Some(file), None, None) => CallerSource::TokenFile(file),
            (None, Some(cert), Some(key)) => CallerSource::Certificate { cert, key },
            (None, Some(_), None) => return Err(usage("--cert needs --key")),
            (None, None, Some(_)) => return Err(usage("--key needs --cert")),
            (None, None, None) => CallerSource::Kubeconfig,
        };
        Ok(ServicePlan {
            url,
            ca_file,
            caller,
        })
    }
}

/// Checks `mfa ...`.
pub fn prepare_mfa(args: &MfaArgs) -> Result<MfaAction, Error> {
    match &args.command {
        MfaCommand::Add(add) => {
            check_device_name(&add.name).map_err(usage)?;
            Ok(MfaAction {
                service: add.service.plan()?,
                operation: Operation::AddDevice {
                    name: add.name.clone(),
                    key: add.key.clone(),
                },
            })
        }
        MfaCommand::Ls(ls) => Ok(MfaAction {
            service: ls.service.plan()?,
            operation: Operation::ListDevices,
        }),
        MfaCommand::Rm(rm) => {
            let uuid = uuid::Uuid::parse_str(rm.uuid.trim()).map_err(|_| {
                usage(format!(
                    "invalid MFA device UUID {:?}: see `kubectl deadbolt mfa ls`",
                    rm.uuid
                ))
            })?;
            Ok(MfaAction {
                service: rm.service.plan()?,
                operation: Operation::RemoveDevice {
                    uuid: uuid.hyphenated().to_string(),
                },
            })
        }
    }
}

/// Checks `login ...`.
pub fn prepare_login(args: &LoginArgs) -> Result<MfaAction, Error> {
    if !args.mfa {
        return Err(usage(MFA_FLAG_REQUIRED));
    }
    if let Some(target) = &args.target
        && (target.trim().is_empty() || target.chars().any(char::is_control))
    {
        return Err(usage(format!(
            "invalid --target {target:?}: give a proxy's server id"
        )));
    }
    if let Some(out) = &args.out
        && (out.as_os_str().is_empty() || out.file_name().is_none())
    {
        return Err(usage(format!(
            "invalid --out {:?}: give a file name prefix such as ./db",
            out.display()
        )));
    }
    Ok(MfaAction {
        service: args.service.plan()?,
        operation: Operation::Login {
            target: args.target.clone(),
            out: args.out.clone(),
            exec_credential: args.exec_credential,
            key: args.key.clone(),
        },
    })
}

/// Checks `status`.
pub fn prepare_status(args: &StatusArgs) -> Result<MfaAction, Error> {
    Ok(MfaAction {
        service: args.service.plan()?,
        operation: Operation::Status,
    })
}

fn read_file(path: &Path, what: &str) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|error| {
        Error::Mfa(MfaError::Config(format!(
            "cannot read {what} {}: {error}",
            path.display()
        )))
    })
}

/// The bearer token of the kubeconfig user `kube` and `env` select (`token`, else `tokenFile`).
pub async fn kubeconfig_token(kube: &KubeArgs, env: &Environment) -> Result<String, Error> {
    let config = kubeconfig::load_config(kube, env)
        .await
        .map_err(|error| usage(format!("{NO_CALLER} ({error})")))?;
    // kube keeps the token in a secrecy wrapper; its serialised form carries it.
    let auth = serde_json::to_value(&config.auth_info).unwrap_or_default();
    if let Some(token) = auth
        .get("token")
        .and_then(|token| token.as_str())
        .filter(|token| !token.trim().is_empty())
    {
        return Ok(token.trim().to_string());
    }
    if let Some(file) = auth.get("tokenFile").and_then(|file| file.as_str()) {
        let token = read_file(Path::new(file), "the kubeconfig's token file")?;
        if !token.trim().is_empty() {
            return Ok(token.trim().to_string());
        }
    }
    Err(usage(NO_CALLER))
}

impl ServicePlan {
    /// Reads the CA and the caller's credential: the [`MfaService`] to connect to.
    pub async fn resolve(&self, kube: &KubeArgs, env: &Environment) -> Result<MfaService, Error> {
        let ca_pem = read_file(&self.ca_file, "the MFA service CA")?;
        let caller = match &self.caller {
            CallerSource::TokenFile(path) => {
                let token = read_file(path, "the token file")?;
                if token.trim().is_empty() {
                    return Err(usage(format!("the token file {} is empty", path.display())));
                }
                Caller::Token(token.trim().to_string())
            }
            CallerSource::Certificate { cert, key } => Caller::Certificate {
                cert_pem: read_file(cert, "the client certificate")?,
                key_pem: read_file(key, "the client key")?,
            },
            CallerSource::Kubeconfig => Caller::Token(kubeconfig_token(kube, env).await?),
        };
        Ok(MfaService {
            url: self.url.clone(),
            ca_pem,
            caller,
        })
    }
}

fn authenticator(key: &KeyArgs) -> Result<Authenticator, Error> {
    Ok(Authenticator::from_flags(key.soft_token.as_deref())?.with_origin(key.origin.clone()))
}

impl MfaAction {
    /// Runs the command: results on `out`, notes on `err`. `kube` and `env`
    /// choose the kubeconfig (for the caller's token when no flag gives one),
    /// the credential cache directory and whether kubectl runs the plugin as a
    /// credential plugin.
    pub async fn run(
        self,
        kube: &KubeArgs,
        env: &Environment,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<(), Error> {
        if let Operation::Login {
            out: None,
            exec_credential: false,
            ..
        } = &self.operation
            && env.exec_info.is_none()
        {
            return Err(usage(NO_OUTPUT));
        }
        let service = self.service.resolve(kube, env).await?;
        match self.operation {
            Operation::AddDevice { name, key } => {
                let mut key = authenticator(&key)?;
                let client = MfaClient::connect(&service).await?;
                let device = register(&client, &mut key, &name).await?;
                writeln!(
                    out,
                    "MFA device {} registered: {}",
                    crate::output::cell(&device.name),
                    device.uuid
                )?;
            }
            Operation::ListDevices => {
                let client = MfaClient::connect(&service).await?;
                let devices = client.devices().await?.devices;
                if devices.is_empty() {
                    writeln!(
                        err,
                        "No MFA devices registered; add one with `kubectl deadbolt mfa add --name NAME`."
                    )?;
                } else {
                    out.write_all(render::devices(&devices).as_bytes())?;
                }
            }
            Operation::RemoveDevice { uuid } => {
                let client = MfaClient::connect(&service).await?;
                client.remove_device(&uuid).await?;
                writeln!(out, "MFA device {uuid:?} has been removed")?;
            }
            Operation::Status => {
                let client = MfaClient::connect(&service).await?;
                let whoami = client.whoami().await?;
                out.write_all(render::status(&whoami, Timestamp::now()).as_bytes())?;
            }
            Operation::Login {
                target,
                out: prefix,
                exec_credential,
                key: key_args,
            } => {
                let exec = exec_credential || env.exec_info.is_some();
                let cache = if exec {
                    env.credential_cache().map(|cache| {
                        (
                            cache,
                            CacheKey::new(&service.url, &service.caller, target.as_deref()),
                        )
                    })
                } else {
                    None
                };
                let api_version = api_version_for(env.exec_info.as_deref());
                if prefix.is_none()
                    && let Some((cache, entry)) = &cache
                    && let Some(cached) = cache.load(entry, Timestamp::now())
                {
                    out.write_all(render_exec_credential(&cached, api_version).as_bytes())?;
                    return Ok(());
                }
                let mut key = authenticator(&key_args)?;
                let client = MfaClient::connect(&service).await?;
                let issued = login(&client, &mut key, target).await?;
                drop(client);
                if let Some(prefix) = &prefix {
                    write_login_files(prefix, &issued)?;
                    let summary =
                        render::login_summary(prefix, issued.expires_at, &issued.mfa_device);
                    // With an ExecCredential on stdout, everything else goes to stderr.
                    let notes: &mut dyn Write = if exec { &mut *err } else { &mut *out };
                    notes.write_all(summary.as_bytes())?;
                }
                if exec {
                    if let Some((cache, entry)) = &cache
                        && let Err(error) = cache.store(entry, &issued)
                    {
                        writeln!(err, "warning: the credential was not cached: {error}")?;
                    }
                    out.write_all(render_exec_credential(&issued, api_version).as_bytes())?;
                }
            }
        }
        Ok(())
    }
}

/// Writes PREFIX.crt, PREFIX.key (0600) and PREFIX-ca.crt.
pub fn write_login_files(prefix: &Path, issued: &IssuedLogin) -> Result<(), Error> {
    let [cert, key, ca] = render::out_paths(prefix);
    write_atomically(&key, issued.key_pem.as_bytes(), PRIVATE)?;
    write_atomically(&cert, issued.cert_pem.as_bytes(), PUBLIC)?;
    write_atomically(&ca, issued.ca_pem.as_bytes(), PUBLIC)?;
    Ok(())
}

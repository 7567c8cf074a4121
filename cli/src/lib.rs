//! `kubectl deadbolt`: the kubectl plugin that mirrors Teleport's `tctl lock`
//! for Deadbolt's cluster-scoped `deadbolt.dev/v1` `Lock` resources, and
//! `tsh`'s per-session MFA (`mfa add/ls/rm`, `login --mfa`, `status`) against
//! Deadbolt's MFA service ([`mfa`]).
//!
//! kubectl runs the `kubectl-deadbolt` binary with everything after
//! `kubectl deadbolt` and does not pass its own global flags on, so the
//! plugin parses `--kubeconfig`, `--context` and `--cluster` itself
//! ([`kubeconfig`]). The work is split so that tests can drive it with an
//! injected [`kube::Client`]:
//!
//! 1. [`Cli`] parses the arguments (clap);
//! 2. [`Command::prepare`] validates them into an [`Action`] without any I/O,
//!    so a bad flag never reaches the API server (or even the kubeconfig);
//! 3. [`Action::run`] talks to the API server through the client it is given.
//!
//! [`run`] strings these together for the binary and renders errors the way
//! kubectl does ([`Error::render`]). The MFA commands talk to the MFA service
//! rather than the API server: their [`Action::Mfa`] needs no kube client, and
//! [`run`] hands it the kubeconfig flags and environment instead.

pub mod error;
pub mod kubeconfig;
pub mod list;
pub mod lock;
pub mod mfa;
pub mod output;
pub mod remove;
pub mod unlock;

use std::ffi::OsString;
use std::io::Write;

use clap::{Args, Parser, Subcommand};
use deadbolt_api::TargetKind;
use deadbolt_api::resources::{Lock, LockTargetSpec};
use kube::api::ListParams;
use kube::{Api, Client};

pub use error::Error;
pub use kubeconfig::{Environment, KubeArgs};

/// How many locks one list request asks for, as kubectl's `--chunk-size` default,
/// so listing stays cheap for the API server however many locks there are.
pub const LIST_CHUNK_SIZE: u32 = 500;

/// The command line of `kubectl deadbolt`.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "kubectl-deadbolt",
    bin_name = "kubectl deadbolt",
    version,
    about = "Create, list and remove Deadbolt locks (the kubectl twin of `tctl lock`); register MFA devices and get MFA session credentials.",
    long_about = None
)]
pub struct Cli {
    /// Which cluster to talk to; kubectl does not forward its own flags to plugins.
    #[command(flatten)]
    pub kube: KubeArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands, named after `tctl lock` / `tctl get locks` / `tctl rm`.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Create a lock, like `tctl lock`.
    Lock(LockArgs),
    /// Delete every lock whose target is exactly the given one.
    Unlock(UnlockArgs),
    /// List locks, like `tctl get locks`.
    #[command(visible_alias = "list")]
    Ls,
    /// Delete a lock by name, like `tctl rm locks/NAME`.
    #[command(visible_alias = "delete")]
    Rm(RmArgs),
    /// Register, list and remove your MFA devices (security keys).
    Mfa(mfa::command::MfaArgs),
    /// Pass an MFA check and get a five-minute session certificate (for kubectl, psql, mysql).
    Login(mfa::command::LoginArgs),
    /// Show who you are to Deadbolt: roles, locks in force, MFA devices and lock-out.
    Status(mfa::command::StatusArgs),
}

/// The target flags `tctl lock` takes; each one that is set becomes a field of `spec.target`.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Target (at least one)")]
pub struct TargetArgs {
    /// Name of a user to lock out.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Name of an AccessRole; every user holding it is locked out.
    #[arg(long, value_name = "NAME")]
    pub role: Option<String>,
    /// A login (OS login, or the database user a connection asks for) to lock out.
    #[arg(long, value_name = "NAME")]
    pub login: Option<String>,
    /// UUID of an MFA device; sessions verified with it are locked out.
    #[arg(long, value_name = "UUID")]
    pub mfa_device: Option<String>,
    /// Id of a trusted device to lock out.
    #[arg(long, value_name = "ID")]
    pub device: Option<String>,
    /// serverId of a Deadbolt proxy; that proxy refuses everything.
    #[arg(long, value_name = "ID")]
    pub server_id: Option<String>,
    /// Name of a Windows desktop to lock out (kept for parity with Teleport).
    #[arg(long, value_name = "NAME")]
    pub windows_desktop: Option<String>,
    /// UUID of an access request; privileges granted through it are locked out.
    #[arg(long, value_name = "UUID")]
    pub access_request: Option<String>,
}

impl TargetArgs {
    /// The lock target these flags describe; empty values count as unset, as in the CRD.
    pub fn to_spec(&self) -> LockTargetSpec {
        let mut spec = LockTargetSpec::default();
        for kind in TargetKind::ALL {
            let value = match kind {
                TargetKind::User => &self.user,
                TargetKind::Role => &self.role,
                TargetKind::Login => &self.login,
                TargetKind::MfaDevice => &self.mfa_device,
                TargetKind::WindowsDesktop => &self.windows_desktop,
                TargetKind::AccessRequest => &self.access_request,
                TargetKind::Device => &self.device,
                TargetKind::ServerId => &self.server_id,
            };
            *spec.field_mut(kind) = value.clone().filter(|value| !value.is_empty());
        }
        spec
    }

    /// The target, or tctl's error when no target flag was given.
    pub fn require_target(&self) -> Result<LockTargetSpec, Error> {
        let spec = self.to_spec();
        if spec.is_empty() {
            return Err(Error::NoTarget);
        }
        Ok(spec)
    }
}

/// Flags of `kubectl deadbolt lock`: exactly those of `tctl lock`.
#[derive(Args, Debug, Clone, Default)]
pub struct LockArgs {
    /// Message shown to locked-out users after `is in force: `.
    #[arg(long)]
    pub message: Option<String>,
    /// How long the lock stays in force, counted from its creation (Go duration, e.g. 10h or 1h30m).
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// When the lock stops being in force (RFC 3339, e.g. 2030-01-01T00:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub expires: Option<String>,
    /// What to lock (listed after the other flags so `--help` groups the targets under their own heading).
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Flags of `kubectl deadbolt unlock`: the target flags of `lock`.
#[derive(Args, Debug, Clone, Default)]
pub struct UnlockArgs {
    /// The exact target of the locks to delete.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Arguments of `kubectl deadbolt rm`.
#[derive(Args, Debug, Clone)]
pub struct RmArgs {
    /// The lock's name; `locks/NAME` (tctl's spelling) works too.
    #[arg(value_name = "NAME")]
    pub name: String,
}

/// A validated command, ready to be sent to the API server.
#[derive(Debug, Clone)]
pub enum Action {
    /// Create this lock.
    Create(Box<Lock>),
    /// Delete the locks whose target is exactly this one.
    Unlock(LockTargetSpec),
    /// Print the lock table.
    List,
    /// Delete the lock with this name.
    Remove(String),
    /// An MFA command; it talks to the MFA service, not the API server.
    Mfa(Box<mfa::command::MfaAction>),
}

impl Command {
    /// Checks the flags without any I/O, so bad input fails before a kubeconfig is read or a request is sent.
    pub fn prepare(&self) -> Result<Action, Error> {
        match self {
            Command::Lock(args) => lock::build_lock(args, &uuid::Uuid::new_v4().to_string())
                .map(Box::new)
                .map(Action::Create),
            Command::Unlock(args) => args.target.require_target().map(Action::Unlock),
            Command::Ls => Ok(Action::List),
            Command::Rm(args) => remove::parse_name(&args.name).map(Action::Remove),
            Command::Mfa(args) => mfa::command::prepare_mfa(args)
                .map(Box::new)
                .map(Action::Mfa),
            Command::Login(args) => mfa::command::prepare_login(args)
                .map(Box::new)
                .map(Action::Mfa),
            Command::Status(args) => mfa::command::prepare_status(args)
                .map(Box::new)
                .map(Action::Mfa),
        }
    }
}

impl Action {
    /// Carries the action out against the API server behind `client`, writing results to `out`
    /// and notes (such as "No locks found.") to `err`, as kubectl splits them. An
    /// [`Action::Mfa`] does not use `client`: it runs with the default kubeconfig
    /// selection and this process's environment ([`mfa::command::MfaAction::run`]
    /// takes them explicitly).
    pub async fn run(
        self,
        client: Client,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<(), Error> {
        let api: Api<Lock> = Api::all(client);
        match self {
            Action::Create(lock) => lock::create(&api, *lock, out).await,
            Action::Unlock(target) => unlock::unlock(&api, &target, out).await,
            Action::List => list::list(&api, out, err).await,
            Action::Remove(name) => remove::remove(&api, &name, out).await,
            Action::Mfa(action) => {
                action
                    .run(&KubeArgs::default(), &Environment::from_process(), out, err)
                    .await
            }
        }
    }
}

/// Validates `command` and runs it with `client`: the whole plugin minus argument and kubeconfig handling.
pub async fn execute(
    command: &Command,
    client: Client,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Error> {
    command.prepare()?.run(client, out, err).await
}

/// Every lock in the cluster, fetched in chunks of [`LIST_CHUNK_SIZE`] like kubectl does.
pub async fn list_all(api: &Api<Lock>) -> Result<Vec<Lock>, Error> {
    let mut locks = Vec::new();
    let mut params = ListParams::default().limit(LIST_CHUNK_SIZE);
    loop {
        let page = api.list(&params).await?;
        locks.extend(page.items);
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(locks),
        }
    }
}

/// The binary's entry point: parses `args`, loads the kubeconfig chosen by the flags and `env`,
/// runs the command and prints errors as kubectl does. Returns the process exit code
/// (0 on success, 1 on any error, as kubectl).
pub async fn run<I, T>(args: I, env: &Environment, out: &mut dyn Write, err: &mut dyn Write) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(parse_error) => {
            let text = parse_error.render().to_string();
            if parse_error.use_stderr() {
                let _ = write!(err, "{text}");
                return 1;
            }
            let _ = write!(out, "{text}");
            return 0;
        }
    };
    match run_cli(&cli, env, out, err).await {
        Ok(()) => 0,
        Err(error) => {
            let _ = writeln!(err, "{}", error.render());
            1
        }
    }
}

async fn run_cli(
    cli: &Cli,
    env: &Environment,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Error> {
    let action = cli.command.prepare()?;
    if let Action::Mfa(action) = action {
        return action.run(&cli.kube, env, out, err).await;
    }
    let config = kubeconfig::load_config(&cli.kube, env).await?;
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(Error::Client)?;
    action
        .run(client, out, err)
        .await
        .map_err(|error| error.with_server(&server))
}

//! `deadbolt-ca`: issues certificates from a Deadbolt CA kept in a directory,
//! for standalone deployments (databases outside Kubernetes) and the local demo.
//! In a cluster the CA lives in the `deadbolt-ca` Secret and the operator issues.
//!
//! ```text
//! deadbolt-ca --ca-dir DIR init
//! deadbolt-ca --ca-dir DIR proxy   --server-id ID       --out PREFIX
//! deadbolt-ca --ca-dir DIR serving --name localhost ... --out PREFIX
//! deadbolt-ca --ca-dir DIR user    --user alice [--group g] [--role r]
//!             [--mfa-device UUID] [--device ID] [--access-request ID]
//!             (--manifests DIR | --no-lock-check) --out PREFIX
//! ```
//! `user` checks the lock view first, as the operator's MFA service does:
//! a locked identity gets no certificate. The locks are read from the
//! directory of manifests the standalone operator serves (`--manifests`);
//! `--no-lock-check` says, explicitly, that there is none.
//! `init` creates the CA, once; the others need it to exist (a mistyped
//! `--ca-dir` fails instead of minting a CA nothing trusts). Each writes
//! `PREFIX.crt` and `PREFIX.key`, the key with mode 0600, each to a temporary
//! file first and then renamed into place, so a reader never sees half a key.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use deadbolt_api::credential::CertIdentity;
use deadbolt_operator::admin::{Metrics, Readiness};
use deadbolt_operator::admission::FollowingReplica;
use deadbolt_operator::ca::{self, DirCaStore, IssuedCert};
use deadbolt_operator::source::{DirOptions, DirSource};
use deadbolt_operator::view::ViewStore;
use deadbolt_runtime::files::{PRIVATE, PUBLIC, write_atomically};

/// Issues Deadbolt certificates from a CA directory.
#[derive(Parser, Debug)]
#[command(name = "deadbolt-ca", version)]
struct Cli {
    /// Directory holding `ca.crt` and `ca.key` (created when missing).
    #[arg(long, env = "DEADBOLT_CA_DIR")]
    ca_dir: PathBuf,
    /// Validity of the issued certificate (Go duration).
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    valid_for: Duration,
    /// Output prefix: PREFIX.crt and PREFIX.key.
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    #[command(subcommand)]
    kind: Kind,
}

#[derive(Subcommand, Debug)]
enum Kind {
    /// Creates the CA (`ca.crt`, `ca.key`) in `--ca-dir`; refuses if one is there.
    Init,
    /// A proxy's certificate for subscribing to the lock view.
    Proxy {
        /// The proxy's server id.
        #[arg(long)]
        server_id: String,
    },
    /// A serving certificate (for a proxy's or the operator's listener).
    Serving {
        /// DNS names and IP addresses.
        #[arg(long = "name", required = true)]
        names: Vec<String>,
    },
    /// A user's short-lived client certificate.
    User {
        /// Who the certificate names.
        #[command(flatten)]
        identity: IdentityArgs,
        /// The directory of manifests the operator serves (`--source dir:DIR`):
        /// a certificate is refused while a Lock there targets the identity.
        #[arg(
            long,
            env = "DEADBOLT_MANIFESTS",
            required_unless_present = "no_lock_check"
        )]
        manifests: Option<PathBuf>,
        /// Issue without checking locks (there is no lock view to check).
        #[arg(long, conflicts_with = "manifests")]
        no_lock_check: bool,
    },
}

/// Who a user certificate names.
#[derive(Args, Debug)]
struct IdentityArgs {
    /// The user.
    #[arg(long)]
    user: String,
    /// Groups.
    #[arg(long = "group")]
    groups: Vec<String>,
    /// AccessRoles granted by the certificate itself.
    #[arg(long = "role")]
    roles: Vec<String>,
    /// The MFA device the certificate's MFA check used.
    #[arg(long)]
    mfa_device: Option<String>,
    /// The trusted device.
    #[arg(long)]
    device: Option<String>,
    /// Access requests.
    #[arg(long = "access-request")]
    access_requests: Vec<String>,
}

impl From<IdentityArgs> for CertIdentity {
    fn from(args: IdentityArgs) -> Self {
        CertIdentity {
            user: args.user,
            groups: args.groups,
            roles: args.roles,
            mfa_device: args.mfa_device,
            device: args.device,
            access_requests: args.access_requests,
            ..Default::default()
        }
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    deadbolt_api::duration::parse(text).map_err(|error| error.to_string())
}

/// `PREFIX.crt` or `PREFIX.key`, keeping any dots already in the prefix.
fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut path = prefix.as_os_str().to_owned();
    path.push(suffix);
    PathBuf::from(path)
}

fn write(prefix: &Path, issued: &IssuedCert) -> std::io::Result<()> {
    write_atomically(
        &with_suffix(prefix, ".key"),
        issued.key_pem.as_bytes(),
        PRIVATE,
    )?;
    write_atomically(
        &with_suffix(prefix, ".crt"),
        issued.cert_pem.as_bytes(),
        PUBLIC,
    )
}

/// Loads the manifests in `dir` as the standalone operator does and refuses
/// an identity a lock in force targets.
fn refuse_if_locked(dir: &Path, identity: &CertIdentity) -> Result<(), String> {
    let store = ViewStore::default();
    let mut source = DirSource::new(
        dir,
        store.clone(),
        Readiness::new(),
        Arc::new(Metrics::new()),
        DirOptions::default(),
    );
    let report = source
        .load()
        .map_err(|error| format!("cannot read the manifests in {}: {error}", dir.display()))?;
    if !report.failed.is_empty() {
        return Err(format!(
            "{} manifest file(s) in {} do not load, so the locks are not known: {:?}",
            report.failed.len(),
            dir.display(),
            report.failed
        ));
    }
    FollowingReplica::new(store).read(|replica| {
        match replica.lock_against_credential(identity, jiff::Timestamp::now()) {
            Some(lock) => Err(format!(
                "{} (no certificate is issued while a lock is in force: Lock {:?})",
                lock.message(),
                lock.name
            )),
            None => Ok(()),
        }
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let store = DirCaStore::new(&cli.ca_dir);
    if let Kind::Init = cli.kind {
        return match ca::init(&store).await {
            Ok(_) => {
                println!("created a Deadbolt CA in {}", cli.ca_dir.display());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("deadbolt-ca: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let Some(out) = cli.out.clone() else {
        eprintln!("deadbolt-ca: --out PREFIX is required");
        return ExitCode::FAILURE;
    };
    let authority = match ca::load_existing(&store).await {
        Ok(authority) => authority,
        Err(error) => {
            eprintln!("deadbolt-ca: {error}");
            return ExitCode::FAILURE;
        }
    };
    let issued = match cli.kind {
        Kind::Init => unreachable!("handled above"),
        Kind::Proxy { server_id } => authority.issue_proxy_cert(&server_id, cli.valid_for),
        Kind::Serving { names } => authority.issue_serving_cert(&names, cli.valid_for),
        Kind::User {
            identity,
            manifests,
            no_lock_check: _,
        } => {
            let identity = CertIdentity::from(identity);
            if let Some(dir) = manifests
                && let Err(refusal) = refuse_if_locked(&dir, &identity)
            {
                eprintln!("deadbolt-ca: {refusal}");
                return ExitCode::FAILURE;
            }
            authority.issue_user_cert(&identity, cli.valid_for)
        }
    };
    match issued
        .map_err(|e| e.to_string())
        .and_then(|issued| write(&out, &issued).map_err(|e| e.to_string()))
    {
        Ok(()) => {
            println!(
                "wrote {} and {}",
                out.with_extension("crt").display(),
                out.with_extension("key").display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("deadbolt-ca: {error}");
            ExitCode::FAILURE
        }
    }
}

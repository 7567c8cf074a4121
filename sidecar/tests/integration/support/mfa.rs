//! An in-process MFA service on the test operator's CA and view, with
//! devices in memory, an injectable clock, and its audit events in memory.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use deadbolt_api::protocol::{ClusterConfig, MfaConfig, ViewObject};
use deadbolt_api::resources::{RequireSessionMfa, SecondFactor, Webauthn};
use deadbolt_operator::admission::FollowingReplica;
use deadbolt_operator::https::Bound;
use deadbolt_operator::mfa::{self, MemoryDevices, MfaService};
use deadbolt_operator::shutdown::{Shutdown, ShutdownTrigger};
use deadbolt_runtime::audit::{AuditBuffer, AuditSink};
use deadbolt_runtime::clock::ManualClock;
use deadbolt_runtime::tls::{self, ClientAuth};
use tokio::net::TcpListener;

use super::operator::Operator;

/// The relying party the test cluster's ClusterAuthPreference names.
pub const RP_ID: &str = "localhost";

/// A running MFA service.
pub struct MfaServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its clock: it stamps credentials with this time.
    pub clock: ManualClock,
    /// Its audit events.
    pub audit: AuditBuffer,
    _trigger: ShutdownTrigger,
}

impl MfaServer {
    /// Serves on a free port, issuing from `operator`'s CA and deciding from its view.
    pub async fn start(operator: &Operator) -> Self {
        let clock = ManualClock::new(jiff::Timestamp::now());
        let (sink, audit): (AuditSink, AuditBuffer) = AuditSink::memory();
        let service = MfaService::new(
            FollowingReplica::new(operator.store.clone()),
            operator.ca.clone(),
            Arc::new(MemoryDevices::default()),
            Arc::new(clock.clone()),
            sink,
        );
        let serving = operator
            .ca
            .issue_serving_cert(&["localhost".into()], Duration::from_secs(3600))
            .unwrap();
        let config = tls::server_config(
            serving.certified_key().unwrap(),
            ClientAuth::Optional(operator.roots()),
            mfa::ALPN,
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, shutdown) = Shutdown::new();
        tokio::spawn(mfa::serve(
            Bound::new(listener, config, shutdown),
            mfa::Endpoint {
                service,
                tokens: None,
            },
        ));
        Self {
            addr,
            clock,
            audit,
            _trigger: trigger,
        }
    }

    /// The service's URL.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }
}

/// Turns on WebAuthn for the test cluster (rpId `localhost`), with
/// cluster-wide per-session MFA as `cluster` says.
pub fn enable_mfa(operator: &Operator, cluster: RequireSessionMfa) {
    operator.store.upsert(ViewObject::Config(ClusterConfig {
        require_session_mfa: cluster,
        max_lock_staleness_ms: 30_000,
        mfa: MfaConfig {
            second_factor: SecondFactor::Webauthn,
            webauthn: Some(Webauthn {
                rp_id: RP_ID.into(),
                origins: vec![],
            }),
            ..MfaConfig::default()
        },
        ..Default::default()
    }));
}

//! The MFA service's decisions: WebAuthn registration and authentication
//! ceremonies (webauthn-rs, security-key flows), the lock and lock-out
//! checks before anything is issued, the signature counter, the session
//! credential, and the audit events. HTTP is [`super::http`]'s job.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use deadbolt_api::audit::{AuditEvent, AuditEventKind};
use deadbolt_api::credential::CertIdentity;
use deadbolt_api::engine::Identity;
use deadbolt_api::mfa::CREDENTIAL_TTL;
use deadbolt_api::mfa::service::{
    AuthenticateFinish, CEREMONY_TTL, Challenge, Device, Devices, LockInForce, RegisterBegin,
    RegisterFinish, SessionCredential, WhoAmI, check_device_name,
};
use deadbolt_api::protocol::MfaConfig;
use deadbolt_api::replica::ViewReplica;
use deadbolt_api::resources::SecondFactor;
use deadbolt_runtime::audit::AuditSink;
use deadbolt_runtime::clock::Clock;
use jiff::Timestamp;
use webauthn_rs::prelude::{
    Credential, PublicKeyCredential, RegisterPublicKeyCredential, SecurityKey,
    SecurityKeyAuthentication, SecurityKeyRegistration, Url, Uuid, Webauthn, WebauthnBuilder,
    WebauthnError,
};

use super::ceremony::Ceremonies;
use super::devices::{DeviceStore, DeviceUse, StoredDevice};
use super::lockout::{LockoutRule, LockoutStore, MemoryLockout, Standing};
use crate::admission::FollowingReplica;
use crate::ca::DeadboltCa;
use crate::failure::Failure;

/// The namespace WebAuthn user handles are derived in from user names
/// (stable, so a user's keys share one handle).
const USER_HANDLE_NAMESPACE: Uuid = Uuid::from_u128(0x8e1c_61a4_2b7d_5f0e_9a3c_4d2b_1f6e_7a90);

/// Who is calling: the identity its token or certificate carries.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The identity (from a token: user and groups; from a certificate: all of it).
    pub identity: CertIdentity,
    /// Where from.
    pub remote: Option<SocketAddr>,
}

struct Registration {
    name: String,
    state: SecurityKeyRegistration,
}

/// The MFA service.
pub struct MfaService {
    view: FollowingReplica,
    ca: Arc<DeadboltCa>,
    devices: Arc<dyn DeviceStore>,
    clock: Arc<dyn Clock>,
    audit: AuditSink,
    registrations: Ceremonies<Registration>,
    authentications: Ceremonies<SecurityKeyAuthentication>,
    lockout: Arc<dyn LockoutStore>,
}

impl std::fmt::Debug for MfaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaService").finish_non_exhaustive()
    }
}

impl MfaService {
    /// A service issuing from `ca`, deciding from `view`, keeping devices in `devices`.
    pub fn new(
        view: FollowingReplica,
        ca: Arc<DeadboltCa>,
        devices: Arc<dyn DeviceStore>,
        clock: Arc<dyn Clock>,
        audit: AuditSink,
    ) -> Self {
        Self {
            view,
            ca,
            devices,
            clock,
            audit,
            registrations: Ceremonies::new(CEREMONY_TTL),
            authentications: Ceremonies::new(CEREMONY_TTL),
            lockout: Arc::new(MemoryLockout::default()),
        }
    }

    /// Keeps lock-out standings in `lockout` rather than in this process's
    /// memory: where several replicas serve, they must share one count.
    pub fn with_lockout(mut self, lockout: Arc<dyn LockoutStore>) -> Self {
        self.lockout = lockout;
        self
    }

    /// Starts registering a security key for the caller. A user who already
    /// has a device must call with a fresh MFA credential from one of them: a
    /// stolen token alone cannot add the thief's key.
    pub async fn register_begin(
        &self,
        caller: &Caller,
        request: RegisterBegin,
    ) -> Result<Challenge, Failure> {
        let name = request.name.trim().to_string();
        check_device_name(&name).map_err(Failure::bad_request)?;
        let (config, _) = self.refuse_if_locked(caller, None)?;
        let webauthn = webauthn(&config)?;
        let user = &caller.identity.user;
        let devices = self.devices.list(user).await.map_err(unavailable)?;
        if devices.iter().any(|device| device.name == name) {
            return Err(Failure::bad_request(format!(
                "you already have an MFA device named {name:?}; pick another name"
            )));
        }
        if !devices.is_empty() {
            self.require_fresh_mfa(caller, "add another MFA device")?;
        }
        let exclude = devices
            .iter()
            .filter_map(|device| security_key(device).ok())
            .map(|key| key.cred_id().clone())
            .collect::<Vec<_>>();
        let handle = Uuid::new_v5(&USER_HANDLE_NAMESPACE, user.as_bytes());
        let (challenge, state) = webauthn
            .start_securitykey_registration(handle, user, user, Some(exclude), None, None)
            .map_err(|error| Failure::bad_request(format!("cannot start registration: {error}")))?;
        let ceremony =
            self.registrations
                .start(user, Registration { name, state }, self.clock.now());
        Ok(Challenge {
            ceremony,
            challenge: to_json(&challenge)?,
        })
    }

    /// Finishes registering: the device is stored under a new UUID.
    pub async fn register_finish(
        &self,
        caller: &Caller,
        request: RegisterFinish,
    ) -> Result<Device, Failure> {
        let user = &caller.identity.user;
        let now = self.clock.now();
        let registration = self
            .registrations
            .finish(&request.ceremony, user, now)
            .map_err(|error| Failure::bad_request(error.to_string()))?;
        let (config, _) = self.refuse_if_locked(caller, None)?;
        let webauthn = webauthn(&config)?;
        let credential: RegisterPublicKeyCredential = serde_json::from_value(request.credential)
            .map_err(|error| {
                Failure::bad_request(format!("the credential does not parse: {error}"))
            })?;
        let key = webauthn
            .finish_securitykey_registration(&credential, &registration.state)
            .map_err(|error| {
                Failure::bad_request(format!("the security key's registration failed: {error}"))
            })?;
        let uuid = Uuid::new_v4().to_string();
        let stored = StoredDevice {
            uuid: uuid.clone(),
            user: user.clone(),
            name: registration.name.clone(),
            credential: serde_json::to_string(&key).map_err(|error| {
                Failure::unavailable(format!("cannot store the credential: {error}"))
            })?,
            sign_count: Credential::from(key).counter,
            created: Some(now),
            last_used: None,
        };
        self.devices.create(stored).await.map_err(unavailable)?;
        let mut event = self.event(AuditEventKind::MfaDeviceAdd, caller, now);
        event.mfa_device = Some(uuid.clone());
        event.success = Some(true);
        event.reason = Some(format!("registered MFA device {:?}", registration.name));
        self.audit.emit(&event);
        tracing::info!(user = %user, device = %uuid, name = %registration.name, "MFA device registered");
        Ok(Device {
            uuid,
            name: registration.name,
            user: user.clone(),
            created: Some(now),
            last_used: None,
        })
    }

    /// Starts an MFA check against the caller's devices.
    pub async fn authenticate_begin(&self, caller: &Caller) -> Result<Challenge, Failure> {
        let (config, _) = self.refuse_if_locked(caller, None)?;
        let webauthn = webauthn(&config)?;
        let user = &caller.identity.user;
        self.refuse_if_locked_out(user).await?;
        let devices = self.devices.list(user).await.map_err(unavailable)?;
        let keys: Vec<SecurityKey> = devices
            .iter()
            .filter_map(|device| security_key(device).ok())
            .collect();
        if keys.is_empty() {
            return Err(Failure::bad_request(
                "you have no MFA device: register one with `kubectl deadbolt mfa add --name NAME`",
            ));
        }
        let (challenge, state) =
            webauthn
                .start_securitykey_authentication(&keys)
                .map_err(|error| {
                    Failure::bad_request(format!("cannot start the MFA check: {error}"))
                })?;
        let ceremony = self.authentications.start(user, state, self.clock.now());
        Ok(Challenge {
            ceremony,
            challenge: to_json(&challenge)?,
        })
    }

    /// Finishes an MFA check and issues a session credential for the
    /// caller's public key. Every failure counts towards the lock-out and is
    /// audited.
    pub async fn authenticate_finish(
        &self,
        caller: &Caller,
        request: AuthenticateFinish,
    ) -> Result<SessionCredential, Failure> {
        let user = caller.identity.user.clone();
        let standing = self.refuse_if_locked_out(&user).await?;
        match self.check_assertion(caller, &request).await {
            Ok(device) => {
                if standing.failures > 0
                    && let Err(error) = self.lockout.succeed(&user).await
                {
                    // The count stays: the user is locked out sooner, not later.
                    tracing::warn!(user = %user, %error, "cannot clear the failed MFA checks");
                }
                self.issue(caller, &request, device).await
            }
            Err(failure) => {
                let now = self.clock.now();
                let config = self.view.read(|replica| replica.config().mfa.clone());
                let rule = lockout_rule(&config);
                let locked = match self.lockout.fail(&user, now, rule).await {
                    Ok(locked) => locked,
                    Err(error) => {
                        tracing::error!(user = %user, %error, "cannot count a failed MFA check");
                        None
                    }
                };
                let mut event = self.event(AuditEventKind::MfaAuth, caller, now);
                event.success = Some(false);
                event.reason = Some(match locked {
                    Some(until) => format!(
                        "{}; after {} failed MFA checks the user gets no MFA credential until {until}",
                        failure.message, config.max_failed_attempts
                    ),
                    None => failure.message.clone(),
                });
                self.audit.emit(&event);
                tracing::warn!(user = %user, error = %failure.message, "MFA check failed");
                Err(failure)
            }
        }
    }

    /// Verifies the assertion against the ceremony and the device's counter;
    /// returns the device that passed.
    async fn check_assertion(
        &self,
        caller: &Caller,
        request: &AuthenticateFinish,
    ) -> Result<StoredDevice, Failure> {
        let user = &caller.identity.user;
        let now = self.clock.now();
        let state = self
            .authentications
            .finish(&request.ceremony, user, now)
            .map_err(|error| Failure::forbidden(error.to_string()))?;
        let config = self.view.read(|replica| replica.config().mfa.clone());
        let webauthn = webauthn(&config)?;
        let assertion: PublicKeyCredential = serde_json::from_value(request.assertion.clone())
            .map_err(|error| {
                Failure::bad_request(format!("the assertion does not parse: {error}"))
            })?;
        let result = webauthn
            .finish_securitykey_authentication(&assertion, &state)
            .map_err(|error| match error {
                WebauthnError::CredentialPossibleCompromise => Failure::forbidden(
                    "the security key's signature counter did not increase: the key may have \
                     been cloned; the MFA check is refused",
                ),
                other => Failure::forbidden(format!("the MFA check failed: {other}")),
            })?;
        let devices = self.devices.list(user).await.map_err(unavailable)?;
        let device = devices
            .into_iter()
            .find(|device| security_key(device).is_ok_and(|key| key.cred_id() == result.cred_id()))
            .ok_or_else(|| Failure::forbidden("the MFA device was removed during the check"))?;
        // The counter is checked against what the ceremony began with; a
        // parallel ceremony may have seen a higher one since.
        let counter = result.counter();
        if (counter > 0 || device.sign_count > 0) && counter <= device.sign_count {
            return Err(Failure::forbidden(
                "the security key's signature counter did not increase: the key may have been \
                 cloned; the MFA check is refused",
            ));
        }
        self.devices
            .record_use(DeviceUse {
                uuid: device.uuid.clone(),
                sign_count: counter,
                at: now,
            })
            .await
            .map_err(unavailable)?;
        Ok(device)
    }

    async fn issue(
        &self,
        caller: &Caller,
        request: &AuthenticateFinish,
        device: StoredDevice,
    ) -> Result<SessionCredential, Failure> {
        let now = self.clock.now();
        // A lock on the device itself refuses too.
        let (_, roles) = self.refuse_if_locked(caller, Some(&device.uuid))?;
        if let Some(target) = &request.target
            && (target.is_empty() || target.len() > 253 || target.chars().any(char::is_whitespace))
        {
            return Err(Failure::bad_request("--target must be a proxy's server id"));
        }
        let identity = CertIdentity {
            roles,
            mfa_device: Some(device.uuid.clone()),
            mfa_verified_at: Some(now.as_second()),
            target: request.target.clone(),
            ..caller.identity.clone()
        };
        let certificate_pem = self
            .ca
            .issue_user_cert_for_key(&identity, &request.public_key_pem, now, CREDENTIAL_TTL)
            .map_err(|error| Failure::bad_request(error.to_string()))?;
        let expires_at = now
            .checked_add(jiff::SignedDuration::try_from(CREDENTIAL_TTL).unwrap_or_default())
            .unwrap_or(now);
        let mut event = self.event(AuditEventKind::MfaAuth, caller, now);
        event.mfa_device = Some(device.uuid.clone());
        event.success = Some(true);
        event.server_id = request.target.clone();
        event.reason = Some(format!(
            "MFA check passed with device {:?}; session credential until {expires_at}",
            device.name
        ));
        self.audit.emit(&event);
        tracing::info!(user = %identity.user, device = %device.uuid, "MFA session credential issued");
        Ok(SessionCredential {
            certificate_pem,
            ca_pem: self.ca.cert_pem().to_string(),
            expires_at,
            mfa_device: device.uuid,
        })
    }

    /// The caller's devices.
    pub async fn devices(&self, caller: &Caller) -> Result<Devices, Failure> {
        let devices = self
            .devices
            .list(&caller.identity.user)
            .await
            .map_err(unavailable)?;
        Ok(Devices {
            devices: devices.into_iter().map(device).collect(),
        })
    }

    /// Removes one of the caller's devices; needs a fresh MFA credential.
    pub async fn remove_device(&self, caller: &Caller, uuid: &str) -> Result<(), Failure> {
        let user = &caller.identity.user;
        let devices = self.devices.list(user).await.map_err(unavailable)?;
        let Some(found) = devices.iter().find(|device| device.uuid == uuid) else {
            return Err(Failure::not_found(format!(
                "you have no MFA device {uuid:?}"
            )));
        };
        self.require_fresh_mfa(caller, "remove an MFA device")?;
        self.devices.delete(uuid).await.map_err(unavailable)?;
        let now = self.clock.now();
        let mut event = self.event(AuditEventKind::MfaDeviceDelete, caller, now);
        event.mfa_device = Some(uuid.to_string());
        event.success = Some(true);
        event.reason = Some(format!("removed MFA device {:?}", found.name));
        self.audit.emit(&event);
        Ok(())
    }

    /// Who the caller is, its roles, the locks in force against it and its MFA standing.
    pub async fn whoami(&self, caller: &Caller) -> Result<WhoAmI, Failure> {
        let now = self.clock.now();
        let principal = &caller.identity;
        let (roles, locks, cluster_requires_mfa) = self.view.read(|replica| {
            let roles = replica.roles_for(&principal.user, &principal.groups, &principal.roles);
            let identity = principal.to_identity(roles.clone(), None);
            (
                roles,
                locks_against(replica, &identity, now),
                replica.config().require_session_mfa.is_required(),
            )
        });
        let devices = self
            .devices
            .list(&principal.user)
            .await
            .map_err(unavailable)?;
        let rule = self
            .view
            .read(|replica| lockout_rule(&replica.config().mfa));
        let standing = self
            .lockout
            .standing(&principal.user, now, rule)
            .await
            .map_err(unavailable)?;
        Ok(WhoAmI {
            user: principal.user.clone(),
            groups: principal.groups.clone(),
            roles,
            locks,
            cluster_requires_mfa,
            mfa_devices: devices.len(),
            failed_mfa_attempts: standing.failures,
            mfa_locked_until: standing.locked_until,
        })
    }

    /// Refuses a locked identity (Teleport refuses certificate requests under
    /// a lock): the user, its roles, its credential's devices, and `mfa_device`.
    /// Returns the MFA settings and the caller's roles.
    fn refuse_if_locked(
        &self,
        caller: &Caller,
        mfa_device: Option<&str>,
    ) -> Result<(MfaConfig, Vec<String>), Failure> {
        let now = self.clock.now();
        let principal = &caller.identity;
        let mut credential = principal.clone();
        if let Some(device) = mfa_device {
            credential.mfa_device = Some(device.to_string());
        }
        self.view.read(|replica| {
            if let Some(lock) = replica.lock_against_credential(&credential, now) {
                return Err(Failure::forbidden(format!(
                    "{} (no credential is issued while a lock is in force)",
                    lock.message()
                )));
            }
            let roles = replica.roles_for(&principal.user, &principal.groups, &principal.roles);
            Ok((replica.config().mfa.clone(), roles))
        })
    }

    /// Refuses a user locked out by failed checks (and, failing closed, when
    /// the standing cannot be read); returns the standing otherwise.
    async fn refuse_if_locked_out(&self, user: &str) -> Result<Standing, Failure> {
        let rule = self
            .view
            .read(|replica| lockout_rule(&replica.config().mfa));
        let standing = self
            .lockout
            .standing(user, self.clock.now(), rule)
            .await
            .map_err(unavailable)?;
        match standing.locked_until {
            Some(until) => Err(Failure::too_many_requests(format!(
                "too many failed MFA checks: no MFA credential is issued to you until {until}"
            ))),
            None => Ok(standing),
        }
    }

    fn require_fresh_mfa(&self, caller: &Caller, to: &str) -> Result<(), Failure> {
        deadbolt_api::mfa::check_credential(&caller.identity, "", true, self.clock.now())
            .map_err(|_| {
                Failure::forbidden(format!(
                    "to {to}, call with a fresh MFA credential from a device you already have \
                     (`kubectl deadbolt login --mfa --out PREFIX`, then --cert PREFIX.crt --key PREFIX.key)"
                ))
            })
    }

    fn event(&self, kind: AuditEventKind, caller: &Caller, now: Timestamp) -> AuditEvent {
        let mut event = AuditEvent::new(kind, Uuid::new_v4().to_string(), now);
        event.user = Some(caller.identity.user.clone());
        event.addr_remote = caller.remote.map(|addr| addr.to_string());
        event
    }
}

/// The ClusterAuthPreference's `mfaLockout`.
fn lockout_rule(config: &MfaConfig) -> LockoutRule {
    LockoutRule {
        max_failures: config.max_failed_attempts,
        lasts: Duration::from_millis(config.lockout_ms),
    }
}

/// The webauthn-rs relying party from the ClusterAuthPreference.
fn webauthn(config: &MfaConfig) -> Result<Webauthn, Failure> {
    let disabled = || {
        Failure::forbidden(
            "MFA is not enabled in this cluster: the ClusterAuthPreference needs \
             secondFactor webauthn (or on, optional) and webauthn.rpId",
        )
    };
    if !matches!(
        config.second_factor,
        SecondFactor::Webauthn | SecondFactor::On | SecondFactor::Optional
    ) {
        return Err(disabled());
    }
    let settings = config.webauthn.as_ref().ok_or_else(disabled)?;
    let origins: Vec<Url> = if settings.origins.is_empty() {
        vec![Url::parse(&format!("https://{}", settings.rp_id)).map_err(|_| disabled())?]
    } else {
        settings
            .origins
            .iter()
            .map(|origin| Url::parse(origin))
            .collect::<Result<_, _>>()
            .map_err(|error| Failure::unavailable(format!("webauthn.origins: {error}")))?
    };
    let mut builder = WebauthnBuilder::new(&settings.rp_id, &origins[0])
        .map_err(|error| Failure::unavailable(format!("webauthn settings: {error}")))?
        .rp_name("Deadbolt")
        .timeout(CEREMONY_TTL);
    for origin in &origins[1..] {
        builder = builder.append_allowed_origin(origin);
    }
    builder
        .build()
        .map_err(|error| Failure::unavailable(format!("webauthn settings: {error}")))
}

/// A stored device's key with the highest counter seen, so a replayed
/// counter fails in webauthn-rs too.
fn security_key(device: &StoredDevice) -> Result<SecurityKey, serde_json::Error> {
    let key: SecurityKey = serde_json::from_str(&device.credential)?;
    let mut credential = Credential::from(key);
    credential.counter = credential.counter.max(device.sign_count);
    Ok(SecurityKey::from(credential))
}

fn device(stored: StoredDevice) -> Device {
    Device {
        uuid: stored.uuid,
        name: stored.name,
        user: stored.user,
        created: stored.created,
        last_used: stored.last_used,
    }
}

/// Every lock in force against `identity`, oldest first.
fn locks_against(replica: &ViewReplica, identity: &Identity, now: Timestamp) -> Vec<LockInForce> {
    let targets = identity.targets(None);
    let mut locks: Vec<_> = replica
        .locks()
        .iter()
        .filter(|lock| lock.is_in_force(now) && targets.iter().any(|target| lock.matches(target)))
        .collect();
    locks.sort_by_key(|lock| lock.created);
    locks
        .into_iter()
        .map(|lock| LockInForce {
            name: lock.name.clone(),
            message: lock.message(),
            expires_at: lock.expires_at,
        })
        .collect()
}

fn to_json(value: &impl serde::Serialize) -> Result<serde_json::Value, Failure> {
    serde_json::to_value(value)
        .map_err(|error| Failure::unavailable(format!("cannot encode the challenge: {error}")))
}

fn unavailable(error: super::store::StoreError) -> Failure {
    Failure::unavailable(error.to_string())
}

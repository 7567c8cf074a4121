//! Where registered MFA devices live: `MfaDevice` objects in Kubernetes (the
//! name is the device UUID that `target.mfaDevice` locks), or memory for
//! standalone mode and tests. The spec is immutable (a CEL rule), so the
//! signature counter and the last use go to the status.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use deadbolt_api::resources::{MfaDevice, MfaDeviceSpec, MfaDeviceStatus};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};

use super::store::{StoreError, StoreFuture};

/// A registered device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDevice {
    /// The device UUID.
    pub uuid: String,
    /// Its owner.
    pub user: String,
    /// The name the owner gave it.
    pub name: String,
    /// The WebAuthn credential (webauthn-rs `SecurityKey`, JSON).
    pub credential: String,
    /// The highest signature counter seen.
    pub sign_count: u32,
    /// When it was registered.
    pub created: Option<Timestamp>,
    /// When it last passed a check.
    pub last_used: Option<Timestamp>,
}

/// Reads and writes registered devices.
pub trait DeviceStore: Send + Sync + 'static {
    /// The devices of `user`, oldest first.
    fn list<'a>(&'a self, user: &'a str) -> StoreFuture<'a, Vec<StoredDevice>>;
    /// Registers a device.
    fn create(&self, device: StoredDevice) -> StoreFuture<'_, ()>;
    /// Removes a device; `false` when there was none.
    fn delete<'a>(&'a self, uuid: &'a str) -> StoreFuture<'a, bool>;
    /// Records a passed check.
    fn record_use(&self, used: DeviceUse) -> StoreFuture<'_, ()>;
}

/// A passed check with a device: its new signature counter, and when.
#[derive(Debug, Clone)]
pub struct DeviceUse {
    /// The device's UUID.
    pub uuid: String,
    /// The counter the authenticator signed.
    pub sign_count: u32,
    /// When the check passed.
    pub at: Timestamp,
}

/// Devices kept in memory (standalone mode, tests); gone at restart.
#[derive(Default)]
pub struct MemoryDevices {
    devices: Mutex<BTreeMap<String, StoredDevice>>,
}

impl MemoryDevices {
    fn devices(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, StoredDevice>> {
        self.devices.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl DeviceStore for MemoryDevices {
    fn list<'a>(&'a self, user: &'a str) -> StoreFuture<'a, Vec<StoredDevice>> {
        let devices = oldest_first(self.devices().values().cloned(), user);
        Box::pin(async move { Ok(devices) })
    }

    fn create(&self, device: StoredDevice) -> StoreFuture<'_, ()> {
        self.devices().insert(device.uuid.clone(), device);
        Box::pin(async { Ok(()) })
    }

    fn delete<'a>(&'a self, uuid: &'a str) -> StoreFuture<'a, bool> {
        let removed = self.devices().remove(uuid).is_some();
        Box::pin(async move { Ok(removed) })
    }

    fn record_use(&self, used: DeviceUse) -> StoreFuture<'_, ()> {
        if let Some(device) = self.devices().get_mut(&used.uuid) {
            device.sign_count = device.sign_count.max(used.sign_count);
            device.last_used = Some(used.at);
        }
        Box::pin(async { Ok(()) })
    }
}

/// Devices as cluster-scoped `MfaDevice` objects.
pub struct KubeDevices {
    api: Api<MfaDevice>,
}

impl KubeDevices {
    /// Devices in the cluster `client` talks to.
    pub fn new(client: Client) -> Self {
        Self {
            api: Api::all(client),
        }
    }
}

/// The devices of `user` among `devices`, oldest first.
fn oldest_first(devices: impl Iterator<Item = StoredDevice>, user: &str) -> Vec<StoredDevice> {
    let mut devices: Vec<StoredDevice> = devices.filter(|device| device.user == user).collect();
    devices.sort_by_key(|device| device.created);
    devices
}

fn stored(device: MfaDevice) -> Option<StoredDevice> {
    let uuid = device.metadata.name.clone()?;
    let status = device.status.unwrap_or_default();
    Some(StoredDevice {
        uuid,
        user: device.spec.user,
        name: device.spec.name,
        credential: device.spec.credential,
        sign_count: status.sign_count.unwrap_or_default(),
        created: device.metadata.creation_timestamp.map(|time| time.0),
        last_used: status.last_used.map(|time| time.0),
    })
}

fn failed(action: &'static str) -> impl Fn(kube::Error) -> StoreError {
    move |error| StoreError(format!("cannot {action}: {error}"))
}

impl DeviceStore for KubeDevices {
    fn list<'a>(&'a self, user: &'a str) -> StoreFuture<'a, Vec<StoredDevice>> {
        Box::pin(async move {
            // Few devices exist and user names may hold characters labels
            // cannot, so the filter is here rather than in a selector.
            let list = self
                .api
                .list(&ListParams::default())
                .await
                .map_err(failed("list MfaDevices"))?;
            Ok(oldest_first(
                list.items.into_iter().filter_map(stored),
                user,
            ))
        })
    }

    fn create(&self, device: StoredDevice) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let object = MfaDevice::new(
                &device.uuid,
                MfaDeviceSpec {
                    user: device.user,
                    name: device.name,
                    credential: device.credential,
                },
            );
            self.api
                .create(&PostParams::default(), &object)
                .await
                .map_err(failed("create the MfaDevice"))?;
            Ok(())
        })
    }

    fn delete<'a>(&'a self, uuid: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            match self.api.delete(uuid, &DeleteParams::default()).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
                Err(error) => Err(failed("delete the MfaDevice")(error)),
            }
        })
    }

    fn record_use(&self, used: DeviceUse) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let status = MfaDeviceStatus {
                last_used: Some(Time(used.at)),
                sign_count: Some(used.sign_count),
                ..Default::default()
            };
            let patch = serde_json::json!({ "status": status });
            self.api
                .patch_status(&used.uuid, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(failed("record the MfaDevice's use"))?;
            Ok(())
        })
    }
}

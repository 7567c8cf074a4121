//! How the proxy proves who it is to the API server: its own ServiceAccount
//! or kubeconfig credentials, read through kube's `Config` (client
//! certificate, token, token file, exec plugin), and the kubeconfig itself.

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Request, Response};
use http_body_util::Empty;
use kube::client::ConfigExt;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use super::{Upstream, UpstreamError};
use crate::kube::body::BoxError;

/// Produces the proxy's `Authorization` header: kube's auth layer over a
/// service that answers with the header the layer set.
pub(super) type AuthorizationSource =
    BoxCloneSyncService<Request<Empty<Bytes>>, Response<Empty<Bytes>>, BoxError>;

/// The `Authorization` source of `config`'s credentials (none for a client certificate).
pub(super) fn authorization_source(config: &kube::Config) -> anyhow::Result<AuthorizationSource> {
    let auth_layer = config
        .auth_layer()
        .map_err(|error| anyhow::anyhow!("upstream credentials: {error}"))?;
    Ok(BoxCloneSyncService::new(
        tower::ServiceBuilder::new()
            .option_layer(auth_layer)
            .service_fn(|request: Request<Empty<Bytes>>| async move {
                let mut answer = Response::new(Empty::new());
                if let Some(value) = request.headers().get(header::AUTHORIZATION) {
                    answer
                        .headers_mut()
                        .insert(header::AUTHORIZATION, value.clone());
                }
                Ok::<_, BoxError>(answer)
            }),
    ))
}

impl Upstream {
    /// Sets the proxy's `Authorization` (none with certificate credentials).
    pub(super) async fn authorize(&self, headers: &mut HeaderMap) -> Result<(), UpstreamError> {
        let probe = self
            .authorization
            .clone()
            .oneshot(Request::new(Empty::new()))
            .await
            .map_err(|error| UpstreamError::Credentials(error.to_string()))?;
        headers.remove(header::AUTHORIZATION);
        if let Some(value) = probe.headers().get(header::AUTHORIZATION) {
            let mut value = value.clone();
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }
        Ok(())
    }
}

/// The upstream's `kube::Config`: from `kubeconfig` (and `context`) when
/// given, else inferred (`KUBECONFIG`, `~/.kube/config`, in-cluster).
pub async fn load_config(
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
) -> anyhow::Result<kube::Config> {
    use anyhow::Context as _;
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read --upstream-kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .with_context(|| format!("unusable --upstream-kubeconfig {}", path.display()))
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .context("cannot load the kubeconfig for --upstream-context"),
        None => kube::Config::infer()
            .await
            .context("no upstream API server: give --upstream-kubeconfig, or run in a cluster"),
    }
}

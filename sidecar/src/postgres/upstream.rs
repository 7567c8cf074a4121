//! The proxy's own connection to the real PostgreSQL server: TCP, optional
//! TLS (verifying the server, optionally with a client certificate), the
//! startup packet, and authentication by trust, password, MD5 or
//! SCRAM-SHA-256. What the server says after authenticating (parameters,
//! backend key, ReadyForQuery) is handed back to be relayed to the client.

use bytes::{Bytes, BytesMut};
use pgwire::messages::response::ErrorResponse;
use pgwire::messages::startup::{
    Authentication, Password, PasswordMessageFamily, SASLInitialResponse, SASLResponse, Startup,
};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use super::wire::{self, WireError};
use crate::database::upstream::{Unreachable, UpstreamConfig};
use crate::io::ByteStream;

/// The longest message the upstream may send during authentication.
const MAX_AUTH_MESSAGE: usize = 1 << 20;

/// An authenticated upstream connection.
pub struct Upstream {
    /// The connection, positioned after the first ReadyForQuery.
    pub stream: Box<dyn ByteStream>,
    /// Everything after AuthenticationOk up to and including ReadyForQuery, to relay as is.
    pub greeting: BytesMut,
}

/// Why the upstream session could not be set up. `ServerError` carries the
/// server's own message, which the client sees.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// TCP or TLS failed.
    #[error(transparent)]
    Unreachable(#[from] Unreachable),
    /// The server refused (e.g. wrong password, unknown database).
    #[error("{0}")]
    ServerError(String),
    /// The server asked for something the proxy cannot do.
    #[error("the database asked for {0}, which the proxy is not configured for")]
    Unsupported(String),
    /// Malformed exchange.
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// The PostgreSQL side of [`UpstreamConfig`]: connecting with its TLS dance
/// and logging in.
impl UpstreamConfig {
    /// Opens a fresh connection (TCP + optional TLS), not yet started.
    pub async fn connect(&self) -> Result<Box<dyn ByteStream>, UpstreamError> {
        let mut tcp = self.connect_tcp().await?;
        let Some(tls) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        tcp.write_all(&ssl_request())
            .await
            .map_err(|error| self.unreachable(error))?;
        let answer = tcp
            .read_u8()
            .await
            .map_err(|error| self.unreachable(error))?;
        if answer != b'S' {
            return Err(self.unreachable("the server does not accept TLS").into());
        }
        let stream = TlsConnector::from(tls.config.clone())
            .connect(tls.server_name.clone(), tcp)
            .await
            .map_err(|error| self.unreachable(format_args!("TLS: {error}")))?;
        Ok(Box::new(stream))
    }

    /// Connects and logs in as `startup`'s user.
    pub async fn open(&self, startup: &Startup) -> Result<Upstream, UpstreamError> {
        let mut stream = self.connect().await?;
        stream
            .write_all(&wire::encode(startup))
            .await
            .map_err(WireError::Io)?;
        let user = startup
            .parameters
            .get("user")
            .map(String::as_str)
            .unwrap_or_default();
        self.authenticate(&mut stream, user).await?;
        let greeting = read_greeting(&mut stream).await?;
        Ok(Upstream { stream, greeting })
    }

    async fn authenticate(
        &self,
        stream: &mut Box<dyn ByteStream>,
        user: &str,
    ) -> Result<(), UpstreamError> {
        let mut scram: Option<ScramSha256> = None;
        loop {
            let message = wire::read_message(stream, MAX_AUTH_MESSAGE).await?;
            match message[0] {
                b'E' => return Err(server_error(message)),
                b'R' => {}
                other => return Err(WireError::Unexpected(other as char).into()),
            }
            let reply = match wire::decode::<Authentication>(message)? {
                Authentication::Ok => return Ok(()),
                Authentication::CleartextPassword => {
                    let password = self.password(user, "password authentication")?;
                    wire::encode(&PasswordMessageFamily::Password(Password::new(
                        password.to_string(),
                    )))
                }
                Authentication::MD5Password(salt) => {
                    let password = self.password(user, "md5 authentication")?;
                    let salt: [u8; 4] = salt
                        .try_into()
                        .map_err(|_| WireError::Malformed("MD5 salt is not 4 bytes".into()))?;
                    let hashed = md5_hash(user.as_bytes(), password.as_bytes(), salt);
                    wire::encode(&PasswordMessageFamily::Password(Password::new(hashed)))
                }
                Authentication::SASL(mechanisms) => {
                    if !mechanisms.iter().any(|m| m == SCRAM_SHA_256) {
                        return Err(UpstreamError::Unsupported(format!("SASL {mechanisms:?}")));
                    }
                    let password = self.password(user, "SCRAM-SHA-256 authentication")?;
                    let state =
                        ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
                    let initial = SASLInitialResponse::new(
                        SCRAM_SHA_256.to_string(),
                        Some(Bytes::copy_from_slice(state.message())),
                    );
                    scram = Some(state);
                    wire::encode(&PasswordMessageFamily::SASLInitialResponse(initial))
                }
                Authentication::SASLContinue(data) => {
                    let state = scram
                        .as_mut()
                        .ok_or_else(|| WireError::Malformed("SASL continue before SASL".into()))?;
                    state
                        .update(&data)
                        .map_err(|error| UpstreamError::ServerError(format!("SCRAM: {error}")))?;
                    let response = SASLResponse::new(Bytes::copy_from_slice(state.message()));
                    wire::encode(&PasswordMessageFamily::SASLResponse(response))
                }
                Authentication::SASLFinal(data) => {
                    let mut state = scram
                        .take()
                        .ok_or_else(|| WireError::Malformed("SASL final before SASL".into()))?;
                    state.finish(&data).map_err(|error| {
                        UpstreamError::ServerError(format!(
                            "SCRAM: the server's proof is wrong: {error}"
                        ))
                    })?;
                    continue;
                }
                other => return Err(UpstreamError::Unsupported(format!("{other:?}"))),
            };
            stream.write_all(&reply).await.map_err(WireError::Io)?;
        }
    }

    fn password(&self, user: &str, method: &str) -> Result<&str, UpstreamError> {
        self.passwords.for_user(user).ok_or_else(|| {
            UpstreamError::Unsupported(format!(
                "{method} for user {user:?} (no password configured)"
            ))
        })
    }
}

/// Reads ParameterStatus, BackendKeyData, notices and NegotiateProtocolVersion
/// up to and including the first ReadyForQuery.
async fn read_greeting(stream: &mut Box<dyn ByteStream>) -> Result<BytesMut, UpstreamError> {
    let mut greeting = BytesMut::new();
    loop {
        let message = wire::read_message(stream, MAX_AUTH_MESSAGE).await?;
        match message[0] {
            b'E' => return Err(server_error(message)),
            b'Z' => {
                greeting.extend_from_slice(&message);
                return Ok(greeting);
            }
            b'S' | b'K' | b'N' | b'v' => greeting.extend_from_slice(&message),
            other => return Err(WireError::Unexpected(other as char).into()),
        }
    }
}

fn server_error(message: BytesMut) -> UpstreamError {
    match wire::decode::<ErrorResponse>(message) {
        Ok(error) => {
            let text = error
                .fields
                .iter()
                .find(|(code, _)| *code == b'M')
                .map(|(_, text)| text.clone())
                .unwrap_or_else(|| "the database refused the connection".into());
            UpstreamError::ServerError(text)
        }
        Err(error) => error.into(),
    }
}

fn ssl_request() -> BytesMut {
    wire::encode(&pgwire::messages::startup::SslRequest::new())
}

/// Forwards a client's CancelRequest to the upstream on a fresh connection, as PostgreSQL expects.
pub async fn forward_cancel(config: &UpstreamConfig, packet: &[u8]) -> Result<(), UpstreamError> {
    let mut stream = config.connect().await?;
    stream.write_all(packet).await.map_err(WireError::Io)?;
    let _ = stream.shutdown().await;
    Ok(())
}

//! What the database proxies share about moving bytes: one stream type for
//! TLS, plain TCP and tests alike, and how a write races a cut.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::gate::{Ending, LiveSession};

/// A client or server connection, encrypted or not; boxed so one relay serves both.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for T {}

/// How long a cut waits for the unit in flight to finish, or for a slow peer
/// to take bytes already being written, before the session is simply dropped.
pub const CUT_GRACE: Duration = Duration::from_secs(2);

/// Writes `data`, unless the session is cut while the peer is not reading:
/// then the write gets [`CUT_GRACE`] to finish before the session is dropped.
/// `Ok` after a cut means the write went through and the relay sees the cut next.
pub async fn write_or_cut<W: AsyncWrite + Unpin + ?Sized>(
    destination: &mut W,
    data: &[u8],
    session: &mut LiveSession,
) -> Result<(), Ending> {
    if data.is_empty() {
        return Ok(());
    }
    let write = destination.write_all(data);
    tokio::pin!(write);
    tokio::select! {
        biased;
        written = &mut write => written.map_err(|e| Ending::Failed(e.to_string())),
        denial = session.cut() => match tokio::time::timeout(CUT_GRACE, write).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Ending::Cut(denial)),
        },
    }
}

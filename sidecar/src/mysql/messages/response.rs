//! The server packets that answer a command, as far as the relay follows
//! them: the first byte that tells them apart, the status flags of an `OK`
//! (`mysql_common`'s `OkPacket` through [`OkPacketDeserializer`], in its
//! three kinds: a plain `OK`, the `OK` that ends rows with
//! `CLIENT_DEPRECATE_EOF`, and the old `EOF`), the column count that opens
//! a result set, and the counts in a `COM_STMT_PREPARE_OK` (`mysql_common`'s
//! [`StmtPacket`]). Anything unreadable reads as "nothing follows".

use mysql_common::constants::{CapabilityFlags, StatusFlags};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{
    CommonOkPacket, OkPacketDeserializer, OkPacketKind, OldEofPacket, ResultSetTerminator,
    StmtPacket,
};

use super::decode;

/// The first byte of an `OK` packet (and of a `COM_STMT_PREPARE_OK`).
pub const OK: u8 = 0x00;
/// The first byte of a `LOCAL INFILE` request.
pub const LOCAL_INFILE: u8 = 0xfb;
/// The first byte of an `EOF` packet, and of the `OK` that replaces it.
pub const EOF: u8 = 0xfe;
/// The first byte of an `ERR` packet.
pub const ERR: u8 = 0xff;

fn status<T: OkPacketKind>(payload: &[u8], capabilities: CapabilityFlags) -> Option<StatusFlags> {
    decode::<OkPacketDeserializer<'_, T>>(payload, capabilities)
        .ok()
        .map(|ok| ok.into_inner().status_flags())
}

/// The status flags of an `OK` packet.
pub fn ok_status(payload: &[u8], capabilities: CapabilityFlags) -> Option<StatusFlags> {
    status::<CommonOkPacket>(payload, capabilities)
}

/// The status flags of an `EOF` packet; none when it cannot be read.
pub fn eof_status(payload: &[u8]) -> StatusFlags {
    status::<OldEofPacket>(payload, CapabilityFlags::empty()).unwrap_or(StatusFlags::empty())
}

/// The status flags of the packet that ends rows: with
/// `CLIENT_DEPRECATE_EOF` an `OK` with the `EOF` header, otherwise an `EOF`.
pub fn terminator_status(payload: &[u8], capabilities: CapabilityFlags) -> Option<StatusFlags> {
    if capabilities.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF) {
        status::<ResultSetTerminator>(payload, capabilities)
    } else {
        Some(eof_status(payload))
    }
}

/// The column count that starts a result set.
pub fn column_count(payload: &[u8]) -> Option<u64> {
    ParseBuf(payload).checked_eat_lenenc_int()
}

/// The columns and parameters a `COM_STMT_PREPARE_OK` announces.
pub fn prepare_counts(payload: &[u8]) -> Option<(u64, u64)> {
    let prepared: StmtPacket = decode(payload, ()).ok()?;
    Some((prepared.num_columns().into(), prepared.num_params().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_read_from_each_kind_of_ok() {
        let more = StatusFlags::SERVER_MORE_RESULTS_EXISTS;
        let none = CapabilityFlags::empty();
        assert_eq!(ok_status(&[OK, 1, 0, 0x08, 0, 0, 0], none), Some(more));
        // Session tracking adds an info string and the changes.
        let tracked = CapabilityFlags::CLIENT_SESSION_TRACK;
        let changed = [OK, 0, 0, 0x08, 0x40, 0, 0, 0, 5, 0, 3, 1, b'x', 0];
        assert_eq!(
            ok_status(&changed, tracked),
            Some(more | StatusFlags::SERVER_SESSION_STATE_CHANGED)
        );
        assert_eq!(ok_status(&[OK, 0, 0, 0x08], none), None, "truncated");
        assert_eq!(ok_status(&[EOF, 0, 0, 0x08, 0, 0, 0], none), None);

        let deprecate_eof = CapabilityFlags::CLIENT_DEPRECATE_EOF;
        let terminator = [EOF, 0, 0, 0x08, 0, 0, 0];
        assert_eq!(terminator_status(&terminator, deprecate_eof), Some(more));
        assert_eq!(terminator_status(&[EOF, 0, 0, 0x08, 0], none), Some(more));
        assert_eq!(
            eof_status(&[EOF, 1, 0, 0x40, 0]),
            StatusFlags::SERVER_STATUS_CURSOR_EXISTS
        );
        assert_eq!(eof_status(&[EOF, 1]), StatusFlags::empty());
    }

    #[test]
    fn prepare_ok_and_column_counts() {
        let prepared = [OK, 1, 0, 0, 0, 2, 0, 3, 0, 0, 0, 0];
        assert_eq!(prepare_counts(&prepared), Some((2, 3)));
        assert_eq!(prepare_counts(&prepared[..9]), None);
        assert_eq!(prepare_counts(&[ERR; 12]), None);
        assert_eq!(column_count(&[3]), Some(3));
        assert_eq!(column_count(&[0xfc, 0x2c, 0x01]), Some(300));
        assert_eq!(column_count(&[0xfc, 0x2c]), None);
    }
}

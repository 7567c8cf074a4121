//! The byte that opens a client's command (`COM_QUERY`, `COM_QUIT`, ...), as
//! `mysql_common`'s [`Command`]. `mysql_common` is a client library: it
//! writes commands but never reads one, so it has no byte-to-command
//! conversion; [`command`] is that, checked against the enum's own values.

pub use mysql_common::constants::Command;

/// Every command from 0 up, at its own byte.
const BY_BYTE: [Command; 33] = [
    Command::COM_SLEEP,
    Command::COM_QUIT,
    Command::COM_INIT_DB,
    Command::COM_QUERY,
    Command::COM_FIELD_LIST,
    Command::COM_CREATE_DB,
    Command::COM_DROP_DB,
    Command::COM_REFRESH,
    Command::COM_DEPRECATED_1,
    Command::COM_STATISTICS,
    Command::COM_PROCESS_INFO,
    Command::COM_CONNECT,
    Command::COM_PROCESS_KILL,
    Command::COM_DEBUG,
    Command::COM_PING,
    Command::COM_TIME,
    Command::COM_DELAYED_INSERT,
    Command::COM_CHANGE_USER,
    Command::COM_BINLOG_DUMP,
    Command::COM_TABLE_DUMP,
    Command::COM_CONNECT_OUT,
    Command::COM_REGISTER_SLAVE,
    Command::COM_STMT_PREPARE,
    Command::COM_STMT_EXECUTE,
    Command::COM_STMT_SEND_LONG_DATA,
    Command::COM_STMT_CLOSE,
    Command::COM_STMT_RESET,
    Command::COM_SET_OPTION,
    Command::COM_STMT_FETCH,
    Command::COM_DAEMON,
    Command::COM_BINLOG_DUMP_GTID,
    Command::COM_RESET_CONNECTION,
    Command::COM_END,
];

/// The command a command byte names, if any.
pub fn command(byte: u8) -> Option<Command> {
    if byte == Command::COM_STMT_BULK_EXECUTE as u8 {
        return Some(Command::COM_STMT_BULK_EXECUTE);
    }
    BY_BYTE.get(usize::from(byte)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_reads_as_the_command_with_that_value_or_none() {
        for byte in 0..=u8::MAX {
            match command(byte) {
                Some(command) => assert_eq!(command as u8, byte),
                None => assert!(byte > Command::COM_END as u8),
            }
        }
        assert_eq!(command(0x03), Some(Command::COM_QUERY));
        assert_eq!(command(0xfa), Some(Command::COM_STMT_BULK_EXECUTE));
        assert_eq!(command(0xee), None);
    }
}

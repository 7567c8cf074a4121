//! Where a relayed MySQL session stands: which commands the server still owes
//! a response to, how far into each response it is, and which sequence id the
//! client expects next. The relay consults it to put an `ERR` packet where the
//! client will read it as the answer it is waiting for: after the packet in
//! flight, numbered as the next packet of the exchange, or, when the session
//! is idle, as the answer to the client's next command.
//!
//! Only first packets of payloads are looked at: the command byte (as
//! `mysql_common`'s `Command`), and the first bytes of each server packet
//! (OK, ERR, EOF, column count, `COM_STMT_PREPARE_OK`), which
//! [`super::messages`] reads. Rows and column definitions are counted, not
//! decoded.

use std::collections::VecDeque;

use mysql_common::constants::{CapabilityFlags, StatusFlags};

use super::messages::{
    Command, EOF, ERR, LOCAL_INFILE, OK, column_count, command, eof_status, ok_status,
    prepare_counts, terminator_status,
};
use super::packet::MAX_PAYLOAD;

/// How far the server is into its response to one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// One packet answers (OK, ERR, EOF or a string).
    Single,
    /// The first packet of a result: OK, ERR, a `LOCAL INFILE` request or a column count.
    Result,
    /// `left` definitions, then an EOF unless `CLIENT_DEPRECATE_EOF`, then `next`.
    Definitions { left: u64, next: Next },
    /// The EOF after definitions.
    Eof { next: Next },
    /// Rows until EOF, OK or ERR.
    Rows,
    /// The answer to `COM_STMT_PREPARE`.
    Prepare,
    /// Column definitions until EOF (`COM_FIELD_LIST`).
    FieldList,
    /// The client sends a file (`LOAD DATA LOCAL`), ending with an empty packet.
    LocalInfile,
    /// Packets until the connection ends (binlog dumps).
    Stream,
}

/// What follows a block of definitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Rows (a result set).
    Rows,
    /// The column definitions of a prepared statement.
    PreparedColumns(u64),
    /// Nothing: the response is complete.
    Done,
}

/// What the relay should do with a client packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientPacket {
    /// Forward it.
    Forward,
    /// Answer it with an error instead of forwarding it.
    Refuse(Command),
}

/// The state of one relayed session.
#[derive(Debug)]
pub struct Exchange {
    capabilities: CapabilityFlags,
    deprecate_eof: bool,
    pending: VecDeque<Step>,
    last_seq: u8,
    client_continues: bool,
    server_continues: bool,
}

impl Exchange {
    /// A session that has just logged in with these capabilities.
    pub fn new(capabilities: CapabilityFlags) -> Self {
        Self {
            capabilities,
            deprecate_eof: capabilities.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF),
            pending: VecDeque::new(),
            last_seq: 0,
            client_continues: false,
            server_continues: false,
        }
    }

    /// Whether the server owes nothing and no packet is half-sent: the client
    /// is between commands.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && !self.server_continues && !self.client_continues
    }

    /// Whether the server's last payload is complete, so a packet may follow it.
    pub fn server_at_boundary(&self) -> bool {
        !self.server_continues
    }

    /// Whether the client's last payload is complete and it is not sending a
    /// file, so a command (`COM_QUIT`) may be sent on its behalf.
    pub fn client_at_boundary(&self) -> bool {
        !self.client_continues && self.pending.front() != Some(&Step::LocalInfile)
    }

    /// The sequence id the client accepts for a packet the proxy adds: the
    /// next one of the exchange in progress, or, when idle, the first answer
    /// to the command the client sends next.
    pub fn next_server_seq(&self) -> u8 {
        if self.is_idle() {
            1
        } else {
            self.last_seq.wrapping_add(1)
        }
    }

    /// Takes note of a whole packet from the client (payload `payload`,
    /// header length `length`).
    pub fn client_packet(&mut self, length: usize, seq: u8, payload: &[u8]) -> ClientPacket {
        self.last_seq = seq;
        let continuation = self.client_continues;
        self.client_continues = length == MAX_PAYLOAD;
        if continuation {
            return ClientPacket::Forward;
        }
        if self.pending.front() == Some(&Step::LocalInfile) {
            if length == 0 {
                self.replace_front(Some(Step::Result));
            }
            return ClientPacket::Forward;
        }
        if seq != 0 {
            return ClientPacket::Forward;
        }
        let Some(&byte) = payload.first() else {
            return ClientPacket::Forward;
        };
        let step = match command(byte) {
            Some(Command::COM_CHANGE_USER) => {
                self.client_continues = false;
                return ClientPacket::Refuse(Command::COM_CHANGE_USER);
            }
            Some(
                Command::COM_QUIT | Command::COM_STMT_CLOSE | Command::COM_STMT_SEND_LONG_DATA,
            ) => None,
            Some(Command::COM_QUERY | Command::COM_STMT_EXECUTE | Command::COM_PROCESS_INFO) => {
                Some(Step::Result)
            }
            Some(Command::COM_STMT_PREPARE) => Some(Step::Prepare),
            Some(Command::COM_STMT_FETCH) => Some(Step::Rows),
            Some(Command::COM_FIELD_LIST) => Some(Step::FieldList),
            Some(
                Command::COM_BINLOG_DUMP | Command::COM_BINLOG_DUMP_GTID | Command::COM_TABLE_DUMP,
            ) => Some(Step::Stream),
            _ => Some(Step::Single),
        };
        self.pending.extend(step);
        ClientPacket::Forward
    }

    /// Takes note of a whole packet from the server.
    pub fn server_packet(&mut self, length: usize, seq: u8, payload: &[u8]) {
        self.last_seq = seq;
        let continuation = self.server_continues;
        self.server_continues = length == MAX_PAYLOAD;
        if continuation {
            return;
        }
        let Some(&step) = self.pending.front() else {
            // Unsolicited (a server closing the session says why): nothing owed.
            return;
        };
        let first = payload.first().copied();
        if first == Some(ERR) && step != Step::Stream {
            self.pending.pop_front();
            return;
        }
        let next = match step {
            Step::Single => None,
            Step::Stream => Some(Step::Stream),
            Step::Result | Step::LocalInfile => self.result(payload),
            Step::Definitions { left, next } => {
                if left > 1 {
                    Some(Step::Definitions {
                        left: left - 1,
                        next,
                    })
                } else {
                    self.after_definitions(next)
                }
            }
            Step::Eof { next } => {
                if eof_status(payload).contains(StatusFlags::SERVER_STATUS_CURSOR_EXISTS) {
                    None
                } else {
                    self.resolve(next)
                }
            }
            Step::Rows => {
                if self.is_terminator(length, payload) {
                    self.more_results(terminator_status(payload, self.capabilities))
                } else {
                    Some(Step::Rows)
                }
            }
            Step::Prepare => prepare_counts(payload).and_then(|(columns, params)| {
                if params > 0 {
                    Some(Step::Definitions {
                        left: params,
                        next: Next::PreparedColumns(columns),
                    })
                } else {
                    self.resolve(Next::PreparedColumns(columns))
                }
            }),
            Step::FieldList => {
                if first == Some(EOF) && length < MAX_PAYLOAD {
                    None
                } else {
                    Some(Step::FieldList)
                }
            }
        };
        self.replace_front(next);
    }

    fn replace_front(&mut self, step: Option<Step>) {
        match step {
            Some(step) => {
                if let Some(front) = self.pending.front_mut() {
                    *front = step;
                }
            }
            None => {
                self.pending.pop_front();
            }
        }
    }

    /// The first packet of a result.
    fn result(&self, payload: &[u8]) -> Option<Step> {
        match payload.first().copied() {
            Some(OK) => self.more_results(ok_status(payload, self.capabilities)),
            Some(LOCAL_INFILE) => Some(Step::LocalInfile),
            _ => match column_count(payload) {
                Some(columns) if columns > 0 => Some(Step::Definitions {
                    left: columns,
                    next: Next::Rows,
                }),
                _ => None,
            },
        }
    }

    fn more_results(&self, status: Option<StatusFlags>) -> Option<Step> {
        status
            .filter(|status| status.contains(StatusFlags::SERVER_MORE_RESULTS_EXISTS))
            .map(|_| Step::Result)
    }

    fn after_definitions(&self, next: Next) -> Option<Step> {
        if self.deprecate_eof {
            self.resolve(next)
        } else {
            Some(Step::Eof { next })
        }
    }

    fn resolve(&self, next: Next) -> Option<Step> {
        match next {
            Next::Rows => Some(Step::Rows),
            Next::PreparedColumns(0) | Next::Done => None,
            Next::PreparedColumns(columns) => Some(Step::Definitions {
                left: columns,
                next: Next::Done,
            }),
        }
    }

    /// EOF (or, with `CLIENT_DEPRECATE_EOF`, an OK with the EOF header) ends
    /// rows. A row can start with 0xfe only when it is 16 MiB or more.
    fn is_terminator(&self, length: usize, payload: &[u8]) -> bool {
        let limit = if self.deprecate_eof { MAX_PAYLOAD } else { 9 };
        payload.first() == Some(&EOF) && length < limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deadbolt_testkit::Garbage;

    const COM_QUIT: u8 = Command::COM_QUIT as u8;
    const COM_CHANGE_USER: u8 = Command::COM_CHANGE_USER as u8;
    const COM_STMT_EXECUTE: u8 = Command::COM_STMT_EXECUTE as u8;
    const COM_STMT_CLOSE: u8 = Command::COM_STMT_CLOSE as u8;
    const COM_STMT_FETCH: u8 = Command::COM_STMT_FETCH as u8;

    const MORE: u16 = 0x0008;
    const CURSOR: u16 = 0x0040;

    fn ok(status: u16) -> Vec<u8> {
        let mut packet = vec![OK, 0, 0];
        packet.extend(status.to_le_bytes());
        packet.extend([0, 0]);
        packet
    }

    fn eof(status: u16) -> Vec<u8> {
        let mut packet = vec![EOF, 0, 0];
        packet.extend(status.to_le_bytes());
        packet
    }

    fn ok_as_eof(status: u16) -> Vec<u8> {
        let mut packet = ok(status);
        packet[0] = EOF;
        packet
    }

    fn column() -> Vec<u8> {
        b"\x03def\x00\x00\x00\x01a\x00\x0c\x21\x00\x01\x00\x00\x00\xfd\x00\x00\x00\x00\x00".to_vec()
    }

    /// Plays one side of a conversation, checking before each server packet
    /// that the exchange expects exactly its sequence id.
    struct Script {
        exchange: Exchange,
        seq: u8,
    }

    impl Script {
        fn new(deprecate_eof: bool) -> Self {
            let capabilities = if deprecate_eof {
                CapabilityFlags::CLIENT_DEPRECATE_EOF
            } else {
                CapabilityFlags::empty()
            };
            Self {
                exchange: Exchange::new(capabilities),
                seq: 0,
            }
        }

        fn command(&mut self, payload: &[u8]) -> ClientPacket {
            self.seq = 0;
            self.exchange.client_packet(payload.len(), 0, payload)
        }

        fn client(&mut self, payload: &[u8]) {
            self.seq += 1;
            self.exchange
                .client_packet(payload.len(), self.seq, payload);
        }

        fn server(&mut self, payload: &[u8]) {
            self.seq += 1;
            assert_eq!(
                self.exchange.next_server_seq(),
                self.seq,
                "before {payload:?}"
            );
            self.exchange
                .server_packet(payload.len(), self.seq, payload);
        }

        fn idle(&self) -> bool {
            self.exchange.is_idle()
        }
    }

    #[test]
    fn a_fresh_session_is_idle_and_a_cut_answers_the_next_command() {
        let script = Script::new(true);
        assert!(script.idle());
        assert_eq!(script.exchange.next_server_seq(), 1);
    }

    #[test]
    fn text_result_sets_with_and_without_deprecate_eof() {
        for deprecate_eof in [false, true] {
            let mut script = Script::new(deprecate_eof);
            script.command(b"\x03select a from t");
            script.server(&[1]);
            script.server(&column());
            if !deprecate_eof {
                script.server(&eof(0));
            }
            assert!(!script.idle());
            // A row that starts like an OK packet (an empty string) is a row.
            script.server(&[0]);
            script.server(&[1, b'x']);
            assert!(!script.idle());
            script.server(&if deprecate_eof { ok_as_eof(2) } else { eof(2) });
            assert!(script.idle(), "deprecate_eof={deprecate_eof}");
            assert_eq!(script.exchange.next_server_seq(), 1);
        }
    }

    #[test]
    fn multiple_results_and_errors() {
        let mut script = Script::new(true);
        script.command(b"\x03insert ...; select 1; select nope");
        script.server(&ok(MORE));
        assert!(!script.idle());
        script.server(&[1]);
        script.server(&column());
        script.server(&[1, b'1']);
        script.server(&ok_as_eof(MORE));
        assert!(!script.idle());
        script.server(b"\xff\x28\x04#42S22Unknown column");
        assert!(script.idle());
    }

    #[test]
    fn prepared_statements_count_parameter_and_column_definitions() {
        for deprecate_eof in [false, true] {
            let mut script = Script::new(deprecate_eof);
            script.command(b"\x16select ? + ?, ?");
            script.server(&[OK, 1, 0, 0, 0, 2, 0, 3, 0, 0, 0, 0]);
            for _ in 0..3 {
                script.server(&column());
            }
            if !deprecate_eof {
                script.server(&eof(0));
            }
            assert!(!script.idle());
            script.server(&column());
            assert!(!script.idle());
            script.server(&column());
            if !deprecate_eof {
                assert!(!script.idle());
                script.server(&eof(0));
            }
            assert!(script.idle(), "deprecate_eof={deprecate_eof}");

            script.command(&[COM_STMT_EXECUTE, 1, 0, 0, 0, 0, 1, 0, 0, 0]);
            script.server(&[2]);
            script.server(&column());
            script.server(&column());
            if !deprecate_eof {
                script.server(&eof(0));
            }
            script.server(&[0, 0, 1, 2]);
            script.server(&if deprecate_eof { ok_as_eof(0) } else { eof(0) });
            assert!(script.idle());

            assert_eq!(
                script.command(&[COM_STMT_CLOSE, 1, 0, 0, 0]),
                ClientPacket::Forward
            );
            assert!(script.idle());
        }
    }

    #[test]
    fn cursors_end_after_the_column_definitions() {
        let mut script = Script::new(false);
        script.command(&[COM_STMT_EXECUTE, 1, 0, 0, 0, 1, 1, 0, 0, 0]);
        script.server(&[1]);
        script.server(&column());
        script.server(&eof(CURSOR));
        assert!(script.idle());
        script.command(&[COM_STMT_FETCH, 1, 0, 0, 0, 10, 0, 0, 0]);
        script.server(&[0, 0, 1]);
        script.server(&eof(0x80));
        assert!(script.idle());
    }

    #[test]
    fn load_data_local_waits_for_the_file_and_the_final_ok() {
        let mut script = Script::new(true);
        script.command(b"\x03load data local infile 'x' into table t");
        script.server(b"\xfbx");
        assert!(!script.exchange.client_at_boundary());
        script.client(b"1\n2\n");
        script.client(b"");
        assert!(script.exchange.client_at_boundary());
        assert!(!script.idle());
        script.server(&ok(0));
        assert!(script.idle());
    }

    #[test]
    fn pipelined_commands_are_answered_in_order() {
        let mut script = Script::new(true);
        script.command(b"\x03select 1");
        script.exchange.client_packet(1, 0, &[0x0e]);
        script.server(&[1]);
        script.server(&column());
        script.server(&[1, b'1']);
        script.server(&ok_as_eof(0));
        assert!(!script.idle());
        script.server(&ok(0));
        assert!(script.idle());
    }

    #[test]
    fn single_packet_commands_and_field_lists() {
        let mut script = Script::new(false);
        script.command(&[0x0e]);
        assert!(!script.idle());
        assert_eq!(script.exchange.next_server_seq(), 1);
        script.server(&ok(0));
        assert!(script.idle());
        script.command(b"\x04t\x00");
        script.server(&column());
        script.server(&column());
        assert!(!script.idle());
        script.server(&eof(0));
        assert!(script.idle());
    }

    #[test]
    fn change_user_is_refused_and_quit_owes_nothing() {
        let mut script = Script::new(true);
        assert_eq!(
            script.command(b"\x11root\x00"),
            ClientPacket::Refuse(Command::COM_CHANGE_USER)
        );
        assert!(script.idle());
        assert_eq!(script.command(&[COM_QUIT]), ClientPacket::Forward);
        assert!(script.idle());
    }

    #[test]
    fn multi_packet_payloads_are_followed_to_their_end() {
        let mut exchange = Exchange::new(CapabilityFlags::CLIENT_DEPRECATE_EOF);
        let big = vec![b'x'; 8];
        exchange.client_packet(MAX_PAYLOAD, 0, b"\x03select '...");
        assert!(!exchange.client_at_boundary());
        exchange.client_packet(3, 1, b"...");
        assert!(exchange.client_at_boundary());
        exchange.server_packet(1, 2, &[1]);
        exchange.server_packet(column().len(), 3, &column());
        // A row of 16 MiB or more that happens to start with 0xfe is a row.
        exchange.server_packet(MAX_PAYLOAD, 4, &[EOF, 1, 2]);
        assert!(!exchange.server_at_boundary());
        assert_eq!(exchange.next_server_seq(), 5);
        exchange.server_packet(big.len(), 5, &big);
        assert!(exchange.server_at_boundary());
        assert!(!exchange.is_idle());
        exchange.server_packet(7, 6, &ok_as_eof(0));
        assert!(exchange.is_idle());
    }

    #[test]
    fn garbage_from_either_side_keeps_the_sequence_and_refuses_only_change_user() {
        let mut stream = Garbage::new(0x9e37_79b9_7f4a_7c15);
        let mut exchange = Exchange::new(CapabilityFlags::empty());
        for round in 0..5000u32 {
            let payload = stream.bytes(12);
            let seq = (stream.next_u64() >> 8) as u8 % 3;
            if round % 3 == 0 {
                let answer = exchange.client_packet(payload.len(), seq, &payload);
                // Only a COM_CHANGE_USER command is ever refused.
                if answer != ClientPacket::Forward {
                    assert_eq!(answer, ClientPacket::Refuse(Command::COM_CHANGE_USER));
                    assert_eq!((seq, payload.first()), (0, Some(&COM_CHANGE_USER)));
                }
            } else {
                exchange.server_packet(payload.len(), seq, &payload);
            }
            // A packet the proxy adds follows the last one seen, or opens the
            // answer to the next command.
            let expected = if exchange.is_idle() {
                1
            } else {
                seq.wrapping_add(1)
            };
            assert_eq!(exchange.next_server_seq(), expected);
        }
    }
}

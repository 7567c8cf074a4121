//! Writes the seed inputs under `fuzz/seeds/<target>/` with the project's own
//! encoders (pgwire for PostgreSQL messages, `protocol::encode_line` for
//! lock-view lines), so the seeds are exactly what the peers send.
//!
//! Run from `fuzz/`: `cargo run --example make_seeds` (a normal build, no
//! sanitizer), then copy the seeds into `corpus/<target>/` before fuzzing.

use std::fs;
use std::path::Path;

use bytes::BytesMut;
use deadbolt_api::engine::LockEntry;
use deadbolt_api::protocol::{
    Ack, ClusterConfig, ObjectKey, RoleRecord, Snapshot, UserRecord, ViewEvent, ViewObject,
    encode_line,
};
use deadbolt_api::resources::{LockTargetSpec, RoleOptions};
use deadbolt_api::{AccessRoleSpec, LockingMode, RequireSessionMfa, UserSpec};
use deadbolt_sidecar::mysql::wire as my;
use deadbolt_sidecar::postgres::wire::{self, error_response};
use jiff::Timestamp;
use mysql_common::constants::{CapabilityFlags, StatusFlags};
use mysql_common::packets::{AuthSwitchRequest, HandshakePacket};
use mysql_common::proto::MySerialize;
use pgwire::messages::response::{CommandComplete, ReadyForQuery, TransactionStatus};
use pgwire::messages::simplequery::Query;
use pgwire::messages::startup::{
    Authentication, BackendKeyData, GssEncRequest, ParameterStatus, Password,
    PasswordMessageFamily, SecretKey, SslRequest, Startup,
};

/// Control byte of `postgres_framing`: top bit clear is the client side.
const CLIENT: u8 = 0x00;
/// Control byte of `postgres_framing`: top bit set is the server side.
const SERVER: u8 = 0x80;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    postgres(&root.join("postgres_framing"));
    lockview(&root.join("lockview_lines"));
    durations(&root.join("go_duration"));
    mysql(&root.join("mysql_framing"));
    kube_requests(&root.join("kube_classify"));
}

/// Request targets kubectl sends, and the disguises a locked user would try:
/// control byte (method; top bit: a WebSocket upgrade), then the target.
fn kube_requests(dir: &Path) {
    const GET: u8 = 0;
    const POST: u8 = 2;
    const UPGRADE: u8 = 0x80;
    let requests: [(&str, u8, &str); 12] = [
        ("discovery-api", GET, "/api?timeout=32s"),
        ("discovery-openapi", GET, "/openapi/v3/apis/apps/v1?hash=abc"),
        ("list", GET, "/api/v1/namespaces/shop/configmaps?limit=500"),
        ("watch", GET, "/api/v1/namespaces/shop/configmaps?watch=true&resourceVersion=5"),
        ("watch-encoded-key", GET, "/api/v1/namespaces/shop/configmaps?%77atch=1"),
        ("watch-path", GET, "/api/v1/watch/namespaces/shop/configmaps"),
        ("follow-encoded", GET, "/api/v1/namespaces/shop/pods/web/log?fol%6Cow=true"),
        ("encoded-slash", GET, "/api/v1/namespaces%2Fshop%2Fconfigmaps"),
        ("dot-segments", GET, "/apis/%2e%2e/api/v1/namespaces/shop/configmaps"),
        ("node-proxy", GET, "/api/v1/nodes/node-1/proxy/logs/"),
        ("exec", GET | UPGRADE, "/api/v1/namespaces/shop/pods/web/exec?command=sh&stdin=true"),
        ("create", POST, "/apis/deadbolt.dev/v1/locks?fieldManager=kubectl"),
    ];
    for (name, control, target) in requests {
        let mut seed = vec![control];
        seed.extend_from_slice(target.as_bytes());
        write(dir, name, &seed);
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
}

fn seed(control: u8, parts: &[BytesMut]) -> Vec<u8> {
    let mut out = vec![control];
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

fn postgres(dir: &Path) {
    let mut startup = Startup::new();
    startup.parameters.insert("user".into(), "alice".into());
    startup.parameters.insert("database".into(), "app".into());
    startup
        .parameters
        .insert("application_name".into(), "psql".into());
    let startup = wire::encode(&startup);
    let password = wire::encode(&PasswordMessageFamily::Password(Password::new(
        "secret".into(),
    )));
    let ssl = wire::encode(&SslRequest::new());
    let gss = wire::encode(&GssEncRequest::new());
    let mut cancel = BytesMut::new();
    cancel.extend_from_slice(&16i32.to_be_bytes());
    cancel.extend_from_slice(&80_877_102i32.to_be_bytes());
    cancel.extend_from_slice(&4242i32.to_be_bytes());
    cancel.extend_from_slice(&0x1234_5678i32.to_be_bytes());

    write(dir, "client-startup-password", &seed(CLIENT, &[startup.clone(), password.clone()]));
    write(dir, "client-ssl-startup", &seed(CLIENT, &[ssl.clone(), startup.clone()]));
    write(dir, "client-gss-ssl-startup-password", &seed(CLIENT, &[gss, ssl, startup.clone(), password]));
    write(dir, "client-cancel", &seed(CLIENT, &[cancel]));
    write(
        dir,
        "client-query",
        &seed(0x05, &[startup, wire::encode(&Query::new("SELECT 1".into()))]),
    );

    let greeting = [
        wire::encode(&Authentication::Ok),
        wire::encode(&ParameterStatus::new("server_version".into(), "17.2".into())),
        wire::encode(&ParameterStatus::new("client_encoding".into(), "UTF8".into())),
        wire::encode(&BackendKeyData::new(4242, SecretKey::I32(0x1234_5678))),
        wire::encode(&ReadyForQuery::new(TransactionStatus::Idle)),
    ];
    write(dir, "server-ok-greeting", &seed(SERVER, &greeting));
    let mut cleartext = vec![wire::encode(&Authentication::CleartextPassword)];
    cleartext.extend(greeting.iter().cloned());
    write(dir, "server-cleartext", &seed(SERVER | 0x11, &cleartext));
    write(
        dir,
        "server-md5",
        &seed(SERVER | 0x22, &[wire::encode(&Authentication::MD5Password(vec![1, 2, 3, 4]))]),
    );
    write(
        dir,
        "server-scram",
        &seed(
            SERVER | 0x33,
            &[
                wire::encode(&Authentication::SASL(vec!["SCRAM-SHA-256".into(), "SCRAM-SHA-256-PLUS".into()])),
                wire::encode(&Authentication::SASLContinue(
                    b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"[..].into(),
                )),
                wire::encode(&Authentication::SASLFinal(
                    b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="[..].into(),
                )),
                wire::encode(&Authentication::Ok),
            ],
        ),
    );
    write(
        dir,
        "server-error",
        &seed(SERVER | 0x44, &[error_response("FATAL", "28P01", "password authentication failed for user \"alice\"")]),
    );
    write(
        dir,
        "server-query-result",
        &seed(
            SERVER | 0x55,
            &[
                wire::encode(&CommandComplete::new("SELECT 1".into())),
                wire::encode(&ReadyForQuery::new(TransactionStatus::Transaction)),
                wire::encode(&ReadyForQuery::new(TransactionStatus::Idle)),
            ],
        ),
    );
}

fn ts(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap()
}

fn lockview(dir: &Path) {
    let lock = LockEntry {
        name: "dc7cee9d-fe5e-4534-a90d-db770f0234a1".into(),
        target: LockTargetSpec {
            user: Some("alice".into()),
            role: Some("dev".into()),
            ..Default::default()
        },
        message: Some("Suspicious activity.".into()),
        created: ts(1_700_000_000),
        expires_at: Some(ts(1_700_036_000)),
    };
    let login_lock = LockEntry {
        name: "l2".into(),
        target: LockTargetSpec {
            login: Some("postgres".into()),
            server_id: Some("proxy-1".into()),
            ..Default::default()
        },
        message: None,
        created: ts(1_700_000_100),
        expires_at: None,
    };
    let role = RoleRecord {
        name: "access-prod".into(),
        spec: AccessRoleSpec {
            options: RoleOptions {
                lock: Some(LockingMode::Strict),
                require_session_mfa: Some(RequireSessionMfa::HardwareKeyTouch),
            },
            groups: vec!["prod-admins".into()],
            ..Default::default()
        },
    };
    let user = UserRecord {
        name: "alice".into(),
        spec: UserSpec {
            roles: vec!["access-prod".into()],
            suspended: true,
            ..Default::default()
        },
    };
    let config = ClusterConfig {
        locking_mode: LockingMode::Strict,
        require_session_mfa: RequireSessionMfa::Session,
        max_lock_staleness_ms: 30_000,
        mfa: Default::default(),
    };
    let snapshot = ViewEvent::Snapshot(Snapshot {
        revision: 7,
        locks: vec![lock.clone(), login_lock.clone()],
        roles: vec![role.clone()],
        users: vec![user.clone()],
        config: config.clone(),
    });
    let stream = [
        snapshot.clone(),
        ViewEvent::Upsert {
            revision: 8,
            object: ViewObject::Lock(LockEntry {
                name: "l3".into(),
                created: ts(1_699_999_999),
                ..lock.clone()
            }),
        },
        ViewEvent::Upsert {
            revision: 9,
            object: ViewObject::Role(role),
        },
        ViewEvent::Upsert {
            revision: 10,
            object: ViewObject::User(user),
        },
        ViewEvent::Upsert {
            revision: 11,
            object: ViewObject::Config(config),
        },
        ViewEvent::Delete {
            revision: 12,
            key: ObjectKey::Lock("l2".into()),
        },
        ViewEvent::Delete {
            revision: 13,
            key: ObjectKey::Role("access-prod".into()),
        },
        ViewEvent::Delete {
            revision: 14,
            key: ObjectKey::User("alice".into()),
        },
        ViewEvent::Heartbeat {
            revision: 14,
            sent_at: ts(1_700_000_001),
        },
    ];
    let lines = |events: &[ViewEvent]| -> Vec<u8> { events.iter().flat_map(encode_line).collect() };
    write(dir, "snapshot", &encode_line(&snapshot));
    write(dir, "stream", &lines(&stream));
    write(dir, "empty-snapshot-heartbeat", &lines(&[
        ViewEvent::Snapshot(Snapshot::default()),
        ViewEvent::Heartbeat { revision: 0, sent_at: ts(0) },
    ]));
    write(dir, "delta-before-snapshot", &lines(&stream[1..3]));
    write(
        dir,
        "ack",
        &encode_line(&Ack::Applied {
            revision: 42,
            server_id: "proxy-1".into(),
        }),
    );
}

fn durations(dir: &Path) {
    for (name, text) in [
        ("hours", "10h"),
        ("mixed", "1h30m"),
        ("fraction-hours", "1.5h"),
        ("millis", "250ms"),
        ("minutes-seconds", "2m3.5s"),
        ("micro-sign", "7µs"),
        ("greek-mu", "7μs"),
        ("micro-us", "7us"),
        ("nanos", "42ns"),
        ("zero", "0"),
        ("go-format", "10h0m0s"),
        ("max-duration", "5124095576030431h0m15.999999999s"),
        ("fraction-only", ".5s"),
    ] {
        write(dir, name, text.as_bytes());
    }
}

/// `mysql_framing` modes, in the control byte's top two bits.
const MY_CLIENT: u8 = 0x00;
const MY_SERVER: u8 = 0x40;
const MY_RELAY: u8 = 0x80;
const MY_RELAY_DEPRECATE_EOF: u8 = 0xc0;

fn my_packets(packets: &[(u8, &[u8])]) -> Vec<u8> {
    packets.iter().flat_map(|(seq, payload)| my::frame(*seq, payload).0).collect()
}

/// Relay records: `[d][bytes]`, top bit of `d` the side (set: server), low 7
/// bits + 1 the read size.
fn relay_records(control: u8, turns: &[(bool, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![control];
    for (server, bytes) in turns {
        for chunk in bytes.chunks(100) {
            out.push(u8::from(*server) << 7 | (chunk.len() - 1) as u8);
            out.extend_from_slice(chunk);
        }
    }
    out
}

fn mysql(dir: &Path) {
    let client_caps = CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_CONNECT_ATTRS
        | CapabilityFlags::CLIENT_DEPRECATE_EOF;
    let attributes = vec![
        ("_client_name".to_string(), "libmariadb".to_string()),
        ("_os".to_string(), "Linux".to_string()),
    ];
    let clear = my::LoginRequest {
        capabilities: client_caps,
        max_packet_size: 1 << 24,
        collation: 45,
        user: "app",
        auth_response: b"eyJhbGciOiJSUzI1NiJ9.token\0",
        database: Some("shop"),
        auth_plugin: b"mysql_clear_password",
        attributes: &attributes,
    };
    let native = my::LoginRequest {
        capabilities: client_caps | CapabilityFlags::CLIENT_SSL,
        auth_response: &[7; 20],
        auth_plugin: b"mysql_native_password",
        ..clear.clone()
    };
    let mut ssl_request = Vec::new();
    ssl_request.extend_from_slice(&(client_caps | CapabilityFlags::CLIENT_SSL).bits().to_le_bytes());
    ssl_request.extend_from_slice(&(1u32 << 24).to_le_bytes());
    ssl_request.push(45);
    ssl_request.extend_from_slice(&[0; 23]);
    let mut seed = vec![MY_CLIENT];
    seed.extend(my_packets(&[(1, &clear.encode())]));
    write(dir, "client-clear-password", &seed);
    let mut seed = vec![MY_CLIENT | 0x05];
    seed.extend(my_packets(&[
        (1, &ssl_request),
        (2, &native.encode()),
        (4, b"secret-token\0"),
    ]));
    write(dir, "client-ssl-switch", &seed);

    let mut greeting = Vec::new();
    HandshakePacket::new(
        10,
        &b"8.0.36"[..],
        42,
        *b"abcdefgh",
        Some(&b"ijklmnopqrst\0"[..]),
        CapabilityFlags::CLIENT_PROTOCOL_41
            | CapabilityFlags::CLIENT_SSL
            | CapabilityFlags::CLIENT_SECURE_CONNECTION
            | CapabilityFlags::CLIENT_PLUGIN_AUTH
            | CapabilityFlags::CLIENT_DEPRECATE_EOF,
        255,
        StatusFlags::SERVER_STATUS_AUTOCOMMIT,
        Some(&b"caching_sha2_password"[..]),
    )
    .serialize(&mut greeting);
    let ok = [0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00];
    let mut switch = Vec::new();
    AuthSwitchRequest::new(&b"mysql_native_password"[..], &b"abcdefghijklmnopqrst\0"[..])
        .serialize(&mut switch);
    let mut seed = vec![MY_SERVER];
    seed.extend(my_packets(&[(0, &greeting), (2, &ok)]));
    write(dir, "server-greeting-ok", &seed);
    let mut seed = vec![MY_SERVER | 0x07];
    seed.extend(my_packets(&[(0, &greeting), (2, &switch), (4, &ok)]));
    write(dir, "server-auth-switch", &seed);
    let mut seed = vec![MY_SERVER | 0x09];
    seed.extend(my_packets(&[(0, &greeting), (2, &[0x01, 0x03]), (4, &ok)]));
    write(dir, "server-fast-auth", &seed);
    let mut seed = vec![MY_SERVER | 0x0b];
    seed.extend(my_packets(&[(0, &my::err_payload(my::ACCESS_DENIED, "Access denied for user 'app'@'10.0.0.1'"))]));
    write(dir, "server-error", &seed);

    let column = b"\x03def\x04shop\x01t\x01t\x01a\x01a\x0c\x2d\x00\xff\x00\x00\x00\xfd\x00\x00\x00\x00\x00";
    let eof = [0xfe, 0x00, 0x00, 0x02, 0x00];
    let ok_eof = [0xfe, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00];
    let query = |sql: &str| [&[0x03][..], sql.as_bytes()].concat();
    write(
        dir,
        "relay-query-eof",
        &relay_records(
            MY_RELAY,
            &[
                (false, my_packets(&[(0, &query("SELECT a FROM t"))])),
                (true, my_packets(&[(1, &[0x01]), (2, column), (3, &eof)])),
                (true, my_packets(&[(4, b"\x01x"), (5, &eof)])),
                (false, my_packets(&[(0, &[0x0e])])),
                (true, my_packets(&[(1, &ok)])),
                (false, my_packets(&[(0, &[0x01])])),
            ],
        ),
    );
    write(
        dir,
        "relay-query-deprecate-eof",
        &relay_records(
            MY_RELAY_DEPRECATE_EOF,
            &[
                (false, my_packets(&[(0, &query("SELECT a FROM t; SELECT 1"))])),
                (true, my_packets(&[(1, &[0x01]), (2, column), (3, b"\x01x"), (4, &[0xfe, 0, 0, 0x0a, 0, 0, 0])])),
                (true, my_packets(&[(5, &[0x01]), (6, column), (7, b"\x011"), (8, &ok_eof)])),
            ],
        ),
    );
    write(
        dir,
        "relay-prepare-execute",
        &relay_records(
            MY_RELAY | 0x03,
            &[
                (false, my_packets(&[(0, &[&[0x16][..], b"SELECT a FROM t WHERE a = ?"].concat())])),
                (true, my_packets(&[
                    (1, &[0x00, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0]),
                    (2, column), (3, &eof), (4, column), (5, &eof),
                ])),
                (false, my_packets(&[(0, &[0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0])])),
                (true, my_packets(&[(1, &ok)])),
                (false, my_packets(&[(0, &[0x19, 1, 0, 0, 0])])),
            ],
        ),
    );
    write(
        dir,
        "relay-local-infile",
        &relay_records(
            MY_RELAY | 0x04,
            &[
                (false, my_packets(&[(0, &query("LOAD DATA LOCAL INFILE 'x' INTO TABLE t"))])),
                (true, my_packets(&[(1, b"\xfbx")])),
                (false, my_packets(&[(2, b"1\n2\n"), (3, b"")])),
                (true, my_packets(&[(4, &ok)])),
            ],
        ),
    );
    write(
        dir,
        "relay-change-user",
        &relay_records(
            MY_RELAY | 0x05,
            &[(false, my_packets(&[(0, &[&[0x11][..], b"root\0"].concat())]))],
        ),
    );
}

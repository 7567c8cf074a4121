//! The lock-view protocol and audit events survive a serde round trip, and
//! their JSON shape is the documented one.

use deadbolt_api::audit::{AuditEvent, AuditEventKind};
use deadbolt_api::engine::LockEntry;
use deadbolt_api::protocol::{
    Ack, ClusterConfig, ObjectKey, RoleRecord, Snapshot, UserRecord, ViewEvent, ViewObject,
    decode_line, encode_line,
};
use deadbolt_api::resources::RoleOptions;
use deadbolt_api::{AccessRoleSpec, LockingMode, RequireSessionMfa, TargetKind, UserSpec};
use deadbolt_testkit::{self as testkit, targets, ts};
use serde_json::json;

fn lock_entry() -> LockEntry {
    testkit::lock_entry(
        "dc7cee9d-fe5e-4534-a90d-db770f0234a1",
        targets([(TargetKind::User, "alice"), (TargetKind::Role, "dev")]),
    )
    .message("Suspicious activity.")
    .created(ts(1_700_000_000))
    .expires_at(ts(1_700_036_000))
    .build()
}

fn every_event() -> Vec<ViewEvent> {
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
    vec![
        ViewEvent::Snapshot(Snapshot {
            revision: 7,
            locks: vec![lock_entry()],
            roles: vec![role.clone()],
            users: vec![user.clone()],
            config: config.clone(),
        }),
        ViewEvent::Upsert {
            revision: 8,
            object: ViewObject::Lock(lock_entry()),
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
            key: ObjectKey::Lock("l1".into()),
        },
        ViewEvent::Delete {
            revision: 13,
            key: ObjectKey::Role("r1".into()),
        },
        ViewEvent::Delete {
            revision: 14,
            key: ObjectKey::User("u1".into()),
        },
        ViewEvent::Heartbeat {
            revision: 14,
            sent_at: ts(1_700_000_001),
        },
    ]
}

#[test]
fn view_events_round_trip_as_lines() {
    for event in every_event() {
        let line = encode_line(&event);
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(
            line.iter().filter(|b| **b == b'\n').count(),
            1,
            "one line per event"
        );
        let back: ViewEvent = decode_line(&line).unwrap();
        assert_eq!(back, event);
        assert_eq!(back.revision(), event.revision());
    }
}

#[test]
fn view_event_json_shape() {
    let heartbeat = ViewEvent::Heartbeat {
        revision: 3,
        sent_at: ts(0),
    };
    assert_eq!(
        serde_json::to_value(&heartbeat).unwrap(),
        json!({"type": "heartbeat", "revision": 3, "sentAt": "1970-01-01T00:00:00Z"})
    );
    let upsert = ViewEvent::Upsert {
        revision: 4,
        object: ViewObject::Lock(lock_entry()),
    };
    assert_eq!(
        serde_json::to_value(&upsert).unwrap(),
        json!({
            "type": "upsert",
            "revision": 4,
            "object": {
                "kind": "lock",
                "name": "dc7cee9d-fe5e-4534-a90d-db770f0234a1",
                "target": {"user": "alice", "role": "dev"},
                "message": "Suspicious activity.",
                "created": "2023-11-14T22:13:20Z",
                "expiresAt": "2023-11-15T08:13:20Z",
            },
        })
    );
    let delete = ViewEvent::Delete {
        revision: 5,
        key: ObjectKey::Lock("l1".into()),
    };
    assert_eq!(
        serde_json::to_value(&delete).unwrap(),
        json!({"type": "delete", "revision": 5, "key": {"lock": "l1"}})
    );
}

#[test]
fn acks_round_trip() {
    let ack = Ack::Applied {
        revision: 42,
        server_id: "proxy-1".into(),
    };
    let line = encode_line(&ack);
    assert_eq!(
        std::str::from_utf8(&line).unwrap(),
        "{\"type\":\"applied\",\"revision\":42,\"serverId\":\"proxy-1\"}\n"
    );
    assert_eq!(decode_line::<Ack>(&line).unwrap(), ack);
}

#[test]
fn malformed_lines_are_errors_not_panics() {
    for garbage in [
        &b""[..],
        b"{",
        b"null",
        b"{\"type\":\"upsert\"}",
        b"\xff\xfe",
        b"{\"type\":\"nope\",\"revision\":1}",
    ] {
        let error = decode_line::<ViewEvent>(garbage).unwrap_err();
        assert!(error.to_string().starts_with("malformed lock-view message"));
    }
}

#[test]
fn audit_events_round_trip_with_teleport_field_names() {
    let mut event = AuditEvent::new(
        AuditEventKind::SessionTerminated,
        "59cf8d1b-7b36-4894-8e90-9d9713b6b9ef",
        ts(1_486_104_845),
    );
    event.user = Some("alice".into());
    event.login = Some("postgres".into());
    event.db = Some("app".into());
    event.server_id = Some("proxy-1".into());
    event.sid = Some("8d3895b6-e9dd-11e6-94de-40167e68e931".into());
    event.addr_remote = Some("127.0.0.1:42146".into());
    event.reason = Some(r#"lock targeting User:"alice" is in force"#.into());
    event.lock = Some("l1".into());
    let line = event.to_json_line();
    assert!(line.ends_with('\n'));
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["event"], "session.terminated");
    assert_eq!(value["addr.remote"], "127.0.0.1:42146");
    assert_eq!(value["server_id"], "proxy-1");
    assert_eq!(value["time"], "2017-02-03T06:54:05Z");
    let back: AuditEvent = serde_json::from_str(&line).unwrap();
    assert_eq!(back, event);

    let kinds = [
        AuditEventKind::LockCreated,
        AuditEventKind::LockDeleted,
        AuditEventKind::LockExpired,
        AuditEventKind::SessionStart,
        AuditEventKind::SessionEnd,
        AuditEventKind::SessionRejected,
        AuditEventKind::SessionTerminated,
        AuditEventKind::MfaDeviceAdd,
        AuditEventKind::MfaAuth,
    ];
    for kind in kinds {
        let minimal = AuditEvent::new(kind, "u", ts(0));
        let json = serde_json::to_value(&minimal).unwrap();
        assert_eq!(json["event"], kind.as_str());
        assert_eq!(
            json.as_object().unwrap().len(),
            3,
            "absent fields are left out"
        );
        assert_eq!(serde_json::from_value::<AuditEvent>(json).unwrap(), minimal);
    }
}

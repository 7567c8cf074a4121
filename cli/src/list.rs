//! `kubectl deadbolt ls`: the lock table, with targets spelled as lock messages spell them.

use std::io::Write;

use deadbolt_api::duration;
use deadbolt_api::resources::{Lock, condition_status};
use kube::{Api, ResourceExt};

use crate::Error;
use crate::output::{self, NONE};

/// The table's columns.
pub const HEADERS: [&str; 6] = [
    "NAME", "TARGET", "MESSAGE", "EXPIRES", "IN-FORCE", "ENFORCED",
];

/// Lists every lock and prints the table on `out`; with no locks, says so on `err`, as kubectl does.
pub async fn list(api: &Api<Lock>, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), Error> {
    let locks = crate::list_all(api).await?;
    if locks.is_empty() {
        writeln!(err, "No locks found.")?;
        return Ok(());
    }
    out.write_all(render(&locks).as_bytes())?;
    Ok(())
}

/// The table for `locks`, in the order given (the API server's, which is by name).
pub fn render(locks: &[Lock]) -> String {
    let rows: Vec<Vec<String>> = locks.iter().map(row).collect();
    output::table(&HEADERS, &rows)
}

/// One lock's cells.
fn row(lock: &Lock) -> Vec<String> {
    let status = lock.status.as_ref();
    let target = lock.spec.target.to_string();
    vec![
        lock.name_any(),
        if target.is_empty() {
            NONE.to_string()
        } else {
            output::cell(&target)
        },
        output::cell(lock.spec.message.as_deref().unwrap_or_default()),
        expires(lock),
        status
            .and_then(|status| condition_status(&status.conditions, "InForce"))
            .unwrap_or(NONE)
            .to_string(),
        status
            .and_then(|status| status.enforced_by.clone())
            .map(|enforced| output::cell(&enforced))
            .unwrap_or_else(|| NONE.to_string()),
    ]
}

/// When the lock expires: the operator's `status.expiresAt`, else `spec.expires`, else creation + `spec.ttl`
/// (before the operator has seen the lock), else `never`.
pub fn expires(lock: &Lock) -> String {
    if let Some(at) = lock
        .status
        .as_ref()
        .and_then(|status| status.expires_at.as_ref())
    {
        return at.0.to_string();
    }
    if let Some(at) = &lock.spec.expires {
        return at.0.to_string();
    }
    if let Some(ttl) = &lock.spec.ttl {
        let computed = lock
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|created| {
                let ttl = duration::parse(ttl).ok()?;
                let ttl = jiff::SignedDuration::try_from(ttl).ok()?;
                created.0.checked_add(ttl).ok()
            });
        return match computed {
            Some(at) => at.to_string(),
            None => format!("{} after creation", output::cell(ttl)),
        };
    }
    "never".to_string()
}

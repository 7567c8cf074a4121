//! `deadbolt-sidecar`: the kube-API and database proxies. The proxies arrive
//! with their own work; until then the binary only names the lock message format.

fn main() {
    println!("{}", deadbolt_api::engine::STALE_VIEW_MESSAGE);
}

//! `deadbolt-operator`: controllers, the lock-view stream and admission webhooks.
//! The controllers and the stream arrive with the operator work; until then the
//! binary only reports which CRDs it serves.

fn main() {
    for crd in deadbolt_api::resources::all_crds() {
        println!("{}", crd.metadata.name.unwrap_or_default());
    }
}

//! `kubectl deadbolt`'s integration tests, in one binary that compiles and
//! links once. Each module's header says what it proves.

mod kubeconfig;
mod kubectl_plugin;
mod mfa_args;
mod mfa_service;
mod mock_api;

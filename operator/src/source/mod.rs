//! Where the view comes from: the Kubernetes API (`kube`, the default in a
//! cluster) or a directory of manifests (`dir:PATH`, standalone). Both write
//! into the same [`crate::view::ViewStore`] and mark readiness once loaded.

mod dir;
pub mod kube;
pub mod manifest;

pub use dir::{DirError, DirOptions, DirSource, LoadReport};

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Which source the operator reads, as given to `--source`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    /// Watch the cluster.
    Kube,
    /// Read and poll a directory of manifests.
    Dir(PathBuf),
}

impl FromStr for SourceSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "kube" => Ok(Self::Kube),
            _ => match text.strip_prefix("dir:") {
                Some(path) if !path.is_empty() => Ok(Self::Dir(PathBuf::from(path))),
                Some(_) => Err("dir: needs a path, e.g. dir:/etc/deadbolt/manifests".into()),
                None => Err(format!(
                    "unknown source {text:?}: expected `kube` or `dir:PATH`"
                )),
            },
        }
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kube => f.write_str("kube"),
            Self::Dir(path) => write!(f, "dir:{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_source_specs() {
        assert_eq!("kube".parse(), Ok(SourceSpec::Kube));
        assert_eq!(
            "dir:/etc/deadbolt".parse(),
            Ok(SourceSpec::Dir("/etc/deadbolt".into()))
        );
        assert!("dir:".parse::<SourceSpec>().is_err());
        assert!("files".parse::<SourceSpec>().unwrap_err().contains("kube"));
    }
}

//! Host names: which a job may name, and where it runs when it names none.

use std::collections::BTreeSet;

/// A name a host can be configured under: short, and safe in URLs and
/// logs.
pub fn is_valid_host_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The hosts a job may name, and the one it runs on when it names none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNames {
    default: String,
    known: BTreeSet<String>,
    /// Each host's labels, for the scopes of tokens that name labels.
    labels: std::collections::BTreeMap<String, Vec<String>>,
}

impl HostNames {
    /// The machine rje itself runs on.
    pub const LOCAL: &'static str = "local";

    /// Only the local machine: the embedded default.
    pub fn local_only() -> Self {
        Self::new(Self::LOCAL, [Self::LOCAL])
    }

    /// `default` is always among the known hosts.
    pub fn new(default: &str, known: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let mut known: BTreeSet<String> = known.into_iter().map(Into::into).collect();
        known.insert(default.to_owned());
        Self {
            default: default.to_owned(),
            known,
            labels: Default::default(),
        }
    }

    /// The same hosts, `name` carrying `labels`.
    pub fn with_labels(mut self, name: &str, labels: &[String]) -> Self {
        if !labels.is_empty() {
            self.labels.insert(name.to_owned(), labels.to_vec());
        }
        self
    }

    /// The labels a host carries; none for an unknown host.
    pub fn labels_of(&self, name: &str) -> &[String] {
        self.labels.get(name).map(Vec::as_slice).unwrap_or_default()
    }

    pub fn is_known(&self, name: &str) -> bool {
        self.known.contains(name)
    }

    pub fn default_host(&self) -> &str {
        &self.default
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.known.iter().map(String::as_str)
    }
}

impl Default for HostNames {
    fn default() -> Self {
        Self::local_only()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_always_known() {
        let hosts = HostNames::new("web-1", ["db-1"]);
        assert!(hosts.is_known("web-1") && hosts.is_known("db-1"));
        assert!(!hosts.is_known("local"));
        assert_eq!(hosts.default_host(), "web-1");
        assert_eq!(hosts.names().collect::<Vec<_>>(), ["db-1", "web-1"]);
        assert!(HostNames::local_only().is_known(HostNames::LOCAL));
    }
}

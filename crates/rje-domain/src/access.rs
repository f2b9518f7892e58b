//! Who may do what: API tokens with a name, a role and a scope of hosts,
//! the decisions a request is held to, and the audit trail's entries.
//! The rules live here, so that the API carries them out and a rule is
//! changed in one place.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Collector;
use crate::list::{page_limit, page_offset};
use crate::{HostNames, ValidationError, is_valid_host_name};

/// What a token may do, each role all the ones before it may.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// GET routes and WebSockets.
    Read,
    /// Read, submit and run again jobs on its hosts, and edit and cancel
    /// its own jobs and schedules.
    Run,
    /// Everything: any job, pruning, tokens, the audit trail.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Run => "run",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "read" => Some(Role::Read),
            "run" => Some(Role::Run),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The hosts a token may run jobs on and see the jobs of: those it names,
/// and those carrying any of its labels. Empty: every host (`local` is a
/// host like any other, and is in a non-empty scope only if named).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub labels: Vec<String>,
}

impl Scope {
    /// Every host.
    pub fn everything() -> Self {
        Self::default()
    }

    pub fn is_everything(&self) -> bool {
        self.hosts.is_empty() && self.labels.is_empty()
    }

    /// Whether `host`, carrying `labels`, is in the scope.
    pub fn covers(&self, host: &str, labels: &[String]) -> bool {
        self.is_everything()
            || self.hosts.iter().any(|name| name == host)
            || labels.iter().any(|label| self.labels.contains(label))
    }
}

/// Who a request is, once its token was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name; `None` when the server runs without tokens.
    pub name: Option<String>,
    pub role: Role,
    pub scope: Scope,
}

/// Why a principal may not do something: named, so that a 403 says what
/// is missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("this needs the {needed} role; the token's role is {has}")]
    Role { needed: Role, has: Role },
    #[error("the token's scope does not include host {host}")]
    Host { host: String },
    #[error("a {role} token may change only the jobs it submitted")]
    NotItsJob { role: Role },
    #[error("a {role} token may change only the schedules it made")]
    NotItsSchedule { role: Role },
}

impl Denied {
    /// What is missing, as the 403's detail names it.
    pub fn missing(&self) -> &'static str {
        match self {
            Denied::Role { .. } => "role",
            Denied::Host { .. } => "host",
            Denied::NotItsJob { .. } => "submitted_by",
            Denied::NotItsSchedule { .. } => "created_by",
        }
    }

    /// The metric's label for the refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            Denied::Role { .. } => "role",
            Denied::Host { .. } => "host",
            Denied::NotItsJob { .. } | Denied::NotItsSchedule { .. } => "owner",
        }
    }
}

impl Principal {
    /// A server without tokens: anyone who reaches it (loopback only) may
    /// do everything, and is named by nothing.
    pub fn anyone() -> Self {
        Self {
            name: None,
            role: Role::Admin,
            scope: Scope::everything(),
        }
    }

    /// The rule for an action that needs `needed`.
    pub fn require(&self, needed: Role) -> Result<(), Denied> {
        if self.role >= needed {
            Ok(())
        } else {
            Err(Denied::Role {
                needed,
                has: self.role,
            })
        }
    }

    /// Whether a job on `host` is this principal's to see and run: every
    /// job for a token without a scope; for a scoped one, a job whose host
    /// it names or whose host carries one of its labels (as `hosts` knows
    /// them). A job without a host (older than hosts) only when unscoped.
    pub fn sees(&self, host: Option<&str>, hosts: &HostNames) -> bool {
        self.scope.is_everything()
            || host.is_some_and(|host| self.scope.covers(host, hosts.labels_of(host)))
    }

    /// The rule for running on, or seeing a job of, `host`.
    pub fn require_host(&self, host: Option<&str>, hosts: &HostNames) -> Result<(), Denied> {
        if self.sees(host, hosts) {
            Ok(())
        } else {
            Err(Denied::Host {
                host: host.unwrap_or("(none)").to_owned(),
            })
        }
    }

    /// The hosts whose jobs a list shows this principal: `None` for every
    /// host. The hosts its scope names stay in even once unconfigured, so
    /// that their jobs' history remains visible.
    pub fn visible_hosts(&self, hosts: &HostNames) -> Option<Vec<String>> {
        if self.scope.is_everything() {
            return None;
        }
        let mut visible: Vec<String> = hosts
            .names()
            .filter(|host| self.scope.covers(host, hosts.labels_of(host)))
            .map(str::to_owned)
            .collect();
        for host in &self.scope.hosts {
            if !visible.contains(host) {
                visible.push(host.clone());
            }
        }
        Some(visible)
    }

    /// The rule for seeing `job`: its host in the scope.
    pub fn require_sight(&self, job: &crate::Job, hosts: &HostNames) -> Result<(), Denied> {
        self.require_host(job.host.as_deref(), hosts)
    }

    /// The rule for changing `job` (editing, cancelling it): its host in
    /// the scope, and the job the token's own unless it is an admin's. The
    /// scope first: a job outside it is refused for its host, whoever's.
    pub fn require_change(&self, job: &crate::Job, hosts: &HostNames) -> Result<(), Denied> {
        self.require(Role::Run)?;
        self.require_sight(job, hosts)?;
        self.require_owner(job.submitted_by.as_deref())
    }

    /// The rule for changing (editing, cancelling) a job that
    /// `submitted_by` submitted: a `run` token changes its own jobs, an
    /// `admin` any job; a `read` token none.
    pub fn require_owner(&self, submitted_by: Option<&str>) -> Result<(), Denied> {
        self.require(Role::Run)?;
        if self.role == Role::Admin || (self.name.is_some() && self.name.as_deref() == submitted_by)
        {
            Ok(())
        } else {
            Err(Denied::NotItsJob { role: self.role })
        }
    }

    /// The rule for changing a schedule `created_by` made: as for a job
    /// ([`Principal::require_owner`]), said of a schedule.
    pub fn require_schedule_owner(&self, created_by: Option<&str>) -> Result<(), Denied> {
        self.require_owner(created_by)
            .map_err(|denied| match denied {
                Denied::NotItsJob { role } => Denied::NotItsSchedule { role },
                other => other,
            })
    }
}

/// A token as the store keeps it: never its secret, only what it may do.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub name: String,
    pub role: Role,
    #[serde(flatten)]
    pub scope: Scope,
    #[serde(with = "crate::wire_time")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::wire_time::option")]
    pub last_used_at: Option<DateTime<Utc>>,
}

impl Token {
    /// Who a request presenting this token is.
    pub fn principal(&self) -> Principal {
        Principal {
            name: Some(self.name.clone()),
            role: self.role,
            scope: self.scope.clone(),
        }
    }
}

/// The tokens of `RJE_API_TOKENS` are named this and 8 hex digits of a
/// memory-hard hash of their secret (`rje_api::configured_name`): the
/// audit trail and `submitted_by` tell them apart without showing them.
pub const ENV_TOKEN_PREFIX: &str = "env-";

/// The most hosts or labels one token's scope may name.
pub const MAX_SCOPE_ENTRIES: usize = 100;

/// A token to create, checked: only [`NewToken::parse`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    name: String,
    role: Role,
    scope: Scope,
}

impl NewToken {
    /// Checks `{"name", "role", "hosts", "labels"}` (the last two
    /// optional): every bad field named at once. Hosts must be known to
    /// `hosts`; labels are names like hosts'.
    pub fn parse(body: &Value, hosts: &HostNames) -> Result<Self, ValidationError> {
        let mut errors = Collector::default();
        let Some(fields) = body.as_object() else {
            return Err(ValidationError::field("body", "must be a JSON object"));
        };
        for key in fields.keys() {
            if !matches!(key.as_str(), "name" | "role" | "hosts" | "labels") {
                errors.push(key, "is not a field of a token");
            }
        }
        let name = errors.take("name", token_name(fields.get("name")));
        let role = errors.take(
            "role",
            match fields.get("role") {
                Some(Value::String(role)) => {
                    Role::parse(role).ok_or_else(|| "must be read, run or admin".to_owned())
                }
                None => Err("is required".to_owned()),
                Some(_) => Err("must be read, run or admin".to_owned()),
            },
        );
        let host_list = errors.take("hosts", names(fields.get("hosts")));
        if let Some(list) = &host_list {
            for host in list.iter().filter(|host| !hosts.is_known(host)) {
                errors.push("hosts", format!("{host} is not a configured host"));
            }
        }
        let labels = errors.take("labels", names(fields.get("labels")));
        let scoped = host_list.as_ref().is_some_and(|list| !list.is_empty())
            || labels.as_ref().is_some_and(|list| !list.is_empty());
        if role == Some(Role::Admin) && scoped {
            // A scoped admin could make itself an unscoped token.
            errors.push(
                "role",
                "an admin token covers every host: give it no hosts or labels",
            );
        }
        errors.finish()?;
        // Every `take` above succeeded, or `finish` returned the errors.
        let (Some(name), Some(role), Some(hosts), Some(labels)) = (name, role, host_list, labels)
        else {
            return Err(ValidationError::field("body", "is not a token"));
        };
        Ok(Self {
            name,
            role,
            scope: Scope { hosts, labels },
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }
}

/// A token's name: like a host's, safe in URLs and logs.
fn token_name(value: Option<&Value>) -> Result<String, String> {
    match value {
        // Any case: `ENV-…` would read in the audit trail as a configured
        // token's name.
        Some(Value::String(name))
            if name
                .get(..ENV_TOKEN_PREFIX.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(ENV_TOKEN_PREFIX)) =>
        {
            Err(format!(
                "must not begin with {ENV_TOKEN_PREFIX:?}: those name the tokens of RJE_API_TOKENS"
            ))
        }
        // A letter or digit first: `.` and `..` are not names a path can carry.
        Some(Value::String(name))
            if is_valid_host_name(name)
                && name.starts_with(|c: char| c.is_ascii_alphanumeric()) =>
        {
            Ok(name.clone())
        }
        None => Err("is required".to_owned()),
        Some(_) => Err(
            "must be 1 to 64 letters, digits, '-', '_' or '.', beginning with a letter or digit"
                .to_owned(),
        ),
    }
}

/// A list of names (hosts or labels), each like a host's name, without
/// repeats; missing is empty.
fn names(value: Option<&Value>) -> Result<Vec<String>, String> {
    let items = match value {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err("must be a list of names".to_owned()),
    };
    if items.len() > MAX_SCOPE_ENTRIES {
        return Err(format!("may name at most {MAX_SCOPE_ENTRIES}"));
    }
    let mut names: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::String(name) if is_valid_host_name(name) => {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
            _ => return Err("each must be 1 to 64 letters, digits, '-', '_' or '.'".to_owned()),
        }
    }
    Ok(names)
}

/// The most audit entries one page may hold.
pub const MAX_AUDIT_PAGE: u32 = 1000;

/// Which audit entries to read: newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// At most [`MAX_AUDIT_PAGE`].
    pub limit: u32,
    pub offset: u64,
    /// Only this token's entries.
    pub token: Option<String>,
    /// Only this route's (its pattern, as recorded).
    pub route: Option<String>,
}

impl Default for AuditQuery {
    fn default() -> Self {
        Self {
            limit: Self::DEFAULT_LIMIT,
            offset: 0,
            token: None,
            route: None,
        }
    }
}

impl AuditQuery {
    pub const DEFAULT_LIMIT: u32 = 100;
    /// The longest filter worth looking for: a route pattern or a name.
    pub const MAX_FILTER_CHARS: usize = 200;

    /// Checks the query parameters of `GET /audit/`; parameters it does
    /// not know are ignored, as the job list's are. An empty filter is no
    /// filter.
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ValidationError> {
        let mut query = Self::default();
        let mut errors = Collector::default();
        for (name, value) in pairs {
            match name {
                "limit" => {
                    if let Some(limit) = errors.take("limit", page_limit(value, MAX_AUDIT_PAGE)) {
                        query.limit = limit;
                    }
                }
                "offset" => {
                    if let Some(offset) = errors.take("offset", page_offset(value)) {
                        query.offset = offset;
                    }
                }
                "token" | "route" => {
                    let filter =
                        if value.chars().count() > Self::MAX_FILTER_CHARS || value.contains('\0') {
                            Err(format!(
                                "must be at most {} characters, without NUL",
                                Self::MAX_FILTER_CHARS
                            ))
                        } else {
                            // Paths answer with and without their trailing
                            // slash; the trail keeps routes without it.
                            let text = if name == "route" && value.len() > 1 {
                                value.trim_end_matches('/')
                            } else {
                                value
                            };
                            Ok(Some(text.to_owned()).filter(|text| !text.is_empty()))
                        };
                    if let Some(filter) = errors.take(name, filter) {
                        if name == "token" {
                            query.token = filter;
                        } else {
                            query.route = filter;
                        }
                    }
                }
                _ => {}
            }
        }
        errors.finish()?;
        Ok(query)
    }
}

/// Text a client sent, as the audit trail keeps and shows it: everything
/// but printable ASCII written as `\u{…}`. Job ids, host and token names,
/// routes and addresses are printable ASCII; anything else is made up,
/// and an escape that redraws a terminal, a direction override or an
/// invisible character must never make an entry read as another.
pub fn printable(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_graphic() || c == ' ' {
            shown.push(c);
        } else {
            shown.extend(c.escape_unicode());
        }
    }
    shown
}

/// One request that changed something, as the audit trail keeps it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    #[serde(with = "crate::wire_time")]
    pub at: DateTime<Utc>,
    /// The token's name; `null` without tokens.
    pub token: Option<String>,
    /// The client's address.
    pub client: String,
    pub method: String,
    /// The route's pattern (`/jobs/{id}/cancel`), not the path.
    pub route: String,
    /// The job or token it touched.
    pub target: Option<String>,
    /// The HTTP status of the answer.
    pub status: u16,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn principal(role: Role, scope: Scope) -> Principal {
        Principal {
            name: Some("team".into()),
            role,
            scope,
        }
    }

    #[test]
    fn each_role_may_what_those_before_it_may() {
        for (role, allowed) in [
            (Role::Read, vec![Role::Read]),
            (Role::Run, vec![Role::Read, Role::Run]),
            (Role::Admin, vec![Role::Read, Role::Run, Role::Admin]),
        ] {
            let who = principal(role, Scope::everything());
            for needed in [Role::Read, Role::Run, Role::Admin] {
                assert_eq!(
                    who.require(needed).is_ok(),
                    allowed.contains(&needed),
                    "{role} for {needed}"
                );
            }
        }
        assert_eq!(
            principal(Role::Read, Scope::everything())
                .require(Role::Run)
                .unwrap_err()
                .to_string(),
            "this needs the run role; the token's role is read"
        );
    }

    #[test]
    fn a_scope_covers_its_hosts_and_the_hosts_of_its_labels() {
        let scope = Scope {
            hosts: vec!["web-1".into()],
            labels: vec!["eu".into()],
        };
        assert!(scope.covers("web-1", &[]));
        assert!(scope.covers("db-9", &["eu".into(), "db".into()]));
        assert!(!scope.covers("local", &[]), "local only when named");
        assert!(!scope.covers("db-1", &["us".into()]));
        assert!(Scope::everything().covers("local", &[]));
        let hosts = HostNames::new("local", ["web-1", "web-2", "db-1", "db-9"])
            .with_labels("db-9", &["eu".into()]);
        let who = principal(Role::Run, scope);
        assert_eq!(
            who.require_host(Some("db-1"), &hosts)
                .unwrap_err()
                .to_string(),
            "the token's scope does not include host db-1"
        );
        assert!(
            who.require_host(Some("db-9"), &hosts).is_ok(),
            "by its label"
        );
        assert!(!who.sees(None, &hosts), "a job without a host");
        assert!(Principal::anyone().sees(None, &hosts));
        assert_eq!(
            who.visible_hosts(&hosts),
            Some(vec!["db-9".to_owned(), "web-1".to_owned()])
        );
        assert_eq!(Principal::anyone().visible_hosts(&hosts), None);
    }

    #[test]
    fn a_run_token_changes_only_its_own_jobs_and_an_admin_any() {
        let run = principal(Role::Run, Scope::everything());
        assert!(run.require_owner(Some("team")).is_ok());
        assert!(run.require_owner(Some("other")).is_err());
        assert!(run.require_owner(None).is_err());
        let admin = principal(Role::Admin, Scope::everything());
        assert!(admin.require_owner(Some("other")).is_ok());
        assert!(admin.require_owner(None).is_ok());
        let read = principal(Role::Read, Scope::everything());
        assert!(matches!(
            read.require_owner(Some("team")),
            Err(Denied::Role { .. })
        ));
        assert!(Principal::anyone().require_owner(None).is_ok());
    }

    #[test]
    fn a_new_token_is_checked_field_by_field() {
        let hosts = HostNames::new("local", ["web-1"]);
        let token = NewToken::parse(
            &json!({"name": "ci", "role": "run", "hosts": ["web-1", "web-1"], "labels": ["eu"]}),
            &hosts,
        )
        .unwrap();
        assert_eq!(token.name(), "ci");
        assert_eq!(token.role(), Role::Run);
        assert_eq!(token.scope().hosts, ["web-1"]);
        assert_eq!(token.scope().labels, ["eu"]);
        let plain = NewToken::parse(&json!({"name": "viewer", "role": "read"}), &hosts).unwrap();
        assert!(plain.scope().is_everything());

        let err = NewToken::parse(
            &json!({"name": "bad name", "role": "root", "hosts": ["nowhere"], "labels": "eu", "x": 1}),
            &hosts,
        )
        .unwrap_err();
        let fields: Vec<&str> = err.details.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["x", "name", "role", "hosts", "labels"]);
        assert!(NewToken::parse(&json!([]), &hosts).is_err());
        assert!(
            NewToken::parse(
                &json!({"name": "n", "role": "read", "labels": null}),
                &hosts
            )
            .is_err(),
            "a list, or nothing"
        );
        let scoped_admin = NewToken::parse(
            &json!({"name": "a", "role": "admin", "labels": ["eu"]}),
            &hosts,
        )
        .unwrap_err();
        assert_eq!(scoped_admin.details[0].field, "role");
        assert!(NewToken::parse(&json!({"name": "a", "role": "admin"}), &hosts).is_ok());
        for name in ["env-1234abcd", "ENV-1234abcd", "..", ".", "-x"] {
            let refused =
                NewToken::parse(&json!({"name": name, "role": "read"}), &hosts).unwrap_err();
            assert_eq!(refused.details[0].field, "name", "{name}");
        }
        assert!(NewToken::parse(&json!({"role": "read"}), &hosts).is_err());
        let many: Vec<String> = (0..=MAX_SCOPE_ENTRIES).map(|i| format!("l{i}")).collect();
        assert!(
            NewToken::parse(
                &json!({"name": "n", "role": "read", "labels": many}),
                &hosts
            )
            .is_err()
        );
    }

    #[test]
    fn sent_text_is_kept_printable() {
        assert_eq!(printable("web-1 /jobs/{id}"), "web-1 /jobs/{id}");
        assert_eq!(printable("a\u{1b}[2Jb\0c"), "a\\u{1b}[2Jb\\u{0}c");
        assert_eq!(
            printable("\u{202e}\u{61c}\u{feff}é"),
            "\\u{202e}\\u{61c}\\u{feff}\\u{e9}"
        );
    }

    #[test]
    fn an_audit_query_is_checked_and_bounded() {
        let query = AuditQuery::parse([
            ("limit", "5"),
            ("offset", "10"),
            ("token", "ci"),
            ("route", ""),
            ("other", "x"),
        ])
        .unwrap();
        assert_eq!(
            query,
            AuditQuery {
                limit: 5,
                offset: 10,
                token: Some("ci".into()),
                route: None,
            }
        );
        assert_eq!(AuditQuery::parse([]).unwrap().limit, 100);
        assert_eq!(
            AuditQuery::parse([("route", "/jobs/{id}/cancel/")])
                .unwrap()
                .route
                .as_deref(),
            Some("/jobs/{id}/cancel")
        );
        let long = "x".repeat(201);
        let err = AuditQuery::parse([("limit", "0"), ("offset", "-1"), ("route", long.as_str())])
            .unwrap_err();
        let fields: Vec<&str> = err.details.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["limit", "offset", "route"]);
        assert!(AuditQuery::parse([("limit", "1001")]).is_err());
    }

    #[test]
    fn names_on_the_wire_are_the_documented_ones() {
        let token = Token {
            name: "ci".into(),
            role: Role::Run,
            scope: Scope {
                hosts: vec!["web-1".into()],
                labels: vec![],
            },
            created_at: DateTime::from_timestamp(0, 0).unwrap(),
            last_used_at: None,
        };
        let wire = serde_json::to_value(&token).unwrap();
        assert_eq!(wire["role"], "run");
        assert_eq!(wire["hosts"], json!(["web-1"]));
        assert_eq!(wire["labels"], json!([]));
        assert_eq!(wire["last_used_at"], Value::Null);
        assert!(wire.get("secret").is_none());
    }
}

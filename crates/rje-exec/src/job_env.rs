//! The environment a local job starts with. Never rje's own: the server's
//! environment holds its tokens, its database and Redis URLs and the SSH
//! key's passphrase, and a job's output is readable by anyone who may read
//! the job. A job gets the variables that describe the user and the locale
//! (below), those the operator names in `RJE_JOB_ENV_PASS`, and its own
//! `parameters.env`, in that order (a later one wins).

use std::collections::BTreeMap;

/// Passed to every job when rje has them: who the user is, where things
/// are, and how text and time are shown.
pub const ALWAYS_PASSED: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR",
];

/// A job's `PATH` when rje has none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Why a pass list was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JobEnvError {
    #[error(
        "RJE_JOB_ENV_PASS: {0:?} is one of rje's own settings, which never reach a job; \
         give the job the value in parameters.env instead"
    )]
    RjeSetting(String),
    #[error("RJE_JOB_ENV_PASS: {0:?} is not a variable name")]
    BadName(String),
}

/// The variables every local job starts with, taken once from rje's
/// environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobEnvironment {
    base: BTreeMap<String, String>,
}

impl JobEnvironment {
    /// From this process's environment: [`ALWAYS_PASSED`] and every
    /// `LC_*`.
    pub fn inherited() -> Self {
        Self::select(process_vars(), &[])
    }

    /// As [`Self::inherited`], and the names in `pass` too.
    pub fn passing(pass: &[String]) -> Result<Self, JobEnvError> {
        Self::from_vars(process_vars(), pass)
    }

    /// From `vars`, as [`Self::passing`] does.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
        pass: &[String],
    ) -> Result<Self, JobEnvError> {
        for name in pass {
            if is_rje_setting(name) {
                return Err(JobEnvError::RjeSetting(name.clone()));
            }
            if name.is_empty() || name.contains(['=', '\0']) {
                return Err(JobEnvError::BadName(name.clone()));
            }
        }
        Ok(Self::select(vars, pass))
    }

    fn select(vars: impl IntoIterator<Item = (String, String)>, pass: &[String]) -> Self {
        let mut base: BTreeMap<String, String> = vars
            .into_iter()
            .filter(|(name, _)| {
                ALWAYS_PASSED.contains(&name.as_str())
                    || name.starts_with("LC_")
                    || pass.contains(name)
            })
            .collect();
        base.entry("PATH".to_owned())
            .or_insert_with(|| DEFAULT_PATH.to_owned());
        Self { base }
    }

    /// The whole environment of a job whose own variables are `own`.
    pub fn of_job<'a>(
        &'a self,
        own: impl IntoIterator<Item = &'a (String, String)>,
    ) -> BTreeMap<String, String> {
        let mut env = self.base.clone();
        env.extend(own.into_iter().cloned());
        env
    }
}

/// This process's variables that are text (others cannot be passed on
/// faithfully by name anyway).
fn process_vars() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
}

/// A variable that configures rje, or that rje's libraries read for their
/// secrets: never passed to a job, even when asked.
pub fn is_rje_setting(name: &str) -> bool {
    const OWN: &[&str] = &[
        "DATABASE_URL",
        "REDIS_URL",
        "EC2_HOST",
        "EC2_USERNAME",
        "EC2_KEY_PATH",
        "SSH_AUTH_SOCK",
        "PGPASSWORD",
        "PGPASSFILE",
    ];
    name.starts_with("RJE_") || OWN.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_job_gets_the_user_and_locale_and_nothing_of_rjes() {
        let env = JobEnvironment::from_vars(
            vars(&[
                ("PATH", "/bin"),
                ("HOME", "/home/rje"),
                ("LC_ALL", "C.UTF-8"),
                ("RJE_API_TOKENS", "secret"),
                ("DATABASE_URL", "postgres://u:p@db/rje"),
                ("RJE_SSH_KEY_PASSPHRASE", "pass"),
                ("AWS_SECRET_ACCESS_KEY", "k"),
            ]),
            &[],
        )
        .unwrap();
        let job = env.of_job(&[]);
        assert_eq!(
            job.keys().map(String::as_str).collect::<Vec<_>>(),
            ["HOME", "LC_ALL", "PATH"]
        );
    }

    #[test]
    fn passed_names_and_the_jobs_own_come_on_top() {
        let env = JobEnvironment::from_vars(
            vars(&[("HTTP_PROXY", "http://proxy:3128"), ("HOME", "/root")]),
            &["HTTP_PROXY".to_owned(), "NOT_SET".to_owned()],
        )
        .unwrap();
        let own = vars(&[("HOME", "/tmp/job"), ("A", "b")]);
        let job = env.of_job(&own);
        assert_eq!(job["HTTP_PROXY"], "http://proxy:3128");
        assert_eq!(job["HOME"], "/tmp/job");
        assert_eq!(job["A"], "b");
        assert_eq!(
            job["PATH"], DEFAULT_PATH,
            "a default PATH when rje has none"
        );
        assert!(!job.contains_key("NOT_SET"));
    }

    #[test]
    fn rjes_own_settings_cannot_be_passed() {
        for name in [
            "RJE_API_TOKENS",
            "DATABASE_URL",
            "REDIS_URL",
            "RJE_ANYTHING",
        ] {
            assert_eq!(
                JobEnvironment::from_vars(vec![], &[name.to_owned()]),
                Err(JobEnvError::RjeSetting(name.to_owned()))
            );
        }
        assert!(JobEnvironment::from_vars(vec![], &["A=B".to_owned()]).is_err());
    }
}

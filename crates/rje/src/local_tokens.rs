//! `rje tokens create --local`: a token made straight in the database,
//! before any server runs, for the first admin token of a deployment
//! (once the store holds a token, every request needs one, so the first
//! cannot always come through the API). It lives here, not in the client
//! library, so that the client carries no store.

use rje_client::{ClientError, LocalTokens};
use rje_domain::NewToken;
use rje_proto::{TokenCreated, TokenRequest};
use rje_ssh::{Inventory, ProcessEnv};
use rje_store::{
    Access, PostgresStore, SqliteLocation, SqliteStore, StoreError, hash_secret, new_secret,
};

use crate::config::redact;
use crate::store::is_postgres;

/// Creates tokens in the store this process's settings name
/// (`--database-url`, `RJE_DATABASE_URL`, `DATABASE_URL`, as `rje migrate`
/// reads them), migrating it first as `rje migrate` does.
pub struct StoreTokens;

impl LocalTokens for StoreTokens {
    async fn create(
        &self,
        database_url: Option<String>,
        request: TokenRequest,
    ) -> Result<TokenCreated, ClientError> {
        let url = crate::config::database_url(database_url)
            .map_err(|err| ClientError::Config(err.to_string()))?;
        let token = check(&request)?;
        let secret = new_secret();
        let hash = hash_secret(&secret);
        let opened = |err: StoreError| {
            ClientError::Store(format!(
                "cannot open the job store at {}: {err}",
                redact(&url)
            ))
        };
        let created = if is_postgres(&url) {
            let store = PostgresStore::open(&url, true).await.map_err(opened)?;
            store.create_token(&token, &hash).await
        } else {
            let location = SqliteLocation::parse(&url).map_err(opened)?;
            if let SqliteLocation::Memory = location {
                return Err(ClientError::Config(
                    "an in-memory database lives only inside its server: give --database-url \
                     sqlite://PATH"
                        .into(),
                ));
            }
            // No lock taken, as `rje migrate` takes none: SQLite keeps
            // one write from another, and a server running on the file
            // finds the token in the store as it finds one created
            // through the API.
            let store = SqliteStore::open_at(&location).await.map_err(opened)?;
            store.create_token(&token, &hash).await
        };
        let token = created.map_err(|err| match err {
            StoreError::NameTaken(name) => {
                ClientError::Conflict(format!("there is a token named {name:?} already"))
            }
            other => ClientError::Store(format!(
                "cannot create the token in {}: {other}",
                redact(&url)
            )),
        })?;
        Ok(TokenCreated { token, secret })
    }
}

/// The token checked as `POST /tokens/` checks it: by
/// [`NewToken::parse`], against the hosts this process's settings
/// configure (`RJE_HOSTS_FILE` / `RJE_SSH_*`, and `.env`), which are the
/// server's when run where it runs.
fn check(request: &TokenRequest) -> Result<NewToken, ClientError> {
    let hosts = Inventory::from_env(&ProcessEnv)
        .map_err(|err| ClientError::Config(err.to_string()))?
        .names();
    let body = serde_json::to_value(request)
        .map_err(|err| ClientError::BadInput(format!("cannot encode the token: {err}")))?;
    NewToken::parse(&body, &hosts).map_err(|err| ClientError::BadInput(err.to_string()))
}

#[cfg(test)]
mod tests {
    use rje_domain::Role;

    use super::*;

    fn request(name: &str, role: Role, hosts: &[&str]) -> TokenRequest {
        TokenRequest {
            name: name.into(),
            role,
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            labels: Vec::new(),
        }
    }

    #[test]
    fn a_token_is_checked_before_any_store_is_opened() {
        assert!(check(&request("ci", Role::Run, &[])).is_ok());
        assert!(check(&request("ci", Role::Run, &["local"])).is_ok());
        for bad in [
            request("bad name", Role::Run, &[]),
            request("ci", Role::Admin, &["local"]),
        ] {
            let err = check(&bad).unwrap_err();
            assert!(matches!(err, ClientError::BadInput(_)), "{bad:?}: {err}");
        }
    }

    #[tokio::test]
    async fn a_token_lands_in_the_store_and_its_name_once() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("rje.db").display());
        let created = StoreTokens
            .create(Some(url.clone()), request("first", Role::Admin, &[]))
            .await
            .unwrap();
        assert!(created.secret.starts_with("rje_"));
        assert_eq!(created.token.name, "first");
        let store = SqliteStore::open(&url).await.unwrap();
        let found = store
            .token_by_hash(&hash_secret(&created.secret))
            .await
            .unwrap()
            .expect("the store knows the secret");
        assert_eq!(found.role, Role::Admin);
        let again = StoreTokens
            .create(Some(url), request("first", Role::Read, &[]))
            .await
            .unwrap_err();
        assert!(matches!(again, ClientError::Conflict(_)), "{again}");
    }
}

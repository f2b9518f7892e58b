//! The store contract: every `JobStore` implementation must pass these
//! tests unchanged. Each implementation gets a module that instantiates the
//! suite with its own constructor.

mod suite;

mod sqlite {
    use std::sync::Arc;

    use rje_store::{JobStore, SqliteStore};

    /// A fresh database file per test; the directory lives as long as the
    /// store so the file is removed afterwards.
    pub async fn store() -> (Arc<dyn JobStore>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("rje.db").display());
        let store = SqliteStore::open(&url).await.expect("open SQLite store");
        (Arc::new(store), dir)
    }

    crate::store_contract!(store);
}

/// PostgreSQL: each test in a schema of its own, dropped afterwards.
mod postgres {
    use std::sync::Arc;

    use rje_store::{JobStore, PostgresStore};

    pub fn admin_url() -> String {
        std::env::var("RJE_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    /// Drops the test's schema when the test ends.
    pub struct Schema {
        name: String,
    }

    impl Drop for Schema {
        fn drop(&mut self) {
            let name = self.name.clone();
            // Drop runs outside async code: a small runtime of its own.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async {
                    if let Ok(pool) = sqlx::PgPool::connect(&admin_url()).await {
                        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                            .execute(&pool)
                            .await;
                    }
                });
            })
            .join();
        }
    }

    pub async fn store() -> (Arc<dyn JobStore>, Schema) {
        let admin = admin_url();
        let pool = sqlx::PgPool::connect(&admin).await.unwrap_or_else(|err| {
            panic!(
                "PostgreSQL is needed at {admin} ({err}). Start it with \
                 `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, \
                 or point RJE_TEST_DATABASE_URL at one."
            )
        });
        let name = format!("rje_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&pool)
            .await
            .expect("create the test schema");
        let separator = if admin.contains('?') { '&' } else { '?' };
        let url = format!("{admin}{separator}options=-c%20search_path%3D{name}");
        let store = PostgresStore::open(&url, true)
            .await
            .expect("open the PostgreSQL store");
        (Arc::new(store), Schema { name })
    }

    crate::store_contract!(store);
}

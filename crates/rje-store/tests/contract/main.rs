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

    pub async fn store() -> (Arc<dyn JobStore>, rje_testkit::TestSchema) {
        let schema = rje_testkit::TestSchema::create("rje_test").await;
        let store = PostgresStore::open(&schema.url, true)
            .await
            .expect("open the PostgreSQL store");
        (Arc::new(store), schema)
    }

    crate::store_contract!(store);
}

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

    /// The search index is kept beside the jobs by triggers and batches:
    /// after edits and deletes of indexed and unindexed jobs, and keys
    /// reused, FTS5's own check finds it exact.
    #[tokio::test]
    async fn the_search_index_matches_the_jobs() {
        let (store, dir) = store().await;
        crate::suite::search_finds_edited_commands_and_forgets_deleted_ones(store).await;
        let url = format!("sqlite://{}", dir.path().join("rje.db").display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query("INSERT INTO jobs_search (jobs_search, rank) VALUES ('integrity-check', 1)")
            .execute(&pool)
            .await
            .expect("the index holds exactly the indexed jobs' commands");
    }
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

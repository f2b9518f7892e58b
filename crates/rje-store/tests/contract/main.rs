//! The store contract: every `JobStore` implementation must pass these
//! tests unchanged. Each implementation gets a module that instantiates the
//! suite with its own constructor.

mod runs;
mod schedules;
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

    /// The database holds every command and its output: the file, its WAL
    /// and the WAL's index are for the store's user only (0600), whatever
    /// the umask, and a file left open to others is narrowed.
    #[tokio::test]
    async fn the_database_files_are_private_to_their_user() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &std::path::Path| {
            std::fs::metadata(path)
                .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
                .permissions()
                .mode()
                & 0o777
        };
        let (_store, dir) = store().await;
        for name in ["rje.db", "rje.db-wal", "rje.db-shm"] {
            assert_eq!(mode(&dir.path().join(name)), 0o600, "{name}");
        }

        let loose = dir.path().join("loose.db");
        std::fs::write(&loose, b"").unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
        let _store = SqliteStore::open(&format!("sqlite://{}", loose.display()))
            .await
            .expect("open SQLite store");
        assert_eq!(mode(&loose), 0o600, "an existing file open to others");
    }

    /// Spellings of a URL that SQLite (or sqlx) would read as another file
    /// than the plain path are refused, not guessed at.
    #[tokio::test]
    async fn ambiguous_urls_are_refused() {
        use rje_store::{SqliteLocation, StoreError};
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("rje.db");
        let plain = path.display().to_string();
        assert_eq!(
            SqliteLocation::parse(&format!("sqlite://{plain}")).unwrap(),
            SqliteLocation::File(path.clone())
        );
        assert_eq!(
            SqliteLocation::parse(&format!("sqlite:{plain}")).unwrap(),
            SqliteLocation::File(path.clone())
        );
        assert_eq!(
            SqliteLocation::parse("sqlite::memory:").unwrap(),
            SqliteLocation::Memory
        );
        assert_eq!(
            SqliteLocation::parse("sqlite://:memory:").unwrap(),
            SqliteLocation::Memory
        );
        // sqlx's documented forms name the same file, decoded once.
        for url in [
            format!("sqlite://{}/rje%2Edb", dir.path().display()),
            format!("sqlite://{plain}?mode=rwc"),
            format!("sqlite://{plain}?mode=rw&cache=shared"),
        ] {
            assert_eq!(
                SqliteLocation::parse(&url).unwrap(),
                SqliteLocation::File(path.clone()),
                "{url}"
            );
        }
        for url in [
            format!("sqlite://sqlite://{plain}"),
            format!("sqlite://sqlite%3A{plain}"),
            format!("sqlite://file:{plain}"),
            format!("sqlite://{plain}?mode=ro"),
            format!("sqlite://{plain}#frag"),
            "sqlite://".to_owned(),
            "sqlite://?mode=memory".to_owned(),
            format!("postgres://{plain}"),
        ] {
            match SqliteStore::open(&url).await {
                Err(StoreError::Unavailable(message)) => {
                    assert!(message.contains("bad SQLite URL"), "{url}: {message}")
                }
                Err(other) => panic!("{url}: {other}"),
                Ok(_) => panic!("{url} was opened"),
            }
        }
        let made: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(made.is_empty(), "a refused URL made a file: {made:?}");
    }

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

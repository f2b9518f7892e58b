//! A PostgreSQL schema of the test's own on this machine's server, dropped
//! when the test ends.

/// The server the tests use: `RJE_TEST_DATABASE_URL`, or the machine's.
pub fn admin_url() -> String {
    std::env::var("RJE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub struct TestSchema {
    pub name: String,
    /// The admin URL with the schema as its search path.
    pub url: String,
}

impl TestSchema {
    /// Creates `{prefix}_{random}`; fails saying how to start PostgreSQL
    /// when it is not there.
    pub async fn create(prefix: &str) -> Self {
        let admin = admin_url();
        let pool = sqlx::PgPool::connect(&admin).await.unwrap_or_else(|err| {
            panic!(
                "PostgreSQL is needed at {admin} ({err}). Start it with `pg_ctlcluster \
                 --skip-systemctl-redirect $(ls /etc/postgresql) main start`, or point \
                 RJE_TEST_DATABASE_URL at one."
            )
        });
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&pool)
            .await
            .expect("create the test schema");
        pool.close().await;
        let separator = if admin.contains('?') { '&' } else { '?' };
        let url = format!("{admin}{separator}options=-c%20search_path%3D{name}");
        Self { name, url }
    }

    /// Runs `sql` (one or more statements) in the schema: a fault or a fix
    /// a test makes on the real server.
    pub async fn execute(&self, sql: &str) {
        let pool = sqlx::PgPool::connect(&self.url)
            .await
            .expect("connect to the test schema");
        sqlx::raw_sql(sql)
            .execute(&pool)
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"));
        pool.close().await;
    }

    /// Locks `table` against every other session until the lock is
    /// released: a store that stalls, on demand.
    pub async fn lock_table(&self, table: &str) -> HeldLock {
        let pool = sqlx::PgPool::connect(&self.url)
            .await
            .expect("connect to the test schema");
        let mut transaction = pool.begin().await.expect("a transaction");
        sqlx::raw_sql(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
            .execute(&mut *transaction)
            .await
            .unwrap_or_else(|err| panic!("lock {table}: {err}"));
        HeldLock(transaction)
    }
}

/// A table lock [`TestSchema::lock_table`] holds.
pub struct HeldLock(sqlx::Transaction<'static, sqlx::Postgres>);

impl HeldLock {
    pub async fn release(self) {
        self.0.rollback().await.expect("release the lock");
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async code: a small runtime of its own, on a
        // thread of its own so that it may run inside a test's runtime.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
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

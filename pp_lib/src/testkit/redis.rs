//! A key prefix of the test's own on the shared Redis.

use std::time::Duration;

use crate::config::SecretUrl;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The Redis the tests use: `REDIS_URL`, else the local one `make setup` starts.
pub fn redis_url() -> SecretUrl {
    let _ = crate::config::load_dotenv();
    let text = std::env::var("REDIS_URL")
        .unwrap_or_else(|_| crate::config::DEFAULT_LOCAL_REDIS_URL.to_owned());
    text.parse()
        .unwrap_or_else(|error| panic!("REDIS_URL is not usable: {error}"))
}

/// A key prefix of its own in the tests' Redis, so tests share one server and run in parallel;
/// every key under it is deleted when the value is dropped. Creating one checks that Redis
/// answers, and fails the test naming `make setup` when it does not.
#[derive(Debug)]
pub struct TestRedis {
    url: SecretUrl,
    prefix: String,
}

impl TestRedis {
    pub fn create() -> TestRedis {
        let redis = TestRedis {
            prefix: super::unique_name(),
            url: redis_url(),
        };
        let mut conn = redis.connection();
        let pong: String = redis::cmd("PING")
            .query(&mut conn)
            .unwrap_or_else(|error| panic!("Redis at {} does not answer PING: {error}", redis.url));
        assert_eq!(pong, "PONG");
        redis
    }

    pub fn url(&self) -> &SecretUrl {
        &self.url
    }

    /// Every key of this test starts with this.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Settings for a client of this Redis under this test's prefix.
    pub fn config(&self) -> crate::config::RedisConfig {
        crate::config::RedisConfig {
            url: Some(self.url.clone()),
            prefix: self.prefix.clone(),
            ..crate::config::RedisConfig::default()
        }
    }

    /// A blocking connection, for a test to look at the keys itself.
    pub fn connection(&self) -> redis::Connection {
        self.try_connection().unwrap_or_else(|error| {
            panic!(
                "cannot connect to Redis at {}: {error}. Start it with `make setup`.",
                self.url
            )
        })
    }

    fn try_connection(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(self.url.expose())?;
        let conn = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        // No call may hang a test, nor its cleanup.
        conn.set_read_timeout(Some(CONNECT_TIMEOUT))?;
        conn.set_write_timeout(Some(CONNECT_TIMEOUT))?;
        Ok(conn)
    }

    /// This test's keys.
    pub fn keys(&self) -> Vec<String> {
        self.try_keys()
            .unwrap_or_else(|error| panic!("listing the test's Redis keys: {error}"))
    }

    fn try_keys(&self) -> redis::RedisResult<Vec<String>> {
        let mut conn = self.try_connection()?;
        let keys: redis::Iter<'_, String> = redis::cmd("SCAN")
            .cursor_arg(0)
            .arg("MATCH")
            .arg(format!("{}:*", self.prefix))
            .arg("COUNT")
            .arg(1000)
            .clone()
            .iter(&mut conn)?;
        Ok(keys.filter_map(Result::ok).collect())
    }

    /// Deletes this test's keys.
    fn delete_keys(&self) -> redis::RedisResult<()> {
        let keys = self.try_keys()?;
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(&keys)
                .query::<u64>(&mut self.try_connection()?)?;
        }
        Ok(())
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        // Never a panic here: a test that stopped Redis (or the fault run) is dropped too.
        if let Err(error) = self.delete_keys() {
            eprintln!(
                "warning: could not delete the keys {}:* in Redis: {error}",
                self.prefix
            );
        }
    }
}

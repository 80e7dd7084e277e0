//! `[cluster]`: several instances sharing cooldowns, limits, quotas and usage through Redis.

use std::time::Duration;

use super::{Checker, raw, valid_id};
use crate::config::{ClusterConfig, ServerConfig, defaults};
use crate::secret::Secret;

/// Validates `[cluster]`; a build without the `cluster` feature refuses the table.
pub(super) fn cluster(c: &mut Checker, raw: raw::Cluster, server: &ServerConfig) -> ClusterConfig {
    #[cfg(not(feature = "cluster"))]
    c.err(
        "cluster",
        "this build has no `cluster` feature (on by default, left out by --no-default-features): \
         remove [cluster] to run this instance alone, or run a build with the feature",
    );
    let redis = raw.redis.unwrap_or_default();
    if redis.is_empty() {
        c.err(
            "cluster.redis",
            "required: the Redis URL, e.g. \"redis://127.0.0.1:6379/0\" or \"${REDIS_URL}\"",
        );
    } else {
        // Never repeats the URL (it may hold a password).
        #[cfg(feature = "cluster")]
        if let Err(e) = crate::config::RedisUrl::parse(&redis) {
            c.err("cluster.redis", e);
        }
    }
    let instance_id = match raw.instance_id {
        Some(id) => {
            if id.is_empty()
                || id.len() > 128
                || id.bytes().any(|b| {
                    b.is_ascii_whitespace() || b.is_ascii_control() || b"|{}@".contains(&b)
                })
            {
                c.err(
                    "cluster.instance_id",
                    "1-128 characters without spaces, control characters, '|', '@', '{' or '}'",
                );
            }
            id
        }
        None => format!("{}:{}", hostname(), server.listen.port()),
    };
    let prefix = raw
        .prefix
        .unwrap_or_else(|| defaults::CLUSTER_PREFIX.into());
    if !valid_id(&prefix) {
        c.err("cluster.prefix", "1-64 letters, digits, '.', '_' or '-'");
    }
    let sync_interval = c.duration(
        "cluster.sync_interval",
        raw.sync_interval,
        defaults::CLUSTER_SYNC,
        Duration::from_millis(10),
    );
    if sync_interval > Duration::from_secs(10) {
        c.err(
            "cluster.sync_interval",
            "at most 10s: shared cooldowns and limits lag by it",
        );
    }
    ClusterConfig {
        redis: Secret::new(redis),
        instance_id,
        sync_interval,
        prefix,
    }
}

/// The machine's host name (the kernel's), for the default instance id.
fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .map(|h| h.to_string_lossy().trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
        .replace(|c: char| c.is_ascii_whitespace() || "|{}@".contains(c), "-")
}

#[cfg(all(test, feature = "cluster"))]
mod tests {
    use std::time::Duration;

    use crate::config::test_support::{MINIMAL, env};
    use crate::config::{ClusterConfig, Config, Problem};

    fn cluster(table: &str) -> Result<Option<ClusterConfig>, Vec<Problem>> {
        let text = format!("{MINIMAL}\n{table}\n");
        Config::parse(
            &text,
            &env(&[("REDIS_URL", "redis://:s3cret@10.0.0.5:6379/2")]),
        )
        .map(|c| c.cluster)
        .map_err(|e| e.problems)
    }

    #[test]
    fn cluster_defaults_env_urls_and_a_password_never_shown() {
        assert_eq!(cluster("").unwrap(), None, "alone without [cluster]");
        let c = cluster("[cluster]\nredis = \"${REDIS_URL}\"")
            .unwrap()
            .expect("cluster on");
        assert_eq!(c.sync_interval, Duration::from_millis(100));
        assert_eq!(c.prefix, "sar");
        assert!(c.instance_id.ends_with(":7601"), "{}", c.instance_id);
        assert_eq!(c.redis.expose(), "redis://:s3cret@10.0.0.5:6379/2");
        assert_eq!(c.redis_shown(), "redis://:***@10.0.0.5:6379/2");
        assert!(!format!("{c:?}").contains("s3cret"));
        let c = cluster(
            "[cluster]\nredis = \"rediss://u:p@r.example:6380\"\ninstance_id = \"gw-2\"\n\
             sync_interval = \"250ms\"\nprefix = \"prod-eu\"",
        )
        .unwrap()
        .expect("cluster on");
        assert_eq!(
            (c.instance_id.as_str(), c.sync_interval, c.prefix.as_str()),
            ("gw-2", Duration::from_millis(250), "prod-eu")
        );
        assert_eq!(c.redis_shown(), "rediss://u:***@r.example:6380");
        let c = cluster("[cluster]\nredis = \"redis+unix:///run/redis.sock?db=1&pass=s3cret\"")
            .unwrap()
            .expect("cluster on");
        assert_eq!(c.redis_shown(), "redis+unix:///run/redis.sock?***");
    }

    #[test]
    fn cluster_problems_name_their_keys() {
        let paths = |table: &str| -> Vec<String> {
            cluster(table)
                .unwrap_err()
                .into_iter()
                .map(|p| p.path)
                .collect()
        };
        assert_eq!(paths("[cluster]"), ["cluster.redis"]);
        assert_eq!(paths("[cluster]\nredis = \"http://x\""), ["cluster.redis"]);
        assert_eq!(
            paths("[cluster]\nredis = \"redis://[::1\""),
            ["cluster.redis"]
        );
        assert_eq!(
            paths("[cluster]\nredis = \"redis+sentinel://s1:26379\""),
            ["cluster.redis"],
            "a sentinel URL names the service"
        );
        assert_eq!(
            paths("[cluster]\nredis = \"redis+cluster://\""),
            ["cluster.redis"]
        );
        for ok in [
            "redis+sentinel://:pw@s1:26379,s2:26379/mymaster/2",
            "rediss+sentinel://s1:26379/mymaster",
            "redis+cluster://n1:7000,n2:7001",
            "rediss+cluster://u:pw@n1:7000",
        ] {
            assert!(
                cluster(&format!("[cluster]\nredis = \"{ok}\"")).is_ok(),
                "{ok}"
            );
        }
        let url = "redis = \"redis://127.0.0.1\"";
        assert_eq!(
            paths(&format!("[cluster]\n{url}\ninstance_id = \"a b\"")),
            ["cluster.instance_id"]
        );
        assert_eq!(
            paths(&format!("[cluster]\n{url}\ninstance_id = \"{{x}}\"")),
            ["cluster.instance_id"]
        );
        assert_eq!(
            paths(&format!("[cluster]\n{url}\nsync_interval = \"1ms\"")),
            ["cluster.sync_interval"]
        );
        assert_eq!(
            paths(&format!("[cluster]\n{url}\nsync_interval = \"1m\"")),
            ["cluster.sync_interval"]
        );
        assert_eq!(
            paths(&format!("[cluster]\n{url}\nprefix = \"a:b\"")),
            ["cluster.prefix"]
        );
        assert_eq!(
            paths(&format!("[cluster]\n{url}\nhosts = 1")),
            ["cluster.hosts"]
        );
    }
}

#[cfg(all(test, not(feature = "cluster")))]
mod tests {
    use crate::config::test_support::{MINIMAL, problems};

    #[test]
    fn without_the_feature_a_cluster_table_is_refused_by_name() {
        let p = problems(&format!(
            "{MINIMAL}\n[cluster]\nredis = \"redis://127.0.0.1\"\n"
        ));
        assert_eq!(p[0].path, "cluster");
        assert!(p[0].message.contains("`cluster` feature"), "{p:?}");
    }
}

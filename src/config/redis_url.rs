//! `[cluster] redis`: the Redis URL read into the shape of the deployment it names — one Redis,
//! a primary that Sentinels name, or a Redis Cluster — as plain data. `cluster::helper` builds
//! its clients from a [`RedisUrl`]; the URL syntax itself is checked here with the `redis`
//! crate's own parser, so a URL `check` accepts is one the helper can open.
//!
//! Invariants: a URL may hold a password, so every part that can carry one is a [`Secret`], and
//! no error message repeats the URL. Not here: connecting, asking Sentinels (`cluster::helper`).

use crate::secret::Secret;

/// The schemes `[cluster] redis` takes.
const SCHEMES: &[&str] = &[
    "redis://",
    "rediss://",
    "redis+unix://",
    "unix://",
    "redis+sentinel://",
    "rediss+sentinel://",
    "redis+cluster://",
    "rediss+cluster://",
];

/// Where the cluster helper connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RedisUrl {
    /// `redis://`, `rediss://`, `redis+unix://` or `unix://`: one Redis, the URL as written.
    Direct(Secret),
    /// `redis+sentinel://[user:password@]host:port[,host:port…]/<service>[/<db>]`
    /// (`rediss+sentinel` for TLS to the primary): the Sentinels are asked for the primary of
    /// `service` at every connect; the credentials and db are the primary's.
    Sentinel {
        /// `redis://host:port` of each Sentinel (no credentials: those are the primary's).
        sentinels: Vec<String>,
        /// The primary's service name.
        service: String,
        /// `scheme://[auth@]`, to put in front of the address a Sentinel names.
        scheme_auth: Secret,
        /// The primary's db (`"0"` when the URL names none).
        db: String,
    },
    /// `redis+cluster://[user:password@]host:port[,host:port…]` (`rediss+cluster` for TLS): the
    /// seed nodes of a Redis Cluster, each a whole `scheme://[auth@]host:port` URL.
    Cluster(Vec<Secret>),
}

impl RedisUrl {
    /// Reads a `[cluster] redis` URL; the error says what is wrong without repeating it.
    pub(crate) fn parse(url: &str) -> Result<RedisUrl, String> {
        if !SCHEMES.iter().any(|s| url.starts_with(s)) {
            return Err("use a redis://, rediss:// (TLS), redis+unix://, redis+sentinel://host:26379,…/service or redis+cluster://host:port,… URL".into());
        }
        if let Some((scheme_auth, hosts)) = compound(url, "cluster") {
            if hosts.trim_end_matches('/').contains(['/', '?']) {
                return Err(
                    "a cluster URL is nodes only (redis+cluster://host:port,host:port): a cluster has no db".into(),
                );
            }
            let nodes: Vec<String> = hosts
                .trim_end_matches('/')
                .split(',')
                .filter(|h| !h.is_empty())
                .map(|h| format!("{scheme_auth}{h}"))
                .collect();
            if nodes.is_empty() {
                return Err("a cluster URL lists at least one host:port".into());
            }
            for n in &nodes {
                usable(n).map_err(|kind| format!("not a usable cluster URL ({kind})"))?;
            }
            return Ok(RedisUrl::Cluster(
                nodes.into_iter().map(Secret::new).collect(),
            ));
        }
        let Some((scheme_auth, rest)) = compound(url, "sentinel") else {
            usable(url).map_err(|kind| format!("not a usable Redis URL ({kind})"))?;
            return Ok(RedisUrl::Direct(Secret::new(url)));
        };
        let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
        let mut path = path.split('/').filter(|p| !p.is_empty());
        let service = path.next().ok_or(
            "a Sentinel URL names the primary's service: redis+sentinel://host:26379/mymaster",
        )?;
        let db = path.next().unwrap_or("0");
        let sentinels: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| format!("redis://{h}"))
            .collect();
        if sentinels.is_empty() {
            return Err("a Sentinel URL lists at least one host:port".into());
        }
        // The primary's settings must read as a plain URL once an address is put in.
        usable(&format!("{scheme_auth}sentinel-primary:6379/{db}"))
            .map_err(|kind| format!("not a usable Sentinel URL ({kind})"))?;
        Ok(RedisUrl::Sentinel {
            sentinels,
            service: service.to_string(),
            scheme_auth: Secret::new(scheme_auth),
            db: db.to_string(),
        })
    }
}

/// A `redis+<kind>://` or `rediss+<kind>://` (TLS) URL: the `scheme://[user:password@]` to put
/// in front of each address it leads to, and what follows the credentials.
fn compound<'u>(url: &'u str, kind: &str) -> Option<(String, &'u str)> {
    let (scheme, rest) = ["redis", "rediss"].into_iter().find_map(|scheme| {
        let rest = url
            .strip_prefix(scheme)?
            .strip_prefix('+')?
            .strip_prefix(kind)?
            .strip_prefix("://")?;
        Some((scheme, rest))
    })?;
    Some(match rest.rsplit_once('@') {
        Some((auth, rest)) => (format!("{scheme}://{auth}@"), rest),
        None => (format!("{scheme}://"), rest),
    })
}

/// Whether the `redis` crate reads `url` as connection settings (what its clients do first);
/// the error kind when not, never the URL.
fn usable(url: &str) -> Result<(), String> {
    redis::IntoConnectionInfo::into_connection_info(url)
        .map(drop)
        .map_err(|e| format!("{:?}", e.kind()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_shapes_and_their_parts() {
        assert_eq!(
            RedisUrl::parse("redis://:pw@10.0.0.5:6379/2").unwrap(),
            RedisUrl::Direct(Secret::new("redis://:pw@10.0.0.5:6379/2"))
        );
        assert_eq!(
            RedisUrl::parse("rediss+sentinel://u:pw@s1:26379,s2:26379/mymaster/3").unwrap(),
            RedisUrl::Sentinel {
                sentinels: vec!["redis://s1:26379".into(), "redis://s2:26379".into()],
                service: "mymaster".into(),
                scheme_auth: Secret::new("rediss://u:pw@"),
                db: "3".into(),
            }
        );
        assert_eq!(
            RedisUrl::parse("redis+cluster://:pw@n1:7000,n2:7001/").unwrap(),
            RedisUrl::Cluster(vec![
                Secret::new("redis://:pw@n1:7000"),
                Secret::new("redis://:pw@n2:7001")
            ])
        );
        let shown = format!(
            "{:?}",
            RedisUrl::parse("redis+cluster://:s3cret@n1:7000").unwrap()
        );
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn errors_never_repeat_the_url() {
        for url in [
            "http://:s3cret@x",
            "redis://:s3cret@[::1",
            "redis+sentinel://:s3cret@s1:26379",
            "redis+sentinel://:s3cret@/mymaster",
            "redis+cluster://:s3cret@",
            "redis+cluster://:s3cret@n1:7000/0",
        ] {
            let e = RedisUrl::parse(url).unwrap_err();
            assert!(!e.contains("s3cret"), "{url}: {e}");
        }
    }
}

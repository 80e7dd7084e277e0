//! Unit tests of the fleet's quota judgement and usage bookkeeping (no Redis: the helper's
//! connection attempts fail quietly).

use std::time::{Duration, Instant};

use super::quota::Grant;
use super::usage::Usage;
use super::*;
use crate::ledger::Judge;

fn fleet() -> Fleet {
    let cfg = ClusterConfig {
        redis: crate::config::Secret::new("redis://127.0.0.1:1/0"),
        instance_id: "me".into(),
        sync_interval: Duration::from_millis(100),
        prefix: "t".into(),
    };
    Fleet::start(&cfg).expect("helper thread starts")
}

fn grant(held: f64, total: f64) -> Grant {
    Grant {
        held: Some(held),
        total,
        last_own: 0.0,
        last_at: Instant::now(),
        rate: 0.0,
        granted: None,
        asked: None,
        starved: None,
    }
}

#[test]
fn a_quota_is_spent_on_the_fleets_estimate_or_on_a_used_up_grant_once_all_is_granted() {
    let mut f = fleet();
    // Alone so far: own counts decide.
    assert!(!f.spent("cost", 0.9, 1.0));
    assert!(f.spent("cost", 1.0, 1.0));
    // The fleet's sum included 0.3 of ours; others spent 0.5: 0.5 + own.
    f.quota_pushed.insert("cost".into(), 0.3);
    f.fleet_quota.insert("cost".into(), 0.8);
    assert!((f.total("cost", 0.4) - 0.9).abs() < 1e-9);
    assert!(!f.spent("cost", 0.4, 1.0));
    assert!(f.spent("cost", 0.5, 1.0));
    // Connected, some of the limit still ungranted: the estimate alone decides.
    f.connected = true;
    f.grants.insert("cost".into(), grant(0.2, 0.7));
    assert!(!f.spent("cost", 0.3, 1.0));
    // Everything granted: this instance stops at what it holds …
    f.grants.insert("cost".into(), grant(0.35, 1.0));
    assert!(!f.spent("cost", 0.3, 1.0));
    assert!(f.spent("cost", 0.35, 1.0));
    // … but only while Redis answers; away from it, the estimate again.
    f.connected = false;
    assert!(!f.spent("cost", 0.35, 1.0));
}

#[test]
fn usage_changes_go_out_once_and_again_after_a_failed_round() {
    let mut f = fleet();
    let mut u = Usage::default();
    u.touch(1, "ch-1").requests += 2;
    u.touch(1, "ch-1").cost += 0.5;
    u.touch(4, "team").requests += 1;
    let (fields, names) = u.take();
    assert_eq!(
        names.len(),
        2,
        "one entry per (group, name), however often touched"
    );
    assert!(fields.contains(&("channel|ch-1|requests".to_string(), 2.0)));
    assert!(fields.contains(&("channel|ch-1|cost".to_string(), 0.5)));
    assert!(fields.contains(&("key|team|requests".to_string(), 1.0)));
    assert!(u.take().0.is_empty(), "nothing changed since");
    u.retake(names);
    assert_eq!(
        u.take().0.len(),
        12,
        "a failed round's changes go out again"
    );
    // A restarted instance reads its own totals back and keeps the larger.
    f.usage.touch(2, "m").requests = 3;
    f.restore_usage("model|m|requests", 10.0);
    f.restore_usage("model|m|requests", 1.0);
    f.restore_usage("nonsense", 1.0);
    assert_eq!(f.usage.groups[2]["m"].requests, 10);
}

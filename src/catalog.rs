//! The immutable index of channels × models inside a snapshot: which channels serve a model id
//! or alias (and under which upstream id), and the pre-rendered `/v1/models` documents.
//!
//! Invariants: built once per snapshot by the control thread; lookups on workers are a single
//! hash probe and never allocate. Model listings are rendered here, not per request.
//! Not here: ranking (`routing`), tag queries and capability data (the routing issue extends
//! this index with interned tags and bitsets).

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::json;
use crate::snapshot::{Channel, Mode};

/// One way to serve a requested model: a channel and the model id to send it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Index into `Snapshot::channels`.
    pub channel: u32,
    /// The model id the upstream expects.
    pub upstream_model: Box<str>,
}

/// Models → candidates, plus listings.
#[derive(Debug, Default)]
pub struct Catalog {
    by_name: HashMap<Box<str>, Box<[Candidate]>>,
    /// Client-facing model ids of enabled channels, de-duplicated, in config order.
    names: Box<[Box<str>]>,
    models_json: Box<[u8]>,
    model_json: HashMap<Box<str>, Box<[u8]>>,
}

impl Catalog {
    /// Indexes `channels` (already built from `cfg`, same order).
    pub fn build(cfg: &Config, channels: &[Channel], mode: Mode) -> Catalog {
        let mut by_name: HashMap<Box<str>, Vec<Candidate>> = HashMap::new();
        let mut names: Vec<Box<str>> = Vec::new();
        let mut owners: Vec<&str> = Vec::new();
        for (idx, (ch_cfg, ch)) in cfg.channels.iter().zip(channels).enumerate() {
            let served = ch_cfg
                .models
                .iter()
                .map(|m| (m.as_str(), m.as_str()))
                .chain(ch_cfg.aliases.iter().map(|(a, t)| (a.as_str(), t.as_str())));
            for (name, upstream) in served {
                let list = by_name.entry(name.into()).or_default();
                if list.iter().any(|c| c.channel == idx as u32) {
                    continue;
                }
                list.push(Candidate {
                    channel: idx as u32,
                    upstream_model: upstream.into(),
                });
                if ch.enabled && !names.iter().any(|n| &**n == name) {
                    names.push(name.into());
                    owners.push(if mode == Mode::Demo {
                        "demo"
                    } else {
                        &ch.provider
                    });
                }
            }
        }
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut models_json = Vec::with_capacity(64 + names.len() * 80);
        models_json.extend_from_slice(b"{\"object\":\"list\",\"data\":[");
        let mut model_json = HashMap::with_capacity(names.len());
        for (i, (name, owner)) in names.iter().zip(&owners).enumerate() {
            let mut one = Vec::with_capacity(80);
            one.extend_from_slice(b"{\"id\":");
            json::write_str(&mut one, name);
            one.extend_from_slice(b",\"object\":\"model\",\"created\":");
            json::write_u64(&mut one, created);
            one.extend_from_slice(b",\"owned_by\":");
            json::write_str(&mut one, owner);
            one.push(b'}');
            if i > 0 {
                models_json.push(b',');
            }
            models_json.extend_from_slice(&one);
            model_json.insert(name.clone(), one.into_boxed_slice());
        }
        models_json.extend_from_slice(b"]}");
        Catalog {
            by_name: by_name
                .into_iter()
                .map(|(k, v)| (k, v.into_boxed_slice()))
                .collect(),
            names: names.into(),
            models_json: models_json.into(),
            model_json,
        }
    }

    /// Candidates serving `model` (exact id or alias), enabled or not.
    pub fn lookup(&self, model: &str) -> Option<&[Candidate]> {
        self.by_name.get(model).map(|c| &**c)
    }

    /// The `/v1/models` body.
    pub fn models_json(&self) -> &[u8] {
        &self.models_json
    }

    /// The `/v1/models/{id}` body.
    pub fn model_json(&self, id: &str) -> Option<&[u8]> {
        self.model_json.get(id).map(|b| &**b)
    }

    /// Client-facing model ids of enabled channels.
    pub fn names(&self) -> &[Box<str>] {
        &self.names
    }
}

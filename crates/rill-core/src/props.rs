//! Bucket types and bucket properties, with Riak's names, defaults, JSON form and rules.
//!
//! Every request reads its replication and quorum settings from the bucket's properties, and
//! clients read and write those properties over HTTP (`/types/T/buckets/B/props`) and Protocol
//! Buffers. This module holds the typed properties ([`BucketProps`]), the symbolic quorum values
//! ([`Quorum`]: `one`, `quorum`, `all`, `default` or a number) and their resolution against
//! `n_val`, the JSON Riak shows and accepts, and the rules that keep a bucket type coherent:
//! values are checked one by one with clear messages, combinations are checked as a whole
//! (a datatype needs `allow_mult`, `last_write_wins` excludes `dvv_enabled`, ...), and some
//! properties are fixed once a type exists (`datatype`, `consistent`, `write_once`).
//!
//! A bucket inside a type inherits the type's properties and may override the mutable ones:
//! callers keep the bucket's own overrides (the JSON properties set on it) and compute its
//! effective properties with [`BucketProps::with_overrides`], so later changes to the type
//! reach every bucket that did not override them.
//!
//! The serde derives are the storage form (compact under postcard); the Riak HTTP form is
//! [`BucketProps::to_json`] and [`BucketProps::apply_json_patch`].

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value, json};

use crate::ring::NodeName;

/// A quorum setting: symbolic, or a number of replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Quorum {
    One,
    Quorum,
    All,
    /// Use the bucket's value (only meaningful in a request).
    Default,
    N(u32),
}

/// Which quorum parameter a value is for (used in messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum QuorumParam {
    R,
    W,
    Dw,
    Rw,
    Pr,
    Pw,
    NodeConfirms,
}

impl QuorumParam {
    pub const ALL: [QuorumParam; 7] = [
        QuorumParam::R,
        QuorumParam::W,
        QuorumParam::Dw,
        QuorumParam::Rw,
        QuorumParam::Pr,
        QuorumParam::Pw,
        QuorumParam::NodeConfirms,
    ];

    /// The property / query parameter name.
    pub fn as_str(self) -> &'static str {
        match self {
            QuorumParam::R => "r",
            QuorumParam::W => "w",
            QuorumParam::Dw => "dw",
            QuorumParam::Rw => "rw",
            QuorumParam::Pr => "pr",
            QuorumParam::Pw => "pw",
            QuorumParam::NodeConfirms => "node_confirms",
        }
    }

    /// Whether zero is a meaningful value (it is for the "durable"/"primary"/node counts, which
    /// default to 0 = no requirement; a read or write needs at least one reply).
    pub fn allows_zero(self) -> bool {
        !matches!(self, QuorumParam::R | QuorumParam::W | QuorumParam::Rw)
    }
}

impl fmt::Display for QuorumParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a quorum value was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum QuorumError {
    #[error("invalid quorum value {0:?}: expected one, quorum, all, default or an integer")]
    Invalid(String),
    /// A number larger than the bucket's `n_val` (Riak's `n_val_violation`).
    #[error("{param} value {value} is unsatisfiable with the bucket's n_val of {n_val}")]
    NValViolation {
        param: QuorumParam,
        value: u32,
        n_val: u32,
    },
    /// `default` was asked for but the bucket's own value is `default` too.
    #[error("{param} is `default` but the bucket defines no value for it")]
    NoDefault { param: QuorumParam },
}

impl Quorum {
    /// Protocol Buffers encodings of the symbolic values (other values are literal).
    pub const PB_ONE: u32 = u32::MAX - 1;
    pub const PB_QUORUM: u32 = u32::MAX - 2;
    pub const PB_ALL: u32 = u32::MAX - 3;
    pub const PB_DEFAULT: u32 = u32::MAX - 4;

    pub fn from_pb(value: u32) -> Quorum {
        match value {
            Quorum::PB_ONE => Quorum::One,
            Quorum::PB_QUORUM => Quorum::Quorum,
            Quorum::PB_ALL => Quorum::All,
            Quorum::PB_DEFAULT => Quorum::Default,
            n => Quorum::N(n),
        }
    }

    pub fn to_pb(self) -> u32 {
        match self {
            Quorum::One => Quorum::PB_ONE,
            Quorum::Quorum => Quorum::PB_QUORUM,
            Quorum::All => Quorum::PB_ALL,
            Quorum::Default => Quorum::PB_DEFAULT,
            Quorum::N(n) => n,
        }
    }

    /// From a JSON value: one of the symbolic strings, a decimal string, or a non-negative
    /// integer.
    pub fn from_json(value: &Value) -> Result<Quorum, QuorumError> {
        match value {
            Value::String(s) => s.parse(),
            Value::Number(n) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Quorum::N)
                .ok_or_else(|| QuorumError::Invalid(n.to_string())),
            other => Err(QuorumError::Invalid(other.to_string())),
        }
    }

    /// The JSON Riak shows: the symbolic name as a string, or the number.
    pub fn to_json(self) -> Value {
        match self {
            Quorum::N(n) => Value::from(n),
            symbolic => Value::from(symbolic.to_string()),
        }
    }

    /// The number of replies this setting asks for with `n` replicas; `default` takes the
    /// bucket's value. A number above `n` can never be met and is refused as Riak does.
    pub fn resolve(self, param: QuorumParam, n: u32, default: Quorum) -> Result<u32, QuorumError> {
        let value = match self {
            Quorum::One => 1,
            Quorum::Quorum => n / 2 + 1,
            Quorum::All => n,
            Quorum::N(k) => k,
            Quorum::Default if default == Quorum::Default => {
                return Err(QuorumError::NoDefault { param });
            }
            Quorum::Default => return default.resolve(param, n, Quorum::Default),
        };
        if value > n {
            return Err(QuorumError::NValViolation {
                param,
                value,
                n_val: n,
            });
        }
        Ok(value)
    }
}

impl FromStr for Quorum {
    type Err = QuorumError;

    /// Accepts `one`, `quorum`, `all`, `default` (any case) and decimal numbers.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "one" => Ok(Quorum::One),
            "quorum" => Ok(Quorum::Quorum),
            "all" => Ok(Quorum::All),
            "default" => Ok(Quorum::Default),
            num => num
                .parse::<u32>()
                .map(Quorum::N)
                .map_err(|_| QuorumError::Invalid(s.to_string())),
        }
    }
}

impl fmt::Display for Quorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quorum::One => f.write_str("one"),
            Quorum::Quorum => f.write_str("quorum"),
            Quorum::All => f.write_str("all"),
            Quorum::Default => f.write_str("default"),
            Quorum::N(n) => write!(f, "{n}"),
        }
    }
}

/// Human-readable formats (JSON) get Riak's form; binary formats get the compact PB number.
impl Serialize for Quorum {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            self.to_json().serialize(s)
        } else {
            s.serialize_u32(self.to_pb())
        }
    }
}

impl<'de> Deserialize<'de> for Quorum {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let value = Value::deserialize(d)?;
            Quorum::from_json(&value).map_err(serde::de::Error::custom)
        } else {
            u32::deserialize(d).map(Quorum::from_pb)
        }
    }
}

/// The convergent data type a bucket type holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Datatype {
    Counter,
    Set,
    Map,
    Hll,
    Gset,
}

impl Datatype {
    pub fn as_str(self) -> &'static str {
        match self {
            Datatype::Counter => "counter",
            Datatype::Set => "set",
            Datatype::Map => "map",
            Datatype::Hll => "hll",
            Datatype::Gset => "gset",
        }
    }

    pub fn parse(s: &str) -> Option<Datatype> {
        [
            Datatype::Counter,
            Datatype::Set,
            Datatype::Map,
            Datatype::Hll,
            Datatype::Gset,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }
}

/// When a write is flushed to disk (Riak 3's `sync_on_write`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SyncOnWrite {
    /// As the storage backend is configured.
    Backend,
    /// Flush on the coordinating vnode only.
    One,
    /// Flush on every replica.
    All,
}

impl SyncOnWrite {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncOnWrite::Backend => "backend",
            SyncOnWrite::One => "one",
            SyncOnWrite::All => "all",
        }
    }
}

/// An Erlang `{Module, Function}` reference, kept because clients read and write it
/// (`chash_keyfun`, `linkfun`, commit hooks); Rill runs its own equivalents.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModFun {
    pub module: String,
    pub function: String,
}

impl ModFun {
    pub fn new(module: &str, function: &str) -> Self {
        ModFun {
            module: module.to_string(),
            function: function.to_string(),
        }
    }

    fn to_json(&self) -> Value {
        json!({"mod": self.module, "fun": self.function})
    }

    fn from_json(value: &Value) -> Option<ModFun> {
        let obj = value.as_object()?;
        let module = obj.get("mod")?.as_str()?;
        let function = obj.get("fun")?.as_str()?;
        Some(ModFun::new(module, function))
    }
}

/// A pre- or post-commit hook: an Erlang function or a named (JavaScript) function.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Hook {
    ModFun(ModFun),
    Named(String),
}

impl Hook {
    fn to_json(&self) -> Value {
        match self {
            Hook::ModFun(mf) => mf.to_json(),
            Hook::Named(name) => json!({ "name": name }),
        }
    }

    fn from_json(value: &Value) -> Option<Hook> {
        if let Some(mf) = ModFun::from_json(value) {
            return Some(Hook::ModFun(mf));
        }
        let name = value.as_object()?.get("name")?.as_str()?;
        Some(Hook::Named(name.to_string()))
    }
}

/// One property that was refused, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropError {
    pub property: String,
    pub message: String,
}

/// Every property of a request that was refused (Riak reports them all at once).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{}", self.describe())]
pub struct PropsError {
    pub errors: Vec<PropError>,
}

impl PropsError {
    fn one(property: &str, message: impl Into<String>) -> Self {
        PropsError {
            errors: vec![PropError {
                property: property.into(),
                message: message.into(),
            }],
        }
    }

    /// Riak's 400 body for a refused props PUT: `{"property": "reason", ...}`.
    pub fn to_json(&self) -> Value {
        let map: Map<String, Value> = self
            .errors
            .iter()
            .map(|e| (e.property.clone(), Value::from(e.message.clone())))
            .collect();
        Value::Object(map)
    }

    /// The same refusals with `context` before each message (for example the bucket that a
    /// bucket type's change would break).
    pub fn within(self, context: &str) -> PropsError {
        PropsError {
            errors: self
                .errors
                .into_iter()
                .map(|e| PropError {
                    property: e.property,
                    message: format!("{context}: {}", e.message),
                })
                .collect(),
        }
    }

    fn describe(&self) -> String {
        let parts: Vec<String> = self
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.property, e.message))
            .collect();
        parts.join("; ")
    }
}

/// Collects refusals while a patch is checked, so all of them are reported together.
#[derive(Default)]
struct Errors(Vec<PropError>);

impl Errors {
    fn add(&mut self, property: &str, message: impl Into<String>) {
        self.0.push(PropError {
            property: property.to_string(),
            message: message.into(),
        });
    }

    fn into_result(self) -> Result<(), PropsError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(PropsError { errors: self.0 })
        }
    }
}

/// Default HyperLogLog precision for `hll` bucket types.
pub const DEFAULT_HLL_PRECISION: u8 = 14;
/// Accepted HyperLogLog precisions.
pub const HLL_PRECISION_RANGE: std::ops::RangeInclusive<u8> = 4..=16;

/// The properties of a bucket type, or the effective properties of a bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketProps {
    pub n_val: u32,
    pub allow_mult: bool,
    pub last_write_wins: bool,
    pub dvv_enabled: bool,
    pub r: Quorum,
    pub w: Quorum,
    pub dw: Quorum,
    pub rw: Quorum,
    pub pr: Quorum,
    pub pw: Quorum,
    pub node_confirms: Quorum,
    pub basic_quorum: bool,
    pub notfound_ok: bool,
    pub precommit: Vec<Hook>,
    pub postcommit: Vec<Hook>,
    pub chash_keyfun: ModFun,
    pub linkfun: ModFun,
    pub old_vclock: u64,
    pub young_vclock: u64,
    pub big_vclock: u64,
    pub small_vclock: u64,
    pub sync_on_write: SyncOnWrite,
    pub write_once: bool,
    pub consistent: bool,
    pub datatype: Option<Datatype>,
    /// Only for `hll` types (14 unless chosen at creation; may only decrease).
    pub hll_precision: Option<u8>,
    pub backend: Option<String>,
    /// Bucket type state: `None` for the default type, else whether the type is active.
    pub active: Option<bool>,
    /// Bucket type state: the node that created the type.
    pub claimant: Option<NodeName>,
    /// Properties Rill does not interpret but keeps and shows, as Riak does (for example
    /// `search_index`), each as JSON text.
    pub extra: BTreeMap<String, String>,
}

/// Riak's default key hash function; the only one Rill implements.
const STD_KEYFUN: (&str, &str) = ("riak_core_util", "chash_std_keyfun");
const STD_LINKFUN: (&str, &str) = ("riak_kv_wm_link_walker", "mapreduce_linkfun");

impl Default for BucketProps {
    fn default() -> Self {
        BucketProps::default_type()
    }
}

impl BucketProps {
    /// The properties of the `default` bucket type (buckets addressed without a type).
    pub fn default_type() -> Self {
        BucketProps {
            n_val: 3,
            allow_mult: false,
            last_write_wins: false,
            dvv_enabled: false,
            r: Quorum::Quorum,
            w: Quorum::Quorum,
            dw: Quorum::Quorum,
            rw: Quorum::Quorum,
            pr: Quorum::N(0),
            pw: Quorum::N(0),
            node_confirms: Quorum::N(0),
            basic_quorum: false,
            notfound_ok: true,
            precommit: Vec::new(),
            postcommit: Vec::new(),
            chash_keyfun: ModFun::new(STD_KEYFUN.0, STD_KEYFUN.1),
            linkfun: ModFun::new(STD_LINKFUN.0, STD_LINKFUN.1),
            old_vclock: 86400,
            young_vclock: 20,
            big_vclock: 50,
            small_vclock: 50,
            sync_on_write: SyncOnWrite::Backend,
            write_once: false,
            consistent: false,
            datatype: None,
            hll_precision: None,
            backend: None,
            active: None,
            claimant: None,
            extra: BTreeMap::new(),
        }
    }

    /// The starting properties of a newly created bucket type: the defaults, but with siblings
    /// and dotted version vectors on.
    pub fn new_type_defaults() -> Self {
        BucketProps {
            allow_mult: true,
            dvv_enabled: true,
            ..BucketProps::default_type()
        }
    }

    /// Properties for a bucket type being created by `claimant` with the JSON properties
    /// `patch` (which may set the creation-only `datatype`, `consistent`, `write_once`). The
    /// type starts inactive.
    pub fn create_type(patch: &Value, claimant: NodeName) -> Result<BucketProps, PropsError> {
        let base = BucketProps {
            active: Some(false),
            claimant: Some(claimant),
            ..BucketProps::new_type_defaults()
        };
        base.apply_json_patch(patch)
    }

    /// A user's update of these properties with JSON `patch`: the patch is checked
    /// ([`BucketProps::apply_json_patch`]) and the result must respect the properties that are
    /// fixed once a type exists ([`validate_type_update`]).
    pub fn update(&self, patch: &Value) -> Result<BucketProps, PropsError> {
        let new = self.apply_json_patch(patch)?;
        validate_type_update(self, &new)?;
        Ok(new)
    }

    /// The effective properties of a bucket of this type that sets `overrides` (its own JSON
    /// properties): the type's values, overridden where the bucket set them, with the
    /// immutable ones unchangeable.
    pub fn with_overrides(
        &self,
        overrides: &Map<String, Value>,
    ) -> Result<BucketProps, PropsError> {
        self.update(&Value::Object(overrides.clone()))
    }

    /// The value this bucket holds for a quorum parameter.
    pub fn quorum(&self, param: QuorumParam) -> Quorum {
        match param {
            QuorumParam::R => self.r,
            QuorumParam::W => self.w,
            QuorumParam::Dw => self.dw,
            QuorumParam::Rw => self.rw,
            QuorumParam::Pr => self.pr,
            QuorumParam::Pw => self.pw,
            QuorumParam::NodeConfirms => self.node_confirms,
        }
    }

    fn quorum_mut(&mut self, param: QuorumParam) -> &mut Quorum {
        match param {
            QuorumParam::R => &mut self.r,
            QuorumParam::W => &mut self.w,
            QuorumParam::Dw => &mut self.dw,
            QuorumParam::Rw => &mut self.rw,
            QuorumParam::Pr => &mut self.pr,
            QuorumParam::Pw => &mut self.pw,
            QuorumParam::NodeConfirms => &mut self.node_confirms,
        }
    }

    /// The number of replies a request's `requested` value means for this bucket (request
    /// value, else the bucket's, resolved against `n_val`).
    pub fn resolve_quorum(
        &self,
        param: QuorumParam,
        requested: Quorum,
    ) -> Result<u32, QuorumError> {
        requested.resolve(param, self.n_val, self.quorum(param))
    }

    /// Riak's HTTP body for GET props: `{"props": {"name": ..., "allow_mult": ..., ...}}`
    /// (`name` present for a bucket, absent for a bucket type).
    pub fn to_json(&self, bucket_name: Option<&str>) -> Value {
        let mut m = Map::new();
        if let Some(name) = bucket_name {
            m.insert("name".into(), name.into());
        }
        for (key, text) in &self.extra {
            if let Ok(value) = serde_json::from_str(text) {
                m.insert(key.clone(), value);
            }
        }
        m.insert("n_val".into(), self.n_val.into());
        m.insert("allow_mult".into(), self.allow_mult.into());
        m.insert("last_write_wins".into(), self.last_write_wins.into());
        m.insert("dvv_enabled".into(), self.dvv_enabled.into());
        for param in QuorumParam::ALL {
            m.insert(param.as_str().into(), self.quorum(param).to_json());
        }
        m.insert("basic_quorum".into(), self.basic_quorum.into());
        m.insert("notfound_ok".into(), self.notfound_ok.into());
        let hooks = |hs: &[Hook]| Value::Array(hs.iter().map(Hook::to_json).collect());
        m.insert("precommit".into(), hooks(&self.precommit));
        m.insert("postcommit".into(), hooks(&self.postcommit));
        m.insert("chash_keyfun".into(), self.chash_keyfun.to_json());
        m.insert("linkfun".into(), self.linkfun.to_json());
        m.insert("old_vclock".into(), self.old_vclock.into());
        m.insert("young_vclock".into(), self.young_vclock.into());
        m.insert("big_vclock".into(), self.big_vclock.into());
        m.insert("small_vclock".into(), self.small_vclock.into());
        m.insert("sync_on_write".into(), self.sync_on_write.as_str().into());
        m.insert("write_once".into(), self.write_once.into());
        if self.consistent {
            m.insert("consistent".into(), true.into());
        }
        if let Some(dt) = self.datatype {
            m.insert("datatype".into(), dt.as_str().into());
        }
        if let Some(p) = self.hll_precision {
            m.insert("hll_precision".into(), p.into());
        }
        if let Some(b) = &self.backend {
            m.insert("backend".into(), b.clone().into());
        }
        if let Some(a) = self.active {
            m.insert("active".into(), a.into());
        }
        if let Some(c) = &self.claimant {
            m.insert("claimant".into(), c.as_str().into());
        }
        json!({ "props": m })
    }

    /// These properties with the JSON object `patch` applied (the object inside a PUT's
    /// `{"props": ...}`, see [`put_body_props`]). Each value is checked, then the combination;
    /// every problem is reported. Unknown properties are kept as they are, like Riak keeps
    /// them; `name` is ignored. Fixed-after-creation rules are [`validate_type_update`]'s.
    pub fn apply_json_patch(&self, patch: &Value) -> Result<BucketProps, PropsError> {
        let obj = patch
            .as_object()
            .ok_or_else(|| PropsError::one("props", "bucket properties must be a JSON object"))?;
        let mut new = self.clone();
        let mut errors = Errors::default();
        for (key, value) in obj {
            if let Err(message) = new.set_one(key, value) {
                errors.add(key, message);
            }
        }
        new.check_combination(obj, &mut errors);
        errors.into_result()?;
        if new.datatype == Some(Datatype::Hll) {
            new.hll_precision.get_or_insert(DEFAULT_HLL_PRECISION);
        } else {
            // Riak ignores a precision on anything but an hll type.
            new.hll_precision = None;
        }
        Ok(new)
    }

    /// Sets one property from its JSON value, or says why not.
    fn set_one(&mut self, key: &str, value: &Value) -> Result<(), String> {
        match key {
            "name" => Ok(()),
            "n_val" => set(
                &mut self.n_val,
                positive_u32(value).ok_or("n_val must be a positive integer")?,
            ),
            "allow_mult" => set(&mut self.allow_mult, boolean(key, value)?),
            "last_write_wins" => set(&mut self.last_write_wins, boolean(key, value)?),
            "dvv_enabled" => set(&mut self.dvv_enabled, boolean(key, value)?),
            "basic_quorum" => set(&mut self.basic_quorum, boolean(key, value)?),
            "notfound_ok" => set(&mut self.notfound_ok, boolean(key, value)?),
            "write_once" => set(&mut self.write_once, boolean(key, value)?),
            "consistent" => set(&mut self.consistent, boolean(key, value)?),
            "old_vclock" => set(&mut self.old_vclock, positive_u64(key, value)?),
            "big_vclock" => set(&mut self.big_vclock, positive_u64(key, value)?),
            "small_vclock" => set(&mut self.small_vclock, positive_u64(key, value)?),
            "young_vclock" => set(
                &mut self.young_vclock,
                value
                    .as_u64()
                    .ok_or("young_vclock must be a non-negative integer")?,
            ),
            "precommit" => set(&mut self.precommit, hooks(key, value)?),
            "postcommit" => set(&mut self.postcommit, hooks(key, value)?),
            "chash_keyfun" => set(&mut self.chash_keyfun, keyfun(value)?),
            "linkfun" => set(
                &mut self.linkfun,
                ModFun::from_json(value)
                    .ok_or(r#"linkfun must be an object {"mod": ..., "fun": ...}"#)?,
            ),
            "sync_on_write" => set(&mut self.sync_on_write, sync_on_write(value)?),
            "datatype" => set(&mut self.datatype, Some(datatype(value)?)),
            "hll_precision" => set(&mut self.hll_precision, Some(hll_precision(value)?)),
            "backend" => set(
                &mut self.backend,
                Some(
                    value
                        .as_str()
                        .ok_or("backend must be a string")?
                        .to_string(),
                ),
            ),
            "active" => match (boolean(key, value)?, self.active) {
                (wanted, Some(current)) if wanted == current => Ok(()),
                _ => Err(
                    "the active property cannot be modified (activate the bucket type instead)"
                        .into(),
                ),
            },
            "claimant" => match (value.as_str(), &self.claimant) {
                (Some(wanted), Some(current)) if wanted == current.as_str() => Ok(()),
                _ => Err("the claimant property cannot be modified".into()),
            },
            other => match QuorumParam::ALL.into_iter().find(|p| p.as_str() == other) {
                Some(param) => set(self.quorum_mut(param), bucket_quorum(param, value)?),
                None => set_extra(&mut self.extra, other, value),
            },
        }
    }

    /// The quorum properties given as numbers larger than `n_val` (no request could ever
    /// gather that many replies), each with the reason.
    fn quorums_over_n_val(&self) -> impl Iterator<Item = (QuorumParam, String)> + '_ {
        QuorumParam::ALL
            .into_iter()
            .filter_map(|param| match self.quorum(param) {
                Quorum::N(k) if k > self.n_val => Some((
                    param,
                    format!("{param} of {k} is larger than n_val ({})", self.n_val),
                )),
                _ => None,
            })
    }

    /// Checks that a bucket with these properties can serve requests on a ring of
    /// `ring_size` partitions: `n_val` between 1 and the partition count (a preference list
    /// holds distinct partitions, so a larger one could never be filled and every request
    /// would fail its quorum), and no quorum given as a number larger than `n_val`. Each
    /// refusal names the property, its value and the limit.
    ///
    /// Properties are checked this way whenever they are set or a bucket type is created or
    /// updated; properties stored before the check existed are reported by the same check.
    pub fn check_servable(&self, ring_size: u32) -> Result<(), PropsError> {
        let mut errors = Errors::default();
        if self.n_val == 0 {
            errors.add("n_val", "n_val must be a positive integer");
        } else if self.n_val > ring_size {
            errors.add(
                "n_val",
                format!(
                    "n_val of {} is larger than the ring's {ring_size} partitions",
                    self.n_val
                ),
            );
        }
        for (param, message) in self.quorums_over_n_val() {
            errors.add(param.as_str(), message);
        }
        errors.into_result()
    }

    /// Rules about combinations of values, checked on the patched properties.
    fn check_combination(&self, patch: &Map<String, Value>, errors: &mut Errors) {
        for (param, message) in self.quorums_over_n_val() {
            // Report it against the property the patch touched (n_val if only that changed).
            let key = if patch.contains_key(param.as_str()) || !patch.contains_key("n_val") {
                param.as_str()
            } else {
                "n_val"
            };
            errors.add(key, message);
        }
        if self.last_write_wins && self.dvv_enabled {
            errors.add(
                "dvv_enabled",
                "If last_write_wins is true, dvv_enabled must be false",
            );
        }
        if self.datatype.is_some() && !self.allow_mult {
            errors.add("allow_mult", "Data Type buckets must be allow_mult=true");
        }
        if self.write_once && self.consistent {
            errors.add(
                "consistent",
                "Write once buckets must not be consistent=true",
            );
        }
        if self.write_once && self.datatype.is_some() {
            errors.add(
                "datatype",
                "Write once buckets must not have datatype defined",
            );
        }
    }
}

/// Checks the change of a bucket type's (or bucket's) properties from `old` to `new` against the
/// properties that are fixed once a type exists: `datatype`, `consistent` and `write_once`
/// never change (so the default type can never gain them), a consistent type keeps its
/// `n_val`, an `hll` type's precision may only decrease, and `active`/`claimant` are the
/// cluster's to set. Both sides are assumed individually valid.
pub fn validate_type_update(old: &BucketProps, new: &BucketProps) -> Result<(), PropsError> {
    let mut errors = Errors::default();
    if old.datatype != new.datatype {
        errors.add(
            "datatype",
            "the datatype of a bucket type cannot be changed after it is created",
        );
    }
    if old.consistent != new.consistent {
        errors.add(
            "consistent",
            "the consistent property cannot be changed after the bucket type is created",
        );
    }
    if old.write_once != new.write_once {
        errors.add(
            "write_once",
            "the write_once property cannot be changed after the bucket type is created",
        );
    }
    if old.consistent && old.n_val != new.n_val {
        errors.add(
            "n_val",
            "n_val cannot be modified for existing consistent type",
        );
    }
    if let (Some(o), Some(n)) = (old.hll_precision, new.hll_precision)
        && n > o
    {
        errors.add(
            "hll_precision",
            format!("hll_precision can be reduced but never increased (currently {o})"),
        );
    }
    if old.active != new.active {
        errors.add("active", "the active property cannot be modified");
    }
    if old.claimant != new.claimant {
        errors.add("claimant", "the claimant property cannot be modified");
    }
    errors.into_result()
}

/// Checks a bucket type name: Riak reserves `default` (always present) and `any`.
pub fn validate_type_name(name: &str) -> Result<(), PropsError> {
    match name {
        "" => Err(PropsError::one(
            "name",
            "bucket type name must not be empty",
        )),
        "default" => Err(PropsError::one(
            "name",
            "the default bucket type always exists and cannot be created",
        )),
        "any" => Err(PropsError::one(
            "name",
            "The name 'any' may not be used for bucket types",
        )),
        _ => Ok(()),
    }
}

/// The properties object of a props PUT body, `{"props": {...}}`, with Riak's message when the
/// body has another shape.
pub fn put_body_props(body: &[u8]) -> Result<Map<String, Value>, PropsError> {
    let shape = || {
        PropsError::one(
            "props",
            r#"bucket PUT must be a JSON object of the form: {"props":{...bucket properties...}}"#,
        )
    };
    let mut value: Value = serde_json::from_slice(body).map_err(|_| shape())?;
    match value.get_mut("props").map(Value::take) {
        Some(Value::Object(props)) => Ok(props),
        _ => Err(shape()),
    }
}

fn set<T>(slot: &mut T, value: T) -> Result<(), String> {
    *slot = value;
    Ok(())
}

fn set_extra(extra: &mut BTreeMap<String, String>, key: &str, value: &Value) -> Result<(), String> {
    extra.insert(key.to_string(), value.to_string());
    Ok(())
}

/// Riak's boolean coercion: JSON booleans, "true"/"false" in any case, integers (> 0 is true).
fn boolean(key: &str, value: &Value) -> Result<bool, String> {
    let parsed = match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        Value::Number(n) => n
            .as_i64()
            .map(|i| i > 0)
            .or_else(|| n.as_u64().map(|_| true)),
        _ => None,
    };
    parsed.ok_or_else(|| format!("{key} must be a boolean"))
}

fn positive_u32(value: &Value) -> Option<u32> {
    value
        .as_u64()
        .filter(|&n| n > 0)
        .and_then(|n| u32::try_from(n).ok())
}

fn positive_u64(key: &str, value: &Value) -> Result<u64, String> {
    value
        .as_u64()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{key} must be a positive integer"))
}

/// A quorum property's value: symbolic (`default` is circular in a bucket's own properties) or
/// a number, at least 1 for r, w and rw.
fn bucket_quorum(param: QuorumParam, value: &Value) -> Result<Quorum, String> {
    let floor = if param.allows_zero() {
        "a non-negative"
    } else {
        "a positive"
    };
    let message =
        || format!("{param} must be one, quorum, all or {floor} integer no greater than n_val");
    match Quorum::from_json(value) {
        Ok(Quorum::Default) => Err(format!("{param} cannot be `default` in bucket properties")),
        Ok(Quorum::N(0)) if !param.allows_zero() => Err(message()),
        Ok(q) => Ok(q),
        Err(_) => Err(message()),
    }
}

fn hooks(key: &str, value: &Value) -> Result<Vec<Hook>, String> {
    let message = || {
        format!(
            r#"{key} must be a list of hooks, each {{"mod": ..., "fun": ...}} or {{"name": ...}}"#
        )
    };
    let list = value.as_array().ok_or_else(message)?;
    list.iter()
        .map(|h| Hook::from_json(h).ok_or_else(message))
        .collect()
}

fn keyfun(value: &Value) -> Result<ModFun, String> {
    match ModFun::from_json(value) {
        Some(mf) if mf.module == STD_KEYFUN.0 && mf.function == STD_KEYFUN.1 => Ok(mf),
        _ => Err(format!(
            r#"only the standard key hash is supported: {{"mod": "{}", "fun": "{}"}}"#,
            STD_KEYFUN.0, STD_KEYFUN.1
        )),
    }
}

fn sync_on_write(value: &Value) -> Result<SyncOnWrite, String> {
    match value.as_str() {
        Some("backend") => Ok(SyncOnWrite::Backend),
        Some("one") => Ok(SyncOnWrite::One),
        Some("all") => Ok(SyncOnWrite::All),
        _ => Err("sync_on_write must be one of backend, one, all".into()),
    }
}

fn datatype(value: &Value) -> Result<Datatype, String> {
    value.as_str().and_then(Datatype::parse).ok_or_else(|| {
        format!("{value} is not a supported datatype (counter, set, map, hll, gset)")
    })
}

/// An integer (or decimal string, as Riak's HTTP layer passes it) in 4..=16.
fn hll_precision(value: &Value) -> Result<u8, String> {
    let n = match value {
        Value::String(s) => s.parse::<u64>().ok(),
        other => other.as_u64(),
    };
    n.and_then(|n| u8::try_from(n).ok())
        .filter(|p| HLL_PRECISION_RANGE.contains(p))
        .ok_or_else(|| {
            format!("{value} is not a valid hll_precision: it must be an integer between 4 and 16")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn props_of(v: &Value) -> &Map<String, Value> {
        v["props"].as_object().unwrap()
    }

    fn err_props(e: &PropsError) -> Vec<&str> {
        e.errors.iter().map(|e| e.property.as_str()).collect()
    }

    fn hll_type() -> BucketProps {
        BucketProps::create_type(&json!({"datatype": "hll"}), NodeName::from("n@h")).unwrap()
    }

    #[test]
    fn pb_encoding_of_symbolic_quorums() {
        assert_eq!(Quorum::One.to_pb(), 4294967294);
        assert_eq!(Quorum::Quorum.to_pb(), 4294967293);
        assert_eq!(Quorum::All.to_pb(), 4294967292);
        assert_eq!(Quorum::Default.to_pb(), 4294967291);
        assert_eq!(Quorum::from_pb(2), Quorum::N(2));
        assert_eq!(Quorum::from_pb(4294967293), Quorum::Quorum);
    }

    #[test]
    fn quorum_parsing() {
        assert_eq!("one".parse(), Ok(Quorum::One));
        assert_eq!("QUORUM".parse(), Ok(Quorum::Quorum));
        assert_eq!("all".parse(), Ok(Quorum::All));
        assert_eq!("default".parse(), Ok(Quorum::Default));
        assert_eq!("3".parse(), Ok(Quorum::N(3)));
        assert!("three".parse::<Quorum>().is_err());
        assert!("-1".parse::<Quorum>().is_err());
        assert_eq!(Quorum::from_json(&json!(2)), Ok(Quorum::N(2)));
        assert_eq!(Quorum::from_json(&json!("all")), Ok(Quorum::All));
        assert!(Quorum::from_json(&json!(-2)).is_err());
        assert!(Quorum::from_json(&json!(1.5)).is_err());
        assert!(Quorum::from_json(&json!(true)).is_err());
        assert_eq!(Quorum::Quorum.to_json(), json!("quorum"));
        assert_eq!(Quorum::N(0).to_json(), json!(0));
    }

    #[test]
    fn quorum_resolution() {
        let r = QuorumParam::R;
        assert_eq!(Quorum::One.resolve(r, 3, Quorum::All), Ok(1));
        assert_eq!(Quorum::Quorum.resolve(r, 3, Quorum::All), Ok(2));
        assert_eq!(Quorum::Quorum.resolve(r, 4, Quorum::All), Ok(3));
        assert_eq!(Quorum::Quorum.resolve(r, 5, Quorum::All), Ok(3));
        assert_eq!(Quorum::All.resolve(r, 5, Quorum::One), Ok(5));
        assert_eq!(Quorum::Default.resolve(r, 5, Quorum::One), Ok(1));
        assert_eq!(Quorum::Default.resolve(r, 5, Quorum::N(4)), Ok(4));
        assert_eq!(Quorum::N(3).resolve(r, 3, Quorum::One), Ok(3));
        assert_eq!(
            Quorum::N(4).resolve(QuorumParam::W, 3, Quorum::One),
            Err(QuorumError::NValViolation {
                param: QuorumParam::W,
                value: 4,
                n_val: 3
            })
        );
        assert_eq!(
            Quorum::Default.resolve(r, 3, Quorum::N(5)),
            Err(QuorumError::NValViolation {
                param: r,
                value: 5,
                n_val: 3
            })
        );
        assert_eq!(
            Quorum::Default.resolve(r, 3, Quorum::Default),
            Err(QuorumError::NoDefault { param: r })
        );
        let props = BucketProps::default_type();
        assert_eq!(
            props.resolve_quorum(QuorumParam::Pw, Quorum::Default),
            Ok(0)
        );
        assert_eq!(props.resolve_quorum(QuorumParam::R, Quorum::Default), Ok(2));
    }

    #[test]
    fn default_type_json_matches_riak() {
        let v = BucketProps::default_type().to_json(Some("b"));
        let expected = json!({"props": {
            "name": "b", "allow_mult": false, "basic_quorum": false, "big_vclock": 50,
            "chash_keyfun": {"mod": "riak_core_util", "fun": "chash_std_keyfun"},
            "dvv_enabled": false, "dw": "quorum", "last_write_wins": false,
            "linkfun": {"mod": "riak_kv_wm_link_walker", "fun": "mapreduce_linkfun"},
            "n_val": 3, "node_confirms": 0, "notfound_ok": true, "old_vclock": 86400,
            "postcommit": [], "pr": 0, "precommit": [], "pw": 0, "r": "quorum", "rw": "quorum",
            "small_vclock": 50, "sync_on_write": "backend", "w": "quorum", "write_once": false,
            "young_vclock": 20
        }});
        assert_eq!(v, expected);
    }

    #[test]
    fn created_types_differ_only_in_siblings_and_state() {
        let t = BucketProps::create_type(&json!({}), NodeName::from("rill@127.0.0.1")).unwrap();
        assert!(t.allow_mult && t.dvv_enabled);
        assert_eq!(t.active, Some(false));
        let v = t.to_json(None);
        let p = props_of(&v);
        assert_eq!(p["claimant"], json!("rill@127.0.0.1"));
        assert_eq!(p["active"], json!(false));
        assert!(!p.contains_key("name"));
        let reset = BucketProps {
            active: None,
            claimant: None,
            allow_mult: false,
            dvv_enabled: false,
            ..t
        };
        assert_eq!(reset, BucketProps::default_type());
    }

    #[test]
    fn patch_sets_values_and_round_trips() {
        let patch = json!({
            "n_val": 5, "allow_mult": "TRUE", "r": 2, "w": "all", "dw": "one", "pr": 1,
            "basic_quorum": 1, "notfound_ok": false, "precommit": [{"mod": "m", "fun": "f"}],
            "postcommit": [{"name": "js"}], "old_vclock": 10, "young_vclock": 0,
            "sync_on_write": "all", "backend": "fast", "search_index": "idx", "name": "ignored"
        });
        let p = BucketProps::default_type()
            .apply_json_patch(&patch)
            .unwrap();
        assert_eq!(
            (p.n_val, p.allow_mult, p.r, p.w, p.dw, p.pr),
            (
                5,
                true,
                Quorum::N(2),
                Quorum::All,
                Quorum::One,
                Quorum::N(1)
            )
        );
        assert!(p.basic_quorum && !p.notfound_ok);
        assert_eq!(p.precommit, vec![Hook::ModFun(ModFun::new("m", "f"))]);
        assert_eq!(p.postcommit, vec![Hook::Named("js".into())]);
        assert_eq!(p.sync_on_write, SyncOnWrite::All);
        assert_eq!(p.backend.as_deref(), Some("fast"));
        let shown = p.to_json(Some("b"));
        assert_eq!(props_of(&shown)["search_index"], json!("idx"));
        assert_eq!(props_of(&shown)["name"], json!("b"));
        // What GET shows, PUT back, gives the same properties.
        let again = BucketProps::default_type()
            .apply_json_patch(&shown["props"])
            .unwrap();
        assert_eq!(again, p);
    }

    #[test]
    fn every_bad_value_is_reported() {
        let patch = json!({
            "n_val": 0, "allow_mult": "maybe", "r": "most", "w": 0, "pr": -1,
            "old_vclock": 0, "young_vclock": -1, "precommit": "x", "postcommit": [1],
            "linkfun": "f", "chash_keyfun": {"mod": "m", "fun": "f"}, "sync_on_write": "never",
            "datatype": "tree", "hll_precision": 17, "backend": 3
        });
        let e = BucketProps::default_type()
            .apply_json_patch(&patch)
            .unwrap_err();
        let mut got = err_props(&e);
        got.sort();
        let mut keys: Vec<&str> = patch
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(got, keys);
        assert_eq!(
            e.to_json()["n_val"],
            json!("n_val must be a positive integer")
        );
        assert!(
            BucketProps::default_type()
                .apply_json_patch(&json!([1]))
                .is_err()
        );
    }

    #[test]
    fn booleans_take_riaks_spellings() {
        let on = BucketProps::default_type()
            .apply_json_patch(&json!({"allow_mult": true}))
            .unwrap();
        let off = BucketProps::default_type();
        assert!(on.allow_mult && !off.allow_mult);
        for (value, expected) in [
            (json!(false), false),
            (json!("false"), false),
            (json!("FALSE"), false),
            (json!(0), false),
            (json!(-1), false),
            (json!(true), true),
            (json!("True"), true),
            (json!(1), true),
            (json!(7), true),
        ] {
            // From the opposite value, so a patch that changed nothing would show.
            let base = if expected { &off } else { &on };
            let p = base
                .apply_json_patch(&json!({ "allow_mult": value }))
                .unwrap();
            assert_eq!(p.allow_mult, expected, "allow_mult: {value}");
        }
        let e = off
            .apply_json_patch(&json!({"allow_mult": "no"}))
            .unwrap_err();
        assert_eq!(
            e.to_json()["allow_mult"],
            json!("allow_mult must be a boolean")
        );
    }

    #[test]
    fn sync_on_write_takes_each_of_its_three_values() {
        let base = BucketProps::default_type();
        assert_eq!(base.sync_on_write, SyncOnWrite::Backend);
        for (value, expected) in [
            ("one", SyncOnWrite::One),
            ("all", SyncOnWrite::All),
            ("backend", SyncOnWrite::Backend),
        ] {
            let from = if expected == SyncOnWrite::Backend {
                base.apply_json_patch(&json!({"sync_on_write": "one"}))
                    .unwrap()
            } else {
                base.clone()
            };
            let p = from
                .apply_json_patch(&json!({ "sync_on_write": value }))
                .unwrap();
            assert_eq!(p.sync_on_write, expected, "sync_on_write: {value}");
        }
    }

    #[test]
    fn only_the_standard_key_hash_is_accepted() {
        let base = BucketProps::default_type();
        let std = json!({"chash_keyfun": {"mod": "riak_core_util", "fun": "chash_std_keyfun"}});
        assert_eq!(
            base.apply_json_patch(&std).unwrap().chash_keyfun,
            ModFun::new("riak_core_util", "chash_std_keyfun")
        );
        for other in [
            json!({"mod": "riak_core_util", "fun": "other_keyfun"}),
            json!({"mod": "my_mod", "fun": "chash_std_keyfun"}),
        ] {
            let e = base
                .apply_json_patch(&json!({ "chash_keyfun": other }))
                .unwrap_err();
            assert_eq!(err_props(&e), vec!["chash_keyfun"], "{other}");
        }
    }

    #[test]
    fn quorums_must_fit_n_val() {
        let base = BucketProps::default_type();
        let e = base.apply_json_patch(&json!({"r": 4})).unwrap_err();
        assert_eq!(err_props(&e), vec!["r"]);
        assert!(base.apply_json_patch(&json!({"r": 4, "n_val": 4})).is_ok());
        let wide = base
            .apply_json_patch(&json!({"n_val": 5, "pw": 5}))
            .unwrap();
        let e = wide.apply_json_patch(&json!({"n_val": 3})).unwrap_err();
        assert_eq!(err_props(&e), vec!["n_val"]);
        // A patch that sets both is told about the quorum it set.
        let e = wide
            .apply_json_patch(&json!({"n_val": 3, "pw": 4}))
            .unwrap_err();
        assert_eq!(err_props(&e), vec!["pw"]);
        assert_eq!(
            err_props(&base.apply_json_patch(&json!({"w": "default"})).unwrap_err()),
            vec!["w"]
        );
        assert!(
            base.apply_json_patch(&json!({"pr": 0, "node_confirms": 0}))
                .is_ok()
        );
    }

    #[test]
    fn servable_props_fit_the_ring_and_their_n_val() {
        let base = BucketProps::default_type();
        assert_eq!(base.check_servable(64), Ok(()));
        let whole_ring = BucketProps {
            n_val: 64,
            ..base.clone()
        };
        assert_eq!(whole_ring.check_servable(64), Ok(()));
        let e = BucketProps {
            n_val: 1_000_000,
            ..base.clone()
        }
        .check_servable(64)
        .unwrap_err();
        assert_eq!(err_props(&e), vec!["n_val"]);
        assert_eq!(
            e.errors[0].message,
            "n_val of 1000000 is larger than the ring's 64 partitions"
        );
        let e = BucketProps {
            n_val: 0,
            ..base.clone()
        }
        .check_servable(64)
        .unwrap_err();
        assert_eq!(err_props(&e), vec!["n_val"]);
        // Numbers above n_val, each named with its value and the limit; symbolic values fit.
        let over = BucketProps {
            r: Quorum::N(4),
            rw: Quorum::N(5),
            pw: Quorum::N(3),
            w: Quorum::All,
            ..base
        };
        let e = over.check_servable(64).unwrap_err();
        assert_eq!(err_props(&e), vec!["r", "rw"]);
        assert_eq!(e.errors[0].message, "r of 4 is larger than n_val (3)");
        assert_eq!(e.errors[1].message, "rw of 5 is larger than n_val (3)");
        let e = e.within("it would break bucket b");
        assert_eq!(
            e.to_string(),
            "r: it would break bucket b: r of 4 is larger than n_val (3); \
             rw: it would break bucket b: rw of 5 is larger than n_val (3)"
        );
    }

    #[test]
    fn last_write_wins_excludes_dvv() {
        let t = BucketProps::new_type_defaults();
        let e = t
            .apply_json_patch(&json!({"last_write_wins": true}))
            .unwrap_err();
        assert_eq!(err_props(&e), vec!["dvv_enabled"]);
        assert!(
            t.apply_json_patch(&json!({"last_write_wins": true, "dvv_enabled": false}))
                .is_ok()
        );
    }

    #[test]
    fn datatypes_need_allow_mult_and_get_an_hll_precision() {
        let claimant = NodeName::from("n@h");
        let e = BucketProps::create_type(
            &json!({"datatype": "map", "allow_mult": false}),
            claimant.clone(),
        )
        .unwrap_err();
        assert_eq!(err_props(&e), vec!["allow_mult"]);
        let e = BucketProps::default_type()
            .apply_json_patch(&json!({"datatype": "set"}))
            .unwrap_err();
        assert_eq!(err_props(&e), vec!["allow_mult"]);
        assert_eq!(hll_type().hll_precision, Some(DEFAULT_HLL_PRECISION));
        let p = BucketProps::create_type(
            &json!({"datatype": "hll", "hll_precision": "10"}),
            claimant.clone(),
        )
        .unwrap();
        assert_eq!(p.hll_precision, Some(10));
        let e = BucketProps::create_type(
            &json!({"datatype": "hll", "hll_precision": 3}),
            claimant.clone(),
        )
        .unwrap_err();
        assert_eq!(err_props(&e), vec!["hll_precision"]);
        let counter = BucketProps::create_type(
            &json!({"datatype": "counter", "hll_precision": 8}),
            claimant,
        )
        .unwrap();
        assert_eq!(counter.hll_precision, None);
        assert_eq!(
            props_of(&counter.to_json(None))["datatype"],
            json!("counter")
        );
    }

    #[test]
    fn write_once_excludes_consistent_and_datatypes() {
        let c = NodeName::from("n@h");
        let e =
            BucketProps::create_type(&json!({"write_once": true, "consistent": true}), c.clone())
                .unwrap_err();
        assert_eq!(err_props(&e), vec!["consistent"]);
        let e =
            BucketProps::create_type(&json!({"write_once": true, "datatype": "set"}), c.clone())
                .unwrap_err();
        assert_eq!(err_props(&e), vec!["datatype"]);
        assert!(
            BucketProps::create_type(&json!({"write_once": true}), c)
                .unwrap()
                .write_once
        );
    }

    #[test]
    fn immutable_properties_cannot_change() {
        let c = NodeName::from("n@h");
        let map = BucketProps::create_type(&json!({"datatype": "map"}), c.clone()).unwrap();
        assert_eq!(
            err_props(&map.update(&json!({"datatype": "set"})).unwrap_err()),
            vec!["datatype"]
        );
        assert!(
            map.update(&json!({"datatype": "map", "n_val": 5, "r": 1}))
                .is_ok()
        );
        let plain = BucketProps::default_type();
        assert_eq!(
            err_props(&plain.update(&json!({"consistent": true})).unwrap_err()),
            vec!["consistent"]
        );
        assert_eq!(
            err_props(&plain.update(&json!({"write_once": true})).unwrap_err()),
            vec!["write_once"]
        );
        let w1c = BucketProps::create_type(&json!({"write_once": true}), c.clone()).unwrap();
        assert_eq!(
            err_props(&w1c.update(&json!({"write_once": false})).unwrap_err()),
            vec!["write_once"]
        );
        let sc = BucketProps::create_type(&json!({"consistent": true}), c).unwrap();
        assert_eq!(
            err_props(&sc.update(&json!({"n_val": 5})).unwrap_err()),
            vec!["n_val"]
        );
        assert!(sc.update(&json!({"r": 1})).is_ok());
    }

    #[test]
    fn hll_precision_may_only_decrease() {
        let t = hll_type();
        assert_eq!(
            t.update(&json!({"hll_precision": 12}))
                .unwrap()
                .hll_precision,
            Some(12)
        );
        let e = t.update(&json!({"hll_precision": 15})).unwrap_err();
        assert_eq!(err_props(&e), vec!["hll_precision"]);
        // Setting the current precision again is not an increase.
        let current = t.hll_precision.unwrap();
        assert_eq!(
            t.update(&json!({ "hll_precision": current }))
                .unwrap()
                .hll_precision,
            Some(current)
        );
    }

    #[test]
    fn type_state_belongs_to_the_cluster() {
        let t = BucketProps::create_type(&json!({}), NodeName::from("n@h")).unwrap();
        assert!(
            t.update(&json!({"active": false, "claimant": "n@h"}))
                .is_ok()
        );
        let e = t
            .update(&json!({"active": true, "claimant": "other@h"}))
            .unwrap_err();
        assert_eq!(err_props(&e), vec!["active", "claimant"]);
        let e = BucketProps::default_type()
            .update(&json!({"active": true}))
            .unwrap_err();
        assert_eq!(err_props(&e), vec!["active"]);
        let activated = BucketProps {
            active: Some(true),
            ..t.clone()
        };
        assert_eq!(
            err_props(&validate_type_update(&t, &activated).unwrap_err()),
            vec!["active"]
        );
    }

    #[test]
    fn typed_buckets_inherit_and_override() {
        let t = BucketProps::create_type(
            &json!({"datatype": "set", "n_val": 5}),
            NodeName::from("n@h"),
        )
        .unwrap();
        let mut overrides = Map::new();
        overrides.insert("r".into(), json!(1));
        let b = t.with_overrides(&overrides).unwrap();
        assert_eq!(
            (b.n_val, b.r, b.datatype, b.allow_mult),
            (5, Quorum::N(1), Some(Datatype::Set), true)
        );
        // A later change to the type reaches the bucket where it did not override.
        let t2 = t.update(&json!({"n_val": 4, "r": 3})).unwrap();
        let b2 = t2.with_overrides(&overrides).unwrap();
        assert_eq!((b2.n_val, b2.r), (4, Quorum::N(1)));
        overrides.insert("datatype".into(), json!("map"));
        assert!(t.with_overrides(&overrides).is_err());
        overrides.remove("datatype");
        overrides.insert("allow_mult".into(), json!(false));
        assert!(t.with_overrides(&overrides).is_err());
    }

    #[test]
    fn type_names_and_put_bodies() {
        assert!(validate_type_name("maps").is_ok());
        assert!(validate_type_name("any").is_err());
        assert!(validate_type_name("default").is_err());
        assert!(validate_type_name("").is_err());
        let props = put_body_props(br#"{"props":{"n_val":2}}"#).unwrap();
        assert_eq!(props["n_val"], json!(2));
        for bad in [&b"{"[..], br#"{"n_val":2}"#, br#"{"props":3}"#, b"[]"] {
            assert_eq!(err_props(&put_body_props(bad).unwrap_err()), vec!["props"]);
        }
    }

    #[test]
    fn storage_and_json_serde_round_trip() {
        let p = BucketProps::create_type(
            &json!({"datatype": "hll", "r": 1, "precommit": [{"name": "x"}], "search_index": {"a": [1]}}),
            NodeName::from("n@h"),
        )
        .unwrap();
        let bytes = postcard::to_allocvec(&p).unwrap();
        assert_eq!(postcard::from_bytes::<BucketProps>(&bytes).unwrap(), p);
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<BucketProps>(&text).unwrap(), p);
        assert_eq!(
            serde_json::to_value(Quorum::Quorum).unwrap(),
            json!("quorum")
        );
        assert_eq!(
            serde_json::from_value::<Quorum>(json!(3)).unwrap(),
            Quorum::N(3)
        );
    }

    fn quorum() -> impl Strategy<Value = Quorum> {
        prop_oneof![
            Just(Quorum::One),
            Just(Quorum::Quorum),
            Just(Quorum::All),
            Just(Quorum::Default),
            any::<u32>().prop_map(Quorum::from_pb),
        ]
    }

    proptest! {
        #[test]
        fn quorum_round_trips(q in quorum()) {
            prop_assert_eq!(Quorum::from_pb(q.to_pb()), q);
            prop_assert_eq!(Quorum::from_json(&q.to_json()), Ok(q));
            prop_assert_eq!(q.to_string().parse::<Quorum>(), Ok(q));
        }

        #[test]
        fn resolved_quorums_never_exceed_n(q in quorum(), d in quorum(), n in 1u32..10) {
            match q.resolve(QuorumParam::R, n, d) {
                Ok(v) => prop_assert!(v <= n),
                Err(QuorumError::NValViolation { value, .. }) => prop_assert!(value > n),
                Err(e) => prop_assert!(q == Quorum::Default && d == Quorum::Default, "{}", e),
            }
        }

        #[test]
        fn props_that_pass_the_check_resolve_every_quorum(
            n in 0u32..80, ring in prop_oneof![Just(8u32), Just(16), Just(64)],
            qs in proptest::collection::vec(quorum(), 7),
        ) {
            let mut p = BucketProps { n_val: n, ..BucketProps::default_type() };
            for (param, q) in QuorumParam::ALL.into_iter().zip(qs) {
                *p.quorum_mut(param) = q;
            }
            if p.check_servable(ring).is_ok() {
                prop_assert!(n >= 1 && n <= ring);
                for param in QuorumParam::ALL {
                    if p.quorum(param) != Quorum::Default {
                        prop_assert!(p.resolve_quorum(param, Quorum::Default).is_ok());
                    }
                }
            }
        }

        #[test]
        fn shown_props_put_back_unchanged(n in 1u32..8, mult in any::<bool>(), r in 1u32..8, nf in any::<bool>()) {
            let patch = json!({"n_val": n.max(r), "allow_mult": mult, "r": r, "notfound_ok": nf});
            let p = BucketProps::default_type().apply_json_patch(&patch).unwrap();
            let shown = p.to_json(Some("b"));
            prop_assert_eq!(BucketProps::default_type().apply_json_patch(&shown["props"]).unwrap(), p.clone());
            prop_assert_eq!(p.update(&shown["props"]).unwrap(), p);
        }
    }
}

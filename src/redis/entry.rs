//! [`EntryId`] and [`Fields`], and the parsing of the stream replies
//! (`XREADGROUP`, `XAUTOCLAIM`, `XPENDING`) from the driver's `Value`s.
//!
//! Parsing walks the reply by value, so field names and values move out of the
//! reply without a copy. Both protocol versions are understood: RESP2 answers
//! `XREADGROUP` with an array of `[key, entries]` pairs, RESP3 with a map.

use std::fmt;
use std::str::FromStr;

use ::redis::{RedisWrite, ToRedisArgs, ToSingleRedisArg, Value};

/// The id of a stream entry: milliseconds and a sequence number, written
/// `"<ms>-<seq>"` by Redis.
///
/// ```
/// use tokio_conc::redis::EntryId;
///
/// let id: EntryId = "1700000000000-3".parse().unwrap();
/// assert_eq!((id.ms, id.seq), (1_700_000_000_000, 3));
/// assert_eq!(id.to_string(), "1700000000000-3");
/// assert!(id < "1700000000001-0".parse().unwrap());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId {
    /// The Unix time in milliseconds the entry was added at (by default).
    pub ms: u64,
    /// The entry's place among those added in the same millisecond.
    pub seq: u64,
}

/// The error of parsing an [`EntryId`] that is not `"<ms>-<seq>"`.
///
/// ```
/// assert!("12x".parse::<tokio_conc::redis::EntryId>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadEntryId(String);

impl fmt::Display for BadEntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not a stream entry id (`<ms>-<seq>`)", self.0)
    }
}

impl std::error::Error for BadEntryId {}

impl FromStr for EntryId {
    type Err = BadEntryId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadEntryId(s.to_owned());
        let (ms, seq) = s.split_once('-').ok_or_else(bad)?;
        Ok(EntryId {
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

impl EntryId {
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        std::str::from_utf8(bytes).ok()?.parse().ok()
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl ToRedisArgs for EntryId {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        out.write_arg_fmt(self);
    }
}

impl ToSingleRedisArg for EntryId {}

/// The raw fields of a stream entry, in the order they were added: names and
/// values as bytes.
///
/// A source built without a decoder yields these; a decoder given to
/// [`RedisSource::decode`](super::RedisSource::decode) turns them into the
/// caller's type.
///
/// ```
/// use tokio_conc::redis::Fields;
///
/// let fields = Fields::from_pairs([("job", "42"), ("kind", "resize")]);
/// assert_eq!(fields.get_str("kind"), Some("resize"));
/// assert_eq!(fields.parse::<u32>("job").unwrap(), 42);
/// assert!(fields.parse::<u32>("kind").is_err());
/// assert_eq!(fields.len(), 2);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields(Vec<(Vec<u8>, Vec<u8>)>);

impl Fields {
    /// Fields from name-value pairs.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        Fields(
            pairs
                .into_iter()
                .map(|(k, v)| (k.as_ref().to_vec(), v.as_ref().to_vec()))
                .collect(),
        )
    }

    /// The value of the first field called `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(k, _)| k == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    /// The value of the first field called `name`, if it is UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The value of field `name` parsed as a `T`, or an error saying which
    /// field is missing or does not parse.
    pub fn parse<T: FromStr>(&self, name: &str) -> Result<T, FieldError> {
        let text = self.get_str(name).ok_or_else(|| FieldError {
            field: name.to_owned(),
            problem: "is missing or not UTF-8",
        })?;
        text.parse().map_err(|_| FieldError {
            field: name.to_owned(),
            problem: "does not parse",
        })
    }

    /// The fields as (name, value) pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.0.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// How many fields there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The (name, value) pairs.
    pub fn into_pairs(self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.0
    }
}

/// A field that [`Fields::parse`] could not read.
///
/// ```
/// let fields = tokio_conc::redis::Fields::from_pairs([("n", "x")]);
/// let err = fields.parse::<u8>("n").unwrap_err();
/// assert_eq!(err.to_string(), "field `n` does not parse");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    field: String,
    problem: &'static str,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}` {}", self.field, self.problem)
    }
}

impl std::error::Error for FieldError {}

/// One entry as read: its id and fields (`None` when the entry was deleted
/// while it was pending).
#[derive(Debug)]
pub(crate) struct RawEntry {
    pub(crate) id: EntryId,
    pub(crate) fields: Option<Fields>,
    pub(crate) deliveries: u64,
}

/// A reply that does not have the shape the command promises.
pub(crate) fn malformed(what: &str) -> ::redis::RedisError {
    ::redis::RedisError::from((
        ::redis::ErrorKind::UnexpectedReturnType,
        "unexpected reply",
        what.to_owned(),
    ))
}

fn into_array(value: Value) -> Option<Vec<Value>> {
    match value {
        Value::Array(items) | Value::Set(items) => Some(items),
        Value::Attribute { data, .. } => into_array(*data),
        _ => None,
    }
}

fn into_bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.into_bytes()),
        Value::Int(n) => Some(n.to_string().into_bytes()),
        _ => None,
    }
}

fn into_id(value: Value) -> Option<EntryId> {
    EntryId::from_bytes(&into_bytes(value)?)
}

/// `[[id, [field, value, ...]], ...]`, with a nil (or empty) field list for an
/// entry deleted while pending.
pub(crate) fn parse_entries(value: Value) -> Result<Vec<RawEntry>, ::redis::RedisError> {
    let bad = || malformed("a stream entry list");
    let mut out = Vec::new();
    for entry in into_array(value).ok_or_else(bad)? {
        let mut parts = into_array(entry).ok_or_else(bad)?.into_iter();
        let id = parts.next().and_then(into_id).ok_or_else(bad)?;
        let fields = match parts.next() {
            None | Some(Value::Nil) => None,
            Some(list) => {
                let mut flat = into_array(list).ok_or_else(bad)?.into_iter();
                let mut pairs = Vec::with_capacity(flat.len() / 2);
                while let Some(name) = flat.next() {
                    let name = into_bytes(name).ok_or_else(bad)?;
                    let value = flat.next().and_then(into_bytes).ok_or_else(bad)?;
                    pairs.push((name, value));
                }
                Some(Fields(pairs))
            }
        };
        out.push(RawEntry {
            id,
            fields,
            deliveries: 1,
        });
    }
    Ok(out)
}

/// The reply of `XREADGROUP` on one key: nil on timeout, else the entries.
pub(crate) fn parse_read(value: Value) -> Result<Vec<RawEntry>, ::redis::RedisError> {
    let bad = || malformed("an XREADGROUP reply");
    let streams = match value {
        Value::Nil => return Ok(Vec::new()),
        Value::Map(pairs) => pairs.into_iter().map(|(_, v)| v).collect(),
        other => into_array(other)
            .ok_or_else(bad)?
            .into_iter()
            .map(|pair| {
                let mut kv = into_array(pair).ok_or_else(bad)?.into_iter();
                kv.nth(1).ok_or_else(bad)
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let mut out = Vec::new();
    for entries in streams {
        out.extend(parse_entries(entries)?);
    }
    Ok(out)
}

/// The reply of `XAUTOCLAIM`: the cursor to go on from and the claimed
/// entries (a third element, ids deleted meanwhile, is dropped: Redis has
/// already removed them from the pending list).
pub(crate) fn parse_autoclaim(
    value: Value,
) -> Result<(String, Vec<RawEntry>), ::redis::RedisError> {
    let bad = || malformed("an XAUTOCLAIM reply");
    let mut parts = into_array(value).ok_or_else(bad)?.into_iter();
    let cursor = parts.next().and_then(into_bytes).ok_or_else(bad)?;
    let cursor = String::from_utf8(cursor).map_err(|_| bad())?;
    let entries = parse_entries(parts.next().ok_or_else(bad)?)?;
    Ok((cursor, entries))
}

/// The delivery count in the reply of `XPENDING key group id id 1`: `None` when
/// the entry is no longer pending.
pub(crate) fn parse_pending_count(value: Value) -> Result<Option<u64>, ::redis::RedisError> {
    let bad = || malformed("an XPENDING reply");
    let Some(first) = into_array(value).ok_or_else(bad)?.into_iter().next() else {
        return Ok(None);
    };
    let count = into_array(first).ok_or_else(bad)?.into_iter().nth(3);
    match count {
        Some(Value::Int(n)) => Ok(Some(n.max(0) as u64)),
        Some(other) => {
            let text = into_bytes(other).ok_or_else(bad)?;
            let n = std::str::from_utf8(&text).ok().and_then(|t| t.parse().ok());
            n.map(Some).ok_or_else(bad)
        }
        None => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: &[&str]) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(fields.iter().map(|f| bulk(f)).collect()),
        ])
    }

    #[test]
    fn reads_resp2_and_resp3_replies_alike() {
        let entries = Value::Array(vec![entry("1-0", &["a", "1"]), entry("1-1", &["b", "2"])]);
        let resp2 = Value::Array(vec![Value::Array(vec![bulk("jobs"), entries.clone()])]);
        let resp3 = Value::Map(vec![(bulk("jobs"), entries)]);
        for reply in [resp2, resp3] {
            let got = parse_read(reply).unwrap();
            assert_eq!(got.len(), 2);
            assert_eq!(got[1].id, EntryId { ms: 1, seq: 1 });
            assert_eq!(got[1].fields.as_ref().unwrap().get_str("b"), Some("2"));
        }
        assert!(parse_read(Value::Nil).unwrap().is_empty());
    }

    #[test]
    fn a_deleted_entry_has_no_fields() {
        let reply = Value::Array(vec![
            bulk("0-0"),
            Value::Array(vec![Value::Array(vec![bulk("5-0"), Value::Nil])]),
            Value::Array(vec![]),
        ]);
        let (cursor, entries) = parse_autoclaim(reply).unwrap();
        assert_eq!(cursor, "0-0");
        assert!(entries[0].fields.is_none());
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        assert!(parse_read(Value::Int(3)).is_err());
        assert!(parse_entries(Value::Array(vec![Value::Array(vec![bulk("x")])])).is_err());
        let odd = Value::Array(vec![entry("1-0", &["a"])]);
        assert!(parse_entries(odd).is_err());
        assert!(parse_autoclaim(Value::Nil).is_err());
    }

    #[test]
    fn pending_counts() {
        let one = Value::Array(vec![Value::Array(vec![
            bulk("1-0"),
            bulk("c"),
            Value::Int(10),
            Value::Int(4),
        ])]);
        assert_eq!(parse_pending_count(one).unwrap(), Some(4));
        assert_eq!(parse_pending_count(Value::Array(vec![])).unwrap(), None);
    }
}

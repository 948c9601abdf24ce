//! [`RequestId`]: the id a request is logged under — taken from the request's
//! header when it carries a sane one, generated otherwise.
//!
//! Generated ids are a process-wide random prefix (from the standard
//! library's hasher seed, so no new dependency) and a counter:
//! `9f3c2a71d04b6e85-1f`. Unique within a process, and across processes with
//! the odds of two 64-bit random prefixes meeting; cheap (one atomic
//! increment and one small string per request).

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderValue;

use crate::context::{SpanValue, TaskContext};

/// The longest id taken from a request; a longer one is replaced.
const MAX_LEN: usize = 128;

/// A request's id: a [context value](TaskContext::value) and a
/// [span field](SpanValue) (`request_id=…`) of the request's context, an
/// entry in the request's extensions, and a header of the response — all set
/// by [`ContextLayer`](super::ContextLayer).
///
/// An id taken from a request is kept only if it is 1 to 128 visible ASCII
/// characters (no spaces or control characters, so it cannot forge log
/// lines); otherwise the layer generates one.
///
/// ```
/// use tokio_conc::service::RequestId;
///
/// let taken = RequestId::from_header(&http::HeaderValue::from_static("abc-123")).unwrap();
/// assert_eq!(taken.as_str(), "abc-123");
/// assert!(RequestId::from_header(&http::HeaderValue::from_static("two words")).is_none());
///
/// let (a, b) = (RequestId::generate(), RequestId::generate());
/// assert_ne!(a, b);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// A new id, unique in this process.
    ///
    /// ```
    /// let id = tokio_conc::service::RequestId::generate();
    /// assert!(id.as_str().contains('-'));
    /// ```
    pub fn generate() -> Self {
        static PREFIX: OnceLock<u64> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let prefix = *PREFIX.get_or_init(|| {
            let mut hasher = RandomState::new().build_hasher();
            hasher.write_u32(std::process::id());
            hasher.finish()
        });
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // `{prefix:016x}-{n:x}`, written by hand: this runs once per request.
        let mut id = Vec::with_capacity(16 + 1 + 16);
        push_hex(&mut id, prefix, 16);
        id.push(b'-');
        let digits = (64 - n.leading_zeros()).div_ceil(4).max(1) as usize;
        push_hex(&mut id, n, digits);
        RequestId(HeaderValue::try_from(id).expect("hex digits and a dash are a valid header"))
    }

    /// The id a request's header carries, if it is 1 to 128 visible ASCII
    /// characters; `None` otherwise.
    ///
    /// ```
    /// use http::HeaderValue;
    /// use tokio_conc::service::RequestId;
    ///
    /// assert!(RequestId::from_header(&HeaderValue::from_static("req-7")).is_some());
    /// assert!(RequestId::from_header(&HeaderValue::from_static("")).is_none());
    /// ```
    pub fn from_header(value: &HeaderValue) -> Option<Self> {
        let bytes = value.as_bytes();
        let sane = !bytes.is_empty()
            && bytes.len() <= MAX_LEN
            && bytes.iter().all(|b| b.is_ascii_graphic());
        sane.then(|| RequestId(value.clone()))
    }

    /// The id of the request being served: the one in
    /// [`TaskContext::current`], inside a handler behind a
    /// [`ContextLayer`](super::ContextLayer).
    ///
    /// ```
    /// use tokio_conc::service::RequestId;
    /// assert!(RequestId::current().is_none(), "not inside a request");
    /// ```
    pub fn current() -> Option<Self> {
        TaskContext::current().and_then(|ctx| ctx.value::<RequestId>().cloned())
    }

    /// The id as text.
    ///
    /// ```
    /// let id = tokio_conc::service::RequestId::generate();
    /// assert_eq!(id.as_str(), id.to_string());
    /// ```
    pub fn as_str(&self) -> &str {
        // Only visible ASCII gets in (checked, or generated).
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a header value, as the layer sends it back.
    ///
    /// ```
    /// let id = tokio_conc::service::RequestId::generate();
    /// assert_eq!(id.header_value().to_str().unwrap(), id.as_str());
    /// ```
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

/// Appends the low `digits` hex digits of `value`, most significant first.
fn push_hex(out: &mut Vec<u8>, value: u64, digits: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..digits).rev() {
        out.push(HEX[((value >> (i * 4)) & 0xf) as usize]);
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RequestId").field(&self.as_str()).finish()
    }
}

/// Logged as `request_id=…` in the [span](TaskContext::span) of the
/// request's context.
impl SpanValue for RequestId {
    const FIELD: &'static str = "request_id";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_share_a_prefix_and_count_up() {
        let a = RequestId::generate();
        let b = RequestId::generate();
        let (pa, na) = a.as_str().split_once('-').unwrap();
        let (pb, nb) = b.as_str().split_once('-').unwrap();
        assert_eq!(pa, pb);
        assert_eq!(pa.len(), 16);
        let (na, nb) = (
            u64::from_str_radix(na, 16).unwrap(),
            u64::from_str_radix(nb, 16).unwrap(),
        );
        assert!(nb > na);
    }

    #[test]
    fn generated_ids_are_written_in_hex() {
        let mut out = Vec::new();
        push_hex(&mut out, 0x1f, 2);
        out.push(b'-');
        push_hex(&mut out, 0, 1);
        out.push(b'-');
        push_hex(&mut out, 0xab, 16);
        assert_eq!(out, b"1f-0-00000000000000ab");
    }

    #[test]
    fn taken_ids_are_short_visible_ascii() {
        let long = "x".repeat(MAX_LEN);
        assert!(RequestId::from_header(&HeaderValue::from_str(&long).unwrap()).is_some());
        let too_long = "x".repeat(MAX_LEN + 1);
        assert!(RequestId::from_header(&HeaderValue::from_str(&too_long).unwrap()).is_none());
        assert!(RequestId::from_header(&HeaderValue::from_static("a\tb")).is_none());
        let obs_text = HeaderValue::from_bytes(b"caf\xe9").unwrap();
        assert!(RequestId::from_header(&obs_text).is_none());
    }

    #[test]
    fn the_span_field_is_request_id() {
        let ctx =
            TaskContext::background().with_span_value(RequestId(HeaderValue::from_static("r1")));
        assert_eq!(ctx.span_fields(), "request_id=r1");
    }
}

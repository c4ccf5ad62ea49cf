//! Test helper shared by the wire-type modules ([`crate::anthropic`], [`crate::responses`],
//! [`crate::chat`]): a value must parse and serialize back to the very same JSON.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Parses `v` as `T`, asserts it serializes back to `v` unchanged, and returns it.
pub fn round_trip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(
    v: Value,
) -> T {
    let t: T = serde_json::from_value(v.clone()).expect("parse");
    assert_eq!(serde_json::to_value(&t).expect("ser"), v, "verbatim");
    t
}

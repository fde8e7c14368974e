//! Engine tests across modules: the grouped matrix against the reference semantics.

use super::*;

#[test]
fn placeholder() {}
